//! Reading hidden states: prompts rendered with the chat template, decoded several at a time as
//! separate sequences, the last token's block outputs captured through the observer.

use super::*;

/// Renders and tokenizes every (prompt, condition) pair: the chat prompt with the generation
/// header, cut to `max_tokens`.
pub(super) fn render(
    model: &Model,
    prompt: &str,
    system: Option<&str>,
    p: &ExtractParams,
) -> Result<Vec<Token>, ExtractError> {
    let mut msgs = Vec::new();
    if let Some(s) = system.filter(|s| !s.is_empty()) {
        msgs.push(ChatMessage::system(s));
    }
    msgs.push(ChatMessage::user(prompt));
    let text = model.apply_chat_template(&msgs, true, p.template.as_deref())?;
    let mut tokens = model.tokenize(&text, Special::PROMPT)?;
    tokens.truncate(p.max_tokens.max(1));
    Ok(tokens)
}

/// Rows captured by the observer during one batch: `[sequence][layer] -> hidden state`.
struct Capture {
    /// Index of each sequence's last token in the batch.
    last_rows: Vec<usize>,
    /// Tokens in the batch.
    total: usize,
    out: Vec<Vec<Vec<f32>>>,
    error: Option<String>,
}

/// The last token's output of every block for each token sequence, decoding up to
/// `batch_sequences` sequences (and `batch_tokens` tokens) together.
pub(super) fn last_token_states(
    session: &mut Session,
    n_layer: u32,
    seqs: &[Vec<Token>],
    batch_sequences: usize,
    batch_tokens: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<Vec<f32>>>, ExtractError> {
    let capture = Arc::new(Mutex::new(Capture {
        last_rows: Vec::new(),
        total: 0,
        out: Vec::new(),
        error: None,
    }));
    let sink = capture.clone();
    let layers: Vec<u32> = (0..n_layer).collect();
    session.set_observer(&layers, move |o| {
        let mut c = sink.lock().unwrap_or_else(|e| e.into_inner());
        let n = o.n_rows();
        let rows: Vec<usize> = if n == c.total {
            c.last_rows.clone()
        } else if n == c.last_rows.len() {
            (0..n).collect()
        } else {
            c.error = Some(format!(
                "block {} offered {n} rows for {} tokens in {} sequences",
                o.layer,
                c.total,
                c.last_rows.len()
            ));
            return;
        };
        for (s, r) in rows.into_iter().enumerate() {
            c.out[s][o.layer as usize] = o.row(r).to_vec();
        }
    });
    let mut result = Vec::with_capacity(seqs.len());
    let mut start = 0;
    let outcome = (|| {
        while start < seqs.len() {
            // Greedy packing: as many sequences as fit the limits (at least one).
            let mut end = start + 1;
            let mut tokens = seqs[start].len();
            while end < seqs.len()
                && end - start < batch_sequences
                && tokens + seqs[end].len() <= batch_tokens
            {
                tokens += seqs[end].len();
                end += 1;
            }
            let batch: Vec<&[Token]> = seqs[start..end].iter().map(Vec::as_slice).collect();
            {
                let mut c = capture.lock().unwrap_or_else(|e| e.into_inner());
                let mut at = 0;
                c.last_rows = batch
                    .iter()
                    .map(|s| {
                        at += s.len();
                        at - 1
                    })
                    .collect();
                c.total = tokens;
                c.out = vec![vec![Vec::new(); n_layer as usize]; batch.len()];
            }
            session.decode_sequences(&batch)?;
            let mut c = capture.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = c.error.take() {
                return Err(ExtractError::Layout(e));
            }
            for states in std::mem::take(&mut c.out) {
                if states.iter().any(Vec::is_empty) {
                    return Err(ExtractError::Layout(
                        "a block's output was not observed".into(),
                    ));
                }
                result.push(states);
            }
            start = end;
            progress(start, seqs.len());
        }
        Ok(())
    })();
    session.clear_observer();
    outcome.map(|()| result)
}

/// A session for reading hidden states: uncapped, several sequences per batch.
pub(super) fn state_session(
    model: &Model,
    p: &ExtractParams,
    longest: usize,
) -> Result<Session, ExtractError> {
    let batch_tokens = (p.batch_tokens as usize).max(longest) as u32;
    let params = SessionParams {
        n_ctx: batch_tokens,
        n_batch: batch_tokens,
        n_ubatch: batch_tokens,
        n_threads: p.threads,
        n_threads_batch: p.threads,
        n_seq_max: p.batch_sequences.max(1),
        // Flash attention's CPU results depend on where a sequence sits in the shared cache;
        // without it, batched and one-by-one extraction give identical states (to rounding:
        // on some CPUs, seen on AMD EPYC with AVX2, llama.cpp's attention over an F16 cache
        // picks kernels by cache size and batched states differ by up to 7e-4 relative).
        flash_attention: Some(false),
        ..SessionParams::default()
    };
    Ok(Session::new(model, params)?)
}
