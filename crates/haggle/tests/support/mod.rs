//! What the integration tests share: running the real `haggle` binary (one-shot commands and
//! servers that die with the test), scratch directories, and a small JSON-over-HTTP client.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_haggle");

/// An empty scratch directory under the target directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("haggle-{tag}-{}", haggle_testkit::unique()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// `sqlite://` URL of a database file in this directory.
    pub fn sqlite(&self, name: &str) -> String {
        format!("sqlite://{}", self.path(name).display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary with an environment that cannot leak settings in: no `HAGGLE_*` variables and a
/// working directory of the test's choosing (so no stray `./haggle.toml` is read).
pub fn haggle(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env_remove("HAGGLE_CONFIG")
        .env_remove("HAGGLE_DATABASE_URL")
        .env_remove("HAGGLE_LISTEN")
        .env_remove("HAGGLE_RATE_LIMIT")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    c
}

/// Runs a one-shot command to completion (bounded: it must not hang). The bound catches a hang,
/// not slowness: a debug build on a 2-core machine shared with other builds took over 20 s for
/// an `experiment compare` that takes 2 s alone.
pub fn run(cwd: &Path, args: &[&str]) -> Output {
    run_within(cwd, args, Duration::from_secs(90))
}

/// Runs a one-shot command that must finish within `limit`.
pub fn run_within(cwd: &Path, args: &[&str], limit: Duration) -> Output {
    run_within_env(cwd, args, &[], limit)
}

/// As [`run_within`], with these environment variables set.
pub fn run_within_env(cwd: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut child = haggle(cwd)
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn haggle");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for haggle") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("haggle {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a command that must succeed and returns its stdout.
pub fn run_ok(cwd: &Path, args: &[&str]) -> String {
    let o = run(cwd, args);
    assert!(
        o.status.success(),
        "haggle {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// `haggle token create --role operator`: the secret it prints.
pub fn operator_token(cwd: &Path, database: &str) -> String {
    let out = run_ok(
        cwd,
        &[
            "token",
            "create",
            "--role",
            "operator",
            "--database",
            database,
        ],
    );
    let secret = out.trim().to_string();
    assert!(!secret.is_empty() && !secret.contains(char::is_whitespace));
    secret
}

/// A running `haggle serve`, killed (and reaped) when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `haggle serve --listen 127.0.0.1:0` with `args`: the OS picks a free port and the
    /// server announces it on stderr. Waits (bounded) until `/healthz` answers.
    pub async fn start(cwd: &Path, args: &[&str]) -> Server {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Server::start_raw(cwd, &all).await
    }

    /// Starts the binary with exactly `args` (which must make it serve).
    pub async fn start_raw(cwd: &Path, args: &[&str]) -> Server {
        Server::start_raw_env(cwd, args, &[]).await
    }

    /// As [`Server::start_raw`], with these environment variables set.
    pub async fn start_raw_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = haggle(cwd)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn haggle serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find(" on http://") {
                    let addr = line[at + " on ".len()..].split_whitespace().next();
                    let _ = tx.send(addr.unwrap_or_default().to_string());
                }
                l.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                l.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        server.base = loop {
            if let Ok(addr) = rx.try_recv() {
                break addr;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "haggle {args:?} exited ({status}) before serving:\n{}",
                    server.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "haggle {args:?} did not announce its address within 10 s:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let client = haggle_tls::client();
        loop {
            let up = client
                .get(format!("{}/healthz", server.base))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer /healthz within 10 s:\n{}",
                server.base,
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    /// Everything the server wrote so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON HTTP client that sends an `Idempotency-Key` with every mutation, as agents do.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Default for Http {
    fn default() -> Http {
        Http {
            client: {
                haggle_tls::client_builder()
                    .timeout(Duration::from_secs(20))
                    .build()
                    .expect("HTTP client")
            },
        }
    }
}

impl Http {
    pub async fn get(&self, url: &str, token: &str) -> (u16, Value) {
        let r = self.client.get(url).bearer_auth(token).send().await;
        Self::read(url, r).await
    }

    pub async fn post(&self, url: &str, token: &str, body: Value) -> (u16, Value) {
        let key = format!("test-{}", haggle_testkit::unique());
        let r = self
            .client
            .post(url)
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await;
        Self::read(url, r).await
    }

    async fn read(url: &str, r: reqwest::Result<reqwest::Response>) -> (u16, Value) {
        let r = r.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, json)
    }

    /// A request that must answer `want`; returns the body.
    pub async fn expect(
        &self,
        want: u16,
        method: &str,
        url: &str,
        token: &str,
        body: Value,
    ) -> Value {
        let (status, v) = match method {
            "GET" => self.get(url, token).await,
            _ => self.post(url, token, body).await,
        };
        assert_eq!(status, want, "{method} {url}: {v}");
        v
    }
}

pub fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

/// A participant as the operator registers it: its id and agent token.
pub struct Party {
    pub id: i64,
    pub token: String,
    pub budget: i64,
}

pub async fn register(
    http: &Http,
    base: &str,
    op: &str,
    market: i64,
    name: &str,
    budget: i64,
) -> Party {
    let v = http
        .expect(
            201,
            "POST",
            &format!("{base}/v1/markets/{market}/participants"),
            op,
            json!({"name": name, "budget": budget}),
        )
        .await;
    Party {
        id: id(&v["participant"]),
        token: v["agent_token"].as_str().expect("agent_token").to_string(),
        budget,
    }
}

pub async fn create_market(http: &Http, base: &str, op: &str, name: &str) -> i64 {
    id(&http
        .expect(
            201,
            "POST",
            &format!("{base}/v1/markets"),
            op,
            json!({"name": name}),
        )
        .await)
}

/// A fake OpenAI-compatible server (a real HTTP server on a random port) that answers the first
/// call of every agent turn with a `my_balance` tool call (then a `post_listing` that is refused
/// for a missing field), and later calls with words. Returns its base URL and the task serving
/// it (abort it to shut the server down).
pub async fn fake_openai() -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|axum::Json(body): axum::Json<Value>| async move {
            let turns = body["messages"].as_array().map_or(0, Vec::len);
            // A request without tools is the end-of-session call of a repeated market: the
            // reply is the agent's note.
            let note = body.get("tools").is_none();
            let message = if note {
                json!({"role": "assistant", "content": "Notes: the rule sellers settle near the middle."})
            } else if turns == 2 {
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "my_balance", "arguments": "{}"}},
                    {"id": "b", "type": "function", "function": {"name": "post_listing", "arguments": "{\"title\": \"x\"}"}},
                ]})
            } else {
                json!({"role": "assistant", "content": "Nothing more this turn."})
            };
            axum::Json(json!({
                "choices": [{"index": 0, "message": message,
                             "finish_reason": if turns == 2 && !note { "tool_calls" } else { "stop" }}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 20},
            }))
        }),
    );
    let (base, server) = haggle_testkit::serve_router(app).await;
    (format!("{base}/v1"), server)
}

// ---- PostgreSQL: the tests that need it say NOT RUN without HAGGLE_TEST_POSTGRES_URL ----

/// The PostgreSQL URL to test against; `None` (after saying so loudly) when there is none.
pub fn postgres_url() -> Option<String> {
    haggle_testkit::postgres_url("POSTGRES TEST")
}

/// A fresh database per test (`ScratchDatabase::create(&base, tag)`), dropped with the value.
#[allow(unused_imports)] // not every test binary uses PostgreSQL
pub use haggle_testkit::{TempDatabase as ScratchDatabase, with_database};
