//! Writing a random-weight Llama-architecture GGUF that llama.cpp loads like a real model.

use std::path::Path;

use acap_gguf::{GgmlType, GgufWriter, WriteError, f32_to_f16};

use crate::rng::Rng;
use crate::vocab;

/// A Llama 3.1-style chat template (the tool-calling parts left out). llama.cpp recognises it
/// by its header markers and renders with its built-in `llama3` format, as for the real model.
pub const LLAMA31_CHAT_TEMPLATE: &str = concat!(
    "{{- bos_token }}\n",
    "{%- if messages[0]['role'] == 'system' %}",
    "{%- set system_message = messages[0]['content']|trim %}",
    "{%- set messages = messages[1:] %}",
    "{%- else %}{%- set system_message = \"\" %}{%- endif %}\n",
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}",
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}",
    "{{- \"Today Date: 26 Jul 2024\\n\\n\" }}",
    "{{- system_message }}{{- \"<|eot_id|>\" }}\n",
    "{%- for message in messages %}",
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'",
    "+ message['content'] | trim + '<|eot_id|>' }}",
    "{%- endfor %}\n",
    "{%- if add_generation_prompt %}",
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}",
    "{%- endif %}\n",
);

/// The llama.cpp architecture a test model is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// `llama` (Llama 2/3).
    Llama,
    /// `qwen2`: the Llama layout plus q/k/v biases, a different graph builder in llama.cpp.
    Qwen2,
}

impl Arch {
    /// The `general.architecture` value and metadata key prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
        }
    }
}

/// The shape and seed of a test model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    /// Preset name, used in file names.
    pub name: &'static str,
    /// Architecture.
    pub arch: Arch,
    /// Hidden size (a multiple of 256 so K-quants apply).
    pub n_embd: u32,
    /// Decoder blocks.
    pub n_layer: u32,
    /// Feed-forward size (a multiple of 256).
    pub n_ff: u32,
    /// Attention heads.
    pub n_head: u32,
    /// Key/value heads (grouped-query attention).
    pub n_head_kv: u32,
    /// Training context length written to the metadata.
    pub n_ctx_train: u32,
    /// BPE merges learned from the built-in text.
    pub n_merges: usize,
    /// Total vocabulary size; reserved control tokens fill the gap (0: no padding).
    pub n_vocab: u32,
    /// Seed of every weight.
    pub seed: u64,
}

impl ModelSpec {
    /// n_embd 256, 8 blocks, real K-quants, a few MB: for tests.
    pub fn tiny() -> Self {
        Self {
            name: "tiny",
            arch: Arch::Llama,
            n_embd: 256,
            n_layer: 8,
            n_ff: 768,
            n_head: 4,
            n_head_kv: 2,
            n_ctx_train: 4096,
            n_merges: 256,
            n_vocab: 0,
            seed: 0xacab_0001,
        }
    }

    /// n_embd 2048, 16 blocks, about 1B parameters: for benchmarks.
    pub fn small() -> Self {
        Self {
            name: "small",
            arch: Arch::Llama,
            n_embd: 2048,
            n_layer: 16,
            n_ff: 8192,
            n_head: 32,
            n_head_kv: 8,
            n_ctx_train: 8192,
            n_merges: 256,
            n_vocab: 32768,
            seed: 0xacab_0002,
        }
    }

    /// The Llama-3.1-8B shape: n_embd 4096, 32 blocks, n_ff 14336, 32/8 heads, vocab 128256.
    pub fn llama8b() -> Self {
        Self {
            name: "llama8b",
            arch: Arch::Llama,
            n_embd: 4096,
            n_layer: 32,
            n_ff: 14336,
            n_head: 32,
            n_head_kv: 8,
            n_ctx_train: 131_072,
            n_merges: 256,
            n_vocab: 128_256,
            seed: 0xacab_0008,
        }
    }

    /// The tiny shape with the Qwen2 architecture (q/k/v biases, llama.cpp's qwen2 graph).
    pub fn tiny_qwen2() -> Self {
        Self {
            name: "tiny-qwen2",
            arch: Arch::Qwen2,
            seed: 0xacab_0102,
            ..Self::tiny()
        }
    }

    /// A preset by name (`tiny`, `tiny-qwen2`, `small`, `llama8b`).
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny()),
            "tiny-qwen2" => Some(Self::tiny_qwen2()),
            "small" => Some(Self::small()),
            "llama8b" => Some(Self::llama8b()),
            _ => None,
        }
    }

    fn n_embd_kv(&self) -> u32 {
        self.n_embd / self.n_head * self.n_head_kv
    }
}

/// How a weight matrix is filled.
#[derive(Clone)]
enum Fill {
    /// Uniform with the given half-width.
    Uniform(f32),
    /// All ones (norm weights).
    Ones,
    /// Uniform rows of `row_len`, except rows marked `true`, which are zero (their logit is
    /// always 0, far below the likely tokens).
    Rows {
        scale: f32,
        row_len: u64,
        zero: Vec<bool>,
    },
}

/// Writes the model with F16 matrices and F32 norms (the source for quantisation).
///
/// # Errors
/// See [`WriteError`]: each variant says what was wrong.
pub fn write_model(spec: &ModelSpec, path: &Path) -> Result<(), WriteError> {
    let vocab = vocab::build(spec.n_merges);
    let mut tokens = vocab.tokens;
    let mut token_types = vocab.token_types;
    let mut reserved = 3;
    while (tokens.len() as u32) < spec.n_vocab {
        tokens.push(format!("<|reserved_special_token_{reserved}|>"));
        token_types.push(3);
        reserved += 1;
    }
    let n_vocab = tokens.len() as u64;
    let id = |t: &str| tokens.iter().position(|x| x == t).expect("special token") as u32;
    let (bos, eot) = (id("<|begin_of_text|>"), id("<|eot_id|>"));

    let arch = spec.arch.name();
    let mut w = GgufWriter::new();
    w.set("general.architecture", arch)?;
    w.set("general.name", format!("acap-testkit {}", spec.name))?;
    w.set("general.file_type", 1u32)?;
    w.set(format!("{arch}.context_length"), spec.n_ctx_train)?;
    w.set(format!("{arch}.embedding_length"), spec.n_embd)?;
    w.set(format!("{arch}.block_count"), spec.n_layer)?;
    w.set(format!("{arch}.feed_forward_length"), spec.n_ff)?;
    w.set(format!("{arch}.attention.head_count"), spec.n_head)?;
    w.set(format!("{arch}.attention.head_count_kv"), spec.n_head_kv)?;
    w.set(format!("{arch}.rope.freq_base"), 500_000.0f32)?;
    w.set(
        format!("{arch}.rope.dimension_count"),
        spec.n_embd / spec.n_head,
    )?;
    w.set(format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-5f32)?;
    w.set(format!("{arch}.vocab_size"), n_vocab as u32)?;
    w.set("tokenizer.ggml.model", "gpt2")?;
    let pre = match spec.arch {
        Arch::Llama => "llama-bpe",
        Arch::Qwen2 => "qwen2",
    };
    w.set("tokenizer.ggml.pre", pre)?;
    w.set("tokenizer.ggml.tokens", tokens)?;
    w.set("tokenizer.ggml.token_type", token_types.clone())?;
    w.set("tokenizer.ggml.merges", vocab.merges)?;
    w.set("tokenizer.ggml.bos_token_id", bos)?;
    w.set("tokenizer.ggml.eos_token_id", eot)?;
    w.set("tokenizer.ggml.add_bos_token", true)?;
    w.set("tokenizer.chat_template", LLAMA31_CHAT_TEMPLATE)?;

    let (e, kv, ff) = (
        u64::from(spec.n_embd),
        u64::from(spec.n_embd_kv()),
        u64::from(spec.n_ff),
    );
    let fan_in = |n: u64| (3.0 / n as f32).sqrt();
    // Output rows scaled so logits have a standard deviation of about 8: greedy decoding then
    // has clear margins that small numeric differences (quantisation, threads) do not flip.
    let output_scale = 8.0 * 3.0f32.sqrt() / (e as f32).sqrt();
    let uniform = |n: u64| Fill::Uniform(fan_in(n));
    add(
        &mut w,
        spec.seed,
        "token_embd.weight",
        &[e, n_vocab],
        Fill::Uniform(1.0),
    )?;
    for l in 0..spec.n_layer {
        let mut block = vec![
            ("attn_norm.weight", vec![e], Fill::Ones),
            ("attn_q.weight", vec![e, e], uniform(e)),
            ("attn_k.weight", vec![e, kv], uniform(e)),
            ("attn_v.weight", vec![e, kv], uniform(e)),
        ];
        if spec.arch == Arch::Qwen2 {
            block.extend([
                ("attn_q.bias", vec![e], Fill::Uniform(0.1)),
                ("attn_k.bias", vec![kv], Fill::Uniform(0.1)),
                ("attn_v.bias", vec![kv], Fill::Uniform(0.1)),
            ]);
        }
        block.extend([
            ("attn_output.weight", vec![e, e], uniform(e)),
            ("ffn_norm.weight", vec![e], Fill::Ones),
            ("ffn_gate.weight", vec![e, ff], uniform(e)),
            ("ffn_up.weight", vec![e, ff], uniform(e)),
            ("ffn_down.weight", vec![ff, e], uniform(ff)),
        ]);
        for (name, dims, fill) in block {
            add(&mut w, spec.seed, &format!("blk.{l}.{name}"), &dims, fill)?;
        }
    }
    add(&mut w, spec.seed, "output_norm.weight", &[e], Fill::Ones)?;
    // Greedy text stays readable: single bytes that are not printable ASCII (or a newline)
    // and the control tokens get zero output rows, so they are (almost) never picked.
    let zero = (0..n_vocab as usize)
        .map(|t| match t {
            0..=255 => !(t == usize::from(b'\n') || (0x20..0x7f).contains(&t)),
            _ => token_types[t] != 1,
        })
        .collect();
    let rows = Fill::Rows {
        scale: output_scale,
        row_len: e,
        zero,
    };
    add(&mut w, spec.seed, "output.weight", &[e, n_vocab], rows)?;
    w.write_file(path)?;
    Ok(())
}

/// Adds one tensor whose data is generated while the file is written (F32 for vectors, F16
/// for matrices), so even the 8B shape never sits in memory.
fn add(
    w: &mut GgufWriter,
    seed: u64,
    name: &str,
    dims: &[u64],
    fill: Fill,
) -> Result<(), WriteError> {
    let n: u64 = dims.iter().product();
    let ty = if dims.len() == 1 {
        GgmlType::F32
    } else {
        GgmlType::F16
    };
    let mut rng = Rng::for_tensor(seed, name);
    w.add_deferred(
        name,
        dims,
        ty,
        Box::new(move |out| {
            const CHUNK: u64 = 1 << 16;
            let mut buf = Vec::with_capacity(CHUNK as usize * 4);
            let mut i = 0u64;
            while i < n {
                buf.clear();
                for _ in 0..(n - i).min(CHUNK) {
                    let v = match &fill {
                        Fill::Uniform(a) => rng.uniform() * a,
                        Fill::Ones => 1.0,
                        Fill::Rows {
                            scale,
                            row_len,
                            zero,
                        } => {
                            let r = rng.uniform() * scale;
                            if zero[(i / row_len) as usize] { 0.0 } else { r }
                        }
                    };
                    i += 1;
                    match ty {
                        GgmlType::F32 => buf.extend_from_slice(&v.to_le_bytes()),
                        _ => buf.extend_from_slice(&f32_to_f16(v).to_le_bytes()),
                    }
                }
                out.write_all(&buf)?;
            }
            Ok(())
        }),
    )
}
