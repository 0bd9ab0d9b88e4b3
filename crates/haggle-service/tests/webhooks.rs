//! Webhook delivery end to end: a real HTTP receiver on a loopback port (an axum app inside the
//! test) that checks each delivery's signature and answers as scripted, and the service's delivery
//! passes driven by a `ManualClock` (retries are due only when the test moves time). The same
//! receiver also listens over TLS (tokio-rustls) with the test certificate in `fixtures/tls/`
//! (`server.pem` for 127.0.0.1 and localhost, signed by the test CA `ca.pem`, valid to 2126; for
//! tests only).
//!
//! Every behaviour runs on SQLite (a fresh temporary file) as `sqlite_<name>` and on PostgreSQL as
//! `postgres_<name>` (a fresh database per test on the server `HAGGLE_TEST_POSTGRES_URL` names,
//! e.g. `postgres:///haggle_test?host=/var/run/postgresql`; without it the PostgreSQL half is
//! skipped, loudly, and in CI it fails).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use haggle_api::{
    ChannelState, CreateMarket, CreateWebhook, DeliveryStatus, ParticipantCreated,
    RegisterParticipant, SetChannel, WebhookCreated, WebhookDelivery, WebhookFormat,
};
use haggle_core::negotiation::NewListing;
use haggle_core::{ErrorCode, Event, Side};
use haggle_service::webhooks::WebhookOptions;
use haggle_service::{Caller, Command, Config, ManualClock, NewOffer, Role, Service, Store};
use hmac::{KeyInit, Mac};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T0: i64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------------
// Harness: one behaviour, two backends.
// ---------------------------------------------------------------------------------------------

macro_rules! both_backends {
    ($($behaviour:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            run(false, $behaviour).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $postgres() {
            run(true, $behaviour).await
        }
    )*};
}

both_backends! {
    delivers_signed_events_to_a_local_receiver => sqlite_delivers_signed_events_to_a_local_receiver, postgres_delivers_signed_events_to_a_local_receiver;
    retries_with_backoff_until_the_receiver_recovers => sqlite_retries_with_backoff_until_the_receiver_recovers, postgres_retries_with_backoff_until_the_receiver_recovers;
    a_dead_receiver_fails_after_the_last_attempt_and_the_market_trades_on => sqlite_a_dead_receiver_fails_after_the_last_attempt_and_the_market_trades_on, postgres_a_dead_receiver_fails_after_the_last_attempt_and_the_market_trades_on;
    a_hanging_receiver_never_blocks_commands => sqlite_a_hanging_receiver_never_blocks_commands, postgres_a_hanging_receiver_never_blocks_commands;
    a_receiver_that_does_not_answer_times_out => sqlite_a_receiver_that_does_not_answer_times_out, postgres_a_receiver_that_does_not_answer_times_out;
    only_chosen_event_types_are_delivered => sqlite_only_chosen_event_types_are_delivered, postgres_only_chosen_event_types_are_delivered;
    deactivation_stops_deliveries => sqlite_deactivation_stops_deliveries, postgres_deactivation_stops_deliveries;
    only_the_markets_operators_manage_webhooks => sqlite_only_the_markets_operators_manage_webhooks, postgres_only_the_markets_operators_manage_webhooks;
    creation_is_idempotent_and_shows_the_secret_once => sqlite_creation_is_idempotent_and_shows_the_secret_once, postgres_creation_is_idempotent_and_shows_the_secret_once;
    the_background_worker_delivers => sqlite_the_background_worker_delivers, postgres_the_background_worker_delivers;
    delivers_over_https_to_a_receiver_whose_certificate_is_trusted => sqlite_delivers_over_https_to_a_receiver_whose_certificate_is_trusted, postgres_delivers_over_https_to_a_receiver_whose_certificate_is_trusted;
    an_https_receiver_with_an_untrusted_certificate_is_not_delivered_to => sqlite_an_https_receiver_with_an_untrusted_certificate_is_not_delivered_to, postgres_an_https_receiver_with_an_untrusted_certificate_is_not_delivered_to;
    a_channel_posts_chosen_kinds_as_chat_lines_with_links => sqlite_a_channel_posts_chosen_kinds_as_chat_lines_with_links, postgres_a_channel_posts_chosen_kinds_as_chat_lines_with_links;
    a_channel_line_is_retried_like_a_webhook_delivery => sqlite_a_channel_line_is_retried_like_a_webhook_delivery, postgres_a_channel_line_is_retried_like_a_webhook_delivery;
    a_channel_is_one_per_market_and_its_url_is_never_shown_whole => sqlite_a_channel_is_one_per_market_and_its_url_is_never_shown_whole, postgres_a_channel_is_one_per_market_and_its_url_is_never_shown_whole;
}

async fn run<F, Fut>(postgres: bool, behaviour: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (url, cleanup) = if postgres {
        let Some(admin) = haggle_testkit::postgres_url("POSTGRES WEBHOOK TESTS") else {
            return;
        };
        let db = haggle_testkit::TempDatabase::create(&admin, "haggle_wh").await;
        (db.url.clone(), Cleanup::Database(db))
    } else {
        let file = haggle_testkit::TempSqlite::new("webhooks");
        (file.url(), Cleanup::File(file))
    };
    let env = Env::new(&url).await;
    // In its own task, so a failing assertion still reaches the cleanup.
    let outcome = tokio::spawn(behaviour(env)).await;
    match cleanup {
        Cleanup::File(file) => drop(file),
        Cleanup::Database(db) => db.drop_now().await,
    }
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("behaviour task failed: {e}"),
        }
    }
}

enum Cleanup {
    File(haggle_testkit::TempSqlite),
    Database(haggle_testkit::TempDatabase),
}

// ---------------------------------------------------------------------------------------------
// A market with an operator, on a manual clock.
// ---------------------------------------------------------------------------------------------

struct Env {
    svc: Arc<Service>,
    clock: Arc<ManualClock>,
    op: Caller,
    market: i64,
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).expect("a JSON reply")
}

impl Env {
    async fn new(url: &str) -> Env {
        let store = Store::open(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        let clock = Arc::new(ManualClock::new(T0));
        // The receivers are on loopback: allowed here as `--allow-private-webhooks` allows them.
        let config = Config {
            allow_private_webhooks: true,
            ..Config::default()
        };
        let svc = Service::new(store, clock.clone(), config);
        let token = svc
            .create_token(Role::Operator, None, None, "test operator")
            .await
            .unwrap();
        let op = svc.authenticate(Some(&token)).await.unwrap();
        let market = svc
            .create_market(
                &op,
                CreateMarket {
                    name: "webhooks".into(),
                    currency: "USD".into(),
                    clock: None,
                    sim_start_ms: None,
                    rules: None,
                },
                None,
            )
            .await
            .unwrap();
        let market = json(&market.body)["id"].as_i64().unwrap();
        Env {
            svc,
            clock,
            op,
            market,
        }
    }

    /// Registers a participant and returns its agent.
    async fn trader(&self, name: &str, budget: i64) -> Caller {
        let r = self
            .svc
            .register_participant(
                &self.op,
                self.market,
                RegisterParticipant {
                    name: name.into(),
                    budget,
                    mandate: None,
                },
                None,
            )
            .await
            .unwrap();
        let created: ParticipantCreated = serde_json::from_str(&r.body).unwrap();
        self.svc
            .authenticate(Some(&created.agent_token))
            .await
            .unwrap()
    }

    async fn sell(&self, seller: &Caller, title: &str, price: i64) -> i64 {
        let listing = NewListing {
            side: Side::Sell,
            title: title.into(),
            description: String::new(),
            category: "misc".into(),
            condition: String::new(),
            price,
            attributes: Default::default(),
            claims: Default::default(),
            true_state: None,
            fulfilment: Default::default(),
            true_transit: None,
        };
        let r = self
            .svc
            .trade(
                seller,
                self.market,
                |actor| Command::CreateListing { actor, listing },
                None,
            )
            .await
            .unwrap();
        json(&r.body)["id"].as_i64().unwrap()
    }

    /// Opens a thread with an offer; returns the offer's id.
    async fn bid(&self, buyer: &Caller, listing: i64, price: i64) -> i64 {
        let r = self
            .svc
            .trade(
                buyer,
                self.market,
                |actor| Command::OpenThread {
                    actor,
                    listing,
                    message: Some("is it still there?".into()),
                    offer: Some(NewOffer {
                        price,
                        expires_in_ms: None,
                    }),
                },
                None,
            )
            .await
            .unwrap();
        json(&r.body)["offer"]["id"].as_i64().unwrap()
    }

    async fn accept(&self, seller: &Caller, offer: i64) -> i64 {
        let r = self
            .svc
            .trade(
                seller,
                self.market,
                |actor| Command::AcceptOffer { actor, offer },
                None,
            )
            .await
            .unwrap();
        json(&r.body)["id"].as_i64().unwrap()
    }

    async fn create_webhook(&self, url: &str, types: &[&str]) -> WebhookCreated {
        let r = self
            .svc
            .create_webhook(
                &self.op,
                self.market,
                CreateWebhook {
                    url: url.into(),
                    event_types: types.iter().map(|t| t.to_string()).collect(),
                },
                None,
            )
            .await
            .expect("webhook created");
        assert_eq!(r.status, 201);
        serde_json::from_str(&r.body).unwrap()
    }

    async fn deliveries(&self, webhook: i64, status: Option<&str>) -> Vec<WebhookDelivery> {
        self.svc
            .webhook_deliveries(&self.op, self.market, webhook, status, None, Some(500))
            .await
            .expect("deliveries listed")
            .items
    }

    /// The market's head: the sequence number of its last event.
    async fn head(&self) -> i64 {
        self.svc
            .events(&self.op, self.market, 0, Some(1000))
            .await
            .unwrap()
            .next_after
    }

    /// Every event of the market after `after`.
    async fn events_after(&self, after: i64) -> Vec<Event> {
        self.svc
            .events(&self.op, self.market, after, Some(1000))
            .await
            .unwrap()
            .events
    }

    fn advance(&self, ms: i64) {
        self.clock.advance(ms);
    }
}

// ---------------------------------------------------------------------------------------------
// The receiver: checks signatures, records deliveries, answers as scripted.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Got {
    headers: HeaderMap,
    body: Bytes,
    /// The signature checked out with the secret the receiver was given.
    verified: bool,
    answered: u16,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name}"))
            .to_str()
            .unwrap()
    }
    fn event(&self) -> Event {
        serde_json::from_slice(&self.body).expect("the body is an event")
    }
}

#[derive(Default)]
struct ReceiverState {
    secret: Mutex<Option<String>>,
    /// Statuses to answer, in order; 200 once empty.
    script: Mutex<VecDeque<u16>>,
    got: Mutex<Vec<Got>>,
    /// When set, each request waits for a permit before it is answered.
    gate: Option<Arc<tokio::sync::Semaphore>>,
    /// Requests that reached the receiver (before any gate).
    arrived: tokio::sync::Notify,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
}

/// The receiver's own check, independent of the service's code: HMAC-SHA256 over
/// "{timestamp}.{body}" with the shared secret, hex, after "v1=".
fn signature_ok(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let (Some(ts), Some(sig)) = (
        headers.get("haggle-timestamp"),
        headers.get("haggle-signature"),
    ) else {
        return false;
    };
    let (Ok(ts), Ok(sig)) = (ts.to_str(), sig.to_str()) else {
        return false;
    };
    let Some(Ok(sig)) = sig.strip_prefix("v1=").map(hex::decode) else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

async fn receive(
    State(s): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    s.arrived.notify_one();
    if let Some(gate) = &s.gate {
        let _permit = gate.acquire().await;
    }
    let verified = s
        .secret
        .lock()
        .unwrap()
        .as_deref()
        .is_some_and(|secret| signature_ok(secret, &headers, &body));
    let answered = s.script.lock().unwrap().pop_front().unwrap_or(200);
    s.got.lock().unwrap().push(Got {
        headers,
        body,
        verified,
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

impl Receiver {
    async fn start(script: &[u16], gate: Option<Arc<tokio::sync::Semaphore>>) -> Receiver {
        let state = Arc::new(ReceiverState {
            script: Mutex::new(script.iter().copied().collect()),
            gate,
            ..ReceiverState::default()
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let (base, _) = haggle_testkit::serve_router(app).await;
        Receiver {
            url: format!("{base}/hook"),
            state,
        }
    }

    /// The same receiver at an `https://` URL, presenting the test certificate.
    async fn start_tls() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = TlsListener::bind().await;
        let url = format!("https://{}/hook", listener.tcp.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, state }
    }

    fn trust(&self, secret: &str) {
        *self.state.secret.lock().unwrap() = Some(secret.to_string());
    }

    fn got(&self) -> Vec<Got> {
        self.state.got.lock().unwrap().clone()
    }
}

/// The test CA that signed the receiver's certificate.
const TEST_CA: &[u8] = include_bytes!("fixtures/tls/ca.pem");
const TEST_CERT: &[u8] = include_bytes!("fixtures/tls/server.pem");
const TEST_KEY: &[u8] = include_bytes!("fixtures/tls/server.key");

/// A loopback listener whose connections are TLS (a failed handshake is dropped, as a TLS server
/// does); axum serves over it as over TCP.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl TlsListener {
    async fn bind() -> TlsListener {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(TEST_CERT)
            .collect::<Result<Vec<_>, _>>()
            .expect("the test certificate");
        let key = PrivateKeyDer::from_pem_slice(TEST_KEY).expect("the test key");
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a server configuration");
        TlsListener {
            tcp: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.tls.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A URL on a loopback port nothing listens on.
async fn dead_url() -> String {
    format!("{}/hook", haggle_testkit::dead_base())
}

fn assert_refused<T: std::fmt::Debug>(r: Result<T, haggle_service::ApiError>, code: ErrorCode) {
    match r {
        Err(e) => assert_eq!(e.code(), code, "{e:?}"),
        Ok(v) => panic!("expected {code:?}, got {v:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Behaviours
// ---------------------------------------------------------------------------------------------

async fn delivers_signed_events_to_a_local_receiver(env: Env) {
    let rx = Receiver::start(&[], None).await;
    let before = env.head().await;
    let created = env.create_webhook(&rx.url, &[]).await;
    rx.trust(&created.secret);
    assert!(created.secret.starts_with("whsec_"), "{}", created.secret);
    assert_eq!(created.webhook.market_id, env.market);
    assert!(created.webhook.active);
    assert!(created.webhook.event_types.is_empty());

    let seller = env.trader("seller", 0).await;
    let buyer = env.trader("buyer", 10_000).await;
    let listing = env.sell(&seller, "bicycle", 5_000).await;
    let offer = env.bid(&buyer, listing, 4_500).await;
    env.accept(&seller, offer).await;
    let expected = env.events_after(before).await;
    assert!(expected.len() >= 6, "{expected:?}");

    let pass = env.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!(pass.enqueued, expected.len());
    assert_eq!(pass.attempted, expected.len());
    assert_eq!(pass.delivered, expected.len());
    assert_eq!((pass.retrying, pass.failed), (0, 0));

    let mut got = rx.got();
    assert_eq!(got.len(), expected.len());
    got.sort_by_key(|g| g.event().seq);
    let deliveries = env.deliveries(created.webhook.id, None).await;
    for (g, e) in got.iter().zip(&expected) {
        assert!(g.verified, "signature of {}", g.event().kind());
        // The body is the event exactly as the log holds it.
        assert_eq!(&g.event(), e);
        assert_eq!(g.header("haggle-event-type"), e.kind());
        assert_eq!(g.header("haggle-timestamp"), T0.to_string());
        assert_eq!(
            g.header("haggle-webhook-id"),
            created.webhook.id.to_string()
        );
        assert_eq!(g.header("content-type"), "application/json");
        let id: i64 = g.header("haggle-delivery-id").parse().unwrap();
        let d = deliveries
            .iter()
            .find(|d| d.id == id)
            .expect("a listed delivery");
        assert_eq!(d.event_seq, e.seq);
        assert_eq!(d.event_type, e.kind());
    }
    // The market's events before the webhook existed are not delivered.
    assert!(got.iter().all(|g| g.event().seq > before));
    for d in &deliveries {
        assert_eq!(d.status, DeliveryStatus::Delivered);
        assert_eq!(d.attempts, 1);
        assert_eq!(d.last_status_code, Some(200));
        assert_eq!(d.delivered_at, Some(T0));
        assert_eq!((d.next_attempt_at, d.last_error.as_deref()), (None, None));
    }

    // Nothing new: nothing sent again.
    let again = env.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!(again, Default::default());
    assert_eq!(rx.got().len(), expected.len());
    // The ledger is untouched by any of this.
    assert!(env.svc.verify(&env.op, env.market).await.unwrap().ok());
}

async fn retries_with_backoff_until_the_receiver_recovers(env: Env) {
    let rx = Receiver::start(&[500, 503, 200], None).await;
    let created = env.create_webhook(&rx.url, &["listing_posted"]).await;
    rx.trust(&created.secret);
    let hook = created.webhook.id;
    let seller = env.trader("seller", 0).await;
    env.sell(&seller, "lamp", 1_200).await;

    let pass = env.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!((pass.enqueued, pass.attempted, pass.retrying), (1, 1, 1));
    let d = &env.deliveries(hook, None).await[0];
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.last_status_code, Some(500));
    assert!(d.last_error.as_deref().unwrap().contains("500"), "{d:?}");
    assert_eq!(d.next_attempt_at, Some(T0 + 1_000));

    // Not due yet: nothing is sent.
    env.advance(999);
    assert_eq!(env.svc.deliver_due_webhooks().await.unwrap().attempted, 0);
    env.advance(1);
    let pass = env.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!((pass.attempted, pass.retrying), (1, 1));
    let d = &env.deliveries(hook, None).await[0];
    assert_eq!((d.attempts, d.last_status_code), (2, Some(503)));
    // The second wait is twice the first.
    assert_eq!(d.next_attempt_at, Some(T0 + 1_000 + 2_000));

    env.advance(1_999);
    assert_eq!(env.svc.deliver_due_webhooks().await.unwrap().attempted, 0);
    env.advance(1);
    let pass = env.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!((pass.attempted, pass.delivered), (1, 1));
    let d = &env.deliveries(hook, None).await[0];
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!((d.attempts, d.last_status_code), (3, Some(200)));
    assert_eq!(d.delivered_at, Some(T0 + 3_000));
    assert_eq!((d.next_attempt_at, d.last_error.as_deref()), (None, None));

    // Three signed attempts of one delivery, each stamped with its own time.
    let got = rx.got();
    assert_eq!(
        got.iter().map(|g| g.answered).collect::<Vec<_>>(),
        [500, 503, 200]
    );
    assert!(got.iter().all(|g| g.verified));
    assert!(
        got.iter()
            .all(|g| g.header("haggle-delivery-id") == d.id.to_string())
    );
    assert_eq!(
        got.iter()
            .map(|g| g.header("haggle-timestamp").parse::<i64>().unwrap())
            .collect::<Vec<_>>(),
        [T0, T0 + 1_000, T0 + 3_000]
    );
    assert!(got.iter().all(|g| g.event().kind() == "listing_posted"));
}

async fn a_dead_receiver_fails_after_the_last_attempt_and_the_market_trades_on(env: Env) {
    let max = WebhookOptions::default().max_attempts as i64;
    let hook = env.create_webhook(&dead_url().await, &[]).await.webhook.id;
    let seller = env.trader("seller", 0).await;
    let buyer = env.trader("buyer", 1_000_000).await;

    // Trade between delivery passes: every command succeeds while deliveries keep failing.
    let mut passes = 0;
    let mut failed = 0;
    for round in 0..4 {
        let listing = env.sell(&seller, &format!("item {round}"), 1_000).await;
        let offer = env.bid(&buyer, listing, 900).await;
        env.accept(&seller, offer).await;
        let pass = env.svc.deliver_due_webhooks().await.unwrap();
        assert_eq!(pass.delivered, 0);
        failed += pass.failed;
        passes += 1;
        env.advance(WebhookOptions::default().max_retry_ms);
    }
    loop {
        let pending = env.deliveries(hook, Some("pending")).await;
        if pending.is_empty() {
            break;
        }
        for d in &pending {
            assert!(d.attempts < max, "{d:?}");
            assert_eq!(d.last_status_code, None);
            assert!(d.next_attempt_at.is_some());
        }
        let pass = env.svc.deliver_due_webhooks().await.unwrap();
        assert_eq!(pass.delivered, 0);
        failed += pass.failed;
        passes += 1;
        assert!(passes < 40, "deliveries never gave up");
        env.advance(WebhookOptions::default().max_retry_ms);
    }

    let all = env.deliveries(hook, None).await;
    let events_since = env.events_after(1).await.len();
    assert!(all.len() >= 4 * 6, "{}", all.len());
    assert!(all.len() <= events_since);
    assert_eq!(failed, all.len());
    for d in &all {
        assert_eq!(d.status, DeliveryStatus::Failed, "{d:?}");
        assert_eq!(d.attempts, max);
        assert_eq!(d.last_status_code, None);
        assert_eq!(d.next_attempt_at, None);
        assert_eq!(d.delivered_at, None);
        let error = d.last_error.as_deref().unwrap();
        assert!(
            error.contains("onnect") || error.contains("refused"),
            "a connection error, got {error}"
        );
    }
    assert_eq!(env.deliveries(hook, Some("failed")).await.len(), all.len());
    assert!(env.deliveries(hook, Some("delivered")).await.is_empty());
    // Given up: later passes leave them alone.
    env.advance(3_600_000);
    assert_eq!(env.svc.deliver_due_webhooks().await.unwrap().attempted, 0);
    // Four deals were made and the books balance.
    let deals = env
        .svc
        .deals(&env.op, env.market, None, None)
        .await
        .unwrap();
    assert_eq!(deals.items.len(), 4);
    assert!(env.svc.verify(&env.op, env.market).await.unwrap().ok());
}

async fn a_hanging_receiver_never_blocks_commands(env: Env) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let rx = Receiver::start(&[], Some(gate.clone())).await;
    let created = env.create_webhook(&rx.url, &["listing_posted"]).await;
    rx.trust(&created.secret);
    let seller = env.trader("seller", 0).await;
    let buyer = env.trader("buyer", 100_000).await;
    env.sell(&seller, "first", 1_000).await;

    // A pass is now stuck in the receiver...
    let svc = env.svc.clone();
    let patient = WebhookOptions {
        timeout: Duration::from_secs(60),
        ..WebhookOptions::default()
    };
    let pass = tokio::spawn(async move { svc.deliver_due_webhooks_with(&patient).await });
    tokio::time::timeout(Duration::from_secs(10), rx.state.arrived.notified())
        .await
        .expect("the delivery reached the receiver");
    assert!(!pass.is_finished());

    // ...and the market trades on, promptly: a full deal while the delivery hangs.
    let trading = async {
        let listing = env.sell(&seller, "second", 2_000).await;
        let offer = env.bid(&buyer, listing, 1_800).await;
        env.accept(&seller, offer).await;
        // Reads of the webhook's state work meanwhile too.
        env.deliveries(created.webhook.id, None).await
    };
    let listed = tokio::time::timeout(Duration::from_secs(10), trading)
        .await
        .expect("commands finish while a receiver hangs");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, DeliveryStatus::Pending);
    assert!(!pass.is_finished());

    // Released: the stuck delivery lands, and the next pass sends the second listing.
    gate.add_permits(100);
    let pass = pass.await.unwrap().unwrap();
    assert_eq!(pass.delivered, 1);
    let next = env.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!((next.enqueued, next.delivered), (1, 1));
    let got = rx.got();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|g| g.verified));
}

async fn a_receiver_that_does_not_answer_times_out(env: Env) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let rx = Receiver::start(&[], Some(gate.clone())).await;
    let hook = env
        .create_webhook(&rx.url, &["participant_joined"])
        .await
        .webhook
        .id;
    env.trader("seller", 0).await;
    let opts = WebhookOptions {
        timeout: Duration::from_millis(300),
        ..WebhookOptions::default()
    };
    let started = std::time::Instant::now();
    let pass = env.svc.deliver_due_webhooks_with(&opts).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((pass.attempted, pass.retrying), (1, 1));
    let d = &env.deliveries(hook, None).await[0];
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.last_status_code, None);
    assert_eq!(d.last_error.as_deref(), Some("no answer within 300 ms"));
    gate.add_permits(100);
}

async fn only_chosen_event_types_are_delivered(env: Env) {
    let deals_rx = Receiver::start(&[], None).await;
    let all_rx = Receiver::start(&[], None).await;
    let deals = env
        .create_webhook(&deals_rx.url, &["deal_created", "listing_sold"])
        .await;
    let all = env.create_webhook(&all_rx.url, &[]).await;
    assert_eq!(deals.webhook.event_types, ["deal_created", "listing_sold"]);
    deals_rx.trust(&deals.secret);
    all_rx.trust(&all.secret);
    assert_ne!(deals.secret, all.secret);

    let seller = env.trader("seller", 0).await;
    let buyer = env.trader("buyer", 10_000).await;
    let listing = env.sell(&seller, "chair", 3_000).await;
    let offer = env.bid(&buyer, listing, 2_500).await;
    env.accept(&seller, offer).await;
    env.svc.deliver_due_webhooks().await.unwrap();

    let kinds = |rx: &Receiver| {
        let mut k: Vec<String> = rx
            .got()
            .iter()
            .map(|g| g.event().kind().to_string())
            .collect();
        k.sort();
        k
    };
    assert_eq!(kinds(&deals_rx), ["deal_created", "listing_sold"]);
    assert!(kinds(&all_rx).len() > 2);
    assert!(kinds(&all_rx).contains(&"offer_made".to_string()));
    assert!(deals_rx.got().iter().all(|g| g.verified));
    // Each receiver checks with its own secret only.
    assert!(all_rx.got().iter().all(|g| g.verified));
    let listed: Vec<String> = env
        .deliveries(deals.webhook.id, None)
        .await
        .into_iter()
        .map(|d| d.event_type)
        .collect();
    assert_eq!(listed.len(), 2);
}

async fn deactivation_stops_deliveries(env: Env) {
    let hook = env.create_webhook(&dead_url().await, &[]).await.webhook.id;
    let seller = env.trader("seller", 0).await;
    env.sell(&seller, "desk", 4_000).await;
    let pass = env.svc.deliver_due_webhooks().await.unwrap();
    assert!(pass.retrying >= 2, "{pass:?}");

    let r = env
        .svc
        .deactivate_webhook(&env.op, env.market, hook, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(json(&r.body)["active"], false);
    // Deactivating again is fine.
    env.svc
        .deactivate_webhook(&env.op, env.market, hook, None)
        .await
        .unwrap();
    for d in env.deliveries(hook, None).await {
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert_eq!(d.last_error.as_deref(), Some("webhook deactivated"));
        assert_eq!(d.attempts, 1);
    }
    env.sell(&seller, "shelf", 4_000).await;
    env.advance(3_600_000);
    let pass = env.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!((pass.enqueued, pass.attempted), (0, 0));
    let hooks = env
        .svc
        .webhooks(&env.op, env.market, None, None)
        .await
        .unwrap();
    assert_eq!(hooks.items.len(), 1);
    assert!(!hooks.items[0].active);
}

async fn only_the_markets_operators_manage_webhooks(env: Env) {
    let agent = env.trader("agent", 0).await;
    let new = |url: &str| CreateWebhook {
        url: url.into(),
        event_types: vec![],
    };
    let (svc, m) = (&env.svc, env.market);
    assert_refused(
        svc.create_webhook(&agent, m, new("http://127.0.0.1:1/x"), None)
            .await,
        ErrorCode::Forbidden,
    );
    assert_refused(
        svc.webhooks(&agent, m, None, None).await,
        ErrorCode::Forbidden,
    );
    // An operator of another market.
    let other = svc
        .create_token(Role::Operator, Some(m + 1000), None, "elsewhere")
        .await
        .unwrap();
    let other = svc.authenticate(Some(&other)).await.unwrap();
    assert_refused(
        svc.create_webhook(&other, m, new("http://127.0.0.1:1/x"), None)
            .await,
        ErrorCode::Forbidden,
    );
    // A market-bound operator of this market may.
    let local = svc
        .create_token(Role::Operator, Some(m), None, "local")
        .await
        .unwrap();
    let local = svc.authenticate(Some(&local)).await.unwrap();
    let r = svc
        .create_webhook(&local, m, new("http://127.0.0.1:1/x"), None)
        .await
        .unwrap();
    let hook = json(&r.body)["webhook"]["id"].as_i64().unwrap();
    assert_refused(
        svc.webhook_deliveries(&agent, m, hook, None, None, None)
            .await,
        ErrorCode::Forbidden,
    );
    assert_refused(
        svc.deactivate_webhook(&agent, m, hook, None).await,
        ErrorCode::Forbidden,
    );

    for bad in ["ftp://example.com/", "example.com/hook", "", "https://"] {
        assert_refused(
            svc.create_webhook(&env.op, m, new(bad), None).await,
            ErrorCode::InvalidRequest,
        );
    }
    assert_refused(
        svc.create_webhook(
            &env.op,
            m,
            CreateWebhook {
                url: "http://127.0.0.1:1/x".into(),
                event_types: vec!["Not A Kind".into()],
            },
            None,
        )
        .await,
        ErrorCode::InvalidRequest,
    );
    assert_refused(
        svc.create_webhook(&env.op, m + 1000, new("http://127.0.0.1:1/x"), None)
            .await,
        ErrorCode::NotFound,
    );
    assert_refused(
        svc.webhook_deliveries(&env.op, m, hook + 1000, None, None, None)
            .await,
        ErrorCode::NotFound,
    );
    assert_refused(
        svc.webhook_deliveries(&env.op, m, hook, Some("lost"), None, None)
            .await,
        ErrorCode::InvalidRequest,
    );
    assert_refused(
        svc.deactivate_webhook(&env.op, m, hook + 1000, None).await,
        ErrorCode::NotFound,
    );
    // Another market's webhook is not found through this market.
    let r = svc
        .create_market(
            &env.op,
            CreateMarket {
                name: "second".into(),
                currency: "USD".into(),
                clock: None,
                sim_start_ms: None,
                rules: None,
            },
            None,
        )
        .await
        .unwrap();
    let m2 = json(&r.body)["id"].as_i64().unwrap();
    assert_refused(
        svc.deactivate_webhook(&env.op, m2, hook, None).await,
        ErrorCode::NotFound,
    );

    // The listing never shows a secret.
    let listed = svc.webhooks(&env.op, m, None, None).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains("whsec_"), "{text}");

    // A bounded number of active webhooks per market.
    for _ in 1..haggle_service::webhooks::MAX_ACTIVE_PER_MARKET {
        svc.create_webhook(&env.op, m, new("http://127.0.0.1:1/x"), None)
            .await
            .unwrap();
    }
    assert_refused(
        svc.create_webhook(&env.op, m, new("http://127.0.0.1:1/x"), None)
            .await,
        ErrorCode::InvalidRequest,
    );
    svc.deactivate_webhook(&env.op, m, hook, None)
        .await
        .unwrap();
    svc.create_webhook(&env.op, m, new("http://127.0.0.1:1/x"), None)
        .await
        .unwrap();
}

async fn creation_is_idempotent_and_shows_the_secret_once(env: Env) {
    let key = |k: &str, body: &str| haggle_service::IdemKey {
        key: k.into(),
        request_hash: body.into(),
    };
    let req = || CreateWebhook {
        url: "http://127.0.0.1:1/x".into(),
        event_types: vec![],
    };
    let first = env
        .svc
        .create_webhook(&env.op, env.market, req(), Some(&key("k1", "h1")))
        .await
        .unwrap();
    let replay = env
        .svc
        .create_webhook(&env.op, env.market, req(), Some(&key("k1", "h1")))
        .await
        .unwrap();
    let (first, replay): (WebhookCreated, WebhookCreated) = (
        serde_json::from_str(&first.body).unwrap(),
        serde_json::from_str(&replay.body).unwrap(),
    );
    assert_eq!(first.webhook, replay.webhook);
    assert!(first.secret.starts_with("whsec_"));
    assert!(!replay.secret.contains("whsec_"), "{}", replay.secret);
    assert_refused(
        env.svc
            .create_webhook(&env.op, env.market, req(), Some(&key("k1", "other")))
            .await,
        ErrorCode::IdempotencyConflict,
    );
    let listed = env
        .svc
        .webhooks(&env.op, env.market, None, None)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
}

async fn the_background_worker_delivers(env: Env) {
    let rx = Receiver::start(&[], None).await;
    let created = env.create_webhook(&rx.url, &["listing_posted"]).await;
    rx.trust(&created.secret);
    let worker = env.svc.spawn_webhooks(Duration::from_millis(20));
    let seller = env.trader("seller", 0).await;
    for i in 0..3 {
        env.sell(&seller, &format!("thing {i}"), 100 + i).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while env
        .deliveries(created.webhook.id, Some("delivered"))
        .await
        .len()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker delivered {:?}",
            rx.got().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.abort();
    let got = rx.got();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|g| g.verified));
}

async fn delivers_over_https_to_a_receiver_whose_certificate_is_trusted(env: Env) {
    let rx = Receiver::start_tls().await;
    assert!(rx.url.starts_with("https://127.0.0.1:"), "{}", rx.url);
    let created = env.create_webhook(&rx.url, &["participant_joined"]).await;
    rx.trust(&created.secret);
    env.trader("seller", 0).await;
    // The test CA is trusted by this client only, besides the system's roots.
    let opts = WebhookOptions {
        extra_roots: vec![TEST_CA.to_vec()],
        ..WebhookOptions::default()
    };
    let pass = env.svc.deliver_due_webhooks_with(&opts).await.unwrap();
    assert_eq!((pass.attempted, pass.delivered), (1, 1), "{pass:?}");
    let got = rx.got();
    assert_eq!(got.len(), 1);
    assert!(got[0].verified, "the signature checks out over TLS too");
    assert_eq!(got[0].event().kind(), "participant_joined");
    let d = &env.deliveries(created.webhook.id, None).await[0];
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.last_status_code, Some(200));
}

async fn an_https_receiver_with_an_untrusted_certificate_is_not_delivered_to(env: Env) {
    let rx = Receiver::start_tls().await;
    let hook = env
        .create_webhook(&rx.url, &["participant_joined"])
        .await
        .webhook
        .id;
    env.trader("seller", 0).await;
    // Without the test CA the certificate is refused: verification is never off.
    let pass = env
        .svc
        .deliver_due_webhooks_with(&WebhookOptions::default())
        .await
        .unwrap();
    assert_eq!((pass.attempted, pass.delivered, pass.retrying), (1, 0, 1));
    assert!(rx.got().is_empty());
    let d = &env.deliveries(hook, None).await[0];
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.last_status_code, None);
    let error = d.last_error.as_deref().unwrap_or_default();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Chat channels: a webhook whose body is a chat line (issue 19)
// ---------------------------------------------------------------------------------------------

impl Env {
    async fn set_channel(&self, url: &str, kinds: &[&str]) -> ChannelState {
        let r = self
            .svc
            .set_channel(
                &self.op,
                self.market,
                SetChannel {
                    url: url.into(),
                    kinds: kinds.iter().map(|k| k.to_string()).collect(),
                },
                None,
            )
            .await
            .expect("channel set");
        assert_eq!(r.status, 200);
        serde_json::from_str(&r.body).unwrap()
    }
}

impl Got {
    /// The chat line: a `{"text": ...}` object and nothing else, as Slack and Mattermost take it.
    fn text(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).expect("a JSON body");
        let obj = v.as_object().expect("an object");
        assert_eq!(obj.len(), 1, "only text: {v}");
        obj["text"].as_str().expect("text").to_string()
    }
}

async fn a_channel_posts_chosen_kinds_as_chat_lines_with_links(env: Env) {
    env.svc.set_public_url(Some("https://haggle.example.org/"));
    let rx = Receiver::start(&[], None).await;
    let set = env
        .set_channel(&rx.url, &["listing_posted", "deal_created"])
        .await;
    assert!(set.channel.unwrap().links);
    let seller = env.trader("Sam", 0).await;
    let buyer = env.trader("Bea", 10_000).await;
    let listing = env.sell(&seller, "Oak desk", 5_000).await;
    let offer = env.bid(&buyer, listing, 4_500).await;
    let deal = env.accept(&seller, offer).await;

    let pass = env.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!((pass.enqueued, pass.delivered), (2, 2), "{pass:?}");
    let mut got = rx.got();
    got.sort_by_key(|g| g.text());
    let m = env.market;
    assert_eq!(
        got.iter().map(Got::text).collect::<Vec<_>>(),
        [
            format!(
                "Deal: Bea buys “Oak desk” from Sam for $45.00 <https://haggle.example.org/m/{m}/deals/{deal}|open>"
            ),
            format!(
                "Sam listed “Oak desk” for $50.00 <https://haggle.example.org/m/{m}/listings/{listing}|open>"
            ),
        ]
    );
    assert!(
        got.iter()
            .all(|g| g.header("content-type") == "application/json")
    );
}

async fn a_channel_line_is_retried_like_a_webhook_delivery(env: Env) {
    let rx = Receiver::start(&[500, 503, 200], None).await;
    let hook = env
        .set_channel(&rx.url, &[])
        .await
        .channel
        .unwrap()
        .webhook_id;
    let seller = env.trader("Sam", 0).await;
    env.sell(&seller, "Lamp & shade", 1_200).await;

    let pass = env.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!((pass.attempted, pass.retrying), (1, 1));
    env.advance(1_000);
    let pass = env.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!((pass.attempted, pass.retrying), (1, 1));
    env.advance(1_999);
    assert_eq!(env.svc.deliver_due_webhooks().await.unwrap().attempted, 0);
    env.advance(1);
    let pass = env.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!((pass.attempted, pass.delivered), (1, 1));
    let d = &env.deliveries(hook, None).await[0];
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Delivered, 3));
    // The same line each time, without a link (no public URL), escaped for Slack.
    let got = rx.got();
    assert_eq!(got.len(), 3);
    for g in &got {
        assert_eq!(g.text(), "Sam listed “Lamp &amp; shade” for $12.00");
    }
}

async fn a_channel_is_one_per_market_and_its_url_is_never_shown_whole(env: Env) {
    let secret_url = "http://127.0.0.1:9/services/T0/B0/abcdefSECRETx7Qa";
    let none: ChannelState = env.svc.channel(&env.op, env.market).await.unwrap();
    assert_eq!(none.channel, None);
    let first = env.set_channel(secret_url, &[]).await.channel.unwrap();
    assert_eq!(first.url, "http://127.0.0.1:9/…x7Qa");
    assert_eq!(
        first.kinds,
        ["listing_posted", "deal_created", "deal_disputed"]
    );
    assert!(!first.links, "no public URL: no links");
    let second = env
        .set_channel(secret_url, &["deal_completed"])
        .await
        .channel
        .unwrap();
    assert_ne!(second.webhook_id, first.webhook_id);
    let shown = env.svc.channel(&env.op, env.market).await.unwrap();
    assert_eq!(shown.channel.as_ref(), Some(&second));
    // Listed among the webhooks as the chat format, the URL shortened there too; the first
    // channel was replaced.
    let hooks = env
        .svc
        .webhooks(&env.op, env.market, None, None)
        .await
        .unwrap()
        .items;
    assert_eq!(hooks.len(), 2);
    assert!(hooks.iter().all(|w| w.format == WebhookFormat::Chat));
    assert!(hooks.iter().all(|w| !w.url.contains("SECRET")), "{hooks:?}");
    assert_eq!(
        hooks.iter().map(|w| w.active).collect::<Vec<_>>(),
        [false, true]
    );
    // Kinds that are no event's are refused, and change nothing.
    let refused = env
        .svc
        .set_channel(
            &env.op,
            env.market,
            SetChannel {
                url: secret_url.into(),
                kinds: vec!["deal_agreed".into()],
            },
            None,
        )
        .await;
    assert_refused(refused, ErrorCode::InvalidRequest);
    assert_eq!(env.svc.channel(&env.op, env.market).await.unwrap(), shown);
    // Only the market's operators see or set it.
    let agent = env.trader("Sam", 0).await;
    assert_refused(
        env.svc.channel(&agent, env.market).await,
        ErrorCode::Forbidden,
    );
    let removed = env
        .svc
        .remove_channel(&env.op, env.market, None)
        .await
        .unwrap();
    assert_eq!(removed.status, 200);
    assert_eq!(
        env.svc.channel(&env.op, env.market).await.unwrap().channel,
        None
    );
}
