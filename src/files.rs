//! Bounded reads of text files named by users (prompts, grammars, templates): a device such
//! as `/dev/zero`, or a wrong path to a huge file, ends with an error instead of filling the
//! memory.

use std::io::Read;
use std::path::Path;

/// Reads the UTF-8 text file `path`, refusing one larger than `limit` bytes.
///
/// # Errors
/// The I/O error (not found, not UTF-8), or `InvalidData` "larger than N MiB, the limit for
/// this file".
pub fn read_text_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB, the limit for this file", limit >> 20),
        ));
    }
    Ok(text)
}
