//! Bounded reads of the text files users name on a command line (prompts, grammars, schemas,
//! templates, JSONL batches): a device such as `/dev/zero` or a wrong path to a huge file
//! must end with a message, not fill the memory.

use std::path::Path;

/// The limit for prompt, grammar, schema and template files: more than any context holds.
pub const TEXT_LIMIT: u64 = 64 << 20;

/// The limit for batch files (JSONL prompts or responses, statistics).
pub const BATCH_LIMIT: u64 = 1 << 30;

/// Reads the UTF-8 text file `path` given to `flag`, refusing one larger than `limit` bytes.
///
/// # Errors
/// A one-line message `FLAG PATH: reason` (not found, not UTF-8, too large).
pub fn read_text(flag: &str, path: &Path, limit: u64) -> Result<String, String> {
    acap::read_text_bounded(path, limit).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_names_the_flag_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.txt");
        std::fs::write(&p, vec![b'a'; (1 << 20) + 1]).unwrap();
        assert_eq!(read_text("-f", &p, 2 << 20).unwrap().len(), (1 << 20) + 1);
        let e = read_text("-f", &p, 1 << 20).unwrap_err();
        assert!(
            e.starts_with("-f ") && e.contains("larger than 1 MiB"),
            "{e}"
        );
        let e = read_text("--grammar-file", Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(e.contains("--grammar-file /dev/zero: larger"), "{e}");
        std::fs::write(&p, b"caf\xe9").unwrap();
        assert!(read_text("-f", &p, 1 << 20).unwrap_err().contains("UTF-8"));
        let e = read_text("-f", Path::new("/no/such/file"), 1).unwrap_err();
        assert!(e.contains("-f /no/such/file"), "{e}");
    }
}
