//! A byte-level BPE vocabulary in the GPT-2 / Llama 3 style: 256 byte tokens, merges learned
//! from a built-in text, and the Llama 3 special tokens.

use std::collections::HashMap;

/// The Llama 3 special tokens, in Llama 3's order (control tokens).
pub const SPECIAL_TOKENS: [&str; 11] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
];

/// Text the merges are learned from: English chat-like prose, so common words become tokens.
const CORPUS: &str = "You are a helpful assistant. The user asks a question and the assistant \
answers it with care. Hello, how are you today? I am fine, thank you. What is the capital of \
France? The capital of France is Paris. Please explain how this works in simple terms. \
I think that we should consider the consequences of our actions before we act. Compassion \
and honesty are values that matter to people. Tell me a story about a cat and a dog. \
Once upon a time there was a small cat who lived in a house with a big dog. They were \
friends and they played in the garden every day. Can you help me with my homework? \
Of course, I would be happy to help you with that. Let us think step by step about the \
problem. The answer is that it depends on the context of the question. Thank you for \
asking. This is important because it reduces suffering and helps everyone involved.";

/// GPT-2's reversible map from bytes to printable characters.
pub fn byte_to_char() -> [char; 256] {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut chars = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    let mut out = ['\0'; 256];
    for (b, c) in printable.iter().zip(chars) {
        out[*b as usize] = char::from_u32(c).expect("valid scalar");
    }
    out
}

/// The vocabulary: token strings, their types (1 normal, 3 control) and the merges.
pub struct Vocab {
    /// Token strings, id order.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type` values.
    pub token_types: Vec<i32>,
    /// Merges as `"left right"`.
    pub merges: Vec<String>,
}

impl Vocab {
    /// Id of a token string.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.tokens
            .iter()
            .position(|t| t == token)
            .map(|i| i as u32)
    }
}

/// Builds the vocabulary with `n_merges` merges learned greedily (most frequent pair first,
/// ties broken by the pair's text) from the built-in corpus.
pub fn build(n_merges: usize) -> Vocab {
    let map = byte_to_char();
    let mut tokens: Vec<String> = map.iter().map(|c| c.to_string()).collect();
    // Words as GPT-2 pre-tokenises them: a leading space belongs to the next word.
    let mut words: Vec<Vec<String>> = Vec::new();
    for (i, w) in CORPUS.split(' ').enumerate() {
        let text = if i == 0 {
            w.to_owned()
        } else {
            format!(" {w}")
        };
        words.push(text.bytes().map(|b| map[b as usize].to_string()).collect());
    }
    let mut merges = Vec::new();
    while merges.len() < n_merges {
        let mut counts: HashMap<(String, String), usize> = HashMap::new();
        for w in &words {
            for pair in w.windows(2) {
                *counts
                    .entry((pair[0].clone(), pair[1].clone()))
                    .or_default() += 1;
            }
        }
        let Some(((a, b), _)) = counts
            .into_iter()
            .max_by(|(pa, ca), (pb, cb)| ca.cmp(cb).then_with(|| pb.cmp(pa)))
        else {
            break;
        };
        let joined = format!("{a}{b}");
        for w in &mut words {
            let mut i = 0;
            while i + 1 < w.len() {
                if w[i] == a && w[i + 1] == b {
                    w[i] = joined.clone();
                    w.remove(i + 1);
                }
                i += 1;
            }
        }
        merges.push(format!("{a} {b}"));
        tokens.push(joined);
    }
    let mut token_types = vec![1; tokens.len()];
    for s in SPECIAL_TOKENS {
        tokens.push(s.to_owned());
        token_types.push(3);
    }
    Vocab {
        tokens,
        token_types,
        merges,
    }
}
