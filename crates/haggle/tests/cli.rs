//! The `haggle` command as a user meets it: what each subcommand prints, that its tokens and
//! databases work with the server, that `ledger verify` catches tampering, and that bad input
//! gets one clear `error:` line and a non-zero exit, never a panic or a backtrace.

mod support;

use serde_json::{Value, json};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// The command failed the way a user should see it fail: exit code 1 and exactly one line on
/// stderr, `error: ...` containing `needle`.
fn assert_one_line_error(o: &Output, needle: &str) -> String {
    let err = text(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit status {}; stderr: {err}",
        o.status
    );
    assert_eq!(err.lines().count(), 1, "not one line:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked") && !err.to_lowercase().contains("backtrace"));
    err.trim_end().to_string()
}

#[test]
fn token_create_prints_only_the_secret() {
    let dir = Scratch::new("cli-token");
    let db = dir.sqlite("h.db");
    let o = run(
        &dir.0,
        &["token", "create", "--role", "operator", "--database", &db],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(out.ends_with('\n'), "{out:?}");
    let secret = out.trim_end();
    assert!(secret.len() >= 32, "{secret:?}");
    assert!(secret.chars().all(|c| c.is_ascii_graphic()), "{secret:?}");
    // A fresh secret each time.
    assert_ne!(operator_token(&dir.0, &db), secret);

    // Market-scoped roles need a market (and agents a participant) that exists.
    let o = run(
        &dir.0,
        &["token", "create", "--role", "observer", "--database", &db],
    );
    assert_one_line_error(&o, "--market is required");
    let o = run(
        &dir.0,
        &[
            "token",
            "create",
            "--role",
            "observer",
            "--market",
            "7",
            "--database",
            &db,
        ],
    );
    assert_one_line_error(&o, "market 7 not found");
    let m = run_ok(
        &dir.0,
        &["market", "create", "--name", "m", "--database", &db],
    );
    let m = id(&serde_json::from_str(&m).unwrap()).to_string();
    let observer = run_ok(
        &dir.0,
        &[
            "token",
            "create",
            "--role",
            "observer",
            "--market",
            &m,
            "--database",
            &db,
        ],
    );
    assert_eq!(observer.lines().count(), 1);
    let o = run(
        &dir.0,
        &[
            "token",
            "create",
            "--role",
            "agent",
            "--market",
            &m,
            "--database",
            &db,
        ],
    );
    assert_one_line_error(&o, "--participant is required");
    let o = run(
        &dir.0,
        &[
            "token",
            "create",
            "--role",
            "agent",
            "--market",
            &m,
            "--participant",
            "42",
            "--database",
            &db,
        ],
    );
    assert_one_line_error(&o, "participant 42 not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_cli_work_against_the_server() {
    let dir = Scratch::new("cli-token-serve");
    let db = dir.sqlite("h.db");
    let op = operator_token(&dir.0, &db);
    let m = run_ok(
        &dir.0,
        &["market", "create", "--name", "m", "--database", &db],
    );
    let m = id(&serde_json::from_str(&m).unwrap());
    let observer = run_ok(
        &dir.0,
        &[
            "token",
            "create",
            "--role",
            "observer",
            "--market",
            &m.to_string(),
            "--database",
            &db,
        ],
    );
    let server = Server::start(&dir.0, &["--database", &db]).await;
    let http = Http::default();
    let me = http
        .expect(200, "GET", &server.url("/v1/me"), &op, Value::Null)
        .await;
    assert_eq!(me["role"], json!("operator"), "{me}");
    let me = http
        .expect(
            200,
            "GET",
            &server.url("/v1/me"),
            observer.trim(),
            Value::Null,
        )
        .await;
    assert_eq!(
        me,
        json!({"role": "observer", "market_id": m, "participant_id": null})
    );
    let (status, body) = http.get(&server.url("/v1/me"), "hgl_not_a_token").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized")),
        "{body}"
    );
    // A participant made over HTTP can be given a further agent token from the CLI.
    let p = register(&http, &server.base, &op, m, "alice", 100).await;
    let agent = run_ok(
        &dir.0,
        &[
            "token",
            "create",
            "--role",
            "agent",
            "--market",
            &m.to_string(),
            "--participant",
            &p.id.to_string(),
            "--database",
            &db,
        ],
    );
    let me = http
        .expect(200, "GET", &server.url("/v1/me"), agent.trim(), Value::Null)
        .await;
    assert_eq!(
        me,
        json!({"role": "agent", "market_id": m, "participant_id": p.id})
    );
}

#[test]
fn market_create_sets_a_closing_time_from_now_or_at_a_utc_time() {
    let dir = Scratch::new("cli-closing");
    let db = dir.sqlite("h.db");
    let create = |extra: &[&str]| {
        let mut args = vec!["market", "create", "--name", "Closing", "--database", &db];
        args.extend_from_slice(extra);
        serde_json::from_str::<Value>(&run_ok(&dir.0, &args)).unwrap()
    };
    let week = create(&["--closes-in", "7d"]);
    let closes = week["rules"]["closes_at"].as_i64().expect("a closing time");
    let created = week["created_at"].as_i64().unwrap();
    // Read from the real clock a moment apart: the close is seven days after creation.
    let week_ms = 7 * 86_400_000;
    assert!((closes - created - week_ms).abs() < 60_000, "{week}");
    let at = create(&["--closes-at", "2999-01-12 09:00", "--clock", "simulated"]);
    assert_eq!(
        at["rules"]["closes_at"],
        json!(32_473_126_800_000_i64),
        "{at}"
    );
    assert_eq!(create(&[])["rules"]["closes_at"], Value::Null);
    let o = run(
        &dir.0,
        &[
            "market",
            "create",
            "--name",
            "X",
            "--closes-in",
            "soon",
            "--database",
            &db,
        ],
    );
    assert_one_line_error(&o, "--closes-in");
    let o = run(
        &dir.0,
        &[
            "market",
            "create",
            "--name",
            "X",
            "--closes-at",
            "2001-01-01 00:00",
            "--database",
            &db,
        ],
    );
    assert_one_line_error(&o, "rules.closes_at");
}

#[test]
fn market_create_prints_the_market_as_json() {
    let dir = Scratch::new("cli-market");
    let db = dir.sqlite("h.db");
    let out = run_ok(
        &dir.0,
        &[
            "market",
            "create",
            "--name",
            "Lab A",
            "--clock",
            "simulated",
            "--database",
            &db,
        ],
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    let m: Value = serde_json::from_str(&out).expect("market create prints JSON");
    assert_eq!(m["name"], json!("Lab A"));
    assert_eq!(m["clock_mode"], json!("simulated"));
    assert_eq!(m["currency"], json!("USD"));
    assert!(m["rules"].is_object(), "{m}");
    let second: Value = serde_json::from_str(&run_ok(
        &dir.0,
        &["market", "create", "--name", "Lab B", "--database", &db],
    ))
    .unwrap();
    assert_eq!(second["clock_mode"], json!("real"));
    assert_ne!(second["id"], m["id"]);
    let list: Value =
        serde_json::from_str(&run_ok(&dir.0, &["market", "list", "--database", &db])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Lab A", "Lab B"]);

    // Rules from a file; bad rules are refused before anything is created.
    std::fs::write(dir.path("rules.toml"), "max_offers_per_thread = 3\n").unwrap();
    let rules = dir.path("rules.toml").display().to_string();
    let out = run_ok(
        &dir.0,
        &[
            "market",
            "create",
            "--name",
            "C",
            "--rules",
            &rules,
            "--database",
            &db,
        ],
    );
    let c: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["rules"]["max_offers_per_thread"], json!(3), "{c}");
    std::fs::write(dir.path("bad.toml"), "max_offers = 3\n").unwrap();
    let bad = dir.path("bad.toml").display().to_string();
    let o = run(
        &dir.0,
        &[
            "market",
            "create",
            "--name",
            "D",
            "--rules",
            &bad,
            "--database",
            &db,
        ],
    );
    assert_one_line_error(&o, "line 1, column 1: unknown field `max_offers`");
    let o = run(
        &dir.0,
        &[
            "market",
            "create",
            "--name",
            "D",
            "--clock",
            "weird",
            "--database",
            &db,
        ],
    );
    assert_one_line_error(&o, "--clock must be real or simulated, got 'weird'");
    let list: Value =
        serde_json::from_str(&run_ok(&dir.0, &["market", "list", "--database", &db])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_verify_passes_then_catches_a_tampered_transfer() {
    let dir = Scratch::new("cli-ledger");
    let db = dir.sqlite("h.db");
    let op = operator_token(&dir.0, &db);
    let m = id(&serde_json::from_str(&run_ok(
        &dir.0,
        &["market", "create", "--name", "m", "--database", &db],
    ))
    .unwrap());
    let fresh = run_ok(&dir.0, &["ledger", "verify", "--database", &db]);
    assert_eq!(
        fresh.trim(),
        format!("market {m}: 0 transfers, 1 events, ok")
    );

    // Money moves: two funded participants.
    let server = Server::start(&dir.0, &["--database", &db]).await;
    let http = Http::default();
    register(&http, &server.base, &op, m, "alice", 5_000).await;
    register(&http, &server.base, &op, m, "bob", 3_000).await;
    let other = create_market(&http, &server.base, &op, "untouched").await;
    register(&http, &server.base, &op, other, "carol", 1_000).await;
    let ok = run_ok(&dir.0, &["ledger", "verify", "--database", &db]);
    assert_eq!(ok.lines().count(), 2, "{ok}");
    assert!(ok.lines().all(|l| l.ends_with(", ok")), "{ok}");
    assert!(ok.starts_with(&format!("market {m}: 2 transfers")), "{ok}");

    // The database refuses to edit a transfer ...
    let file = rusqlite::Connection::open(db.trim_start_matches("sqlite://")).unwrap();
    let refused = file.execute(
        "UPDATE transfers SET amount = amount + 1 WHERE market_id = ?1",
        [m],
    );
    assert!(refused.is_err(), "transfers must be append-only");
    // ... so someone with file access drops the guard and edits one.
    file.execute_batch("DROP TRIGGER transfers_no_update")
        .unwrap();
    let edited = file
        .execute(
            "UPDATE transfers SET amount = amount + 100 WHERE market_id = ?1 AND id = (SELECT MIN(id) FROM transfers WHERE market_id = ?1)",
            [m],
        )
        .unwrap();
    assert_eq!(edited, 1);
    drop(file);

    for args in [
        vec!["ledger", "verify", "--database", &db],
        vec![
            "ledger",
            "verify",
            "--market",
            &m.to_string(),
            "--database",
            &db,
        ],
    ]
    .iter()
    {
        let o = run(&dir.0, args);
        let out = text(&o.stdout);
        assert!(
            out.contains(&format!("market {m}: 2 transfers, ")) && out.contains("BREACHES"),
            "{out}"
        );
        assert!(out.contains("  breach: transfers_match_events"), "{out}");
        assert_one_line_error(&o, "ledger verification found");
    }
    // The untouched market still verifies on its own.
    let out = run_ok(
        &dir.0,
        &[
            "ledger",
            "verify",
            "--market",
            &other.to_string(),
            "--database",
            &db,
        ],
    );
    assert!(out.trim_end().ends_with(", ok"), "{out}");
    // The running server sees the breach too.
    let v = http
        .expect(
            200,
            "GET",
            &server.url(&format!("/v1/markets/{m}/ledger/verify")),
            &op,
            Value::Null,
        )
        .await;
    assert!(!v["breaches"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn bad_input_gets_one_clear_error_line() {
    let dir = Scratch::new("cli-errors");
    let db = dir.sqlite("empty.db");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["ledger", "verify", "--database", "mysql://x"],
            "unsupported database URL 'mysql://x'",
        ),
        (
            vec!["token", "create", "--role", "wizard", "--database", &db],
            "--role must be operator, observer, agent or principal, got 'wizard'",
        ),
        // A market that is not there is an error, not an empty success.
        (
            vec!["ledger", "verify", "--market", "999", "--database", &db],
            "market 999 not found",
        ),
        (
            vec![
                "market",
                "list",
                "--database",
                "sqlite:///nonexistent-dir/for/haggle.db",
            ],
            "unable to open database file",
        ),
        // Refused at once with the cause, not after a pool timeout.
        (
            vec![
                "market",
                "list",
                "--database",
                "postgres://nobody@127.0.0.1:1/haggle",
            ],
            "Connection refused",
        ),
        (
            vec!["--config", "missing.toml", "market", "list"],
            "cannot read config file missing.toml",
        ),
    ];
    for (args, needle) in cases {
        let started = Instant::now();
        let o = run(&dir.0, &args);
        let line = assert_one_line_error(&o, needle);
        // The cause is said once, not echoed by every layer that wraps it.
        assert!(line.matches(needle).count() == 1, "{line}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} was slow"
        );
        assert!(o.stdout.is_empty(), "{args:?}: {}", text(&o.stdout));
    }
    // Nothing was written to the empty database by the refusals.
    let list = run_ok(&dir.0, &["market", "list", "--database", &db]);
    assert_eq!(list.trim(), "[]");

    // Usage errors are clap's: `error:` first, exit status 2, no panic.
    let o = run(&dir.0, &["token", "create", "--database", &db]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("--role"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let o = run(&dir.0, &["ledger", "verify", "--market", "abc"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).starts_with("error: "));
}

#[test]
fn serve_on_an_unusable_address_fails_with_one_line() {
    let dir = Scratch::new("cli-serve");
    let db = dir.sqlite("h.db");
    for (listen, needle) in [
        ("nonsense", "cannot listen on nonsense"),
        ("127.0.0.1:99999", "cannot listen on 127.0.0.1:99999"),
        ("192.0.2.1:8080", "cannot listen on 192.0.2.1:8080"),
    ] {
        let o = run(&dir.0, &["serve", "--listen", listen, "--database", &db]);
        assert_one_line_error(&o, needle);
    }
    // An unusable database stops it before it listens.
    let o = run(
        &dir.0,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            "mysql://x",
        ],
    );
    assert_one_line_error(&o, "unsupported database URL");
}

#[test]
fn serve_refuses_a_port_in_use() {
    let dir = Scratch::new("cli-serve-busy");
    let db = dir.sqlite("h.db");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let o = run(&dir.0, &["serve", "--listen", &addr, "--database", &db]);
    let line = assert_one_line_error(&o, &format!("cannot listen on {addr}"));
    assert!(line.contains("in use"), "{line}");
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_is_honoured() {
    let dir = Scratch::new("cli-config");
    let db = dir.sqlite("from-config.db");
    let cfg = dir.path("haggle-test.toml");
    std::fs::write(
        &cfg,
        format!("database = \"{db}\"\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let cfg = cfg.display().to_string();

    // `--config FILE`: the market lands in the configured database ...
    let m: Value = serde_json::from_str(&run_ok(
        &dir.0,
        &["--config", &cfg, "market", "create", "--name", "via config"],
    ))
    .unwrap();
    assert!(dir.path("from-config.db").exists());
    assert!(
        !dir.path("haggle.db").exists(),
        "the default database was used"
    );
    let list = run_ok(&dir.0, &["market", "list", "--database", &db]);
    assert!(list.contains("via config"), "{list}");
    // ... the flag still wins over the file ...
    let other = dir.sqlite("flag.db");
    run_ok(
        &dir.0,
        &[
            "--config",
            &cfg,
            "market",
            "create",
            "--name",
            "via flag",
            "--database",
            &other,
        ],
    );
    let list = run_ok(&dir.0, &["--config", &cfg, "market", "list"]);
    assert!(!list.contains("via flag"), "{list}");
    // ... and `serve` takes both its database and its address from the file.
    let op = operator_token(&dir.0, &db);
    let server = Server::start_raw(&dir.0, &["--config", &cfg, "serve"]).await;
    let markets = Http::default()
        .expect(200, "GET", &server.url("/v1/markets"), &op, Value::Null)
        .await;
    assert_eq!(markets["items"][0]["id"], m["id"], "{markets}");
    drop(server);

    // `./haggle.toml` is read when present.
    std::fs::write(dir.path("haggle.toml"), format!("database = \"{db}\"\n")).unwrap();
    let list = run_ok(&dir.0, &["market", "list"]);
    assert!(list.contains("via config"), "{list}");

    // A broken config file is one clear line naming the file and the mistake.
    std::fs::write(dir.path("haggle.toml"), "databse = \"x\"\n").unwrap();
    let o = run(&dir.0, &["market", "list"]);
    assert_one_line_error(
        &o,
        "invalid config file haggle.toml: line 1, column 1: unknown field `databse`",
    );
    std::fs::write(dir.path("haggle.toml"), "database = \n").unwrap();
    let o = run(&dir.0, &["market", "list"]);
    assert_one_line_error(&o, "invalid config file haggle.toml: line 1");
}

/// `haggle serve` refuses a webhook to a loopback receiver unless started with
/// `--allow-private-webhooks`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_private_webhooks_unless_allowed() {
    let dir = Scratch::new("private-webhooks");
    let db = dir.sqlite("h.db");
    let op = operator_token(&dir.0, &db);
    let http = Http::default();
    let hook = json!({"url": "http://127.0.0.1:9/hook"});
    let strict = Server::start(&dir.0, &["--database", &db]).await;
    let market = create_market(&http, &strict.base, &op, "hooks").await;
    let url = strict.url(&format!("/v1/markets/{market}/webhooks"));
    let (status, body) = http.post(&url, &op, hook.clone()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    drop(strict);
    let allowing = Server::start(&dir.0, &["--database", &db, "--allow-private-webhooks"]).await;
    let url = allowing.url(&format!("/v1/markets/{market}/webhooks"));
    let (status, body) = http.post(&url, &op, hook).await;
    assert_eq!(status, 201, "{body}");
}

/// The first refusal of `token` at `url` once a command wrote straight into the database: a
/// running server honours it within its token recheck (1 s; ARCHITECTURE, Scaling out), never
/// later than 2 s here. Returns the last answer if it never came.
async fn refused_soon(http: &Http, url: &str, token: &str) -> (u16, Value) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let (status, body) = http.get(url, token).await;
        if status != 200 || std::time::Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `haggle token revoke` by secret: the token stops working on a running server within a
/// second (its cached check expires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_revoke_by_secret_or_id() {
    let dir = Scratch::new("token-revoke");
    let db = dir.sqlite("h.db");
    let op = operator_token(&dir.0, &db);
    let other = operator_token(&dir.0, &db);
    let server = Server::start(&dir.0, &["--database", &db]).await;
    let http = Http::default();
    assert_eq!(http.get(&server.url("/v1/me"), &op).await.0, 200);
    let out = run_ok(
        &dir.0,
        &["token", "revoke", "--secret", &op, "--database", &db],
    );
    let info: Value = serde_json::from_str(&out).expect("the revoked token as JSON");
    assert_eq!(info["role"], "operator");
    assert!(info["revoked_at"].is_i64(), "{info}");
    assert!(!out.contains(&op), "the secret is not printed");
    assert_eq!(refused_soon(&http, &server.url("/v1/me"), &op).await.0, 401);
    let id = info["token_id"].as_str().unwrap().to_string();
    let o = run(
        &dir.0,
        &[
            "token",
            "revoke",
            "--id",
            &"0".repeat(64),
            "--database",
            &db,
        ],
    );
    assert!(!o.status.success());
    assert_one_line_error(&o, "no token with id");
    assert_eq!(http.get(&server.url("/v1/me"), &other).await.0, 200);
    let again = run_ok(&dir.0, &["token", "revoke", "--id", &id, "--database", &db]);
    assert_eq!(again, out, "revoking again shows the first revocation");
}

/// Issue 25: `haggle prices` prints the table in use with its date; a file with its own date
/// goes over the built-in prices.
#[test]
fn prices_prints_the_table_in_use_with_its_date() {
    let dir = Scratch::new("cli-prices");
    let built_in = run_ok(&dir.0, &["prices"]);
    assert!(
        built_in.starts_with("price table: built-in list prices as of 20"),
        "{built_in}"
    );
    let mini = built_in
        .lines()
        .find(|l| l.starts_with("gpt-4o-mini "))
        .expect("gpt-4o-mini is listed");
    assert!(
        mini.contains("0.150") && mini.contains("0.600") && mini.contains("0.075"),
        "{mini}"
    );
    std::fs::write(
        dir.path("prices.toml"),
        "as_of = \"2026-12-01\"\n[models.\"gpt-4o-mini\"]\ninput = 100000\noutput = 400000\n",
    )
    .unwrap();
    let file = dir.path("prices.toml").display().to_string();
    let over = run_ok(&dir.0, &["prices", "--prices", &file]);
    let first = over.lines().next().unwrap();
    assert!(first.contains("prices.toml (as of 2026-12-01)"), "{first}");
    let mini = over
        .lines()
        .find(|l| l.starts_with("gpt-4o-mini "))
        .unwrap();
    assert!(mini.contains("0.100") && mini.contains("0.400"), "{mini}");
}

#[tokio::test]
async fn policy_moderation_and_suspension_from_the_cli() {
    let dir = Scratch::new("cli-policy");
    let db = dir.sqlite("h.db");
    let op = operator_token(&dir.0, &db);
    let m = run_ok(
        &dir.0,
        &["market", "create", "--name", "m", "--database", &db],
    );
    let m = id(&serde_json::from_str(&m).unwrap()).to_string();
    let policy = r#"{"prohibited_terms": ["vintage"], "actions": {"prohibited_terms": "hold"}}"#;
    let set = run_ok(
        &dir.0,
        &[
            "policy",
            "set",
            "--market",
            &m,
            "--json",
            policy,
            "--database",
            &db,
        ],
    );
    let shown = run_ok(
        &dir.0,
        &["policy", "show", "--market", &m, "--database", &db],
    );
    assert_eq!(set, shown);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["prohibited_terms"], json!(["vintage"]));
    let o = run(
        &dir.0,
        &[
            "policy",
            "set",
            "--market",
            &m,
            "--json",
            r#"{"max_offers_per_hour": 0}"#,
            "--database",
            &db,
        ],
    );
    assert_one_line_error(&o, "invalid_request");

    let server = Server::start(&dir.0, &["--database", &db]).await;
    let http = Http::default();
    let p = register(&http, &server.base, &op, m.parse().unwrap(), "alice", 100).await;
    let listing = http
        .expect(
            201,
            "POST",
            &server.url(&format!("/v1/markets/{m}/listings")),
            &p.token,
            json!({"side": "sell", "title": "Vintage lamp", "category": "home", "price": 500}),
        )
        .await;
    assert_eq!(listing["status"], json!("held"));
    let queue: Value = serde_json::from_str(&run_ok(
        &dir.0,
        &["moderation", "list", "--market", &m, "--database", &db],
    ))
    .unwrap();
    assert_eq!(queue["items"][0]["listing"]["id"], listing["id"]);
    let l = id(&listing).to_string();
    let approved: Value = serde_json::from_str(&run_ok(
        &dir.0,
        &[
            "moderation",
            "approve",
            "--market",
            &m,
            "--listing",
            &l,
            "--database",
            &db,
        ],
    ))
    .unwrap();
    assert_eq!(approved["status"], json!("active"));

    let who = p.id.to_string();
    run_ok(
        &dir.0,
        &[
            "participant",
            "suspend",
            "--market",
            &m,
            "--participant",
            &who,
            "--reason",
            "fraud",
            "--database",
            &db,
        ],
    );
    let (status, body) = refused_soon(&http, &server.url("/v1/me"), &p.token).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("participant_suspended")),
        "{body}"
    );
    run_ok(
        &dir.0,
        &[
            "participant",
            "reinstate",
            "--market",
            &m,
            "--participant",
            &who,
            "--database",
            &db,
        ],
    );
    http.expect(200, "GET", &server.url("/v1/me"), &p.token, Value::Null)
        .await;
    let o = run(
        &dir.0,
        &[
            "moderation",
            "remove",
            "--market",
            &m,
            "--listing",
            "999",
            "--reason",
            "x",
            "--database",
            &db,
        ],
    );
    assert_one_line_error(&o, "not_found");
}

#[test]
fn a_refused_command_leaves_no_stray_database() {
    let dir = Scratch::new("cli-stray");
    for args in [
        &["token", "create", "--role", "agent"][..],
        &["market", "create", "--name", "x", "--closes-in", "soon"],
        &["settlement", "--market", "1", "--format", "xml"],
        &[
            "dispute", "resolve", "--market", "1", "--deal", "1", "--ruling", "release",
        ],
        &["ledger", "verify", "--market", "1"],
    ] {
        let o = run(&dir.0, args);
        assert!(!o.status.success(), "{args:?} is refused");
        assert!(
            !dir.path("haggle.db").exists(),
            "{args:?} left a haggle.db behind: {}",
            text(&o.stderr)
        );
    }
    // A database that existed before a refusal stays.
    run_ok(&dir.0, &["market", "create", "--name", "kept"]);
    let o = run(&dir.0, &["token", "create", "--role", "agent"]);
    assert!(!o.status.success());
    assert!(dir.path("haggle.db").exists());
}

#[test]
fn a_missing_agent_token_names_its_environment_variable() {
    let dir = Scratch::new("cli-token");
    std::fs::write(dir.path("p.toml"), "name = \"Ana\"\nbudget = 100\n").unwrap();
    let profile = dir.path("p.toml").display().to_string();
    for args in [&["mcp"][..], &["agent", "run", "--profile", &profile]] {
        let o = haggle(&dir.0)
            .args(args)
            .env_remove("HAGGLE_AGENT_TOKEN")
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?}");
        let line = assert_one_line_error(&o, "HAGGLE_AGENT_TOKEN");
        assert!(line.contains("--token"), "{line}");
    }
}

/// `haggle channel set/show/remove`, and the running server posting a chat line with a link
/// (`--public-url`) to a local receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_channel_from_the_cli_posts_market_news() {
    let dir = Scratch::new("cli-channel");
    let db = dir.sqlite("h.db");
    let op = operator_token(&dir.0, &db);
    let m = run_ok(
        &dir.0,
        &["market", "create", "--name", "m", "--database", &db],
    );
    let m = id(&serde_json::from_str(&m).unwrap()).to_string();
    let lines = Arc::new(Mutex::new(Vec::<Value>::new()));
    let got = lines.clone();
    let app = axum::Router::new().route(
        "/services/T0/B0/secretx7Qa",
        axum::routing::post(move |body: axum::Json<Value>| async move {
            got.lock().unwrap().push(body.0);
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!(
        "http://{}/services/T0/B0/secretx7Qa",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let refused = run(
        &dir.0,
        &[
            "channel",
            "set",
            "--market",
            &m,
            "--url",
            &hook,
            "--database",
            &db,
        ],
    );
    assert_one_line_error(&refused, "invalid_request");
    let set = run_ok(
        &dir.0,
        &[
            "channel",
            "set",
            "--market",
            &m,
            "--url",
            &hook,
            "--kinds",
            "listing_posted,deal_created",
            "--allow-private-webhooks",
            "--database",
            &db,
        ],
    );
    assert!(
        !set.contains("secretx7Qa"),
        "the URL is never shown whole: {set}"
    );
    let shown: Value = serde_json::from_str(&run_ok(
        &dir.0,
        &["channel", "show", "--market", &m, "--database", &db],
    ))
    .unwrap();
    assert_eq!(
        shown["channel"]["kinds"],
        json!(["listing_posted", "deal_created"])
    );
    assert!(
        shown["channel"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/…x7Qa")
    );

    let server = Server::start(
        &dir.0,
        &[
            "--database",
            &db,
            "--allow-private-webhooks",
            "--public-url",
            "https://haggle.example.org",
        ],
    )
    .await;
    let http = Http::default();
    let p = register(&http, &server.base, &op, m.parse().unwrap(), "Alice", 100).await;
    let listing = http
        .expect(
            201,
            "POST",
            &server.url(&format!("/v1/markets/{m}/listings")),
            &p.token,
            json!({"side": "sell", "title": "Desk lamp", "category": "home", "price": 500}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let l = id(&listing);
    assert_eq!(
        lines.lock().unwrap().clone(),
        [json!({"text": format!(
            "Alice listed “Desk lamp” for $5.00 <https://haggle.example.org/m/{m}/listings/{l}|open>"
        )})]
    );
    drop(server);
    let removed = run_ok(
        &dir.0,
        &["channel", "remove", "--market", &m, "--database", &db],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&removed).unwrap(),
        json!({"channel": null})
    );
}

/// `haggle agent run` prints what its agent does in words, money formatted, and on Ctrl-C
/// (SIGINT) stops with its summary and exit code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_run_prints_its_trades_and_a_summary_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let dir = Scratch::new("cli-agent-run");
    let db = dir.sqlite("h.db");
    let op = operator_token(&dir.0, &db);
    let server = Server::start(&dir.0, &["--database", &db]).await;
    let http = Http::default();
    let m = create_market(&http, &server.base, &op, "desks").await;
    let p = register(&http, &server.base, &op, m, "Ana", 0).await;
    std::fs::write(
        dir.path("ana.toml"),
        "name = \"Ana\"\nbudget = 0\n[[sell]]\nitem_id = \"d1\"\nitem_type = \"desk\"\n\
         title = \"Oak desk\"\ncategory = \"home\"\nasking_price = 123456\nfloor_price = 100000\n",
    )
    .unwrap();
    let profile = dir.path("ana.toml").display().to_string();
    let mut child = haggle(&dir.0)
        .args([
            "agent",
            "run",
            "--profile",
            &profile,
            "--server",
            &server.base,
            "--token",
            &p.token,
            "--interval-ms",
            "100",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines.iter().any(|l: &String| l.starts_with("listed")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => panic!("no listing line ({e}): {lines:?}"),
        }
    }
    assert!(
        lines.contains(&"listed “Oak desk” for $1,234.56".to_string()),
        "{lines:?}"
    );
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        lines.push(line);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {lines:?}");
    assert!(
        lines.contains(&"interrupted (Ctrl-C)".to_string()),
        "{lines:?}"
    );
    let summary = lines.last().unwrap();
    assert!(
        summary.starts_with("summary for Ana: ")
            && summary.contains("deals: 0 bought, 0 sold, 0 not closed yet; spent $0.00, earned $0.00; open offers: 0 ($0.00)"),
        "{summary}"
    );
}
