//! Shared setup of the web tests: a real server (the JSON API and the pages, merged as `haggle
//! serve` does) on a random loopback port over a fresh SQLite file, a market set up through the
//! JSON API, and a browser-less client that signs in with a cookie and submits forms.
#![allow(dead_code)]

use haggle_service::{Config, ManualClock, Role, Service, Store};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

pub use haggle_testkit::START_MS;

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub operator: String,
    pub svc: Arc<Service>,
    pub clock: Arc<ManualClock>,
    // Dropped in this order: the server stops, then its file goes.
    _shutdown: haggle_testkit::Shutdown,
    _db: haggle_testkit::TempSqlite,
}

#[derive(Debug, Clone)]
pub struct Party {
    pub id: i64,
    pub name: String,
    pub agent: String,
    pub principal: String,
}

impl Server {
    pub async fn start() -> Server {
        Server::with_reports(None).await
    }

    pub async fn with_reports(reports: Option<PathBuf>) -> Server {
        let db = haggle_testkit::TempSqlite::new("web-test");
        let store = Store::open(&db.url()).await.expect("open the SQLite store");
        let clock = Arc::new(ManualClock::new(START_MS));
        let svc = Service::new(store, clock.clone(), Config::default());
        let operator = svc
            .create_token(Role::Operator, None, None, "test operator")
            .await
            .expect("operator token");
        let (listener, base) = haggle_testkit::loopback().await;
        let mcp_shutdown = haggle_http::CancellationToken::new();
        let app = haggle_http::app(svc.clone(), mcp_shutdown.clone()).merge(haggle_web::router(
            svc.clone(),
            haggle_web::WebOptions {
                reports,
                ..Default::default()
            },
        ));
        let (shutdown, signal) = haggle_testkit::shutdown_signal();
        tokio::spawn(haggle_http::serve_app(listener, app, mcp_shutdown, signal));
        Server {
            base,
            client: {
                haggle_tls::client_builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .expect("client")
            },
            operator,
            svc,
            clock,
            _shutdown: shutdown,
            _db: db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    // ---- the JSON API, for setting markets up ----

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> Value {
        let r = self
            .client
            .request(method.clone(), self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status < 300, "{method} {path}: {status} {v}");
        v
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        self.api(reqwest::Method::POST, path, token, body).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Value {
        self.api(reqwest::Method::PUT, path, token, body).await
    }

    pub async fn market(&self, name: &str) -> i64 {
        self.post(
            "/v1/markets",
            &self.operator,
            json!({"name": name, "currency": "USD"}),
        )
        .await["id"]
            .as_i64()
            .expect("market id")
    }

    pub async fn participant(&self, m: i64, name: &str, budget: i64) -> Party {
        let r = self
            .post(
                &format!("/v1/markets/{m}/participants"),
                &self.operator,
                json!({"name": name, "budget": budget}),
            )
            .await;
        Party {
            id: r["participant"]["id"].as_i64().unwrap(),
            name: name.into(),
            agent: r["agent_token"].as_str().unwrap().into(),
            principal: r["principal_token"].as_str().unwrap().into(),
        }
    }

    pub async fn observer(&self, m: i64) -> String {
        self.post(
            &format!("/v1/markets/{m}/tokens"),
            &self.operator,
            json!({"role": "observer"}),
        )
        .await["token"]
            .as_str()
            .unwrap()
            .into()
    }

    pub async fn sell(&self, m: i64, seller: &Party, title: &str, price: i64) -> i64 {
        self.post(
            &format!("/v1/markets/{m}/listings"),
            &seller.agent,
            json!({"side": "sell", "title": title, "description": "good as new", "category": "misc", "price": price}),
        )
        .await["id"]
            .as_i64()
            .unwrap()
    }

    /// `buyer` opens a thread on `listing` with an offer; returns the offer id.
    pub async fn bid(&self, m: i64, buyer: &Party, listing: i64, price: i64) -> i64 {
        self.post(
            &format!("/v1/markets/{m}/listings/{listing}/threads"),
            &buyer.agent,
            json!({"message": "Would you take this?", "price": price}),
        )
        .await["offer"]["id"]
            .as_i64()
            .unwrap()
    }

    pub async fn accept(&self, m: i64, who: &Party, offer: i64) -> Value {
        self.post(
            &format!("/v1/markets/{m}/offers/{offer}/accept"),
            &who.agent,
            json!({}),
        )
        .await
    }

    /// A sale from `seller` to `buyer` at `price`; returns the deal.
    pub async fn deal(
        &self,
        m: i64,
        seller: &Party,
        buyer: &Party,
        title: &str,
        price: i64,
    ) -> Value {
        let l = self.sell(m, seller, title, price).await;
        let o = self.bid(m, buyer, l, price).await;
        self.accept(m, seller, o).await
    }

    /// A deal the buyer disputes after the handover; returns its id.
    pub async fn disputed(
        &self,
        m: i64,
        seller: &Party,
        buyer: &Party,
        title: &str,
        price: i64,
    ) -> i64 {
        let d = self.deal(m, seller, buyer, title, price).await["id"]
            .as_i64()
            .unwrap();
        self.post(
            &format!("/v1/markets/{m}/deals/{d}/handover"),
            &seller.agent,
            json!({"note": "left at reception"}),
        )
        .await;
        self.post(
            &format!("/v1/markets/{m}/deals/{d}/dispute"),
            &buyer.agent,
            json!({"reason": "the screen is cracked"}),
        )
        .await;
        d
    }

    // ---- pages, as a browser without JavaScript sees them ----

    /// GETs a page with the session cookie of `token` (none when `None`): status, body, and the
    /// redirect target if any.
    pub async fn page(&self, path: &str, token: Option<&str>) -> Page {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.header("Cookie", format!("haggle_session={t}"));
        }
        Page::from(req.send().await.expect("page request")).await
    }

    /// Submits a form as `token`, from this server's origin.
    pub async fn form(&self, path: &str, token: &str, fields: &[(&str, &str)]) -> Page {
        let req = self
            .client
            .post(self.url(path))
            .header("Cookie", format!("haggle_session={token}"))
            .header("Origin", &self.base)
            .form(fields);
        Page::from(req.send().await.expect("form request")).await
    }
}

pub struct Page {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
}

impl Page {
    async fn from(r: reqwest::Response) -> Page {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Page {
            status,
            body: r.text().await.unwrap_or_default(),
            location,
            headers,
        }
    }

    /// The value of the first hidden input `name` on the page (the CSRF token).
    pub fn hidden(&self, name: &str) -> String {
        let pat = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&pat)
            .unwrap_or_else(|| panic!("no hidden {name} on the page:\n{}", self.body))
            + pat.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_string()
    }
}

#[allow(unused_imports)] // the report tests use it, not every test binary
pub use haggle_testkit::temp_dir;
