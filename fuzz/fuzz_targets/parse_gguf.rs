//! Fuzzes the GGUF parser: any input must parse to Ok or Err without panicking, and anything
//! that parses must be safe to read completely.
#![no_main]

use acap_gguf::{GgufFile, GgufWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    for (key, _) in file.metadata() {
        let _ = file.get_str(key);
        let _ = file.get_uint(key);
    }
    for info in file.tensors() {
        let view = file.view(info);
        let _ = view.to_f32_vec();
        let _ = view.as_f32_slice();
    }
    // Whatever parses must also re-serialise and parse again.
    let bytes = GgufWriter::from_file(&file)
        .and_then(GgufWriter::into_bytes)
        .expect("a parsed file re-serialises");
    GgufFile::from_bytes(bytes).expect("a re-serialised file parses");
});
