//! `haggle bench search`: fills a market with listings from the demo catalogue (50,000 by
//! default) and times listing searches (whole words, a starred prefix, no match, ranked by
//! relevance or not, with and without a category and side) on SQLite as a server reads it, on a simulation's shelves, and on
//! PostgreSQL when given one; prints p50 and p99 per search and, last, a JSON line.

use anyhow::{Context, bail};
use haggle_core::negotiation::NewListing;
use haggle_core::{ClockMode, Mandate, MarketRules, Side};
use haggle_store::{Command, ListingQuery, ListingSort, NewMarket, Outcome, Ran, Store};
use serde_json::json;
use std::time::Instant;

#[derive(clap::Args)]
pub struct SearchArgs {
    /// Listings in the market (from the demo catalogue, a third of them wanted ads).
    #[arg(long, default_value_t = 50_000)]
    listings: usize,
    /// Times each search is run.
    #[arg(long, default_value_t = 200)]
    searches: usize,
    /// Also a PostgreSQL database to fill and search (a scratch one: a market is added to it).
    #[arg(long)]
    postgres: Option<String>,
    /// The random seed: the same seed gives the same run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// The searches timed: a name and its query (page size 50, newest first unless it says:
/// `relevance` is the default order of a search with words).
fn searches() -> Vec<(&'static str, ListingQuery)> {
    let q = |text: Option<&str>, category: Option<&str>, side: Option<Side>, sort| ListingQuery {
        q: text.map(str::to_string),
        category: category.map(str::to_string),
        side,
        sort: Some(sort),
        limit: Some(50),
        ..ListingQuery::default()
    };
    let ranked = |text: &str| ListingQuery {
        q: Some(text.to_string()),
        limit: Some(50),
        ..ListingQuery::default()
    };
    vec![
        ("q=bike (whole market, relevance)", ranked("bike")),
        (
            "q=oak table* (whole market, relevance)",
            ranked("oak table*"),
        ),
        ("q=zzyzx (no match, relevance)", ranked("zzyzx")),
        (
            "q=zzyzx (no match, newest)",
            q(Some("zzyzx"), None, None, ListingSort::Newest),
        ),
        (
            "q=bike (whole market)",
            q(Some("bike"), None, None, ListingSort::Newest),
        ),
        (
            "q=table (whole market)",
            q(Some("table"), None, None, ListingSort::Newest),
        ),
        (
            "q=cook* (whole market)",
            q(Some("cook*"), None, None, ListingSort::Newest),
        ),
        (
            "q=road bike, bikes, sell",
            q(
                Some("road bike"),
                Some("bikes"),
                Some(Side::Sell),
                ListingSort::Newest,
            ),
        ),
        (
            "q=coffee*, kitchen, sell, cheapest",
            q(
                Some("coffee*"),
                Some("kitchen"),
                Some(Side::Sell),
                ListingSort::Cheapest,
            ),
        ),
        (
            "no q, books, sell",
            q(None, Some("books"), Some(Side::Sell), ListingSort::Newest),
        ),
    ]
}

/// A seeded step of a 64-bit linear congruential generator, for picks that repeat by seed.
fn next(seed: &mut u64, n: usize) -> usize {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((*seed >> 33) % n as u64) as usize
}

async fn run(store: &Store, market: i64, cmd: Command) -> anyhow::Result<Outcome> {
    match store.run(market, 0, cmd, None).await? {
        Ran::Fresh { result, .. } => Ok(result?),
        other => bail!("a command without a key ran as {other:?}"),
    }
}

/// Creates a market with 100 participants and `n` listings; returns the market's id.
async fn fill(store: &Store, n: usize, seed: u64) -> anyhow::Result<i64> {
    let market = store
        .create_market(
            NewMarket {
                name: "bench search".into(),
                currency: "USD".into(),
                clock_mode: ClockMode::Real,
                sim_start: 0,
                rules: MarketRules::default(),
            },
            0,
        )
        .await?
        .id;
    let mut owners = Vec::new();
    for i in 0..100 {
        let cmd = Command::RegisterParticipant {
            name: format!("p{i}"),
            mandate: Mandate::default(),
            budget: 0,
        };
        match run(store, market, cmd).await? {
            Outcome::Participant(p) => owners.push(p.id),
            o => bail!("expected a participant, got {o:?}"),
        }
    }
    let catalogue = haggle_lab::generator::CATALOGUE;
    let mut seed = seed;
    for i in 0..n {
        let kind = &catalogue[next(&mut seed, catalogue.len())];
        let side = if next(&mut seed, 3) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let title = kind.titles[next(&mut seed, kind.titles.len())];
        let listing = NewListing {
            side,
            title: if side == Side::Buy {
                format!("Wanted: {title}")
            } else {
                title.to_string()
            },
            description: kind.details[next(&mut seed, kind.details.len())].to_string(),
            category: kind.category.to_string(),
            condition: "used".into(),
            price: kind.reference / 2 + 100 * next(&mut seed, 100) as i64,
            attributes: Default::default(),
            claims: Default::default(),
            true_state: None,
            fulfilment: Default::default(),
            true_transit: None,
        };
        let cmd = Command::CreateListing {
            actor: owners[i % owners.len()],
            listing,
        };
        run(store, market, cmd)
            .await
            .with_context(|| format!("listing {i}"))?;
    }
    store.flush().await?;
    Ok(market)
}

/// Runs each search `times` times (once first, untimed, to warm caches); p50 and p99 in ms.
async fn time(store: &Store, market: i64, times: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for (name, q) in searches() {
        let found = store.search_listings(market, &q).await?.items.len();
        let mut ms = Vec::with_capacity(times);
        for _ in 0..times {
            let t = Instant::now();
            store.search_listings(market, &q).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
        out.push(json!({ "search": name, "found": found, "p50_ms": at(0.5), "p99_ms": at(0.99) }));
    }
    Ok(out)
}

pub async fn search(args: SearchArgs) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("haggle-bench-search-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let url = format!("sqlite://{}", tmp.join("search.db").display());
    let mut runs = Vec::new();
    let started = Instant::now();
    // Filled by a simulation's store (its batches commit fast); searched as a server reads the
    // file (SQL), then as a simulation does (its shelves, filled on the first search).
    // The batched store holds the file exclusively: it is closed before the server opens it.
    let batched = Store::open_batched(&url, 500).await?;
    let market = fill(&batched, args.listings, args.seed).await?;
    batched.flush().await?;
    drop(batched);
    let fill_s = started.elapsed().as_secs_f64();
    let server = Store::open(&url).await?;
    runs.push(json!({ "store": "SQLite (server)", "fill_s": fill_s, "searches": time(&server, market, args.searches).await? }));
    drop(server);
    let batched = Store::open_batched(&url, 500).await?;
    runs.push(json!({ "store": "SQLite (simulation shelves)", "searches": time(&batched, market, args.searches).await? }));
    drop(batched);
    if let Some(pg) = &args.postgres {
        let store = Store::open(pg).await?;
        let started = Instant::now();
        let market = fill(&store, args.listings, args.seed).await?;
        let fill_s = started.elapsed().as_secs_f64();
        runs.push(json!({ "store": "PostgreSQL", "fill_s": fill_s, "searches": time(&store, market, args.searches).await? }));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    println!(
        "haggle bench search: {} listings, {} runs of each search",
        args.listings, args.searches
    );
    println!(
        "{:<30} {:<38} {:>6} {:>9} {:>9}",
        "store", "search", "found", "p50 ms", "p99 ms"
    );
    for r in &runs {
        for s in r["searches"].as_array().into_iter().flatten() {
            println!(
                "{:<30} {:<38} {:>6} {:>9.3} {:>9.3}",
                r["store"].as_str().unwrap_or(""),
                s["search"].as_str().unwrap_or(""),
                s["found"].as_u64().unwrap_or(0),
                s["p50_ms"].as_f64().unwrap_or(0.0),
                s["p99_ms"].as_f64().unwrap_or(0.0)
            );
        }
    }
    println!("{}", json!({ "listings": args.listings, "runs": runs }));
    Ok(())
}
