//! One connection, two dialects: SQLite (the embedded default, one file) and PostgreSQL (a team's
//! shared store). Statements are written once, in SQLite's spelling with `?N` placeholders;
//! [`postgres_sql`] rewrites the few spellings that differ, and [`postgres_ddl`] the column types
//! of a migration. Values cross the seam as [`Value`]s, so a row read from one backend can be
//! written to the other (`bakeoff push`/`pull`).
//!
//! A PostgreSQL connection that drops (the server restarted, the network went away) is opened
//! again and the statement retried, outside a transaction, for up to [`retry_window`]: a sweep
//! waits out a restart instead of losing what it measures next.

use postgres::types::Type;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// A column value as both backends hold it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// Something that binds to a statement parameter.
pub trait Arg {
    fn value(&self) -> Value;
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn value(&self) -> Value {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_arg!(i64, i32, u32, u64, usize, u8);

impl Arg for bool {
    fn value(&self) -> Value {
        Value::Int(*self as i64)
    }
}
impl Arg for f64 {
    fn value(&self) -> Value {
        Value::Real(*self)
    }
}
impl Arg for str {
    fn value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl Arg for String {
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl Arg for Value {
    fn value(&self) -> Value {
        self.clone()
    }
}
impl<T: Arg + ?Sized> Arg for &T {
    fn value(&self) -> Value {
        (**self).value()
    }
}
impl<T: Arg> Arg for Option<T> {
    fn value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Arg::value)
    }
}

/// A statement's parameters: `params![a, b]`, `[x]`, `[]`, or a slice of values.
pub trait Params {
    fn values(&self) -> Vec<Value>;
}
impl Params for &[&dyn Arg] {
    fn values(&self) -> Vec<Value> {
        self.iter().map(|a| a.value()).collect()
    }
}
impl Params for [&dyn Arg; 0] {
    fn values(&self) -> Vec<Value> {
        Vec::new()
    }
}
impl Params for &[Value] {
    fn values(&self) -> Vec<Value> {
        self.to_vec()
    }
}
macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: Arg> Params for [T; $n] {
            fn values(&self) -> Vec<Value> {
                self.iter().map(Arg::value).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4);

/// `params![a, b, c]`: the parameters of one statement, each anything that is an [`Arg`].
macro_rules! params {
    () => { &[] as &[&dyn $crate::store::db::Arg] };
    ($($x:expr),+ $(,)?) => { &[$(&$x as &dyn $crate::store::db::Arg),+] as &[&dyn $crate::store::db::Arg] };
}
pub(crate) use params;

/// One result row.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Vec<String>,
    values: Vec<Value>,
}

impl Row {
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, DbError> {
        let value = self.values.get(index).ok_or(DbError::Column {
            index,
            wanted: std::any::type_name::<T>(),
            found: "no such column".into(),
        })?;
        T::from_value(value).ok_or_else(|| DbError::Column {
            index,
            wanted: std::any::type_name::<T>(),
            found: format!("{value:?}"),
        })
    }

    #[allow(dead_code)] // for copying rows between stores (push, pull)
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    #[allow(dead_code)] // for copying rows between stores (push, pull)
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
}

/// A Rust type a column value reads as; `None` when it cannot.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}
impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
macro_rules! narrow_int {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(value: &Value) -> Option<Self> {
                i64::from_value(value).and_then(|i| <$t>::try_from(i).ok())
            }
        }
    )*};
}
narrow_int!(i32, u32, u64, usize);
impl FromValue for bool {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).map(|i| i != 0)
    }
}
impl FromValue for f64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Real(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for Value {
    fn from_value(value: &Value) -> Option<Self> {
        Some(value.clone())
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

#[derive(Debug)]
pub enum DbError {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
    /// `query_row` found nothing.
    NoRows,
    Column {
        index: usize,
        wanted: &'static str,
        found: String,
    },
    /// The server stayed unreachable for the whole retry window.
    Unreachable {
        waited: Duration,
        last: String,
    },
    Other(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "{e}"),
            DbError::Postgres(e) => match (e.as_db_error(), std::error::Error::source(e)) {
                (Some(db), _) => write!(f, "{}: {}", db.severity(), db.message()),
                (None, Some(cause)) => write!(f, "{e}: {cause}"),
                (None, None) => write!(f, "{e}"),
            },
            DbError::NoRows => write!(f, "no rows returned"),
            DbError::Column {
                index,
                wanted,
                found,
            } => write!(f, "column {index}: expected {wanted}, found {found}"),
            DbError::Unreachable { waited, last } => write!(
                f,
                "the database was unreachable for {:.0} s ({last})",
                waited.as_secs_f64()
            ),
            DbError::Other(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => DbError::NoRows,
            other => DbError::Sqlite(other),
        }
    }
}

/// `.optional()` on a `query_row`: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>, DbError>;
}
impl<T> OptionalExtension<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

pub struct Db {
    conn: Conn,
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<RefCell<Pg>>),
}

struct Pg {
    config: postgres::Config,
    /// The store as shown (no password), for the notes an outage prints.
    display: String,
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
    in_transaction: bool,
    /// The channels this connection LISTENs on (a new connection listens again).
    listening: Vec<String>,
}

/// How long a PostgreSQL statement waits for a lost server to come back: `BAKEOFF_DB_RETRY_S`
/// seconds (default 120).
pub fn retry_window() -> Duration {
    let seconds = std::env::var("BAKEOFF_DB_RETRY_S")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(120.0);
    Duration::from_secs_f64(seconds)
}

impl Db {
    pub fn sqlite(conn: rusqlite::Connection) -> Self {
        Db {
            conn: Conn::Sqlite(conn),
        }
    }

    /// Connect to PostgreSQL (waiting up to 10 s, or the retry window if shorter, for an
    /// unreachable server).
    pub fn postgres(config: postgres::Config, display: &str) -> Result<Self, DbError> {
        let mut pg = Pg {
            config,
            display: display.to_string(),
            client: None,
            statements: HashMap::new(),
            in_transaction: false,
            listening: Vec::new(),
        };
        // A first connection waits less than a lost one: an unreachable store at start is more
        // often a wrong host or port than an outage to sit out.
        pg.connect_within(Instant::now() + retry_window().min(Duration::from_secs(10)))?;
        Ok(Db {
            conn: Conn::Postgres(Box::new(RefCell::new(pg))),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self.conn {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Run a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize, DbError> {
        let values = params.values();
        match &self.conn {
            Conn::Sqlite(c) => {
                Ok(c.execute(sql, rusqlite::params_from_iter(sqlite_values(&values)))?)
            }
            Conn::Postgres(pg) => pg
                .borrow_mut()
                .run(&postgres_sql(sql), &values, |c, s, p| c.execute(s, p))
                .map(|n| n as usize),
        }
    }

    /// Run an INSERT; the id of the row it made.
    pub fn insert(&self, sql: &str, params: impl Params) -> Result<i64, DbError> {
        match &self.conn {
            Conn::Sqlite(c) => {
                let values = params.values();
                c.execute(sql, rusqlite::params_from_iter(sqlite_values(&values)))?;
                Ok(c.last_insert_rowid())
            }
            Conn::Postgres(_) => {
                let returning = format!("{sql} RETURNING id");
                self.query_row(&returning, params, |r| r.get(0))
            }
        }
    }

    /// Every row of a query.
    pub fn query(&self, sql: &str, params: impl Params) -> Result<Vec<Row>, DbError> {
        let values = params.values();
        match &self.conn {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let columns: Vec<String> =
                    stmt.column_names().iter().map(|s| s.to_string()).collect();
                let width = columns.len();
                let mut rows = stmt.query(rusqlite::params_from_iter(sqlite_values(&values)))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let values = (0..width)
                        .map(|i| row.get_ref(i).map(sqlite_value))
                        .collect::<Result<_, _>>()?;
                    out.push(Row {
                        columns: columns.clone(),
                        values,
                    });
                }
                Ok(out)
            }
            Conn::Postgres(pg) => {
                let rows = pg
                    .borrow_mut()
                    .run(&postgres_sql(sql), &values, |c, s, p| c.query(s, p))?;
                rows.iter().map(postgres_row).collect()
            }
        }
    }

    /// The first row of a query, mapped; [`DbError::NoRows`] when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let rows = self.query(sql, params)?;
        map(rows.first().ok_or(DbError::NoRows)?)
    }

    /// Every row of a query, mapped.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        self.query(sql, params)?.iter().map(map).collect()
    }

    /// A statement to run with [`Prepared::query_map`] (rusqlite's shape, for call sites that
    /// collect the mapped rows themselves).
    pub fn prepare<'a>(&'a self, sql: &'a str) -> Result<Prepared<'a>, DbError> {
        Ok(Prepared { db: self, sql })
    }

    /// Several statements without parameters (a migration).
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.conn {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(pg) => pg.borrow_mut().batch(&postgres_sql(sql)),
        }
    }

    /// Wait up to `timeout` for a `NOTIFY` on `channel`: `true` when one came (PostgreSQL, which
    /// listens from the first call on each connection). SQLite has no notifications: it waits
    /// out the timeout.
    pub fn wait_for_notify(&self, channel: &str, timeout: Duration) -> Result<bool, DbError> {
        match &self.conn {
            Conn::Sqlite(_) => {
                std::thread::sleep(timeout);
                Ok(false)
            }
            Conn::Postgres(pg) => pg.borrow_mut().wait_for_notify(channel, timeout),
        }
    }

    /// Run `body` in one transaction (SQLite: `BEGIN IMMEDIATE`, the write lock taken first),
    /// committed when it returns `Ok`, rolled back otherwise. Not retried on a lost connection.
    pub fn transaction<T, E: From<DbError>>(
        &self,
        body: impl FnOnce(&Db) -> Result<T, E>,
    ) -> Result<T, E> {
        let begin = match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        };
        self.batch(begin)?;
        self.set_in_transaction(true);
        let result = body(self);
        self.set_in_transaction(false);
        match result {
            Ok(value) => {
                self.batch("COMMIT")?;
                Ok(value)
            }
            Err(e) => {
                // The body's error is the news; a failed rollback (connection gone) ends the
                // transaction anyway.
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn set_in_transaction(&self, on: bool) {
        if let Conn::Postgres(pg) = &self.conn {
            pg.borrow_mut().in_transaction = on;
        }
    }
}

pub struct Prepared<'a> {
    db: &'a Db,
    sql: &'a str,
}

impl Prepared<'_> {
    pub fn query_map<T, F: FnMut(&Row) -> Result<T, DbError>>(
        &mut self,
        params: impl Params,
        mut map: F,
    ) -> Result<std::vec::IntoIter<Result<T, DbError>>, DbError> {
        let rows = self.db.query(self.sql, params)?;
        Ok(rows.iter().map(&mut map).collect::<Vec<_>>().into_iter())
    }
}

impl Pg {
    fn connect_within(&mut self, deadline: Instant) -> Result<(), DbError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        let mut told = false;
        loop {
            match self.config.connect(postgres::NoTls) {
                Ok(client) => {
                    self.client = Some(client);
                    self.statements.clear();
                    self.listening.clear();
                    if told {
                        let waited = started.elapsed().as_secs_f64();
                        eprintln!(
                            "bakeoff: reconnected to {} after {waited:.1} s",
                            self.display
                        );
                    }
                    return Ok(());
                }
                Err(e) if retryable(&e) && Instant::now() + pause < deadline => {
                    if !std::mem::replace(&mut told, true) {
                        // Said once per outage: a sweep that waits is not a hang.
                        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
                        eprintln!(
                            "bakeoff: {} is unreachable ({}); retrying for up to {left} s (BAKEOFF_DB_RETRY_S)",
                            self.display,
                            DbError::Postgres(e)
                        );
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) if retryable(&e) && started.elapsed() > Duration::from_secs(1) => {
                    return Err(DbError::Unreachable {
                        waited: started.elapsed(),
                        last: DbError::Postgres(e).to_string(),
                    })
                }
                Err(e) => return Err(DbError::Postgres(e)),
            }
        }
    }

    /// Prepare (once per connection) and run a statement, reconnecting and retrying while the
    /// server is unreachable, unless a transaction was open (its work is gone with the session).
    fn run<T>(
        &mut self,
        sql: &str,
        values: &[Value],
        op: impl Fn(
            &mut postgres::Client,
            &postgres::Statement,
            &[&(dyn postgres::types::ToSql + Sync)],
        ) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let deadline = Instant::now() + retry_window();
        loop {
            // A connection lost past the retry window is found again here, not assumed.
            if self.client.is_none() {
                self.connect_within(deadline)?;
            }
            let attempt = self.attempt(sql, values, &op);
            match attempt {
                Err(e) if !self.in_transaction && lost(&e) => {
                    self.client = None;
                    self.connect_within(deadline)?;
                }
                other => return other.map_err(|e| with_statement(e, sql)),
            }
        }
    }

    fn attempt<T>(
        &mut self,
        sql: &str,
        values: &[Value],
        op: &impl Fn(
            &mut postgres::Client,
            &postgres::Statement,
            &[&(dyn postgres::types::ToSql + Sync)],
        ) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let client = self.client.as_mut().expect("run connects first");
        let statement = match self.statements.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = client.prepare(sql)?;
                self.statements.insert(sql.to_string(), s.clone());
                s
            }
        };
        let bound: Vec<Box<dyn postgres::types::ToSql + Sync>> = statement
            .params()
            .iter()
            .zip(values)
            .map(|(ty, v)| bind(ty, v))
            .collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            bound.iter().map(|b| b.as_ref()).collect();
        op(client, &statement, &refs)
    }

    fn wait_for_notify(&mut self, channel: &str, timeout: Duration) -> Result<bool, DbError> {
        use postgres::fallible_iterator::FallibleIterator;
        if !self.listening.iter().any(|c| c == channel) {
            self.batch(&format!("LISTEN {channel}"))?;
            self.listening.push(channel.to_string());
        }
        let woken = {
            let client = self.client.as_mut().expect("LISTEN connected");
            let mut notifications = client.notifications();
            let woken = (notifications.timeout_iter(timeout).next()).map(|n| n.is_some());
            // Several notifications wake a waiter once.
            while let Ok(Some(_)) = notifications.iter().next() {}
            woken
        };
        match woken {
            // The next statement reconnects (and listens again).
            Err(e) if lost(&e) => {
                self.client = None;
                Ok(false)
            }
            other => other.map_err(DbError::Postgres),
        }
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        let deadline = Instant::now() + retry_window();
        loop {
            if self.client.is_none() {
                self.connect_within(deadline)?;
            }
            let client = self.client.as_mut().expect("connected just above");
            match client.batch_execute(sql) {
                Err(e) if !self.in_transaction && lost(&e) && sql != "COMMIT" => {
                    self.client = None;
                    self.connect_within(deadline)?;
                }
                other => return other.map_err(DbError::Postgres),
            }
        }
    }
}

/// A statement's error with the statement it came from (its first 120 characters), so a
/// report of it says which query failed.
fn with_statement(e: postgres::Error, sql: &str) -> DbError {
    if e.as_db_error().is_none() {
        return DbError::Postgres(e);
    }
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = flat.chars().take(120).collect();
    DbError::Other(format!("{} (in `{short}`)", DbError::Postgres(e)))
}

/// A connection-level failure: the server went away or is not accepting connections yet.
fn lost(e: &postgres::Error) -> bool {
    e.is_closed() || retryable(e)
}

fn retryable(e: &postgres::Error) -> bool {
    match e.code() {
        // 08: connection exceptions; 57P01-03: admin shutdown, crash shutdown, cannot connect now.
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        // No SQLSTATE: an I/O error (refused, reset, EOF) or a closed connection.
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

/// A value bound to a parameter of PostgreSQL type `ty` (the server infers each parameter's
/// type; SQLite would take anything).
fn bind(ty: &Type, value: &Value) -> Box<dyn postgres::types::ToSql + Sync> {
    macro_rules! typed_null {
        () => {
            match *ty {
                Type::INT8 => Box::new(None::<i64>),
                Type::INT4 => Box::new(None::<i32>),
                Type::INT2 => Box::new(None::<i16>),
                Type::FLOAT8 => Box::new(None::<f64>),
                Type::FLOAT4 => Box::new(None::<f32>),
                Type::BOOL => Box::new(None::<bool>),
                _ => Box::new(None::<String>),
            }
        };
    }
    match (value, ty) {
        (Value::Null, _) => typed_null!(),
        (Value::Int(i), &Type::INT8) => Box::new(*i),
        (Value::Int(i), &Type::INT4) => Box::new(*i as i32),
        (Value::Int(i), &Type::INT2) => Box::new(*i as i16),
        (Value::Int(i), &Type::FLOAT8) => Box::new(*i as f64),
        (Value::Int(i), &Type::FLOAT4) => Box::new(*i as f32),
        (Value::Int(i), &Type::BOOL) => Box::new(*i != 0),
        (Value::Int(i), _) => Box::new(i.to_string()),
        (Value::Real(f), &Type::FLOAT4) => Box::new(*f as f32),
        (Value::Real(f), &Type::INT8) => Box::new(*f as i64),
        (Value::Real(f), &Type::FLOAT8) => Box::new(*f),
        (Value::Real(f), _) => Box::new(f.to_string()),
        (Value::Text(s), &Type::INT8) => Box::new(s.parse::<i64>().ok()),
        (Value::Text(s), &Type::FLOAT8) => Box::new(s.parse::<f64>().ok()),
        (Value::Text(s), _) => Box::new(s.clone()),
    }
}

fn postgres_row(row: &postgres::Row) -> Result<Row, DbError> {
    let columns = row.columns();
    let mut values = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        let get = |e: postgres::Error| DbError::Postgres(e);
        let value = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(get)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map_err(get)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map_err(get)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map_err(get)?
                .map(|v| Value::Int(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(get)?.map(Value::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)
                .map_err(get)?
                .map(|v| Value::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => row
                .try_get::<_, Option<String>>(i)
                .map_err(get)?
                .map(Value::Text),
            ref other => {
                return Err(DbError::Other(format!(
                    "column {} has PostgreSQL type {other}, which bakeoff does not read (cast it to bigint, double precision or text)",
                    column.name()
                )))
            }
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row {
        columns: columns.iter().map(|c| c.name().to_string()).collect(),
        values,
    })
}

fn sqlite_values(values: &[Value]) -> impl Iterator<Item = rusqlite::types::Value> + '_ {
    values.iter().map(|v| match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Real(f) => rusqlite::types::Value::Real(*f),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
    })
}

fn sqlite_value(value: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Text(String::from_utf8_lossy(b).into_owned()),
    }
}

/// The current UTC time as stored in every `*_at` column, in SQLite's spelling.
pub const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
const PG_NOW: &str = "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

/// A statement in PostgreSQL's spelling: `?N` (and bare `?`) placeholders become `$N`, and
/// SQLite's timestamp expression PostgreSQL's. Quoted text is left as it is.
pub fn postgres_sql(sql: &str) -> String {
    let sql = sql.replace(NOW, PG_NOW);
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut next_anonymous = 1;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    digits = next_anonymous.to_string();
                    next_anonymous += 1;
                }
                out.push('$');
                out.push_str(&digits);
            }
            (None, c) => out.push(c),
        }
    }
    out
}

/// A migration's column types in PostgreSQL's spelling: a rowid key becomes an identity column,
/// `INTEGER` a 64-bit `BIGINT`, `REAL` a `DOUBLE PRECISION` (PostgreSQL's `REAL` is 32-bit).
pub fn postgres_ddl(sql: &str) -> String {
    let sql = sql.replace(
        "INTEGER PRIMARY KEY",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    );
    let words: Vec<&str> = sql
        .split_inclusive(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .collect();
    let mut out = String::with_capacity(sql.len() + 64);
    for piece in words {
        let (word, tail) = piece.split_at(
            piece
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(piece.len()),
        );
        out.push_str(match word {
            "INTEGER" => "BIGINT",
            "REAL" => "DOUBLE PRECISION",
            other => other,
        });
        out.push_str(tail);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_outside_quotes() {
        assert_eq!(
            postgres_sql("SELECT coalesce(x, '?') FROM t WHERE a = ?1 AND b = ?12 AND c = ?"),
            "SELECT coalesce(x, '?') FROM t WHERE a = $1 AND b = $12 AND c = $1"
        );
        assert!(postgres_sql(&format!("UPDATE t SET at = {NOW}")).contains("now() AT TIME ZONE"));
    }

    #[test]
    fn ddl_types_widen_to_postgres() {
        let ddl = postgres_ddl(
            "CREATE TABLE s (id INTEGER PRIMARY KEY, trial_id INTEGER NOT NULL, value REAL NOT NULL, realm TEXT)",
        );
        assert_eq!(
            ddl,
            "CREATE TABLE s (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, trial_id BIGINT NOT NULL, value DOUBLE PRECISION NOT NULL, realm TEXT)"
        );
    }

    #[test]
    fn sqlite_rows_round_trip_through_values() {
        let db = Db::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        db.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x REAL, s TEXT)")
            .unwrap();
        let id = db
            .insert(
                "INSERT INTO t (n, x, s) VALUES (?1, ?2, ?3)",
                params![7_i64, 1.5, "a"],
            )
            .unwrap();
        db.insert(
            "INSERT INTO t (n, x, s) VALUES (?1, ?2, ?3)",
            params![None::<i64>, 2.0, Some("b")],
        )
        .unwrap();
        let rows: Vec<(i64, Option<i64>, f64, String)> = db
            .query_map("SELECT id, n, x, s FROM t ORDER BY id", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!(rows[0], (id, Some(7), 1.5, "a".into()));
        assert_eq!(rows[1].1, None);
        let missing = db
            .query_row("SELECT id FROM t WHERE id = ?1", [99], |r| r.get::<i64>(0))
            .optional()
            .unwrap();
        assert_eq!(missing, None);
        let wrong = db.query_row("SELECT s FROM t", [], |r| r.get::<i64>(0));
        assert!(wrong.unwrap_err().to_string().contains("column 0"));
        let failed: Result<(), DbError> = db.transaction(|db| {
            db.execute("DELETE FROM t", [])?;
            Err(DbError::Other("no".into()))
        });
        assert!(failed.is_err());
        let count: i64 = db
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 2, "the rolled-back delete kept the rows");
    }
}
