//! Shell-style name globs for model selection: `*`, `?` and `[...]` classes (ranges `a-z`,
//! negation `[!...]` or `[^...]`). A few dozen lines rather than a crate: only single names are
//! matched (never paths), and the matcher backtracks at most to the last `*`, so it stays linear
//! in practice on file names.

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Any,
    One,
    Class {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
    Literal(char),
}

/// Whether `text` holds a glob metacharacter.
pub fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Whether the whole of `name` matches `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    let tokens = tokens(pattern);
    let name: Vec<char> = name.chars().collect();
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Any) => {
                star = Some((t, n));
                t += 1;
            }
            Some(token) if accepts(token, name[n]) => (t, n) = (t + 1, n + 1),
            _ => match star {
                Some((star_t, star_n)) => {
                    star = Some((star_t, star_n + 1));
                    (t, n) = (star_t + 1, star_n + 1);
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|token| *token == Token::Any)
}

fn accepts(token: &Token, c: char) -> bool {
    match token {
        Token::Any | Token::One => true,
        Token::Literal(l) => *l == c,
        Token::Class { ranges, negated } => {
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
        }
    }
}

fn tokens(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let (token, next) = match chars[at] {
            '*' => (Token::Any, at + 1),
            '?' => (Token::One, at + 1),
            '[' => class(&chars, at).unwrap_or((Token::Literal('['), at + 1)),
            c => (Token::Literal(c), at + 1),
        };
        tokens.push(token);
        at = next;
    }
    tokens
}

/// The class opening at `chars[open]` and the index after its `]`; `None` when it never closes.
fn class(chars: &[char], open: usize) -> Option<(Token, usize)> {
    let mut at = open + 1;
    let negated = matches!(chars.get(at), Some('!' | '^'));
    at += usize::from(negated);
    let start = at;
    let mut ranges = Vec::new();
    while at < chars.len() && (chars[at] != ']' || at == start) {
        let lo = chars[at];
        match (chars.get(at + 1), chars.get(at + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                ranges.push((lo, hi));
                at += 3;
            }
            _ => {
                ranges.push((lo, lo));
                at += 1;
            }
        }
    }
    (at < chars.len()).then_some((Token::Class { ranges, negated }, at + 1))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_questions_and_classes() {
        assert!(matches("*.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"));
        assert!(!matches("*.gguf", "notes.txt"));
        assert!(matches("*Q4*", "a-Q4_K_M.gguf"));
        assert!(matches("gemma-?-*", "gemma-3-270m"));
        assert!(!matches("gemma-?-*", "gemma-30-270m"));
        assert!(matches("*-Q[48]_0.gguf", "m-Q8_0.gguf"));
        assert!(!matches("*-Q[48]_0.gguf", "m-Q5_0.gguf"));
        assert!(matches("[a-c]x", "bx"));
        assert!(matches("[!a-c]x", "dx"));
        assert!(!matches("[!a-c]x", "ax"));
        assert!(matches("*", ""));
        assert!(!matches("?", ""));
    }

    #[test]
    fn an_unclosed_class_is_a_literal_bracket() {
        assert!(matches("a[b", "a[b"));
        assert!(!matches("a[b", "ab"));
        assert!(matches("[]]", "]"));
    }

    #[test]
    fn many_stars_do_not_explode() {
        // Backtracking only to the last star keeps this linear rather than exponential.
        let name = "a".repeat(200);
        assert!(!matches("*a*a*a*a*a*a*a*a*b", &name));
    }
}
