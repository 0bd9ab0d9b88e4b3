//! `haggle bench api`: starts a server on the given database (random loopback port), or takes
//! running ones (`--server URL`, repeated for replicas), drives the HTTP API with a mixed
//! negotiation workload from many concurrent clients, and prints a table and, as the last stdout
//! line, a JSON object with `actions_per_s`, `p50_ms` and `p99_ms`.

use crate::config;
use anyhow::{Context, bail};
use haggle_service::{Config, Service, Store, SystemClock};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ApiArgs {
    /// `sqlite://PATH` or `postgres://...` (default: a fresh SQLite file in a temp folder).
    #[arg(long, env = "HAGGLE_DATABASE_URL")]
    database: Option<String>,
    /// Concurrent client pairs (a seller and a buyer each).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Markets the pairs trade in (pair i in market i mod N): one market's commands serialise on
    /// its lock, so several show what replicas and cores add beyond one market.
    #[arg(long, default_value_t = 1)]
    markets: usize,
    /// How long to drive the load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Drive this running server instead of starting one; repeat it for replicas sharing a
    /// database (client pairs are spread over them, a pair's seller and buyer on different ones).
    #[arg(long = "server", value_name = "URL")]
    servers: Vec<String>,
    /// An operator token of the `--server`s (it creates the bench market and participants).
    #[arg(long, env = "HAGGLE_TOKEN")]
    token: Option<String>,
    /// Also time every SQLite statement of a server started here and print the 25 costliest
    /// to stderr (a clock read per statement).
    #[arg(long)]
    sql_profile: bool,
}

/// The server(s) under load: one started here (stopped at the end), or running ones.
struct Target {
    bases: Vec<String>,
    operator: String,
    label: String,
    /// The store of a server started here: its group commit counts go into the summary.
    store: Option<Store>,
    local: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    )>,
}

/// Starts a server on the bench's database (a fresh SQLite file unless one is given), or takes
/// the `--server`s given.
async fn target(
    args: &ApiArgs,
    cfg: &config::File,
    tmp: &std::path::Path,
) -> anyhow::Result<Target> {
    if !args.servers.is_empty() {
        if args.servers.len() > 64 {
            bail!("--server: at most 64 servers");
        }
        let operator = args.token.clone().context(
            "--server needs --token (or HAGGLE_TOKEN): an operator token of those servers",
        )?;
        let bases: Vec<String> = args
            .servers
            .iter()
            .map(|s| s.trim_end_matches('/').to_string())
            .collect();
        let label = format!("{} running server(s): {}", bases.len(), bases.join(", "));
        return Ok(Target {
            bases,
            operator,
            label,
            store: None,
            local: None,
        });
    }
    let url = match args.database.clone().or(cfg.database.clone()) {
        Some(u) => u,
        None => {
            std::fs::create_dir_all(tmp)?;
            format!("sqlite://{}", tmp.join("bench.db").display())
        }
    };
    let store = Store::open(&url)
        .await
        .with_context(|| format!("cannot open database {url}"))?;
    let label = store.backend_name().to_string();
    let svc = Service::new(
        store.clone(),
        Arc::new(SystemClock),
        Config {
            rate_per_sec: 0,
            ..Config::default()
        },
    );
    let operator = svc
        .create_token(haggle_service::Role::Operator, None, None, "bench")
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.body.error.message))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(haggle_http::serve(listener, svc, async {
        let _ = stop_rx.await;
    }));
    Ok(Target {
        bases: vec![base],
        operator,
        label,
        store: Some(store),
        local: Some((stop_tx, server)),
    })
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    latencies: Vec<f64>,
    errors: u64,
}

impl Client {
    /// One API action, timed: a 2xx answer is read as `T` (a type naming only the fields the
    /// caller needs; the rest is skipped but must still be JSON). A non-2xx answer is counted as
    /// an error and returned as `None`.
    async fn call<T: serde::de::DeserializeOwned>(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Option<T>> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let t = Instant::now();
        let resp = req.send().await.context("request failed")?;
        let ok = resp.status().is_success();
        let bytes = resp.bytes().await.context("response body")?;
        let v = if ok {
            Some(serde_json::from_slice::<T>(&bytes).context("response is not the JSON expected")?)
        } else {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
                .context("response is not JSON")?;
            None
        };
        self.latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        if !ok {
            self.errors += 1;
        }
        Ok(v)
    }
}

/// What the workload reads of an answer naming a new listing or offer.
#[derive(serde::Deserialize)]
struct Created {
    id: i64,
}

/// What the workload reads of an opened thread.
#[derive(serde::Deserialize)]
struct Opened {
    thread: Created,
}

/// What the workload reads of a page of events.
#[derive(serde::Deserialize)]
struct EventsRead {
    next_after: i64,
}

/// One negotiation: list, search, open with an offer, counter, accept, read events (6 actions).
async fn negotiate(
    m: i64,
    seller: &mut Client,
    buyer: &mut Client,
    after: &mut i64,
    n: u64,
) -> anyhow::Result<bool> {
    use reqwest::Method as M;
    use serde::de::IgnoredAny;
    let listing: Option<Created> = seller
        .call(M::POST, &format!("/v1/markets/{m}/listings"), Some(json!({"side": "sell", "title": format!("Bench bike {n}"), "description": "road bike, good condition", "category": "bikes", "price": 10_000})))
        .await?;
    let Some(Created { id: l }) = listing else {
        return Ok(false);
    };
    buyer
        .call::<IgnoredAny>(
            M::GET,
            &format!("/v1/markets/{m}/listings?q=bike&sort=cheapest&limit=10"),
            None,
        )
        .await?;
    let opened: Option<Opened> = buyer
        .call(
            M::POST,
            &format!("/v1/markets/{m}/listings/{l}/threads"),
            Some(json!({"message": "would you take 80?", "price": 8_000})),
        )
        .await?;
    let Some(Opened {
        thread: Created { id: t },
    }) = opened
    else {
        return Ok(false);
    };
    let counter: Option<Created> = seller
        .call(
            M::POST,
            &format!("/v1/markets/{m}/threads/{t}/offers"),
            Some(json!({"price": 9_000})),
        )
        .await?;
    let Some(Created { id: o }) = counter else {
        return Ok(false);
    };
    let deal = buyer
        .call::<IgnoredAny>(M::POST, &format!("/v1/markets/{m}/offers/{o}/accept"), None)
        .await?;
    let page: Option<EventsRead> = buyer
        .call(
            M::GET,
            &format!("/v1/markets/{m}/events?after={after}&limit=100"),
            None,
        )
        .await?;
    if let Some(p) = page {
        *after = p.next_after;
    }
    Ok(deal.is_some())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub async fn api(args: ApiArgs, cfg: &config::File) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("haggle-bench-{}", std::process::id()));
    if args.clients == 0 || args.clients > 1000 {
        bail!("--clients must be between 1 and 1000");
    }
    if args.markets == 0 || args.markets > args.clients.min(MAX_BENCH_MARKETS) {
        bail!("--markets must be between 1 and the client pairs (at most {MAX_BENCH_MARKETS})");
    }
    if args.sql_profile {
        haggle_store::sqlite_profile::enable();
    }
    let Target {
        bases,
        operator,
        label: backend,
        store,
        local,
    } = target(&args, cfg, &tmp).await?;
    let base = bases[0].clone();

    let http = haggle_tls::client_builder()
        .pool_max_idle_per_host(4 * args.clients)
        .build()?;
    let mut op = Client {
        http: http.clone(),
        base: base.clone(),
        token: operator,
        latencies: vec![],
        errors: 0,
    };
    let markets = create_markets(&mut op, args.markets).await?;
    let pairs = register_pairs(&mut op, &http, &bases, &markets, args.clients).await?;
    let started = Instant::now();
    let grouped_before = store.as_ref().and_then(Store::group_commit_stats);
    let (mut latencies, errors, deals) = drive(pairs, args.seconds).await?;
    let wall = started.elapsed().as_secs_f64();
    // Commands per commit over the timed run (a server started here only).
    let per_commit = match (
        grouped_before,
        store.as_ref().and_then(Store::group_commit_stats),
    ) {
        (Some(a), Some(b)) if b.commits > a.commits => {
            Some((b.commands - a.commands) as f64 / (b.commits - a.commits) as f64)
        }
        _ => None,
    };
    let breaches = breaches(&mut op, &markets).await?;
    if let Some((stop_tx, server)) = local {
        let _ = stop_tx.send(());
        server.await??;
    }
    let _ = std::fs::remove_dir_all(&tmp);

    latencies.sort_by(f64::total_cmp);
    print_api(
        &backend,
        (args.clients, markets.len()),
        &latencies,
        ApiRun {
            wall,
            errors,
            deals,
            breaches,
            per_commit,
        },
    );
    if args.sql_profile {
        print_sql_profile();
    }
    if breaches != 0 {
        bail!("the ledger did not verify after the benchmark");
    }
    Ok(())
}

/// At most this many markets in one `bench api` run.
const MAX_BENCH_MARKETS: usize = 64;

/// Creates the bench's `n` markets.
async fn create_markets(op: &mut Client, n: usize) -> anyhow::Result<Vec<i64>> {
    let mut markets = Vec::with_capacity(n);
    for i in 0..n {
        let market = op
            .call::<Created>(
                reqwest::Method::POST,
                "/v1/markets",
                Some(json!({"name": format!("bench {i}"), "rules": {"max_offers_per_thread": 20}})),
            )
            .await?;
        markets.push(market.context("could not create a bench market")?.id);
    }
    Ok(markets)
}

/// The ledger breaches `verify` reports over the bench's markets (`usize::MAX` if one cannot
/// be verified).
async fn breaches(op: &mut Client, markets: &[i64]) -> anyhow::Result<usize> {
    let mut total = 0usize;
    for m in markets {
        let verify = op
            .call::<Value>(
                reqwest::Method::GET,
                &format!("/v1/markets/{m}/ledger/verify"),
                None,
            )
            .await?;
        let found = verify
            .as_ref()
            .and_then(|v| v["breaches"].as_array().map(Vec::len))
            .unwrap_or(usize::MAX);
        total = total.saturating_add(found);
    }
    Ok(total)
}

/// A seller and a buyer trading in one market.
struct Pair {
    market: i64,
    seller: Client,
    buyer: Client,
}

/// Registers `clients` seller and buyer pairs, pair i in market i mod N, spread over the servers.
async fn register_pairs(
    op: &mut Client,
    http: &reqwest::Client,
    bases: &[String],
    markets: &[i64],
    clients: usize,
) -> anyhow::Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for i in 0..clients {
        let m = markets[i % markets.len()];
        let mut tokens = Vec::new();
        for (k, role) in ["seller", "buyer"].into_iter().enumerate() {
            let p = op
                .call::<Value>(
                    reqwest::Method::POST,
                    &format!("/v1/markets/{m}/participants"),
                    Some(json!({"name": format!("{role} {i}"), "budget": 1_000_000_000_000i64})),
                )
                .await?;
            let token = p
                .as_ref()
                .and_then(|v| v["agent_token"].as_str())
                .context("could not register a participant")?
                .to_string();
            tokens.push(Client {
                http: http.clone(),
                // Pairs spread over the servers; with replicas, seller and buyer on two of them.
                base: bases[(i + k) % bases.len()].clone(),
                token,
                latencies: vec![],
                errors: 0,
            });
        }
        let buyer = tokens.pop().expect("two tokens");
        let seller = tokens.pop().expect("two tokens");
        pairs.push(Pair {
            market: m,
            seller,
            buyer,
        });
    }

    Ok(pairs)
}

/// Each pair negotiates until `seconds` have passed: every request's latency (ms), the errors,
/// the deals.
async fn drive(pairs: Vec<Pair>, seconds: u64) -> anyhow::Result<(Vec<f64>, u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(seconds.clamp(1, 3600));
    let mut tasks = Vec::new();
    for pair in pairs {
        tasks.push(tokio::spawn(async move {
            let Pair {
                market: m,
                mut seller,
                mut buyer,
            } = pair;
            let (mut after, mut deals, mut n) = (0i64, 0u64, 0u64);
            while Instant::now() < deadline {
                n += 1;
                if negotiate(m, &mut seller, &mut buyer, &mut after, n).await? {
                    deals += 1;
                }
            }
            anyhow::Ok((seller, buyer, deals))
        }));
    }
    let (mut latencies, mut errors, mut deals) = (Vec::new(), 0, 0);
    for t in tasks {
        let (s, b, d) = t.await??;
        for c in [s, b] {
            latencies.extend(c.latencies);
            errors += c.errors;
        }
        deals += d;
    }
    Ok((latencies, errors, deals))
}

/// What one `bench api` run counted besides its latencies.
struct ApiRun {
    wall: f64,
    errors: u64,
    deals: u64,
    breaches: usize,
    /// Commands per group commit (a server started here only).
    per_commit: Option<f64>,
}

/// Prints the figures of `bench api` as a table and as one JSON line (`latencies` sorted).
fn print_api(backend: &str, (clients, markets): (usize, usize), latencies: &[f64], run: ApiRun) {
    let ApiRun {
        wall,
        errors,
        deals,
        breaches,
        per_commit,
    } = run;
    let actions = latencies.len();
    let per_s = actions as f64 / wall;
    let (p50, p90, p99, max) = (
        percentile(latencies, 0.5),
        percentile(latencies, 0.9),
        percentile(latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0),
    );
    println!(
        "haggle bench api — {backend}, {clients} client pairs in {markets} market(s), {wall:.1} s"
    );
    println!("{:<22} {:>12}", "metric", "value");
    for (k, v) in [
        ("actions", actions.to_string()),
        ("actions/s", format!("{per_s:.0}")),
        ("deals", deals.to_string()),
        ("deals/s", format!("{:.0}", deals as f64 / wall)),
        ("errors (non-2xx)", errors.to_string()),
        ("p50 ms", format!("{p50:.2}")),
        ("p90 ms", format!("{p90:.2}")),
        ("p99 ms", format!("{p99:.2}")),
        ("max ms", format!("{max:.2}")),
        ("ledger breaches", breaches.to_string()),
        (
            "commands per commit",
            per_commit.map_or("-".into(), |c| format!("{c:.1}")),
        ),
    ] {
        println!("{k:<22} {v:>12}");
    }
    println!(
        "{}",
        json!({"backend": backend, "clients": clients, "markets": markets, "wall_s": wall, "actions": actions, "actions_per_s": per_s, "deals": deals, "errors": errors, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max, "ledger_breaches": breaches, "commands_per_commit": per_commit})
    );
}

#[derive(clap::Args)]
pub struct SimArgs {
    /// Participants of the large run (listings are five per participant).
    #[arg(long, default_value_t = 10_000)]
    participants: usize,
    /// Rounds of the large run (one simulated hour each).
    #[arg(long, default_value_t = 24)]
    rounds: u64,
    /// Skip the large run (only the 69-participant demo market).
    #[arg(long)]
    demo_only: bool,
    /// The random seed: the same seed gives the same run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also time every SQLite statement and print the 25 costliest to stderr (slows the runs a
    /// little: a clock read per statement).
    #[arg(long)]
    sql_profile: bool,
}

/// One simulated market, timed.
async fn sim_run(
    label: &str,
    scenario: haggle_lab::scenario::Scenario,
    rounds: u64,
    mode: crate::sim::Mode,
    database: String,
    seed: u64,
) -> anyhow::Result<serde_json::Value> {
    let participants = scenario.profiles.len();
    let listings: usize = scenario.profiles.iter().map(|p| p.sell.len()).sum();
    let brains: Vec<String> = crate::demo::DEFAULT_BRAINS
        .split(',')
        .map(str::to_string)
        .collect();
    let cfg = crate::sim::SimConfig {
        scenario,
        brains,
        seed,
        max_rounds: rounds,
        tick_ms: haggle_api::haggle_core::HOUR_MS,
        mode,
        database,
        factory: haggle_agents::registry::BrainFactory::new(
            haggle_agents::registry::LlmEnv::default(),
            std::sync::Arc::new(haggle_agents::llm::CallLog::discard()),
            "USD",
        ),
        withhold_leaks: false,
        rules: crate::sim::market_rules(),
        hide_reputation: false,
        sessions: Vec::new(),
        session_budget: Default::default(),
        outside: Default::default(),
        shipping: None,
    };
    reset_peak_memory();
    let started = Instant::now();
    // Wall time at the end of each round (setup is in the first), so a slow phase shows.
    let mut round_end_s = Vec::new();
    // A progress line at most every `PROGRESS_EVERY_S` (and after the last round).
    let mut shown = 0.0;
    let out = crate::sim::run(cfg, |p| {
        let elapsed = started.elapsed().as_secs_f64();
        round_end_s.push((elapsed * 100.0).round() / 100.0);
        if elapsed - shown >= PROGRESS_EVERY_S || p.round == p.max_rounds {
            shown = elapsed;
            progress_line(label, p, elapsed);
        }
    })
    .await?;
    let wall = started.elapsed().as_secs_f64();
    let turns: u64 = out.agents.iter().map(|a| a.stats.turns).sum();
    let actions: u64 = out.agents.iter().map(|a| a.stats.actions).sum();
    let deals = count_deals(out.svc.store(), out.market_id).await?;
    let v = out.svc.store().verify(out.market_id).await?;
    if !v.ok() {
        bail!(
            "{label}: the ledger did not verify: {}",
            v.breaches.join("; ")
        );
    }
    Ok(json!({
        "run": label, "participants": participants, "listings": listings, "deals": deals, "rounds": out.rounds,
        "agent_turns": turns, "actions": actions, "events": v.events, "wall_s": wall,
        "turns_per_s": turns as f64 / wall, "deals_per_s": deals as f64 / wall,
        "round_end_s": round_end_s, "peak_memory_mib": peak_memory_mib(),
    }))
}

/// Every deal of the market, a page at a time (100,000 participants make more than a page).
async fn count_deals(store: &haggle_store::Store, market: i64) -> anyhow::Result<usize> {
    const PAGE: u32 = haggle_api::haggle_core::limits::STORE_READ_ROWS;
    let (mut n, mut after) = (0, 0);
    loop {
        let page = store.deals(market, None, after, PAGE).await?;
        n += page.len();
        match page.last() {
            Some(d) if page.len() == PAGE as usize => after = d.id,
            _ => return Ok(n),
        }
    }
}

/// Seconds between progress lines of a run.
const PROGRESS_EVERY_S: f64 = 2.0;

/// A progress line on stderr, so a long run shows it is alive and how it grows (stdout
/// keeps only the table and the JSON).
fn progress_line(label: &str, p: &crate::sim::Progress, elapsed: f64) {
    let rss = resident_mib().map_or_else(|| "?".to_string(), |m| format!("{m:.0}"));
    eprintln!(
        "{label}: round {}/{} at {elapsed:.1} s: {} turns, {} deals, {} events, {rss} MiB resident",
        p.round, p.max_rounds, p.turns, p.deals, p.events
    );
}

/// A line of /proc/self/status in MiB (`VmHWM:`, `VmRSS:`; `None` where /proc is absent).
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

/// This process's resident memory now, in MiB.
fn resident_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

/// Starts a new peak of this process's resident memory (Linux: `clear_refs` 5 resets
/// `VmHWM`), so each run reports its own peak; elsewhere the peak is not reported.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident memory since the last reset, in MiB (`VmHWM`; `None` where
/// /proc is absent).
fn peak_memory_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

pub async fn sim(args: SimArgs) -> anyhow::Result<()> {
    use crate::sim::Mode;
    let tmp = std::env::temp_dir().join(format!("haggle-bench-sim-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    if args.sql_profile {
        haggle_store::sqlite_profile::enable();
    }
    let mut runs = Vec::new();
    let demo = haggle_lab::generator::generate(args.seed, 69, 10_000);
    runs.push(
        sim_run(
            "demo (69 participants, SQLite file, round-based)",
            demo,
            168,
            Mode::Rounds,
            format!("sqlite://{}", tmp.join("demo.db").display()),
            args.seed,
        )
        .await?,
    );
    if !args.demo_only {
        let mut big = haggle_lab::generator::generate(
            args.seed,
            args.participants.clamp(2, 1_000_000),
            10_000,
        );
        for p in big.profiles.iter_mut() {
            p.sell.truncate(5);
        }
        runs.push(
            sim_run(
                "large (SQLite file, event-driven)",
                big,
                args.rounds,
                Mode::Events,
                format!("sqlite://{}", tmp.join("large.db").display()),
                args.seed,
            )
            .await?,
        );
    }
    if args.sql_profile {
        print_sql_profile();
    }
    let _ = std::fs::remove_dir_all(&tmp);
    print_sim_runs(&runs);
    Ok(())
}

/// The SQLite statements that took the most time over all runs (`--sql-profile`), on stderr.
fn print_sql_profile() {
    let report = haggle_store::sqlite_profile::report();
    let total: u128 = report.iter().map(|e| e.2).sum();
    eprintln!("SQLite statements, all runs: {:.2} s", total as f64 / 1e9);
    eprintln!(
        "{:>9} {:>10} {:>9}  statement",
        "total s", "runs", "µs each"
    );
    for (sql, n, ns) in report.iter().take(25) {
        let text: String = sql.chars().take(160).collect();
        eprintln!(
            "{:>9.2} {n:>10} {:>9.1}  {text}",
            *ns as f64 / 1e9,
            *ns as f64 / 1e3 / *n as f64
        );
    }
}

/// The figures of `bench sim`: a table of the runs, then one JSON line.
fn print_sim_runs(runs: &[Value]) {
    println!("haggle bench sim");
    println!(
        "{:<50} {:>12} {:>9} {:>7} {:>8} {:>10} {:>10} {:>10}",
        "run", "participants", "listings", "deals", "wall s", "turns/s", "deals/s", "peak MiB"
    );
    for r in runs {
        println!(
            "{:<50} {:>12} {:>9} {:>7} {:>8.2} {:>10.0} {:>10.1} {:>10}",
            r["run"].as_str().unwrap_or(""),
            r["participants"].as_u64().unwrap_or(0),
            r["listings"].as_u64().unwrap_or(0),
            r["deals"].as_u64().unwrap_or(0),
            r["wall_s"].as_f64().unwrap_or(0.0),
            r["turns_per_s"].as_f64().unwrap_or(0.0),
            r["deals_per_s"].as_f64().unwrap_or(0.0),
            r["peak_memory_mib"]
                .as_f64()
                .map_or("-".to_string(), |m| format!("{m:.0}"))
        );
    }
    println!("{}", json!({ "runs": runs }));
}

#[derive(clap::Args)]
pub struct LlmBenchArgs {
    /// Participants, every one on an `openai:` brain talking to the stand-in model server.
    #[arg(long, default_value_t = 69)]
    participants: usize,
    /// The stand-in's latency per call, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    latency_ms: u64,
    /// Model calls in flight at once in the market (`--llm-concurrency`).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Rounds of the market (one simulated hour each); each takes a few latencies.
    #[arg(long, default_value_t = 12)]
    rounds: u64,
    /// The random seed: the same seed gives the same run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// `rounds` or `events`.
    #[arg(long, default_value = "rounds")]
    mode: String,
}

/// CPU time (user + system) this process has used.
#[allow(unsafe_code)]
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given and touches nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// `haggle bench llm`: a market of LLM agents against the stand-in model server (`standin.rs`),
/// timed against the ideal of calls × latency ÷ concurrency.
pub async fn llm(args: LlmBenchArgs) -> anyhow::Result<()> {
    let latency = Duration::from_millis(args.latency_ms);
    let server = crate::standin::start(crate::standin::Behaviour {
        latency,
        ..Default::default()
    })
    .await
    .context("cannot start the stand-in model server")?;
    let tmp = std::env::temp_dir().join(format!("haggle-bench-llm-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let concurrency = args.concurrency.max(1);
    let db = format!("sqlite://{}", tmp.join("llm.db").display());
    let cfg = llm_sim_config(&args, &server.base, db, concurrency)?;
    eprintln!(
        "haggle bench llm: {} participants on the stand-in model ({} ms a call), {} calls at once, up to {} rounds",
        args.participants, args.latency_ms, concurrency, args.rounds
    );
    let (started, cpu0) = (Instant::now(), cpu_time());
    // Calls made by the end of each round: a round ends only when its last call returned.
    let mut calls_at_round_end = Vec::new();
    let out = crate::sim::run(cfg, |p| {
        calls_at_round_end.push(
            server
                .counts
                .calls
                .load(std::sync::atomic::Ordering::SeqCst),
        );
        eprintln!(
            "round {:>3}/{}  deals {:>4}  {:.1} s",
            p.round,
            p.max_rounds,
            p.deals,
            started.elapsed().as_secs_f64()
        )
    })
    .await?;
    let (wall, cpu) = (
        started.elapsed().as_secs_f64(),
        (cpu_time() - cpu0).as_secs_f64(),
    );
    let v = out.svc.store().verify(out.market_id).await?;
    if !v.ok() {
        bail!("the ledger did not verify: {}", v.breaches.join("; "));
    }
    let deals = out
        .svc
        .store()
        .deals(out.market_id, None, 0, 10_000)
        .await?
        .len();
    let counts = &server.counts;
    let calls = counts.calls.load(std::sync::atomic::Ordering::SeqCst);
    let peak = counts
        .peak_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    let ideal = calls as f64 * latency.as_secs_f64() / concurrency as f64;
    // With a barrier at each round's end, a round takes at least ceil(its calls ÷ concurrency)
    // latencies: the best this scheduler can do, against which Haggle's own cost shows.
    calls_at_round_end.push(calls);
    let round_bound = round_bound(&calls_at_round_end, concurrency, latency);
    let tool_calls: u64 = out.agents.iter().map(|a| a.stats.tool_calls).sum();
    let _ = std::fs::remove_dir_all(&tmp);
    LlmFigures {
        participants: args.participants,
        latency_ms: args.latency_ms,
        concurrency,
        rounds: out.rounds,
        calls,
        tool_calls,
        peak,
        peak_turns: out.peak_turns,
        wall,
        ideal,
        round_bound,
        cpu,
        deals,
    }
    .print();
    Ok(())
}

/// The market of `bench llm`: every participant on the stand-in model at `base`.
fn llm_sim_config(
    args: &LlmBenchArgs,
    base: &str,
    db: String,
    concurrency: usize,
) -> anyhow::Result<crate::sim::SimConfig> {
    let scenario =
        haggle_lab::generator::generate(args.seed, args.participants.clamp(2, 10_000), 10_000);
    let brain = format!("openai:stand-in@{base}");
    let mut factory = haggle_agents::registry::BrainFactory::new(
        haggle_agents::registry::LlmEnv::default(),
        Arc::new(haggle_agents::llm::CallLog::discard()),
        &scenario.currency,
    );
    factory.spend = Some(Arc::new(haggle_agents::spend::SpendGuard::new(
        concurrency,
        None,
        0,
    )));
    Ok(crate::sim::SimConfig {
        scenario,
        brains: vec![brain],
        seed: args.seed,
        max_rounds: args.rounds.clamp(1, 10_000),
        tick_ms: haggle_api::haggle_core::HOUR_MS,
        mode: crate::demo::parse_mode(&args.mode)?,
        database: db,
        factory,
        withhold_leaks: false,
        rules: crate::sim::market_rules(),
        hide_reputation: false,
        sessions: Vec::new(),
        session_budget: Default::default(),
        outside: Default::default(),
        shipping: None,
    })
}

/// The least wall time a barrier at each round's end allows: each round takes at least
/// ceil(its calls ÷ concurrency) latencies (`calls_at_round_end`: the running count of calls).
fn round_bound(calls_at_round_end: &[u64], concurrency: usize, latency: Duration) -> f64 {
    let mut before = 0;
    let mut bound = 0.0;
    for &c in calls_at_round_end {
        bound += (c - before).div_ceil(concurrency as u64) as f64 * latency.as_secs_f64();
        before = c;
    }
    bound
}

/// What `bench llm` measured.
struct LlmFigures {
    participants: usize,
    latency_ms: u64,
    concurrency: usize,
    rounds: u64,
    calls: u64,
    tool_calls: u64,
    peak: usize,
    peak_turns: usize,
    wall: f64,
    ideal: f64,
    round_bound: f64,
    cpu: f64,
    deals: usize,
}

impl LlmFigures {
    /// A table, then one JSON line.
    fn print(&self) {
        let calls = self.calls;
        let per_call = |s: f64| {
            if calls == 0 {
                0.0
            } else {
                s * 1000.0 / calls as f64
            }
        };
        println!("haggle bench llm");
        println!("{:<36} {:>12}", "participants", self.participants);
        println!("{:<36} {:>12}", "rounds", self.rounds);
        println!("{:<36} {:>12}", "model calls", self.calls);
        println!(
            "{:<36} {:>12}",
            "tool calls (market reads and writes)", self.tool_calls
        );
        println!("{:<36} {:>12}", "peak calls in flight", self.peak);
        println!("{:<36} {:>12}", "peak turns in flight", self.peak_turns);
        println!("{:<36} {:>12.1}", "wall time s", self.wall);
        println!("{:<36} {:>12.1}", "ideal wall time s", self.ideal);
        println!(
            "{:<36} {:>12.2}",
            "wall / ideal",
            self.wall / self.ideal.max(1e-9)
        );
        println!(
            "{:<36} {:>12.1}",
            "round-bound wall time s", self.round_bound
        );
        println!(
            "{:<36} {:>12.2}",
            "haggle CPU ms per call",
            per_call(self.cpu)
        );
        println!("{:<36} {:>12}", "deals", self.deals);
        println!(
            "{}",
            json!({
                "participants": self.participants, "rounds": self.rounds, "latency_ms": self.latency_ms,
                "concurrency": self.concurrency, "calls": calls, "tool_calls": self.tool_calls,
                "peak_in_flight": self.peak, "peak_turns": self.peak_turns, "wall_s": self.wall,
                "ideal_wall_s": self.ideal, "round_bound_wall_s": self.round_bound,
                "overhead_ms_per_call": per_call(self.cpu), "deals": self.deals,
            })
        );
    }
}
