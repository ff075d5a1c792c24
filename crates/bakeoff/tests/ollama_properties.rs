//! Property tests of the Ollama NDJSON fold: any stream of chunks folds back to their concatenation
//! with the final metrics, and no input bytes make it panic.

use bakeoff::engines::ollama::read_stream;
use proptest::prelude::*;
use serde_json::json;

proptest! {
    #[test]
    fn chunks_fold_to_their_concatenation(chunks in prop::collection::vec(".{0,12}", 0..12), eval in 0u64..10_000, blank_every in 1usize..5) {
        let mut text = String::new();
        for (index, chunk) in chunks.iter().enumerate() {
            let line = json!({"model": "m", "message": {"role": "assistant", "content": chunk}, "done": false});
            text.push_str(&line.to_string());
            text.push('\n');
            if index % blank_every == 0 {
                text.push('\n');
            }
        }
        let last = json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true, "eval_count": eval, "eval_duration": eval * 1000});
        text.push_str(&last.to_string());
        let reply = read_stream(text.as_bytes(), "prop").unwrap();
        prop_assert_eq!(reply.content, chunks.concat());
        prop_assert_eq!(reply.eval_count, Some(eval));
        prop_assert_eq!(reply.lines, chunks.len() + 1);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_stream(bytes.as_slice(), "prop");
    }

    #[test]
    fn a_cut_stream_is_an_error_not_a_reply(chunks in prop::collection::vec("[a-z]{1,8}", 1..6)) {
        let text: String = chunks
            .iter()
            .map(|c| format!("{}\n", json!({"message": {"content": c}, "done": false})))
            .collect();
        let error = read_stream(text.as_bytes(), "cut").unwrap_err().to_string();
        prop_assert!(error.contains("without a final `done: true` line"), "{}", error);
    }
}
