//! GBNF grammars that force a tool call in a model family's native syntax, with arguments fitting
//! each tool's JSON schema: constrained decoding on llama-server's `/completion`, so the tool path is
//! exercised on small models that never call tools on their own.

use crate::chat::ToolCallFormat;
use crate::{Error, Result};
use serde_json::Value;
use std::fmt::Write;

/// Shared rules. Strings and numbers are bounded so a small model cannot ramble inside a value.
const PRIMITIVES: &str = r#"ws ::= " "?
string ::= "\"" char{0,32} "\""
char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
integer ::= "-"? ([0-9] | [1-9] [0-9]{1,9})
number ::= integer ("." [0-9]{1,6})?
boolean ::= "true" | "false"
scalar ::= string | number | boolean | "null"
"#;

/// A grammar whose every sentence is exactly one call of one of `tools` (OpenAI-shape definitions) in
/// `format`'s syntax (one: allowing more, tiny models repeat calls until the token budget runs
/// out). With `thinking`, a short `<think>…</think>` block comes first (a test aid for
/// the rule that thinking is never replayed).
pub fn tool_call_grammar(
    format: ToolCallFormat,
    tools: &[Value],
    thinking: bool,
) -> Result<String> {
    let (open, close, arguments_key) = match format {
        ToolCallFormat::Hermes => ("<tool_call>\\n", "\\n</tool_call>", "arguments"),
        ToolCallFormat::Llama3Json => ("", "", "parameters"),
        other => {
            return Err(Error::input(format!(
                "no forcing grammar for the {} tool-call format (forced calls support hermes and llama3_json)",
                other.name()
            )))
        }
    };
    let mut rules = String::new();
    let mut alternatives = Vec::new();
    for (index, tool) in tools.iter().enumerate() {
        let function = &tool["function"];
        let name = function["name"]
            .as_str()
            .ok_or_else(|| Error::input(format!("tools[{index}]: no function.name")))?;
        let args = schema_rule(&function["parameters"], &format!("t{index}"), &mut rules, 0);
        let rule = format!("call{index}");
        let _ = writeln!(
            rules,
            "{rule} ::= \"{{\\\"name\\\": \" {} \", \\\"{arguments_key}\\\": \" {args} \"}}\"",
            literal(&Value::String(name.into()))
        );
        alternatives.push(rule);
    }
    if alternatives.is_empty() {
        return Err(Error::input("no tools to force a call of"));
    }
    let think = if thinking {
        "\"<think>\" [a-z ]{1,40} \"</think>\\n\" "
    } else {
        ""
    };
    let mut grammar = format!(
        "root ::= {think}\"{open}\" call \"{close}\"\ncall ::= {}\n",
        alternatives.join(" | ")
    );
    grammar.push_str(&rules);
    grammar.push_str(PRIMITIVES);
    Ok(grammar)
}

/// A GBNF expression for values of `schema`, adding named rules to `rules` as needed.
fn schema_rule(schema: &Value, prefix: &str, rules: &mut String, depth: usize) -> String {
    if let Some(options) = schema["enum"].as_array().filter(|o| !o.is_empty()) {
        let alternatives: Vec<String> = options.iter().map(literal).collect();
        return format!("({})", alternatives.join(" | "));
    }
    match schema["type"].as_str() {
        Some("string") => "string".into(),
        Some("integer") => "integer".into(),
        Some("number") => "number".into(),
        Some("boolean") => "boolean".into(),
        Some("array") if depth < 3 => {
            let item = schema_rule(&schema["items"], &format!("{prefix}-i"), rules, depth + 1);
            format!("(\"[\" ({item} (\",\" ws {item}){{0,7}})? \"]\")")
        }
        Some("object") if depth < 3 => object_rule(schema, prefix, rules, depth),
        _ => "scalar".into(),
    }
}

/// An object with its required properties in declared order (all of them when none is required,
/// so a forced call carries arguments); optional ones are left out.
fn object_rule(schema: &Value, prefix: &str, rules: &mut String, depth: usize) -> String {
    let Some(properties) = schema["properties"].as_object().filter(|p| !p.is_empty()) else {
        return "\"{}\"".into();
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut parts = Vec::new();
    for (index, (key, property)) in properties.iter().enumerate() {
        if !required.is_empty() && !required.contains(&key.as_str()) {
            continue;
        }
        let value = schema_rule(property, &format!("{prefix}-{index}"), rules, depth + 1);
        parts.push(format!(
            "{} \": \" {value}",
            literal(&Value::String(key.clone()))
        ));
    }
    let rule = format!("{prefix}-obj");
    let _ = writeln!(rules, "{rule} ::= \"{{\" {} \"}}\"", parts.join(" \", \" "));
    rule
}

/// A GBNF string literal producing `value`'s JSON text.
fn literal(value: &Value) -> String {
    let json = value.to_string();
    let mut out = String::from("\"");
    for c in json.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {"name": "search_movies", "parameters": {
                "type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}}}),
            json!({"type": "function", "function": {"name": "book", "parameters": {
                "type": "object", "properties": {
                    "id": {"type": "string"}, "count": {"type": "integer"},
                    "unit": {"type": "string", "enum": ["a", "b"]}, "note": {"type": "string"}},
                "required": ["id", "count", "unit"]}}}),
        ]
    }

    #[test]
    fn hermes_grammar_wraps_calls_in_tool_call_tags() {
        let grammar = tool_call_grammar(ToolCallFormat::Hermes, &tools(), false).unwrap();
        assert!(grammar.starts_with("root ::= \"<tool_call>\\n\" call \"\\n</tool_call>\"\n"));
        assert!(grammar.contains("call ::= call0 | call1\n"));
        assert!(grammar.contains(
            "call0 ::= \"{\\\"name\\\": \" \"\\\"search_movies\\\"\" \", \\\"arguments\\\": \" t0-obj \"}\""
        ));
        assert!(
            grammar.contains("(\"\\\"a\\\"\" | \"\\\"b\\\"\")"),
            "{grammar}"
        );
        // Optional `note` is left out of the forced call.
        assert!(!grammar.contains("note"), "{grammar}");
    }

    #[test]
    fn llama3_uses_parameters_and_others_are_refused() {
        let grammar = tool_call_grammar(ToolCallFormat::Llama3Json, &tools(), true).unwrap();
        assert!(grammar.starts_with("root ::= \"<think>\""));
        assert!(grammar.contains("\\\"parameters\\\""));
        let error = tool_call_grammar(ToolCallFormat::Mistral, &tools(), false).unwrap_err();
        assert!(error
            .to_string()
            .contains("no forcing grammar for the mistral"));
        assert!(tool_call_grammar(ToolCallFormat::Hermes, &[], false).is_err());
    }
}
