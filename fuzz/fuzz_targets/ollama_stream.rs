//! Any bytes as an Ollama NDJSON reply (chat or generate): folding it must give a reply or an error
//! naming the line, never panic. Also any bytes as a task file and a BFCL-style dataset.
#![no_main]

use bakeoff::engines::ollama::read_stream;
use bakeoff::quality::toolcall::bfcl::Dataset;
use bakeoff::quality::toolcall::Task;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_stream(data, "fuzz.ndjson");
    let text = String::from_utf8_lossy(data);
    let _ = Task::parse(&text, "fuzz.toml");
    let _ = Dataset::parse(&text, "fuzz.json");
});
