//! Any bytes as a whole GGUF file: the reader must return `Ok` or `Err`, never panic, overflow or
//! allocate from an unchecked count. Errors must point inside the input, except tensor-extent
//! errors (field ending in " data"), which point at the missing data.
#![no_main]

use bakeoff::formats::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match GgufFile::read(data, data.len() as u64) {
        Ok(file) => {
            for tensor in &file.tensors {
                let _ = tensor.bytes();
            }
            for (_, value) in &file.metadata {
                let _ = value.summary();
            }
        }
        Err(err) => {
            assert!(!err.field.is_empty(), "empty field: {err:?}");
            assert!(
                err.offset <= data.len() as u64 || err.field.ends_with(" data"),
                "offset past the end: {err}"
            );
            let _ = err.to_string();
        }
    }
});
