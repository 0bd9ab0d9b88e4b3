//! Webhooks: an operator registers an endpoint per market for chosen event types; a worker POSTs
//! each matching event to it, signed, retried with backoff, with every delivery's status readable.
//!
//! A delivery is one event as JSON (`haggle_core::Event`) with the headers
//! `Haggle-Event-Type`, `Haggle-Delivery-Id`, `Haggle-Webhook-Id`, `Haggle-Timestamp` (ms since the
//! epoch, the service clock) and `Haggle-Signature: v1=<hex HMAC-SHA256(secret, "{ts}.{body}")>`.
//! A 2xx answer delivers it; anything else (another status, a refused connection, a timeout) is
//! retried after 1 s, 2 s, 4 s ... (capped), and after the last attempt the delivery is `failed`.
//! Deliveries of one webhook may arrive out of order (a retry overtakes nothing but is overtaken):
//! receivers order by the event's `seq`, and deduplicate on it.
//!
//! The worker never takes a market's write lock and never runs inside a command: a slow or dead
//! receiver delays only its own deliveries, and the market trades on regardless.
//!
//! Endpoints are `http://` or `https://`; TLS is rustls (ring) verifying against the system's
//! root certificates, plus `WebhookOptions::extra_roots` (a private CA; the tests' own), never
//! with verification off.
//!
//! Unless the server allows it (`Config::allow_private_webhooks`), endpoints on loopback,
//! private, link-local, unique-local, unspecified or multicast addresses (or named `localhost`)
//! are refused at registration, and again at delivery, where host names are resolved by a
//! resolver that refuses such answers (so a name cannot be re-pointed inside after registration).

use crate::{
    ApiError, ApiResult, Caller, IdemKey, Reply, Service, next_cursor, page_limit, parse_cursor,
};
use haggle_api::{
    CreateWebhook, DeliveryStatus, Webhook, WebhookCreated, WebhookDelivery, WebhookDeliveryList,
    WebhookFormat as WireFormat, WebhookList,
};
use haggle_core::ErrorCode;
use haggle_store::webhooks::{
    Attempt, ClaimedDelivery, DeliveryRecord, DeliveryStatus as StoredStatus, NewWebhook,
    WebhookFormat, WebhookRecord,
};
use haggle_store::{StoreError, StoredResponse, Viewer};
use hmac::{KeyInit, Mac};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Active webhooks per market: bounds the worker's work per market and pass.
pub const MAX_ACTIVE_PER_MARKET: usize = 20;
const MAX_URL_LEN: usize = 2000;
const MAX_EVENT_TYPES: usize = 50;
/// Events read per webhook and pass when enqueueing.
const ENQUEUE_SCAN: u32 = 1000;
const SECRET_SHOWN_ONCE: &str =
    "(shown once at creation; deactivate this webhook and create another for a new secret)";

/// How deliveries are attempted.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Per attempt, from connecting until the response's headers.
    pub timeout: Duration,
    /// Attempts before a delivery is `failed`.
    pub max_attempts: u32,
    /// Delay after the first failed attempt; it doubles with each further failure...
    pub first_retry_ms: i64,
    /// ...up to this.
    pub max_retry_ms: i64,
    /// Deliveries claimed per pass.
    pub batch: u32,
    /// Deliveries in flight at once in the background worker.
    pub max_in_flight: usize,
    /// PEM certificates trusted as roots for `https://` endpoints besides the system's (a
    /// private CA). Verification is never switched off.
    pub extra_roots: Vec<Vec<u8>>,
}

impl Default for WebhookOptions {
    fn default() -> WebhookOptions {
        WebhookOptions {
            timeout: Duration::from_secs(5),
            max_attempts: 10,
            first_retry_ms: 1_000,
            max_retry_ms: 10 * 60 * 1_000,
            batch: 100,
            max_in_flight: 64,
            extra_roots: Vec::new(),
        }
    }
}

impl WebhookOptions {
    /// The delay before the next attempt after `attempts` failed ones: 1 s, 2 s, 4 s, ... capped.
    pub fn retry_delay_ms(&self, attempts: u32) -> i64 {
        let doublings = attempts.saturating_sub(1).min(40);
        self.first_retry_ms
            .saturating_mul(1_i64 << doublings)
            .min(self.max_retry_ms)
    }

    /// How long a claimed delivery is leased to its attempt (longer than any attempt takes), so
    /// another worker does not send it meanwhile, and a crashed worker's claim expires.
    fn lease_ms(&self) -> i64 {
        self.timeout.as_millis() as i64 + 30_000
    }
}

/// What one delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryPass {
    /// New deliveries enqueued from the markets' event logs.
    pub enqueued: usize,
    /// Attempts made.
    pub attempted: usize,
    pub delivered: usize,
    /// Failed attempts that will be retried.
    pub retrying: usize,
    /// Deliveries given up in this pass.
    pub failed: usize,
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The `Haggle-Signature` header of a delivery: `v1=<hex HMAC-SHA256(secret, "{ts}.{body}")>`.
pub fn signature(secret: &str, timestamp_ms: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp_ms}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "v1={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &signed))
    )
}

/// Checks a delivery's signature as a receiver would (constant-time comparison). Receivers should
/// also refuse a `Haggle-Timestamp` far from their own clock, so a captured delivery cannot be
/// replayed later.
pub fn verify_signature(secret: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("v1=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn new_webhook_secret() -> String {
    use rand::{RngCore, SeedableRng};
    let mut bytes = [0u8; 32];
    rand::rngs::StdRng::from_os_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// Whether an address is the server's own host or network rather than the public internet:
/// loopback, private (10/8, 172.16/12, 192.168/16), carrier-grade NAT (100.64/10), link-local
/// (169.254/16, fe80::/10), unique-local (fc00::/7), unspecified, "this network" (0/8),
/// broadcast or multicast, also as an IPv4-mapped IPv6 address.
pub fn is_private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (b & 0xc0) == 64)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private_address(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

const ALLOW_FLAG: &str = "start the server with --allow-private-webhooks to allow them";

/// Why an endpoint's host is refused without the allow flag (an address literal or a
/// `localhost` name; other names are checked when resolved at delivery).
fn private_host(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return is_private_address(ip).then(|| {
            format!(
                "webhook host {ip} is a loopback, private, link-local or otherwise non-public address; {ALLOW_FLAG}"
            )
        });
    }
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    (name == "localhost" || name.ends_with(".localhost"))
        .then(|| format!("webhook host '{host}' names this machine; {ALLOW_FLAG}"))
}

/// Resolves webhook hosts and refuses an answer with a non-public address (DNS rebinding).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(a) = addrs.iter().find(|a| is_private_address(a.ip())) {
                return Err(format!(
                    "webhook host '{host}' resolves to the non-public address {}; {ALLOW_FLAG}",
                    a.ip()
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub(crate) fn validate_url(url: &str, allow_private: bool) -> ApiResult<String> {
    let url = url.trim();
    if url.is_empty() || url.len() > MAX_URL_LEN {
        return Err(invalid(format!(
            "url must be 1 to {MAX_URL_LEN} characters"
        )));
    }
    let parsed =
        reqwest::Url::parse(url).map_err(|e| invalid(format!("url '{url}' is not valid: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(invalid(format!(
                "url scheme must be http or https, got '{other}'"
            )));
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("url '{url}' names no host")));
    }
    if !allow_private && let Some(why) = private_host(&parsed) {
        return Err(invalid(why));
    }
    Ok(parsed.to_string())
}

pub(crate) fn validate_event_types(types: Vec<String>) -> ApiResult<Vec<String>> {
    if types.len() > MAX_EVENT_TYPES {
        return Err(invalid(format!(
            "at most {MAX_EVENT_TYPES} event types per webhook"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for t in types {
        let t = t.trim().to_string();
        let ok = !t.is_empty()
            && t.len() <= 64
            && t.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(invalid(format!(
                "event type '{t}' must be 1 to 64 characters of a-z, 0-9 and _ (an event's kind, like deal_created)"
            )));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn webhook_view(w: &WebhookRecord) -> Webhook {
    let (url, format) = match w.format {
        WebhookFormat::Event => (w.url.clone(), WireFormat::Event),
        // A channel's URL is its secret.
        WebhookFormat::Chat => (crate::channels::shortened_url(&w.url), WireFormat::Chat),
    };
    Webhook {
        id: w.id,
        market_id: w.market_id,
        url,
        event_types: w.event_types.clone(),
        format,
        active: w.active,
        created_at: w.created_at,
    }
}

fn status_view(s: StoredStatus) -> DeliveryStatus {
    match s {
        StoredStatus::Pending => DeliveryStatus::Pending,
        StoredStatus::Delivered => DeliveryStatus::Delivered,
        StoredStatus::Failed => DeliveryStatus::Failed,
    }
}

fn delivery_view(d: &DeliveryRecord) -> WebhookDelivery {
    WebhookDelivery {
        id: d.id,
        webhook_id: d.webhook_id,
        event_seq: d.event_seq,
        event_type: d.event_type.clone(),
        status: status_view(d.status),
        attempts: d.attempts,
        next_attempt_at: (d.status == StoredStatus::Pending).then_some(d.next_attempt_at),
        last_status_code: d.last_status_code,
        last_error: d.last_error.clone(),
        delivered_at: d.delivered_at,
        created_at: d.created_at,
    }
}

/// A transport error with its causes ("error sending request: ... Connection refused").
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} ms", timeout.as_millis());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let msg = cause.to_string();
        if !text.contains(&msg) {
            text.push_str(": ");
            text.push_str(&msg);
        }
        source = cause.source();
    }
    if text.len() > 500 {
        let mut cut = 500;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn client(opts: &WebhookOptions, allow_private: bool) -> Result<reqwest::Client, reqwest::Error> {
    let builder = haggle_tls::client_builder()
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        // A redirect is an answer that is not 2xx: the operator fixes the URL.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("haggle-webhooks/", env!("CARGO_PKG_VERSION")));
    let mut roots = Vec::new();
    for pem in &opts.extra_roots {
        roots.push(reqwest::Certificate::from_pem(pem)?);
    }
    let builder = if roots.is_empty() {
        builder
    } else {
        builder.tls_certs_merge(roots)
    };
    let builder = if allow_private {
        builder
    } else {
        // Through a proxy the proxy would resolve the host, past the check.
        builder.dns_resolver(Arc::new(PublicOnly)).no_proxy()
    };
    builder.build()
}

/// Registers a webhook of a market that exists, within the market's limit of active ones.
pub(crate) async fn insert_webhook_checked(
    svc: &Service,
    market: i64,
    url: String,
    event_types: Vec<String>,
    format: WebhookFormat,
) -> ApiResult<WebhookRecord> {
    let active = svc
        .store
        .webhooks(market, 0, haggle_core::limits::MAX_PAGE)
        .await?
        .iter()
        .filter(|w| w.active)
        .count();
    if active >= MAX_ACTIVE_PER_MARKET {
        return Err(invalid(format!(
            "a market has at most {MAX_ACTIVE_PER_MARKET} active webhooks; deactivate one first"
        )));
    }
    let new = NewWebhook {
        market_id: market,
        url,
        secret: new_webhook_secret(),
        event_types,
        format,
    };
    svc.store
        .create_webhook(&new, svc.now())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("market {market} not found")))
}

impl Service {
    /// Runs `run` once per idempotency key: a replay returns the first response, stored with
    /// `stored_body` (so secrets shown once are not replayed).
    pub(crate) async fn once_per_key(
        &self,
        caller: &Caller,
        idem: Option<&IdemKey>,
        run: impl Future<Output = ApiResult>,
        stored_body: impl Fn(&Reply) -> String,
    ) -> ApiResult {
        let _guard = self.claim(caller, idem)?;
        if let Some(k) = idem
            && let Some((hash, resp)) = self.store.stored_response(&caller.scope, &k.key).await?
        {
            return if hash == k.request_hash {
                Self::replay(resp)
            } else {
                Err(Self::conflict())
            };
        }
        let result = run.await;
        if let Some(k) = idem {
            let stored = match &result {
                Ok(r) => StoredResponse {
                    status: r.status,
                    body: stored_body(r),
                },
                Err(e) if e.status < 500 => StoredResponse {
                    status: e.status,
                    body: serde_json::to_string(&e.body).expect("error bodies serialise"),
                },
                Err(_) => return result,
            };
            self.store
                .store_response(&caller.scope, &k.key, &k.request_hash, &stored, self.now())
                .await?;
        }
        result
    }

    /// Why this server will not send to `url` (an address literal or `localhost` name that is
    /// not public, unless allowed); names are checked again by the resolver.
    fn refused_endpoint(&self, url: &str) -> Option<String> {
        if self.allow_private_webhooks {
            return None;
        }
        match reqwest::Url::parse(url) {
            Ok(u) => private_host(&u),
            Err(e) => Some(format!("stored url '{url}' is not valid: {e}")),
        }
    }

    async fn webhook_or_404(&self, market: i64, id: i64) -> ApiResult<WebhookRecord> {
        self.store
            .webhook(market, id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("webhook {id} not found")))
    }

    /// Registers an endpoint for the market's events from now on (operators of the market). The
    /// reply carries the signing secret, once.
    pub async fn create_webhook(
        &self,
        caller: &Caller,
        market: i64,
        req: CreateWebhook,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        let run = async {
            let url = validate_url(&req.url, self.allow_private_webhooks)?;
            let event_types = validate_event_types(req.event_types)?;
            self.market_or_404(market).await?;
            let w = insert_webhook_checked(self, market, url, event_types, WebhookFormat::Event)
                .await?;
            Ok(Reply::json(
                201,
                &WebhookCreated {
                    webhook: webhook_view(&w),
                    secret: w.secret.clone(),
                },
            ))
        };
        self.once_per_key(caller, idem, run, |r| {
            match serde_json::from_str::<WebhookCreated>(&r.body) {
                Ok(mut created) => {
                    created.secret = SECRET_SHOWN_ONCE.into();
                    serde_json::to_string(&created).expect("serialises")
                }
                Err(_) => r.body.clone(),
            }
        })
        .await
    }

    /// The market's webhooks, secrets left out (operators of the market).
    pub async fn webhooks(
        &self,
        caller: &Caller,
        market: i64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<WebhookList> {
        Self::require_operator(caller, Some(market))?;
        self.market_or_404(market).await?;
        let limit = page_limit(limit)?;
        let hooks = self
            .store
            .webhooks(market, parse_cursor(cursor)?, limit)
            .await?;
        Ok(WebhookList {
            next_cursor: next_cursor(&hooks, limit, |w| w.id),
            items: hooks.iter().map(webhook_view).collect(),
        })
    }

    /// Stops deliveries to a webhook; its pending deliveries become `failed`. Deactivating twice
    /// is not an error.
    pub async fn deactivate_webhook(
        &self,
        caller: &Caller,
        market: i64,
        webhook: i64,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        let run = async {
            let w = self
                .store
                .deactivate_webhook(market, webhook, self.now())
                .await?
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::NotFound, format!("webhook {webhook} not found"))
                })?;
            Ok(Reply::json(200, &webhook_view(&w)))
        };
        self.once_per_key(caller, idem, run, |r| r.body.clone())
            .await
    }

    /// A webhook's deliveries by id, optionally only those with one status (operators).
    pub async fn webhook_deliveries(
        &self,
        caller: &Caller,
        market: i64,
        webhook: i64,
        status: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<WebhookDeliveryList> {
        Self::require_operator(caller, Some(market))?;
        let status = match status {
            None => None,
            Some(s) => Some(StoredStatus::parse(s).ok_or_else(|| {
                invalid(format!(
                    "unknown delivery status '{s}': use pending, delivered or failed"
                ))
            })?),
        };
        self.webhook_or_404(market, webhook).await?;
        let limit = page_limit(limit)?;
        let items = self
            .store
            .webhook_deliveries(market, webhook, status, parse_cursor(cursor)?, limit)
            .await?;
        Ok(WebhookDeliveryList {
            next_cursor: next_cursor(&items, limit, |d| d.id),
            items: items.iter().map(delivery_view).collect(),
        })
    }

    /// One delivery pass with the default options: enqueue new events, then attempt every due
    /// delivery (up to a batch) and wait for the attempts. The worker runs the same steps.
    pub async fn deliver_due_webhooks(&self) -> ApiResult<DeliveryPass> {
        self.deliver_due_webhooks_with(&WebhookOptions::default())
            .await
    }

    pub async fn deliver_due_webhooks_with(
        &self,
        opts: &WebhookOptions,
    ) -> ApiResult<DeliveryPass> {
        let mut pass = DeliveryPass {
            enqueued: self.enqueue_webhook_events().await?,
            ..DeliveryPass::default()
        };
        let client = client(opts, self.allow_private_webhooks).map_err(ApiError::internal)?;
        let now = self.now();
        let claimed = self
            .store
            .claim_webhook_deliveries(now, now + opts.lease_ms(), opts.batch)
            .await?;
        let attempts = claimed
            .into_iter()
            .map(|c| self.attempt_delivery(&client, opts, c));
        for attempt in futures_util::future::join_all(attempts).await {
            pass.attempted += 1;
            match attempt? {
                Attempt::Delivered { .. } => pass.delivered += 1,
                Attempt::Failed {
                    retry_at: Some(_), ..
                } => pass.retrying += 1,
                Attempt::Failed { retry_at: None, .. } => pass.failed += 1,
            }
        }
        Ok(pass)
    }

    /// Enqueues, for each active webhook, the matching events after its cursor.
    async fn enqueue_webhook_events(&self) -> Result<usize, StoreError> {
        const PAGE: u32 = 200;
        let (mut after, mut total) = (0, 0);
        loop {
            let hooks = self.store.active_webhooks(after, PAGE).await?;
            for w in &hooks {
                match self.enqueue_for(w).await {
                    Ok(n) => total += n,
                    // One webhook's trouble does not stop the others.
                    Err(e) => tracing::warn!(webhook = w.id, error = %e, "webhook enqueue failed"),
                }
            }
            match hooks.last() {
                Some(w) if hooks.len() == PAGE as usize => after = w.id,
                _ => return Ok(total),
            }
        }
    }

    async fn enqueue_for(&self, w: &WebhookRecord) -> Result<usize, StoreError> {
        let events = self
            .store
            .events(w.market_id, Viewer::All, w.cursor_seq, ENQUEUE_SCAN)
            .await?;
        let Some(last) = events.last() else {
            return Ok(0);
        };
        let wanted: Vec<(i64, String)> = events
            .iter()
            .filter(|e| w.wants(e.kind()))
            .map(|e| (e.seq, e.kind().to_string()))
            .collect();
        self.store
            .enqueue_webhook_deliveries(w, last.seq, &wanted, self.now())
            .await
    }

    /// Sends one claimed delivery and records how it went.
    async fn attempt_delivery(
        &self,
        client: &reqwest::Client,
        opts: &WebhookOptions,
        c: ClaimedDelivery,
    ) -> Result<Attempt, StoreError> {
        let d = &c.delivery;
        let event = self
            .store
            .events(d.market_id, Viewer::All, d.event_seq - 1, 1)
            .await?
            .into_iter()
            .find(|e| e.seq == d.event_seq);
        let attempts = d.attempts.saturating_add(1);
        let refused = self.refused_endpoint(&c.webhook.url);
        let attempt = match event {
            None => Attempt::Failed {
                status_code: None,
                error: format!("event {} of market {} not found", d.event_seq, d.market_id),
                retry_at: None,
            },
            // Registered while allowed (or before the check existed): refused for good now.
            Some(_) if refused.is_some() => Attempt::Failed {
                status_code: None,
                error: refused.unwrap_or_default(),
                retry_at: None,
            },
            Some(event) => {
                let body = match c.webhook.format {
                    WebhookFormat::Event => serde_json::to_vec(&event).expect("events serialise"),
                    WebhookFormat::Chat => self.chat_body(d.market_id, &event).await,
                };
                let ts = self.now();
                let sent = client
                    .post(&c.webhook.url)
                    .header("Content-Type", "application/json")
                    .header("Haggle-Event-Type", event.kind())
                    .header("Haggle-Delivery-Id", d.id.to_string())
                    .header("Haggle-Webhook-Id", c.webhook.id.to_string())
                    .header("Haggle-Timestamp", ts.to_string())
                    .header("Haggle-Signature", signature(&c.webhook.secret, ts, &body))
                    .body(body)
                    .send()
                    .await;
                let retry_at = (attempts < i64::from(opts.max_attempts))
                    .then(|| self.now() + opts.retry_delay_ms(attempts as u32));
                match sent {
                    Ok(r) if r.status().is_success() => Attempt::Delivered {
                        status_code: i64::from(r.status().as_u16()),
                    },
                    Ok(r) => Attempt::Failed {
                        status_code: Some(i64::from(r.status().as_u16())),
                        error: format!("receiver answered {}", r.status()),
                        retry_at,
                    },
                    Err(e) => Attempt::Failed {
                        status_code: None,
                        error: describe(&e, opts.timeout),
                        retry_at,
                    },
                }
            }
        };
        match &attempt {
            Attempt::Failed {
                retry_at: None,
                error,
                ..
            } => tracing::warn!(
                webhook = c.webhook.id,
                delivery = d.id,
                attempts,
                error = %error,
                "webhook delivery failed for good"
            ),
            Attempt::Failed { error, .. } => tracing::debug!(
                webhook = c.webhook.id,
                delivery = d.id,
                attempts,
                error = %error,
                "webhook delivery will be retried"
            ),
            Attempt::Delivered { .. } => {}
        }
        self.store
            .record_webhook_attempt(d.id, &attempt, self.now())
            .await?;
        Ok(attempt)
    }

    /// Delivers webhooks in the background: every `every`, enqueue new events and start the due
    /// deliveries, at most `max_in_flight` at once. A pass does not wait for slow receivers: each
    /// attempt runs in its own task (its delivery leased meanwhile), so one dead endpoint never
    /// holds up the others, and nothing here touches a market's write lock.
    pub fn spawn_webhooks(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let opts = WebhookOptions::default();
            let client = match client(&opts, svc.allow_private_webhooks) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are off");
                    return;
                }
            };
            let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_in_flight));
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = svc.enqueue_webhook_events().await {
                    tracing::warn!(error = %e, "webhook enqueue failed");
                }
                let free = slots.available_permits().min(opts.batch as usize);
                if free == 0 {
                    continue;
                }
                let now = svc.now();
                let claimed = match svc
                    .store
                    .claim_webhook_deliveries(now, now + opts.lease_ms(), free as u32)
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming webhook deliveries failed");
                        continue;
                    }
                };
                for c in claimed {
                    let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                        return;
                    };
                    let (svc, client, opts) = (Arc::clone(&svc), client.clone(), opts.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = svc.attempt_delivery(&client, &opts, c).await {
                            tracing::warn!(error = %e, "recording a webhook attempt failed");
                        }
                    });
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_sha256_known_answer() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signatures_verify_and_refuse_tampering() {
        let sig = signature("whsec_k", 1_700_000_000_000, b"{\"seq\":1}");
        assert!(sig.starts_with("v1="));
        assert!(verify_signature(
            "whsec_k",
            "1700000000000",
            b"{\"seq\":1}",
            &sig
        ));
        assert!(!verify_signature(
            "whsec_k",
            "1700000000001",
            b"{\"seq\":1}",
            &sig
        ));
        assert!(!verify_signature(
            "whsec_k",
            "1700000000000",
            b"{\"seq\":2}",
            &sig
        ));
        assert!(!verify_signature(
            "other",
            "1700000000000",
            b"{\"seq\":1}",
            &sig
        ));
        assert!(!verify_signature(
            "whsec_k",
            "1700000000000",
            b"{\"seq\":1}",
            "v1=zz"
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let o = WebhookOptions::default();
        let delays: Vec<i64> = (1..=12).map(|n| o.retry_delay_ms(n)).collect();
        assert_eq!(&delays[..4], &[1_000, 2_000, 4_000, 8_000]);
        assert_eq!(delays[11], o.max_retry_ms);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn urls_and_event_types_are_validated() {
        assert_eq!(
            validate_url(" http://127.0.0.1:9/hook ", true).unwrap(),
            "http://127.0.0.1:9/hook"
        );
        assert_eq!(
            validate_url("http://hooks.example.com/h", false).unwrap(),
            "http://hooks.example.com/h"
        );
        assert_eq!(
            validate_url("https://hooks.example.com/h", false).unwrap(),
            "https://hooks.example.com/h"
        );
        for bad in ["", "ftp://x/y", "not a url", "http://", "https://"] {
            assert!(validate_url(bad, true).is_err(), "{bad} refused");
        }
    }

    #[test]
    fn non_public_hosts_are_refused_unless_allowed() {
        for bad in [
            "http://127.0.0.1:9/hook",
            "http://127.1/hook",
            "http://0x7f000001/hook",
            "http://[::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://10.1.2.3/hook",
            "http://172.16.0.1/hook",
            "http://172.31.255.255/hook",
            "http://192.168.1.1/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/hook",
            "http://0.0.0.0/hook",
            "http://[fe80::1]/hook",
            "http://[fd00::1]/hook",
            "http://[fc00::1]/hook",
            "http://224.0.0.1/hook",
            "http://[ff02::1]/hook",
            "http://255.255.255.255/hook",
            "http://localhost:8080/hook",
            "http://LOCALHOST./hook",
            "http://api.localhost/hook",
        ] {
            let e = validate_url(bad, false).expect_err(bad);
            assert_eq!(e.code(), ErrorCode::InvalidRequest, "{bad}");
            assert!(
                e.body.error.message.contains("--allow-private-webhooks"),
                "{bad}: {}",
                e.body.error.message
            );
            assert!(
                validate_url(bad, true).is_ok(),
                "{bad} allowed with the flag"
            );
        }
        for good in [
            "http://8.8.8.8/hook",
            "http://172.32.0.1/hook",
            "http://[2001:db8::1]/hook",
            "http://100.128.0.1/hook",
        ] {
            assert!(validate_url(good, false).is_ok(), "{good}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_non_public_addresses_are_refused_at_delivery() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().expect("a name");
        let err = match PublicOnly.resolve(name).await {
            Ok(addrs) => panic!("resolved: {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("resolves to the non-public address"), "{err}");
        assert_eq!(
            validate_event_types(vec!["deal_created".into(), "deal_created".into()]).unwrap(),
            vec!["deal_created".to_string()]
        );
        assert!(validate_event_types(vec!["Deal Created".into()]).is_err());
        assert!(validate_event_types(vec![String::new()]).is_err());
    }
}
