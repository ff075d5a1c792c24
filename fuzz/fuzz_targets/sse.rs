//! Any bytes, decoded as lossy UTF-8 and split into lines as a stream reader would: the SSE line
//! decoder must never panic.
#![no_main]

use bakeoff::formats::sse::{parse_line, SseLine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.split_inclusive('\n') {
        if let SseLine::Data(payload) | SseLine::Error(payload) = parse_line(line) {
            assert!(line.contains(payload));
        }
    }
});
