//! The Operate page's chat channel form: set the market's channel (an incoming-webhook URL and
//! the event kinds it posts) or stop it, through the service's channel commands. The URL is
//! shown back shortened only, since it is the channel's secret.

use crate::Web;
use crate::page::{Form, Ids, PageResult};
use crate::session::{FormOrigin, Signed, idem_key};
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use haggle_api::SetChannel;
use haggle_service::{ApiResult, Caller, Service};
use serde::{Deserialize, Serialize};

/// The channel as the Operate page shows it: a sentence, and the kinds for the form's field.
pub async fn summary(svc: &Service, caller: &Caller, market: i64) -> ApiResult<(String, String)> {
    Ok(match svc.channel(caller, market).await?.channel {
        None => (
            "No chat channel: market news is not posted anywhere.".into(),
            "listing_posted, deal_created, deal_disputed".into(),
        ),
        Some(c) => (
            format!(
                "Posting {} to {} (webhook {}){}.",
                c.kinds.join(", "),
                c.url,
                c.webhook_id,
                if c.links {
                    ", with links to these pages"
                } else {
                    "; without links: start the server with --public-url to add them"
                }
            ),
            c.kinds.join(", "),
        ),
    })
}

#[derive(Deserialize, Serialize)]
pub struct ChannelForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    #[serde(default)]
    url: String,
    /// Comma- or space-separated event kinds.
    #[serde(default)]
    kinds: String,
    /// `remove` stops the channel; anything else sets it.
    #[serde(default)]
    action: String,
}

/// Sets or stops the market's chat channel.
pub async fn set(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids(m): Ids<i64>,
    Form(f): Form<ChannelForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let idem = idem_key(&f.idem, &format!("/m/{m}/operate/channel"), &f)?;
    if f.action == "remove" {
        web.svc.remove_channel(&s.caller, m, idem.as_ref()).await?;
    } else {
        let kinds = f
            .kinds
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        let req = SetChannel {
            url: f.url.clone(),
            kinds,
        };
        web.svc
            .set_channel(&s.caller, m, req, idem.as_ref())
            .await?;
    }
    Ok(Redirect::to(&format!("/m/{m}/operate#channel")).into_response())
}
