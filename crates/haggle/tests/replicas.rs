//! Replicas, across processes: the real `haggle serve` binary, several copies of it sharing one
//! PostgreSQL database (and, always, one copy on SQLite): one winner per listing with every buyer
//! accepting its counter-offer at the same moment; one event reaching another replica's live
//! stream at once; `bench api` driving running servers.
//!
//! The PostgreSQL test needs `HAGGLE_TEST_POSTGRES_URL` (a database it may connect to and a role
//! that may `CREATE DATABASE`); it makes a fresh database per run and drops it afterwards. Without
//! the variable it says so loudly and passes, except under `CI`, where it fails.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// Seller's asking price, buyers' opening offers and the seller's counter, in minor units.
const ASK: i64 = 1_000;
const OPENING: i64 = 700;
const COUNTER: i64 = 900;

/// Fires one acceptance per `(token, offer)` at the same moment, spread round-robin over
/// `bases`; returns `(status, body)` in input order.
async fn accept_all(
    http: &Http,
    bases: &[String],
    market: i64,
    acceptances: Vec<(String, i64)>,
) -> Vec<(u16, Value)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(acceptances.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (token, offer)) in acceptances.into_iter().enumerate() {
        let url = format!(
            "{}/v1/markets/{market}/offers/{offer}/accept",
            bases[i % bases.len()]
        );
        let (http, barrier) = (http.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            (i, http.post(&url, &token, json!({})).await)
        });
    }
    let mut out: Vec<Option<(u16, Value)>> = vec![None; tasks.len()];
    while let Some(r) = tasks.join_next().await {
        let (i, reply) = r.expect("acceptance task");
        out[i] = Some(reply);
    }
    out.into_iter().map(Option::unwrap).collect()
}

/// Runs `f(i)` for `0..n` concurrently; results in order.
async fn all<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let fut = f(i);
        tasks.spawn(async move { (i, fut.await) });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(r) = tasks.join_next().await {
        let (i, v) = r.expect("task");
        out[i] = Some(v);
    }
    out.into_iter().map(Option::unwrap).collect()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

async fn verify_ledger(http: &Http, bases: &[String], op: &str, market: i64) {
    for base in bases {
        let v = http
            .expect(
                200,
                "GET",
                &format!("{base}/v1/markets/{market}/ledger/verify"),
                op,
                Value::Null,
            )
            .await;
        assert_eq!(v["breaches"], json!([]), "ledger breaches via {base}: {v}");
        assert!(v["transfers"].as_u64().unwrap() > 0, "{v}");
    }
}

async fn balance(http: &Http, base: &str, op: &str, market: i64, p: i64) -> Value {
    http.expect(
        200,
        "GET",
        &format!("{base}/v1/markets/{market}/participants/{p}/balance"),
        op,
        Value::Null,
    )
    .await
}

async fn deals(http: &Http, base: &str, op: &str, market: i64) -> Vec<Value> {
    let v = http
        .expect(
            200,
            "GET",
            &format!("{base}/v1/markets/{market}/deals?limit=500"),
            op,
            Value::Null,
        )
        .await;
    v["items"].as_array().expect("deal items").clone()
}

async fn create_listing(http: &Http, base: &str, market: i64, seller: &Party, n: usize) -> i64 {
    id(&http
        .expect(
            201,
            "POST",
            &format!("{base}/v1/markets/{market}/listings"),
            &seller.token,
            json!({"side": "sell", "title": format!("Bicycle {n}"), "category": "bikes", "price": ASK}),
        )
        .await)
}

/// One listing, `buyers` buyers: each opens a thread with an offer, the seller counters in every
/// thread, and every buyer accepts its counter at once. Exactly one deal; everyone else gets
/// `listing_unavailable`.
async fn one_listing_race(http: &Http, bases: &[String], op: &str, buyers: usize) {
    let b0 = &bases[0];
    let market = create_market(http, b0, op, "one listing race").await;
    let seller = register(http, b0, op, market, "seller", 0).await;
    let budget = 5 * ASK;
    let buyers: Vec<Party> = all(buyers, |i| {
        let (http, base, op) = (http.clone(), bases[i % bases.len()].clone(), op.to_string());
        async move { register(&http, &base, &op, market, &format!("buyer {i}"), budget).await }
    })
    .await;
    let listing = create_listing(http, b0, market, &seller, 0).await;

    // Every buyer opens a thread with an offer (which commits its funds) ...
    let threads: Vec<i64> = all(buyers.len(), |i| {
        let (http, base, token) = (
            http.clone(),
            bases[i % bases.len()].clone(),
            buyers[i].token.clone(),
        );
        async move {
            let v = http
                .expect(
                    201,
                    "POST",
                    &format!("{base}/v1/markets/{market}/listings/{listing}/threads"),
                    &token,
                    json!({"message": "Is it still available?", "price": OPENING}),
                )
                .await;
            assert_eq!(v["offer"]["price"], json!(OPENING), "{v}");
            id(&v["thread"])
        }
    })
    .await;
    let committed = balance(http, b0, op, market, buyers[0].id).await;
    assert_eq!(
        committed["committed_to_offers"],
        json!(OPENING),
        "{committed}"
    );
    // ... and the seller counters in every one: as many live seller offers as buyers.
    let counters: Vec<i64> = all(threads.len(), |i| {
        let (http, base, token, thread) = (
            http.clone(),
            bases[(i + 1) % bases.len()].clone(),
            seller.token.clone(),
            threads[i],
        );
        async move {
            id(&http
                .expect(
                    201,
                    "POST",
                    &format!("{base}/v1/markets/{market}/threads/{thread}/offers"),
                    &token,
                    json!({"price": COUNTER}),
                )
                .await)
        }
    })
    .await;

    let acceptances = buyers
        .iter()
        .zip(&counters)
        .map(|(b, &o)| (b.token.clone(), o))
        .collect();
    let replies = accept_all(http, bases, market, acceptances).await;
    let won: Vec<usize> = (0..replies.len())
        .filter(|&i| replies[i].0 == 201)
        .collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one deal, got {}: {replies:?}",
        won.len()
    );
    let winner = won[0];
    for (i, (status, body)) in replies.iter().enumerate() {
        if i != winner {
            assert_eq!(
                (*status, code(body)),
                (409, "listing_unavailable"),
                "buyer {i}: {body}"
            );
        }
    }
    let deal = &replies[winner].1;
    assert_eq!(deal["listing_id"], json!(listing), "{deal}");
    assert_eq!(deal["buyer"], json!(buyers[winner].id), "{deal}");
    assert_eq!(deal["price"], json!(COUNTER), "{deal}");

    // What every server now says agrees: one deal, the listing sold, money where it belongs.
    for base in bases {
        let d = deals(http, base, op, market).await;
        assert_eq!(d.len(), 1, "deals via {base}: {d:?}");
        let l = http
            .expect(
                200,
                "GET",
                &format!("{base}/v1/markets/{market}/listings/{listing}"),
                &seller.token,
                Value::Null,
            )
            .await;
        assert_eq!(l["status"], json!("sold"), "{l}");
    }
    for (i, b) in buyers.iter().enumerate() {
        let bal = balance(http, &bases[i % bases.len()], op, market, b.id).await;
        let spent = if i == winner { COUNTER } else { 0 };
        assert_eq!(bal["available"], json!(budget - spent), "buyer {i}: {bal}");
        assert_eq!(bal["held_in_escrow"], json!(spent), "buyer {i}: {bal}");
        assert_eq!(bal["committed_to_offers"], json!(0), "buyer {i}: {bal}");
    }
    verify_ledger(http, bases, op, market).await;
}

/// `listings` listings and `buyers` buyers, each able to afford `affordable` of the seller's
/// counters: every buyer asks about every listing (a message, which commits nothing), the seller
/// counters in every thread, and all acceptances fire at once. At most one deal per listing, no
/// buyer over budget, and the ledger still verifies.
async fn many_listings_race(
    http: &Http,
    bases: &[String],
    op: &str,
    listings: usize,
    buyers: usize,
    affordable: i64,
) {
    let b0 = &bases[0];
    let market = create_market(http, b0, op, "many listings race").await;
    let seller = register(http, b0, op, market, "seller", 0).await;
    // Enough for `affordable` counters, not one more.
    let budget = affordable * COUNTER + COUNTER / 2;
    let buyers: Vec<Party> = all(buyers, |i| {
        let (http, base, op) = (http.clone(), bases[i % bases.len()].clone(), op.to_string());
        async move { register(&http, &base, &op, market, &format!("buyer {i}"), budget).await }
    })
    .await;
    let mut listing_ids = Vec::new();
    for n in 0..listings {
        listing_ids.push(create_listing(http, b0, market, &seller, n).await);
    }
    // (buyer index, listing id) for every thread.
    let pairs: Vec<(usize, i64)> = (0..buyers.len())
        .flat_map(|b| listing_ids.iter().map(move |&l| (b, l)))
        .collect();
    let threads: Vec<i64> = all(pairs.len(), |i| {
        let (b, listing) = pairs[i];
        let (http, base, token) = (
            http.clone(),
            bases[i % bases.len()].clone(),
            buyers[b].token.clone(),
        );
        async move {
            let v = http
                .expect(
                    201,
                    "POST",
                    &format!("{base}/v1/markets/{market}/listings/{listing}/threads"),
                    &token,
                    json!({"message": "What is your best price?"}),
                )
                .await;
            id(&v["thread"])
        }
    })
    .await;
    let counters: Vec<i64> = all(threads.len(), |i| {
        let (http, base, token, thread) = (
            http.clone(),
            bases[(i + 1) % bases.len()].clone(),
            seller.token.clone(),
            threads[i],
        );
        async move {
            id(&http
                .expect(
                    201,
                    "POST",
                    &format!("{base}/v1/markets/{market}/threads/{thread}/offers"),
                    &token,
                    json!({"price": COUNTER}),
                )
                .await)
        }
    })
    .await;

    let acceptances = pairs
        .iter()
        .zip(&counters)
        .map(|(&(b, _), &o)| (buyers[b].token.clone(), o))
        .collect();
    let replies = accept_all(http, bases, market, acceptances).await;

    let mut sold: BTreeMap<i64, usize> = BTreeMap::new();
    let mut bought = vec![0i64; buyers.len()];
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    for (&(b, listing), (status, body)) in pairs.iter().zip(&replies) {
        match status {
            201 => {
                assert_eq!(body["listing_id"], json!(listing), "{body}");
                assert_eq!(body["buyer"], json!(buyers[b].id), "{body}");
                *sold.entry(listing).or_default() += 1;
                bought[b] += 1;
            }
            409 | 422 | 402 | 403 | 400 => {
                let c = code(body);
                assert!(
                    c == "listing_unavailable" || c == "insufficient_funds",
                    "unexpected refusal {status}: {body}"
                );
                *refusals.entry(c.to_string()).or_default() += 1;
            }
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
    assert!(
        sold.values().all(|&n| n == 1),
        "a listing sold twice: {sold:?}"
    );
    assert!(
        bought.iter().all(|&n| n <= affordable),
        "over budget: {bought:?}"
    );
    // A listing stays unsold only if every buyer was refused it for lack of funds, i.e. every
    // buyer already bought all it can afford; so the number of deals is exactly this:
    let expected = (listings as i64).min(buyers.len() as i64 * affordable);
    assert_eq!(sold.len() as i64, expected, "deals per listing: {sold:?}");
    if (buyers.len() as i64) * affordable < listings as i64 {
        assert!(refusals.contains_key("insufficient_funds"), "{refusals:?}");
    }

    let recorded = deals(http, &bases[bases.len() - 1], op, market).await;
    assert_eq!(recorded.len(), sold.len(), "{recorded:?}");
    let listed: BTreeSet<i64> = recorded
        .iter()
        .map(|d| d["listing_id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, sold.keys().copied().collect::<BTreeSet<_>>());
    for (i, b) in buyers.iter().enumerate() {
        let bal = balance(http, &bases[i % bases.len()], op, market, b.id).await;
        let spent = bought[i] * COUNTER;
        assert!(bal["available"].as_i64().unwrap() >= 0, "buyer {i}: {bal}");
        assert_eq!(bal["available"], json!(budget - spent), "buyer {i}: {bal}");
        assert_eq!(bal["held_in_escrow"], json!(spent), "buyer {i}: {bal}");
    }
    verify_ledger(http, bases, op, market).await;
    eprintln!(
        "{listings} listings x {} buyers (each affords {affordable}): {} deals, refusals {refusals:?}",
        buyers.len(),
        sold.len()
    );
}

async fn races(bases: &[String], op: &str) {
    let http = Http::default();
    let t = Instant::now();
    one_listing_race(&http, bases, op, 50).await;
    eprintln!("50 buyers on one listing: {:?}", t.elapsed());
    let t = Instant::now();
    many_listings_race(&http, bases, op, 10, 10, 2).await;
    many_listings_race(&http, bases, op, 10, 4, 2).await;
    eprintln!("many listings: {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_one_server_one_winner_per_listing() {
    let started = Instant::now();
    let dir = Scratch::new("race-sqlite");
    let db = dir.sqlite("market.db");
    let op = operator_token(&dir.0, &db);
    let server = Server::start(&dir.0, &["--database", &db]).await;
    races(std::slice::from_ref(&server.base), &op).await;
    eprintln!(
        "SQLite single-process race test took {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres:///haggle_test?host=/var/run/postgresql", "x"),
        "postgres:///x?host=/var/run/postgresql"
    );
    assert_eq!(
        with_database("postgres://u:p@db.example:5433/haggle_test", "x"),
        "postgres://u:p@db.example:5433/x"
    );
    assert_eq!(
        with_database("postgres://localhost", "x"),
        "postgres://localhost/x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_replicas_one_winner_per_listing() {
    let Some(base) = postgres_url() else { return };
    let started = Instant::now();
    let db = ScratchDatabase::create(&base, "haggle_replicas").await;
    let dir = Scratch::new("race-postgres");
    // Both replicas start at once on the empty database: they must not both migrate it.
    let args = ["--database", db.url.as_str()];
    let (a, b) = tokio::join!(Server::start(&dir.0, &args), Server::start(&dir.0, &args));
    let op = operator_token(&dir.0, &db.url);
    let bases = [a.base.clone(), b.base.clone()];
    assert_ne!(bases[0], bases[1]);
    races(&bases, &op).await;
    // Both processes were serving throughout.
    for s in [&a, &b] {
        let (status, _) = Http::default().get(&s.url("/healthz"), "").await;
        assert_eq!(status, 200, "{}", s.log());
    }
    drop((a, b));
    // The CLI sees the same, consistent ledger.
    let out = run_ok(&dir.0, &["ledger", "verify", "--database", &db.url]);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().all(|l| l.ends_with(", ok")), "{out}");
    drop(db);
    eprintln!(
        "PostgreSQL two-replica race test took {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// Two replicas receive `POST /v1/markets` with one Idempotency-Key at the same moment, 20
/// times: each time one market is created and both answer with it (it used to be two markets
/// in 15 of 20 tries).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_replicas_create_one_market_per_key() {
    let Some(base) = postgres_url() else { return };
    let started = Instant::now();
    let db = ScratchDatabase::create(&base, "haggle_replicas").await;
    let dir = Scratch::new("market-key-race");
    let args = ["--database", db.url.as_str()];
    let (a, b) = tokio::join!(Server::start(&dir.0, &args), Server::start(&dir.0, &args));
    let op = operator_token(&dir.0, &db.url);
    let client = haggle_tls::client();
    let mut ids = BTreeSet::new();
    for round in 0..20 {
        let key = format!("create-market-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let send = |base: String| {
            let (client, key, op, barrier) =
                (client.clone(), key.clone(), op.clone(), barrier.clone());
            async move {
                barrier.wait().await;
                let r = client
                    .post(format!("{base}/v1/markets"))
                    .bearer_auth(&op)
                    .header("Idempotency-Key", key)
                    .json(&json!({"name": format!("raced {round}")}))
                    .send()
                    .await
                    .expect("request sent");
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.expect("a JSON body"))
            }
        };
        let (ra, rb) = tokio::join!(send(a.base.clone()), send(b.base.clone()));
        assert_eq!((ra.0, rb.0), (201, 201), "round {round}: {ra:?} {rb:?}");
        assert_eq!(
            ra.1, rb.1,
            "round {round}: both replicas answer with the same market"
        );
        ids.insert(id(&ra.1));
    }
    assert_eq!(ids.len(), 20, "one market per key");
    let (status, markets) = Http::default().get(&a.url("/v1/markets"), &op).await;
    assert_eq!(status, 200);
    assert_eq!(
        markets["items"].as_array().map(Vec::len),
        Some(20),
        "no market created twice"
    );
    drop((a, b));
    drop(db);
    eprintln!(
        "PostgreSQL market-key race test took {:?}",
        started.elapsed()
    );
}

/// Reads SSE frames from `resp` until one of kind `kind`; returns when it arrived.
async fn next_event_of(resp: &mut reqwest::Response, buf: &mut String, kind: &str) -> Instant {
    let marker = format!("event: {kind}\n");
    loop {
        if let Some(i) = buf.find(&marker) {
            buf.drain(..i + marker.len());
            return Instant::now();
        }
        let chunk = resp.chunk().await.expect("stream").expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// A listing posted through replica A reaches an SSE client of replica B at once: B learns of
/// A's commit from PostgreSQL's announcement, not from a poll (both poll only every 60 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_an_event_written_on_one_replica_streams_from_the_other_without_a_poll() {
    let Some(base) = postgres_url() else { return };
    let db = ScratchDatabase::create(&base, "haggle_replicas").await;
    let dir = Scratch::new("feed-postgres");
    let args = ["--database", db.url.as_str(), "--feed-poll-ms", "60000"];
    let (a, b) = tokio::join!(Server::start(&dir.0, &args), Server::start(&dir.0, &args));
    let op = operator_token(&dir.0, &db.url);
    let http = Http::default();
    let market = create_market(&http, &a.base, &op, "feed").await;
    let seller = register(&http, &a.base, &op, market, "Sella", 0).await;
    // The operator follows market events on B from now on.
    let client = haggle_tls::client();
    let mut resp = client
        .get(b.url(&format!("/v1/markets/{market}/events/stream")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut buf = String::new();
    // Drain what is already there (the market and the participant).
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            let _ = next_event_of(&mut resp, &mut buf, "participant_registered").await;
        }
    })
    .await;
    buf.clear();
    let mut latencies = Vec::new();
    for n in 0..100 {
        create_listing(&http, &a.base, market, &seller, n).await;
        let written = Instant::now();
        let arrived = tokio::time::timeout(
            Duration::from_secs(10),
            next_event_of(&mut resp, &mut buf, "listing_posted"),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "listing {n} did not reach replica B within 10 s: {}",
                b.log()
            )
        });
        latencies.push(arrived.saturating_duration_since(written));
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    eprintln!(
        "replica A write -> replica B SSE: p50 {:?}, p99 {p99:?}, max {:?} over {} listings",
        latencies[latencies.len() / 2],
        latencies.last().unwrap(),
        latencies.len()
    );
    // The target is 50 ms at p99 (issue 18, measured on an idle machine); a loaded test machine
    // gets slack, but never a poll's worth (60 s here).
    assert!(p99 < Duration::from_secs(2), "p99 {p99:?}");
    drop((a, b));
    drop(db);
}

/// The bench's last stdout line: its JSON summary.
fn bench_summary(out: &std::process::Output) -> Value {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

/// `bench search` fills a market and times every search on SQLite as a server reads it and on
/// a simulation's shelves; both find the same number of listings for each search.
#[test]
fn bench_search_times_each_search_on_both_sqlite_paths() {
    let dir = Scratch::new("bench-search");
    let args = ["bench", "search", "--listings", "400", "--searches", "3"];
    let v = bench_summary(&run_within(&dir.0, &args, Duration::from_secs(120)));
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{v}");
    let found = |r: &Value| -> Vec<u64> {
        r["searches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["found"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(found(&runs[0]), found(&runs[1]), "{v}");
    assert!(found(&runs[0])[0] > 0, "q=bike finds bikes: {v}");
    assert_eq!(
        found(&runs[0])[1],
        0,
        "q=table finds no comfortable things: {v}"
    );
    assert!(runs[0]["searches"][0]["p99_ms"].as_f64().unwrap() > 0.0);
}

/// `bench sim` reports each run's wall time, deals and its own peak resident memory.
#[test]
fn bench_sim_reports_each_runs_peak_memory() {
    let dir = Scratch::new("bench-sim");
    let args = ["bench", "sim", "--participants", "40", "--rounds", "4"];
    let v = bench_summary(&run_within(&dir.0, &args, Duration::from_secs(300)));
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{v}");
    for r in runs {
        let peak = r["peak_memory_mib"].as_f64().unwrap_or(0.0);
        // More than the binary's own pages, less than this machine has.
        assert!(peak > 5.0 && peak < 24_000.0, "{r}");
        assert!(r["deals"].as_u64().unwrap() > 0, "{r}");
    }
}

/// `bench api --server` drives a running server (here on SQLite) instead of starting one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_api_drives_a_running_server() {
    let dir = Scratch::new("bench-server");
    let db = dir.sqlite("market.db");
    let op = operator_token(&dir.0, &db);
    let server = Server::start(&dir.0, &["--database", &db, "--rate-limit", "0"]).await;
    let args = [
        "bench",
        "api",
        "--server",
        &server.base,
        "--token",
        &op,
        "--seconds",
        "2",
        "--clients",
        "4",
    ];
    let out = run_within(&dir.0, &args, Duration::from_secs(120));
    let v = bench_summary(&out);
    assert!(v["deals"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["ledger_breaches"], 0);
    assert!(v["backend"].as_str().unwrap().contains(&server.base), "{v}");
    // Without the operator token it says what is missing.
    let o = run(&dir.0, &["bench", "api", "--server", &server.base]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--server needs --token"),
        "{}",
        text(&o.stderr)
    );
}

/// `bench api --markets N` spreads the pairs over N markets: each of them trades and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_api_spreads_pairs_over_markets() {
    let dir = Scratch::new("bench-markets");
    let db = dir.sqlite("market.db");
    let op = operator_token(&dir.0, &db);
    let server = Server::start(&dir.0, &["--database", &db, "--rate-limit", "0"]).await;
    let base = server.base.as_str();
    let bench = |markets| {
        [
            "bench",
            "api",
            "--server",
            base,
            "--token",
            &op,
            "--seconds",
            "2",
            "--clients",
            "4",
            "--markets",
            markets,
        ]
    };
    let v = bench_summary(&run_within(&dir.0, &bench("2"), Duration::from_secs(120)));
    assert_eq!(v["markets"], 2, "{v}");
    assert_eq!(v["ledger_breaches"], 0, "{v}");
    let http = Http::default();
    let (_, list) = http.get(&format!("{}/v1/markets", server.base), &op).await;
    let bench_markets: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"].as_str().unwrap_or("").starts_with("bench "))
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(bench_markets.len(), 2, "{list}");
    for m in bench_markets {
        let url = format!("{}/v1/markets/{m}/deals?limit=1", server.base);
        let (status, deals) = http.get(&url, &op).await;
        assert_eq!(status, 200, "{deals}");
        assert_eq!(
            deals["items"].as_array().map(Vec::len),
            Some(1),
            "market {m}: {deals}"
        );
    }
    // More markets than pairs is refused before anything is created.
    let o = run(&dir.0, &bench("5"));
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("--markets"), "{}", text(&o.stderr));
}

/// Two replicas on one PostgreSQL under one load: pairs spread over both, sellers and buyers
/// on different replicas, and the ledger holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_bench_api_spreads_clients_over_two_replicas() {
    let Some(base) = postgres_url() else { return };
    let db = ScratchDatabase::create(&base, "haggle_replicas").await;
    let dir = Scratch::new("bench-replicas");
    let args = ["--database", db.url.as_str(), "--rate-limit", "0"];
    let (a, b) = tokio::join!(Server::start(&dir.0, &args), Server::start(&dir.0, &args));
    let op = operator_token(&dir.0, &db.url);
    let bench = [
        "bench",
        "api",
        "--server",
        &a.base,
        "--server",
        &b.base,
        "--token",
        &op,
        "--seconds",
        "2",
        "--clients",
        "4",
    ];
    let v = bench_summary(&run_within(&dir.0, &bench, Duration::from_secs(120)));
    assert!(v["deals"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["ledger_breaches"], 0);
    assert!(
        v["backend"]
            .as_str()
            .unwrap()
            .starts_with("2 running server(s)"),
        "{v}"
    );
    drop((a, b));
    drop(db);
}
