//! SQLite without a worker thread: the small part of sqlx's query API that `backend.rs` uses,
//! implemented over rusqlite so statements run on the calling thread. An embedded database answers
//! in microseconds; sqlx-sqlite's hop to a per-connection worker thread and back for every
//! statement cost about half the wall time of a simulation (futex wake-ups, context switches).
//!
//! `lib.rs` mounts this module as `sqlx` inside the SQLite backend, so the one `backend.rs` keeps
//! compiling against both databases. Connections are never held across a real suspension point
//! (backend code awaits only these futures, which are ready at once), so a small pool suffices;
//! waiting for a free connection is async (a semaphore), never a blocked thread.

use rusqlite::types::Value;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

/// Prepared statements kept per connection: every distinct query text of the backend fits.
const STATEMENT_CACHE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Not a `#[source]`: the message already is SQLite's, and error printers that walk the
    // chain would say it twice.
    #[error("{}", sqlite_message(.0))]
    Sqlite(rusqlite::Error),
    #[error("no rows returned by a query that expected to return at least one row")]
    RowNotFound,
    #[error("column '{column}': {detail}")]
    Decode { column: String, detail: String },
    #[error("{0}")]
    Value(#[from] rusqlite::types::FromSqlError),
    #[error("connection pool closed")]
    PoolClosed,
    /// A batched pool rolled its open batch back (a unit of work failed after it had written):
    /// the commands released into that batch are gone, so the pool refuses all further work.
    #[error("the database's open batch was rolled back after a failed write; reopen the store")]
    BatchLost,
    #[error("cannot start the WAL checkpoint thread: {0}")]
    Thread(std::io::Error),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Sqlite(e)
    }
}

/// SQLite's own message once (rusqlite's display repeats the code's description after it).
fn sqlite_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        other => other.to_string(),
    }
}

impl Error {
    /// The extended SQLite result code, when the database refused.
    pub fn sqlite_code(&self) -> Option<i32> {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => Some(e.extended_code),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The database marker (`Db` in `backend.rs`).
pub struct Sqlite;

pub trait Database {
    type Connection;
    type Row;
}

impl Database for Sqlite {
    type Connection = Connection;
    type Row = SqliteRow;
}

/// Marks SQL text built at run time (sqlx's name, kept so `backend.rs` reads the same).
pub struct AssertSqlSafe<T>(pub T);

pub trait SqlText {
    fn into_sql(self) -> String;
}

impl SqlText for &str {
    fn into_sql(self) -> String {
        self.to_string()
    }
}

impl SqlText for AssertSqlSafe<String> {
    fn into_sql(self) -> String {
        self.0
    }
}

impl SqlText for AssertSqlSafe<&str> {
    fn into_sql(self) -> String {
        self.0.to_string()
    }
}

/// A value that can be bound to a parameter.
pub trait Encode {
    fn encode(self) -> Value;
}

impl Encode for i64 {
    fn encode(self) -> Value {
        Value::Integer(self)
    }
}

impl Encode for i32 {
    fn encode(self) -> Value {
        Value::Integer(self.into())
    }
}

impl Encode for bool {
    fn encode(self) -> Value {
        Value::Integer(self.into())
    }
}

impl Encode for String {
    fn encode(self) -> Value {
        Value::Text(self)
    }
}

impl Encode for &str {
    fn encode(self) -> Value {
        Value::Text(self.to_string())
    }
}

impl Encode for &String {
    fn encode(self) -> Value {
        Value::Text(self.clone())
    }
}

impl Encode for &i64 {
    fn encode(self) -> Value {
        Value::Integer(*self)
    }
}

impl<T: Encode + Clone> Encode for &Option<T> {
    fn encode(self) -> Value {
        self.clone().encode()
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(self) -> Value {
        self.map_or(Value::Null, Encode::encode)
    }
}

/// A column value read back.
pub trait Decode: Sized {
    fn decode(v: &Value) -> std::result::Result<Self, String>;
}

impl Decode for i64 {
    fn decode(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Integer(i) => Ok(*i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl Decode for i32 {
    fn decode(v: &Value) -> std::result::Result<Self, String> {
        i64::decode(v).and_then(|i| i32::try_from(i).map_err(|e| e.to_string()))
    }
}

impl Decode for bool {
    fn decode(v: &Value) -> std::result::Result<Self, String> {
        i64::decode(v).map(|i| i != 0)
    }
}

impl Decode for String {
    fn decode(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            other => T::decode(other).map(Some),
        }
    }
}

/// A column named or numbered.
pub trait ColumnIndex {
    fn position(&self, columns: &[String]) -> Option<usize>;
    fn describe(&self) -> String;
}

impl ColumnIndex for &str {
    fn position(&self, columns: &[String]) -> Option<usize> {
        columns.iter().position(|c| c == self)
    }
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl ColumnIndex for usize {
    fn position(&self, columns: &[String]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
    fn describe(&self) -> String {
        format!("#{self}")
    }
}

/// One result row, owned (values are copied out of SQLite before the statement is reset).
pub struct SqliteRow {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

pub trait Row {
    fn try_get<T: Decode, I: ColumnIndex>(&self, index: I) -> Result<T>;
}

impl Row for SqliteRow {
    fn try_get<T: Decode, I: ColumnIndex>(&self, index: I) -> Result<T> {
        let at = index.position(&self.columns).ok_or_else(|| Error::Decode {
            column: index.describe(),
            detail: "no such column".into(),
        })?;
        T::decode(&self.values[at]).map_err(|detail| Error::Decode {
            column: index.describe(),
            detail,
        })
    }
}

/// What an `execute` changed.
pub struct QueryResult {
    rows_affected: u64,
}

impl QueryResult {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// One open SQLite connection.
pub struct Connection {
    raw: rusqlite::Connection,
    /// Units of work released into the open batch and not yet committed (batched pools only).
    batched: usize,
    /// Each statement text's [`Shape`], worked out once (at most `STATEMENT_CACHE` texts).
    shapes: std::cell::RefCell<std::collections::HashMap<String, Arc<Shape>>>,
}

/// What a statement's text fixes, read once per text: which argument each parameter takes and
/// the result's column names. `sqlite3_bind_parameter_name` walks the statement's list of names
/// on every call, so binding a 16-row INSERT's 192 parameters by name took an estimated ~18,000
/// steps, every time (1.9% self time in perf of a simulation).
struct Shape {
    /// `args[at[i]]` binds parameter `i + 1`.
    at: Box<[usize]>,
    columns: Arc<[String]>,
}

impl Shape {
    fn of(stmt: &rusqlite::Statement<'_>) -> Shape {
        let at = (1..=stmt.parameter_count())
            .map(|i| {
                stmt.parameter_name(i)
                    .and_then(|n| n.get(1..))
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(i)
                    - 1
            })
            .collect();
        let columns = stmt
            .column_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        Shape { at, columns }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A batched pool's last units are committed when it closes, not lost.
        if self.batched > 0
            && !self.raw.is_autocommit()
            && let Err(e) = self.raw.execute_batch("COMMIT")
        {
            tracing::error!(error = %e, units = self.batched, "could not commit the last batch");
        }
    }
}

impl Connection {
    fn run(
        &self,
        sql: &str,
        args: &[Value],
        mut each: impl FnMut(&rusqlite::Row<'_>, &Arc<[String]>) -> Result<bool>,
    ) -> Result<u64> {
        let _timed = profile::Timed::start(sql);
        let mut stmt = self.raw.prepare_cached(sql)?;
        let shape = self.shape(sql, &stmt);
        bind_all(&mut stmt, &shape.at, args)?;
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            if !each(row, &shape.columns)? {
                break;
            }
        }
        drop(rows);
        Ok(self.raw.changes())
    }

    /// The statement's shape, from the cache or read off the prepared statement.
    fn shape(&self, sql: &str, stmt: &rusqlite::Statement<'_>) -> Arc<Shape> {
        let mut shapes = self.shapes.borrow_mut();
        if let Some(s) = shapes.get(sql) {
            return s.clone();
        }
        if shapes.len() >= STATEMENT_CACHE {
            shapes.clear();
        }
        let s = Arc::new(Shape::of(stmt));
        shapes.insert(sql.to_string(), s.clone());
        s
    }
}

/// Binds `$N` / `?N` parameters by their number, as sqlx does (the backend's SQL is written with
/// PostgreSQL's `$N`, which SQLite reads as named parameters numbered in order of appearance;
/// `at` is the statement's [`Shape`]).
fn bind_all(stmt: &mut rusqlite::CachedStatement<'_>, at: &[usize], args: &[Value]) -> Result<()> {
    for (i, &at) in at.iter().enumerate() {
        let v = args.get(at).ok_or_else(|| Error::Decode {
            column: format!("parameter {}", at + 1),
            detail: format!("{} arguments bound", args.len()),
        })?;
        stmt.raw_bind_parameter(i + 1, v)?;
    }
    Ok(())
}

fn owned_row(row: &rusqlite::Row<'_>, columns: &Arc<[String]>) -> Result<SqliteRow> {
    let mut values = Vec::with_capacity(columns.len());
    for i in 0..columns.len() {
        values.push(Value::try_from(row.get_ref(i)?)?);
    }
    Ok(SqliteRow {
        columns: columns.clone(),
        values,
    })
}

fn first_column<T: Decode>(row: &rusqlite::Row<'_>) -> Result<T> {
    let v = Value::try_from(row.get_ref(0)?)?;
    T::decode(&v).map_err(|detail| Error::Decode {
        column: "#0".into(),
        detail,
    })
}

/// Where a query runs: a connection (or transaction) at hand, or any connection of a pool.
pub trait Executor: Send {
    fn with<R: Send>(
        self,
        f: impl FnOnce(&Connection) -> Result<R> + Send,
    ) -> impl Future<Output = Result<R>> + Send;
}

impl Executor for &mut Connection {
    #[allow(clippy::manual_async_fn)]
    fn with<R: Send>(
        self,
        f: impl FnOnce(&Connection) -> Result<R> + Send,
    ) -> impl Future<Output = Result<R>> + Send {
        async move { f(self) }
    }
}

impl<D: Send + Sync> Executor for &Pool<D> {
    #[allow(clippy::manual_async_fn)]
    fn with<R: Send>(
        self,
        f: impl FnOnce(&Connection) -> Result<R> + Send,
    ) -> impl Future<Output = Result<R>> + Send {
        async move {
            let c = self.acquire().await?;
            f(&c)
        }
    }
}

/// A statement and its arguments.
pub struct Query {
    sql: String,
    args: Vec<Value>,
}

pub fn query(sql: impl SqlText) -> Query {
    Query {
        sql: sql.into_sql(),
        args: Vec::new(),
    }
}

impl Query {
    pub fn bind(mut self, v: impl Encode) -> Query {
        self.args.push(v.encode());
        self
    }

    pub async fn execute(self, e: impl Executor) -> Result<QueryResult> {
        e.with(move |c| {
            let n = c.run(&self.sql, &self.args, |_, _| Ok(true))?;
            Ok(QueryResult { rows_affected: n })
        })
        .await
    }

    pub async fn fetch_all(self, e: impl Executor) -> Result<Vec<SqliteRow>> {
        e.with(move |c| {
            let mut out = Vec::new();
            c.run(&self.sql, &self.args, |r, cols| {
                out.push(owned_row(r, cols)?);
                Ok(true)
            })?;
            Ok(out)
        })
        .await
    }

    pub async fn fetch_optional(self, e: impl Executor) -> Result<Option<SqliteRow>> {
        e.with(move |c| {
            let mut out = None;
            c.run(&self.sql, &self.args, |r, cols| {
                out = Some(owned_row(r, cols)?);
                Ok(false)
            })?;
            Ok(out)
        })
        .await
    }

    pub async fn fetch_one(self, e: impl Executor) -> Result<SqliteRow> {
        self.fetch_optional(e).await?.ok_or(Error::RowNotFound)
    }
}

/// A statement whose rows are single values.
pub struct QueryScalar<O> {
    inner: Query,
    out: PhantomData<fn() -> O>,
}

pub fn query_scalar<O: Decode>(sql: impl SqlText) -> QueryScalar<O> {
    QueryScalar {
        inner: query(sql),
        out: PhantomData,
    }
}

impl<O: Decode + Send> QueryScalar<O> {
    pub fn bind(mut self, v: impl Encode) -> Self {
        self.inner = self.inner.bind(v);
        self
    }

    pub async fn fetch_all(self, e: impl Executor) -> Result<Vec<O>> {
        let q = self.inner;
        e.with(move |c| {
            let mut out = Vec::new();
            c.run(&q.sql, &q.args, |r, _| {
                out.push(first_column(r)?);
                Ok(true)
            })?;
            Ok(out)
        })
        .await
    }

    pub async fn fetch_optional(self, e: impl Executor) -> Result<Option<O>> {
        let q = self.inner;
        e.with(move |c| {
            let mut out = None;
            c.run(&q.sql, &q.args, |r, _| {
                out = Some(first_column(r)?);
                Ok(false)
            })?;
            Ok(out)
        })
        .await
    }

    pub async fn fetch_one(self, e: impl Executor) -> Result<O> {
        self.fetch_optional(e).await?.ok_or(Error::RowNotFound)
    }
}

/// Several statements without parameters (migrations, `ANALYZE`).
pub struct RawSql(String);

pub fn raw_sql(sql: impl SqlText) -> RawSql {
    RawSql(sql.into_sql())
}

impl RawSql {
    pub async fn execute(self, e: impl Executor) -> Result<QueryResult> {
        e.with(move |c| {
            c.raw.execute_batch(&self.0)?;
            Ok(QueryResult {
                rows_affected: c.raw.changes(),
            })
        })
        .await
    }
}

/// SQL assembled piece by piece with bound values.
pub struct QueryBuilder<D> {
    sql: String,
    args: Vec<Value>,
    db: PhantomData<D>,
}

impl<D> QueryBuilder<D> {
    pub fn new(init: impl Into<String>) -> Self {
        QueryBuilder {
            sql: init.into(),
            args: Vec::new(),
            db: PhantomData,
        }
    }

    pub fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        use std::fmt::Write;
        let _ = write!(self.sql, "{sql}");
        self
    }

    pub fn push_bind(&mut self, v: impl Encode) -> &mut Self {
        self.args.push(v.encode());
        let n = self.args.len();
        self.push(format_args!("?{n}"))
    }

    /// The same query under `EXPLAIN QUERY PLAN`, its values bound as they are (plan tests).
    #[cfg(test)]
    pub fn explained(mut self) -> Self {
        self.sql.insert_str(0, "EXPLAIN QUERY PLAN ");
        self
    }

    /// `VALUES (…), (…)`: one parenthesised, comma-separated group per item.
    pub fn push_values<I: IntoIterator>(
        &mut self,
        items: I,
        mut each: impl FnMut(Separated<'_, D>, I::Item),
    ) -> &mut Self {
        self.push("VALUES ");
        for (n, item) in items.into_iter().enumerate() {
            self.push(if n == 0 { "(" } else { ", (" });
            each(
                Separated {
                    builder: self,
                    separator: ", ".into(),
                    first: true,
                },
                item,
            );
            self.push(")");
        }
        self
    }

    /// Values pushed through the result are joined by `separator`.
    pub fn separated(&mut self, separator: impl Into<String>) -> Separated<'_, D> {
        Separated {
            builder: self,
            separator: separator.into(),
            first: true,
        }
    }

    pub fn build(&mut self) -> Query {
        Query {
            sql: self.sql.clone(),
            args: self.args.clone(),
        }
    }
}

/// The values of one `push_values` group.
pub struct Separated<'a, D> {
    builder: &'a mut QueryBuilder<D>,
    separator: String,
    first: bool,
}

impl<D> Separated<'_, D> {
    pub fn push_bind(&mut self, v: impl Encode) -> &mut Self {
        if !self.first {
            self.builder.push(&self.separator);
        }
        self.first = false;
        self.builder.push_bind(v);
        self
    }
}

/// Time spent per SQL text, for `haggle bench sim --sql-profile`: off unless switched on (then a
/// clock read and a map update per statement, process-wide).
pub mod profile {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    static ON: AtomicBool = AtomicBool::new(false);
    static SPENT: Mutex<Option<HashMap<String, (u64, u128)>>> = Mutex::new(None);

    pub fn enable() {
        ON.store(true, Ordering::Relaxed);
    }

    /// Statements by total time, longest first: (SQL text, runs, nanoseconds).
    pub fn report() -> Vec<(String, u64, u128)> {
        let spent = SPENT.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(String, u64, u128)> = spent
            .iter()
            .flatten()
            .map(|(k, (n, t))| (k.clone(), *n, *t))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.2));
        v
    }

    pub(super) struct Timed<'a>(Option<(&'a str, std::time::Instant)>);

    impl<'a> Timed<'a> {
        pub(super) fn start(sql: &'a str) -> Self {
            Timed(
                ON.load(Ordering::Relaxed)
                    .then(|| (sql, std::time::Instant::now())),
            )
        }
    }

    impl Drop for Timed<'_> {
        fn drop(&mut self) {
            if let Some((sql, at)) = self.0 {
                let ns = at.elapsed().as_nanos();
                let mut spent = SPENT.lock().unwrap_or_else(|p| p.into_inner());
                let e = spent
                    .get_or_insert_with(HashMap::new)
                    .entry(sql.to_string())
                    .or_default();
                e.0 += 1;
                e.1 += ns;
            }
        }
    }
}

/// `contains_word(text, word)`: 1 when `text` has `word` as a whole word (or, for `word*`, a
/// word beginning so), by `row::has_word`, else 0; NULL or non-text arguments give 0. Listing
/// search filters a category's listings with it, so SQLite matches words exactly as the
/// shelves and PostgreSQL do (a SIMD substring search finds the candidates).
fn register_contains_word(raw: &rusqlite::Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags as F;
    use rusqlite::types::ValueRef;
    raw.create_scalar_function(
        "contains_word",
        2,
        F::SQLITE_UTF8 | F::SQLITE_DETERMINISTIC | F::SQLITE_INNOCUOUS,
        |ctx| {
            Ok(match (ctx.get_raw(0), ctx.get_raw(1)) {
                (ValueRef::Text(text), ValueRef::Text(word)) => {
                    match (std::str::from_utf8(text), std::str::from_utf8(word)) {
                        (Ok(text), Ok(word)) => crate::row::has_word(text, word),
                        _ => false,
                    }
                }
                _ => false,
            })
        },
    )
}

/// `listing_score(title, description, words)`: a listing's relevance to `words` (the query's
/// search words joined by spaces) by `search::relevance`, the function the shelves call too;
/// NULL or non-text arguments give 0.
fn register_listing_score(raw: &rusqlite::Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags as F;
    use rusqlite::types::ValueRef;
    raw.create_scalar_function(
        "listing_score",
        3,
        F::SQLITE_UTF8 | F::SQLITE_DETERMINISTIC | F::SQLITE_INNOCUOUS,
        |ctx| {
            let text = |i| match ctx.get_raw(i) {
                ValueRef::Text(t) => std::str::from_utf8(t).ok(),
                _ => None,
            };
            Ok(match (text(0), text(1), text(2)) {
                (Some(title), Some(description), Some(words)) => {
                    let words: Vec<String> = words
                        .split(' ')
                        .filter(|w| !w.is_empty())
                        .map(str::to_string)
                        .collect();
                    crate::search::relevance(title, description, &words)
                }
                _ => 0,
            })
        },
    )
}

/// How to open a connection: the file and the settings every connection gets.
#[derive(Clone)]
pub struct Options {
    /// A file path, or `None` for a private in-memory database.
    pub path: Option<std::path::PathBuf>,
    pub pragmas: Vec<(String, String)>,
    pub busy_timeout: std::time::Duration,
}

impl Options {
    fn open(&self) -> Result<Connection> {
        use rusqlite::OpenFlags as F;
        let flags = F::SQLITE_OPEN_READ_WRITE
            | F::SQLITE_OPEN_CREATE
            | F::SQLITE_OPEN_NO_MUTEX
            | F::SQLITE_OPEN_URI;
        let raw = match &self.path {
            Some(p) => rusqlite::Connection::open_with_flags(p, flags)?,
            None => rusqlite::Connection::open_in_memory_with_flags(flags)?,
        };
        raw.busy_timeout(self.busy_timeout)?;
        raw.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        register_contains_word(&raw)?;
        register_listing_score(&raw)?;
        for (k, v) in &self.pragmas {
            // `journal_mode` answers with a row; the others answer nothing.
            raw.query_row_and_then(&format!("PRAGMA {k} = {v}"), [], |_| {
                Ok::<_, rusqlite::Error>(())
            })
            .or_else(|e| {
                if matches!(e, rusqlite::Error::QueryReturnedNoRows) {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        }
        Ok(Connection {
            raw,
            batched: 0,
            shapes: Default::default(),
        })
    }
}

/// How often the background checkpointer looks for new commits.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// WAL frames (pages) past which a checkpoint holds the writer lock to start the log over:
/// 64 MiB of 4 KiB pages.
pub const WAL_FRAMES_MAX: i64 = 16_384;

/// The checkpoint thread's work (see [`Pool::checkpoint_in_background`]), until the pool is gone.
/// `data_version` changes whenever another connection commits (a command's transaction, or a
/// statement run on its own), so a quiet file is left alone.
fn checkpoint_loop(
    conn: &rusqlite::Connection,
    pool: &std::sync::Weak<Shared>,
    writer: &tokio::sync::Mutex<()>,
    frames_max: i64,
) {
    let mut seen = None;
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        if pool.strong_count() == 0 {
            return;
        }
        let checked = conn
            .query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
            .and_then(|version| {
                if seen == Some(version) {
                    return Ok(());
                }
                seen = Some(version);
                if wal_checkpoint(conn, "PASSIVE")? > frames_max {
                    let _writer = writer.blocking_lock();
                    wal_checkpoint(conn, "RESTART")?;
                }
                Ok(())
            });
        if let Err(e) = checked {
            tracing::warn!(error = %sqlite_message(&e), "a WAL checkpoint failed; the next one retries");
        }
    }
}

/// Runs `PRAGMA wal_checkpoint(mode)` and answers the frames in the log when it began.
fn wal_checkpoint(conn: &rusqlite::Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
}

struct Shared {
    options: Options,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<tokio::sync::Semaphore>,
    /// Units of work per commit; 1 commits each transaction on its own.
    batch: usize,
    /// Set once a batched pool's open batch is rolled back (see [`Error::BatchLost`]).
    lost: std::sync::atomic::AtomicBool,
}

/// A bounded pool of connections to one database.
pub struct Pool<D> {
    shared: Arc<Shared>,
    db: PhantomData<fn() -> D>,
}

impl<D> Clone for Pool<D> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
            db: PhantomData,
        }
    }
}

impl<D> Pool<D> {
    /// Opens the first connection now, so a bad path or a locked file fails at start.
    pub fn connect(options: Options, max_connections: usize) -> Result<Self> {
        Self::open(options, max_connections, 1)
    }

    /// One connection whose transactions are committed `batch` at a time (group commit): each
    /// transaction is a unit of work inside a longer one, read at once by every later read, its
    /// pages reaching the file together with its batch's. A crash loses at most the last
    /// uncommitted batch, whole transactions only. A unit rolled back having changed no row
    /// leaves the batch's others in place; one rolled back after writing rolls back its whole
    /// batch and the pool refuses all work since ([`Transaction::rollback`], [`Error::BatchLost`]):
    /// the sole writer of a file (a simulation) gets its speed from not journaling each unit.
    /// [`Pool::flush`] commits what is pending; closing the pool commits it too.
    pub fn connect_batched(options: Options, batch: usize) -> Result<Self> {
        Self::open(options, 1, batch.max(1))
    }

    fn open(options: Options, max_connections: usize, batch: usize) -> Result<Self> {
        let first = options.open()?;
        Ok(Pool {
            shared: Arc::new(Shared {
                options,
                idle: Mutex::new(vec![first]),
                permits: Arc::new(tokio::sync::Semaphore::new(max_connections.max(1))),
                batch,
                lost: Default::default(),
            }),
            db: PhantomData,
        })
    }

    /// Commits a batched pool's pending transactions now (nothing to do otherwise).
    pub async fn flush(&self) -> Result<()> {
        let mut c = self.acquire().await?;
        if c.batched > 0 && !c.raw.is_autocommit() {
            c.raw.execute_batch("COMMIT")?;
        }
        c.batched = 0;
        Ok(())
    }

    /// Whether a batched pool's open batch was rolled back (every call fails since).
    pub fn batch_lost(&self) -> bool {
        self.shared.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Checkpoints the pool's WAL file on a thread of its own, for a pool whose connections
    /// have `wal_autocheckpoint = 0` (a server's). SQLite's automatic checkpoint runs in the
    /// connection that commits, while it holds the write lock (`writer`), and its file writes
    /// and two fsyncs kept every other writer waiting (measured: a server's `COMMIT` took
    /// 1.9 ms on average). Here a PASSIVE checkpoint (which never blocks a writer) runs every
    /// [`CHECKPOINT_EVERY`] when something was committed. Writers that never pause could keep
    /// it from ever reaching the end of the log, so SQLite could never start the log over: past
    /// [`WAL_FRAMES_MAX`] frames it checkpoints holding `writer` (RESTART), as SQLite's own
    /// would. The thread ends within [`CHECKPOINT_EVERY`] of the pool's last clone. In-memory
    /// and batched pools checkpoint as SQLite does; nothing is started for them.
    pub fn checkpoint_in_background(&self, writer: Arc<tokio::sync::Mutex<()>>) -> Result<()> {
        self.checkpoint_past(writer, WAL_FRAMES_MAX)
    }

    /// [`Pool::checkpoint_in_background`] with the log's bound in frames (a test's is small).
    fn checkpoint_past(&self, writer: Arc<tokio::sync::Mutex<()>>, frames_max: i64) -> Result<()> {
        if self.shared.options.path.is_none() || self.shared.batch > 1 {
            return Ok(());
        }
        let conn = self.shared.options.open()?;
        let pool = Arc::downgrade(&self.shared);
        std::thread::Builder::new()
            .name("haggle-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&conn.raw, &pool, &writer, frames_max))
            .map_err(Error::Thread)?;
        Ok(())
    }

    pub async fn acquire(&self) -> Result<PoolConnection> {
        if self.batch_lost() {
            return Err(Error::BatchLost);
        }
        let permit = self
            .shared
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::PoolClosed)?;
        let idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => self.shared.options.open()?,
        };
        Ok(PoolConnection {
            conn: Some(conn),
            shared: self.shared.clone(),
            _permit: permit,
        })
    }

    /// A transaction started with `begin` (e.g. `BEGIN IMMEDIATE` to take the write lock now).
    pub async fn begin_with(&self, begin: &str) -> Result<Transaction> {
        let conn = self.acquire().await?;
        let batched = self.shared.batch > 1;
        if !batched || conn.raw.is_autocommit() {
            conn.raw.execute_batch(begin)?;
        }
        Ok(Transaction {
            changes_at_begin: conn.raw.total_changes(),
            conn,
            open: true,
            batched,
        })
    }
}

/// A connection borrowed from the pool; back to the pool on drop.
pub struct PoolConnection {
    conn: Option<Connection>,
    shared: Arc<Shared>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Deref for PoolConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until drop")
    }
}

impl DerefMut for PoolConnection {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for PoolConnection {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            // A connection left inside a transaction (a panic mid-write) is not reused; a
            // batched pool's connection stays inside its open batch between transactions.
            if c.raw.is_autocommit() || c.batched > 0 {
                self.shared
                    .idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(c);
            }
        }
    }
}

/// An open transaction; rolled back on drop unless committed.
pub struct Transaction {
    conn: PoolConnection,
    open: bool,
    /// A unit of work inside the pool's open batch (see [`Pool::connect_batched`]).
    batched: bool,
    /// The connection's `total_changes` when the unit began: a batched unit that changed no
    /// row has nothing to undo.
    changes_at_begin: u64,
}

impl Transaction {
    pub async fn commit(mut self) -> Result<()> {
        self.open = false;
        let _timed = profile::Timed::start(if self.batched {
            "end of unit (COMMIT per batch)"
        } else {
            "COMMIT"
        });
        if !self.batched {
            self.conn.raw.execute_batch("COMMIT")?;
            return Ok(());
        }
        if self.conn.raw.is_autocommit() {
            // SQLite rolled the batch back itself (an I/O error, a full disk).
            return Err(self.lose_batch());
        }
        self.conn.batched += 1;
        if self.conn.batched >= self.conn.shared.batch {
            self.conn.raw.execute_batch("COMMIT")?;
            self.conn.batched = 0;
        }
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<()> {
        self.open = false;
        self.undo()
    }

    /// Undoes this transaction. A batched unit is not a savepoint of its own: copying every
    /// page a command first touches into a savepoint's sub-journal was ~7% of a simulation's
    /// time, and a command only fails after writing when the database itself fails (the rules
    /// refuse before the plan is written). So a unit that changed no row has nothing to undo and
    /// leaves the batch's other units in place; one that did can only be undone with its whole
    /// batch, which loses the units released into it, and the pool refuses all work since
    /// ([`Error::BatchLost`]), as a crash would have lost them.
    fn undo(&mut self) -> Result<()> {
        if !self.batched || self.conn.batched == 0 {
            // Unbatched, or the batch holds nothing else yet: end it, so the connection is back
            // to autocommit.
            if !self.conn.raw.is_autocommit() {
                self.conn.raw.execute_batch("ROLLBACK")?;
            }
            return Ok(());
        }
        let wrote = self.conn.raw.total_changes() != self.changes_at_begin;
        if !wrote && !self.conn.raw.is_autocommit() {
            return Ok(());
        }
        let lost = self.lose_batch();
        if !self.conn.raw.is_autocommit() {
            self.conn.raw.execute_batch("ROLLBACK")?;
        }
        Err(lost)
    }

    /// Marks the pool's open batch lost (its units are rolled back by the caller, or were by
    /// SQLite) and says so once in the log.
    fn lose_batch(&mut self) -> Error {
        let units = std::mem::take(&mut self.conn.batched);
        self.conn
            .shared
            .lost
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::error!(
            units,
            "a unit of work failed after writing; its batch is rolled back and the store refuses further work"
        );
        Error::BatchLost
    }
}

impl Deref for Transaction {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for Transaction {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.open {
            // Nothing to report to: the caller is already leaving with an error (a lost batch
            // is logged, and every later call on the pool fails).
            let _ = self.undo();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool<Sqlite> {
        Pool::connect(
            Options {
                path: None,
                pragmas: vec![],
                busy_timeout: std::time::Duration::from_secs(1),
            },
            1,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn dollar_parameters_bind_by_number_not_by_position() {
        let p = pool();
        let v: i64 = query_scalar("SELECT $2 * 10 + $1")
            .bind(1i64)
            .bind(2i64)
            .fetch_one(&p)
            .await
            .unwrap();
        assert_eq!(v, 21);
        let v: i64 = query_scalar("SELECT $1 + $1")
            .bind(4i64)
            .fetch_one(&p)
            .await
            .unwrap();
        assert_eq!(v, 8);
    }

    #[tokio::test]
    async fn a_dropped_transaction_rolls_back() {
        let p = pool();
        raw_sql("CREATE TABLE t (x INTEGER)")
            .execute(&p)
            .await
            .unwrap();
        {
            let mut tx = p.begin_with("BEGIN IMMEDIATE").await.unwrap();
            query("INSERT INTO t VALUES ($1)")
                .bind(1i64)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let n: i64 = query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&p)
            .await
            .unwrap();
        assert_eq!(n, 0);
        let mut tx = p.begin_with("BEGIN IMMEDIATE").await.unwrap();
        query("INSERT INTO t VALUES ($1)")
            .bind(1i64)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let n: i64 = query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&p)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }

    /// A file database of its own (removed when the test ends, passed or failed), and a plain
    /// connection that sees only what was committed.
    fn batched(
        batch: usize,
        name: &str,
    ) -> (
        Pool<Sqlite>,
        rusqlite::Connection,
        haggle_testkit::TempSqlite,
    ) {
        let file = haggle_testkit::TempSqlite::new(&format!("lite-{name}"));
        let options = Options {
            path: Some(file.path.clone()),
            pragmas: vec![("journal_mode".into(), "WAL".into())],
            busy_timeout: std::time::Duration::from_secs(1),
        };
        let p = Pool::connect_batched(options, batch).unwrap();
        let outside = rusqlite::Connection::open(&file.path).unwrap();
        outside.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        (p, outside, file)
    }

    /// A server-like pool on a file of its own (no automatic checkpoint), with the checkpoint
    /// thread started: the log bounded at `frames_max` frames, under `writer`.
    async fn checkpointed(
        name: &str,
        writer: &Arc<tokio::sync::Mutex<()>>,
        frames_max: i64,
    ) -> (Pool<Sqlite>, haggle_testkit::TempSqlite) {
        let file = haggle_testkit::TempSqlite::new(&format!("lite-{name}"));
        let options = Options {
            path: Some(file.path.clone()),
            pragmas: vec![
                ("journal_mode".into(), "WAL".into()),
                ("wal_autocheckpoint".into(), "0".into()),
            ],
            busy_timeout: std::time::Duration::from_secs(1),
        };
        let p: Pool<Sqlite> = Pool::connect(options, 2).unwrap();
        p.checkpoint_past(Arc::clone(writer), frames_max).unwrap();
        raw_sql("CREATE TABLE t (x BLOB)")
            .execute(&p)
            .await
            .unwrap();
        (p, file)
    }

    /// Inserts about 100 pages (400 kB) of new rows.
    const PAGES: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) INSERT INTO t SELECT zeroblob(4000) FROM n";

    /// Commits [`PAGES`] in a transaction.
    async fn commit_pages(p: &Pool<Sqlite>) {
        let mut tx = p.begin_with("BEGIN IMMEDIATE").await.unwrap();
        raw_sql(PAGES).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// The database file's size once it is at least `at_least` bytes, or after 50 checkpoint
    /// periods. Only a checkpoint moves committed pages from the log into the file.
    async fn file_size_reaching(path: &std::path::Path, at_least: u64) -> u64 {
        let size = || std::fs::metadata(path).unwrap().len();
        let deadline = std::time::Instant::now() + 50 * CHECKPOINT_EVERY;
        while size() < at_least && std::time::Instant::now() < deadline {
            tokio::time::sleep(CHECKPOINT_EVERY / 4).await;
        }
        size()
    }

    #[tokio::test]
    async fn a_server_pools_log_is_checkpointed_by_a_thread_of_its_own() {
        let writer = Arc::new(tokio::sync::Mutex::new(()));
        let (p, file) = checkpointed("checkpoint", &writer, WAL_FRAMES_MAX).await;
        let path = file.path.clone();
        let before = std::fs::metadata(&path).unwrap().len();
        commit_pages(&p).await;
        let after = file_size_reaching(&path, before + 400_000).await;
        assert!(
            after >= before + 400_000,
            "the file is {after} bytes, {before} before the commit"
        );
    }

    #[tokio::test]
    async fn a_statement_committed_on_its_own_is_checkpointed_too() {
        let writer = Arc::new(tokio::sync::Mutex::new(()));
        let (p, file) = checkpointed("checkpoint-autocommit", &writer, WAL_FRAMES_MAX).await;
        let before = std::fs::metadata(&file.path).unwrap().len();
        raw_sql(PAGES).execute(&p).await.unwrap();
        let after = file_size_reaching(&file.path, before + 400_000).await;
        assert!(
            after >= before + 400_000,
            "the file is {after} bytes, {before} before the insert"
        );
    }

    #[tokio::test]
    async fn past_its_bound_the_log_is_checkpointed_only_under_the_writer_lock() {
        let writer = Arc::new(tokio::sync::Mutex::new(()));
        let (p, file) = checkpointed("checkpoint-bound", &writer, 10).await;
        let path = file.path.clone();
        let held = writer.lock().await;
        let before = std::fs::metadata(&path).unwrap().len();
        commit_pages(&p).await;
        // The PASSIVE checkpoint needs no lock; it finds 100 frames, over the bound of 10.
        let first = file_size_reaching(&path, before + 400_000).await;
        assert!(
            first >= before + 400_000,
            "the file is {first} bytes, {before} before"
        );
        // Now the thread waits for the writer lock, so later commits stay in the log...
        commit_pages(&p).await;
        tokio::time::sleep(5 * CHECKPOINT_EVERY).await;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), first);
        // ...until the lock is free and its RESTART checkpoint runs.
        drop(held);
        let last = file_size_reaching(&path, first + 400_000).await;
        assert!(
            last >= first + 400_000,
            "the file is {last} bytes, {first} before"
        );
    }

    async fn insert(p: &Pool<Sqlite>, x: i64, keep: bool) {
        let mut tx = p.begin_with("BEGIN IMMEDIATE").await.unwrap();
        query("INSERT INTO t VALUES ($1)")
            .bind(x)
            .execute(&mut *tx)
            .await
            .unwrap();
        if keep {
            tx.commit().await.unwrap();
        }
    }

    fn committed(outside: &rusqlite::Connection) -> Vec<i64> {
        let mut s = outside.prepare("SELECT x FROM t ORDER BY x").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    async fn seen(p: &Pool<Sqlite>) -> Vec<i64> {
        query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(p)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_batched_pool_reads_its_transactions_at_once_and_commits_them_per_batch() {
        let (p, outside, _file) = batched(3, "per-batch");
        insert(&p, 1, true).await;
        insert(&p, 2, true).await;
        assert_eq!(seen(&p).await, vec![1, 2]);
        assert_eq!(committed(&outside), Vec::<i64>::new());
        insert(&p, 3, true).await;
        assert_eq!(committed(&outside), vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn a_unit_that_changed_no_row_leaves_the_rest_of_its_batch() {
        let (p, outside, _file) = batched(10, "unchanged");
        insert(&p, 1, true).await;
        // A refusal: it read, and is rolled back (or dropped) without having written.
        let mut tx = p.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let _: i64 = query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        drop(p.begin_with("BEGIN IMMEDIATE").await.unwrap());
        // A statement that fails changes no row either.
        let mut tx = p.begin_with("BEGIN IMMEDIATE").await.unwrap();
        assert!(
            query("INSERT INTO nowhere VALUES (1)")
                .execute(&mut *tx)
                .await
                .is_err()
        );
        drop(tx);
        insert(&p, 2, true).await;
        assert!(!p.batch_lost());
        assert_eq!(seen(&p).await, vec![1, 2]);
        p.flush().await.unwrap();
        assert_eq!(committed(&outside), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_unit_rolled_back_after_writing_loses_its_batch_and_the_pool_refuses_work() {
        let (p, outside, _file) = batched(10, "lost");
        insert(&p, 1, true).await;
        let mut tx = p.begin_with("BEGIN IMMEDIATE").await.unwrap();
        query("INSERT INTO t VALUES (2)")
            .execute(&mut *tx)
            .await
            .unwrap();
        assert!(matches!(tx.rollback().await, Err(Error::BatchLost)));
        assert!(p.batch_lost());
        assert!(matches!(
            p.begin_with("BEGIN IMMEDIATE").await,
            Err(Error::BatchLost)
        ));
        assert!(matches!(
            query_scalar::<i64>("SELECT x FROM t").fetch_all(&p).await,
            Err(Error::BatchLost)
        ));
        assert!(matches!(p.flush().await, Err(Error::BatchLost)));
        drop(p);
        // Neither the released unit nor the failed one reached the file.
        assert_eq!(committed(&outside), Vec::<i64>::new());
    }

    #[tokio::test]
    async fn a_unit_dropped_after_writing_loses_its_batch() {
        let (p, outside, _file) = batched(10, "dropped");
        insert(&p, 1, true).await;
        insert(&p, 2, false).await;
        assert!(p.batch_lost());
        assert!(matches!(p.acquire().await, Err(Error::BatchLost)));
        drop(p);
        assert_eq!(committed(&outside), Vec::<i64>::new());
    }

    #[tokio::test]
    async fn closing_a_batched_pool_commits_what_is_pending() {
        let (p, outside, _file) = batched(10, "close");
        insert(&p, 7, true).await;
        assert_eq!(committed(&outside), Vec::<i64>::new());
        drop(p);
        assert_eq!(committed(&outside), vec![7]);
    }

    #[tokio::test]
    async fn contains_word_matches_whole_words_and_starred_prefixes() {
        let p = pool();
        let cases: [(Option<&str>, &str, i64); 8] = [
            (Some("red bike, 54cm"), "bike", 1),
            (Some("red motorbike"), "bike", 0),
            (Some("comfortable chair"), "table", 0),
            (Some("comfortable tables"), "tab*", 1),
            (Some("comfortable"), "tab*", 0),
            (Some("100% cotton"), "100", 1),
            (Some("ünïcode rider"), "ünïcode", 1),
            (None, "a", 0),
        ];
        for (text, word, want) in cases {
            let got: i64 = query_scalar("SELECT contains_word($1, $2)")
                .bind(text)
                .bind(word)
                .fetch_one(&p)
                .await
                .unwrap();
            assert_eq!(got, want, "{text:?} has {word:?}");
        }
    }

    #[tokio::test]
    async fn rows_decode_by_name_with_typed_errors() {
        let p = pool();
        let mut b = QueryBuilder::<Sqlite>::new("SELECT ");
        b.push_bind(7i64)
            .push(" AS n, ")
            .push_bind(None::<String>)
            .push(" AS s");
        let r = b.build().fetch_one(&p).await.unwrap();
        assert_eq!(r.try_get::<i64, _>("n").unwrap(), 7);
        assert_eq!(r.try_get::<Option<String>, _>("s").unwrap(), None);
        assert!(matches!(
            r.try_get::<String, _>("n"),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            r.try_get::<i64, _>("missing"),
            Err(Error::Decode { .. })
        ));
    }

    #[tokio::test]
    async fn fetch_one_without_rows_is_row_not_found() {
        let p = pool();
        let r = query("SELECT 1 WHERE 0").fetch_one(&p).await;
        assert!(matches!(r, Err(Error::RowNotFound)));
    }
}
