//! A market's chat channel (issue 19): market news posted to a Slack or Mattermost incoming
//! webhook. A channel is a webhook whose deliveries are chat lines (`WebhookFormat::Chat`), so it
//! is enqueued, leased, retried and recorded by the webhook worker; only the body differs.
//!
//! A line is the web feed's sentence for the event (`story::describe`, as the market's operators
//! read it) with a link back to its page in Slack's `<url|label>` form, which Mattermost's
//! incoming webhooks accept too; `&`, `<` and `>` are escaped as Slack asks. Links need the
//! server's public URL (`haggle serve --public-url`); without it lines go without links.

use crate::story::{FeedEntry, Names, describe};
use crate::webhooks::{insert_webhook_checked, invalid, validate_event_types, validate_url};
use crate::{ApiResult, Caller, IdemKey, Reply, Role, Service};
use haggle_api::{Channel, ChannelState, SetChannel};
use haggle_core::Event;
use haggle_core::event::EventBody;
use haggle_store::webhooks::{WebhookFormat, WebhookRecord};

/// What a channel posts when no kinds are chosen: new listings, deals, disputes.
pub const DEFAULT_KINDS: &[&str] = &["listing_posted", "deal_created", "deal_disputed"];

/// `&`, `<` and `>` as Slack's message text needs them (its control characters otherwise).
pub fn chat_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One chat line: the feed's sentence, and a link to its page when the server's public URL is
/// known (`<https://host/m/1/deals/4|open>`).
pub fn chat_text(entry: &FeedEntry, public_url: Option<&str>) -> String {
    let text = chat_escape(&entry.text);
    match (public_url, &entry.link) {
        (Some(base), Some(path)) => format!("{text} <{base}{path}|open>"),
        _ => text,
    }
}

/// A channel URL as shown back: scheme, host and the last four characters, since the whole URL
/// is the secret that lets anyone post to the channel.
pub fn shortened_url(url: &str) -> String {
    let Ok(u) = reqwest::Url::parse(url) else {
        return "(not a URL)".into();
    };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let secret: Vec<char> = u
        .path()
        .chars()
        .chain(u.query().unwrap_or_default().chars())
        .collect();
    // A short path hides nothing worth keeping: show none of it.
    let tail: String = if secret.len() > 12 {
        secret[secret.len() - 4..].iter().collect()
    } else {
        String::new()
    };
    format!(
        "{}://{}{port}/…{tail}",
        u.scheme(),
        u.host_str().unwrap_or_default()
    )
}

fn channel_view(w: &WebhookRecord, links: bool) -> Channel {
    Channel {
        webhook_id: w.id,
        market_id: w.market_id,
        url: shortened_url(&w.url),
        kinds: w.event_types.clone(),
        links,
        created_at: w.created_at,
    }
}

/// The kinds a channel posts: known event kinds only (a typo would post nothing, silently).
fn channel_kinds(kinds: Vec<String>) -> ApiResult<Vec<String>> {
    let kinds = validate_event_types(kinds)?;
    if kinds.is_empty() {
        return Ok(DEFAULT_KINDS.iter().map(|k| k.to_string()).collect());
    }
    match kinds
        .iter()
        .find(|k| !EventBody::KINDS.contains(&k.as_str()))
    {
        Some(k) => Err(invalid(format!(
            "kinds: '{k}' is not an event kind (for example listing_posted, deal_created, deal_disputed, deal_completed, listing_sold)"
        ))),
        None => Ok(kinds),
    }
}

impl Service {
    /// Where people reach the web pages, for links in chat lines (`haggle serve --public-url`).
    pub fn set_public_url(&self, url: Option<&str>) {
        let url = url
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty());
        *self.public_url.lock().expect("public url") = url;
    }

    pub fn public_url(&self) -> Option<String> {
        self.public_url.lock().expect("public url").clone()
    }

    /// The market's active channels, oldest first (one, unless two were set at once).
    async fn active_channels(&self, market: i64) -> ApiResult<Vec<WebhookRecord>> {
        let (mut after, mut out) = (0, Vec::new());
        loop {
            let page = self
                .store
                .webhooks(market, after, haggle_core::limits::MAX_PAGE)
                .await?;
            out.extend(
                page.iter()
                    .filter(|w| w.active && w.format == WebhookFormat::Chat)
                    .cloned(),
            );
            match page.last() {
                Some(w) if page.len() == haggle_core::limits::MAX_PAGE as usize => after = w.id,
                _ => return Ok(out),
            }
        }
    }

    /// The market's chat channel, if one is set (operators of the market).
    pub async fn channel(&self, caller: &Caller, market: i64) -> ApiResult<ChannelState> {
        Self::require_operator(caller, Some(market))?;
        self.market_or_404(market).await?;
        let links = self.public_url().is_some();
        Ok(ChannelState {
            channel: self
                .active_channels(market)
                .await?
                .last()
                .map(|w| channel_view(w, links)),
        })
    }

    /// Sets the market's chat channel, replacing the one before (operators of the market). It
    /// posts the chosen kinds of events from now on.
    pub async fn set_channel(
        &self,
        caller: &Caller,
        market: i64,
        req: SetChannel,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        let run = async {
            let url = validate_url(&req.url, self.allow_private_webhooks)?;
            let kinds = channel_kinds(req.kinds)?;
            self.market_or_404(market).await?;
            for old in self.active_channels(market).await? {
                self.store
                    .deactivate_webhook(market, old.id, self.now())
                    .await?;
            }
            let w = insert_webhook_checked(self, market, url, kinds, WebhookFormat::Chat).await?;
            let links = self.public_url().is_some();
            Ok(Reply::json(
                200,
                &ChannelState {
                    channel: Some(channel_view(&w, links)),
                },
            ))
        };
        self.once_per_key(caller, idem, run, |r| r.body.clone())
            .await
    }

    /// Stops the market's chat channel (its pending lines become `failed`); removing none is not
    /// an error.
    pub async fn remove_channel(
        &self,
        caller: &Caller,
        market: i64,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        let run = async {
            self.market_or_404(market).await?;
            for old in self.active_channels(market).await? {
                self.store
                    .deactivate_webhook(market, old.id, self.now())
                    .await?;
            }
            Ok(Reply::json(200, &ChannelState { channel: None }))
        };
        self.once_per_key(caller, idem, run, |r| r.body.clone())
            .await
    }

    /// The body of a channel's delivery: `{"text": line}`, the event told as the market's
    /// operators read it.
    pub(crate) async fn chat_body(&self, market: i64, event: &Event) -> Vec<u8> {
        let reader = Caller {
            role: Role::Operator,
            market: Some(market),
            participant: None,
            scope: "channel".into(),
        };
        let currency = match self.store.market(market).await {
            Ok(Some(m)) => m.currency,
            _ => String::new(),
        };
        let mut names = Names::new(self, &reader, market);
        let entry = describe(event, &mut names, market, &currency).await;
        let text = chat_text(&entry, self.public_url().as_deref());
        serde_json::to_vec(&serde_json::json!({ "text": text })).expect("a chat line serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str, link: Option<&str>) -> FeedEntry {
        FeedEntry {
            seq: 1,
            at: String::new(),
            group: "deals",
            text: text.into(),
            link: link.map(str::to_string),
        }
    }

    #[test]
    fn a_line_links_back_in_slacks_form() {
        let e = entry(
            "Deal: Ann buys “Desk” from Bo for $12.00",
            Some("/m/1/deals/4"),
        );
        assert_eq!(
            chat_text(&e, Some("https://haggle.example.org")),
            "Deal: Ann buys “Desk” from Bo for $12.00 <https://haggle.example.org/m/1/deals/4|open>"
        );
        assert_eq!(
            chat_text(&e, None),
            "Deal: Ann buys “Desk” from Bo for $12.00",
            "no public URL: no link"
        );
    }

    #[test]
    fn slacks_control_characters_are_escaped() {
        let e = entry("Ann listed “<b>Tom & Jerry</b>” for $1.00", None);
        assert_eq!(
            chat_text(&e, Some("https://h")),
            "Ann listed “&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;” for $1.00"
        );
    }

    #[test]
    fn channel_urls_are_shown_shortened() {
        assert_eq!(
            shortened_url("https://hooks.slack.com/services/T000/B000/XXXXsecretx7Qa"),
            "https://hooks.slack.com/…x7Qa"
        );
        assert_eq!(
            shortened_url("http://127.0.0.1:9065/hooks/abc"),
            "http://127.0.0.1:9065/…"
        );
    }

    #[test]
    fn kinds_default_to_news_and_must_be_event_kinds() {
        assert_eq!(channel_kinds(vec![]).unwrap(), DEFAULT_KINDS);
        assert_eq!(
            channel_kinds(vec!["deal_completed".into()]).unwrap(),
            ["deal_completed"]
        );
        let e = channel_kinds(vec!["deal_agreed".into()]).unwrap_err();
        assert!(
            e.body.error.message.contains("deal_agreed"),
            "{}",
            e.body.error.message
        );
    }
}
