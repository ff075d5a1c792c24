//! Agentic tasks: a TOML file with a system prompt, a user prompt, optional earlier turns, a step
//! budget (default 20) and fake tools whose results come from a fixed table of argument patterns, so
//! every arm sees the same world. Built-ins modelled on seed 001 ship in `data/toolcall/`.

use crate::chat::{Message, ToolCall};
use crate::formats::config_file;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The step budget when a task file names none (seed 001's harness used 20).
pub const DEFAULT_STEP_BUDGET: u32 = 20;

const BUILTINS: [(&str, &str); 4] = [
    ("movies", include_str!("../../../data/toolcall/movies.toml")),
    (
        "research",
        include_str!("../../../data/toolcall/research.toml"),
    ),
    ("memory", include_str!("../../../data/toolcall/memory.toml")),
    ("long", include_str!("../../../data/toolcall/long.toml")),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub system: String,
    pub user: String,
    /// Earlier turns, replayed before `user` (plain role/content messages).
    #[serde(default)]
    pub history: Vec<HistoryMessage>,
    #[serde(default = "default_budget")]
    pub step_budget: u32,
    pub tools: Vec<FakeTool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeTool {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments (`type = "object"`).
    pub parameters: Value,
    /// Tried in order; the first rule whose `when` matches gives the result.
    #[serde(default)]
    pub results: Vec<ResultRule>,
}

/// `when` maps argument names to patterns: a string pattern matches the argument's text case-
/// insensitively with `*` and `?` wildcards; any other value must equal the argument (numbers by
/// value, so 120 matches 120.0). An empty `when` matches every call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultRule {
    #[serde(default)]
    pub when: Map<String, Value>,
    pub result: Value,
}

fn default_budget() -> u32 {
    DEFAULT_STEP_BUDGET
}

impl Task {
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTINS.iter().map(|(name, _)| *name).collect()
    }

    pub fn builtin(name: &str) -> Option<Task> {
        let (_, text) = BUILTINS.iter().find(|(n, _)| *n == name)?;
        Task::parse(text, &format!("built-in task {name}")).ok()
    }

    /// A built-in task by name, else a task file by path.
    pub fn resolve(spec: &str) -> Result<Task> {
        if let Some(task) = Task::builtin(spec) {
            return Ok(task);
        }
        let path = Path::new(spec);
        if !path.exists() {
            return Err(Error::input(format!("no task '{spec}'")).with_hint(format!(
                "built-in tasks: {}; or give the path of a task TOML file",
                Task::builtin_names().join(", ")
            )));
        }
        Task::load(path)
    }

    pub fn load(path: &Path) -> Result<Task> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Task::parse(&text, &path.display().to_string())
    }

    /// Parse and check a task file; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Task> {
        let task: Task = config_file::parse(text, source)?;
        task.check()
            .map_err(|message| Error::input(format!("{source}: {message}")))?;
        Ok(task)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.step_budget == 0 {
            return Err("step_budget must be at least 1".into());
        }
        if self.tools.is_empty() {
            return Err("a task needs at least one [[tools]] entry".into());
        }
        for (index, message) in self.history.iter().enumerate() {
            if !matches!(message.role.as_str(), "system" | "user" | "assistant") {
                return Err(format!(
                    "history[{index}].role: '{}' is not system, user or assistant",
                    message.role
                ));
            }
        }
        for (index, tool) in self.tools.iter().enumerate() {
            if self.tools[..index].iter().any(|t| t.name == tool.name) {
                return Err(format!(
                    "tools[{index}]: duplicate tool name '{}'",
                    tool.name
                ));
            }
            tool.check()
                .map_err(|m| format!("tools[{index}] ({}): {m}", tool.name))?;
        }
        Ok(())
    }

    /// Tool definitions in the OpenAI / transformers shape.
    pub fn tool_definitions(&self) -> Vec<Value> {
        self.tools.iter().map(FakeTool::definition).collect()
    }

    /// The conversation an episode starts from: system prompt, earlier turns, the user prompt.
    pub fn initial_messages(&self) -> Vec<Message> {
        let mut messages = Vec::new();
        if !self.system.is_empty() {
            messages.push(Message::system(&self.system));
        }
        for earlier in &self.history {
            messages.push(Message::new(&earlier.role, &earlier.content));
        }
        messages.push(Message::user(&self.user));
        messages
    }

    /// The deterministic result of a call: the first matching rule's result, or an error object.
    pub fn call(&self, call: &ToolCall) -> Value {
        match self.tools.iter().find(|t| t.name == call.name) {
            Some(tool) => tool.answer(&call.arguments),
            None => json!({ "error": format!("unknown tool '{}'", call.name) }),
        }
    }
}

impl FakeTool {
    fn check(&self) -> std::result::Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
            return Err("name must be letters, digits, '_' or '-'".into());
        }
        if self.parameters["type"] != "object" {
            return Err("parameters.type must be \"object\"".into());
        }
        let properties = self.parameters["properties"].as_object();
        for (index, rule) in self.results.iter().enumerate() {
            for key in rule.when.keys() {
                if !properties.is_some_and(|p| p.contains_key(key)) {
                    return Err(format!(
                        "results[{index}].when: '{key}' is not a parameter of this tool"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn definition(&self) -> Value {
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            }
        })
    }

    fn answer(&self, arguments: &Value) -> Value {
        self.results
            .iter()
            .find(|rule| rule.matches(arguments))
            .map(|rule| rule.result.clone())
            .unwrap_or_else(|| json!({ "error": "no result for these arguments" }))
    }
}

impl ResultRule {
    fn matches(&self, arguments: &Value) -> bool {
        self.when
            .iter()
            .all(|(key, pattern)| match arguments.get(key) {
                Some(value) => value_matches(pattern, value),
                None => false,
            })
    }
}

fn value_matches(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::String(pattern), Value::String(text)) => glob(pattern, text),
        (Value::String(pattern), other) => glob(pattern, &other.to_string()),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (pattern, value) => pattern == value,
    }
}

/// Case-insensitive wildcard match: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let text: Vec<char> = text.to_lowercase().chars().collect();
    let (mut p, mut t) = (0, 0);
    let (mut star, mut resume) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            resume = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            resume += 1;
            t = resume;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_answer_deterministically() {
        assert_eq!(
            Task::builtin_names(),
            ["movies", "research", "memory", "long"]
        );
        for name in Task::builtin_names() {
            let task = Task::builtin(name).unwrap_or_else(|| panic!("built-in {name} parses"));
            assert_eq!(task.step_budget, DEFAULT_STEP_BUDGET);
            assert!(!task.tool_definitions().is_empty());
        }
        let movies = Task::builtin("movies").unwrap();
        let search = ToolCall::new("search_movies", json!({"title": "DUNE part two"}));
        assert_eq!(movies.call(&search)["movies"][0]["movie_id"], "m-102");
        let none = ToolCall::new("search_movies", json!({"title": "Alien"}));
        assert_eq!(movies.call(&none), json!({"movies": []}));
        let unknown = ToolCall::new("order_popcorn", json!({}));
        assert_eq!(
            movies.call(&unknown)["error"],
            "unknown tool 'order_popcorn'"
        );
        let missing = ToolCall::new("book_tickets", json!({"count": 2}));
        assert_eq!(movies.call(&missing)["error"], "unknown showtime_id");
        let long = Task::builtin("long").unwrap();
        let convert = ToolCall::new(
            "convert_currency",
            json!({"amount": 120.0, "from": "EUR", "to": "usd"}),
        );
        assert_eq!(long.call(&convert)["amount"], 130.44);
    }

    #[test]
    fn memory_task_replays_earlier_turns_before_the_question() {
        let task = Task::builtin("memory").unwrap();
        let messages = task.initial_messages();
        let roles: Vec<_> = messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant", "user", "assistant", "user"]
        );
        assert_eq!(
            messages.last().unwrap().content.as_deref(),
            Some(task.user.as_str())
        );
    }

    #[test]
    fn glob_matches_case_insensitively() {
        assert!(glob("*dune*", "Dune: Part Two"));
        assert!(glob("berkeley*", "Berkeley, CA"));
        assert!(glob("r-??", "R-31"));
        assert!(!glob("r-??", "r-313"));
        assert!(glob("*", ""));
        assert!(!glob("a*b", "acd"));
    }

    #[test]
    fn bad_task_files_name_the_field() {
        let base = "name = \"t\"\nuser = \"u\"\n";
        let cases = [
            ("name = \"t\"\nuser = \"u\"\ntools = []\nstep_budget = 0\n", "step_budget must be at least 1"),
            ("name = \"t\"\nuser = \"u\"\ntools = []\n", "at least one [[tools]]"),
            ("name = \"t\"\nuser = \"u\"\nbudget = 3\ntools = []\n", "bad.toml:3:1: unknown field 'budget'"),
            ("name = \"t\"\nuser = \"u\"\nstep_budget = \"x\"\n", "bad.toml:3:15: step_budget: invalid type: string \"x\""),
            (&format!("{base}[[tools]]\nname = \"a\"\nparameters = {{ type = \"array\" }}\n"), "tools[0] (a): parameters.type must be \"object\""),
            (&format!("{base}[[tools]]\nname = \"a\"\nparameters = {{ type = \"object\", properties = {{ q = {{ type = \"string\" }} }} }}\n[[tools.results]]\nwhen = {{ query = \"x\" }}\nresult = {{}}\n"), "results[0].when: 'query' is not a parameter"),
            (&format!("{base}[[history]]\nrole = \"tool\"\ncontent = \"x\"\n[[tools]]\nname = \"a\"\nparameters = {{ type = \"object\" }}\n"), "history[0].role: 'tool'"),
        ];
        for (text, expected) in cases {
            let error = Task::parse(text, "bad.toml").unwrap_err().to_string();
            assert!(error.starts_with("bad.toml:"), "{error}");
            assert!(
                error.contains(expected),
                "expected '{expected}' in: {error}"
            );
        }
        let missing = Task::resolve("no-such-task").unwrap_err();
        assert!(missing
            .hint()
            .unwrap()
            .contains("movies, research, memory, long"));
    }
}
