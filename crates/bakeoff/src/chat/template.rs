//! Jinja chat templates rendered as transformers' `_compile_jinja_template` does: an
//! `ImmutableSandboxedEnvironment` with trimmed and lstripped blocks, loop controls, Python-compatible
//! `tojson` (no HTML escaping), `raise_exception`, `strftime_now`, and jinja2's default `Undefined`;
//! `+`, `~` and the select family behave as jinja2's do (chat/pyops.rs).
//!
//! tests/chat_templates.rs checks this byte for byte against Python jinja2 on every template in
//! llama.cpp's models/templates and on SmolLM2's GGUF.
//! Known differences, none met in those templates: `tools == none` is false when no tools were
//! given (the `none` test and `is not none` agree with Python); a Markup (`|safe`, `|e`) stays one
//! through `+` and `|string` only, not through other filters or str methods (`|trim`, `.upper()`,
//! `%`, `.join`), which in Python keep it and escape their arguments; dict `.items()` prints as a
//! list; `dictsort` folds case for ASCII only; `%z`/`%Z` in a fixed-time `strftime_now`;
//! `str.isprintable` in printed containers knows common non-printables only. A template can still
//! make a render allocate much memory (doubling a string): fuel bounds instructions, not bytes.

use crate::chat::pyfmt::{self, JsonOptions};
use crate::chat::{pyops, Message};
use crate::formats::gguf::GgufFile;
use minijinja::machinery::{self, CompiledTemplate, TemplateConfig};
use minijinja::value::{Kwargs, Object, ObjectRepr, Serde, Value, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Instructions one render may execute before it is stopped; real templates need well under 1%.
const FUEL: u64 = 50_000_000;

/// A chat template with the special-token strings it is rendered with.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplate {
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
    /// A fixed instant for `strftime_now`, in seconds since the epoch and formatted in UTC (for
    /// reproducible prompts); `None` formats the local clock, as transformers does.
    pub now: Option<i64>,
}

/// Why a template produced no prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateError {
    /// The template called `raise_exception(message)`: it refuses this conversation (for example
    /// roles that do not alternate, or tools it cannot take).
    Raised(String),
    /// The template does not parse, or failed while rendering (an undefined attribute, a type error).
    Invalid {
        line: Option<usize>,
        message: String,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Raised(message) => {
                write!(f, "the chat template refused the conversation: {message}")
            }
            TemplateError::Invalid {
                line: Some(line),
                message,
            } => write!(f, "chat template, line {line}: {message}"),
            TemplateError::Invalid {
                line: None,
                message,
            } => {
                write!(f, "chat template: {message}")
            }
        }
    }
}

impl std::error::Error for TemplateError {}

impl From<TemplateError> for crate::Error {
    fn from(e: TemplateError) -> Self {
        let hint = match e {
            TemplateError::Raised(_) => "the message comes from the template itself; change the conversation (roles, tools, ids) to what it accepts",
            TemplateError::Invalid { .. } => "the template may use a Python feature bakeoff's Jinja renderer lacks; compare with transformers' apply_chat_template",
        };
        crate::Error::input(e.to_string()).with_hint(hint)
    }
}

impl TemplateError {
    fn from_minijinja(error: &minijinja::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(current) = source {
            if let Some(raised) = current.downcast_ref::<Raised>() {
                return TemplateError::Raised(raised.0.clone());
            }
            source = current.source();
        }
        let message = match error.detail() {
            Some(detail) => format!("{}: {detail}", error.kind()),
            None => error.kind().to_string(),
        };
        TemplateError::Invalid {
            line: error.line(),
            message,
        }
    }
}

/// The message of `raise_exception`, carried as the source of a minijinja error.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

impl ChatTemplate {
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Self {
        ChatTemplate {
            source: source.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            now: None,
        }
    }

    /// The template in `tokenizer.chat_template`, with the BOS/EOS token strings looked up in
    /// `tokenizer.ggml.tokens` (empty when the model has none), as llama.cpp passes them.
    pub fn from_gguf(gguf: &GgufFile) -> crate::Result<Self> {
        let source = gguf.get_str("tokenizer.chat_template").ok_or_else(|| {
            crate::Error::input("the model has no tokenizer.chat_template in its GGUF metadata")
                .with_hint(
                    "pass a template file instead, or use a model converted with its chat template",
                )
        })?;
        Ok(ChatTemplate::new(
            source,
            token_text(gguf, "tokenizer.ggml.bos_token_id"),
            token_text(gguf, "tokenizer.ggml.eos_token_id"),
        ))
    }

    /// Parse the template without rendering it.
    pub fn check(&self) -> Result<(), TemplateError> {
        compile(&rewrite_generation_tags(&self.source)).map(drop)
    }

    /// Render `messages` (their shape is in [`crate::chat`]'s docs) as transformers'
    /// `apply_chat_template(messages, tools=tools or None, add_generation_prompt=..., **extra)`
    /// with `bos_token` and `eos_token` set. `extra` adds variables such as `enable_thinking`.
    pub fn render(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let source = rewrite_generation_tags(&self.source);
        let compiled = compile(&source)?;
        let env = self.environment();
        let context = self.context(messages, tools, add_generation_prompt, extra)?;
        let mut prompt = String::with_capacity(compiled.buffer_size_hint);
        machinery::eval(
            &env,
            &compiled.instructions,
            context,
            &compiled.blocks,
            &mut machinery::make_string_output(&mut prompt),
            AutoEscape::None,
        )
        .map_err(|e| TemplateError::from_minijinja(&e))?;
        Ok(prompt)
    }

    fn context(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Value, TemplateError> {
        let json = |what: &str, result: serde_json::Result<serde_json::Value>| {
            result
                .map(|v| Value::from(Serde(v)))
                .map_err(|e| TemplateError::Invalid {
                    line: None,
                    message: format!("{what} cannot be passed to the template: {e}"),
                })
        };
        let mut context = BTreeMap::new();
        context.insert(
            "messages".to_string(),
            json(
                "messages",
                serde_json::to_value(messages).map(alias_reasoning_fields),
            )?,
        );
        let tools = match tools {
            [] => Value::from_object(PyNone),
            tools => json("tools", serde_json::to_value(tools))?,
        };
        context.insert("tools".into(), tools);
        context.insert("documents".into(), Value::from_object(PyNone));
        context.insert("add_generation_prompt".into(), add_generation_prompt.into());
        context.insert("bos_token".into(), self.bos_token.as_str().into());
        context.insert("eos_token".into(), self.eos_token.as_str().into());
        for (key, value) in extra {
            context.insert(key.clone(), Value::from(Serde(value)));
        }
        Ok(Value::from(context))
    }

    fn environment<'source>(&self) -> Environment<'source> {
        let mut env = Environment::new();
        env.set_syntax(syntax());
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(|out, _state, value| {
            out.write_str(&pyfmt::py_str(value))
                .map_err(minijinja::Error::from)
        });
        env.add_filter("tojson", tojson);
        env.add_filter("string", py_string);
        env.add_test("sequence", is_python_sequence);
        env.add_test("none", |value: &Value| value.is_none() || is_py_none(value));
        // jinja2's own filters and globals that minijinja keeps in its contrib crate.
        env.add_filter("truncate", minijinja_contrib::filters::truncate);
        env.add_filter("striptags", minijinja_contrib::filters::striptags);
        env.add_filter("filesizeformat", minijinja_contrib::filters::filesizeformat);
        env.add_function("cycler", minijinja_contrib::globals::cycler);
        env.add_function("joiner", minijinja_contrib::globals::joiner);
        env.add_function("raise_exception", raise_exception);
        let now = self.now;
        env.add_function("strftime_now", move |format: &str| strftime(format, now));
        pyops::install(&mut env);
        env
    }
}

/// Parse and compile as `Environment::template_from_str` does, then give `+` and `~` jinja2's
/// meaning (see [`pyops::patch_operators`]); rendering goes through the same VM entry point.
fn compile(source: &str) -> Result<CompiledTemplate<'_>, TemplateError> {
    let config = TemplateConfig {
        syntax_config: syntax(),
        default_auto_escape: Arc::new(|_: &str| AutoEscape::None),
    };
    let mut compiled = CompiledTemplate::new("<string>", source, &config)
        .map_err(|e| TemplateError::from_minijinja(&e))?;
    pyops::patch_operators(&mut compiled);
    Ok(compiled)
}

/// `|string` is jinja2's `soft_str`: a Markup stays a Markup, anything else becomes `str(value)`.
fn py_string(value: &Value) -> Value {
    if value.is_safe() {
        return value.clone();
    }
    Value::from(pyfmt::py_str(value))
}

/// Reasoning names transformers reads, in its order of preference.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// transformers 5's `_alias_reasoning_fields`: a message's reasoning is also passed as `thinking`
/// (first key, which gpt-oss and others read) and `reasoning_content` (kept in its place).
fn alias_reasoning_fields(mut messages: serde_json::Value) -> serde_json::Value {
    let Some(list) = messages.as_array_mut() else {
        return messages;
    };
    for object in list.iter_mut().filter_map(serde_json::Value::as_object_mut) {
        let reasoning = REASONING_FIELDS
            .iter()
            .find_map(|key| object.get(*key).filter(|value| !value.is_null()))
            .cloned();
        let Some(reasoning) = reasoning else {
            continue;
        };
        // Python's `{"thinking": r, **message, "reasoning_content": r}`: inserting a key that is
        // already there keeps its position.
        let mut aliased = serde_json::Map::new();
        aliased.insert("thinking".into(), reasoning.clone());
        aliased.extend(std::mem::take(object));
        aliased.insert("reasoning_content".into(), reasoning);
        *object = aliased;
    }
    messages
}

/// jinja2's delimiters with transformers' whitespace rules.
fn syntax() -> minijinja::syntax::SyntaxConfig {
    minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .unwrap_or_default()
}

fn token_text(gguf: &GgufFile, id_key: &str) -> String {
    let text = || {
        let id = usize::try_from(gguf.get_u64(id_key)?).ok()?;
        let tokens = gguf.get("tokenizer.ggml.tokens")?.as_array()?;
        Some(tokens.get(id)?.as_str()?.to_string())
    };
    text().unwrap_or_default()
}

/// `raise_exception(message)`: transformers raises `TemplateError(message)`.
fn raise_exception(message: &Value) -> Result<Value, minijinja::Error> {
    let message = pyfmt::py_str(message);
    Err(
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("raised: {message}"))
            .with_source(Raised(message)),
    )
}

/// Python's `None` as transformers passes it for absent `tools` and `documents`. minijinja's own
/// none iterates as empty where jinja2 raises `TypeError`, so a template that loops over `tools`
/// unguarded would render instead of failing as it does in Python. This object is false, prints
/// `None`, passes the `none` test, serialises as `null`, and refuses iteration and length.
#[derive(Debug)]
pub(crate) struct PyNone;

impl Object for PyNone {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn is_true(self: &Arc<Self>) -> bool {
        false
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("None")
    }
}

pub(crate) fn is_py_none(value: &Value) -> bool {
    value.downcast_object_ref::<PyNone>().is_some()
}

/// jinja2's `sequence` test: anything with a length and indexing (strings and dicts too).
fn is_python_sequence(value: &Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::Undefined | ValueKind::String | ValueKind::Seq | ValueKind::Map
    )
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`,
/// which is `json.dumps` with those arguments, positional or named.
fn tojson(value: &Value, positional: &[Value], kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    if positional.len() > 4 {
        return Err(minijinja::Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments",
        ));
    }
    let names = ["ensure_ascii", "indent", "separators", "sort_keys"];
    let mut slots: [Option<Value>; 4] = Default::default();
    for (slot, value) in slots.iter_mut().zip(positional) {
        *slot = Some(value.clone());
    }
    for (slot, name) in slots.iter_mut().zip(names) {
        if let Some(value) = kwargs.get::<Option<Value>>(name)? {
            *slot = Some(value);
        }
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = slots;
    let options = json_options(ensure_ascii, indent, separators, sort_keys)?;
    pyfmt::dumps(value, &options).map(Value::from)
}

fn json_options(
    ensure_ascii: Option<Value>,
    indent: Option<Value>,
    separators: Option<Value>,
    sort_keys: Option<Value>,
) -> Result<JsonOptions, minijinja::Error> {
    let mut options = JsonOptions {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
        ..JsonOptions::default()
    };
    options.indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => {
            Some(v.as_str().unwrap_or_default().to_string())
        }
        Some(v) => {
            let width = v.as_i64().ok_or_else(|| {
                minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an int or a str",
                )
            })?;
            Some(" ".repeat(usize::try_from(width).unwrap_or(0).min(1024)))
        }
    };
    if options.indent.is_some() {
        options.item_separator = ",".into();
    }
    if let Some(separators) = separators.filter(|v| !v.is_none()) {
        let pair: Vec<Value> = separators.try_iter()?.collect();
        match pair.as_slice() {
            [item, key] if item.as_str().is_some() && key.as_str().is_some() => {
                options.item_separator = item.as_str().unwrap_or_default().to_string();
                options.key_separator = key.as_str().unwrap_or_default().to_string();
            }
            _ => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: separators must be a pair of strings",
                ))
            }
        }
    }
    Ok(options)
}

/// `strftime_now(format)`: transformers formats `datetime.now()`; C's strftime is what Python
/// calls underneath, so the two agree (except `%z`/`%Z`, which Python leaves empty for a naive time).
fn strftime(format: &str, fixed: Option<i64>) -> Result<String, minijinja::Error> {
    let invalid = |why: &str| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("strftime_now: {why}"))
    };
    if format.is_empty() {
        return Ok(String::new());
    }
    let c_format =
        std::ffi::CString::new(format).map_err(|_| invalid("the format contains a NUL byte"))?;
    let seconds = fixed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    });
    let time = seconds as libc::time_t;
    // SAFETY: `tm` is plain data that gmtime_r/localtime_r fill in; both are thread-safe.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let converted = unsafe {
        if fixed.is_some() {
            libc::gmtime_r(&time, &mut tm)
        } else {
            libc::localtime_r(&time, &mut tm)
        }
    };
    if converted.is_null() {
        return Err(invalid("the time cannot be represented"));
    }
    let mut buffer = vec![0u8; 256];
    loop {
        // SAFETY: the buffer is writable for its length, the format is NUL-terminated, tm is filled.
        let written = unsafe {
            libc::strftime(
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                c_format.as_ptr(),
                &tm,
            )
        };
        // 0 means "did not fit" (or an empty result); stop growing at a size no date needs.
        if written > 0 || buffer.len() >= 1 << 16 {
            buffer.truncate(written);
            return Ok(String::from_utf8_lossy(&buffer).into_owned());
        }
        buffer.resize(buffer.len() * 4, 0);
    }
}

/// transformers registers a `{% generation %}…{% endgeneration %}` tag that marks assistant text
/// and renders its body unchanged. minijinja has no such tag, so it becomes an always-true `if`,
/// which keeps Jinja's whitespace control (`-`/`+`, trim and lstrip blocks) identical.
fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        match generation_tag(tag) {
            Some((consumed, replacement)) => {
                out.push_str(&replacement);
                rest = &tag[consumed..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// If `tag` starts with `{% generation %}` or `{% endgeneration %}` (any whitespace control),
/// its length and the `if`/`endif` that replaces it.
fn generation_tag(tag: &str) -> Option<(usize, String)> {
    let body = &tag[2..];
    let (open_ctl, body) = strip_control(body);
    let trimmed = body.trim_start();
    let (word, replacement) = if trimmed.starts_with("endgeneration") {
        ("endgeneration", "endif")
    } else if trimmed.starts_with("generation") {
        ("generation", "if true")
    } else {
        return None;
    };
    let after = trimmed[word.len()..].trim_start();
    let (close_ctl, after) = match after.chars().next() {
        Some(c @ ('-' | '+')) => (Some(c), &after[1..]),
        _ => (None, after),
    };
    let after = after.strip_prefix("%}")?;
    let open = open_ctl.map(String::from).unwrap_or_default();
    let close = close_ctl.map(String::from).unwrap_or_default();
    Some((
        tag.len() - after.len(),
        format!("{{%{open} {replacement} {close}%}}"),
    ))
}

fn strip_control(body: &str) -> (Option<char>, &str) {
    match body.chars().next() {
        Some(c @ ('-' | '+')) => (Some(c), &body[1..]),
        _ => (None, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(source: &str, extra: serde_json::Value) -> Result<String, TemplateError> {
        let extra = extra.as_object().cloned().unwrap_or_default();
        let mut template = ChatTemplate::new(source, "<s>", "</s>");
        template.now = Some(1_736_937_000); // 2025-01-15 10:30:00 UTC
        template.render(&[Message::user("hi")], &[], false, &extra)
    }

    #[test]
    fn blocks_are_trimmed_and_lstripped() {
        let source = "{% for m in messages %}\n  {% if true %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}\n";
        assert_eq!(render(source, json!({})).unwrap(), "[hi]\n");
    }

    #[test]
    fn tojson_is_python_json_dumps_without_html_escaping() {
        let out = render(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ x | tojson(separators=(',', ':')) }}",
            json!({"x": {"a": "<&>é", "b": [1.5, 1e-7]}}),
        )
        .unwrap();
        assert_eq!(
            out,
            "{\"a\": \"<&>é\", \"b\": [1.5, 1e-07]}|{\n  \"a\": \"<&>é\",\n  \"b\": [\n    1.5,\n    1e-07\n  ]\n}|{\"a\":\"<&>é\",\"b\":[1.5,1e-07]}"
        );
    }

    #[test]
    fn raise_exception_names_the_templates_message() {
        let err = render("{{ raise_exception('roles must alternate') }}", json!({})).unwrap_err();
        assert_eq!(err, TemplateError::Raised("roles must alternate".into()));
        let in_macro = "{% macro m() %}{{ raise_exception('deep') }}{% endmacro %}{{ m() }}";
        assert_eq!(
            render(in_macro, json!({})).unwrap_err(),
            TemplateError::Raised("deep".into())
        );
        let message = crate::Error::from(err).to_string();
        assert!(message.contains("roles must alternate"), "{message}");
    }

    #[test]
    fn values_print_as_python_str() {
        let out = render(
            "{{ none }} {{ true }} {{ 2.0 }} {{ [1, 'a'] }} {{ x }}",
            json!({"x": null}),
        )
        .unwrap();
        assert_eq!(out, "None True 2.0 [1, 'a'] None");
    }

    #[test]
    fn undefined_is_jinja2s_default() {
        assert_eq!(
            render(
                "[{{ nothing }}]{% for x in nothing %}x{% endfor %}",
                json!({})
            )
            .unwrap(),
            "[]"
        );
        assert_eq!(
            render("{{ nothing is defined }}", json!({})).unwrap(),
            "False"
        );
        let err = render("{{ nothing.attr }}", json!({})).unwrap_err();
        assert!(matches!(err, TemplateError::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn strftime_now_formats_the_fixed_instant() {
        assert_eq!(
            render("{{ strftime_now('%Y-%m-%d %d %b %Y %H:%M') }}", json!({})).unwrap(),
            "2025-01-15 15 Jan 2025 10:30"
        );
    }

    #[test]
    fn loop_controls_and_python_methods_work() {
        let out = render(
            "{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %} {{ ' a '.strip() }} {{ {'k': 1}.get('k') }}",
            json!({}),
        )
        .unwrap();
        assert_eq!(out, "012 a 1");
    }

    #[test]
    fn generation_tags_render_their_body() {
        let source = "{% for m in messages %}\n{%- generation -%}\n [{{ m.content }}] \n{%- endgeneration %}\n{% endfor %}";
        assert_eq!(rewrite_generation_tags(source), "{% for m in messages %}\n{%- if true -%}\n [{{ m.content }}] \n{%- endif %}\n{% endfor %}");
        assert_eq!(render(source, json!({})).unwrap(), "[hi]");
    }

    // Regression: functionary v3.1 without tools failed with "plain object is not iterable".
    #[test]
    fn select_family_yields_nothing_for_absent_tools() {
        let source =
            "{{ tools | selectattr('type', 'equalto', 'code_interpreter') | list | length }}\
            {{ tools | rejectattr('type') | list }}{{ tools | select | list }}\
            {{ tools | reject('none') | list }}{{ tools | map(attribute='x') | list }}\
            {{ 0 | select | list }}{{ nothing | selectattr('a') | list }}";
        assert_eq!(render(source, json!({})).unwrap(), "0[][][][][][]");
        // Iterating None itself still fails, as in Python.
        let err = render("{{ tools | list }}", json!({})).unwrap_err();
        assert!(matches!(err, TemplateError::Invalid { .. }), "{err:?}");
    }

    // Regression: llama.cpp's deepseek-r1 template dumped `tools | map(..)` as a JSON list where
    // Python fails (a generator is not JSON serialisable).
    #[test]
    fn select_family_returns_generators() {
        let source = "{{ 'yes' if tools | select else 'no' }} {% set g = [1, 2] | select %}\
            {{ g | list }}{{ g | list }} {{ [1, 2] | map('string') | join(',') }} {{ [3] | select | first }}";
        assert_eq!(render(source, json!({})).unwrap(), "yes [1, 2][] 1,2 3");
        for source in [
            "{{ [1] | map('string') | tojson }}",
            "{{ [1] | select | length }}",
        ] {
            let err = render(source, json!({})).unwrap_err();
            assert!(
                matches!(err, TemplateError::Invalid { .. }),
                "{source}: {err:?}"
            );
        }
    }

    // Regression: `"..."|safe + str` did not escape the str, so functionary v3.1 with tools
    // differed from transformers at byte 205.
    #[test]
    fn plus_against_markup_escapes_the_plain_side() {
        let out = render(
            "{{ 'a'|safe + '<&>\"\\'' }}|{{ '<' + 'b'|safe }}|{{ '<'|safe + '>'|safe }}|{{ '<' + '>' }}",
            json!({}),
        )
        .unwrap();
        assert_eq!(out, "a&lt;&amp;&gt;&#34;&#39;|&lt;b|<>|<>");
        // The result is Markup again, so the next `+` escapes too; `~` never escapes.
        let out = render(
            "{{ ('a'|safe + 'b') + '<' }}|{{ 'a'|safe ~ '<' }}|{{ ('a'|safe ~ '<') + '<' }}",
            json!({}),
        )
        .unwrap();
        assert_eq!(out, "ab&lt;|a<|a<<");
        // Captured blocks and macro results are plain str (autoescape is off), as are numbers.
        let out = render(
            "{% set x %}<{% endset %}{% macro m() %}<{% endmacro %}{{ x + '>'|safe }}{{ m() + '>'|safe }}{{ 1 + 2.5 }}{{ [1] + [2] }}",
            json!({}),
        )
        .unwrap();
        assert_eq!(out, "&lt;>&lt;>3.5[1, 2]");
    }

    #[test]
    fn escape_and_string_filters_are_markupsafes() {
        let out = render(
            "{{ '<a/>'|e }}|{{ ('<'|e) + '<' }}|{{ [1, 'a']|escape }}|{{ ('<'|safe|string) + '<' }}|{{ 1|string + '<' }}",
            json!({}),
        )
        .unwrap();
        assert_eq!(out, "&lt;a/&gt;|&lt;&lt;|[1, &#39;a&#39;]|<&lt;|1<");
    }

    #[test]
    fn tilde_joins_python_str_of_both_sides() {
        let out = render(
            "{{ 'x' ~ none ~ true ~ ['a'] ~ {'k': 'v'} ~ 1.0 ~ nothing ~ tools }}",
            json!({}),
        )
        .unwrap();
        assert_eq!(out, "xNoneTrue['a']{'k': 'v'}1.0None");
    }

    // Regression: gpt-oss rendered no analysis channel for a reasoning_content that transformers
    // 5 shows (it passes the reasoning as `thinking` too).
    #[test]
    fn reasoning_is_aliased_as_thinking_first() {
        let mut message = Message::assistant("4");
        message.reasoning_content = Some("2+2".into());
        let aliased =
            alias_reasoning_fields(serde_json::to_value([message, Message::user("hi")]).unwrap());
        assert_eq!(
            serde_json::to_string(&aliased).unwrap(),
            r#"[{"thinking":"2+2","role":"assistant","content":"4","reasoning_content":"2+2"},{"role":"user","content":"hi"}]"#
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = render("line one\n{% if %}", json!({})).unwrap_err();
        match err {
            TemplateError::Invalid { line, .. } => assert_eq!(line, Some(2)),
            other => panic!("{other:?}"),
        }
    }
}
