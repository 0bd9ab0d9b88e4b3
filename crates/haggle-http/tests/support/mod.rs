//! Shared setup of the HTTP API tests: a real server on a random loopback port over a fresh SQLite
//! file, an operator token, helpers to create markets and participants, and `call` to send one
//! request and read back `(status, json)`.
//!
//! The service runs on a [`ManualClock`]: time moves only when a test calls `advance`, so expiry
//! and rate limits are deterministic (no sleeps). No clock sweeper is spawned.
#![allow(dead_code)]

use haggle_service::{Config, ManualClock, Role, Service, Store};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

pub use haggle_testkit::START_MS;

/// A status and a JSON body (a non-JSON body comes back as a JSON string).
pub type Resp = (u16, Value);

pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub client: reqwest::Client,
    /// A global operator token.
    pub operator: String,
    pub svc: Arc<Service>,
    pub clock: Arc<ManualClock>,
    /// The SQLite file behind this server (empty for PostgreSQL).
    pub db: PathBuf,
    // Dropped in this order: the server stops, then its file goes.
    _shutdown: haggle_testkit::Shutdown,
    _file: Option<haggle_testkit::TempSqlite>,
}

/// A participant and its two credentials.
#[derive(Debug, Clone)]
pub struct Party {
    pub id: i64,
    pub agent: String,
    pub principal: String,
}

impl Server {
    pub async fn start() -> Server {
        Server::with_config(Config::default()).await
    }

    /// A server that accepts webhooks to loopback receivers (`--allow-private-webhooks`).
    pub async fn allowing_private_webhooks() -> Server {
        Server::with_config(Config {
            allow_private_webhooks: true,
            ..Config::default()
        })
        .await
    }

    pub async fn with_config(config: Config) -> Server {
        let file = haggle_testkit::TempSqlite::new("http-test");
        let store = Store::open(&file.url())
            .await
            .expect("open the SQLite store");
        Server::with_store(store, config, Some(file)).await
    }

    /// A server on the PostgreSQL database of `HAGGLE_TEST_POSTGRES_URL` (each test makes its own
    /// markets, so tests share it), or `None` with a loud NOT RUN line when it is not set (and a
    /// failure under CI, which always sets it).
    pub async fn postgres() -> Option<Server> {
        let url = haggle_testkit::postgres_url("POSTGRES HTTP TEST")?;
        let store = Store::open(&url).await.expect("open the PostgreSQL store");
        Some(Server::with_store(store, Config::default(), None).await)
    }

    /// Another server on this server's SQLite file, with a fresh service: what a process
    /// restarted after a crash finds (nothing of this one's memory, only what was committed).
    pub async fn restarted(&self) -> Server {
        let url = format!("sqlite://{}", self.db.display());
        let store = Store::open(&url).await.expect("reopen the SQLite store");
        Server::with_store(store, Config::default(), None).await
    }

    async fn with_store(
        store: Store,
        config: Config,
        file: Option<haggle_testkit::TempSqlite>,
    ) -> Server {
        let clock = Arc::new(ManualClock::new(START_MS));
        let svc = Service::new(store, clock.clone(), config);
        let operator = svc
            .create_token(Role::Operator, None, None, "test operator")
            .await
            .expect("operator token");
        let (listener, base) = haggle_testkit::loopback().await;
        let (shutdown, signal) = haggle_testkit::shutdown_signal();
        tokio::spawn(haggle_http::serve(listener, svc.clone(), signal));
        Server {
            base,
            client: { haggle_tls::client() },
            operator,
            svc,
            clock,
            db: file.as_ref().map(|f| f.path.clone()).unwrap_or_default(),
            _shutdown: shutdown,
            _file: file,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Moves the service's clock (and so every real-clock market's time) forward.
    pub fn advance(&self, ms: i64) {
        self.clock.advance(ms);
    }

    /// Sends one request; `body` is sent as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        idem_key: Option<&str>,
    ) -> Resp {
        let body = body.map(|b| b.to_string());
        self.raw(method, path, token, body, idem_key).await
    }

    /// Sends one request with a raw body (for malformed JSON).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
        idem_key: Option<&str>,
    ) -> Resp {
        let method_name = method.as_str().to_ascii_lowercase();
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(k) = idem_key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        assert_documented(method_name, path, status);
        let text = resp.text().await.expect("response body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body), None)
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(token), Some(body), None)
            .await
    }

    /// A GET that must succeed; returns the body.
    pub async fn get_ok(&self, path: &str, token: &str) -> Value {
        let r = self.get(path, token).await;
        assert_status(&r, 200, &format!("GET {path}"));
        r.1
    }

    // ---- setup ----

    /// Creates a market as the operator (`body` is the `CreateMarket` request); returns its id.
    pub async fn create_market(&self, body: Value) -> i64 {
        let r = self.post("/v1/markets", &self.operator, body).await;
        assert_status(&r, 201, "create market");
        r.1["id"].as_i64().expect("market id")
    }

    /// A real-clock market with the default rules.
    pub async fn market(&self) -> i64 {
        self.create_market(json!({"name": "Test market", "currency": "USD"}))
            .await
    }

    /// Registers a participant with a starting budget; returns its id and tokens.
    pub async fn participant(&self, market: i64, name: &str, budget: i64) -> Party {
        let r = self
            .post(
                &format!("/v1/markets/{market}/participants"),
                &self.operator,
                json!({"name": name, "budget": budget}),
            )
            .await;
        assert_status(&r, 201, &format!("register {name}"));
        Party {
            id: r.1["participant"]["id"].as_i64().expect("participant id"),
            agent: r.1["agent_token"].as_str().expect("agent token").into(),
            principal: r.1["principal_token"]
                .as_str()
                .expect("principal token")
                .into(),
        }
    }

    /// A market and participants `(name, budget)`.
    pub async fn market_with(&self, people: &[(&str, i64)]) -> (i64, Vec<Party>) {
        let m = self.market().await;
        let mut parties = Vec::new();
        for (name, budget) in people {
            parties.push(self.participant(m, name, *budget).await);
        }
        (m, parties)
    }

    /// An observer token for one market.
    pub async fn observer(&self, market: i64) -> String {
        let r = self
            .post(
                &format!("/v1/markets/{market}/tokens"),
                &self.operator,
                json!({"role": "observer", "label": "test observer"}),
            )
            .await;
        assert_status(&r, 201, "observer token");
        r.1["token"].as_str().expect("token").into()
    }

    /// `seller` lists an item for sale; returns the listing id.
    pub async fn sell(&self, market: i64, seller: &Party, title: &str, price: i64) -> i64 {
        let r = self
            .post(
                &format!("/v1/markets/{market}/listings"),
                &seller.agent,
                json!({"side": "sell", "title": title, "category": "misc", "price": price}),
            )
            .await;
        assert_status(&r, 201, "create listing");
        r.1["id"].as_i64().expect("listing id")
    }

    /// `buyer` opens a thread on a listing with an offer; returns `(thread, offer)`.
    pub async fn bid(&self, market: i64, buyer: &Party, listing: i64, price: i64) -> (i64, i64) {
        let r = self
            .post(
                &format!("/v1/markets/{market}/listings/{listing}/threads"),
                &buyer.agent,
                json!({"price": price}),
            )
            .await;
        assert_status(&r, 201, "open thread with an offer");
        (
            r.1["thread"]["id"].as_i64().expect("thread id"),
            r.1["offer"]["id"].as_i64().expect("offer id"),
        )
    }

    /// `who` makes an offer in a thread; returns the offer id.
    pub async fn offer(&self, market: i64, who: &Party, thread: i64, price: i64) -> i64 {
        let r = self
            .post(
                &format!("/v1/markets/{market}/threads/{thread}/offers"),
                &who.agent,
                json!({"price": price}),
            )
            .await;
        assert_status(&r, 201, "make offer");
        r.1["id"].as_i64().expect("offer id")
    }

    /// `who` accepts an offer; returns the deal.
    pub async fn accept(&self, market: i64, who: &Party, offer: i64) -> Value {
        let r = self
            .post(
                &format!("/v1/markets/{market}/offers/{offer}/accept"),
                &who.agent,
                json!({}),
            )
            .await;
        assert_status(&r, 201, "accept offer");
        r.1
    }

    // ---- reading state ----

    /// Every event of a market the token may see, following `next_after`.
    pub async fn events(&self, market: i64, token: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .get_ok(
                    &format!("/v1/markets/{market}/events?after={after}&limit=1000"),
                    token,
                )
                .await;
            let events = page["events"].as_array().expect("events").clone();
            if events.is_empty() {
                return out;
            }
            after = page["next_after"].as_i64().expect("next_after");
            out.extend(events);
        }
    }

    pub async fn balance(&self, market: i64, participant: i64) -> Value {
        self.get_ok(
            &format!("/v1/markets/{market}/participants/{participant}/balance"),
            &self.operator,
        )
        .await
    }

    /// What a refusal must leave unchanged: the market's whole event log (as the operator sees
    /// it), the participants' balances, and the market's listings, threads and deals.
    pub async fn snapshot(&self, market: i64, parties: &[&Party]) -> Value {
        let mut balances = Vec::new();
        for p in parties {
            balances.push(self.balance(market, p.id).await);
        }
        let op = &self.operator;
        json!({
            "events": self.events(market, op).await,
            "balances": balances,
            "listings": self.get_ok(&format!("/v1/markets/{market}/listings?limit=500"), op).await,
            "threads": self.get_ok(&format!("/v1/markets/{market}/threads?limit=500"), op).await,
            "deals": self.get_ok(&format!("/v1/markets/{market}/deals?limit=500"), op).await,
            "participants": self.get_ok(&format!("/v1/markets/{market}/participants?limit=500"), op).await,
        })
    }
}

/// Which party of a [`Fixture`] a request speaks for: the seller of its listing and deal (and
/// `{participant}`), or the buyer who made the thread's live offer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subject {
    Seller,
    Buyer,
}
pub use Subject::*;

/// A market with everything a request can name: a seller, a buyer and an outsider (party to
/// nothing), a listing with the buyer's thread and live offer, a deal, a webhook, and observer
/// and operator tokens of the market.
pub struct Fixture {
    pub market: i64,
    pub seller: Party,
    pub buyer: Party,
    pub outsider: Party,
    pub observer: String,
    pub operator: String,
    pub listing: i64,
    pub thread: i64,
    pub offer: i64,
    pub deal: i64,
    pub webhook: i64,
}

impl Fixture {
    /// A market with a seller, a buyer and an outsider; a listing with the buyer's thread and
    /// live offer; a second listing sold to the buyer (the deal); a webhook; observer and
    /// operator tokens of the market.
    pub async fn new(s: &Server) -> Fixture {
        let (market, p) = s
            .market_with(&[("Seller", 0), ("Buyer", 100_000), ("Outsider", 100_000)])
            .await;
        let [seller, buyer, outsider] = [p[0].clone(), p[1].clone(), p[2].clone()];
        let observer = s.observer(market).await;
        let operator = token(s, market, "operator").await;
        let listing = s.sell(market, &seller, "Lamp", 1_000).await;
        let (thread, offer) = s.bid(market, &buyer, listing, 900).await;
        let sold = s.sell(market, &seller, "Desk", 2_000).await;
        let (_, bid) = s.bid(market, &buyer, sold, 2_000).await;
        let deal = s.accept(market, &seller, bid).await["id"].as_i64().unwrap();
        let r = s
            .post(
                &format!("/v1/markets/{market}/webhooks"),
                &s.operator,
                json!({"url": "http://127.0.0.1:9/hook"}),
            )
            .await;
        assert_status(&r, 201, "create webhook");
        let webhook = r.1["webhook"]["id"].as_i64().expect("webhook id");
        Fixture {
            market,
            seller,
            buyer,
            outsider,
            observer,
            operator,
            listing,
            thread,
            offer,
            deal,
            webhook,
        }
    }

    pub fn subject(&self, who: Subject) -> &Party {
        match who {
            Seller => &self.seller,
            Buyer => &self.buyer,
        }
    }

    /// The concrete path of a template.
    pub fn path(&self, template: &str, who: Subject) -> String {
        template
            .replace("{market}", &self.market.to_string())
            .replace("{participant}", &self.subject(who).id.to_string())
            .replace("{listing}", &self.listing.to_string())
            .replace("{thread}", &self.thread.to_string())
            .replace("{offer}", &self.offer.to_string())
            .replace("{deal}", &self.deal.to_string())
            .replace("{webhook}", &self.webhook.to_string())
            // A market without turns: every end_turn meets `not_your_turn` (409) when allowed.
            .replace("{turn}", "1")
            .replace("{token_id}", &token_id(&self.subject(who).agent))
    }
}

/// A token's id: the hex SHA-256 of its secret.
pub fn token_id(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// A market-scoped token made by the global operator.
pub async fn token(s: &Server, market: i64, role: &str) -> String {
    let r = s
        .post(
            &format!("/v1/markets/{market}/tokens"),
            &s.operator,
            json!({"role": role, "label": "matrix"}),
        )
        .await;
    assert_status(&r, 201, "market token");
    r.1["token"].as_str().expect("token").into()
}

/// The served OpenAPI document (as the router builds it).
pub fn document() -> &'static Value {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(haggle_http::openapi()).expect("document"))
}

/// The documented path template a concrete path (query string ignored) falls under, if any.
pub fn template_of(path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or(path);
    let concrete: Vec<&str> = path.split('/').collect();
    document()["paths"].as_object()?.keys().find_map(|t| {
        let parts: Vec<&str> = t.split('/').collect();
        let fits = parts.len() == concrete.len()
            && parts
                .iter()
                .zip(&concrete)
                .all(|(p, c)| p == c || (p.starts_with('{') && !c.is_empty()));
        fits.then_some(t.as_str())
    })
}

/// Every answer of a documented operation has a documented status: each request the HTTP tests
/// send is checked, so a handler returning an undocumented status fails the test that saw it.
#[track_caller]
pub fn assert_documented(method: String, path: &str, status: u16) {
    let Some(template) = template_of(path) else {
        return;
    };
    let Some(op) = document()["paths"][template].get(method.as_str()) else {
        return;
    };
    assert!(
        op["responses"].get(status.to_string()).is_some(),
        "{method} {template} answered {status}, which its OpenAPI operation does not document"
    );
}

/// Asserts a status, showing the body when it differs.
#[track_caller]
pub fn assert_status(r: &Resp, status: u16, what: &str) {
    assert_eq!(r.0, status, "{what}: unexpected status, body {}", r.1);
}

/// Asserts a refusal: the status and exactly the spec's body `{"error": {"code", "message"}}`.
#[track_caller]
pub fn assert_refusal(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.0, status, "expected {status} {code}, body {}", r.1);
    let top = r.1.as_object().expect("the error body is a JSON object");
    assert_eq!(
        top.keys().collect::<Vec<_>>(),
        ["error"],
        "body has only `error`: {}",
        r.1
    );
    let err = top["error"].as_object().expect("`error` is an object");
    let mut keys = err.keys().map(String::as_str).collect::<Vec<_>>();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["code", "message"],
        "error has code and message: {}",
        r.1
    );
    assert_eq!(err["code"], code, "error code: {}", r.1);
    let message = err["message"].as_str().expect("message is a string");
    assert!(!message.trim().is_empty(), "message is not empty");
}

/// The ids of a list of JSON objects.
pub fn ids(items: &Value) -> Vec<i64> {
    items
        .as_array()
        .expect("an array")
        .iter()
        .map(|x| x["id"].as_i64().expect("id"))
        .collect()
}
