//! jinja2's operators and lazy filters as transformers' environment (autoescape off) evaluates
//! them, where minijinja's differ: `+` against a `Markup` (`|safe`) escapes the plain side, `~` is
//! `str_join` (Python `str()` of both sides, never escaped), and `select`/`reject`/`selectattr`/
//! `rejectattr`/`map` are generators that yield nothing for a false value such as absent `tools`.

use minijinja::machinery::{CompiledTemplate, Instruction, Instructions};
use minijinja::value::{Rest, Value, ValueOrKwargs};
use minijinja::{Environment, Error, ErrorKind, Expression, State};
use std::borrow::Cow;
use std::sync::LazyLock;

use crate::chat::pyfmt;

/// The globals that compiled `+` and `~` call (see [`patch_operators`]).
const ADD: &str = "__bakeoff_py_add";
const CONCAT: &str = "__bakeoff_py_concat";

/// Register the operator functions and the None-tolerant filters on `env`.
pub(crate) fn install(env: &mut Environment<'_>) {
    env.add_function(ADD, py_add);
    env.add_function(CONCAT, py_concat);
    env.add_filter("select", select);
    env.add_filter("reject", reject);
    env.add_filter("selectattr", selectattr);
    env.add_filter("rejectattr", rejectattr);
    env.add_filter("map", map);
    env.add_filter("escape", escape);
    env.add_filter("e", escape);
}

/// minijinja compiles `+` and `~` to instructions it evaluates itself, with no hook; replacing
/// them by calls of two-argument functions keeps the stack effect (two operands in, one out) and
/// every jump target, so the template runs as compiled except for these two operators.
pub(crate) fn patch_operators(compiled: &mut CompiledTemplate<'_>) {
    patch(&mut compiled.instructions);
    for block in compiled.blocks.values_mut() {
        patch(block);
    }
}

fn patch(instructions: &mut Instructions<'_>) {
    let mut index = 0;
    while let Some(instruction) = instructions.get_mut(index) {
        match instruction {
            Instruction::Add => *instruction = Instruction::CallFunction(ADD, Some(2)),
            Instruction::StringConcat => *instruction = Instruction::CallFunction(CONCAT, Some(2)),
            _ => {}
        }
        index += 1;
    }
}

/// Python's `+`: `Markup.__add__`/`__radd__` escape a plain `str` joined to a Markup and give a
/// Markup; anything that is not two strings is minijinja's own `+` (numbers, lists, errors).
fn py_add(state: &State, left: &Value, right: &Value) -> Result<Value, Error> {
    let (Some(l), Some(r)) = (left.as_str(), right.as_str()) else {
        return minijinja_add(left, right);
    };
    ensure_fuel_for(state, l.len() + r.len())?;
    Ok(match (left.is_safe(), right.is_safe()) {
        (false, false) => Value::from([l, r].concat()),
        (true, true) => Value::from_safe_string([l, r].concat()),
        (true, false) => Value::from_safe_string([l, &markup_escape(r)].concat()),
        (false, true) => Value::from_safe_string([&markup_escape(l), r].concat()),
    })
}

/// minijinja's `+`, reached through an expression because the operator itself is not public.
fn minijinja_add(left: &Value, right: &Value) -> Result<Value, Error> {
    static ENV: LazyLock<Environment<'static>> = LazyLock::new(Environment::new);
    static EXPRESSION: LazyLock<Option<Expression<'static, 'static>>> =
        LazyLock::new(|| ENV.compile_expression("a + b").ok());
    let expression = EXPRESSION.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            "the `+` fallback did not compile",
        )
    })?;
    expression.eval(minijinja::context! { a => left, b => right })
}

/// jinja2's `~` with autoescape off: `str_join`, the Python `str()` of both sides, plain text.
fn py_concat(state: &State, left: &Value, right: &Value) -> Result<Value, Error> {
    let (left, right) = (str_of(left), str_of(right));
    ensure_fuel_for(state, left.len() + right.len())?;
    Ok(Value::from([left, right].concat()))
}

/// Refuse to build a string the remaining fuel could not pay for, as minijinja's own `+` and
/// `~` do before allocating (a byte costs 1/64 of an instruction's fuel); without this a doubling
/// loop overshoots by one doubling, gigabytes at the end of a 50M-fuel budget.
fn ensure_fuel_for(state: &State, bytes: usize) -> Result<(), Error> {
    const BYTES_PER_FUEL: u64 = 64;
    match state.fuel_levels() {
        Some((_, remaining)) if bytes as u64 / BYTES_PER_FUEL >= remaining => {
            Err(Error::from(ErrorKind::OutOfFuel))
        }
        _ => Ok(()),
    }
}

/// Python's `str(value)`, borrowing a string instead of copying it (`~` is often in loops).
fn str_of(value: &Value) -> Cow<'_, str> {
    match value.as_str() {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(pyfmt::py_str(value)),
    }
}

/// `markupsafe.escape` of a string: the five characters HTML needs, as markupsafe spells them.
fn markup_escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `|escape` / `|e`: a Markup stays as it is; anything else is `escape(str(value))`.
fn escape(value: &Value) -> Value {
    if value.is_safe() {
        return value.clone();
    }
    Value::from_safe_string(markup_escape(&pyfmt::py_str(value)).into_owned())
}

// jinja2's select family and map start with `if value:`, so None, undefined, 0 and "" yield
// nothing (the test is not even looked up), where minijinja fails on what it cannot iterate. They
// return generators: always true, iterable once, without a length, not JSON serialisable (so
// `tools | map(..) | tojson` fails as in Python), where minijinja returns lists.

fn generator(items: Vec<Value>) -> Value {
    Value::make_one_shot_iterator(items.into_iter())
}

/// `filter(value)` as a generator, or an empty one when `value` is false.
fn if_true(
    value: Value,
    filter: impl FnOnce(Value) -> Result<Vec<Value>, Error>,
) -> Result<Value, Error> {
    if !value.is_true() {
        return Ok(generator(Vec::new()));
    }
    filter(value).map(generator)
}

fn select(
    state: &mut State,
    value: Value,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if_true(value, |value| {
        minijinja::filters::select(state, value, test, args)
    })
}

fn reject(
    state: &mut State,
    value: Value,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if_true(value, |value| {
        minijinja::filters::reject(state, value, test, args)
    })
}

fn selectattr(
    state: &mut State,
    value: Value,
    attr: Cow<'_, str>,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if_true(value, |value| {
        minijinja::filters::selectattr(state, value, attr, test, args)
    })
}

fn rejectattr(
    state: &mut State,
    value: Value,
    attr: Cow<'_, str>,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if_true(value, |value| {
        minijinja::filters::rejectattr(state, value, attr, test, args)
    })
}

fn map(state: &mut State, value: Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    if_true(value, |value| minijinja::filters::map(state, value, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_escape_is_markupsafes() {
        assert_eq!(markup_escape("a/b"), "a/b");
        assert_eq!(markup_escape("<&>\"'"), "&lt;&amp;&gt;&#34;&#39;");
    }
}
