//! The first position where two texts (rendered prompts) differ, with line, column and a little
//! context on each side, escaped so control tokens and newlines stay visible.

use serde::{Deserialize, Serialize};

/// Characters of context shown before and after the first difference.
const CONTEXT: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextDiff {
    /// Byte offset of the first difference (in both texts, as they agree up to it).
    pub byte: usize,
    /// The same position in characters.
    pub char: usize,
    /// 1-based line and column (in characters) of the position.
    pub line: usize,
    pub column: usize,
    pub a_len: usize,
    pub b_len: usize,
    /// Escaped text around the position; `⟦` marks where the texts part.
    pub a_context: String,
    pub b_context: String,
}

/// `None` when the texts are identical.
pub fn first_difference(a: &str, b: &str) -> Option<TextDiff> {
    if a == b {
        return None;
    }
    let mut byte = 0;
    let mut char = 0;
    for (x, y) in a.chars().zip(b.chars()) {
        if x != y {
            break;
        }
        byte += x.len_utf8();
        char += 1;
    }
    let before = &a[..byte];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some(TextDiff {
        byte,
        char,
        line,
        column,
        a_len: a.len(),
        b_len: b.len(),
        a_context: context(a, byte),
        b_context: context(b, byte),
    })
}

fn context(text: &str, byte: usize) -> String {
    let head: String = text[..byte]
        .chars()
        .rev()
        .take(CONTEXT)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let tail: String = text[byte..].chars().take(CONTEXT).collect();
    let tail = if tail.is_empty() {
        "(end)".to_string()
    } else {
        escape(&tail)
    };
    format!("{}⟦{tail}", escape(&head))
}

fn escape(text: &str) -> String {
    text.chars().flat_map(char::escape_debug).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_position_line_and_context() {
        assert_eq!(first_difference("same", "same"), None);
        let diff = first_difference(
            "<|im_start|>user\nhi<|im_end|>\n",
            "<|im_start|>user\nhi<|im_end|>",
        )
        .unwrap();
        assert_eq!((diff.byte, diff.line, diff.column), (29, 2, 13));
        assert_eq!(diff.a_context, "<|im_start|>user\\nhi<|im_end|>⟦\\n");
        assert_eq!(diff.b_context, "<|im_start|>user\\nhi<|im_end|>⟦(end)");
        let diff = first_difference("é→a", "é→b").unwrap();
        assert_eq!((diff.byte, diff.char), (5, 2));
    }
}
