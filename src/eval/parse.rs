//! The tolerant parser of evaluator output (spec section 8), usable on text from any server.

/// Where the overall score came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverallSource {
    /// `Overall: X/10` (or `Overall ... X/10` on one line).
    Labelled,
    /// Assigned by position (see [`ParseFlags::positional`]).
    Positional,
    /// `EVALUATION: X/10`.
    EvaluationHeader,
    /// The last strict `N/10` in the text (flagged: a guess).
    LastScore,
    /// The mean of at least 4 parsed dimensions, rounded to one decimal (flagged: derived).
    DimensionMean,
    /// None found.
    Missing,
}

/// Which fallbacks the parser needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseFlags {
    /// Fewer than 3 dimensions parsed by name, so at least 7 `X/10` values were assigned in
    /// order to the dimensions and then overall.
    pub positional: bool,
    /// Where the overall score came from.
    pub overall: OverallSource,
}

impl ParseFlags {
    /// True when the overall score is a guess or derived (last score, dimension mean) or
    /// missing, or the dimensions were assigned by position.
    pub fn is_fallback(&self) -> bool {
        self.positional
            || matches!(
                self.overall,
                OverallSource::LastScore | OverallSource::DimensionMean | OverallSource::Missing
            )
    }
}

/// A parsed evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Each rubric dimension in order, with its score (1..=10) if one parsed.
    pub scores: Vec<(String, Option<f32>)>,
    /// The text after `Red flags:`, if present.
    pub red_flags: Option<String>,
    /// The overall score (1..=10) if one was found.
    pub overall: Option<f32>,
    /// The model's raw output.
    pub raw: String,
    /// Which fallbacks were used.
    pub flags: ParseFlags,
}

impl Evaluation {
    /// The score of dimension `name` (case-insensitive).
    pub fn score(&self, name: &str) -> Option<f32> {
        self.scores
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, s)| *s)
    }

    /// Signs that the model filled in the answer format instead of judging: a score line
    /// whose reason is empty or the format's own placeholder (`N/10 - reason`), red flags that
    /// are the placeholder `text`. One description per problem; empty for a real answer.
    pub fn degenerate(&self) -> Vec<String> {
        let placeholder = |s: &str| {
            let t = s.trim().trim_end_matches('.').to_ascii_lowercase();
            t.is_empty() || t == "reason" || t == "text" || t == "n/10 - reason"
        };
        let mut out = Vec::new();
        for line in self.raw.lines() {
            let Some((label, rest)) = line.split_once(':') else {
                continue;
            };
            let label = label.trim();
            if label.eq_ignore_ascii_case("red flags") {
                if placeholder(rest) {
                    out.push(format!(
                        "red flags: '{}' is empty or the format's placeholder",
                        rest.trim()
                    ));
                }
                continue;
            }
            if !rest.contains("/10") {
                continue;
            }
            let reason = rest.split_once(" - ").map_or("", |(_, r)| r);
            if placeholder(reason) {
                out.push(format!(
                    "{label}: the reason '{}' is empty or the format's placeholder",
                    reason.trim()
                ));
            }
        }
        out
    }

    /// Whether every dimension and the overall score parsed.
    pub fn is_complete(&self) -> bool {
        self.overall.is_some() && self.scores.iter().all(|(_, s)| s.is_some())
    }
}

/// An `X/10` found in the text: its value (if in 1..=10) and where it ends.
#[derive(Debug, Clone, Copy)]
struct Score {
    value: Option<f32>,
    end: usize,
}

/// Parses a number (digits with an optional decimal part) followed by optional spaces, `/`,
/// optional spaces and `10`, at `at`.
fn score_at(text: &str, at: usize) -> Option<Score> {
    let b = text.as_bytes();
    let mut i = at;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == at {
        return None;
    }
    if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    let number = &text[at..i];
    let skip = |mut j: usize| {
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        j
    };
    let j = skip(i);
    if j >= b.len() || b[j] != b'/' {
        return None;
    }
    let j = skip(j + 1);
    if !text[j..].starts_with("10") || b.get(j + 2).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let value = number
        .parse::<f32>()
        .ok()
        .filter(|v| (1.0..=10.0).contains(v));
    Some(Score { value, end: j + 2 })
}

/// Every `X/10` in the text, in order (numbers not preceded by a digit or a dot).
fn all_scores(text: &str) -> Vec<Score> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts_number =
            b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_ascii_digit() || b[i - 1] == b'.'));
        if starts_number {
            if let Some(s) = score_at(text, i) {
                out.push(s);
                i = s.end;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Strict `N/10` (one or two digits, no decimals, no spaces): what the last-score fallback
/// looks for, so a score the parser had to be lenient about is not mistaken for an overall.
fn last_strict_score(text: &str) -> Option<f32> {
    let b = text.as_bytes();
    let mut found = None;
    for at in find_all_ci(text, "/10") {
        if b.get(at + 3).is_some_and(u8::is_ascii_digit) {
            continue;
        }
        let mut start = at;
        while start > 0 && b[start - 1].is_ascii_digit() && at - start < 3 {
            start -= 1;
        }
        let digits = at - start;
        if digits == 0 || digits > 2 || (start > 0 && matches!(b[start - 1], b'.' | b'0'..=b'9')) {
            continue;
        }
        if let Ok(v) = text[start..at].parse::<f32>() {
            if (1.0..=10.0).contains(&v) {
                found = Some(v);
            }
        }
    }
    found
}

/// Byte offsets of case-insensitive occurrences of `needle` (ASCII) in `text`.
fn find_all_ci(text: &str, needle: &str) -> Vec<usize> {
    let (h, n) = (text.as_bytes(), needle.as_bytes());
    if n.is_empty() || h.len() < n.len() {
        return Vec::new();
    }
    (0..=h.len() - n.len())
        .filter(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
        .collect()
}

/// `Label: X/10` with optional spaces around the colon; the first valid one.
fn labelled(text: &str, label: &str) -> Option<f32> {
    let b = text.as_bytes();
    find_all_ci(text, label).into_iter().find_map(|at| {
        // A whole word: not the tail of a longer word.
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'-') {
            return None;
        }
        let mut j = at + label.len();
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t' || b[j] == b'*') {
            j += 1;
        }
        if b.get(j) != Some(&b':') {
            return None;
        }
        j += 1;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t' || b[j] == b'*') {
            j += 1;
        }
        score_at(text, j)?.value
    })
}

/// `Overall ... X/10`: the first valid `X/10` after an `Overall` on the same line.
fn overall_on_line(text: &str) -> Option<f32> {
    find_all_ci(text, "overall").into_iter().find_map(|at| {
        let line_end = text[at..].find('\n').map_or(text.len(), |e| at + e);
        all_scores(&text[at..line_end])
            .into_iter()
            .find_map(|s| s.value)
    })
}

fn red_flags(text: &str) -> Option<String> {
    let at = find_all_ci(text, "red flags:").into_iter().next()? + "red flags:".len();
    let rest = &text[at..];
    let mut end = rest.len();
    if let Some(blank) = rest.find("\n\n") {
        end = end.min(blank);
    }
    if let Some(o) = find_all_ci(rest, "overall").into_iter().next() {
        end = end.min(o);
    }
    Some(rest[..end].trim().to_owned())
}

/// Parses evaluator output for `dimensions` with every fallback of spec section 8.
pub fn parse_evaluation(text: &str, dimensions: &[String]) -> Evaluation {
    let mut scores: Vec<(String, Option<f32>)> = dimensions
        .iter()
        .map(|d| (d.clone(), labelled(text, d)))
        .collect();
    let parsed = scores.iter().filter(|(_, s)| s.is_some()).count();
    let mut overall = labelled(text, "overall").map(|v| (v, OverallSource::Labelled));
    let mut positional = false;
    if parsed < 3 {
        let values: Vec<f32> = all_scores(text).iter().filter_map(|s| s.value).collect();
        if values.len() >= 7 {
            positional = true;
            for (slot, v) in scores.iter_mut().zip(&values) {
                slot.1 = Some(*v);
            }
            if overall.is_none() {
                overall = values
                    .get(dimensions.len())
                    .map(|v| (*v, OverallSource::Positional));
            }
        }
    }
    let overall = overall
        .or_else(|| overall_on_line(text).map(|v| (v, OverallSource::Labelled)))
        .or_else(|| labelled(text, "evaluation").map(|v| (v, OverallSource::EvaluationHeader)))
        .or_else(|| last_strict_score(text).map(|v| (v, OverallSource::LastScore)))
        .or_else(|| {
            let got: Vec<f32> = scores.iter().filter_map(|(_, s)| *s).collect();
            (got.len() >= 4).then(|| {
                let mean = got.iter().sum::<f32>() / got.len() as f32;
                ((mean * 10.0).round() / 10.0, OverallSource::DimensionMean)
            })
        });
    Evaluation {
        scores,
        red_flags: red_flags(text),
        overall: overall.map(|(v, _)| v),
        raw: text.to_owned(),
        flags: ParseFlags {
            positional,
            overall: overall.map_or(OverallSource::Missing, |(_, s)| s),
        },
    }
}
