//! Chat prompts: which template renders a conversation (resolved once, as llama.cpp does),
//! and rendering it with llama.cpp's built-in templates or as Jinja.

mod jinja;

use std::ffi::{CStr, CString, c_char};
use std::ops::ControlFlow;

use llama_cpp_sys_2 as sys;

use crate::error::ChatError;
use crate::model::Model;
use crate::session::{GenerateParams, GenerationStats, Session};
use crate::tokenize::Special;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// llama.cpp's built-in template names (`llama3`, `chatml`, ...).
pub fn builtin_templates() -> Vec<String> {
    // SAFETY: with a NULL output and length 0 it only returns the count.
    let n = unsafe { sys::llama_chat_builtin_templates(std::ptr::null_mut(), 0) };
    let mut names: Vec<*const c_char> = vec![std::ptr::null(); n.max(0) as usize];
    // SAFETY: `names` has room for `n` pointers, which llama.cpp fills with static strings.
    unsafe { sys::llama_chat_builtin_templates(names.as_mut_ptr(), names.len()) };
    names
        .into_iter()
        .filter(|p| !p.is_null())
        // SAFETY: static NUL-terminated strings owned by llama.cpp.
        .map(|p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        .collect()
}

/// The chat template a conversation is rendered with, resolved in llama.cpp's order:
/// `--chat-template NAME`, `--chat-template-file FILE`, the model's own template (as Jinja
/// when llama.cpp's built-in renderers do not recognise it, or always with `--jinja`), and
/// chatml when the model has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    kind: TemplateKind,
    origin: String,
    fallback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateKind {
    /// A built-in name, or a template text llama.cpp's renderers recognise.
    Llama(String),
    /// A Jinja template.
    Jinja(String),
}

/// Where a template may come from (the front ends' `--chat-template`, `--chat-template-file`
/// and `--jinja`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateChoice {
    /// A built-in template name (`llama3`, `chatml`, ...) or a template text.
    pub name: Option<String>,
    /// A template file's text and where it came from (named in errors).
    pub file: Option<(String, String)>,
    /// Render the model's template (and `name` when it is not a built-in) as Jinja.
    pub jinja: bool,
}

impl TemplateChoice {
    /// A built-in name or template text (`--chat-template`).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }
}

impl ChatTemplate {
    /// Resolves the template `choice` asks for on `model`.
    ///
    /// # Errors
    /// [`ChatError::UnknownTemplate`] for a name that is no built-in (without `jinja`), or
    /// [`ChatError::Jinja`] for a Jinja template that does not parse.
    pub fn resolve(model: &Model, choice: &TemplateChoice) -> Result<Self, ChatError> {
        let t = if let Some(name) = &choice.name {
            let builtin = builtin_templates().iter().any(|b| b == name);
            if builtin || (!choice.jinja && llama_recognises(name)) {
                Self::new(
                    TemplateKind::Llama(name.clone()),
                    format!("--chat-template {name}"),
                )
            } else if choice.jinja {
                Self::new(
                    TemplateKind::Jinja(name.clone()),
                    "--chat-template (Jinja)".into(),
                )
            } else {
                return Err(ChatError::UnknownTemplate {
                    name: name.chars().take(60).collect(),
                    known: builtin_templates().join(", "),
                });
            }
        } else if let Some((origin, text)) = &choice.file {
            Self::new(TemplateKind::Jinja(text.clone()), origin.clone())
        } else if let Some(text) = &model.info().chat_template {
            if !choice.jinja && llama_recognises(text) {
                Self::new(
                    TemplateKind::Llama(text.clone()),
                    "the model's chat template".into(),
                )
            } else {
                Self::new(
                    TemplateKind::Jinja(text.clone()),
                    "the model's chat template (Jinja)".into(),
                )
            }
        } else {
            Self {
                fallback: true,
                ..Self::new(TemplateKind::Llama("chatml".into()), "chatml".into())
            }
        };
        if let TemplateKind::Jinja(source) = &t.kind {
            // Parse errors surface now, not at the first turn.
            let probe = [ChatMessage::user("x")];
            jinja::render(source, &probe, &Self::jinja_context(model, true)).map_err(|reason| {
                ChatError::Jinja {
                    origin: t.origin.clone(),
                    reason,
                }
            })?;
        }
        Ok(t)
    }

    fn new(kind: TemplateKind, origin: String) -> Self {
        Self {
            kind,
            origin,
            fallback: false,
        }
    }

    /// Where the template came from (`--chat-template llama3`, `the model's chat template`,
    /// a file, or `chatml`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether this is the chatml fallback for a model without a template.
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// Whether the template is rendered as Jinja.
    pub fn is_jinja(&self) -> bool {
        matches!(self.kind, TemplateKind::Jinja(_))
    }

    /// The warning llama.cpp prints for the chatml fallback, if this is it.
    pub fn warning(&self) -> Option<&'static str> {
        self.fallback.then_some(
            "the model has no chat template; using chatml (pass --chat-template NAME or \
             --chat-template-file FILE to choose one)",
        )
    }

    fn jinja_context(model: &Model, add: bool) -> jinja::JinjaContext {
        let text = |t: Option<crate::model::Token>| {
            t.and_then(|t| model.token_to_piece(t, true).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        jinja::JinjaContext {
            bos_token: text(model.token_bos()),
            eos_token: text(model.token_eos()),
            add_generation_prompt: add,
        }
    }

    /// Renders `messages` for `model`; with `add_assistant` the prompt ends with the header
    /// that starts the assistant's reply.
    ///
    /// # Errors
    /// See [`ChatError`]: each variant says what was wrong.
    pub fn render(
        &self,
        model: &Model,
        messages: &[ChatMessage],
        add_assistant: bool,
    ) -> Result<String, ChatError> {
        match &self.kind {
            TemplateKind::Llama(t) => llama_render(t, messages, add_assistant),
            TemplateKind::Jinja(source) => {
                jinja::render(source, messages, &Self::jinja_context(model, add_assistant)).map_err(
                    |reason| ChatError::Jinja {
                        origin: self.origin.clone(),
                        reason,
                    },
                )
            }
        }
    }
}

/// Whether llama.cpp's built-in renderers recognise a template text.
fn llama_recognises(template: &str) -> bool {
    llama_render(template, &[ChatMessage::user("x")], true).is_ok()
}

/// Renders with llama.cpp's built-in renderer for `tmpl` (a name or a recognised text).
fn llama_render(
    tmpl: &str,
    messages: &[ChatMessage],
    add_assistant: bool,
) -> Result<String, ChatError> {
    let unknown = || ChatError::UnknownTemplate {
        name: tmpl.chars().take(60).collect(),
        known: builtin_templates().join(", "),
    };
    let c_tmpl = CString::new(tmpl).map_err(|_| unknown())?;
    let owned: Vec<(CString, CString)> = messages
        .iter()
        .enumerate()
        .map(|(index, m)| {
            Ok((
                CString::new(m.role.as_str()).map_err(|_| ChatError::NulByte { index })?,
                CString::new(m.content.as_str()).map_err(|_| ChatError::NulByte { index })?,
            ))
        })
        .collect::<Result<_, ChatError>>()?;
    let chat: Vec<sys::llama_chat_message> = owned
        .iter()
        .map(|(role, content)| sys::llama_chat_message {
            role: role.as_ptr(),
            content: content.as_ptr(),
        })
        .collect();
    let total: usize = messages
        .iter()
        .map(|m| m.role.len() + m.content.len())
        .sum();
    let mut buf = vec![0u8; 2 * total + 256];
    loop {
        let cap = i32::try_from(buf.len()).unwrap_or(i32::MAX);
        // SAFETY: every string is NUL-terminated and outlives the call (`owned`, `c_tmpl`);
        // `chat` holds `chat.len()` messages; `buf` is writable for `cap` bytes.
        let n = unsafe {
            crate::llama::shim::acap_llama_chat_apply_template(
                c_tmpl.as_ptr(),
                chat.as_ptr(),
                chat.len(),
                add_assistant,
                buf.as_mut_ptr().cast::<c_char>(),
                cap,
            )
        };
        if n < 0 {
            return Err(unknown());
        }
        if (n as usize) <= buf.len() {
            buf.truncate(n as usize);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        buf.resize(n as usize, 0);
    }
}

impl Model {
    /// Renders `messages` with `template` (a built-in name such as `llama3`, or a template
    /// text llama.cpp recognises) or, with `None`, as [`ChatTemplate::resolve`] resolves the
    /// model's own template (Jinja when llama.cpp does not recognise it, chatml when there is
    /// none). With `add_assistant` the prompt ends with the header that starts the
    /// assistant's reply.
    ///
    /// # Errors
    /// See [`ChatError`]: each variant says what was wrong.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_assistant: bool,
        template: Option<&str>,
    ) -> Result<String, ChatError> {
        let choice = template.map(TemplateChoice::named).unwrap_or_default();
        ChatTemplate::resolve(self, &choice)?.render(self, messages, add_assistant)
    }
}

impl Session {
    /// Renders the conversation (ending with the assistant header) and generates the reply.
    /// The KV cache is reused: on a follow-up turn only the new tokens are decoded.
    ///
    /// # Errors
    /// See [`crate::Error`]: each variant says what was wrong.
    pub fn chat(
        &mut self,
        messages: &[ChatMessage],
        template: Option<&str>,
        params: &GenerateParams,
        on_text: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationStats, crate::Error> {
        let prompt = self.model().apply_chat_template(messages, true, template)?;
        let tokens = self.model().tokenize(&prompt, Special::PROMPT)?;
        self.generate_tokens(&tokens, params, on_text)
    }

    /// [`Session::chat`] with a template resolved once ([`ChatTemplate::resolve`]).
    ///
    /// # Errors
    /// See [`crate::Error`]: each variant says what was wrong.
    pub fn chat_with(
        &mut self,
        messages: &[ChatMessage],
        template: &ChatTemplate,
        params: &GenerateParams,
        on_text: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationStats, crate::Error> {
        let prompt = template.render(self.model(), messages, true)?;
        let tokens = self.model().tokenize(&prompt, Special::PROMPT)?;
        self.generate_tokens(&tokens, params, on_text)
    }
}
