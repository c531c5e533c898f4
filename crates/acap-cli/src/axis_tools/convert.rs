//! `acap axis convert`: `.npy` and `.safetensors` vectors plus stats JSON into an axis file.

use super::*;

/// A `[rows, cols]` (or `[cols]`) f32 matrix read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> String {
    format!("{}: {msg}", path.display())
}

/// Reads a `.npy` array of little-endian f32/f64/f16, 1-D or 2-D, C order.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn read_npy(path: &Path) -> Result<Matrix, String> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, e))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not a .npy file (bad magic)"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad(path, "truncated .npy header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad(path, "no 'descr' in the .npy header"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad(
            path,
            "Fortran-order arrays are not supported; save with C order",
        ));
    }
    let shape_text = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad(path, "no 'shape' in the .npy header"))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(path, format!("bad shape '{shape_text}'")))
        })
        .collect::<Result<_, _>>()?;
    if shape.is_empty() || shape.len() > 2 {
        return Err(bad(
            path,
            format!("expected a 1-D or 2-D array, shape is ({shape_text})"),
        ));
    }
    let data = &bytes[start + hlen..];
    let values = decode(path, descr, data, shape.iter().product())?;
    Ok(Matrix {
        shape,
        data: values,
    })
}

fn decode(path: &Path, dtype: &str, data: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let (width, f): (usize, fn(&[u8]) -> f32) = match dtype {
        "<f4" | "F32" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "<f8" | "F64" => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "<f2" | "F16" => (2, |b| {
            acap::gguf::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))
        }),
        "BF16" => (2, |b| {
            acap::gguf::bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))
        }),
        other => {
            return Err(bad(
                path,
                format!("unsupported element type '{other}' (use float32, float64 or float16)"),
            ));
        }
    };
    let need = n
        .checked_mul(width)
        .ok_or_else(|| bad(path, "array too large"))?;
    if data.len() < need {
        return Err(bad(
            path,
            format!("truncated data: {} bytes, {need} needed", data.len()),
        ));
    }
    Ok(data[..need].chunks_exact(width).map(f).collect())
}

/// Reads the tensors of a `.safetensors` file: name -> matrix.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Matrix>, String> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, e))?;
    let hlen = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| bad(path, "not a .safetensors file (too short)"))?;
    let header = bytes.get(8..8usize.saturating_add(hlen)).ok_or_else(|| {
        bad(
            path,
            "not a .safetensors file (header length beyond the file)",
        )
    })?;
    let header: Value =
        serde_json::from_slice(header).map_err(|e| bad(path, format!("bad header: {e}")))?;
    let data = &bytes[8 + hlen..];
    let mut out = BTreeMap::new();
    for (name, t) in header
        .as_object()
        .ok_or_else(|| bad(path, "header is not an object"))?
    {
        if name == "__metadata__" {
            continue;
        }
        let dtype = t["dtype"].as_str().unwrap_or("?");
        let shape = usize_list(&t["shape"]);
        let offs = usize_list(&t["data_offsets"]);
        let (Some(&b), Some(&e)) = (offs.first(), offs.get(1)) else {
            return Err(bad(path, format!("tensor {name}: no data_offsets")));
        };
        let slice = data
            .get(b..e)
            .ok_or_else(|| bad(path, format!("tensor {name}: data beyond the file")))?;
        let values = decode(path, dtype, slice, shape.iter().product())
            .map_err(|m| format!("{m} (tensor {name})"))?;
        out.insert(
            name.clone(),
            Matrix {
                shape,
                data: values,
            },
        );
    }
    Ok(out)
}

/// Trailing decimal number of a name (`direction.22`, `layer_22`, `22.npy` -> 22).
fn trailing_layer(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".npy").unwrap_or(name);
    let digits: String = stem
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    digits.parse().ok()
}

/// Per-layer vectors from the inputs: a 2-D matrix (row L = layer L) or 1-D vectors whose
/// file or tensor names end with the layer number.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn vectors_from(inputs: &[PathBuf]) -> Result<BTreeMap<u32, Vec<f32>>, String> {
    let mut out: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
    let mut add = |path: &Path, name: &str, m: Matrix| -> Result<(), String> {
        match m.shape.as_slice() {
            [rows, cols] => {
                for r in 0..*rows {
                    out.insert(r as u32, m.data[r * cols..(r + 1) * cols].to_vec());
                }
                Ok(())
            }
            [_] => {
                let layer = trailing_layer(name).ok_or_else(|| {
                    bad(
                        path,
                        format!("1-D vector '{name}' has no layer number at the end of its name"),
                    )
                })?;
                out.insert(layer, m.data);
                Ok(())
            }
            s => Err(bad(
                path,
                format!("tensor '{name}' has shape {s:?}; expected 1-D or 2-D"),
            )),
        }
    };
    for path in inputs {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "npy" => {
                let name = path
                    .file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned());
                add(path, &name, read_npy(path)?)?;
            }
            "safetensors" => {
                for (name, m) in read_safetensors(path)? {
                    add(path, &name, m)?;
                }
            }
            // PyTorch zip checkpoints, read without running the pickle (acap::torch).
            "pt" | "pth" | "bin" | "ckpt" => {
                let t = acap::torch::load_tensor(path).map_err(|e| e.to_string())?;
                let name = path
                    .file_stem()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned());
                add(
                    path,
                    &name,
                    Matrix {
                        shape: t.shape,
                        data: t.data,
                    },
                )?;
            }
            _ => {
                return Err(bad(
                    path,
                    "unknown input type: expected .npy, .safetensors or a PyTorch .pt checkpoint",
                ));
            }
        }
    }
    let mut lens = out.values().map(Vec::len);
    if let Some(n) = lens.next() {
        if lens.any(|m| m != n) {
            return Err("the input vectors have different lengths".into());
        }
    }
    Ok(out)
}

/// Thresholds from a stats JSON: `recalibration_v2.new_thresholds` when present, otherwise
/// `thresholds.L.tau`.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn thresholds_from_stats(path: &Path) -> Result<BTreeMap<u32, f32>, String> {
    let text = acap_frontend::read_text("--stats", path, acap_frontend::BATCH_LIMIT)?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(path, format!("not JSON: {e}")))?;
    let (table, source) = match v.pointer("/recalibration_v2/new_thresholds") {
        Some(t) => (t, "recalibration_v2.new_thresholds"),
        None => (
            v.get("thresholds").ok_or_else(|| {
                bad(
                    path,
                    "no \"thresholds\" and no \"recalibration_v2.new_thresholds\"",
                )
            })?,
            "thresholds",
        ),
    };
    let obj = table
        .as_object()
        .ok_or_else(|| bad(path, format!("\"{source}\" is not an object")))?;
    obj.iter()
        .map(|(k, t)| {
            let layer = k
                .parse::<u32>()
                .map_err(|_| bad(path, format!("{source}: key \"{k}\" is not a layer number")))?;
            let tau = t
                .as_f64()
                .or_else(|| t.get("tau").and_then(Value::as_f64))
                .ok_or_else(|| bad(path, format!("{source}.{k}: no threshold value")))?;
            Ok((layer, tau as f32))
        })
        .collect()
}

/// Thresholds from a PyTorch checkpoint holding a dict `{layer: tau}` (the users' release
/// format), values used as they are.
///
/// # Errors
/// A one-line message naming the file and the key or value at fault.
pub fn thresholds_from_pt(path: &Path) -> Result<BTreeMap<u32, f32>, String> {
    let d = acap::torch::load_number_dict(path).map_err(|e| format!("--thresholds {e}"))?;
    d.into_iter()
        .map(|(k, v)| {
            let layer = u32::try_from(k).map_err(|_| {
                bad(
                    path,
                    format!("--thresholds: layer {k} is not a block number"),
                )
            })?;
            let tau = v as f32;
            if !tau.is_finite() {
                return Err(bad(
                    path,
                    format!("--thresholds: layer {k}: {v} does not fit a 32-bit float"),
                ));
            }
            Ok((layer, tau))
        })
        .collect()
}

/// Runs `acap axis convert`.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn run_convert(
    inputs: &[PathBuf],
    stats: Option<&Path>,
    thresholds_pt: Option<&Path>,
    layers: Option<(i64, i64)>,
    model_hint: Option<&str>,
    output: &Path,
) -> Result<(), String> {
    let vectors = vectors_from(inputs)?;
    let thresholds = match (stats, thresholds_pt) {
        (Some(_), Some(_)) => return Err("give either --stats or --thresholds, not both".into()),
        (Some(s), None) => thresholds_from_stats(s)?,
        (None, Some(t)) => thresholds_from_pt(t)?,
        (None, None) => BTreeMap::new(),
    };
    let keep: Vec<u32> = match layers {
        Some((a, b)) => {
            let max = vectors.keys().max().copied().unwrap_or(0) + 1;
            LayerRange::new(a, b).blocks(max).collect()
        }
        None if !thresholds.is_empty() => thresholds.keys().copied().collect(),
        None => vectors.keys().copied().filter(|&l| l > 0).collect(),
    };
    let mut w = AxisWriter::new().with_hook("l_out").with_operation("cap");
    if let Some(h) = model_hint {
        w = w.with_model_hint(h);
    }
    let mut written = 0;
    for l in keep {
        if l == 0 {
            continue; // the reference never loads a layer-0 direction
        }
        let v = vectors
            .get(&l)
            .ok_or_else(|| format!("layer {l}: no vector for it in the inputs"))?;
        w = w.with_direction(l, v.clone());
        if let Some(&t) = thresholds.get(&l) {
            w = w.with_threshold(l, t);
        }
        written += 1;
    }
    if written == 0 {
        return Err("no layers to write (layer 0 is never written)".into());
    }
    w.write_file(output)
        .map_err(|e| format!("-o {}: {e}", output.display()))?;
    let norms: Vec<String> = AxisFile::open(output)
        .map_err(|e| e.to_string())?
        .directions()
        .iter()
        .map(|(l, v)| format!("{l}:{:.3}", normalise(v.clone()).norm))
        .collect();
    eprintln!(
        "convert: wrote {} layers ({} with thresholds) to {}; norms {}",
        written,
        thresholds.len(),
        output.display(),
        norms.join(" ")
    );
    Ok(())
}

/// The non-negative integers of a JSON array (none for anything else).
fn usize_list(v: &Value) -> Vec<usize> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        })
        .unwrap_or_default()
}
