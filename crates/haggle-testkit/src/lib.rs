//! What Haggle's tests share (a dev-dependency only): one scheme for temporary names, temporary
//! SQLite files and PostgreSQL databases removed when the test ends, the loud NOT RUN guard for
//! tests whose prerequisite is missing, loopback listeners on port 0 for real servers and fakes
//! of outside services, and the localstripe payment tests run against.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the PostgreSQL server the tests may use (an admin URL: tests
/// create their databases beside the one it names).
pub const PG_ENV: &str = "HAGGLE_TEST_POSTGRES_URL";

/// Where a test's manual clock starts (ms since the epoch), for tests that do not care when.
pub const START_MS: i64 = 1_700_000_000_000;

/// A name unique across tests, processes and runs: the process id, a per-call random number (so a
/// leftover of an earlier run with the same pid never collides) and a per-process counter.
/// Letters, digits and `_` only, so it fits file names and unquoted PostgreSQL identifiers.
pub fn unique() -> String {
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicU64 = AtomicU64::new(0);
    // Randomly seeded per call: unique across runs without reading the clock.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % 1_000_000_000_000;
    format!(
        "{}_{random}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh path in the system's temporary folder: `haggle-{tag}-{unique}` (nothing is created).
pub fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("haggle-{tag}-{}", unique()))
}

/// A fresh, created directory in the system's temporary folder (the caller removes it if it must).
pub fn temp_dir(tag: &str) -> PathBuf {
    let p = temp_path(tag);
    std::fs::create_dir_all(&p).expect("create a temporary directory");
    p
}

/// Removes an SQLite file and its companions (`-wal`, `-shm`, `-journal`); missing ones are fine.
pub fn remove_sqlite(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// A temporary SQLite file, removed with its companions when dropped.
#[derive(Debug)]
pub struct TempSqlite {
    pub path: PathBuf,
}

impl TempSqlite {
    pub fn new(tag: &str) -> TempSqlite {
        let mut path = temp_path(tag).into_os_string();
        path.push(".sqlite");
        TempSqlite { path: path.into() }
    }

    /// The store URL of this file (`sqlite://...`).
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        remove_sqlite(&self.path);
    }
}

/// Says loudly, once per process and `what`, that a test did not run and why, straight to the
/// process's stderr (the harness captures `eprintln!`). Under `CI` it fails instead: CI sets
/// every prerequisite, so a missing one there is a broken CI, not a skipped test.
pub fn not_run(what: &str, why: &str) {
    not_run_unless_required(what, why, "CI");
}

/// [`not_run`], failing when the environment variable `required` is set (not empty, `0` or
/// `false`) instead of `CI`: for a test CI runs only when asked to.
pub fn not_run_unless_required(what: &str, why: &str, required: &str) {
    static SAID: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = SAID
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(what.to_string());
    if first {
        let _ = writeln!(std::io::stderr(), "\n!!! {what} NOT RUN: {why} !!!\n");
    }
    let set = std::env::var(required).is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!set, "{required} is set but {what} did not run: {why}");
}

/// The PostgreSQL URL of `HAGGLE_TEST_POSTGRES_URL`, or `None` after [`not_run`] for `what`.
pub fn postgres_url(what: &str) -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            not_run(
                what,
                &format!("set {PG_ENV} (e.g. postgres:///haggle_test?host=/var/run/postgresql)"),
            );
            None
        }
    }
}

/// `url` with its database name replaced by `db` (user, host, port and query parameters kept,
/// e.g. `postgres:///haggle_test?host=/var/run/postgresql`).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Runs one statement on the admin database (`CREATE`/`DROP DATABASE` cannot run in a
/// transaction, so one statement per call). A concurrent `CREATE DATABASE` can trip over the
/// template being copied: retried.
pub async fn admin_sql(admin_url: &str, statement: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to {PG_ENV}={admin_url}: {e}"));
    for attempt in 0.. {
        match sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut c)
            .await
        {
            Ok(_) => break,
            Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("{statement}: {e}"),
        }
    }
    let _ = c.close().await;
}

/// A fresh PostgreSQL database beside the admin URL's, for one test. Drop it with
/// [`TempDatabase::drop_now`] at the end of the test; if the test panics first, `Drop` removes it
/// on a thread of its own (with anything still connected).
#[derive(Debug)]
pub struct TempDatabase {
    admin_url: String,
    pub name: String,
    /// The URL of the new database.
    pub url: String,
    dropped: bool,
}

impl TempDatabase {
    /// Creates `{tag}_{unique}` (`tag`: letters, digits and `_`).
    pub async fn create(admin_url: &str, tag: &str) -> TempDatabase {
        let name = format!("{tag}_{}", unique());
        admin_sql(admin_url, &format!("CREATE DATABASE \"{name}\"")).await;
        TempDatabase {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
            dropped: false,
        }
    }

    /// Drops the database now (FORCE ends pooled connections that may still be closing).
    pub async fn drop_now(mut self) {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await;
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    use sqlx::Connection;
    let dropped = async {
        let mut c = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut c)
        .await?;
        c.close().await
    }
    .await;
    if let Err(e) = dropped {
        let _ = writeln!(
            std::io::stderr(),
            "could not drop test database {name}: {e}"
        );
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Dropped inside the test's runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(drop_database(&admin, &name));
        })
        .join();
    }
}

/// A listener on a free loopback port (port 0) and its base URL `http://127.0.0.1:PORT`.
pub async fn loopback() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    (listener, base)
}

/// A loopback port free at the time of the call, for a server in another process that must be
/// told its port up front (the OS may hand it out again: bind at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A base URL `http://127.0.0.1:PORT` on a loopback port nothing listens on (a server that went
/// away).
pub fn dead_base() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Serves `app` (a fake of an outside service: an LLM provider, a webhook receiver) on a fresh
/// loopback port; returns its base URL `http://127.0.0.1:PORT` and the task, which runs until
/// the runtime ends or the caller aborts it.
pub async fn serve_router(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let (listener, base) = loopback().await;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, task)
}

/// The environment variable naming a running localstripe (a Stripe-compatible server).
pub const LOCALSTRIPE_ENV: &str = "HAGGLE_TEST_LOCALSTRIPE_URL";

/// The localstripe to test payments against: [`LOCALSTRIPE_ENV`]'s, or one started once for this
/// test process (from the `localstripe` command, ended within a second of the process), or
/// `None` after [`not_run`] for `what`.
pub fn localstripe(what: &str) -> Option<String> {
    static URL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let url = URL.get_or_init(|| {
        if let Some(u) = std::env::var(LOCALSTRIPE_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            return Some(u.trim_end_matches('/').to_string());
        }
        start_localstripe()
    });
    if url.is_none() {
        not_run(
            what,
            &format!("set {LOCALSTRIPE_ENV} or install localstripe (pip install localstripe)"),
        );
    }
    url.clone()
}

/// Starts `localstripe` on a free port, watched so it ends with this process, and waits up to
/// ten seconds for it to answer.
fn start_localstripe() -> Option<String> {
    let port = free_port();
    let watched = format!(
        "localstripe --port {port} --from-scratch & ls=$!; \
         while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $ls",
        pid = std::process::id()
    );
    std::process::Command::new("sh")
        .args(["-c", &watched])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(format!("http://127.0.0.1:{port}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    None
}

/// Ends a server when dropped (or on [`Shutdown::now`]): pair it with the future
/// [`shutdown_signal`] returns, given to the server as its graceful-shutdown signal.
#[derive(Debug)]
pub struct Shutdown(Option<tokio::sync::oneshot::Sender<()>>);

impl Shutdown {
    pub fn now(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        self.now();
    }
}

/// A [`Shutdown`] and the future that resolves when it fires (or is dropped).
pub fn shutdown_signal() -> (Shutdown, impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (Shutdown(Some(tx)), async move {
        let _ = rx.await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_keeps_host_and_query() {
        assert_eq!(
            with_database("postgres:///haggle_test?host=/var/run/postgresql", "x_1"),
            "postgres:///x_1?host=/var/run/postgresql"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5432/db", "x"),
            "postgres://u:p@h:5432/x"
        );
    }

    #[test]
    fn unique_names_differ_and_fit_identifiers() {
        let (a, b) = (unique(), unique());
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }

    #[test]
    fn temp_sqlite_removes_its_files() {
        let t = TempSqlite::new("testkit");
        std::fs::write(&t.path, b"x").unwrap();
        let path = t.path.clone();
        drop(t);
        assert!(!path.exists());
    }
}
