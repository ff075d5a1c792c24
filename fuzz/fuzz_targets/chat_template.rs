//! Any bytes as a chat template (lossy UTF-8; before the first NUL byte) and a message text (after
//! it): parsing and rendering must return a prompt or a `TemplateError`, never panic. Fuel, the
//! recursion limit and `range`'s cap bound the work; run with `-rss_limit_mb` since string
//! doubling in a hostile template can still allocate a lot.
#![no_main]

use bakeoff::chat::{ChatTemplate, Message, ToolCall};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (source, content) = text.split_once('\0').unwrap_or((&text, "hello"));
    let mut template = ChatTemplate::new(source, "<s>", "</s>");
    template.now = Some(0);
    let call = ToolCall::new("f", serde_json::json!({"a": [1, 2.5, null, true], "b": content}));
    let messages = [
        Message::system(content),
        Message::user(content),
        Message::tool_calls(vec![call]),
        Message::tool_result(Some("abc123XYZ".into()), "f", content),
    ];
    let tools = [serde_json::json!({"type": "function", "function": {"name": "f", "parameters": {}}})];
    let _ = template.render(&messages, &tools, true, &serde_json::Map::new());
    let _ = template.render(&messages[..2], &[], false, &serde_json::Map::new());
});
