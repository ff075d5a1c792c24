//! Any bytes (lossy UTF-8) as a completion for every native tool-call format: a parser returns
//! calls or an error whose offset lies inside the completion on a character boundary, never panics.
#![no_main]

use bakeoff::chat::ToolCallFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for format in ToolCallFormat::ALL {
        if let Err(error) = format.parse(&text) {
            assert!(error.offset <= text.len() && text.is_char_boundary(error.offset));
        }
    }
});
