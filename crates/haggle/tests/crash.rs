//! Crash safety of the real `haggle serve`: the server is killed with SIGKILL in the middle of
//! concurrent load (funding, listings, offers, acceptances, handovers, confirmations), five
//! times, and restarted on the same database. Every request whose answer was lost is retried
//! with its Idempotency-Key; requests answered before a crash are sent again and must get the
//! first answer back. In the end nothing happened twice or was lost, the ledger verifies and
//! the participants' money adds up to what was funded.
//!
//! On SQLite always; on PostgreSQL with `HAGGLE_TEST_POSTGRES_URL` (NOT RUN otherwise).

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const SELLERS: usize = 4;
const LISTINGS_PER_SELLER: usize = 5;
const BUYERS: usize = 8;
const OFFERS_PER_BUYER: usize = 3;
const BUDGET: i64 = 5_000;
const TOP_UP: i64 = 1_000;
const PRICE: i64 = 1_000;
/// Requests in flight at once.
const WORKERS: usize = 8;

/// One API call with its own Idempotency-Key, sent again verbatim after a crash.
#[derive(Clone, Debug)]
struct Req {
    path: String,
    token: String,
    body: Value,
    key: String,
}

type Answer = (u16, Value);

/// The server under test and how to start it again on the same database.
struct Run {
    dir: std::path::PathBuf,
    database: String,
    server: Option<Server>,
    client: reqwest::Client,
    crashes: usize,
}

impl Run {
    async fn start(dir: &Path, database: &str) -> Run {
        Run {
            dir: dir.to_path_buf(),
            database: database.to_string(),
            server: Some(Server::start(dir, &["--database", database]).await),
            client: haggle_tls::client_builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            crashes: 0,
        }
    }

    fn base(&self) -> String {
        self.server.as_ref().expect("a running server").base.clone()
    }

    /// SIGKILL (what dropping the child does), then a new process on the same database.
    async fn crash_and_restart(&mut self) {
        drop(self.server.take());
        self.crashes += 1;
        self.server = Some(Server::start(&self.dir, &["--database", &self.database]).await);
    }
}

async fn send(client: &reqwest::Client, base: &str, r: &Req) -> reqwest::Result<Answer> {
    let resp = client
        .post(format!("{base}{}", r.path))
        .bearer_auth(&r.token)
        .header("Idempotency-Key", &r.key)
        .json(&r.body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Sends `reqs` from `WORKERS` concurrent clients; once `crash_after` of them are answered the
/// server is killed mid-load and restarted. Lost answers are retried with the same keys on the
/// new process, and every answer received before the crash must come back the same.
async fn phase(run: &mut Run, reqs: &[Req], crash_after: usize) -> Vec<Answer> {
    let answers: Arc<Mutex<Vec<Option<Answer>>>> = Arc::new(Mutex::new(vec![None; reqs.len()]));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    let base = run.base();
    for w in 0..WORKERS {
        let mine: Vec<(usize, Req)> = reqs
            .iter()
            .cloned()
            .enumerate()
            .filter(|(i, _)| i % WORKERS == w)
            .collect();
        let (client, base, answers, answered) = (
            run.client.clone(),
            base.clone(),
            answers.clone(),
            answered.clone(),
        );
        workers.spawn(async move {
            for (i, r) in mine {
                // The server died under this request: its answer is lost.
                let Ok(a) = send(&client, &base, &r).await else {
                    return;
                };
                answers.lock().unwrap()[i] = Some(a);
                answered.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.load(Ordering::SeqCst) < crash_after {
        assert!(Instant::now() < deadline, "the load did not progress");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    run.crash_and_restart().await;
    while workers.join_next().await.is_some() {}
    let before: Vec<Option<Answer>> = answers.lock().unwrap().clone();
    let lost = before.iter().filter(|a| a.is_none()).count();
    let base = run.base();
    let mut out = Vec::with_capacity(reqs.len());
    for (r, first) in reqs.iter().zip(before) {
        let again = send(&run.client, &base, r)
            .await
            .unwrap_or_else(|e| panic!("{} after the restart: {e}", r.path));
        if let Some(first) = first {
            assert_eq!(again, first, "{} replays its first answer", r.path);
        }
        assert!(again.0 < 500, "{}: {again:?}", r.path);
        out.push(again);
    }
    eprintln!(
        "crash {}: {} of {} requests answered before the kill, {lost} retried",
        run.crashes,
        reqs.len() - lost,
        reqs.len()
    );
    out
}

fn req(path: String, token: &str, body: Value, key: String) -> Req {
    Req {
        path,
        token: token.to_string(),
        body,
        key,
    }
}

async fn get(run: &Run, path: &str, token: &str) -> Value {
    let r = run
        .client
        .get(format!("{}{path}", run.base()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    r.json().await.unwrap()
}

async fn events_by_kind(run: &Run, op: &str, market: i64) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = get(
            run,
            &format!("/v1/markets/{market}/events?after={after}&limit=1000"),
            op,
        )
        .await;
        let events = page["events"].as_array().expect("events").clone();
        for e in &events {
            *kinds
                .entry(e["kind"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        match events.last() {
            Some(e) => after = e["seq"].as_i64().unwrap(),
            None => return kinds,
        }
    }
}

fn ok_ids(answers: &[Answer], status: u16, field: &str) -> Vec<i64> {
    answers
        .iter()
        .filter(|a| a.0 == status)
        .map(|a| {
            a.1[field]
                .as_i64()
                .unwrap_or_else(|| panic!("{field} in {}", a.1))
        })
        .collect()
}

async fn crash_under_load(dir: &Path, database: &str) {
    let started = Instant::now();
    let op = operator_token(dir, database);
    let mut run = Run::start(dir, database).await;
    let http = Http::default();
    let market = create_market(&http, &run.base(), &op, "crash").await;
    let m = format!("/v1/markets/{market}");
    let mut sellers = Vec::new();
    for i in 0..SELLERS {
        sellers.push(register(&http, &run.base(), &op, market, &format!("seller {i}"), 0).await);
    }
    let mut buyers = Vec::new();
    for i in 0..BUYERS {
        buyers.push(
            register(
                &http,
                &run.base(),
                &op,
                market,
                &format!("buyer {i}"),
                BUDGET,
            )
            .await,
        );
    }

    // 1. Top-ups (twice per buyer, distinct keys) and listings.
    let mut reqs = Vec::new();
    for (b, buyer) in buyers.iter().enumerate() {
        for n in 0..2 {
            reqs.push(req(
                format!("{m}/participants/{}/fund", buyer.id),
                &op,
                json!({"amount": TOP_UP}),
                format!("fund-{b}-{n}"),
            ));
        }
    }
    for (s, seller) in sellers.iter().enumerate() {
        for n in 0..LISTINGS_PER_SELLER {
            reqs.push(req(
                format!("{m}/listings"),
                &seller.token,
                json!({"side": "sell", "title": format!("Chair {s}-{n}"), "category": "chairs", "price": PRICE}),
                format!("list-{s}-{n}"),
            ));
        }
    }
    let answers = phase(&mut run, &reqs, reqs.len() / 3).await;
    assert!(
        answers[..2 * BUYERS].iter().all(|a| a.0 == 200),
        "{answers:?}"
    );
    let listings = ok_ids(&answers[2 * BUYERS..], 201, "id");
    assert_eq!(listings.len(), SELLERS * LISTINGS_PER_SELLER, "{answers:?}");

    // 2. Each buyer opens threads with an offer at the asking price on three listings.
    let mut reqs = Vec::new();
    for (b, buyer) in buyers.iter().enumerate() {
        for k in 0..OFFERS_PER_BUYER {
            let l = listings[(b + k * 7) % listings.len()];
            reqs.push(req(
                format!("{m}/listings/{l}/threads"),
                &buyer.token,
                json!({"price": PRICE}),
                format!("thread-{b}-{k}"),
            ));
        }
    }
    let answers = phase(&mut run, &reqs, reqs.len() / 3).await;
    let offers: Vec<(i64, usize)> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            assert_eq!(a.0, 201, "{a:?}");
            (a.1["offer"]["id"].as_i64().unwrap(), i / OFFERS_PER_BUYER)
        })
        .collect();

    // 3. The sellers accept every offer: one deal per listing, the rest refused.
    let owner: BTreeMap<i64, usize> = listings
        .iter()
        .enumerate()
        .map(|(i, l)| (*l, i / LISTINGS_PER_SELLER))
        .collect();
    let reqs: Vec<Req> = offers
        .iter()
        .zip(&reqs)
        .map(|((offer, _), thread_req)| {
            let listing: i64 = thread_req.path.split('/').nth(5).unwrap().parse().unwrap();
            req(
                format!("{m}/offers/{offer}/accept"),
                &sellers[owner[&listing]].token,
                json!({}),
                format!("accept-{offer}"),
            )
        })
        .collect();
    let answers = phase(&mut run, &reqs, reqs.len() / 3).await;
    let mut deals = Vec::new();
    for a in &answers {
        match a.0 {
            201 => deals.push((
                a.1["id"].as_i64().unwrap(),
                a.1["listing_id"].as_i64().unwrap(),
            )),
            _ => assert!(
                ["listing_unavailable", "offer_not_live"]
                    .contains(&a.1["error"]["code"].as_str().unwrap_or("")),
                "{a:?}"
            ),
        }
    }
    let sold: BTreeSet<i64> = deals.iter().map(|d| d.1).collect();
    assert_eq!(sold.len(), deals.len(), "a listing sold twice: {deals:?}");

    // 4. and 5. Each seller hands over, each buyer confirms receipt.
    let deal_party = |listing: i64, side: &str| -> String {
        let d = answers
            .iter()
            .find(|a| a.0 == 201 && a.1["listing_id"] == listing)
            .unwrap();
        let p = d.1[side].as_i64().unwrap();
        sellers
            .iter()
            .chain(&buyers)
            .find(|x| x.id == p)
            .unwrap()
            .token
            .clone()
    };
    let handovers: Vec<Req> = deals
        .iter()
        .map(|(d, l)| {
            req(
                format!("{m}/deals/{d}/handover"),
                &deal_party(*l, "seller"),
                json!({}),
                format!("handover-{d}"),
            )
        })
        .collect();
    let answers_h = phase(&mut run, &handovers, handovers.len() / 3).await;
    assert!(answers_h.iter().all(|a| a.0 == 200), "{answers_h:?}");
    let confirms: Vec<Req> = deals
        .iter()
        .map(|(d, l)| {
            req(
                format!("{m}/deals/{d}/confirm"),
                &deal_party(*l, "buyer"),
                json!({}),
                format!("confirm-{d}"),
            )
        })
        .collect();
    let answers_c = phase(&mut run, &confirms, confirms.len() / 3).await;
    assert!(answers_c.iter().all(|a| a.0 == 200), "{answers_c:?}");
    assert_eq!(run.crashes, 5);

    // Nothing twice, nothing lost.
    let kinds = events_by_kind(&run, &op, market).await;
    assert_eq!(
        kinds["listing_posted"],
        SELLERS * LISTINGS_PER_SELLER,
        "{kinds:?}"
    );
    assert_eq!(
        kinds["thread_opened"],
        BUYERS * OFFERS_PER_BUYER,
        "{kinds:?}"
    );
    assert_eq!(kinds["deal_created"], deals.len(), "{kinds:?}");
    let recorded = get(&run, &format!("{m}/deals?limit=500"), &op).await;
    let recorded = recorded["items"].as_array().unwrap();
    assert_eq!(recorded.len(), deals.len());
    assert!(
        recorded.iter().all(|d| d["status"] == "completed"),
        "{recorded:?}"
    );

    // The ledger verifies and the money adds up to what was funded, exactly once each.
    let v = get(&run, &format!("{m}/ledger/verify"), &op).await;
    assert_eq!(v["breaches"], json!([]), "{v}");
    let mut total = 0;
    for p in sellers.iter().chain(&buyers) {
        let b = get(&run, &format!("{m}/participants/{}/balance", p.id), &op).await;
        assert!(b["available"].as_i64().unwrap() >= 0, "{b}");
        total += b["total"].as_i64().unwrap();
    }
    let funded = BUYERS as i64 * (BUDGET + 2 * TOP_UP);
    assert_eq!(total, funded, "money is conserved");
    let earned: i64 = {
        let mut sum = 0;
        for s in &sellers {
            let b = get(&run, &format!("{m}/participants/{}/balance", s.id), &op).await;
            sum += b["available"].as_i64().unwrap();
        }
        sum
    };
    assert_eq!(earned, deals.len() as i64 * PRICE, "each sale paid once");
    drop(run);
    let out = run_ok(dir, &["ledger", "verify", "--database", database]);
    assert!(out.lines().all(|l| l.ends_with(", ok")), "{out}");
    eprintln!(
        "{} deals through 5 crashes in {:?}",
        deals.len(),
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_server_killed_under_load_loses_and_repeats_nothing() {
    let dir = Scratch::new("crash-sqlite");
    let db = dir.sqlite("market.db");
    crash_under_load(&dir.0, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_server_killed_under_load_loses_and_repeats_nothing() {
    let Some(base) = postgres_url() else { return };
    let db = ScratchDatabase::create(&base, "haggle_replicas").await;
    let dir = Scratch::new("crash-postgres");
    crash_under_load(&dir.0, &db.url).await;
}
