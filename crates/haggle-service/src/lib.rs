//! The market service: everything between a transport (HTTP, MCP, in-process) and the store —
//! authentication and roles, the injected clock, idempotency (keys stored with the effect, in-flight
//! detection), rate limits, rendering outcomes to the wire, the live feed and the clock sweeper.
//! Every interface calls the same methods, so every rule and refusal is the same everywhere.

pub mod auth;
mod by_hand;
mod channels;
pub mod clock;
pub mod in_process;
mod insight;
mod limiter;
mod moderation;
pub mod payments;
pub mod story;
mod token_cache;
mod tokens;
pub mod turns;
pub mod webhooks;

pub use auth::{Caller, hash_token, new_secret};
pub use by_hand::{ProposalPage, ProposalView};
pub use clock::{Clock, ManualClock, SystemClock};
pub use haggle_store::{
    Command, NewOffer, Outcome, Role, Store, StoreError, TurnMark, Viewer, proposals,
};
pub use in_process::InProcess;
pub use tokens::{TOKEN_RECHECK, token_info};

use haggle_api::*;
use haggle_core::model::{ActedBy, ClockMode, ListingStatus, MandateAuthor, Market, MarketRules};
use haggle_core::{DomainError, ErrorCode};
use haggle_store::{Idempotency, NewMarket, Ran, StoredResponse, TokenRecord};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// A refusal or failure as the wire carries it: an HTTP status and the spec's error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: code.http_status(),
            body: ErrorBody::new(code, message),
        }
    }
    pub fn code(&self) -> ErrorCode {
        self.body.error.code
    }
    /// A backend failure: a 500, never stored for idempotency. The cause goes to the server's log
    /// under a request id; the client gets only the id (database error text can reveal schema,
    /// queries or data, so it never leaves the server).
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        let id = incident_id();
        tracing::error!(request_id = %id, error = %e, "internal error");
        ApiError {
            status: 500,
            body: ErrorBody::new(
                ErrorCode::Internal,
                format!("internal error (request id {id}); the server's log has the cause"),
            ),
        }
    }
}

/// A process-unique id for a logged failure: the process id and a counter, so an operator finds
/// the log line a client quotes. Not a secret and not market state.
fn incident_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}-{n:x}", std::process::id())
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        ApiError::new(e.code, e.message)
    }
}

impl From<(ErrorCode, String)> for ApiError {
    fn from((code, message): (ErrorCode, String)) -> ApiError {
        ApiError::new(code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

/// A successful reply: status and JSON body (already serialised, as stored for idempotent replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json<T: Serialize>(status: u16, v: &T) -> Reply {
        Reply {
            status,
            body: serde_json::to_string(v).expect("wire types serialise"),
        }
    }
}

pub type ApiResult<T = Reply> = Result<T, ApiError>;

/// An idempotency key as a transport received it, with the hash of the request it came with.
#[derive(Debug, Clone)]
pub struct IdemKey {
    pub key: String,
    pub request_hash: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Requests per second per token (0 = unlimited), with a burst of twice that.
    pub rate_per_sec: u32,
    /// Accept and deliver webhooks to loopback, private, link-local and similar addresses. Off
    /// by default: a webhook makes the server send requests wherever an operator points it.
    pub allow_private_webhooks: bool,
    /// How often a live reader (SSE, the web feed) also looks for new events. Its wake-ups come
    /// from this process's commands and, on PostgreSQL, from other replicas' announcements
    /// ([`Service::spawn_event_listener`]); the poll only covers a lost listener connection.
    pub feed_poll: std::time::Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            rate_per_sec: 2000,
            allow_private_webhooks: false,
            feed_poll: std::time::Duration::from_millis(500),
        }
    }
}

pub struct Service {
    store: Store,
    clock: Arc<dyn Clock>,
    feed: tokio::sync::broadcast::Sender<i64>,
    in_flight: Mutex<HashSet<(String, String)>>,
    limiter: limiter::Limiter,
    /// Hashes of tokens revoked by this process: wakes their live streams at once.
    revocations: tokio::sync::broadcast::Sender<String>,
    /// Recent successful token checks (`token_cache`).
    token_checks: token_cache::TokenCache,
    allow_private_webhooks: bool,
    feed_poll: std::time::Duration,
    /// The payment provider behind markets created with `payments` (none: no such market).
    payments: Mutex<payments::Payments>,
    /// Where people reach the web pages (`haggle serve --public-url`), for links in chat lines.
    public_url: Mutex<Option<String>>,
    /// A simulation's participants driven from outside, and their turns (issue 24); unset: no
    /// market of this service has turns.
    turns: std::sync::OnceLock<Arc<turns::Turns>>,
}

/// Removes an idempotency key from the in-flight set when its request ends, however it ends.
struct InFlight<'a>(&'a Service, (String, String));

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .lock()
            .expect("in-flight set")
            .remove(&self.1);
    }
}

use haggle_core::limits::{MAX_EVENTS, MAX_PAGE};

/// A page size: 50 by default, refused outside 1..=500 (a silent clamp would hide a client's bug).
fn page_limit(limit: Option<u32>) -> ApiResult<u32> {
    bounded_limit(limit, 50, MAX_PAGE)
}

/// `limit`, or `default` without one; `invalid_request` naming `limit` outside `1..=max`.
fn bounded_limit(limit: Option<u32>, default: u32, max: u32) -> ApiResult<u32> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("limit must be between 1 and {max}, got {n}"),
        )),
    }
}

fn parse_cursor(cursor: Option<&str>) -> ApiResult<i64> {
    match cursor {
        None => Ok(0),
        Some(c) => c
            .parse()
            .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, format!("bad cursor '{c}'"))),
    }
}

fn next_cursor<T>(items: &[T], limit: u32, id: impl Fn(&T) -> i64) -> Option<String> {
    (items.len() as u32 == limit)
        .then(|| items.last().map(|x| id(x).to_string()))
        .flatten()
}

fn render(result: &Result<Outcome, DomainError>) -> StoredResponse {
    let reply = match result {
        Err(e) => Reply::json(e.code.http_status(), &ErrorBody::from(e)),
        Ok(Outcome::Participant(p)) => Reply::json(
            201,
            &serde_json::json!({
                "participant": p,
                "agent_token": "(shown once; create a new one with POST /v1/markets/{market}/tokens)",
                "principal_token": "(shown once; create a new one with POST /v1/markets/{market}/tokens)",
            }),
        ),
        Ok(Outcome::Listing(l)) => Reply::json(201, l),
        Ok(Outcome::Thread {
            thread,
            message,
            offer,
        }) => Reply::json(
            201,
            &ThreadOpened {
                thread: thread.clone(),
                message: message.clone(),
                offer: offer.clone(),
            },
        ),
        Ok(Outcome::Message(m)) => Reply::json(201, m),
        Ok(Outcome::Offer(o)) => Reply::json(201, o),
        Ok(Outcome::Deal(d)) => Reply::json(201, d),
        Ok(Outcome::DealUpdated(d)) => Reply::json(200, d),
        Ok(Outcome::Note(n)) => Reply::json(201, n),
        Ok(Outcome::Rating(r)) => Reply::json(201, r),
        Ok(Outcome::DealChanged(id)) => Reply::json(200, &serde_json::json!({"deal_id": id})),
        Ok(Outcome::Clock { now }) => Reply::json(200, &ClockReading { now: *now }),
        Ok(Outcome::Market(m)) => Reply::json(200, m),
        Ok(Outcome::Moderated(l)) => Reply::json(200, l),
        Ok(Outcome::ParticipantUpdated(p)) => Reply::json(200, p),
        Ok(Outcome::Done) => Reply::json(200, &Done { ok: true }),
    };
    StoredResponse {
        status: reply.status,
        body: reply.body,
    }
}

/// A created market's answer (201, the market), stored with its key.
fn market_created(result: &Result<Outcome, DomainError>) -> StoredResponse {
    match result {
        Ok(Outcome::Market(m)) => {
            let reply = Reply::json(201, m);
            StoredResponse {
                status: reply.status,
                body: reply.body,
            }
        }
        other => render(other),
    }
}

impl Service {
    pub fn new(store: Store, clock: Arc<dyn Clock>, config: Config) -> Arc<Service> {
        let (feed, _) = tokio::sync::broadcast::channel(1024);
        let (revocations, _) = tokio::sync::broadcast::channel(64);
        Arc::new(Service {
            store,
            clock,
            feed,
            in_flight: Mutex::new(HashSet::new()),
            limiter: limiter::Limiter::new(config.rate_per_sec),
            revocations,
            token_checks: token_cache::TokenCache::default(),
            allow_private_webhooks: config.allow_private_webhooks,
            feed_poll: config.feed_poll,
            payments: Mutex::new(payments::Payments::default()),
            public_url: Mutex::new(None),
            turns: std::sync::OnceLock::new(),
        })
    }

    /// Gives one market of this service turns for its participants driven from outside (a
    /// simulation does, once, before the first round). A second call is refused.
    pub fn attach_turns(&self, turns: Arc<turns::Turns>) -> Result<(), Arc<turns::Turns>> {
        self.turns.set(turns)
    }

    /// The outside participants' turns of `market`, if it has them.
    fn turns_of(&self, market: i64) -> Option<&Arc<turns::Turns>> {
        self.turns.get().filter(|t| t.market() == market)
    }

    /// A command by an outside participant (its agent or principal) is admitted only in its
    /// open turn, and recorded; everyone else's runs as before (`None`).
    async fn admit_turn(&self, caller: &Caller, market: i64) -> ApiResult<Option<turns::Admitted>> {
        let participant = match (caller.role, caller.market, caller.participant) {
            (Role::Agent | Role::Principal, Some(m), Some(p)) if m == market => p,
            _ => return Ok(None),
        };
        match self.turns_of(market) {
            Some(t) => t.admit(participant).await,
            None => Ok(None),
        }
    }

    /// The open turn of a participant driven from outside (the web shows its End turn); `None`
    /// when none is open or the market has no turns.
    pub fn open_turn(&self, market: i64, participant: i64) -> Option<u64> {
        self.turns_of(market)?.open_turn(participant)
    }

    /// The caller's participant (its agent or principal) ends its open turn `turn`.
    pub async fn end_turn(&self, caller: &Caller, market: i64, turn: u64) -> ApiResult {
        let participant = match (caller.role, caller.market, caller.participant) {
            (Role::Agent | Role::Principal, Some(m), Some(p)) if m == market => p,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "a turn is ended by its participant's agent or principal token",
                ));
            }
        };
        let Some(t) = self.turns_of(market) else {
            return Err(ApiError::new(
                ErrorCode::NotYourTurn,
                format!("market {market} has no turns: its participants act at any time"),
            ));
        };
        t.end(participant, turn)?;
        Ok(Reply::json(
            200,
            &TurnEnded {
                participant_id: participant,
                turn,
                ended: true,
            },
        ))
    }

    /// The scheduler notes an outside participant's turn on its feed (operators only).
    pub async fn mark_turn(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        turn: u64,
        mark: haggle_store::TurnMark,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        let cmd = Command::MarkTurn {
            participant,
            turn,
            mark,
        };
        Ok(self.command(caller, market, cmd, None).await?.0)
    }

    /// Applies a command recorded in an outside participant's turn again (a replay without the
    /// participant's process; operators only). Its refusal, if the run had one, comes back too.
    pub async fn apply_recorded(
        &self,
        caller: &Caller,
        market: i64,
        cmd: Command,
        by: ActedBy,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        // A payment record follows the provider only (see `payments`): no one records it by hand.
        if matches!(cmd, Command::RecordPayment { .. }) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "a payment record is written by the payment driver only",
            ));
        }
        Ok(self.command_by(caller, market, cmd, by, None).await?.0)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Wakes live readers when a market's log grows: by this process's commands and, on
    /// PostgreSQL, by other replicas' (see [`Service::spawn_event_listener`]). Readers also poll
    /// every [`Service::feed_poll`].
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<i64> {
        self.feed.subscribe()
    }

    /// How long a live reader waits for a wake-up before it looks anyway.
    pub fn feed_poll(&self) -> std::time::Duration {
        self.feed_poll
    }

    /// Forwards the markets other replicas wrote events to (PostgreSQL `LISTEN/NOTIFY`) to this
    /// process's live readers, reconnecting a second after a lost connection (readers poll
    /// meanwhile). Returns at once on SQLite, whose only writer is this process.
    pub fn spawn_event_listener(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match svc.store.listen_for_events().await {
                    Ok(None) => return,
                    Ok(Some(mut notices)) => loop {
                        match notices.next().await {
                            Ok(market) => {
                                let _ = svc.feed.send(market);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "the event listener lost its connection");
                                break;
                            }
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for other replicas' events")
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    }

    pub async fn authenticate(&self, bearer: Option<&str>) -> ApiResult<Caller> {
        let secret = bearer.ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "missing bearer token: send 'Authorization: Bearer <token>'",
            )
        })?;
        let hash = hash_token(secret);
        if let Some(caller) = self.token_checks.fresh(&hash) {
            self.admit_rate(&caller)?;
            return Ok(caller);
        }
        let (generation, read_at) = (self.token_checks.generation(), std::time::Instant::now());
        let rec = self.store.token(&hash).await?;
        let rec = rec
            .filter(|t| t.revoked_at.is_none())
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "unknown or revoked token"))?;
        let caller = Caller::from_record(&rec);
        self.admit_rate(&caller)?;
        self.refuse_suspended(&caller).await?;
        self.token_checks.keep(&caller, generation, read_at);
        Ok(caller)
    }

    /// Refuses a request over its token's rate.
    fn admit_rate(&self, caller: &Caller) -> ApiResult<()> {
        if !self.limiter.allow(&caller.scope, self.now()) {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                "too many requests for this token; slow down and retry",
            ));
        }
        Ok(())
    }

    /// Creates a token and returns its secret (shown once).
    pub async fn create_token(
        &self,
        role: Role,
        market: Option<i64>,
        participant: Option<i64>,
        label: &str,
    ) -> ApiResult<String> {
        let secret = new_secret();
        let rec = TokenRecord {
            hash: hash_token(&secret),
            role,
            market_id: market,
            participant_id: participant,
            label: label.to_string(),
            created_at: self.now(),
            revoked_at: None,
        };
        self.store.insert_token(&rec).await?;
        Ok(secret)
    }

    fn claim(&self, caller: &Caller, idem: Option<&IdemKey>) -> ApiResult<Option<InFlight<'_>>> {
        let Some(k) = idem else { return Ok(None) };
        if k.key.is_empty() || k.key.len() > 200 {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "Idempotency-Key must be 1 to 200 characters",
            ));
        }
        let id = (caller.scope.clone(), k.key.clone());
        if !self
            .in_flight
            .lock()
            .expect("in-flight set")
            .insert(id.clone())
        {
            return Err(ApiError::new(
                ErrorCode::IdempotencyInFlight,
                "a request with this Idempotency-Key is still running",
            ));
        }
        Ok(Some(InFlight(self, id)))
    }

    fn replay(resp: StoredResponse) -> ApiResult {
        if resp.status >= 400 {
            let body: ErrorBody = serde_json::from_str(&resp.body).map_err(ApiError::internal)?;
            return Err(ApiError {
                status: resp.status,
                body,
            });
        }
        Ok(Reply {
            status: resp.status,
            body: resp.body,
        })
    }

    fn conflict() -> ApiError {
        ApiError::new(
            ErrorCode::IdempotencyConflict,
            "this Idempotency-Key was used with a different request",
        )
    }

    /// Runs one market command for `caller` (authorised by the caller of this method), with its
    /// idempotency key stored in the same transaction as the effect.
    async fn command(
        &self,
        caller: &Caller,
        market: i64,
        cmd: Command,
        idem: Option<&IdemKey>,
    ) -> ApiResult<(Reply, Option<Outcome>)> {
        self.command_by(caller, market, cmd, ActedBy::Agent, idem)
            .await
    }

    /// [`Service::command`], naming who acts for the command's actor (its agent, or its
    /// principal by hand): the events record it.
    async fn command_by(
        &self,
        caller: &Caller,
        market: i64,
        cmd: Command,
        by: ActedBy,
        idem: Option<&IdemKey>,
    ) -> ApiResult<(Reply, Option<Outcome>)> {
        let admitted = self.admit_turn(caller, market).await?;
        let recorded = admitted.as_ref().map(|_| cmd.clone());
        let _guard = self.claim(caller, idem)?;
        let render_fn = render;
        let key = idem.map(|k| Idempotency {
            scope: &caller.scope,
            key: &k.key,
            request_hash: &k.request_hash,
            render: &render_fn,
        });
        match self.store.run_by(market, self.now(), cmd, by, key).await? {
            Ran::Replayed(resp) => Self::replay(resp).map(|r| (r, None)),
            Ran::Conflict => Err(Self::conflict()),
            Ran::Fresh { result, events } => {
                if let (Some(a), Some(cmd)) = (&admitted, recorded) {
                    a.record(cmd, by, result.as_ref().err().map(|e| e.code));
                }
                if let Some(last) = events.last() {
                    let _ = self.feed.send(last.market_id);
                }
                self.forget_moderated_tokens(&events);
                // After the commit: the provider follows the ledger (see `payments`).
                self.drive_payments_after(market, &events).await;
                let resp = render(&result);
                match result {
                    Err(e) => Err(e.into()),
                    Ok(out) => Ok((
                        Reply {
                            status: resp.status,
                            body: resp.body,
                        },
                        Some(out),
                    )),
                }
            }
        }
    }

    async fn market_or_404(&self, market: i64) -> ApiResult<Market> {
        self.store
            .market(market)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("market {market} not found")))
    }

    fn require_operator(caller: &Caller, market: Option<i64>) -> ApiResult<()> {
        let ok = match market {
            Some(m) => caller.is_operator_of(m),
            None => caller.role == Role::Operator && caller.market.is_none(),
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "this needs an operator token",
            ))
        }
    }

    /// The participant's principal, or an operator of the market.
    fn require_principal_or_operator(
        caller: &Caller,
        market: i64,
        participant: i64,
    ) -> ApiResult<()> {
        if caller.is_operator_of(market)
            || (caller.role == Role::Principal
                && caller.market == Some(market)
                && caller.participant == Some(participant))
        {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the participant's principal or an operator may do this",
            ))
        }
    }

    async fn participant_or_404(&self, market: i64, participant: i64) -> ApiResult<()> {
        match self.store.participant(market, participant).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("participant {participant} not found"),
            )),
        }
    }

    fn require_in_market(caller: &Caller, market: i64) -> ApiResult<()> {
        if caller.in_market(market) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this token is not for market {market}"),
            ))
        }
    }

    fn require_reader_of(caller: &Caller, market: i64, participant: i64) -> ApiResult<()> {
        if caller.may_read_participant(market, participant) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this token may not read participant {participant}'s private data"),
            ))
        }
    }

    // ---- markets ----

    /// Creates a market. With a key, the key is recorded in the creating transaction, so servers
    /// racing on one key create one market and all answer with it.
    pub async fn create_market(
        &self,
        caller: &Caller,
        req: CreateMarket,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        Self::require_operator(caller, None)?;
        let nm = match self.new_market(req) {
            Ok(nm) => nm,
            // A refusal writes nothing, so storing it after the fact cannot race with an effect.
            Err(e) => {
                return self
                    .once_per_key(caller, idem, async { Err(e) }, |r| r.body.clone())
                    .await;
            }
        };
        let _guard = self.claim(caller, idem)?;
        let Some(k) = idem else {
            let m = self.store.create_market(nm, self.now()).await?;
            let _ = self.feed.send(m.id);
            return Ok(Reply::json(201, &m));
        };
        let key = Idempotency {
            scope: &caller.scope,
            key: &k.key,
            request_hash: &k.request_hash,
            render: &market_created,
        };
        match self.store.create_market_once(nm, self.now(), key).await? {
            Ran::Replayed(resp) => Self::replay(resp),
            Ran::Conflict => Err(Self::conflict()),
            Ran::Fresh { result, events } => {
                if let Some(e) = events.last() {
                    let _ = self.feed.send(e.market_id);
                }
                let resp = market_created(&result);
                Ok(Reply {
                    status: resp.status,
                    body: resp.body,
                })
            }
        }
    }

    /// The market a creation request asks for, or why it is refused.
    fn new_market(&self, req: CreateMarket) -> ApiResult<NewMarket> {
        let name = req.name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "name must be 1 to 100 characters",
            ));
        }
        let currency = req.currency.trim().to_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "currency must be an ISO 4217 code like USD, got '{}'",
                    req.currency
                ),
            ));
        }
        haggle_core::negotiation::check_plain_text("name", name)?;
        let rules = req.rules.unwrap_or_default();
        let clock_mode = req.clock.unwrap_or(ClockMode::Real);
        let sim_start = req.sim_start_ms.unwrap_or_else(|| self.now());
        // A plausible instant, like a closing time: deadlines are computed from the clock.
        haggle_core::model::check_closing_time("sim_start_ms", Some(sim_start))?;
        // The clock the market starts on: a closing time must lie ahead of it.
        let start = match clock_mode {
            ClockMode::Simulated => sim_start,
            ClockMode::Real => self.now(),
        };
        rules.validate_new(start)?;
        if rules.payments.is_some() && self.payment_provider().is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "rules.payments needs a payment provider on this server ({} is not set)",
                    payments::STRIPE_KEY_ENV
                ),
            ));
        }
        Ok(NewMarket {
            name: name.to_string(),
            currency,
            clock_mode,
            sim_start,
            rules,
        })
    }

    pub async fn market(&self, caller: &Caller, market: i64) -> ApiResult<Market> {
        Self::require_in_market(caller, market)?;
        self.market_or_404(market).await
    }

    /// A page of the markets the caller may see: all for a global operator, its own for a
    /// token of one market.
    pub async fn markets(
        &self,
        caller: &Caller,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<MarketList> {
        let limit = page_limit(limit)?;
        let after = parse_cursor(cursor)?;
        let items = match caller.market {
            Some(m) if m > after && caller.in_market(m) => {
                self.store.market(m).await?.into_iter().collect()
            }
            Some(_) => Vec::new(),
            None if caller.role == Role::Operator => self.store.markets_after(after, limit).await?,
            None => Vec::new(),
        };
        let next_cursor = next_cursor(&items, limit, |m| m.id);
        Ok(MarketList { items, next_cursor })
    }

    pub async fn create_market_token(
        &self,
        caller: &Caller,
        market: i64,
        req: CreateToken,
        participant: Option<i64>,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        self.market_or_404(market).await?;
        let role = Role::parse(&req.role).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "unknown role '{}': use operator, agent, principal or observer",
                    req.role
                ),
            )
        })?;
        let participant = match role {
            Role::Agent | Role::Principal => {
                let p = participant.ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        "agent and principal tokens name a participant",
                    )
                })?;
                self.store.participant(market, p).await?.ok_or_else(|| {
                    ApiError::new(ErrorCode::NotFound, format!("participant {p} not found"))
                })?;
                Some(p)
            }
            _ => None,
        };
        let secret = self
            .create_token(role, Some(market), participant, &req.label)
            .await?;
        Ok(Reply::json(
            201,
            &TokenCreated {
                token_id: hash_token(&secret),
                token: secret,
                role: role.as_str().into(),
                market_id: Some(market),
            },
        ))
    }

    // ---- participants, money, mandates ----

    pub async fn register_participant(
        &self,
        caller: &Caller,
        market: i64,
        req: RegisterParticipant,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        let cmd = Command::RegisterParticipant {
            name: req.name,
            mandate: req.mandate.unwrap_or_default(),
            budget: req.budget,
        };
        let (reply, out) = self.command(caller, market, cmd, idem).await?;
        let Some(Outcome::Participant(p)) = out else {
            return Ok(reply);
        };
        let agent_token = self
            .create_token(
                Role::Agent,
                Some(market),
                Some(p.id),
                &format!("agent of {}", p.name),
            )
            .await?;
        let principal_token = self
            .create_token(
                Role::Principal,
                Some(market),
                Some(p.id),
                &format!("principal {}", p.name),
            )
            .await?;
        Ok(Reply::json(
            201,
            &ParticipantCreated {
                participant: p,
                agent_token,
                principal_token,
            },
        ))
    }

    pub async fn participants(
        &self,
        caller: &Caller,
        market: i64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<ParticipantList> {
        Self::require_in_market(caller, market)?;
        let limit = page_limit(limit)?;
        let mut items = self
            .store
            .participants(market, parse_cursor(cursor)?, limit)
            .await?;
        // Mandates are private to the participant, its principal and operators.
        for p in items.iter_mut() {
            p.mandate = Self::mandate_seen_by(caller, market, p);
            if !caller.may_read_participant(market, p.id) {
                p.suspension = None;
            }
        }
        let next_cursor = next_cursor(&items, limit, |p| p.id);
        Ok(ParticipantList { items, next_cursor })
    }

    pub async fn participant(
        &self,
        caller: &Caller,
        market: i64,
        id: i64,
    ) -> ApiResult<haggle_core::Participant> {
        Self::require_in_market(caller, market)?;
        let mut p = self.store.participant(market, id).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("participant {id} not found"))
        })?;
        p.mandate = Self::mandate_seen_by(caller, market, &p);
        if !caller.may_read_participant(market, id) {
            p.suspension = None;
        }
        Ok(p)
    }

    /// A mandate as `caller` may see it: whole for its principal, observers and operators; the
    /// agent is told that a seller minimum exists, never its value (spec: trust.md); nothing for
    /// anyone else.
    fn mandate_seen_by(
        caller: &Caller,
        market: i64,
        p: &haggle_core::Participant,
    ) -> haggle_core::Mandate {
        if !caller.may_read_participant(market, p.id) {
            Default::default()
        } else if caller.role == Role::Agent {
            p.mandate.agent_view()
        } else {
            p.mandate.clone()
        }
    }

    pub async fn fund(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        req: Fund,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        Ok(self
            .command(
                caller,
                market,
                Command::Fund {
                    participant,
                    amount: req.amount,
                },
                idem,
            )
            .await?
            .0)
    }

    pub async fn balance(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
    ) -> ApiResult<Balance> {
        Self::require_reader_of(caller, market, participant)?;
        self.store
            .participant(market, participant)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("participant {participant} not found"),
                )
            })?;
        Ok(self.store.balance(market, participant, self.now()).await?)
    }

    pub async fn mandate(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
    ) -> ApiResult<haggle_core::Mandate> {
        Self::require_reader_of(caller, market, participant)?;
        Ok(self.participant(caller, market, participant).await?.mandate)
    }

    /// The principal (or an operator) replaces the agent's mandate.
    pub async fn set_mandate(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        mandate: haggle_core::Mandate,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let author = if caller.is_operator_of(market) {
            MandateAuthor::Operator
        } else if caller.role == Role::Principal
            && caller.market == Some(market)
            && caller.participant == Some(participant)
        {
            MandateAuthor::Principal
        } else {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the participant's principal or an operator may set its mandate",
            ));
        };
        Ok(self
            .command(
                caller,
                market,
                Command::SetMandate {
                    participant,
                    mandate,
                    author,
                },
                idem,
            )
            .await?
            .0)
    }

    /// An operator freezes or unfreezes the agent: a frozen agent can read but not act, and only
    /// an operator lifts the freeze (its principal pauses it with [`Service::pause`]).
    pub async fn freeze(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        frozen: bool,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market)).map_err(|_| {
            ApiError::new(
                ErrorCode::Forbidden,
                "only an operator freezes an agent; a principal pauses its own (POST .../pause)",
            )
        })?;
        let mut mandate = self.mandate(caller, market, participant).await?;
        mandate.frozen = frozen;
        self.set_mandate(caller, market, participant, mandate, idem)
            .await
    }

    /// The principal (or an operator) pauses or resumes the agent: a paused agent can read but
    /// not act. Separate from an operator's freeze, which a resume does not lift.
    pub async fn pause(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        paused: bool,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let mut mandate = self.mandate(caller, market, participant).await?;
        mandate.paused = paused;
        self.set_mandate(caller, market, participant, mandate, idem)
            .await
    }

    // ---- listings and negotiation (agents) ----

    /// A trading command by the caller's agent (agent token) for its participant. In trading
    /// mode `propose` an offer, counter or acceptance waits for the principal instead.
    pub async fn trade(
        &self,
        caller: &Caller,
        market: i64,
        build: impl FnOnce(i64) -> Command,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let actor = caller.agent_for(market)?;
        let cmd = build(actor);
        self.propose_instead(caller, market, actor, &cmd, idem)
            .await?;
        Ok(self
            .command_by(caller, market, cmd, ActedBy::Agent, idem)
            .await?
            .0)
    }

    /// The same trading command by the participant's principal, by hand in the web UI
    /// (principal token): the same rules, mandate and idempotency; the events record that the
    /// principal acted, and a principal's pause or trading mode stops its agent only.
    pub async fn trade_by_hand(
        &self,
        caller: &Caller,
        market: i64,
        build: impl FnOnce(i64) -> Command,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let actor = caller.principal_for(market)?;
        Ok(self
            .command_by(caller, market, build(actor), ActedBy::Principal, idem)
            .await?
            .0)
    }

    pub async fn listing(
        &self,
        caller: &Caller,
        market: i64,
        id: i64,
    ) -> ApiResult<haggle_core::Listing> {
        Self::require_in_market(caller, market)?;
        // A held or removed listing is its owner's and the operators' to see only.
        self.store
            .listing(market, id)
            .await?
            .filter(|l| Self::sees_moderated(caller, market, l))
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("listing {id} not found")))
    }

    pub async fn search(
        &self,
        caller: &Caller,
        market: i64,
        q: &ListingQuery,
    ) -> ApiResult<ListingPage> {
        Self::require_in_market(caller, market)?;
        for (field, text) in [
            ("q", &q.q),
            ("category", &q.category),
            ("cursor", &q.cursor),
        ] {
            if let Some(t) = text {
                haggle_core::negotiation::check_plain_text(field, t)?;
            }
        }
        if q.min_price.is_some_and(|p| p < 0) || q.max_price.is_some_and(|p| p < 0) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "price filters must not be negative",
            ));
        }
        page_limit(q.limit)?;
        if let Some(c) = &q.cursor {
            let ok = match q.order() {
                ListingSort::Newest => c.parse::<i64>().is_ok(),
                ListingSort::Cheapest | ListingSort::Relevance => c
                    .split_once(':')
                    .is_some_and(|(a, b)| a.parse::<i64>().is_ok() && b.parse::<i64>().is_ok()),
            };
            if !ok {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("bad cursor '{c}'"),
                ));
            }
        }
        // Held and removed listings are searched by their owner (its own) and operators only.
        let mut q = q.clone();
        if matches!(q.status, Some(ListingStatus::Held | ListingStatus::Removed))
            && !caller.is_operator_of(market)
        {
            match caller.participant {
                Some(p) if q.owner.is_none_or(|o| o == p) => q.owner = Some(p),
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::Forbidden,
                        "held and removed listings are seen by their owner and operators only",
                    ));
                }
            }
        }
        let page = self.store.search_listings(market, &q).await?;
        Ok(ListingPage {
            items: page.items,
            next_cursor: page.next_cursor,
        })
    }

    async fn can_read_thread(
        &self,
        caller: &Caller,
        market: i64,
        t: &haggle_core::Thread,
    ) -> ApiResult<()> {
        let allowed = match caller.role {
            Role::Operator => caller.is_operator_of(market),
            Role::Observer => {
                caller.market == Some(market)
                    && self
                        .market_or_404(market)
                        .await?
                        .rules
                        .observers_see_private
            }
            Role::Agent | Role::Principal => {
                caller.market == Some(market)
                    && (caller.participant.is_some_and(|p| t.is_party(p))
                        || self.market_or_404(market).await?.rules.public_negotiations)
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("thread {} is private to its two parties", t.id),
            ))
        }
    }

    pub async fn thread(&self, caller: &Caller, market: i64, id: i64) -> ApiResult<ThreadView> {
        Self::require_in_market(caller, market)?;
        let m = self.market_or_404(market).await?;
        let detail =
            self.store.thread(market, id).await?.ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("thread {id} not found"))
            })?;
        self.can_read_thread(caller, market, &detail.thread).await?;
        let now = m.now(self.now());
        let live = detail
            .offers
            .iter()
            .find(|o| o.state == haggle_core::OfferState::Live);
        Ok(ThreadView {
            offers_remaining: m
                .rules
                .max_offers_per_thread
                .map(|cap| cap.saturating_sub(detail.thread.offers_made)),
            live_offer_expires_at: live.map(|o| o.expires_at),
            elapsed_ppm: detail.thread.elapsed_ppm(&m.rules, now),
            summary: haggle_core::ThreadSummary::of(&detail, &m.rules, caller.participant, now),
            detail,
        })
    }

    /// The caller's own threads (agents, principals), or all/any listing's threads for readers of
    /// everything (operators, observers where allowed), each with its summary for the caller, in
    /// `ThreadOrder` (open first, newest activity first), filtered before paging so each page is
    /// full. Ordering by activity reads every thread of the reader (at most `THREAD_SCAN`).
    pub async fn threads(
        &self,
        caller: &Caller,
        market: i64,
        listing: Option<i64>,
        filter: ThreadFilter,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<ThreadList> {
        Self::require_in_market(caller, market)?;
        let limit = page_limit(limit)?;
        if filter.your_move.is_some() && caller.participant.is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "your_move needs a participant's token: only a thread's parties have a move",
            ));
        }
        let party = match caller.role {
            Role::Agent | Role::Principal => caller.participant,
            Role::Observer
                if !self
                    .market_or_404(market)
                    .await?
                    .rules
                    .observers_see_private =>
            {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "this market does not let observers read private threads",
                ));
            }
            _ => None,
        };
        let after = match cursor {
            None => None,
            Some(c) => Some(ThreadOrder::parse_cursor(c).ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidRequest, format!("bad cursor '{c}'"))
            })?),
        };
        let m = self.market_or_404(market).await?;
        let now = m.now(self.now());
        let mut items = Vec::new();
        let (mut last_id, mut scanned) = (0, 0);
        loop {
            const SCAN_PAGE: u32 = 500;
            let threads = self
                .store
                .threads(market, party, listing, last_id, SCAN_PAGE)
                .await?;
            let full = threads.len() as u32 == SCAN_PAGE;
            scanned += threads.len();
            for t in threads {
                last_id = t.id;
                // The summary (and the order, by last activity) needs the thread's offers and
                // messages: one read per thread of the reader.
                let Some(detail) = self.store.thread(market, t.id).await? else {
                    continue;
                };
                let item = ThreadItem {
                    summary: haggle_core::ThreadSummary::of(
                        &detail,
                        &m.rules,
                        caller.participant,
                        now,
                    ),
                    thread: detail.thread,
                };
                if filter.keeps(&item) && after.is_none_or(|a| ThreadOrder::of(&item) > a) {
                    items.push(item);
                }
            }
            if !full || scanned >= haggle_api::THREAD_SCAN {
                break;
            }
        }
        ThreadOrder::sort(&mut items);
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = items
            .last()
            .filter(|_| more)
            .map(|i| ThreadOrder::of(i).cursor());
        Ok(ThreadList { items, next_cursor })
    }

    pub async fn deal(
        &self,
        caller: &Caller,
        market: i64,
        id: i64,
    ) -> ApiResult<haggle_core::Deal> {
        Self::require_in_market(caller, market)?;
        let d =
            self.store.deal(market, id).await?.ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("deal {id} not found"))
            })?;
        if !caller.may_read_participant(market, d.buyer)
            && !caller.may_read_participant(market, d.seller)
        {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("deal {id} is private to its parties"),
            ));
        }
        let mut one = [d];
        self.with_payments(market, &mut one).await?;
        let [d] = one;
        Ok(d)
    }

    pub async fn deals(
        &self,
        caller: &Caller,
        market: i64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<DealList> {
        Self::require_in_market(caller, market)?;
        let limit = page_limit(limit)?;
        let party = match caller.role {
            Role::Agent | Role::Principal => caller.participant,
            _ => None,
        };
        let mut items = self
            .store
            .deals(market, party, parse_cursor(cursor)?, limit)
            .await?;
        self.with_payments(market, &mut items).await?;
        let next_cursor = next_cursor(&items, limit, |d| d.id);
        Ok(DealList { items, next_cursor })
    }

    /// What this caller may read of a market's log.
    pub async fn viewer(&self, caller: &Caller, market: i64) -> ApiResult<Viewer> {
        Self::require_in_market(caller, market)?;
        Ok(match caller.role {
            Role::Operator => Viewer::All,
            Role::Observer
                if self
                    .market_or_404(market)
                    .await?
                    .rules
                    .observers_see_private =>
            {
                Viewer::All
            }
            Role::Observer => Viewer::Public,
            Role::Agent | Role::Principal => caller
                .participant
                .map_or(Viewer::Public, Viewer::Participant),
        })
    }

    pub async fn events(
        &self,
        caller: &Caller,
        market: i64,
        after: i64,
        limit: Option<u32>,
    ) -> ApiResult<EventPage> {
        self.events_for(caller, market, after, limit, false).await
    }

    /// Up to `limit` events after `after` as `viewer` sees them: the next batch of a live stream,
    /// which resolved its viewer (and checked the market) once when it began.
    pub async fn events_as(
        &self,
        market: i64,
        viewer: Viewer,
        after: i64,
        limit: u32,
    ) -> ApiResult<Vec<haggle_core::Event>> {
        Ok(self.store.events(market, viewer, after, limit).await?)
    }

    /// Events after `after`; with `mine`, only those naming the caller's participant (its threads,
    /// deals and money), without the public feed.
    pub async fn events_for(
        &self,
        caller: &Caller,
        market: i64,
        after: i64,
        limit: Option<u32>,
        mine: bool,
    ) -> ApiResult<EventPage> {
        let viewer = match (self.viewer(caller, market).await?, mine, caller.participant) {
            (_, true, Some(p)) => Viewer::Own(p),
            (_, true, None) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "mine=true needs an agent or principal token",
                ));
            }
            (v, false, _) => v,
        };
        self.market_or_404(market).await?;
        let events = self
            .store
            .events(
                market,
                viewer,
                after,
                bounded_limit(limit, 100, MAX_EVENTS)?,
            )
            .await?;
        let next_after = events.last().map_or(after, |e| e.seq);
        Ok(EventPage { events, next_after })
    }

    // ---- deal lifecycle ----

    /// A deal action by the caller's agent (hand over, confirm, cancel, dispute, evidence, rate).
    pub async fn deal_action(
        &self,
        caller: &Caller,
        market: i64,
        build: impl FnOnce(i64) -> Command,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        self.trade(caller, market, build, idem).await
    }

    /// Evidence from a party's agent, or from an operator of the market.
    pub async fn add_evidence(
        &self,
        caller: &Caller,
        market: i64,
        deal: i64,
        body: String,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let author = if caller.is_operator_of(market) {
            None
        } else {
            Some(caller.agent_for(market)?)
        };
        Ok(self
            .command(
                caller,
                market,
                Command::AddEvidence { author, deal, body },
                idem,
            )
            .await?
            .0)
    }

    /// An operator, or the market's arbiter (through its agent token), resolves a dispute.
    pub async fn resolve(
        &self,
        caller: &Caller,
        market: i64,
        deal: i64,
        req: ResolveDispute,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let arbiter = if caller.is_operator_of(market) {
            None
        } else {
            Some(caller.agent_for(market)?)
        };
        let cmd = Command::ResolveDispute {
            arbiter,
            deal,
            ruling: req.ruling,
            note: req.note,
        };
        Ok(self.command(caller, market, cmd, idem).await?.0)
    }

    /// The buyer's principal approves or declines a deal awaiting approval.
    pub async fn decide_approval(
        &self,
        caller: &Caller,
        market: i64,
        deal: i64,
        approve: bool,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let principal = match (caller.role, caller.market, caller.participant) {
            (Role::Principal, Some(m), Some(p)) if m == market => p,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "approvals need the principal token of the buyer or (below a seller minimum) the seller",
                ));
            }
        };
        Ok(self
            // The principal decides, not its agent: the events say so.
            .command_by(
                caller,
                market,
                Command::DecideApproval {
                    principal,
                    deal,
                    approve,
                },
                ActedBy::Principal,
                idem,
            )
            .await?
            .0)
    }

    /// The buyer's principal inspects a handed-over deal: confirms it is as described, or names
    /// the seller's claims it contradicts (which lets the buyer dispute `not_as_described`).
    pub async fn report_inspection(
        &self,
        caller: &Caller,
        market: i64,
        deal: i64,
        mismatched: Vec<String>,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let principal = match (caller.role, caller.market, caller.participant) {
            (Role::Principal, Some(m), Some(p)) if m == market => p,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "inspections need the buyer's principal token",
                ));
            }
        };
        Ok(self
            // The principal decides, not its agent: the events say so.
            .command_by(
                caller,
                market,
                Command::ReportInspection {
                    principal,
                    deal,
                    mismatched,
                },
                ActedBy::Principal,
                idem,
            )
            .await?
            .0)
    }

    /// A deal's notes, newest first, a page at a time (the parties, operators, observers and
    /// the market's arbiter).
    pub async fn deal_notes(
        &self,
        caller: &Caller,
        market: i64,
        deal: i64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<NotePage> {
        let d = match self.deal(caller, market, deal).await {
            Ok(d) => d,
            // The market's arbiter reads the disputes it may resolve.
            Err(e)
                if e.code() == ErrorCode::Forbidden && self.is_arbiter(caller, market).await? =>
            {
                self.store.deal(market, deal).await?.ok_or_else(|| {
                    ApiError::new(ErrorCode::NotFound, format!("deal {deal} not found"))
                })?
            }
            Err(e) => return Err(e),
        };
        let limit = page_limit(limit)?;
        let before = cursor.map(|_| parse_cursor(cursor)).transpose()?;
        let items = self.store.deal_notes(market, d.id, before, limit).await?;
        Ok(NotePage {
            next_cursor: next_cursor(&items, limit, |n| n.id),
            items,
        })
    }

    /// A thread's messages, newest first, a page at a time (whoever may read the thread).
    pub async fn thread_messages(
        &self,
        caller: &Caller,
        market: i64,
        thread: i64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<MessagePage> {
        Self::require_in_market(caller, market)?;
        let t = self
            .store
            .thread_row(market, thread)
            .await?
            .ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("thread {thread} not found"))
            })?;
        self.can_read_thread(caller, market, &t).await?;
        let limit = page_limit(limit)?;
        let before = cursor.map(|_| parse_cursor(cursor)).transpose()?;
        let items = self
            .store
            .thread_messages(market, thread, before, limit)
            .await?;
        Ok(MessagePage {
            next_cursor: next_cursor(&items, limit, |m| m.id),
            items,
        })
    }

    async fn is_arbiter(&self, caller: &Caller, market: i64) -> ApiResult<bool> {
        let arbiter = self.market_or_404(market).await?.rules.arbiter;
        Ok(caller.role == Role::Agent
            && caller.market == Some(market)
            && caller.participant.is_some()
            && caller.participant == arbiter)
    }

    /// A deal's ratings: revealed ones to anyone in the market, a party's own always.
    pub async fn deal_ratings(
        &self,
        caller: &Caller,
        market: i64,
        deal: i64,
    ) -> ApiResult<Vec<haggle_core::Rating>> {
        Self::require_in_market(caller, market)?;
        self.store
            .deal(market, deal)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("deal {deal} not found")))?;
        let all = self.store.deal_ratings(market, deal, self.now()).await?;
        Ok(all
            .into_iter()
            .filter(|(r, revealed)| {
                *revealed || caller.role == Role::Operator || caller.participant == Some(r.rater)
            })
            .map(|(r, _)| r)
            .collect())
    }

    pub async fn reputation(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
    ) -> ApiResult<haggle_core::lifecycle::Reputation> {
        Self::require_in_market(caller, market)?;
        self.store
            .participant(market, participant)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("participant {participant} not found"),
                )
            })?;
        Ok(self
            .store
            .reputation(market, participant, self.now())
            .await?)
    }

    /// A listing with its owner's reputation, as every agent sees it.
    pub async fn listing_view(
        &self,
        caller: &Caller,
        market: i64,
        id: i64,
    ) -> ApiResult<ListingView> {
        let listing = self.listing(caller, market, id).await?;
        let owner_reputation = self
            .store
            .reputation(market, listing.owner, self.now())
            .await?;
        Ok(ListingView {
            listing,
            owner_reputation,
        })
    }

    /// The settlement report: operators and observers see the whole market; a participant's agent
    /// or principal sees its own deals and position.
    pub async fn settlement(
        &self,
        caller: &Caller,
        market: i64,
    ) -> ApiResult<haggle_core::settlement::Settlement> {
        Self::require_in_market(caller, market)?;
        let mut s = self.store.settlement(market).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("market {market} not found"))
        })?;
        if let (Role::Agent | Role::Principal, Some(p)) = (caller.role, caller.participant) {
            s.deals.retain(|d| d.buyer == p || d.seller == p);
            s.positions.retain(|x| x.participant_id == p);
        }
        Ok(s)
    }

    // ---- operations ----

    pub async fn advance_clock(
        &self,
        caller: &Caller,
        market: i64,
        by_ms: i64,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        Ok(self
            .command(caller, market, Command::AdvanceClock { by_ms }, idem)
            .await?
            .0)
    }

    /// Sets, moves or removes the market's closing time (operators). A time already past closes
    /// the market at the next sweep (the next clock advance, or the real-clock sweeper's tick).
    pub async fn set_closing_time(
        &self,
        caller: &Caller,
        market: i64,
        closes_at: Option<i64>,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        Ok(self
            .command(caller, market, Command::SetClosingTime { closes_at }, idem)
            .await?
            .0)
    }

    pub async fn verify(&self, caller: &Caller, market: i64) -> ApiResult<Verification> {
        Self::require_operator(caller, Some(market))?;
        self.market_or_404(market).await?;
        Ok(self.store.verify(market).await?)
    }

    /// Expires offers and times out threads in every real-clock market, every `every`.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut ticks: u64 = 0;
            loop {
                tick.tick().await;
                // Planner statistics follow the data: at start and then every 600 ticks.
                if ticks.is_multiple_of(600)
                    && let Err(e) = svc.store.analyze().await
                {
                    tracing::warn!(error = %e, "analyze failed");
                }
                ticks += 1;
                let Ok(markets) = svc.store.real_clock_markets().await else {
                    continue;
                };
                for m in markets {
                    match svc.store.run(m, svc.now(), Command::Sweep, None).await {
                        Ok(Ran::Fresh { events, .. }) if !events.is_empty() => {
                            let _ = svc.feed.send(m);
                            svc.drive_payments_after(m, &events).await;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(market = m, error = %e, "sweep failed"),
                    }
                }
            }
        })
    }
}

/// Market rules a caller may send; kept here so transports share one default.
pub fn default_rules() -> MarketRules {
    MarketRules::default()
}

#[cfg(test)]
mod tests {
    use super::ApiError;

    /// Issue 15: a database's error text (here PostgreSQL's answer to a NUL byte) reached clients.
    #[test]
    fn an_internal_error_tells_the_client_a_request_id_never_the_cause() {
        let cause =
            "error returned from database: invalid byte sequence for encoding \"UTF8\": 0x00";
        let a = ApiError::internal(cause);
        let b = ApiError::internal(cause);
        assert_eq!(a.status, 500);
        let message = &a.body.error.message;
        assert!(
            !message.contains("UTF8") && !message.contains("database"),
            "{message}"
        );
        assert!(message.contains("request id"), "{message}");
        assert_ne!(
            message, &b.body.error.message,
            "each failure has its own id"
        );
    }
}
