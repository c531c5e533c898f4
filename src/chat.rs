//! Chat prompts rendered with llama.cpp's built-in chat templates.

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

impl Model {
    /// Renders `messages` with the model's chat template, or with `template` (a built-in name
    /// such as `llama3`, or a template text llama.cpp recognises). With `add_assistant` the
    /// prompt ends with the header that starts the assistant's reply.
    ///
    /// # Errors
    /// See [`ChatError`]: each variant says what was wrong.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_assistant: bool,
        template: Option<&str>,
    ) -> Result<String, ChatError> {
        let tmpl = match template {
            Some(t) => t.to_owned(),
            None => self
                .info()
                .chat_template
                .clone()
                .ok_or(ChatError::NoTemplate)?,
        };
        let unknown = || ChatError::UnknownTemplate {
            name: tmpl.chars().take(60).collect(),
            known: builtin_templates().join(", "),
        };
        let c_tmpl = CString::new(tmpl.as_str()).map_err(|_| unknown())?;
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
            // SAFETY: every string is NUL-terminated and outlives the call (`owned`,
            // `c_tmpl`); `chat` holds `chat.len()` messages; `buf` is writable for `cap` bytes.
            let n = unsafe {
                sys::llama_chat_apply_template(
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
}
