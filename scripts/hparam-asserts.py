#!/usr/bin/env python3
"""Derives, from the vendored llama.cpp, which architectures' graph builders assert the head
sizes, and writes (or checks) the table in src/hparams/head_asserts.rs.

    python3 scripts/hparam-asserts.py            # rewrite the table
    python3 scripts/hparam-asserts.py --check    # exit 1 when the table is out of date

llama.cpp aborts the whole process (GGML_ASSERT) when a graph builder's head-size assertion
fails, at the first decode. The two that nearly every builder makes, with
`n_embd_head = hparams.n_embd_head_v()`:
    GGML_ASSERT(n_embd_head == hparams.n_embd_head_k());   -> value_length == key_length
    GGML_ASSERT(n_embd_head == n_rot);                       -> rope.dimension_count == value_length
The architecture names come from llama-arch.cpp (LLM_ARCH_X -> "name"), the class that builds
each one from llama-model.cpp's llama_model_mapping (LLM_ARCH_X -> llama_model_y), and the
asserts from the class's graph constructors in src/models/*.cpp (a class that defines no graph
of its own uses its base class's, from models.h).

Every other `GGML_ASSERT` in src/models/*.cpp is accounted for in src/hparams/arch_asserts.rs:
either checked natively (ARCH_CHECKS below: the assertion as written, the classes that reach
it, and the check on the GGUF keys it stands for), or left unchecked with the reason
(UNCHECKED), or of a kind no header value reaches on acap's path (EXCLUDED: tensor presence
and shapes, which llama.cpp checks with a catchable error first; batch and memory state; the
MTP graphs, which only a context of type MTP builds and acap never creates one). An assertion
in none of these fails `--check`, so a new one in a new pin is seen, not silently skipped.

The same holds for llama-model.cpp, llama-graph.cpp and llama-vocab.cpp (SRC_ACCOUNTED), the
src/ files whose assertions take header values, and, with every assertion listed by hand
(STRICT: no EXCLUDED pattern applies), for the context, the KV and recurrent caches and the
model loader. A `code:` row names code rather than an assertion: a division by a header value,
or a call that hands one to a ggml op asserting on it (ggml.c). Generated besides: src/hparams/rope_types.rs
(llama_model_rope_type: which architectures run RoPE, which multi-section RoPE), and a check
that the BPE add_bos lists of src/hparams/vocab.rs match llama-vocab.cpp. A class that takes
another's graph by `using graph = ...;` (models.h) gets that graph's assertions.
"""

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "hparams" / "head_asserts.rs"
ARCH_OUT = ROOT / "src" / "hparams" / "arch_asserts.rs"
ROPE_OUT = ROOT / "src" / "hparams" / "rope_types.rs"


def vendored():
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"], cwd=ROOT,
        check=True, capture_output=True, text=True).stdout)
    pkg = next(p for p in meta["packages"] if p["name"] == "llama-cpp-sys-2")
    return Path(pkg["manifest_path"]).parent / "llama.cpp" / "src", pkg["version"]


def KV_FORMS(head_v, head_k):
    """The ways a graph builder writes `n_embd_head_v == n_embd_head_k`."""
    forms = [r"GGML_ASSERT\(\s*hparams\.n_embd_head_v\(\)\s*==\s*hparams\.n_embd_head_k\(\)\s*\)"]
    if head_v:
        forms.append(r"GGML_ASSERT\(\s*n_embd_head\s*==\s*hparams\.n_embd_head_k\(\)\s*\)")
    if head_k:
        forms.append(r"GGML_ASSERT\(\s*n_embd_head\s*==\s*hparams\.n_embd_head_v\(\)\s*\)")
    return forms


@functools.lru_cache(maxsize=None)
def read(path):
    """A vendored source file's text, read once."""
    return path.read_text()


@functools.lru_cache(maxsize=None)
def arch_names(src):
    """LLM_ARCH_X -> its `general.architecture` name, from llama-arch.cpp."""
    return dict(re.findall(r'\{\s*(LLM_ARCH_\w+)\s*,\s*"([^"]+)"\s*\}', read(src / "llama-arch.cpp")))


def function_body(text, start):
    """The text of the function that begins at `start`, to its closing brace in column 0."""
    body = text[text.index(start):]
    return body[:body.index("\n}\n")]


def case_archs(src, text):
    """The architecture names of the `case LLM_ARCH_X:` labels in `text`."""
    names = arch_names(src)
    return {names[a] for a in re.findall(r"case\s+(LLM_ARCH_\w+)\s*:", text) if a in names}


def derive(src):
    names = arch_names(src)
    body = function_body(read(src / "llama-model.cpp"), "llama_model_mapping(")
    arch_class = dict(re.findall(r"case\s+(LLM_ARCH_\w+)\s*:\s*return\s+new\s+(\w+)\(", body))
    models_h = read(src / "models" / "models.h")
    bases = dict(re.findall(r"struct\s+(llama_model_\w+)\s*:\s*public\s+(llama_model_\w+)", models_h))
    # A class may take another's graph builder outright (`using graph = llama_model_granite::graph;`
    # in minicpm and granite_moe): that graph's assertions are its own.
    graph_of = {}
    for m in re.finditer(r"struct\s+(llama_model_\w+)\s*:\s*public\s+llama_model_\w+\s*\{(.*?)\n\};", models_h, re.S):
        alias = re.search(r"using\s+graph\s*=\s*(llama_model_\w+)::graph\b", m.group(2))
        if alias:
            graph_of[m.group(1)] = alias.group(1)
    asserts = {}  # class -> set of the two asserts its graph constructors make
    for path in sorted((src / "models").glob("*.cpp")):
        text = read(path)
        for m in re.finditer(r"^(?:template\s*<[^>]*>\s*)?(llama_model_\w+)::graph(?:<[^>]*>)?::graph\(",
                             text, re.M):
            end = text.find("\n}\n", m.end())
            region = text[m.end():end if end > 0 else len(text)]
            head_v = re.search(r"n_embd_head\s*=\s*hparams\.n_embd_head_v\(\)", region)
            head_k = re.search(r"n_embd_head\s*=\s*hparams\.n_embd_head_k\(\)", region)
            found = asserts.setdefault(m.group(1), set())
            if any(re.search(p, region) for p in KV_FORMS(head_v, head_k)):
                found.add("kv")
            if head_v and re.search(r"GGML_ASSERT\(\s*n_embd_head\s*==\s*n_rot\s*\)", region):
                found.add("rot")
    class_archs = {}
    for arch, cls in arch_class.items():
        if arch in names:
            class_archs.setdefault(cls, []).append(names[arch])
    table = {}
    for arch, cls in arch_class.items():
        c = cls
        while c not in asserts and (c in graph_of or c in bases):
            c = graph_of.get(c) or bases[c]
        got = asserts.get(c, set())
        if got and arch in names:
            table[names[arch]] = got
    return table, class_archs, bases, graph_of


def render(table, version):
    kv = sorted(a for a, s in table.items() if "kv" in s)
    rot = sorted(a for a, s in table.items() if "rot" in s)

    def lines(xs):
        return "".join(f'    "{x}",\n' for x in xs)

    return f"""//! Which architectures' graph builders assert the head sizes (generated by
//! `scripts/hparam-asserts.py` from the vendored llama.cpp of llama-cpp-sys-2 {version}; do not
//! edit, rerun it when the pin moves: `scripts/test.sh` checks that it is current).

/// Architectures whose graph builder asserts `n_embd_head_v == n_embd_head_k`
/// (`attention.value_length` == `attention.key_length`, both defaulting to
/// `embedding_length / attention.head_count`).
pub(super) const VALUE_EQUALS_KEY: &[&str] = &[
{lines(kv)}];

/// Architectures whose graph builder asserts `n_embd_head_v == n_rot`
/// (`rope.dimension_count`, defaulting to the key size, == `attention.value_length`).
pub(super) const ROPE_EQUALS_VALUE: &[&str] = &[
{lines(rot)}];
"""


# --- Every other assertion in src/models/*.cpp ------------------------------------------------

def K(suffix, default="required"):
    """A GGUF key `{arch}.{suffix}` and what llama.cpp takes when the file lacks it: "required"
    (llama.cpp refuses the file itself, catchably, so there is nothing to check), an integer,
    another key's suffix, or "head" (embedding_length / attention.head_count)."""
    if default == "required":
        return f'required("{suffix}")'
    if default == "head":
        return f'or_head_size("{suffix}")'
    if isinstance(default, int):
        return f'or_int("{suffix}", {default})'
    return f'or_key("{suffix}", "{default}")'

def FLAG(suffix, default):
    """A boolean key and llama.cpp's value for it when absent."""
    return f'flag("{suffix}", {str(default).lower()})'


def FK(suffix, default=None):
    """A float key and llama.cpp's value for it when absent (None: required)."""
    return f'float_key("{suffix}", {"None" if default is None else f"Some({float(default)!r})"})'


KEY_LEN = K("attention.key_length", "head")
VALUE_LEN = K("attention.value_length", "head")
ROPE = K("rope.dimension_count", "attention.key_length")
EXPERTS = K("expert_count", 0)
USED = K("expert_used_count", 0)
INNER = K("ssm.inner_size")
DT_RANK = K("ssm.time_step_rank")
GROUPS = K("ssm.group_count")
STATE = K("ssm.state_size")
MLA_K = K("attention.key_length_mla", 0)
MLA_V = K("attention.value_length_mla", 0)
# n_embd_head_k_mla(): the MLA key size, else the plain key size.
MLA_KEY_SIZE = K("attention.key_length_mla", "attention.key_length")
INDEXER_K = K("attention.indexer.key_length")
SHIFTS = K("token_shift_count", 2)
HEAD = K("@head", "head")  # embedding_length / attention.head_count itself

BLOCKS = K("block_count")
KV_HEADS = K("attention.head_count_kv", "attention.head_count")
RECURRENT_FLAGS = "attention.recurrent_layers"
HEAD_SIZE_RWKV = K("wkv.head_size")
HRM = [K("hrm.layers_per_stack"), K("hrm.h_cycles"), K("hrm.l_cycles")]
LOOPS = K("num_loops", 1)
KPOOL = K("attention.indexer.kpool")
# llama.cpp's LLAMA_MAX_LAYERS (src/llama-hparams.h).
MAX_LAYERS = 512


def EVERY(default):
    """full_attention_interval, each default-th block being an attention block."""
    return K("full_attention_interval", default)


def SWA(pattern, when):
    return [f"Need::SomeSwa(SwaPattern::{pattern}, SwaWhen::{when})"]


def HYBRID(layers):
    return [f"Need::Hybrid({layers})"]


MOE = [f"Need::Min({EXPERTS}, 1)", f"Need::Min({USED}, 1)"]
IS_MLA = [f"Need::Min({MLA_K}, 1)", f"Need::Min({MLA_V}, 1)"]
ROPE_IN_INDEXER = [f"Need::AtMost({ROPE}, {INDEXER_K})"]
QK_NOPE = [f"Need::Below({ROPE}, {MLA_KEY_SIZE})"]
V_HEADS_PER_K = [f"Need::Divides({DT_RANK}, {GROUPS})"]
# head_v_dim = d_inner / num_v_heads (graph) against head_k_dim = d_state.
V_HEAD_IS_STATE = [f"Need::Product({STATE}, {DT_RANK}, {INNER})"]
GATED_DELTA = ["qwen3next", "qwen35", "qwen35moe", "qwen4exp", "clef"]

# (file, the assertion as written, classes whose models reach it, the checks it stands for).
# A class name also covers its subclasses (models.h); "*" is every architecture.
# What a `code:` row's fragment does on a bad value when it is not a division: the ggml
# assertion it reaches, (file under the vendored tree, condition).
CAN_MUL_MAT = ("ggml/src/ggml.c", "ggml_can_mul_mat(a, b)")
RESHAPE_2D = ("ggml/src/ggml.c", "ggml_nelements(a) == ne0*ne1")
RESHAPE_3D = ("ggml/src/ggml.c", "ggml_nelements(a) == ne0*ne1*ne2")
# Hyper-connections' Sinkhorn normalisation (deepseek4, glm5-next): the call and its need.
HC_COMB = ("code:ggml_dsv4_hc_comb(ctx0, mixes, hc_scale, hc_base, hparams.dsv4_hc_eps, "
           "(int32_t) hparams.dsv4_hc_sinkhorn_iters)")
SINKHORN_PASSES = [f'Need::Min({K("hyper_connection.sinkhorn_iterations")}, 1)']
ARCH_CHECKS = [
    ("llama-model.cpp", "hparams.n_layer_nextn <= hparams.n_layer_all", ["*"],
     [f'Need::AtMost({K("nextn_predict_layers", 0)}, {K("block_count")})']),
    ("llama-model.cpp", "hparams.posnet.n_layer <= hparams.n_layer_all", ["wavtokenizer_dec"],
     [f'Need::AtMost({K("posnet.block_count")}, {K("block_count")})']),
    ("llama-model.cpp", "hparams.convnext.n_layer <= hparams.n_layer_all", ["wavtokenizer_dec"],
     [f'Need::AtMost({K("convnext.block_count")}, {K("block_count")})']),
    ("wavtokenizer-dec.cpp", "hparams.posnet.n_embd == hparams.convnext.n_embd", ["wavtokenizer_dec"],
     [f'Need::Equal({K("posnet.embedding_length")}, {K("convnext.embedding_length")})']),
    # Mixture-of-experts builders that need experts.
    ("bailingmoe2.cpp", 'n_expert > 0 && "n_expert must be > 0 for bailingmoe2"', ["bailingmoe2"], MOE[:1]),
    ("bailingmoe2.cpp", 'n_expert_used > 0 && "n_expert_used must be > 0 for bailingmoe2"', ["bailingmoe2"], MOE[1:]),
    ("glm4-moe.cpp", 'hparams.n_expert > 0 && "n_expert must be > 0 for GLM4_MOE MoE layers"', ["glm4_moe"], MOE[:1]),
    ("glm4-moe.cpp", 'hparams.n_expert_used() > 0 && "n_expert_used must be > 0 for GLM4_MOE MoE layers"', ["glm4_moe"], MOE[1:]),
    ("grovemoe.cpp", 'n_expert > 0 && "n_expert must be > 0 for GROVEMOE"', ["grovemoe"], MOE[:1]),
    ("grovemoe.cpp", 'n_expert_used > 0 && "n_expert_used must be > 0 for GROVEMOE"', ["grovemoe"], MOE[1:]),
    ("grovemoe.cpp", 'hparams.n_group_experts > 0 && "n_group_experts must be > 0 for GROVEMOE"', ["grovemoe"],
     [f'Need::Min({K("experts_per_group")}, 1)']),
    ("llada-moe.cpp", 'n_expert > 0 && "n_expert must be > 0 for llada-moe"', ["llada_moe"], MOE[:1]),
    ("llada-moe.cpp", 'n_expert_used > 0 && "n_expert_used must be > 0 for llada-moe"', ["llada_moe"], MOE[1:]),
    ("smallthinker.cpp", 'n_expert > 0 && "n_expert must be > 0 for SMALLTHINKER"', ["smallthinker"], MOE[:1]),
    ("smallthinker.cpp", 'n_expert_used > 0 && "n_expert_used must be > 0 for SMALLTHINKER"', ["smallthinker"], MOE[1:]),
    ("ernie4-5-moe.cpp", 'hparams.n_moe_layer_step > 0 && "Ernie 4.5 MoE requires n_moe_layer_step > 0"',
     ["ernie4_5_moe"], [f'Need::Min({K("interleave_moe_layer_step")}, 1)']),
    # LFM2: layers from leading_dense_block_count on are MoE layers (lfm2 defaults it to all).
    ("lfm2.cpp", "n_expert && n_expert_used", ["lfm2"],
     [f'Need::MinWhenBelow({EXPERTS}, 1, {K("leading_dense_block_count", "block_count")}, {K("block_count")})']),
    ("lfm2moe.cpp", "n_expert && n_expert_used", ["lfm2moe"],
     [f'Need::MinWhenBelow({EXPERTS}, 1, {K("leading_dense_block_count", 0)}, {K("block_count")})']),
    ("lfm2.cpp", "n_embd_v_gqa == n_embd_k_gqa", ["lfm2"], [f"Need::Equal({VALUE_LEN}, {KEY_LEN})"]),
    ("lfm2moe.cpp", "n_embd_v_gqa == n_embd_k_gqa", ["lfm2moe"], [f"Need::Equal({VALUE_LEN}, {KEY_LEN})"]),
    ("lfm2.cpp", "hparams.n_embd_v_gqa(il) == hparams.n_embd_k_gqa(il)", ["lfm2", "lfm2moe"],
     [f"Need::Equal({VALUE_LEN}, {KEY_LEN})"]),
    ("lfm2.cpp", "hparams.n_shortconv_l_cache > 1", ["lfm2", "lfm2moe"],
     [f'Need::Min({K("shortconv.l_cache")}, 2)']),
    # Gemma 4: per layer, the sliding-window layers with their own head sizes.
    ("gemma4.cpp", "n_embd_head == hparams.n_embd_head_v(il)", ["gemma4"],
     [f"Need::Equal({VALUE_LEN}, {KEY_LEN})",
      f'Need::Equal({K("attention.value_length_swa", "attention.value_length")}, '
      f'{K("attention.key_length_swa", "attention.key_length")})']),
    ("gemma-embedding.cpp",
     '(hparams.dense_2_feat_in == 0 || hparams.dense_2_feat_in == hparams.n_embd) && "dense_2_feat_in must be equal to n_embd"',
     ["gemma_embedding"], [f'Need::ZeroOrEqual({K("dense_2_feat_in", 0)}, {K("embedding_length")})']),
    ("gemma-embedding.cpp",
     '(hparams.dense_3_feat_out == 0 || hparams.dense_3_feat_out == hparams.n_embd) && "dense_3_feat_out must be equal to n_embd"',
     ["gemma_embedding"], [f'Need::ZeroOrEqual({K("dense_3_feat_out", 0)}, {K("embedding_length")})']),
    # Gated delta-net (linear attention) layers.
    ("qwen3next.cpp", "num_v_heads % num_k_heads == 0", ["qwen3next"], V_HEADS_PER_K),
    ("qwen35.cpp", "num_v_heads % num_k_heads == 0", ["qwen35"], V_HEADS_PER_K),
    ("qwen35moe.cpp", "num_v_heads % num_k_heads == 0", ["qwen35moe"], V_HEADS_PER_K),
    ("qwen4exp.cpp", "num_v_heads % num_k_heads == 0", ["qwen4exp"], V_HEADS_PER_K),
    ("clef.cpp", "num_v_heads % num_k_heads == 0", ["clef"], V_HEADS_PER_K),
    ("qwen4exp.cpp", "head_v_dim * num_v_heads == d_inner", ["qwen4exp"], V_HEAD_IS_STATE),
    # kimi-linear calls these too, with key and value heads of one size by construction.
    ("delta-net-base.cpp", "S_k == S_v", GATED_DELTA, V_HEAD_IS_STATE),
    ("delta-net-base.cpp", "H_v % H_k == 0", GATED_DELTA, V_HEADS_PER_K),
    # Mamba layers: Mamba-1 has d_inner heads of 1, Mamba-2 time_step_rank heads in groups.
    ("mamba-base.cpp", "d_inner % n_head == 0", ["mamba", "jamba", "mamba2", "falcon_h1", "granite_hybrid", "nemotron_h"],
     [f"Need::Min({INNER}, 1)"]),
    ("mamba-base.cpp", "d_inner % n_head == 0", ["mamba2", "falcon_h1", "granite_hybrid", "nemotron_h"],
     [f"Need::Divides({INNER}, {DT_RANK})"]),
    ("mamba-base.cpp", "d_inner % n_group == 0", ["mamba2", "falcon_h1", "granite_hybrid", "nemotron_h"],
     [f"Need::Divides({INNER}, {GROUPS})"]),
    ("granite-hybrid.cpp", "2 * n_embd == d_inner", ["granite_hybrid"],
     [f'Need::Scaled({K("embedding_length")}, 2, {INNER})']),
    ("jamba.cpp", "2 * n_embd == d_inner", ["jamba"], [f'Need::Scaled({K("embedding_length")}, 2, {INNER})']),
    ("plamo2.cpp", "d_inner % n_heads == 0", ["plamo2"], [f"Need::Divides({INNER}, {DT_RANK})"]),
    ("plamo2.cpp", "n_group == 0", ["plamo2"], [f"Need::Is({GROUPS}, 0)"]),
    # RWKV: the token-shift state is token_shift_count rows of n_embd.
    ("rwkv6.cpp", "hparams.token_shift_count == 2", ["rwkv6"], [f"Need::Is({SHIFTS}, 2)"]),
    ("rwkv7.cpp", "hparams.token_shift_count == 2", ["rwkv7"], [f"Need::Is({SHIFTS}, 2)"]),
    ("rwkv6qwen2.cpp", "n_embd == hparams.n_embd_r()", ["rwkv6qwen2"], [f"Need::Is({SHIFTS}, 1)"]),
    ("arwkv7.cpp", "n_embd == hparams.n_embd_r()", ["arwkv7"], [f"Need::Is({SHIFTS}, 1)"]),
    # Multi-head latent attention.
    ("deepseek2.cpp", "n_embd_head_qk_nope >= 1", ["deepseek2"], QK_NOPE),
    ("hy-v4.cpp", "n_embd_head_qk_nope >= 1", ["hy_v4"], QK_NOPE),
    ("deepseek2.cpp", "n_embed_head == n_embd_head_k && n_embed_head == n_embd_head_v", ["deepseek2ocr"],
     [f"Need::Equal({KEY_LEN}, {HEAD})", f"Need::Equal({VALUE_LEN}, {HEAD})"]),
    ("deepseek32.cpp", "is_mla", ["deepseek32"], IS_MLA),
    ("glm-dsa.cpp", "is_mla", ["glm_dsa"], IS_MLA),
    ("dots3note.cpp", "hparams.is_mla()", ["dots3note"], IS_MLA),
    ("hy-v4.cpp", "hparams.is_mla()", ["hy_v4"], IS_MLA),
    ("deepseek32.cpp", "hparams.n_rot() <= n_embd_indexer_head", ["deepseek32"], ROPE_IN_INDEXER),
    ("glm-dsa.cpp", "hparams.n_rot() <= n_embd_indexer_head", ["glm_dsa"], ROPE_IN_INDEXER),
    ("dots3note.cpp", "hparams.n_rot() <= n_embd_indexer_head", ["dots3note"], ROPE_IN_INDEXER),
    ("eagle3.cpp", "n_layer == 1", ["eagle3"], [f'Need::Is({K("block_count")}, 1)']),
    # Hybrid models need both kinds of block: with no recurrent (or no attention) block the
    # hybrid memory has no buffer for that kind's inputs, and setting them aborts at the first
    # decode (found by acap's header test on jamba; the assertion is ggml's, reached from
    # llm_graph_input_mem_hybrid::set_input, and the code path is the same for each of these).
    ("ggml/src/ggml-backend.cpp", "buffer",
     ["jamba", "plamo2", "granite_hybrid", "lfm2", "lfm2moe", "kimi_linear", "kimi_k3", "bailingmoe3", "glm5_next"],
     HYBRID(f"Layers::NoKvHeads({KV_HEADS})")),
    ("ggml/src/ggml-backend.cpp", "buffer", ["nemotron_h"],
     HYBRID(f'Layers::NoKvHeadsNoFfn({KV_HEADS}, {K("feed_forward_length", 0)})')),
    ("ggml/src/ggml-backend.cpp", "buffer", ["qwen3next", "qwen35", "qwen35moe", "qwen4exp"],
     HYBRID(f'Layers::Interval("{RECURRENT_FLAGS}", {EVERY(4)})')),
    ("ggml/src/ggml-backend.cpp", "buffer", ["minimax_01"],
     HYBRID(f'Layers::Interval("{RECURRENT_FLAGS}", {EVERY(8)})')),
    # Sliding-window attention: a loader that turns it on with no block using it fails
    # is_swa_any() at context creation (the pattern's own default period per loader).
    # dots3note reads the flags too but gets a memory of its own, without that assertion.
    ("llama-model.cpp", "hparams.is_swa_any()",
     ["gemma4", "granite_swa", "maple", "mimo2", "spark2_5", "step35"], SWA("Flags", "Always")),
    ("llama-model.cpp", "hparams.is_swa_any()", ["cohere2", "exaone_moe", "muse_glimmer"],
     SWA("Period(4, false)", "Always")),
    ("llama-model.cpp", "hparams.is_swa_any()", ["cohere2moe"], SWA("Period(4, true)", "Always")),
    ("llama-model.cpp", "hparams.is_swa_any()", ["gemma2", "openai_moe"], SWA("Period(2, false)", "Always")),
    ("llama-model.cpp", "hparams.is_swa_any()", ["gemma3n"], SWA("Period(5, false)", "Always")),
    ("llama-model.cpp", "hparams.is_swa_any()", ["afmoe", "mellum", "olmo2"], SWA("Period(4, false)", "Window")),
    ("llama-model.cpp", "hparams.is_swa_any()", ["laguna", "smallthinker"], SWA("Period(4, true)", "Window")),
    ("llama-model.cpp", "hparams.is_swa_any()", ["gemma3"], SWA("Period(6, false)", "Window")),
    ("llama-model.cpp", "hparams.is_swa_any()", ["plamo3"], SWA("Period(8, false)", "Window")),
    ("llama-model.cpp", "hparams.is_swa_any()", ["llama4"], SWA("Period(4, false)", "WindowNotZero")),
    ("llama-model.cpp", "hparams.is_swa_any()", ["exaone4"], SWA("Period(4, false)", "Blocks(64)")),
    # Attention temperature tuning: its graph input asserts a scale and a length.
    ("llama-graph.cpp", "f_attn_temp_scale != 0.0f", ["llama4"],
     [f'Need::Min({K("attention.sliding_window", 1)}, 1)']),
    ("llama-graph.cpp", "n_attn_temp_floor_scale != 0", ["deepseek2"],
     [f'Need::MinWhenFloat({K("attention.temperature_length", 0)}, 1, {FK("attention.temperature_scale", 0.0)})']),
    # Gemma 4 shares the KV of its last shared_kv_layers blocks with earlier ones.
    ("llama-model.cpp", "hparams.n_layer_kv_from_start >= 2", ["gemma4"],
     [f'Need::Leaves({BLOCKS}, {K("attention.shared_kv_layers", 0)}, 2)']),
    # Gemma 3n / 4 blocks from n_layer_kv_from_start on reuse an earlier block's KV cache, one
    # of their own kind, which the pattern may leave out of that kind's cache.
    ("llama-kv-cache.cpp", "map_layer_ids.find(il_reuse) != map_layer_ids.end()", ["gemma4"],
     [f'Need::SharedKv(SwaPattern::Flags, KvFrom::Less({BLOCKS}, {K("attention.shared_kv_layers", 0)}))']),
    ("llama-kv-cache.cpp", "map_layer_ids.find(il_reuse) != map_layer_ids.end()", ["gemma3n"],
     ["Need::SharedKv(SwaPattern::Period(5, false), KvFrom::Fixed(20))"]),
    # Integer divisions by a header value: a zero divisor is SIGFPE, not even an assertion.
    ("qwen3next.cpp", "code:(i + 1) % full_attn_interval", ["qwen3next"],
     [f'Need::EveryNth("{RECURRENT_FLAGS}", {EVERY(4)})']),
    ("qwen35.cpp", "code:(i + 1) % full_attn_interval", ["qwen35"],
     [f'Need::EveryNth("{RECURRENT_FLAGS}", {EVERY(4)})']),
    ("qwen35moe.cpp", "code:(i + 1) % full_attn_interval", ["qwen35moe"],
     [f'Need::EveryNth("{RECURRENT_FLAGS}", {EVERY(4)})']),
    ("minimax-01.cpp", "code:(i + 1) % full_attn_interval", ["minimax_01"],
     [f'Need::EveryNth("{RECURRENT_FLAGS}", {EVERY(8)})']),
    ("rwkv6-base.cpp", "code:n_embd / head_size", ["rwkv6", "rwkv6qwen2"], [f"Need::Min({HEAD_SIZE_RWKV}, 1)"]),
    ("rwkv7-base.cpp", "code:n_embd / head_size", ["rwkv7", "arwkv7"], [f"Need::Min({HEAD_SIZE_RWKV}, 1)"]),
    ("llama-model.cpp", "code:hparams.n_head(il) / hparams.dsv4_o_group_count", ["deepseek4"],
     [f'Need::Min({K("attention.output_group_count")}, 1)']),
    # RWKV6: key-value heads that group the n_embd / head_size heads.
    ("rwkv6-base.cpp", "n_head % n_head_kv == 0", ["rwkv6", "rwkv6qwen2"],
     [f'Need::DividesQuotient({K("embedding_length")}, {HEAD_SIZE_RWKV}, {K("attention.head_count_kv", "attention.head_count")})']),
    # Kimi delta attention gates (Bailing MoE 3).
    ("bailingmoe3.cpp", "hparams.kda_safe_gate", ["bailingmoe3"], [f'Need::FlagIs({FLAG("kda.safe_gate", True)}, true)']),
    ("bailingmoe3.cpp", "hparams.kda_gate_lower_bound < 0.0f", ["bailingmoe3"],
     [f'Need::FloatBelow({FK("kda.gate_lower_bound")}, 0.0)']),
    # HRM-Text: block_count is the expanded cache-slot count.
    ("hrm-text.cpp", "hparams.n_hrm_layers_per_stack > 0", ["hrm_text"], [f"Need::Min({HRM[0]}, 1)"]),
    ("hrm-text.cpp", "hparams.n_hrm_h_cycles > 0", ["hrm_text"], [f"Need::Min({HRM[1]}, 1)"]),
    ("hrm-text.cpp", "hparams.n_hrm_l_cycles > 0", ["hrm_text"], [f"Need::Min({HRM[2]}, 1)"]),
    ("hrm-text.cpp", "hparams.n_layer() == n_slot", ["hrm_text"],
     [f"Need::Cycles({HRM[0]}, {HRM[1]}, {HRM[2]}, {BLOCKS})"]),
    # Nanbeige loops its blocks num_loops times.
    ("nanbeige.cpp", "n_loops_u >= 1", ["nanbeige"], [f"Need::Min({LOOPS}, 1)"]),
    ("nanbeige.cpp", "(size_t) n_layer_phys * (size_t) n_loops_u <= (size_t) LLAMA_MAX_LAYERS", ["nanbeige"],
     [f"Need::ProductAtMost({BLOCKS}, {LOOPS}, {MAX_LAYERS})"]),
    # GLM5-Next: the k-pool indexer, four hyper-connection streams, nope-only MLA.
    ("glm5-next.cpp", "hparams.indexer_kpool > 1 && hparams.indexer_top_k % hparams.indexer_kpool == 0", ["glm5_next"],
     [f"Need::Min({KPOOL}, 2)", f'Need::Divides({K("attention.indexer.top_k")}, {KPOOL})']),
    ("glm5-next.cpp", 'hparams.dsv4_hc_mult == 4 && "mHC with hc_mult != 4 is not supported"', ["glm5_next"],
     [f'Need::Is({K("hyper_connection.count")}, 4)']),
    ("glm5-next.cpp", 'hparams.n_rot() == 0 && "GLM5-Next MLA is nope-only"', ["glm5_next"], [f"Need::Is({ROPE}, 0)"]),
    # MiniMax-M3 sparse attention.
    ("minimax-m3.cpp", "hparams.indexer_block_size > 0", ["minimax_m3"],
     [f'Need::Min({K("attention.indexer.block_size")}, 1)']),
    ("minimax-m3.cpp", 'HKV == Hd && "MSA: one indexer head per GQA group"', ["minimax_m3"],
     [f'Need::Equal({KV_HEADS}, {K("attention.indexer.head_count")})']),
    # DeepSeek-V4.
    ("deepseek4.cpp", "n_compress_ratios <= LLAMA_MAX_LAYERS", ["deepseek4"],
     [f'Need::MaxLength({K("attention.compress_ratios")}, {MAX_LAYERS})']),
    ("deepseek4.cpp", "hc == 4", ["deepseek4"], [f'Need::Is({K("hyper_connection.count")}, 4)']),
    ("deepseek4.cpp", "n_embd_head == n_embd_head_v", ["deepseek4"], [f"Need::Equal({VALUE_LEN}, {KEY_LEN})"]),
    ("glm5-next.cpp", "hc == 4", ["glm5_next"], [f'Need::Is({K("hyper_connection.count")}, 4)']),
    ("deepseek4.cpp", "n_embd_head >= n_embd_head_rope", ["deepseek4"], [f"Need::AtMost({ROPE}, {KEY_LEN})"]),
    ("deepseek4.cpp", "n_embd_indexer_head >= n_embd_indexer_head_rope", ["deepseek4"],
     [f"Need::AtMost({ROPE}, {INDEXER_K})"]),
    ("deepseek4.cpp", "n_head % n_groups == 0", ["deepseek4"],
     [f'Need::Divides({K("attention.head_count")}, {K("attention.output_group_count")})']),
    # DeepSeek-OCR rotates with a fixed base; acap never overrides the model's.
    ("deepseek2.cpp", "fabs(freq_base - 10000.0) < 1e-4", ["deepseek2ocr"],
     [f'Need::FloatNear({FK("rope.freq_base", 10000.0)}, 10000.0, 1e-4)']),
    # Jina-BERT-v2 stores a gated feed-forward as one ffn_up of twice the rows.
    ("jina-bert-v2.cpp", "n_ffn_up == n_ff || n_ffn_up == n_ff * 2", ["jina_bert_v2"],
     [f'Need::FfnUpRows({K("feed_forward_length", 0)})']),
    # The DSA lightning indexers rotate their queries and keys by a Hadamard matrix that
    # llama-kv-cache.cpp always builds for these architectures: 64 doubled while it divides
    # the indexer head, and none below 64. Three multiply it straight in (ggml_mul_mat needs
    # it as wide as the head); DeepSeek-V4 reshapes the head into rows of its width.
    ("deepseek32.cpp", "code:ggml_mul_mat(ctx0, inp_attn_dsa->self_k_rot_lid, indexer_q)", ["deepseek32"],
     [f"Need::HadamardTiles({INDEXER_K}, true)"], CAN_MUL_MAT),
    ("glm-dsa.cpp", "code:ggml_mul_mat(ctx0, inp_attn_dsa->self_k_rot_lid, indexer_q)", ["glm_dsa"],
     [f"Need::HadamardTiles({INDEXER_K}, true)"], CAN_MUL_MAT),
    ("dots3note.cpp", "code:ggml_mul_mat(ctx0, inp_attn->get_dsa()->self_k_rot_lid, indexer_q)", ["dots3note"],
     [f"Need::HadamardTiles({INDEXER_K}, true)"], CAN_MUL_MAT),
    ("deepseek4.cpp", "code:llama_mul_mat_hadamard(ctx0, indexer_q, inp_lid.k_rot)", ["deepseek4"],
     [f"Need::HadamardTiles({INDEXER_K}, false)"], RESHAPE_2D),
    # Hyper-connections' Sinkhorn normalisation: ggml_dsv4_hc_comb asserts at least one pass.
    ("deepseek4.cpp", HC_COMB, ["deepseek4"], SINKHORN_PASSES, ("ggml/src/ggml.c", "n_iter > 0")),
    ("glm5-next.cpp", HC_COMB, ["glm5_next"], SINKHORN_PASSES, ("ggml/src/ggml.c", "n_iter > 0")),
    # RWKV: keys, values and receptances reshaped into n_embd / wkv.head_size heads.
    ("rwkv6-base.cpp", "code:ggml_reshape_3d(ctx0, k, head_size, n_head, n_tokens)", ["rwkv6", "rwkv6qwen2"],
     [f'Need::Divides({K("embedding_length")}, {HEAD_SIZE_RWKV})'], RESHAPE_3D),
    ("rwkv7-base.cpp", "code:ggml_reshape_3d(ctx0, k, head_size, head_count, n_tokens)", ["rwkv7", "arwkv7"],
     [f'Need::Divides({K("embedding_length")}, {HEAD_SIZE_RWKV})'], RESHAPE_3D),
]

# Assertions on header values that acap does not check natively yet, by file (every assertion
# of the file not covered above), with the reason. Models of these architectures load with a
# warning naming what is not pre-checked.
UNCHECKED = {
    # A speculative-decoding draft, refused outright ("refuse"): it needs its target model's
    # context, which acap never makes, and its DSpark head asserts that each physical batch
    # splits into equal blocks per sequence (n_tokens % n_seqs == 0) and that the optional key
    # dflash.block_size exists, and its DeepSeek-V4 stage reaches deepseek4.cpp's helpers.
    "dflash.cpp": (["dflash"], "refuse",
                   "a speculative-decoding draft (DFlash / DSpark): it runs beside its target "
                   "model's context, which acap does not make, and its graph asserts batch shapes "
                   "acap's batches do not keep"),
}

# Assertions that hold by construction whatever the header says, with why.
BY_CONSTRUCTION = {
    ("qwen4exp.cpp", "hparams.dsv4_compress_ratios[il] == kpool"):
        "the loader sets kpool to the one non-zero ratio (throwing on two) and this runs for those layers",
    ("spark2-5.cpp", "hparams.swa_type == LLAMA_SWA_TYPE_STANDARD"): "the loader sets swa_type to it",
    ("deepseek4.cpp", "hparams.is_swa(il)"): "set_swa_pattern(0) makes every trunk block a sliding-window one",
}

# Kinds of assertion no header value reaches on acap's path, with why.
EXCLUDED = [
    (r"\b(layer|model|model_other)\.|_w\b|nullptr|->ne\[|->nb\[|->type|buffer|\bne\[|\bw1\b|dynamic &&",
     "tensor presence or shape: llama.cpp checks the tensors against the header first, catchably"),
    (r"ubatch|\bn_seqs\b|\bn_tokens\b|cparams|mctx|\bn_kv\b|state_|\binp_|kq_mask|\btop_k\b|\bprev_|"
     r"last_top|spans\.|segments|n_tps|n_sel\b|Gp\*C|\bn_lid\b|\bn_csa\b|\bn_hca\b|row_total|\bR >= 0|"
     r"\bn_blocks > 0$|ext_factor",
     "batch, memory or context state, not a header value"),
]
# The src/ files outside src/models whose assertions take header values: each of their
# assertions is a checked row above, excluded by kind, or listed here with why it takes no
# header value on acap's path (the rest of src/ holds batch, cache, sampler, state-file and
# quantizer code).
def each(why, *conds):
    """SRC_ACCOUNTED entries: each condition, for the same reason."""
    return {c: why for c in conds}


NATIVE = "checked natively by acap's own rules (src/hparams.rs, src/hparams/vocab.rs)"
SRC_ACCOUNTED = {
    "llama-model.cpp": {
        "length_prefix != std::string::npos": "tensor names, in a tensor split across devices",
        "layer_index_start != std::string::npos": "tensor names, in a tensor split across devices",
        "!suffix_fallback.empty()": "tensor presence, in a tensor split across devices",
        "hparams.n_embd_k_gqa(il) == n_embd_gqa": "a tensor split across devices (acap splits by layer)",
        "hparams.dsv4_o_lora_rank % blck_size == 0": "a tensor split across devices (acap splits by layer)",
        "tc.tensor_axis_0 != tensor": "a tensor split across devices (acap splits by layer)",
        "source_split_state.axis >= 0 && source_split_state.axis < GGML_MAX_DIMS": "a tensor split across devices",
        "hparams.n_layer_all > 0 && hparams.n_layer_all <= LLAMA_MAX_LAYERS": NATIVE,
        "hparams.n_expert <= LLAMA_MAX_EXPERTS": NATIVE,
        "n_expert_used_max <= hparams.n_expert": NATIVE,
        "n_expert_used_max > 0": NATIVE,
        "hparams.n_expert_groups < hparams.n_expert": NATIVE,
        "hparams.n_expert % hparams.n_expert_groups == 0": NATIVE,
        "hparams.n_group_used > 0": NATIVE,
        "hparams.n_group_used < hparams.n_expert_groups": NATIVE,
        "n_expert_used_max == 0": NATIVE,
        "hparams.n_expert_groups == 0": NATIVE,
        "hparams.rope_scaling_type_train != LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED": NATIVE,
        "!ml.no_alloc": "the memory-fit pass, which acap does not run",
        "bufs.size() == 1": "buffer allocation",
        "hparams.swa_type != LLAMA_SWA_TYPE_NONE": "set by the loaders of the architectures that reach it",
        "!hparams.is_swa_any()": "no loader marks sliding-window blocks without turning SWA on",
        "nelements <= UINT32_MAX": "llama_model_get_tok_embd, which acap does not call",
    },
    "llama-graph.cpp": {
        "out_ids": "graph inputs the builder always creates",
        "mean": "embedding pooling, which acap's contexts do not turn on",
        "cls": "embedding pooling, which acap's contexts do not turn on",
        "n_stream > 0": "the cache's streams, from the context",
        '!cross->seq_ids_enc.empty() && "llama_encode must be called first"': "encoder-decoder state",
        "has_gate": "tensor presence (a gated feed-forward's gate)",
        "n_kv_max >= 0 && n_kv_max <= INT32_MAX": "the cache size, from the context",
        'hparams.swa_type == LLAMA_SWA_TYPE_NONE && "Use llama_kv_cache_iswa for SWA"':
            "the memory type create_memory picks for the same swa_type",
        'hparams.swa_type != LLAMA_SWA_TYPE_NONE && "Use llama_kv_cache for non-SWA"':
            "the memory type create_memory picks for the same swa_type",
        'hparams.swa_type != LLAMA_SWA_TYPE_NONE && "DSV4 expects SWA raw cache"': "set by the deepseek4 loader",
    },
    "llama-vocab.cpp": {
        "vocab.get_type() == LLAMA_VOCAB_TYPE_BPE": "the BPE tokenizer session, made for BPE vocabularies only",
        "vocab.token_bos() != LLAMA_TOKEN_NULL": NATIVE,
        "vocab.token_eos() != LLAMA_TOKEN_NULL": NATIVE,
        "special_bos_id != LLAMA_TOKEN_NULL": NATIVE,
        "special_eos_id != LLAMA_TOKEN_NULL": NATIVE,
        "special_sep_id != LLAMA_TOKEN_NULL": NATIVE,
        "id_to_token.size() == token_to_id.size()": NATIVE,
        "_offset >= 0": "text fragments the tokenizer cuts itself",
        "_length >= 1": "text fragments the tokenizer cuts itself",
        "offset + length <= raw_text.length()": "text fragments the tokenizer cuts itself",
        "unicode_cpts_from_utf8(word).size() > 0": "commented out in the source",
        '!ids.empty() && "model vocab missing newline token"':
            "RWKV vocabularies at load; the RWKV tokenizer falls back to bytes (seen with the tiny vocabulary)",
        "type != LLAMA_VOCAB_TYPE_NONE": "vocabulary queries; acap refuses a model without a tokenizer at load",
        "get_type() != LLAMA_VOCAB_TYPE_NONE": "vocabulary queries; acap refuses a model without a tokenizer at load",
        "pimpl->type != LLAMA_VOCAB_TYPE_NONE": "vocabulary queries; acap refuses a model without a tokenizer at load",
        "is_byte(id)": "callers pass byte tokens only",
        "check == -n_chars": "llama_token_to_piece's own size handshake",
        'tokenizer && "Tokenizer not initialized. Call llama_vocab::init_tokenizer() first."':
            "init_tokenizer runs at load",
        "avail >= 0": "the detokenizer's own buffer arithmetic",
        "token_left.find(' ') == std::string::npos": "merge lookups with symbols the BPE tokenizer splits itself",
        "token_right.find(' ') == std::string::npos": "merge lookups with symbols the BPE tokenizer splits itself",
        "n_chars <= (int32_t)text.size()": "the detokenizer's own buffer arithmetic",
    },
    # The context, the caches and the loader: every assertion listed, none left to EXCLUDED's
    # patterns (STRICT below), since most take sizes that could come from the header.
    "llama-context.cpp": {
        **each("the fused-op probe over graph nodes llama.cpp builds itself",
               "node.il >= 0", "tensor->op == GGML_OP_NONE"),
        **each("layer-input extraction (llama_set_embeddings_layer_inp), which acap does not call",
               "lid < embd_layer_inp.size() && embd_layer_inp[lid].has_data()",
               "lid <= model.hparams.n_layer()", "n_tokens > 0", "nfloats % n_tokens == 0",
               "row_floats == model.hparams.n_embd", "dst_offset + nfloats <= embd_layer_inp[il].size",
               "backend != nullptr"),
        **each("backend sampling, which acap does not turn on",
               "row < (int64_t) sampling.sampled.size",
               'ggml_is_contiguous(tensor) && "sampling tensor must be contiguous for async copy"',
               "n_elements <= stride", "(size_t) row * stride + n_elements <= dst.size",
               "row < counts->size()"),
        **each("llama_encode, which acap does not call (it runs decoder graphs only)",
               'cparams.n_ubatch >= n_tokens && "encoder requires n_ubatch >= n_tokens"',
               "n_tokens*n_embd_out <= (int64_t) embd.size", "n_tokens*n_embd <= (int64_t) embd_nextn.size"),
        **each("a decode's output buffers and bookkeeping, which llama.cpp sizes itself",
               "backend_res != nullptr", "logits.data != nullptr", "backend_embd != nullptr",
               "embd.data != nullptr", "backend_h != nullptr",
               "n_outputs_prev + n_outputs <= n_outputs_all",
               "(n_outputs_prev + n_outputs)*n_vocab <= (int64_t) logits.size",
               "(n_outputs_prev + n_outputs)*n_embd_out <= (int64_t) embd.size",
               "(offset + n_rows)*n_embd <= (int64_t) embd_nextn.size",
               "ubatch.data && ubatch.data->batch_idxs.size() == ubatch.n_tokens",
               "embd_batch_idxs.size() == (size_t) n_tokens_prev",
               "out_ids.size() == (size_t) n_outputs", "(size_t) n_outputs == out_ids.size()",
               "n_outputs_max <= cparams.n_outputs_max",
               "j >= 0 && (size_t) j < embd_batch_idxs.size()", "n_outputs >= 1", "!sizes"),
        "n_tokens_all <= cparams.n_batch": "acap's batches hold at most n_batch tokens (Context::push)",
        '(cparams.causal_attn || cparams.n_ubatch >= n_tokens_all) && "non-causal attention requires '
        'n_ubatch >= n_tokens"':
            "attention.causal = false: acap feeds such a model one physical batch per decode "
            "(Context::n_decode; header_corpus::non_causal_models_take_prompts_longer_than_a_physical_batch)",
        **each("state save and restore (llama_state_*), which acap does not use",
               "src_pos == total && dst_pos == total", "ggml_nbytes(mbuf_cur.cpy[i]) == 0",
               "ggml_nbytes(mbuf.org[i]) == 0", "buf_size == 0",
               "mem_storage.find(seq_id_read) != mem_storage.end()", "nread <= state_size",
               "nread + sizeof(uint32_t) * 3 + sizeof(llama_token) * *n_token_count_out == file.tell()",
               "res == sizeof(uint32_t) * 3 + sizeof(llama_token) * n_token_count + io.n_bytes()"),
        **each("training (llama_opt_init, llama_opt_epoch), which acap does not call",
               "!opt_ctx", "model->hparams.n_ctx_train % n_batch == 0", "n_batch % n_ubatch == 0",
               "opt_ctx", "labels->ne[1] == n_ubatch", "labels_sparse[ilabel] < labels->ne[0]",
               "idata_split >= 0", "idata_split <= ndata",
               'n_adapters == 0 && "invalid llama_set_adapters_lora call"'),
    },
    "llama-kv-cache.cpp": {
        "kv_size % n_pad == 0": "the cache size, which llama.cpp pads itself from n_ctx",
        "n_stream == 1 || n_stream == n_seq_max": "the cache's streams, from the context",
        **each("sequence ids, which acap keeps below n_seq_max",
               "seq_id == -1 || (seq_id >= 0 && (size_t) seq_id < seq_to_stream.size())",
               "seq_id_src >= 0 && (size_t) seq_id_src < seq_to_stream.size()",
               "seq_id_dst >= 0 && (size_t) seq_id_dst < seq_to_stream.size()",
               "seq_id >= 0 && (size_t) seq_id < seq_to_stream.size()", "s < seq_to_stream.size()"),
        **each("seq_cp / seq_add / seq_div and the K-shift they start, which acap never calls",
               'is_full && "seq_cp() is only supported for full KV buffers"',
               'hparams.n_pos_per_embd() == 1 && "seq_add() is only supported for n_pos_per_embd() == 1"',
               'hparams.n_pos_per_embd() == 1 && "seq_div() is only supported for n_pos_per_embd() == 1"',
               "!other"),
        **each("buffer allocation", "ggml_backend_buffer_get_base(buf.get()) == nullptr",
               "ggml_backend_buffer_get_base(buf.get()) != nullptr"),
        **each("placing a batch in the cache, from the batch",
               "!states.empty() || !success", "n_tokens % ubatch.n_seqs_unq == 0",
               "ubatch.n_seq_id[s*n_tokens] == 1", "ubatch.seq_id [s*n_tokens][0] == seq_id"),
        **each("the graph's own K/V views, contiguous per head",
               "ggml_row_size(k_cur->type, n_embd_head) == k_cur->nb[1]",
               "ggml_row_size(v_cur->type, n_embd_head) == v_cur->nb[1]"),
        **each("graph inputs, from the batch and the cache",
               "n_tokens == (int64_t) sinfo.size()*sinfo.n_stream()", "ggml_backend_buffer_is_host(dst->buffer)",
               "n_tokens%n_stream == 0", 'n_stream == 1 && "TODO: support multiple streams"',
               "!ubatch->equal_seqs()"),
        "attn_rot_hadamard.count(dst->ne[0])":
            "the Hadamard rotations, built up to the head size: a quantized cache rotates only heads that "
            "are multiples of 64, and the DSA indexers' forced rotation is an ARCH_CHECKS row",
        **each("state save and restore (llama_state_*), which acap does not use",
               "cell_count == cell_count_check", "sinfo.n_stream() == 1", "sinfo.idxs[0].size() == cell_count",
               "cells.pos_get(idx) == ubatch.pos[i]", "cells.seq_has(idx, dest_seq_id)"),
    },
    "llama-memory-recurrent.cpp": {
        **each("sequence and cell bookkeeping, from the batch",
               "(uint32_t) seq_id < n_seq_max", "idx <= n_rs_seq", "ubatch.equal_seqs()",
               "cell.has_seq_id(seq_id)", "empty_cell.is_empty()", "!orig_cell.is_empty()", "rs_z >= 0"),
        **each("state save and restore (llama_state_*), which acap does not use",
               "seq_id >= 0 && (size_t) seq_id < rs_idx.size()",
               "cell_seq_id >= 0 && (size_t) cell_seq_id < rs_idx.size()", "cell_count == cell_count_check",
               "head + cell_count <= size", "cells[head].pos == ubatch.pos[0]",
               "cells[head + cell_count - 1].pos == ubatch.pos[cell_count - 1]",
               "cells[head].has_seq_id(dest_seq_id)", "cells[head + cell_count - 1].has_seq_id(dest_seq_id)"),
    },
    "llama-model-loader.cpp": {
        **each("tensor presence and buffer types, which llama.cpp checks first",
               "w != nullptr", "w->buffer == nullptr", "!buft_list->empty()", "buft_list_layer != nullptr",
               "buft != nullptr", "buf != nullptr", "buf_mmap || cur->data"),
        **each(NATIVE + ": expert_used_count >= 1 wherever there are experts",
               "n_ids_used > 0", "n_expert_used > 0"),
        **each("the loader's virtual (file-less) path; acap always loads a file",
               "t_meta.ne[dim] >= 1", "t_meta.nb[dim] >= 1", "ggml_nbytes(&t_meta) == ggml_nbytes(cur)"),
        **each("mappings and data ranges of tensors the loader checked against the file",
               "!mappings.empty()", "offs + size <= ggml_nbytes(w.tensor)", "w.idx < files.size()",
               'size_data != 0 && "call init_mappings() first"'),
    },
}
# The files of SRC_ACCOUNTED whose every assertion is listed there (EXCLUDED does not apply).
STRICT = {"llama-context.cpp", "llama-kv-cache.cpp", "llama-memory-recurrent.cpp", "llama-model-loader.cpp"}

FUNC = re.compile(r"^(?:template\s*<[^>]*>\s*)?[^\s#/][^;{]*?\b((?:\w+::)+)(~?\w+)\s*\(", re.M)


def model_asserts(src):
    """(file, line, enclosing function, condition) of every GGML_ASSERT in src/models."""
    for path in sorted((src / "models").glob("*.cpp")):
        text = read(path)
        funcs = [(m.start(), m.group(1)[:-2] + "::" + m.group(2)) for m in FUNC.finditer(text)]
        for m in re.finditer(r"GGML_ASSERT\((.*?)\);", text, re.S):
            enclosing = ""
            for start, name in funcs:
                if start > m.start():
                    break
                enclosing = name
            yield path.name, text.count("\n", 0, m.start()) + 1, enclosing, " ".join(m.group(1).split())


def classify(src, class_archs, bases, graph_of):
    """The arch-assert table: (archs, source, needs) rows and (archs, file, why) unchecked."""
    def archs_of(classes, graph=False):
        """The architectures of these classes and their subclasses; with `graph` (an assertion
        of a graph builder), also of the classes that take the builder by alias."""
        if classes == ["*"]:
            return ["*"]
        out = set()
        for c in classes:
            full = "llama_model_" + c
            if full not in class_archs and full not in bases.values():
                sys.exit(f"hparam-asserts: no class {full} in the vendored llama.cpp")
            for cls, names in class_archs.items():
                k = cls
                while k != full and (k in bases or (graph and k in graph_of)):
                    k = graph_of[k] if graph and k in graph_of else bases[k]
                if k == full:
                    out.update(names)
        return sorted(out)

    # The architectures llama.cpp gives a hybrid memory (llm_arch_is_hybrid): a class that
    # reaches a hybrid row may have subclasses that are not hybrid (clef, of qwen35).
    is_hybrid = function_body(read(src / "llama-arch.cpp"), "bool llm_arch_is_hybrid(")
    hybrid = case_archs(src, is_hybrid[:is_hybrid.index("default:")])

    # The architectures llama.cpp gives no memory at all (the first cases of create_memory):
    # no KV cache, so no sliding-window assertion (gemma-embedding, of gemma3).
    create = function_body(read(src / "llama-model.cpp"), "llama_model::create_memory(")
    no_memory = case_archs(src, create[:create.index("res = nullptr")])

    rows, used, problems = [], set(), []
    flat = {}  # file outside src/models -> its text on one line, read once

    def flat_text(f):
        if f not in flat:
            path = next(p for p in [src / "models" / f, src / f, src.parent / f] if p.exists())
            flat[f] = " ".join(read(path).split())
        return flat[f]

    conds = {}
    for f, line, enclosing, cond in model_asserts(src):
        conds.setdefault((f, cond), []).append((line, enclosing))
    for f, cond, classes, needs, *reached in ARCH_CHECKS:
        if cond.startswith("code:") and reached:
            # Not an assertion: code that hands a bad value to a ggml op that asserts on it.
            (g, g_cond), = reached
            found = cond[5:] in flat_text(f) and f"GGML_ASSERT({g_cond})" in flat_text(g)
            source = f"{f}: {cond[5:]}, reaching {Path(g).name}: GGML_ASSERT({g_cond})"
        elif cond.startswith("code:"):
            # Not an assertion: code that kills the process on a bad value (a division).
            found = cond[5:] in flat_text(f)
            source = f"{f}: {cond[5:]} (an integer division: a zero divisor kills the process, SIGFPE)"
        else:
            found = (f, cond) in conds if (src / "models" / f).exists() else f"GGML_ASSERT({cond})" in flat_text(f)
            source = f"{f}: GGML_ASSERT({cond})"
        if not found:
            problems.append(f"{source}: checked but no longer in the vendored source")
        used.add((f, cond))
        # An assertion only in graph-builder code (`X::graph::...`) also binds the classes that
        # take X's builder by alias; one in a loader binds X and its subclasses only.
        in_graph = bool(conds.get((f, cond))) and all("::graph" in enc for _, enc in conds[(f, cond)])
        archs = archs_of(classes, graph=in_graph)
        if any(n.startswith("Need::Hybrid(") for n in needs):
            archs = [a for a in archs if a in hybrid]
        if any(n.startswith("Need::SomeSwa(") for n in needs):
            archs = [a for a in archs if a not in hybrid and a not in no_memory]
        rows.append((archs, source, needs))
    for key in BY_CONSTRUCTION:
        if key not in conds:
            problems.append(f"{key[0]}: GGML_ASSERT({key[1]}) is in BY_CONSTRUCTION but no longer in the source")
        used.add(key)
    unchecked = {}
    for (f, cond), where in sorted(conds.items()):
        if (f, cond) in used:
            continue
        if re.search(r"n_embd_head\s*==\s*(hparams\.n_embd_head_[kv]\(\)|n_rot)$|"
                     r"^hparams\.n_embd_head_v\(\) == hparams\.n_embd_head_k\(\)$", cond):
            continue  # the head-size table above
        if all(re.search(r"mtp|nextn", enc, re.I) for _, enc in where):
            continue  # MTP graphs: only an MTP-type context builds them
        if any(re.search(p, cond) for p, _ in EXCLUDED):
            continue
        if f in UNCHECKED:
            unchecked.setdefault(f, []).append(cond)
            continue
        lines = ", ".join(str(l) for l, _ in where)
        problems.append(f"models/{f}:{lines}: GGML_ASSERT({cond}) is neither checked nor accounted for")
    for f, accounted in SRC_ACCOUNTED.items():
        text = read(src / f)
        found = set()
        for m in re.finditer(r"GGML_ASSERT\((.*?)\);", text, re.S):
            cond = " ".join(m.group(1).split())
            found.add(cond)
            excluded = f not in STRICT and any(re.search(p, cond) for p, _ in EXCLUDED)
            if (f, cond) in used or cond in accounted or excluded:
                continue
            line = text.count("\n", 0, m.start()) + 1
            problems.append(f"{f}:{line}: GGML_ASSERT({cond}) is neither checked nor accounted for")
        problems += [f"{f}: SRC_ACCOUNTED lists GGML_ASSERT({c}), no longer in the source"
                     for c in accounted if c not in found]
    if problems:
        sys.exit("hparam-asserts: the vendored llama.cpp's assertions moved:\n  " + "\n  ".join(problems))
    stale = sorted(set(UNCHECKED) - set(unchecked))
    if stale:
        sys.exit(f"hparam-asserts: UNCHECKED names files with nothing left unchecked: {stale}")
    return rows, [(archs_of(UNCHECKED[f][0]), f, UNCHECKED[f][1], UNCHECKED[f][2], c)
                  for f, c in sorted(unchecked.items())]


def render_arch(rows, unchecked, version):
    def strs(xs):
        return "&[" + ", ".join(f'"{x}"' for x in xs) + "]"

    out = [f"""//! The rest of llama.cpp's assertions on header values, per architecture (generated by
//! `scripts/hparam-asserts.py` from the vendored llama.cpp of llama-cpp-sys-2 {version}; do not
//! edit: the checks are written in the script's ARCH_CHECKS, one row per assertion).

{{imports}}

/// Assertions checked natively: the architectures that reach each, the assertion as written
/// in the vendored source, and what it asks of the GGUF keys.
pub(super) const ARCH_ASSERTS: &[ArchAssert] = &[
"""]
    for archs, source, needs in rows:
        out.append(f"    ArchAssert {{\n        archs: {strs(archs)},\n        source: {json.dumps(source)},\n"
                   f"        needs: &[{', '.join(needs)}],\n    }},\n")
    out.append("""];

/// Assertions on header values not checked natively: a model of these architectures loads
/// with a warning that names them, or is refused (`refused`) with the reason.
pub(super) const UNCHECKED: &[Unchecked] = &[
""")
    for archs, f, mode, why, conds in unchecked:
        out.append(f"    Unchecked {{\n        archs: {strs(archs)},\n        file: \"{f}\",\n"
                   f"        what: {json.dumps(why)},\n        asserts: {len(conds)},\n"
                   f"        refused: {'true' if mode == 'refuse' else 'false'},\n    }},\n")
    out.append("];\n")
    body = "".join(out)
    used = [n for n in ["ArchAssert", "KvFrom", "Layers", "Need", "SwaPattern", "SwaWhen", "Unchecked", "flag", "float_key", "or_head_size", "or_int",
                        "or_key", "required"] if re.search(rf"\b{n}(\(|::| \{{)", body.split("{imports}", 1)[1])]
    out = [body.replace("{imports}", f"use super::arch_rules::{{{', '.join(used)}}};")]
    return rustfmt("".join(out))


def rustfmt(text):
    """`text` as rustfmt writes it, so that `cargo fmt --check` and `--check` agree."""
    return subprocess.run(["rustfmt", "--edition", "2024", "--emit", "stdout"], input=text,
                          check=True, capture_output=True, text=True).stdout


def rope_types(src, version):
    """llama_model_rope_type's architectures without RoPE and those always on multi-section
    RoPE (M-RoPE, interleaved M-RoPE), as src/hparams/rope_types.rs."""
    names = arch_names(src)
    body = function_body(read(src / "llama-model.cpp"), "llama_rope_type llama_model_rope_type(")
    groups = re.findall(r"((?:\s*(?://[^\n]*\n\s*)*case\s+LLM_ARCH_\w+\s*:)+)\s*(?://[^\n]*\n\s*)*"
                        r"return\s+([^;]+);", body)
    listed = set(re.findall(r"case\s+(LLM_ARCH_\w+)", body))
    none, multi, multi_if = set(), set(), set()
    for cases, ret in groups:
        archs = case_archs(src, cases)
        ret = " ".join(ret.split())
        if ret == "LLAMA_ROPE_TYPE_NONE":
            none |= archs
        elif ret in ("LLAMA_ROPE_TYPE_MROPE", "LLAMA_ROPE_TYPE_IMROPE"):
            multi |= archs
        elif ret.startswith("model->hparams.use_mrope() ? LLAMA_ROPE_TYPE_MROPE"):
            multi_if |= archs
    # An architecture the switch does not list falls through to LLAMA_ROPE_TYPE_NONE.
    none |= {n for a, n in names.items() if a not in listed}

    def lines(xs):
        return "".join(f'    "{x}",\n' for x in sorted(xs))

    return rustfmt(f"""//! Which architectures run RoPE, and how (generated by `scripts/hparam-asserts.py` from
//! `llama_model_rope_type` in the vendored llama.cpp of llama-cpp-sys-2 {version}; do not edit).

/// Architectures llama.cpp runs without RoPE (`LLAMA_ROPE_TYPE_NONE`).
pub(super) const ROPE_NONE: &[&str] = &[
{lines(none)}];

/// Architectures always on multi-section RoPE (`LLAMA_ROPE_TYPE_MROPE` or `_IMROPE`), whose
/// `rope.dimension_sections` ggml's rope asserts on.
pub(super) const ROPE_MULTI: &[&str] = &[
{lines(multi)}];

/// Architectures on M-RoPE where their first two `rope.dimension_sections` are above 0
/// (`use_mrope()`).
pub(super) const ROPE_MULTI_IF_SECTIONS: &[&str] = &[
{lines(multi_if)}];
""")


def check_vocab_lists(src):
    """src/hparams/vocab.rs lists the BPE pre-tokenizers that add a BOS by default and
    those llama.cpp forces it on for: compare with the vendored llama-vocab.cpp."""
    text = read(src / "llama-vocab.cpp")
    start = text.index("if (type == LLAMA_VOCAB_TYPE_BPE) {\n            add_space_prefix = false;")
    section = text[start:text.index("} else if (type == LLAMA_VOCAB_TYPE_SPM) {", start)]
    add_bos, force = [], []
    for block in re.split(r"\} else if \(", section):
        names = re.findall(r'tokenizer_pre == "([^"]+)"', block[:block.find(") {")])
        if "add_bos = true" in block:
            add_bos += names
        if "LLAMA_VOCAB_PRE_TYPE_GEMMA4;" in block:
            force += names
    rust = (ROOT / "src" / "hparams" / "vocab.rs").read_text()
    for const, want in [("BPE_ADD_BOS", add_bos), ("BPE_FORCE_BOS", force)]:
        m = re.search(rf"const {const}: &\[&str\] = &\[(.*?)\];", rust, re.S)
        have = re.findall(r'"([^"]+)"', m.group(1)) if m else None
        if have != want:
            sys.exit(f"hparam-asserts: {const} in src/hparams/vocab.rs is {have}, the vendored "
                     f"llama-vocab.cpp says {want}")
    print("hparam-asserts: the BPE add_bos lists of src/hparams/vocab.rs are current")


def main():
    src, version = vendored()
    check_vocab_lists(src)
    table, class_archs, bases, graph_of = derive(src)
    rows, unchecked = classify(src, class_archs, bases, graph_of)
    outputs = [(OUT, render(table, version)), (ARCH_OUT, render_arch(rows, unchecked, version)),
               (ROPE_OUT, rope_types(src, version))]
    if "--check" in sys.argv:
        for path, text in outputs:
            if not path.exists() or path.read_text() != text:
                sys.exit(f"hparam-asserts: {path.relative_to(ROOT)} is out of date with the "
                         "vendored llama.cpp: run python3 scripts/hparam-asserts.py")
            print(f"hparam-asserts: {path.relative_to(ROOT)} is current")
        return
    for path, text in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"hparam-asserts: wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
