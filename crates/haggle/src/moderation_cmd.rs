//! `haggle policy`, `haggle moderation` and `haggle participant`: an operator's market policy,
//! moderation queue and suspensions, straight on the database through the same service calls
//! (and so the same core rules and events) as the HTTP API and the web's Operate page.

use crate::{DbArg, api_error, cli_operator, config, open};
use anyhow::{Context, bail};
use clap::Subcommand;
use haggle_core::policy::MarketPolicy;
use haggle_service::{Config, Service, SystemClock};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Print the market's policy as JSON.
    Show {
        /// The market's id.
        #[arg(long)]
        market: i64,
        #[command(flatten)]
        db: DbArg,
    },
    /// Replace the market's policy (an event `policy_changed`) with a JSON document, e.g.
    /// `{"prohibited_terms": ["replica"], "max_listings_per_day": 5,
    /// "actions": {"prohibited_terms": "hold"}}`; `{}` clears it.
    Set {
        /// The market's id.
        #[arg(long)]
        market: i64,
        /// The policy as JSON text.
        #[arg(long, conflicts_with = "file")]
        json: Option<String>,
        /// A file holding the policy as JSON.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Subcommand)]
pub enum ModerationCmd {
    /// Print the moderation queue (held listings with the rules that held them and why) as JSON.
    List {
        /// The market's id.
        #[arg(long)]
        market: i64,
        /// The first page starts after this listing id.
        #[arg(long)]
        after: Option<String>,
        /// Listings per page, 1..=500 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        db: DbArg,
    },
    /// Approve a held listing: it goes on the market.
    Approve {
        /// The market's id.
        #[arg(long)]
        market: i64,
        /// The listing's id.
        #[arg(long)]
        listing: i64,
        #[command(flatten)]
        db: DbArg,
    },
    /// Remove a held or active listing: its live offers void and its threads end.
    Remove {
        /// The market's id.
        #[arg(long)]
        market: i64,
        /// The listing's id.
        #[arg(long)]
        listing: i64,
        /// Why, in words the owner is shown (1 to 2000 characters).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Subcommand)]
pub enum ParticipantCmd {
    /// Suspend a participant: its agent tokens are refused, its listings withdrawn, its live
    /// offers void; deals it agreed still settle.
    Suspend {
        /// The market's id.
        #[arg(long)]
        market: i64,
        /// The participant's id.
        #[arg(long)]
        participant: i64,
        /// Why, in words the owner is shown (1 to 2000 characters).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Lift a participant's suspension.
    Reinstate {
        /// The market's id.
        #[arg(long)]
        market: i64,
        /// The participant's id.
        #[arg(long)]
        participant: i64,
        #[command(flatten)]
        db: DbArg,
    },
}

async fn service(cfg: &config::File, db: &DbArg) -> anyhow::Result<Arc<Service>> {
    Ok(Service::new(
        open(cfg, db).await?,
        Arc::new(SystemClock),
        Config::default(),
    ))
}

pub async fn policy(cmd: PolicyCmd, cfg: &config::File) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Show { market, db } => {
            let svc = service(cfg, &db).await?;
            let p = svc
                .policy(&cli_operator(), market)
                .await
                .map_err(api_error)?;
            println!("{}", serde_json::to_string_pretty(&p)?);
        }
        PolicyCmd::Set {
            market,
            json,
            file,
            db,
        } => {
            let text = match (json, file) {
                (Some(j), _) => j,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?,
                (None, None) => bail!("--json or --file gives the policy"),
            };
            let policy: MarketPolicy = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("the policy is not valid: {e}"))?;
            let svc = service(cfg, &db).await?;
            let reply = svc
                .set_policy(&cli_operator(), market, policy, None)
                .await
                .map_err(api_error)?;
            let m: haggle_core::Market = serde_json::from_str(&reply.body)?;
            println!("{}", serde_json::to_string_pretty(&m.rules.policy)?);
        }
    }
    Ok(())
}

pub async fn moderation(cmd: ModerationCmd, cfg: &config::File) -> anyhow::Result<()> {
    let reply = match cmd {
        ModerationCmd::List {
            market,
            after,
            limit,
            db,
        } => {
            let page = service(cfg, &db)
                .await?
                .held_listings(&cli_operator(), market, after.as_deref(), limit)
                .await
                .map_err(api_error)?;
            println!("{}", serde_json::to_string_pretty(&page)?);
            return Ok(());
        }
        ModerationCmd::Approve {
            market,
            listing,
            db,
        } => service(cfg, &db)
            .await?
            .approve_listing(&cli_operator(), market, listing, None)
            .await
            .map_err(api_error)?,
        ModerationCmd::Remove {
            market,
            listing,
            reason,
            db,
        } => service(cfg, &db)
            .await?
            .remove_listing(&cli_operator(), market, listing, reason, None)
            .await
            .map_err(api_error)?,
    };
    println!("{}", reply.body);
    Ok(())
}

pub async fn participant(cmd: ParticipantCmd, cfg: &config::File) -> anyhow::Result<()> {
    let reply = match cmd {
        ParticipantCmd::Suspend {
            market,
            participant,
            reason,
            db,
        } => service(cfg, &db)
            .await?
            .suspend(&cli_operator(), market, participant, reason, None)
            .await
            .map_err(api_error)?,
        ParticipantCmd::Reinstate {
            market,
            participant,
            db,
        } => service(cfg, &db)
            .await?
            .reinstate(&cli_operator(), market, participant, None)
            .await
            .map_err(api_error)?,
    };
    println!("{}", reply.body);
    Ok(())
}
