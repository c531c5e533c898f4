//! Jinja chat templates (Hugging Face's `tokenizer.chat_template`), rendered by minijinja with
//! Python's string methods and the whitespace rules `transformers` uses (`trim_blocks`,
//! `lstrip_blocks`), as llama.cpp's `--jinja` renders them.

use std::collections::BTreeMap;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

use super::ChatMessage;

/// What a template sees besides the messages.
pub(crate) struct JinjaContext {
    pub(crate) bos_token: String,
    pub(crate) eos_token: String,
    pub(crate) add_generation_prompt: bool,
}

/// Renders `source` over `messages`. The error is minijinja's, with the line it points at.
pub(crate) fn render(
    source: &str,
    messages: &[ChatMessage],
    ctx: &JinjaContext,
) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| e.to_string())?,
    );
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
    env.add_template("chat", source).map_err(|e| describe(&e))?;
    let tmpl = env.get_template("chat").map_err(|e| describe(&e))?;
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            Value::from(BTreeMap::from([
                ("role".to_owned(), Value::from(m.role.as_str())),
                ("content".to_owned(), Value::from(m.content.as_str())),
            ]))
        })
        .collect();
    tmpl.render(minijinja::context! {
        messages => messages,
        add_generation_prompt => ctx.add_generation_prompt,
        bos_token => ctx.bos_token.as_str(),
        eos_token => ctx.eos_token.as_str(),
    })
    .map_err(|e| describe(&e))
}

fn describe(e: &Error) -> String {
    match e.line() {
        Some(line) => format!(
            "{} (line {line})",
            e.detail().unwrap_or(&e.kind().to_string())
        ),
        None => e.to_string(),
    }
}

/// Today's date in the few `strftime` forms chat templates use (`%d %b %Y` in Llama 3.1's).
fn strftime_now(fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let month = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn ctx(add: bool) -> JinjaContext {
        JinjaContext {
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
            add_generation_prompt: add,
        }
    }

    #[test]
    fn renders_hugging_face_templates_with_python_methods() {
        let m = [ChatMessage::system("Be kind."), ChatMessage::user("Hi")];
        assert_eq!(
            render(CHATML, &m, &ctx(true)).unwrap(),
            "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let py = "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}{{ m.content.strip().upper() }}{% endif %}{% endfor %}";
        assert_eq!(
            render(py, &[ChatMessage::user("  hello ")], &ctx(false)).unwrap(),
            "<s>HELLO"
        );
        let raising = "{{ raise_exception('roles must alternate') }}";
        assert!(
            render(raising, &m, &ctx(true))
                .unwrap_err()
                .contains("roles must alternate")
        );
        assert!(
            render("{% for %}", &m, &ctx(true))
                .unwrap_err()
                .contains("line 1")
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_423), (2025, 12, 1));
        let today = strftime_now("%d %b %Y");
        assert_eq!(today.len(), 11, "{today}");
    }
}
