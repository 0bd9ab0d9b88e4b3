//! The `haggle` command: serve the API, create markets and tokens, verify ledgers, run benchmarks.
//! The binary's edge: errors become one clear line on stderr and a non-zero exit.

mod agent_cmd;
mod agent_lines;
mod bench;
mod bench_search;
mod calibrate;
mod channel_cmd;
mod config;
mod demo;
mod estimate;
mod eval;
mod experiment;
mod external;
mod interview;
mod llm_args;
mod mcp_cmd;
mod moderation_cmd;
mod report;
mod results;
mod sim;
mod standin;
#[cfg(test)]
mod tidy;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use haggle_core::model::{ClockMode, MarketRules, parse_duration, parse_utc};
use haggle_service::{Caller, Config, Role, Service, Store, SystemClock};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "haggle",
    version,
    about = "A classified-ads marketplace where AI agents buy and sell"
)]
struct Cli {
    /// Optional TOML config file of the server and database commands, with `listen`, `database`
    /// and `rate_limit` (default: ./haggle.toml if present); given before the command:
    /// `haggle --config FILE serve`.
    #[arg(long, env = "HAGGLE_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum SettlementCmd {
    /// Lists every deal whose payment at the provider differs from the ledger (asking the
    /// provider for each; `HAGGLE_STRIPE_SECRET_KEY` and `HAGGLE_STRIPE_BASE_URL` as for `serve`)
    /// and exits non-zero if there is one.
    Reconcile {
        /// The market's id.
        #[arg(long)]
        market: i64,
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Markets.
    Market {
        #[command(subcommand)]
        command: MarketCmd,
    },
    /// Bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// The ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCmd,
    },
    /// Benchmarks that print the figures the issues ask for.
    Bench {
        #[command(subcommand)]
        command: BenchCmd,
    },
    /// Run a whole simulated office market of agents and write its report.
    Demo(demo::DemoArgs),
    /// Evaluate an agent on the standard markets of the suite and write its scorecard
    /// (`haggle eval compare` sets scorecards side by side).
    Eval(eval::EvalArgs),
    /// Set up a participant's profile by talking to an LLM (or `--form`), and write it.
    Interview(interview::InterviewArgs),
    /// Serve one agent's market as an MCP server on stdin/stdout (for desktop MCP clients).
    Mcp(mcp_cmd::McpArgs),
    /// Experiments: several markets side by side, compared honestly.
    Experiment {
        #[command(subcommand)]
        command: experiment::ExperimentCmd,
    },
    /// Agents.
    Agent {
        #[command(subcommand)]
        command: AgentCmd,
    },
    /// The settlement report: the per-deal handover list and each participant's net position
    /// (and, in a market with a payment provider, the payouts per deal and per seller).
    #[command(args_conflicts_with_subcommands = true)]
    Settlement(SettlementArgs),
    /// Disputes.
    Dispute {
        #[command(subcommand)]
        command: DisputeCmd,
    },
    /// A market's chat channel: market news posted to a Slack or Mattermost incoming webhook.
    Channel {
        #[command(subcommand)]
        command: channel_cmd::ChannelCmd,
    },
    /// The market policy: prohibited categories and terms, price bounds, rate limits.
    Policy {
        #[command(subcommand)]
        command: moderation_cmd::PolicyCmd,
    },
    /// The moderation queue: held listings to approve or remove, and removing active ones.
    Moderation {
        #[command(subcommand)]
        command: moderation_cmd::ModerationCmd,
    },
    /// Participants: suspend and reinstate.
    Participant {
        #[command(subcommand)]
        command: moderation_cmd::ParticipantCmd,
    },
    /// Print the price table of model calls in use (built-in list prices, with their date, and
    /// any --prices FILE over them).
    Prices {
        /// A TOML price table over the built-in one (`as_of = "YYYY-MM-DD"`, then
        /// `[models."NAME"] input = ..., output = ...` in µUSD per million tokens).
        #[arg(long)]
        prices: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// One agent joins a market on any Haggle server and trades.
    Run(agent_cmd::AgentArgs),
}

#[derive(Subcommand)]
enum DisputeCmd {
    /// Resolve a disputed deal as the operator: release to the seller, refund the buyer, or split.
    Resolve(ResolveArgs),
}

// The options of `haggle serve` (its doc is the variant's).
#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "HAGGLE_LISTEN")]
    listen: Option<String>,
    #[command(flatten)]
    db: DbArg,
    /// Requests per second per token (0 = unlimited; default 2000).
    #[arg(long, env = "HAGGLE_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// A folder of experiment or demo reports to browse at /reports/ (operators, observers).
    #[arg(long, env = "HAGGLE_REPORTS")]
    reports: Option<std::path::PathBuf>,
    /// The address people reach this server at, e.g. https://haggle.example.org behind a
    /// TLS proxy: an https:// one marks the session cookie Secure.
    #[arg(long, env = "HAGGLE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Accept webhooks to loopback, private and link-local addresses (refused by default:
    /// they would let an operator make this server call into its own network).
    #[arg(long)]
    allow_private_webhooks: bool,
    /// How often live streams also look for new events, in ms (they wake at once on this
    /// server's writes and, on PostgreSQL, on other replicas' announcements).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    feed_poll_ms: u64,
}

// The options of `haggle settlement` (its doc is the variant's).
#[derive(clap::Args)]
struct SettlementArgs {
    #[command(subcommand)]
    command: Option<SettlementCmd>,
    /// The market's id.
    #[arg(long)]
    market: Option<i64>,
    /// `json` (one document on stdout) or `csv` (two files written to --out).
    #[arg(long, default_value = "json")]
    format: String,
    /// Folder for `deals.csv` and `positions.csv` (with --format csv; default: the working directory).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[command(flatten)]
    db: DbArg,
}

// The options of `haggle dispute resolve`.
#[derive(clap::Args)]
struct ResolveArgs {
    /// The market's id.
    #[arg(long)]
    market: i64,
    /// The deal's id.
    #[arg(long)]
    deal: i64,
    /// `release`, `refund` or `split`.
    #[arg(long)]
    ruling: String,
    /// With `split`: minor units back to the buyer (the rest goes to the seller).
    #[arg(long)]
    to_buyer: Option<i64>,
    /// The operator's note on the ruling, shown to both sides.
    #[arg(long, default_value = "")]
    note: String,
    #[command(flatten)]
    db: DbArg,
}

// The options of `haggle market create`.
#[derive(clap::Args)]
struct CreateMarketArgs {
    /// The market's name, shown on its pages.
    #[arg(long)]
    name: String,
    /// The ISO 4217 code of the market's money, e.g. USD or EUR (amounts are in its minor unit).
    #[arg(long, default_value = "USD")]
    currency: String,
    /// `real` or `simulated`.
    #[arg(long, default_value = "real")]
    clock: String,
    /// Market rules as a TOML or JSON file (fields of MarketRules; missing ones take defaults).
    #[arg(long)]
    rules: Option<std::path::PathBuf>,
    /// Close the market this long after it starts: `7d`, `12h`, `2d4h` (default: open-ended).
    #[arg(long, conflicts_with = "closes_at")]
    closes_in: Option<String>,
    /// Close the market at this UTC time: `2026-01-12 09:00`.
    #[arg(long)]
    closes_at: Option<String>,
    #[command(flatten)]
    db: DbArg,
}

// The options of `haggle token create`.
#[derive(clap::Args)]
struct CreateTokenArgs {
    /// operator, observer, agent or principal.
    #[arg(long)]
    role: String,
    /// The market (required for observer, agent and principal; optional for operator).
    #[arg(long)]
    market: Option<i64>,
    /// The participant (agent and principal tokens).
    #[arg(long)]
    participant: Option<i64>,
    /// A note to tell the token apart later (stored with it).
    #[arg(long, default_value = "")]
    label: String,
    #[command(flatten)]
    db: DbArg,
}

// The options of `haggle token revoke`.
#[derive(clap::Args)]
struct RevokeTokenArgs {
    /// The token's id (the hex SHA-256 of its secret, `token_id` when it was created).
    #[arg(long, required_unless_present = "secret", conflicts_with = "secret")]
    id: Option<String>,
    /// The token's secret itself.
    #[arg(long)]
    secret: Option<String>,
    #[command(flatten)]
    db: DbArg,
}

#[derive(clap::Args, Clone)]
struct DbArg {
    /// `sqlite://PATH` or `postgres://...` (default: sqlite://haggle.db in the working directory).
    #[arg(long, env = "HAGGLE_DATABASE_URL")]
    database: Option<String>,
}

#[derive(Subcommand)]
enum MarketCmd {
    /// Create a market and print it as JSON.
    Create(CreateMarketArgs),
    /// List markets as JSON.
    List {
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token and print its secret (it is stored only as a hash).
    Create(CreateTokenArgs),
    /// Revoke a token: it stops authenticating, and running servers end its live streams and
    /// MCP sessions within seconds. Prints the revoked token (without its secret).
    Revoke(RevokeTokenArgs),
}

#[derive(Subcommand)]
enum LedgerCmd {
    /// Check every ledger and hash-chain invariant; exits non-zero on any breach.
    Verify {
        /// Only this market (default: all).
        #[arg(long)]
        market: Option<i64>,
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Drive the HTTP API of a fresh server on this database with a mixed negotiation workload.
    Api(bench::ApiArgs),
    /// Simulated market throughput: the demo market and a large one, with rule brains.
    Sim(bench::SimArgs),
    /// Listing search latency (p50, p99) in a market of 50,000 listings, on SQLite (server and
    /// simulation) and PostgreSQL if given.
    Search(bench_search::SearchArgs),
    /// A market of LLM agents against a stand-in model server with a set latency: calls, calls
    /// in flight, wall time against the ideal, Haggle's overhead per call.
    Llm(bench::LlmBenchArgs),
}

/// Simulations allocate and free many small rows and JSON values per agent turn; mimalloc takes
/// a fraction of glibc malloc's time for them (measured in `bench sim`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Behave like a Unix tool when the reader of stdout goes away (`haggle ... | head`): exit
    // quietly instead of panicking on a broken pipe.
    #[cfg(unix)]
    #[allow(unsafe_code)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // HTTPS (LLM providers) uses rustls with ring; every reqwest client needs the provider
    // (also libraries' own clients, such as rmcp's).
    haggle_tls::install_provider();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        rt.block_on(remove_stray_databases());
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, each cause once: many errors repeat their source in
/// their own message, and some (TOML, SQL) span several lines.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn open(cfg: &config::File, db: &DbArg) -> anyhow::Result<Store> {
    let url = config::database_url(cfg, db.database.as_deref());
    if let Some(path) = sqlite_file(&url)
        && !path.exists()
        && let Ok(mut created) = CREATED.lock()
    {
        created.push(path);
    }
    Store::open(&url)
        .await
        .with_context(|| format!("cannot open database {url}"))
}

/// SQLite files this command created (they did not exist when it opened them).
static CREATED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// The file of a `sqlite://PATH` / `sqlite:PATH` URL (none for in-memory ones and PostgreSQL).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:" && !url.contains("mode=memory")).then(|| path.into())
}

/// After a refused command: removes the SQLite databases it created that hold no market (a
/// refusal leaves no stray `haggle.db` behind), keeping any that something was written to.
async fn remove_stray_databases() {
    let created = CREATED.lock().map(|c| c.clone()).unwrap_or_default();
    for path in created {
        let url = format!("sqlite://{}", path.display());
        let empty = match Store::open(&url).await {
            Ok(store) => store.markets().await.is_ok_and(|m| m.is_empty()),
            Err(_) => true,
        };
        if empty {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
}

/// Puts Stripe behind payment markets when `HAGGLE_STRIPE_SECRET_KEY` is set (the key stays in
/// memory, never stored or logged); whether it did.
fn attach_payment_provider(svc: &Service) -> bool {
    use haggle_service::payments::{STRIPE_WEBHOOK_SECRET_ENV, Stripe};
    let Some(stripe) = Stripe::from_env() else {
        return false;
    };
    let webhook_secret = std::env::var(STRIPE_WEBHOOK_SECRET_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    svc.set_payment_provider(Arc::new(stripe), webhook_secret);
    true
}

fn cli_operator() -> Caller {
    Caller {
        role: Role::Operator,
        market: None,
        participant: None,
        scope: "cli".into(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = config::load(cli.config.as_deref())?;
    match cli.command {
        Cmd::Serve(args) => serve(args, &cfg).await?,
        Cmd::Market { command } => market(command, &cfg).await?,
        Cmd::Token { command } => token(command, &cfg).await?,
        Cmd::Ledger { command } => ledger(command, &cfg).await?,
        Cmd::Bench { command } => bench(command, &cfg).await?,
        Cmd::Demo(args) => demo::run(args).await?,
        Cmd::Eval(args) => eval::run(args).await?,
        Cmd::Prices { prices } => prices_cmd(prices)?,
        Cmd::Interview(args) => interview::run(args).await?,
        Cmd::Mcp(args) => mcp_cmd::run(args).await?,
        Cmd::Agent { command } => agent(command).await?,
        Cmd::Experiment { command } => experiment::run(command).await?,
        Cmd::Channel { command } => channel_cmd::run(command, &cfg).await?,
        Cmd::Policy { command } => moderation_cmd::policy(command, &cfg).await?,
        Cmd::Moderation { command } => moderation_cmd::moderation(command, &cfg).await?,
        Cmd::Participant { command } => moderation_cmd::participant(command, &cfg).await?,
        Cmd::Settlement(args) => settlement(args, &cfg).await?,
        Cmd::Dispute { command } => dispute(command, &cfg).await?,
    }
    Ok(())
}

/// `haggle serve`: the HTTP API and the web pages, until Ctrl-C.
async fn serve(args: ServeArgs, cfg: &config::File) -> anyhow::Result<()> {
    let ServeArgs {
        listen,
        db,
        rate_limit,
        reports,
        public_url,
        allow_private_webhooks,
        feed_poll_ms,
    } = args;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let listen = listen
        .or(cfg.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let store = open(cfg, &db).await?;
    let config = Config {
        rate_per_sec: rate_limit
            .or(cfg.rate_limit)
            .unwrap_or(Config::default().rate_per_sec),
        allow_private_webhooks,
        feed_poll: std::time::Duration::from_millis(feed_poll_ms),
    };
    let svc = Service::new(store, Arc::new(SystemClock), config);
    svc.set_public_url(public_url.as_deref());
    if attach_payment_provider(&svc) {
        tracing::info!("payments: Stripe behind markets created with rules.payments");
    }
    svc.spawn_sweeper(std::time::Duration::from_secs(1));
    svc.spawn_event_listener();
    svc.spawn_webhooks(std::time::Duration::from_secs(1));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    if let Some(dir) = &reports
        && !dir.is_dir()
    {
        bail!("--reports {} is not a folder", dir.display());
    }
    eprintln!(
        "haggle: serving {} on http://{} (web pages at /, OpenAPI at /openapi.json)",
        svc.store().backend_name(),
        listener.local_addr()?
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let mcp_shutdown = haggle_http::CancellationToken::new();
    let app = haggle_http::app(svc.clone(), mcp_shutdown.clone()).merge(haggle_web::router(
        svc,
        haggle_web::WebOptions {
            reports,
            public_url,
        },
    ));
    haggle_http::serve_app(listener, app, mcp_shutdown, shutdown).await?;
    Ok(())
}

/// `haggle market ...`.
async fn market(command: MarketCmd, cfg: &config::File) -> anyhow::Result<()> {
    match command {
        MarketCmd::Create(args) => create_market(args, cfg).await,
        MarketCmd::List { db } => {
            let store = open(cfg, &db).await?;
            println!("{}", serde_json::to_string_pretty(&store.markets().await?)?);
            Ok(())
        }
    }
}

/// `haggle market create`: prints the market as JSON.
async fn create_market(args: CreateMarketArgs, cfg: &config::File) -> anyhow::Result<()> {
    let CreateMarketArgs {
        name,
        currency,
        clock,
        rules,
        closes_in,
        closes_at,
        db,
    } = args;
    let clock = ClockMode::parse(&clock)
        .with_context(|| format!("--clock must be real or simulated, got '{clock}'"))?;
    let mut rules: Option<MarketRules> = match rules {
        None => None,
        Some(path) => Some(config::read_rules(&path)?),
    };
    let svc = Service::new(
        open(cfg, &db).await?,
        Arc::new(SystemClock),
        Config::default(),
    );
    attach_payment_provider(&svc);
    // Both clocks start now, so a closing time "in 7d" counts from now either way.
    let close =
        match (closes_in, closes_at) {
            (Some(d), _) => Some(svc.now().saturating_add(parse_duration(&d).with_context(
                || format!("--closes-in must be a duration like 7d, 12h or 2d4h, got '{d}'"),
            )?)),
            (None, Some(t)) => Some(parse_utc(&t).with_context(|| {
                format!("--closes-at must be a UTC time like '2026-01-12 09:00', got '{t}'")
            })?),
            (None, None) => None,
        };
    if close.is_some() {
        rules.get_or_insert_with(MarketRules::default).closes_at = close;
    }
    let req = haggle_api::CreateMarket {
        name,
        currency,
        clock: Some(clock),
        sim_start_ms: None,
        rules,
    };
    let reply = svc
        .create_market(&cli_operator(), req, None)
        .await
        .map_err(api_error)?;
    println!("{}", reply.body);
    Ok(())
}

/// `haggle token ...`.
async fn token(command: TokenCmd, cfg: &config::File) -> anyhow::Result<()> {
    match command {
        TokenCmd::Create(args) => create_token(args, cfg).await,
        TokenCmd::Revoke(args) => revoke_token(args, cfg).await,
    }
}

/// `haggle token create`: prints the secret.
async fn create_token(args: CreateTokenArgs, cfg: &config::File) -> anyhow::Result<()> {
    let CreateTokenArgs {
        role,
        market,
        participant,
        label,
        db,
    } = args;
    let role = Role::parse(&role).with_context(|| {
        format!("--role must be operator, observer, agent or principal, got '{role}'")
    })?;
    let store = open(cfg, &db).await?;
    if role != Role::Operator && market.is_none() {
        bail!("--market is required for {} tokens", role.as_str());
    }
    if let Some(m) = market {
        store
            .market(m)
            .await?
            .with_context(|| format!("market {m} not found"))?;
    }
    if matches!(role, Role::Agent | Role::Principal) {
        let (Some(m), Some(p)) = (market, participant) else {
            bail!("--participant is required for {} tokens", role.as_str())
        };
        store
            .participant(m, p)
            .await?
            .with_context(|| format!("participant {p} not found in market {m}"))?;
    }
    let svc = Service::new(store, Arc::new(SystemClock), Config::default());
    let secret = svc
        .create_token(role, market, participant, &label)
        .await
        .map_err(api_error)?;
    println!("{secret}");
    Ok(())
}

/// `haggle token revoke`: prints the revoked token (without its secret).
async fn revoke_token(args: RevokeTokenArgs, cfg: &config::File) -> anyhow::Result<()> {
    let RevokeTokenArgs { id, secret, db } = args;
    let id = match (id, secret) {
        (Some(id), _) => id.trim().to_ascii_lowercase(),
        (None, Some(secret)) => haggle_service::hash_token(secret.trim()),
        (None, None) => bail!("--id or --secret names the token to revoke"),
    };
    use haggle_service::Clock as _;
    let store = open(cfg, &db).await?;
    let t = store
        .revoke_token(&id, SystemClock.now_ms())
        .await?
        .with_context(|| format!("no token with id {id}"))?;
    let info = haggle_service::token_info(&t);
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(())
}

/// `haggle ledger verify`: fails when any market's ledger has a breach.
async fn ledger(command: LedgerCmd, cfg: &config::File) -> anyhow::Result<()> {
    let LedgerCmd::Verify { market, db } = command;
    let store = open(cfg, &db).await?;
    let ids: Vec<i64> = match market {
        Some(m) => {
            store
                .market(m)
                .await?
                .with_context(|| format!("market {m} not found"))?;
            vec![m]
        }
        None => store.markets().await?.into_iter().map(|m| m.id).collect(),
    };
    let mut breaches = 0;
    for id in ids {
        let v = store.verify(id).await?;
        println!(
            "market {id}: {} transfers, {} events, {}",
            v.transfers,
            v.events,
            if v.ok() {
                "ok".to_string()
            } else {
                format!("{} BREACHES", v.breaches.len())
            }
        );
        for b in &v.breaches {
            println!("  breach: {b}");
        }
        breaches += v.breaches.len();
    }
    if breaches > 0 {
        bail!("ledger verification found {breaches} breach(es)");
    }
    Ok(())
}

/// `haggle bench ...`.
async fn bench(command: BenchCmd, cfg: &config::File) -> anyhow::Result<()> {
    match command {
        BenchCmd::Api(args) => bench::api(args, cfg).await,
        BenchCmd::Sim(args) => bench::sim(args).await,
        BenchCmd::Llm(args) => bench::llm(args).await,
        BenchCmd::Search(args) => bench_search::search(args).await,
    }
}

/// `haggle prices`: the price table of model calls in use.
fn prices_cmd(prices: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    print!(
        "{}",
        llm_args::price_listing(&llm_args::price_table(prices.as_deref())?)
    );
    Ok(())
}

/// `haggle agent run`.
async fn agent(command: AgentCmd) -> anyhow::Result<()> {
    let AgentCmd::Run(args) = command;
    agent_cmd::run(args).await
}

/// `haggle settlement`: the report, or with `reconcile` the deals the provider disagrees on.
async fn settlement(args: SettlementArgs, cfg: &config::File) -> anyhow::Result<()> {
    let SettlementArgs {
        command,
        market,
        format,
        out,
        db,
    } = args;
    match command {
        Some(SettlementCmd::Reconcile { market, db }) => reconcile(market, &db, cfg).await,
        None => settlement_report(market, &format, out, &db, cfg).await,
    }
}

/// `haggle settlement reconcile`: fails when a deal's payment at the provider differs from the
/// ledger.
async fn reconcile(market: i64, db: &DbArg, cfg: &config::File) -> anyhow::Result<()> {
    let svc = Service::new(
        open(cfg, db).await?,
        Arc::new(SystemClock),
        Config::default(),
    );
    if !attach_payment_provider(&svc) {
        bail!(
            "reconciling needs the payment provider: set {}",
            haggle_service::payments::STRIPE_KEY_ENV
        );
    }
    let r = svc
        .reconcile_payments(&cli_operator(), market)
        .await
        .map_err(api_error)?;
    for d in &r.differences {
        println!(
            "deal {} ({}): ledger {}, recorded {}, provider {}",
            d.deal_id, d.deal_status, d.ledger, d.recorded, d.provider
        );
    }
    if !r.differences.is_empty() {
        bail!(
            "{} of {} deals differ between the ledger and the provider",
            r.differences.len(),
            r.compared
        );
    }
    println!("{} deals agree with the provider", r.compared);
    Ok(())
}

/// The settlement report as JSON on stdout, or as CSV files in `out`.
async fn settlement_report(
    market: Option<i64>,
    format: &str,
    out: Option<std::path::PathBuf>,
    db: &DbArg,
    cfg: &config::File,
) -> anyhow::Result<()> {
    let market = market.context("--market is required")?;
    let svc = Service::new(
        open(cfg, db).await?,
        Arc::new(SystemClock),
        Config::default(),
    );
    let report = svc
        .settlement(&cli_operator(), market)
        .await
        .map_err(api_error)?;
    let problems = report.reconcile();
    if !problems.is_empty() {
        bail!(
            "the settlement does not reconcile with the ledger: {}",
            problems.join("; ")
        );
    }
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(&report)?),
        "csv" => {
            let dir = out.unwrap_or_else(|| ".".into());
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut files = vec![
                ("deals.csv", report.deals_csv()),
                ("positions.csv", report.positions_csv()),
            ];
            // Payouts: only what the payment provider charged (markets with one).
            if let Ok(payouts) = svc.payouts(&cli_operator(), market).await {
                files.push((
                    "payouts.csv",
                    haggle_core::settlement::payouts_csv(&payouts),
                ));
                files.push((
                    "payout_totals.csv",
                    haggle_core::settlement::payout_totals_csv(&payouts),
                ));
            }
            for (name, body) in files {
                let path = dir.join(name);
                std::fs::write(&path, body)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
        other => bail!("--format must be json or csv, got '{other}'"),
    }
    Ok(())
}

/// `haggle dispute resolve`: prints the resolved deal.
async fn dispute(command: DisputeCmd, cfg: &config::File) -> anyhow::Result<()> {
    let DisputeCmd::Resolve(ResolveArgs {
        market,
        deal,
        ruling,
        to_buyer,
        note,
        db,
    }) = command;
    use haggle_core::lifecycle::Ruling;
    let ruling = match (ruling.as_str(), to_buyer) {
        ("release", None) => Ruling::Release,
        ("refund", None) => Ruling::Refund,
        ("split", Some(to_buyer)) => Ruling::Split { to_buyer },
        ("split", None) => {
            bail!("--ruling split needs --to-buyer N (minor units back to the buyer)")
        }
        (r @ ("release" | "refund"), Some(_)) => {
            bail!("--to-buyer goes only with --ruling split, not {r}")
        }
        (other, _) => bail!("--ruling must be release, refund or split, got '{other}'"),
    };
    let svc = Service::new(
        open(cfg, &db).await?,
        Arc::new(SystemClock),
        Config::default(),
    );
    let req = haggle_api::ResolveDispute { ruling, note };
    let reply = svc
        .resolve(&cli_operator(), market, deal, req, None)
        .await
        .map_err(api_error)?;
    println!("{}", reply.body);
    Ok(())
}

fn api_error(e: haggle_service::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", e.body.error.code, e.body.error.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every command, with the command's path.
    fn arguments(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        for a in cmd.get_arguments() {
            out.push((path.to_string(), a.clone()));
        }
        for sub in cmd.get_subcommands() {
            arguments(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_cli_argument_has_a_description() {
        let mut all = Vec::new();
        arguments(&Cli::command(), "haggle", &mut all);
        let missing: Vec<String> = all
            .iter()
            .filter(|(_, a)| a.get_help().is_none() && a.get_long_help().is_none())
            .filter(|(_, a)| !matches!(a.get_id().as_str(), "help" | "version"))
            .map(|(path, a)| format!("{path} --{}", a.get_id()))
            .collect();
        assert!(missing.is_empty(), "undescribed: {missing:#?}");
    }

    #[test]
    fn interview_and_mcp_show_only_their_own_flags() {
        let mut cli = Cli::command();
        cli.build();
        for name in ["interview", "mcp"] {
            let sub = cli.find_subcommand(name).expect(name);
            let ids: Vec<&str> = sub.get_arguments().map(|a| a.get_id().as_str()).collect();
            for server_flag in ["config", "database", "listen", "rate_limit"] {
                assert!(!ids.contains(&server_flag), "{name} shows --{server_flag}");
            }
        }
    }
}
