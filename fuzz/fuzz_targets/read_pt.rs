//! Fuzzes the PyTorch checkpoint reader: any bytes, as a zip archive or as a raw pickle,
//! must give Ok or Err without panicking, hanging or running anything.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = acap_torch::fuzz_unpickle(data);
    let _ = acap_torch::tensor_from_bytes(data.to_vec());
    let _ = acap_torch::number_dict_from_bytes(data.to_vec());
});
