//! `haggle channel set/show/remove`: a market's chat channel (market news posted to a Slack or
//! Mattermost incoming webhook), straight on the database through the same service calls as the
//! HTTP API and the web's Operate page. The running server's webhook worker posts the lines.

use crate::{DbArg, api_error, cli_operator, config, open};
use clap::Subcommand;
use haggle_api::SetChannel;
use haggle_service::{Config, Service, SystemClock};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum ChannelCmd {
    /// Set the market's chat channel (replacing the one before) and print it.
    Set {
        /// The market's id.
        #[arg(long)]
        market: i64,
        /// The incoming-webhook URL (Slack or Mattermost). Stored; shown back shortened only.
        #[arg(long)]
        url: String,
        /// Event kinds to post, comma-separated (default: listing_posted,deal_created,deal_disputed).
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<String>,
        /// Accept a loopback or private-network URL (as `serve --allow-private-webhooks`, which
        /// the server then needs to post to it).
        #[arg(long)]
        allow_private_webhooks: bool,
        #[command(flatten)]
        db: DbArg,
    },
    /// Print the market's chat channel (`{"channel": null}` when none is set).
    Show {
        /// The market's id.
        #[arg(long)]
        market: i64,
        #[command(flatten)]
        db: DbArg,
    },
    /// Stop the market's chat channel.
    Remove {
        /// The market's id.
        #[arg(long)]
        market: i64,
        #[command(flatten)]
        db: DbArg,
    },
}

async fn service(
    cfg: &config::File,
    db: &DbArg,
    allow_private_webhooks: bool,
) -> anyhow::Result<Arc<Service>> {
    let svc = Service::new(
        open(cfg, db).await?,
        Arc::new(SystemClock),
        Config {
            allow_private_webhooks,
            ..Config::default()
        },
    );
    // The server's public URL (the same variable `serve --public-url` reads), so `links` says
    // whether lines will carry links.
    svc.set_public_url(std::env::var("HAGGLE_PUBLIC_URL").ok().as_deref());
    Ok(svc)
}

pub async fn run(cmd: ChannelCmd, cfg: &config::File) -> anyhow::Result<()> {
    let body = match cmd {
        ChannelCmd::Set {
            market,
            url,
            kinds,
            allow_private_webhooks,
            db,
        } => {
            let req = SetChannel { url, kinds };
            service(cfg, &db, allow_private_webhooks)
                .await?
                .set_channel(&cli_operator(), market, req, None)
                .await
                .map_err(api_error)?
                .body
        }
        ChannelCmd::Show { market, db } => {
            let state = service(cfg, &db, false)
                .await?
                .channel(&cli_operator(), market)
                .await
                .map_err(api_error)?;
            serde_json::to_string(&state)?
        }
        ChannelCmd::Remove { market, db } => {
            service(cfg, &db, false)
                .await?
                .remove_channel(&cli_operator(), market, None)
                .await
                .map_err(api_error)?
                .body
        }
    };
    let value: serde_json::Value = serde_json::from_str(&body)?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
