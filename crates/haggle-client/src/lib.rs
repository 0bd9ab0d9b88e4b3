//! `haggle_api::MarketClient` over HTTP, for agents that join a market on any Haggle server.
//! Every mutating call carries an `Idempotency-Key` (a random prefix per client and a counter, or
//! the caller's own key: `with_idempotency_key`), and one retry on a transport failure is
//! therefore safe. A server that cannot be reached is `unavailable` (status 0).

use haggle_api::client::ClientResult;
use haggle_api::haggle_core::lifecycle::Reputation;
use haggle_api::haggle_core::limits::MAX_PAGE;
use haggle_api::haggle_core::{
    Deal, Listing, Mandate, Market, Message, Offer, Participant, Rating,
};
use haggle_api::*;
use rand::{RngCore, SeedableRng};
use reqwest::Method;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct HttpClient {
    http: reqwest::Client,
    base: String,
    token: String,
    market: i64,
    participant: i64,
    key_prefix: String,
    counter: AtomicU64,
    /// The caller's key for every mutating call (`with_idempotency_key`) instead of a counter's.
    fixed_key: Option<String>,
}

impl HttpClient {
    /// Connects to `base` (e.g. `http://127.0.0.1:8080`) with an agent token and learns which
    /// market and participant the token speaks for.
    pub async fn connect(base: &str, token: &str) -> ClientResult<HttpClient> {
        let http = haggle_tls::client_builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::transport(e.to_string()))?;
        let mut c = HttpClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            market: 0,
            participant: 0,
            key_prefix: format!("{:016x}", rand::rngs::StdRng::from_os_rng().next_u64()),
            counter: AtomicU64::new(0),
            fixed_key: None,
        };
        let me: Me = c.call(Method::GET, "/v1/me", None::<&()>).await?;
        match (me.market_id, me.participant_id) {
            (Some(m), Some(p)) if me.role == "agent" => {
                c.market = m;
                c.participant = p;
                Ok(c)
            }
            _ => Err(ClientError {
                status: 403,
                body: ErrorBody::new(
                    ErrorCode::Forbidden,
                    format!("this is a {} token; an agent token is needed", me.role),
                ),
            }),
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/markets/{}{rest}", self.market)
    }

    async fn call<T: DeserializeOwned, B: serde::Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> ClientResult<T> {
        let mutating = method != Method::GET;
        let key = mutating.then(|| match &self.fixed_key {
            Some(k) => k.clone(),
            None => format!(
                "{}-{}",
                self.key_prefix,
                self.counter.fetch_add(1, Ordering::Relaxed)
            ),
        });
        let mut last = None;
        for _attempt in 0..2 {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.token);
            if let Some(k) = &key {
                req = req.header("Idempotency-Key", k);
            }
            if let Some(b) = body {
                req = req.json(b);
            } else if mutating {
                req = req.json(&serde_json::json!({}));
            }
            match req.send().await {
                Err(e) => last = Some(ClientError::unavailable(unreachable(&self.base, &e))),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let text = resp
                        .text()
                        .await
                        .map_err(|e| ClientError::unavailable(unreachable(&self.base, &e)))?;
                    if status >= 400 {
                        let body = serde_json::from_str(&text).unwrap_or_else(|_| {
                            ErrorBody::new(ErrorCode::InvalidRequest, text.clone())
                        });
                        return Err(ClientError { status, body });
                    }
                    return serde_json::from_str(&text).map_err(|e| {
                        ClientError::transport(format!("unexpected reply from {path}: {e}"))
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::transport("no attempt made")))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        self.call(Method::GET, path, None::<&()>).await
    }

    async fn post<T: DeserializeOwned, B: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> ClientResult<T> {
        self.call(Method::POST, path, Some(body)).await
    }
}

/// Why `base` could not be reached, with the causes ("... Connection refused").
fn unreachable(base: &str, e: &reqwest::Error) -> String {
    let mut text = format!("the market at {base} could not be reached: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let msg = cause.to_string();
        if !text.contains(&msg) {
            text.push_str(": ");
            text.push_str(&msg);
        }
        source = cause.source();
    }
    text
}

fn query_string(q: &ListingQuery) -> String {
    let mut parts = Vec::new();
    let mut push = |k: &str, v: String| parts.push(format!("{k}={}", urlencode(&v)));
    if let Some(v) = &q.q {
        push("q", v.clone());
    }
    if let Some(v) = &q.category {
        push("category", v.clone());
    }
    if let Some(v) = q.side {
        push("side", v.as_str().into());
    }
    if let Some(v) = q.min_price {
        push("min_price", v.to_string());
    }
    if let Some(v) = q.max_price {
        push("max_price", v.to_string());
    }
    if let Some(v) = q.status {
        push("status", v.as_str().into());
    }
    if let Some(v) = q.owner {
        push("owner", v.to_string());
    }
    if let Some(sort) = q.sort {
        push(
            "sort",
            match sort {
                ListingSort::Newest => "newest",
                ListingSort::Cheapest => "cheapest",
                ListingSort::Relevance => "relevance",
            }
            .into(),
        );
    }
    if let Some(v) = q.limit {
        push("limit", v.to_string());
    }
    if let Some(v) = &q.cursor {
        push("cursor", v.clone());
    }
    parts.join("&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl MarketClient for HttpClient {
    fn with_idempotency_key(&self, key: &str) -> HttpClient {
        HttpClient {
            http: self.http.clone(),
            base: self.base.clone(),
            token: self.token.clone(),
            market: self.market,
            participant: self.participant,
            key_prefix: self.key_prefix.clone(),
            counter: AtomicU64::new(0),
            fixed_key: Some(key.to_string()),
        }
    }
    fn market_id(&self) -> i64 {
        self.market
    }
    fn participant_id(&self) -> i64 {
        self.participant
    }
    async fn market(&self) -> ClientResult<Market> {
        self.get(&self.path("")).await
    }
    async fn participant(&self) -> ClientResult<Participant> {
        self.get(&self.path(&format!("/participants/{}", self.participant)))
            .await
    }
    async fn search(&self, q: &ListingQuery) -> ClientResult<ListingPage> {
        self.get(&self.path(&format!("/listings?{}", query_string(q))))
            .await
    }
    async fn listing(&self, id: i64) -> ClientResult<ListingView> {
        self.get(&self.path(&format!("/listings/{id}"))).await
    }
    async fn create_listing(&self, l: &NewListing) -> ClientResult<Listing> {
        self.post(&self.path("/listings"), l).await
    }
    async fn withdraw_listing(&self, id: i64) -> ClientResult<Done> {
        self.post(
            &self.path(&format!("/listings/{id}/withdraw")),
            &serde_json::json!({}),
        )
        .await
    }
    async fn open_thread(&self, listing: i64, req: &OpenThread) -> ClientResult<ThreadOpened> {
        self.post(&self.path(&format!("/listings/{listing}/threads")), req)
            .await
    }
    async fn threads(
        &self,
        filter: ThreadFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> ClientResult<ThreadList> {
        let mut q = format!("limit={limit}");
        if let Some(s) = filter.status {
            q.push_str(&format!("&state={}", s.as_str()));
        }
        if let Some(m) = filter.your_move {
            q.push_str(&format!("&your_move={m}"));
        }
        if let Some(c) = cursor {
            q.push_str(&format!("&cursor={}", urlencode(c)));
        }
        self.get(&self.path(&format!("/threads?{q}"))).await
    }
    async fn thread(&self, id: i64) -> ClientResult<ThreadView> {
        self.get(&self.path(&format!("/threads/{id}"))).await
    }
    async fn post_message(&self, thread: i64, body: &str) -> ClientResult<Message> {
        self.post(
            &self.path(&format!("/threads/{thread}/messages")),
            &PostMessage {
                body: body.to_string(),
            },
        )
        .await
    }
    async fn make_offer(&self, thread: i64, req: &MakeOffer) -> ClientResult<Offer> {
        self.post(&self.path(&format!("/threads/{thread}/offers")), req)
            .await
    }
    async fn accept(&self, offer: i64) -> ClientResult<Deal> {
        self.post(
            &self.path(&format!("/offers/{offer}/accept")),
            &serde_json::json!({}),
        )
        .await
    }
    async fn reject(&self, offer: i64) -> ClientResult<Done> {
        self.post(
            &self.path(&format!("/offers/{offer}/reject")),
            &serde_json::json!({}),
        )
        .await
    }
    async fn withdraw_offer(&self, offer: i64) -> ClientResult<Done> {
        self.post(
            &self.path(&format!("/offers/{offer}/withdraw")),
            &serde_json::json!({}),
        )
        .await
    }
    async fn end_turn(&self, turn: u64) -> ClientResult<TurnEnded> {
        self.post(
            &self.path(&format!("/turns/{turn}/end")),
            &serde_json::json!({}),
        )
        .await
    }
    async fn walk_away(&self, thread: i64) -> ClientResult<Done> {
        self.post(
            &self.path(&format!("/threads/{thread}/walk-away")),
            &serde_json::json!({}),
        )
        .await
    }
    async fn deals(&self, cursor: Option<&str>) -> ClientResult<DealList> {
        let c = cursor
            .map(|c| format!("&cursor={}", urlencode(c)))
            .unwrap_or_default();
        self.get(&self.path(&format!("/deals?limit={MAX_PAGE}{c}")))
            .await
    }
    async fn hand_over(&self, deal: i64, note: Option<&str>) -> ClientResult<Deal> {
        self.post(
            &self.path(&format!("/deals/{deal}/handover")),
            &HandOver {
                note: note.map(str::to_string),
            },
        )
        .await
    }
    async fn ship(&self, deal: i64, carrier: &str, tracking: &str) -> ClientResult<Deal> {
        self.post(
            &self.path(&format!("/deals/{deal}/ship")),
            &Ship {
                carrier: carrier.to_string(),
                tracking: tracking.to_string(),
            },
        )
        .await
    }
    async fn confirm_receipt(&self, deal: i64) -> ClientResult<Deal> {
        self.post(
            &self.path(&format!("/deals/{deal}/confirm")),
            &serde_json::json!({}),
        )
        .await
    }
    async fn cancel_deal(&self, deal: i64, reason: Option<&str>) -> ClientResult<Deal> {
        self.post(
            &self.path(&format!("/deals/{deal}/cancel")),
            &CancelDeal {
                reason: reason.map(str::to_string),
            },
        )
        .await
    }
    async fn open_dispute(&self, deal: i64, req: &OpenDispute) -> ClientResult<Deal> {
        self.post(&self.path(&format!("/deals/{deal}/dispute")), req)
            .await
    }
    async fn rate(&self, deal: i64, score: u8, comment: &str) -> ClientResult<Rating> {
        self.post(
            &self.path(&format!("/deals/{deal}/ratings")),
            &RateDeal {
                score,
                comment: comment.to_string(),
            },
        )
        .await
    }
    async fn reputation(&self, participant: i64) -> ClientResult<Reputation> {
        self.get(&self.path(&format!("/participants/{participant}/reputation")))
            .await
    }
    async fn balance(&self) -> ClientResult<Balance> {
        self.get(&self.path(&format!("/participants/{}/balance", self.participant)))
            .await
    }
    async fn mandate(&self) -> ClientResult<Mandate> {
        self.get(&self.path(&format!("/participants/{}/mandate", self.participant)))
            .await
    }
    async fn events(&self, after: i64, limit: u32, mine: bool) -> ClientResult<EventPage> {
        self.get(&self.path(&format!("/events?after={after}&limit={limit}&mine={mine}")))
            .await
    }
}
