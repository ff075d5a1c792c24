//! A small single-turn function-calling set written for bakeoff (`data/toolcall/bfcl.json`: simple,
//! multiple, parallel, irrelevance) scored with the Berkeley Function Calling Leaderboard's AST rules
//! (`bfcl_eval/eval_checker/ast_eval/ast_checker.py`): the function name must match; required
//! parameters must be present; no parameter outside the schema or the answer; each value has the
//! schema's type (an integer passes for a number) and is one of the allowed values (strings compared
//! after lower-casing and removing spaces and `,./-_*^`, lists element by element, objects key by
//! key); a ground-truth parameter whose allowed values include `""` may be left out. Parallel calls
//! match in any order; an irrelevance item passes when the model calls nothing.

use super::arms::{Arm, StepError};
use crate::chat::{Message, ToolCall};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Instant;

const BUILTIN: &str = include_str!("../../../data/toolcall/bfcl.json");

#[derive(Debug, Clone, Deserialize)]
pub struct Dataset {
    pub functions: BTreeMap<String, Value>,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub category: String,
    pub question: String,
    pub functions: Vec<String>,
    /// One entry per expected call: `{function: {param: [allowed values]}}`.
    pub ground_truth: Vec<Map<String, Value>>,
}

/// The checker's answer, in BFCL's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub valid: bool,
    /// e.g. `simple_function_checker:missing_required`, `value_error:string`, `type_error:simple`.
    pub error_type: Option<String>,
    pub errors: Vec<String>,
}

impl Verdict {
    fn ok() -> Self {
        Verdict {
            valid: true,
            error_type: None,
            errors: Vec::new(),
        }
    }

    fn fail(error_type: &str, error: String) -> Self {
        Verdict {
            valid: false,
            error_type: Some(error_type.into()),
            errors: vec![error],
        }
    }
}

pub const CATEGORIES: [&str; 4] = ["simple", "multiple", "parallel", "irrelevance"];

impl Dataset {
    pub fn builtin() -> Result<Dataset> {
        Dataset::parse(BUILTIN, "built-in BFCL set")
    }

    pub fn parse(text: &str, source: &str) -> Result<Dataset> {
        let dataset: Dataset =
            serde_json::from_str(text).map_err(|e| Error::input(format!("{source}: {e}")))?;
        dataset
            .check()
            .map_err(|m| Error::input(format!("{source}: {m}")))?;
        Ok(dataset)
    }

    fn check(&self) -> std::result::Result<(), String> {
        for item in &self.items {
            let at = |m: String| format!("item {}: {m}", item.id);
            if !CATEGORIES.contains(&item.category.as_str()) {
                return Err(at(format!("unknown category '{}'", item.category)));
            }
            for name in &item.functions {
                if !self.functions.contains_key(name) {
                    return Err(at(format!("function '{name}' is not defined")));
                }
            }
            for answer in &item.ground_truth {
                for (name, params) in answer {
                    let Some(function) = self
                        .functions
                        .get(name)
                        .filter(|_| item.functions.contains(name))
                    else {
                        return Err(at(format!(
                            "ground truth calls '{name}', which the item does not offer"
                        )));
                    };
                    for param in params.as_object().into_iter().flatten().map(|(k, _)| k) {
                        if function["parameters"]["properties"].get(param).is_none() {
                            return Err(at(format!(
                                "ground truth parameter '{name}.{param}' is not in the schema"
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The item's functions as OpenAI tool definitions.
    pub fn tools(&self, item: &Item) -> Vec<Value> {
        item.functions
            .iter()
            .filter_map(|name| self.functions.get(name))
            .map(|f| json!({ "type": "function", "function": f }))
            .collect()
    }

    /// Score `calls` on `item` with the AST rules.
    pub fn check_calls(&self, item: &Item, calls: &[ToolCall]) -> Verdict {
        if item.category == "irrelevance" {
            return if calls.is_empty() {
                Verdict::ok()
            } else {
                Verdict::fail(
                    "irrelevance_checker:function_called",
                    format!("expected no call, got {}", names(calls)),
                )
            };
        }
        if calls.len() != item.ground_truth.len() {
            return Verdict::fail(
                &format!("{}_function_checker:wrong_count", item.category),
                format!(
                    "Wrong number of functions: expected {}, got {} ({})",
                    item.ground_truth.len(),
                    calls.len(),
                    names(calls)
                ),
            );
        }
        if item.category == "parallel" {
            return self.parallel_no_order(calls, &item.ground_truth);
        }
        self.simple(&calls[0], &item.ground_truth[0])
    }

    fn parallel_no_order(&self, calls: &[ToolCall], answers: &[Map<String, Value>]) -> Verdict {
        let mut matched = vec![false; calls.len()];
        for (index, answer) in answers.iter().enumerate() {
            let mut errors = Vec::new();
            let found = calls.iter().enumerate().find(|(i, call)| {
                if matched[*i] {
                    return false;
                }
                let verdict = self.simple(call, answer);
                errors.extend(verdict.errors.iter().map(|e| format!("call {i}: {e}")));
                verdict.valid
            });
            match found {
                Some((i, _)) => matched[i] = true,
                None => {
                    let mut verdict = Verdict::fail(
                        "parallel_function_checker_no_order:cannot_find_match",
                        format!("Could not find a matching function for index {index} of the possible answers."),
                    );
                    verdict.errors.extend(errors);
                    return verdict;
                }
            }
        }
        Verdict::ok()
    }

    /// BFCL's `simple_function_checker` for one call against one `{function: {param: [values]}}`.
    fn simple(&self, call: &ToolCall, answer: &Map<String, Value>) -> Verdict {
        let Some((expected, allowed)) = answer.iter().next() else {
            return Verdict::fail(
                "simple_function_checker:unclear",
                "empty ground truth".into(),
            );
        };
        if &call.name != expected {
            return Verdict::fail(
                "simple_function_checker:wrong_func_name",
                format!(
                    "Function name '{expected}' not found in model output (got '{}').",
                    call.name
                ),
            );
        }
        let empty = Map::new();
        let allowed = allowed.as_object().unwrap_or(&empty);
        let schema = &self.functions[expected]["parameters"];
        let arguments = call.arguments.as_object().unwrap_or(&empty);
        for required in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !arguments.contains_key(required) {
                return Verdict::fail(
                    "simple_function_checker:missing_required",
                    format!("Missing required parameter: '{required}'."),
                );
            }
        }
        for (param, value) in arguments {
            let property = &schema["properties"][param];
            let Some(options) = allowed
                .get(param)
                .and_then(Value::as_array)
                .filter(|_| !property.is_null())
            else {
                return Verdict::fail(
                    "simple_function_checker:unexpected_param",
                    format!("Unexpected parameter: '{param}'."),
                );
            };
            if let Some(verdict) = check_value(param, value, property, options) {
                return verdict;
            }
        }
        for (param, options) in allowed {
            let optional = options.as_array().is_some_and(|o| o.contains(&json!("")));
            if !arguments.contains_key(param) && !optional {
                return Verdict::fail(
                    "simple_function_checker:missing_optional",
                    format!(
                        "Optional parameter '{param}' not provided and not marked as optional."
                    ),
                );
            }
        }
        Verdict::ok()
    }
}

/// Type, then value, of one parameter; `None` when it passes.
fn check_value(param: &str, value: &Value, property: &Value, options: &[Value]) -> Option<Verdict> {
    let kind = property["type"].as_str().unwrap_or("string");
    if !has_type(value, kind) {
        return Some(Verdict::fail("type_error:simple", format!("Incorrect type for parameter '{param}'. Expected type {kind}, got {}. Parameter value: {value}.", json_type(value))));
    }
    if kind == "array" {
        let item_kind = property["items"]["type"].as_str().unwrap_or("string");
        if let Some(bad) = value
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| !has_type(v, item_kind))
        {
            return Some(Verdict::fail("type_error:nested", format!("Nested type checking failed for parameter '{param}'. Expected inner type {item_kind}, got {}.", json_type(bad))));
        }
    }
    let valid = match value {
        Value::String(text) => {
            let text = standardize(text);
            options
                .iter()
                .any(|o| o.as_str().is_some_and(|o| standardize(o) == text))
        }
        Value::Array(items) => options
            .iter()
            .any(|o| o.as_array().is_some_and(|o| same_list(items, o))),
        Value::Object(fields) => options
            .iter()
            .any(|o| o.as_object().is_some_and(|o| same_dict(fields, o))),
        other => options.iter().any(|o| same_scalar(other, o)),
    };
    (!valid).then(|| {
        let error_type = match value {
            Value::String(_) => "value_error:string",
            Value::Array(_) => "value_error:list/tuple",
            Value::Object(_) => "value_error:dict_value",
            _ => "value_error:others",
        };
        Verdict::fail(
            error_type,
            format!(
                "Invalid value for parameter '{param}': {value}. Expected one of {}.",
                Value::Array(options.to_vec())
            ),
        )
    })
}

/// BFCL's `standardize_string`: drop spaces and `,./-_*^`, lower-case, `'` → `"`.
pub fn standardize(text: &str) -> String {
    text.chars()
        .filter(|c| !" ,./-_*^".contains(*c))
        .collect::<String>()
        .to_lowercase()
        .replace('\'', "\"")
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        // Python's int → float auto-conversion.
        "number" | "float" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" | "tuple" => value.is_array(),
        "object" | "dict" => value.is_object(),
        _ => true,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => standardize(x) == standardize(y),
        _ => a == b,
    }
}

fn same_list(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_scalar(x, y))
}

fn same_dict(model: &Map<String, Value>, allowed: &Map<String, Value>) -> bool {
    let value_ok = |key: &String, value: &Value| {
        allowed
            .get(key)
            .and_then(Value::as_array)
            .is_some_and(|o| o.iter().any(|o| same_scalar(value, o)))
    };
    model.iter().all(|(k, v)| value_ok(k, v))
        && allowed.iter().all(|(k, o)| {
            model.contains_key(k) || o.as_array().is_some_and(|o| o.contains(&json!("")))
        })
}

fn names(calls: &[ToolCall]) -> String {
    calls
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One item through one arm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemResult {
    pub id: String,
    pub category: String,
    pub arm: String,
    pub calls: Vec<Value>,
    pub content: String,
    pub verdict: Verdict,
    pub elapsed_s: f64,
    pub prompt_eval_count: Option<u64>,
    pub eval_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// Ask `arm` one turn for `item` and score it. A request failure is an error; a reply that does not
/// parse is an invalid answer (`decode_error`), as in BFCL.
pub fn run_item(
    arm: &mut dyn Arm,
    dataset: &Dataset,
    item: &Item,
) -> std::result::Result<ItemResult, StepError> {
    let tools = dataset.tools(item);
    let clock = Instant::now();
    let turn = arm.turn(&[Message::user(&item.question)], &tools, 1)?;
    let elapsed_s = clock.elapsed().as_secs_f64();
    let verdict = match &turn.parse_error {
        Some(reason) => Verdict::fail("decode_error", reason.clone()),
        None => dataset.check_calls(item, &turn.tool_calls),
    };
    Ok(ItemResult {
        id: item.id.clone(),
        category: item.category.clone(),
        arm: arm.info().name.clone(),
        calls: turn
            .tool_calls
            .iter()
            .map(|c| json!({ "name": c.name, "arguments": c.arguments }))
            .collect(),
        content: turn.content,
        verdict,
        elapsed_s,
        prompt_eval_count: turn.prompt_eval_count,
        eval_count: turn.eval_count,
        prompt: turn.prompt,
        raw: turn.raw,
    })
}

/// [`run_item`], with a failed request scored as an invalid answer (`error:STAGE`) so that one
/// engine error does not end the set.
pub fn score_item(arm: &mut dyn Arm, dataset: &Dataset, item: &Item) -> ItemResult {
    run_item(arm, dataset, item).unwrap_or_else(|failure| ItemResult {
        id: item.id.clone(),
        category: item.category.clone(),
        arm: arm.info().name.clone(),
        calls: Vec::new(),
        content: String::new(),
        verdict: Verdict {
            valid: false,
            error_type: Some(format!("error:{}", failure.stage)),
            errors: vec![failure.error.to_string()],
        },
        elapsed_s: 0.0,
        prompt_eval_count: None,
        eval_count: None,
        prompt: None,
        raw: None,
    })
}

/// Accuracy per category: (passed, total).
pub fn summary(results: &[ItemResult]) -> BTreeMap<String, (usize, usize)> {
    let mut out = BTreeMap::new();
    for result in results {
        let entry = out.entry(result.category.clone()).or_insert((0, 0));
        entry.0 += usize::from(result.verdict.valid);
        entry.1 += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> Dataset {
        Dataset::builtin().unwrap()
    }

    fn item<'a>(dataset: &'a Dataset, id: &str) -> &'a Item {
        dataset.items.iter().find(|i| i.id == id).unwrap()
    }

    fn call(name: &str, arguments: Value) -> ToolCall {
        ToolCall::new(name, arguments)
    }

    fn error_type(dataset: &Dataset, id: &str, calls: &[ToolCall]) -> Option<String> {
        dataset.check_calls(item(dataset, id), calls).error_type
    }

    #[test]
    fn builtin_set_covers_every_category() {
        let dataset = set();
        assert!((8..=20).contains(&dataset.items.len()));
        for category in CATEGORIES {
            assert!(
                dataset.items.iter().any(|i| i.category == category),
                "{category}"
            );
        }
    }

    #[test]
    fn simple_rules_follow_bfcl() {
        let d = set();
        let ok = |id, calls: &[ToolCall]| assert_eq!(error_type(&d, id, calls), None, "{id}");
        // Strings are standardised; optional params may be omitted; int passes for number.
        ok(
            "simple_weather",
            &[call(
                "get_weather",
                json!({"city": "paris, france", "unit": "Celsius"}),
            )],
        );
        ok(
            "simple_circle",
            &[call("calculate_area_circle", json!({"radius": 4.5}))],
        );
        ok(
            "simple_currency",
            &[call(
                "convert_currency",
                json!({"amount": 250, "from_currency": "usd", "to_currency": "EUR"}),
            )],
        );
        ok(
            "simple_recipes",
            &[call(
                "search_recipes",
                json!({"ingredients": ["Chicken", "rice", "garlic"], "max_minutes": 30}),
            )],
        );
        let cases = [
            (
                "simple_weather",
                call("get_forecast", json!({"city": "Paris"})),
                "simple_function_checker:wrong_func_name",
            ),
            (
                "simple_weather",
                call("get_weather", json!({"unit": "celsius"})),
                "simple_function_checker:missing_required",
            ),
            (
                "simple_weather",
                call(
                    "get_weather",
                    json!({"city": "Paris", "unit": "celsius", "days": 2}),
                ),
                "simple_function_checker:unexpected_param",
            ),
            (
                "simple_weather",
                call("get_weather", json!({"city": "Paris"})),
                "simple_function_checker:missing_optional",
            ),
            (
                "simple_weather",
                call("get_weather", json!({"city": "Lyon", "unit": "celsius"})),
                "value_error:string",
            ),
            (
                "simple_timer",
                call("set_timer", json!({"minutes": "12"})),
                "type_error:simple",
            ),
            (
                "simple_timer",
                call("set_timer", json!({"minutes": 12.0})),
                "type_error:simple",
            ),
            (
                "simple_timer",
                call("set_timer", json!({"minutes": 13})),
                "value_error:others",
            ),
            (
                "simple_recipes",
                call(
                    "search_recipes",
                    json!({"ingredients": ["rice", "chicken", "garlic"], "max_minutes": 30}),
                ),
                "value_error:list/tuple",
            ),
            (
                "simple_recipes",
                call(
                    "search_recipes",
                    json!({"ingredients": ["chicken", 2, "garlic"], "max_minutes": 30}),
                ),
                "type_error:nested",
            ),
        ];
        for (id, bad, expected) in cases {
            assert_eq!(
                error_type(&d, id, std::slice::from_ref(&bad)).as_deref(),
                Some(expected),
                "{id}: {bad:?}"
            );
        }
        assert_eq!(
            error_type(&d, "simple_timer", &[]).as_deref(),
            Some("simple_function_checker:wrong_count")
        );
    }

    #[test]
    fn parallel_matches_in_any_order_and_irrelevance_wants_no_call() {
        let d = set();
        let tokyo = call("get_weather", json!({"city": "Tokyo", "unit": "celsius"}));
        let oslo = call("get_weather", json!({"city": "Oslo", "unit": "celsius"}));
        assert_eq!(
            error_type(&d, "parallel_weather", &[oslo.clone(), tokyo.clone()]),
            None
        );
        assert_eq!(
            error_type(&d, "parallel_weather", &[tokyo.clone(), tokyo.clone()]).as_deref(),
            Some("parallel_function_checker_no_order:cannot_find_match")
        );
        assert_eq!(
            error_type(&d, "parallel_weather", std::slice::from_ref(&tokyo)).as_deref(),
            Some("parallel_function_checker:wrong_count")
        );
        assert_eq!(error_type(&d, "irrelevance_joke", &[]), None);
        assert_eq!(
            error_type(&d, "irrelevance_joke", &[tokyo]).as_deref(),
            Some("irrelevance_checker:function_called")
        );
        assert_eq!(
            error_type(
                &d,
                "multiple_stock",
                &[call("get_stock_price", json!({"ticker": "aapl"}))]
            ),
            None
        );
    }

    #[test]
    fn bad_datasets_name_the_item() {
        let text = r#"{"functions": {}, "items": [{"id": "x", "category": "simple", "question": "q", "functions": ["f"], "ground_truth": []}]}"#;
        let error = Dataset::parse(text, "set.json").unwrap_err().to_string();
        assert_eq!(error, "set.json: item x: function 'f' is not defined");
        assert_eq!(standardize("April 1, 2024"), "april12024");
    }
}
