//! Tokenisation, detokenisation and streaming-safe token pieces.

use std::ffi::c_char;

use crate::error::TokenizeError;
use crate::llama::shim;
use crate::model::{Model, Token};

/// Whether to add BOS/EOS and whether special-token text (`<|eot_id|>`) becomes special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Special {
    /// Add BOS (and EOS) if the model's tokenizer is configured to.
    pub add: bool,
    /// Parse special-token text into special tokens instead of plain text.
    pub parse: bool,
}

impl Special {
    /// A prompt as llama-cli sees it: BOS added, special tokens parsed.
    pub const PROMPT: Self = Self {
        add: true,
        parse: true,
    };
    /// Plain text: nothing added, special-token text kept as text.
    pub const PLAIN: Self = Self {
        add: false,
        parse: false,
    };
}

impl Model {
    /// Tokenizes `text`.
    ///
    /// # Errors
    /// See [`TokenizeError`]: each variant says what was wrong.
    pub fn tokenize(&self, text: &str, special: Special) -> Result<Vec<Token>, TokenizeError> {
        self.check_tokenizer()?;
        let len =
            i32::try_from(text.len()).map_err(|_| TokenizeError::TooLong { len: text.len() })?;
        // A token covers at least one byte, plus BOS/EOS.
        let mut out: Vec<Token> = vec![0; text.len() + 2];
        let n = self.tokenize_into(text, len, &mut out, special);
        let n = if n < 0 && n != i32::MIN {
            out.resize((-n) as usize, 0);
            self.tokenize_into(text, len, &mut out, special)
        } else {
            n
        };
        if n == shim::THREW {
            return Err(TokenizeError::Exception {
                call: "llama_tokenize",
                message: shim::exception(),
            });
        }
        if n < 0 {
            return Err(TokenizeError::Failed { code: n });
        }
        out.truncate(n as usize);
        Ok(out)
    }

    fn tokenize_into(&self, text: &str, len: i32, out: &mut [Token], special: Special) -> i32 {
        let cap = i32::try_from(out.len()).unwrap_or(i32::MAX);
        // SAFETY: `text` is valid for `len` bytes (no NUL terminator needed: the length is
        // passed), `out` is writable for `cap` tokens, and the vocabulary lives with the model.
        unsafe {
            shim::acap_llama_tokenize(
                self.vocab_ptr(),
                text.as_ptr().cast::<c_char>(),
                len,
                out.as_mut_ptr(),
                cap,
                special.add,
                special.parse,
            )
        }
    }

    /// A model without a tokenizer (`tokenizer.ggml.model` `none` or `no_vocab`) makes
    /// llama.cpp's tokenizer calls assert, aborting the process: refused here instead.
    fn check_tokenizer(&self) -> Result<(), TokenizeError> {
        // SAFETY: a read-only query on the vocabulary, which lives with the model.
        let ty = unsafe { llama_cpp_sys_2::llama_vocab_type(self.vocab_ptr()) };
        if ty == llama_cpp_sys_2::LLAMA_VOCAB_TYPE_NONE {
            return Err(TokenizeError::NoTokenizer);
        }
        Ok(())
    }

    fn check_token(&self, token: Token) -> Result<(), TokenizeError> {
        let n_vocab = self.n_vocab();
        if (0..n_vocab).contains(&token) {
            Ok(())
        } else {
            Err(TokenizeError::BadToken { token, n_vocab })
        }
    }

    /// The bytes of one token. A piece may be an incomplete UTF-8 sequence (byte tokens);
    /// use [`PieceDecoder`] to stream text.
    ///
    /// # Errors
    /// See [`TokenizeError`]: each variant says what was wrong.
    pub fn token_to_piece(
        &self,
        token: Token,
        render_special: bool,
    ) -> Result<Vec<u8>, TokenizeError> {
        self.check_tokenizer()?;
        self.check_token(token)?;
        let mut buf = vec![0u8; 64];
        loop {
            let cap = i32::try_from(buf.len()).unwrap_or(i32::MAX);
            // SAFETY: `buf` is writable for `cap` bytes; the token id was checked.
            let n = unsafe {
                shim::acap_llama_token_to_piece(
                    self.vocab_ptr(),
                    token,
                    buf.as_mut_ptr().cast::<c_char>(),
                    cap,
                    0,
                    render_special,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            if n == shim::THREW {
                return Err(TokenizeError::Exception {
                    call: "llama_token_to_piece",
                    message: shim::exception(),
                });
            }
            buf.resize((-n) as usize, 0);
        }
    }

    /// Converts tokens back to text (invalid UTF-8 replaced). `render_special` keeps special
    /// tokens as their text (`<|eot_id|>`); otherwise they are dropped.
    ///
    /// # Errors
    /// See [`TokenizeError`]: each variant says what was wrong.
    pub fn detokenize(
        &self,
        tokens: &[Token],
        render_special: bool,
    ) -> Result<String, TokenizeError> {
        self.check_tokenizer()?;
        for &t in tokens {
            self.check_token(t)?;
        }
        let n_tokens = i32::try_from(tokens.len())
            .map_err(|_| TokenizeError::TooLong { len: tokens.len() })?;
        let mut buf = vec![0u8; tokens.len() * 8 + 16];
        loop {
            let cap = i32::try_from(buf.len()).unwrap_or(i32::MAX);
            // SAFETY: `tokens` is readable for `n_tokens` ids (all checked), `buf` writable
            // for `cap` bytes.
            let n = unsafe {
                shim::acap_llama_detokenize(
                    self.vocab_ptr(),
                    tokens.as_ptr(),
                    n_tokens,
                    buf.as_mut_ptr().cast::<c_char>(),
                    cap,
                    false,
                    render_special,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return Ok(String::from_utf8_lossy(&buf).into_owned());
            }
            if n == shim::THREW {
                return Err(TokenizeError::Exception {
                    call: "llama_detokenize",
                    message: shim::exception(),
                });
            }
            buf.resize((-n) as usize, 0);
        }
    }
}

/// Turns a stream of token pieces into text without ever emitting half a UTF-8 character:
/// bytes of an incomplete sequence are held back until the rest arrives.
#[derive(Debug, Default, Clone)]
pub struct PieceDecoder {
    pending: Vec<u8>,
}

impl PieceDecoder {
    /// A decoder with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a piece and returns the text that is now complete.
    pub fn push(&mut self, piece: &[u8]) -> String {
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The first `valid` bytes are valid UTF-8 by definition.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete at the end: keep it for the next piece.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Invalid bytes can never complete: replace them and go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: whatever is still pending is invalid and becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.clear();
            char::REPLACEMENT_CHARACTER.to_string()
        }
    }
}
