//! A human-readable dump of a GGUF file, like llama.cpp's `gguf-dump`.

use crate::file::GgufFile;
use crate::value::{Array, Value};

const SHOWN: usize = 8;

/// Renders the metadata and tensor table of `f` in the layout of llama.cpp's `gguf-dump`.
/// Arrays are shortened to their first eight elements unless `full` is set.
pub fn dump(f: &GgufFile, full: bool) -> String {
    let mut out = String::new();
    let path = f
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    out += &format!("* Loading: {path}\n");
    out += &format!(
        "* GGUF v{}, alignment {}, data section at byte {}, {} bytes\n",
        f.version(),
        f.alignment(),
        f.data_offset(),
        f.file_len()
    );
    if f.trailing_bytes() > 0 {
        out += &format!(
            "* Warning: {} bytes after the last tensor's data that no tensor describes\n",
            f.trailing_bytes()
        );
    }
    out += &format!("* Dumping {} key/value pair(s)\n", f.metadata().len() + 3);
    let header = [
        ("GGUF.version", Value::U32(f.version())),
        ("GGUF.tensor_count", Value::U64(f.tensors().len() as u64)),
        ("GGUF.kv_count", Value::U64(f.metadata().len() as u64)),
    ];
    let entries = header
        .iter()
        .map(|(k, v)| (*k, v))
        .chain(f.metadata().iter().map(|(k, v)| (k.as_str(), v)));
    for (i, (key, value)) in entries.enumerate() {
        let (ty, n) = match value {
            Value::Array(a) => (format!("[{}]", a.element_type()), a.len()),
            v => (v.value_type().name().to_owned(), 1),
        };
        out += &format!(
            "{:>7}: {:<10} | {:>8} | {} = {}\n",
            i + 1,
            ty,
            n,
            key,
            show_value(value, full)
        );
    }
    out += &format!("* Dumping {} tensor(s)\n", f.tensors().len());
    for (i, t) in f.tensors().iter().enumerate() {
        let mut dims: Vec<String> = t.dims().iter().map(|d| format!("{d:>5}")).collect();
        dims.resize(4, format!("{:>5}", 1));
        out += &format!(
            "{:>7}: {:>10} | {} | {:<7} | {}\n",
            i + 1,
            t.n_elements(),
            dims.join(", "),
            t.ggml_type().name(),
            t.name()
        );
    }
    out
}

fn show_value(v: &Value, full: bool) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => show_array(a, full),
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
    }
}

fn show_array(a: &Array, full: bool) -> String {
    fn items<T>(v: &[T], full: bool, show: impl Fn(&T) -> String) -> String {
        let n = if full { v.len() } else { v.len().min(SHOWN) };
        let mut parts: Vec<String> = v[..n].iter().map(show).collect();
        if n < v.len() {
            parts.push("...".into());
        }
        format!("[{}]", parts.join(", "))
    }
    match a {
        Array::U8(v) => items(v, full, u8::to_string),
        Array::I8(v) => items(v, full, i8::to_string),
        Array::U16(v) => items(v, full, u16::to_string),
        Array::I16(v) => items(v, full, i16::to_string),
        Array::U32(v) => items(v, full, u32::to_string),
        Array::I32(v) => items(v, full, i32::to_string),
        Array::F32(v) => items(v, full, f32::to_string),
        Array::Bool(v) => items(v, full, bool::to_string),
        Array::U64(v) => items(v, full, u64::to_string),
        Array::I64(v) => items(v, full, i64::to_string),
        Array::F64(v) => items(v, full, f64::to_string),
        Array::String(v) => items(v, full, |s| format!("{s:?}")),
        Array::Array(v) => items(v, full, |inner| show_array(inner, full)),
    }
}
