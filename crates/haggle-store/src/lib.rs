//! All of Haggle's SQL. One [`Store`] interface over two real backends, SQLite (embedded default,
//! WAL) and PostgreSQL (shared by several server replicas), written once: `backend.rs` is compiled
//! for each database with its own dialect constants, so both run the same queries and pass the same
//! conformance tests.

pub mod command;
mod dialect;
mod lite;
mod memory;
mod shelves;
/// Per-statement timings of the SQLite driver (see `haggle bench sim --sql-profile`).
pub use lite::profile as sqlite_profile;
pub mod payments;
pub mod proposals;
mod row;
mod search;
pub mod survey;
pub mod webhooks;

pub use command::{Command, NewOffer, Outcome, TurnMark};

pub use haggle_core::limits::THREAD_WINDOW;
use haggle_core::model::ActedBy;
pub use haggle_core::views::{
    Balance, ListingQuery, ListingSort, Page, ThreadDetail, Verification,
};
use haggle_core::{ClockMode, DomainError, Event, Market, MarketRules, Timestamp};
use serde::{Deserialize, Serialize};

/// A backend failure. Refusals by the market rules are not errors here: they travel as
/// `Result<Outcome, DomainError>` inside a successful call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] lite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("invariant breached, transaction rolled back: {0}")]
    Invariant(String),
    /// The group commit holding the command did not commit (nothing of it was written): retry.
    #[error("the commit holding this command failed: {0}")]
    Batch(String),
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://...")]
    BadUrl(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// At most this many commands share one group commit: a batch is never an unbounded transaction.
pub const GROUP_COMMIT_COMMANDS: usize = 256;

/// How many commits group commit has made, and how many commands they held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GroupCommitStats {
    pub commits: u64,
    pub commands: u64,
}

/// A stored HTTP-level response for an idempotency key (status and JSON body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// An idempotency key to record in the same transaction as the effect.
pub struct Idempotency<'a> {
    /// Whose key it is (the token's hash): keys of different callers never collide.
    pub scope: &'a str,
    pub key: &'a str,
    /// Hash of the request (method, path, body): the same key with another request is a conflict.
    pub request_hash: &'a str,
    /// Renders the result into the response to store and replay.
    pub render: &'a (dyn Fn(&Result<Outcome, DomainError>) -> StoredResponse + Send + Sync),
}

/// What running a command gave.
// `Fresh` is the common case and a `Ran` is returned once per command, never stored in bulk:
// boxing its result would only add an allocation per command.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Ran {
    /// The command ran now: its result, and the events it appended (empty when refused).
    Fresh {
        result: Result<Outcome, DomainError>,
        events: Vec<Event>,
    },
    /// The key was seen before with the same request: its first response.
    Replayed(StoredResponse),
    /// The key was seen before with a different request.
    Conflict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Agent,
    Principal,
    Observer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Agent => "agent",
            Role::Principal => "principal",
            Role::Observer => "observer",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Operator, Role::Agent, Role::Principal, Role::Observer]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A credential as stored: only the SHA-256 of the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub hash: String,
    pub role: Role,
    pub market_id: Option<i64>,
    pub participant_id: Option<i64>,
    pub label: String,
    pub created_at: Timestamp,
    /// When it was revoked: a revoked token no longer authenticates.
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMarket {
    pub name: String,
    pub currency: String,
    pub clock_mode: ClockMode,
    /// Start of a simulated clock.
    pub sim_start: Timestamp,
    pub rules: MarketRules,
}

/// Who reads the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// Operators (and observers of markets that allow it): every event.
    All,
    /// Public events and those naming this participant.
    Participant(i64),
    /// Public events only.
    Public,
    /// Only the events naming this participant (its threads, deals, money), not the public feed.
    Own(i64),
}

pub mod sqlite {
    //! The SQLite backend: one writer at a time (a process-wide lock plus `BEGIN IMMEDIATE`).
    use super::*;
    // The backend's `sqlx::` paths resolve to the in-thread SQLite driver here.
    use crate::lite as sqlx;
    pub type Db = sqlx::Sqlite;
    type Tx = sqlx::Transaction;
    use crate::dialect::sqlite as dialect;
    include!("backend.rs");
    include!("group_backend.rs");
    include!("webhooks_backend.rs");
    include!("survey_backend.rs");
    include!("payments_backend.rs");
    include!("proposals_backend.rs");

    #[cfg(test)]
    mod plans {
        use super::*;

        /// The query plan of `sql` (its `params` parameters bound to 1, 2, …), one line per step.
        async fn plan_of(b: &Backend, sql: &str, params: i64) -> String {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for v in 1..=params {
                q = q.bind(v);
            }
            steps(q.fetch_all(&b.pool).await.unwrap())
        }

        /// The query plan of a built query, with the values it binds.
        async fn plan_of_built(b: &Backend, query: sqlx::QueryBuilder<Db>) -> String {
            steps(query.explained().build().fetch_all(&b.pool).await.unwrap())
        }

        fn steps(rows: Vec<sqlx::SqliteRow>) -> String {
            rows.iter()
                .map(|r| r.try_get::<String, _>("detail").unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        }

        #[tokio::test]
        async fn a_buyers_funds_read_one_kept_row_not_its_deals() {
            let b = Backend::open("sqlite::memory:", 1).await.unwrap();
            let plan = plan_of(&b, &format!("SELECT {FUNDS_COLS}"), 4).await;
            assert!(!plan.contains("deals"), "{plan}");
            let kept: Vec<&str> = plan.lines().filter(|l| l.contains("buyer_funds")).collect();
            assert_eq!(kept.len(), 2, "{plan}");
            for step in kept {
                assert!(step.contains("(market_id=? AND buyer=?)"), "{plan}");
            }
        }

        /// The deal states for which `keep` holds, as an SQL list.
        fn deal_states(keep: fn(DealStatus) -> bool) -> String {
            let states: Vec<String> = DealStatus::ALL
                .iter()
                .filter(|s| keep(**s))
                .map(|s| format!("'{}'", s.as_str()))
                .collect();
            format!("({})", states.join(", "))
        }

        /// Migration 18's triggers spell out the deal states a buyer's kept row counts; the
        /// spend rule lives once, in the core (`DealStatus::hold_is_open`, `is_spent`), so a
        /// change to it fails here until a migration writes the triggers again.
        #[test]
        fn the_buyer_funds_triggers_count_the_rules_states() {
            let (held, spent) = (
                deal_states(DealStatus::hold_is_open),
                deal_states(DealStatus::is_spent),
            );
            for migration in [
                include_str!("migrations/0018_buyer_funds_sqlite.sql"),
                include_str!("migrations/0018_buyer_funds_postgres.sql"),
            ] {
                let lists: Vec<&str> = migration
                    .match_indices("IN (")
                    .map(|(at, _)| {
                        let list = &migration[at + 3..];
                        &list[..=list.find(')').unwrap()]
                    })
                    .collect();
                assert!(lists.contains(&held.as_str()), "{lists:?}");
                assert!(lists.contains(&spent.as_str()), "{lists:?}");
                for list in lists {
                    assert!(list == held || list == spent, "{list}");
                }
            }
        }

        /// A page's public events come from `events_public`, not a walk of the log.
        fn assert_public_events_from_their_index(plan: &str) {
            assert!(
                plan.contains("COVERING INDEX events_public (market_id=? AND seq>?)"),
                "{plan}"
            );
            assert!(
                !plan.contains("sqlite_autoindex_events_1 (market_id=? AND seq>?)"),
                "{plan}"
            );
        }

        #[tokio::test]
        async fn a_participants_page_of_events_reads_the_public_ones_from_their_own_index() {
            let b = Backend::open("sqlite::memory:", 1).await.unwrap();
            let plan = plan_of_built(&b, events_after(1, Viewer::Participant(2), 3, 100)).await;
            assert_public_events_from_their_index(&plan);
        }

        #[tokio::test]
        async fn an_observers_page_of_events_walks_only_public_events() {
            let b = Backend::open("sqlite::memory:", 1).await.unwrap();
            let plan = plan_of_built(&b, events_after(1, Viewer::Public, 3, 100)).await;
            assert_public_events_from_their_index(&plan);
        }

        #[tokio::test]
        async fn a_partys_posts_in_a_thread_are_counted_from_the_threads_rows_alone() {
            let b = Backend::open("sqlite::memory:", 1).await.unwrap();
            let plan = plan_of(&b, PARTY_POSTS, 3).await;
            assert!(
                plan.contains(
                    "messages USING INDEX messages_by_thread (market_id=? AND thread_id=?)"
                ),
                "{plan}"
            );
            assert!(
                plan.contains("offers USING INDEX offers_by_thread (market_id=? AND thread_id=?)"),
                "{plan}"
            );
        }
    }
}

pub mod postgres {
    //! The PostgreSQL backend: writes to a market serialise on its row lock (`FOR UPDATE`), so
    //! several server processes can share one database.
    use super::*;
    // Named here (not only in the extern prelude) so the webhook module can import it as the
    // SQLite backend imports its driver.
    #[allow(clippy::single_component_path_imports)]
    use sqlx;
    pub type Db = sqlx::Postgres;
    type Tx = sqlx::Transaction<'static, Db>;
    use crate::dialect::postgres as dialect;
    include!("backend.rs");
    include!("group_backend.rs");
    include!("webhooks_backend.rs");
    include!("survey_backend.rs");
    include!("payments_backend.rs");
    include!("proposals_backend.rs");

    impl Backend {
        /// A connection listening for the markets other processes wrote events to.
        pub async fn listen_for_events(&self) -> StoreResult<EventNotices> {
            let mut l = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
            l.listen(dialect::EVENTS_CHANNEL).await?;
            Ok(EventNotices(l))
        }
    }

    /// Market ids as PostgreSQL announces their new events (see [`crate::Store::listen_for_events`]).
    pub struct EventNotices(sqlx::postgres::PgListener);

    impl EventNotices {
        /// The next market with new events; an error when the connection is lost (listen again).
        pub async fn next(&mut self) -> StoreResult<i64> {
            loop {
                let n = self.0.recv().await?;
                // Only this channel is listened to; a payload that is not an id is skipped.
                if let Ok(m) = n.payload().parse::<i64>() {
                    return Ok(m);
                }
            }
        }
    }
}

/// The store: one interface, either backend.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::Backend),
    Postgres(postgres::Backend),
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            Store::Sqlite($b) => $e,
            Store::Postgres($b) => $e,
        }
    };
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`: `sqlite://PATH`,
    /// `sqlite::memory:` or `postgres://...`.
    pub async fn open(url: &str) -> StoreResult<Store> {
        Self::open_batched(url, 1).await
    }

    /// Opens a store for one process's own use (a simulation's database): SQLite commits
    /// `batch` commands at a time on one connection (group commit; each command stays atomic
    /// and is read back at once, and [`Store::flush`] or closing the store commits the rest).
    /// PostgreSQL commits each command as [`Store::open`] does.
    pub async fn open_batched(url: &str, batch: usize) -> StoreResult<Store> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(sqlite::Backend::open(url, batch).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(postgres::Backend::open(url, batch).await?))
        } else {
            Err(StoreError::BadUrl(url.to_string()))
        }
    }

    /// Commits what a batched store holds back ([`Store::open_batched`]).
    pub async fn flush(&self) -> StoreResult<()> {
        dispatch!(self, b => b.flush().await)
    }

    /// Group commit's counts on the server path (`None` for a batched store, which commits its
    /// own groups): commits made and the commands they held.
    pub fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        dispatch!(self, b => b.group_commit_stats())
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Announcements of markets that got new events from any process sharing the database
    /// (PostgreSQL `LISTEN`); `None` for SQLite, whose only writer is this process. Live readers
    /// wake on them instead of waiting for their next poll.
    pub async fn listen_for_events(&self) -> StoreResult<Option<postgres::EventNotices>> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(b) => b.listen_for_events().await.map(Some),
        }
    }

    /// Refreshes the query planner's statistics; the server and simulations call it as data grows.
    pub async fn analyze(&self) -> StoreResult<()> {
        dispatch!(self, b => b.analyze().await)
    }
    pub async fn create_market(&self, m: NewMarket, now: Timestamp) -> StoreResult<Market> {
        dispatch!(self, b => b.create_market(m, now).await)
    }
    /// Creates a market with its idempotency key recorded in the creating transaction (a
    /// unique row), so two servers racing on one key create one market: the other replays.
    /// The fresh result is `Outcome::Market` with the `market_created` event.
    pub async fn create_market_once(
        &self,
        m: NewMarket,
        now: Timestamp,
        idem: Idempotency<'_>,
    ) -> StoreResult<Ran> {
        dispatch!(self, b => b.create_market_once(m, now, idem).await)
    }
    pub async fn market(&self, id: i64) -> StoreResult<Option<Market>> {
        dispatch!(self, b => b.market(id).await)
    }
    /// Every market: for the command line on its own database. Callers of the service page.
    pub async fn markets(&self) -> StoreResult<Vec<Market>> {
        dispatch!(self, b => b.markets().await)
    }
    /// A page of markets: at most `limit` with an id above `after`, oldest first.
    pub async fn markets_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Market>> {
        dispatch!(self, b => b.markets_after(after, limit).await)
    }
    /// Runs one command in one transaction, with its idempotency key if given.
    pub async fn run(
        &self,
        market: i64,
        real_now: Timestamp,
        cmd: Command,
        idem: Option<Idempotency<'_>>,
    ) -> StoreResult<Ran> {
        self.run_by(market, real_now, cmd, ActedBy::Agent, idem)
            .await
    }
    /// Runs a command its actor's principal gives by hand (`ActedBy::Principal`) or its agent.
    pub async fn run_by(
        &self,
        market: i64,
        real_now: Timestamp,
        cmd: Command,
        by: ActedBy,
        idem: Option<Idempotency<'_>>,
    ) -> StoreResult<Ran> {
        dispatch!(self, b => b.run(market, real_now, cmd, by, idem).await)
    }
    pub async fn insert_token(&self, t: &TokenRecord) -> StoreResult<()> {
        dispatch!(self, b => b.insert_token(t).await)
    }
    /// The token with this hash, revoked or not.
    pub async fn token(&self, hash: &str) -> StoreResult<Option<TokenRecord>> {
        dispatch!(self, b => b.token(hash).await)
    }
    /// Marks a token revoked at `now` (a token revoked before keeps its first time); `None`
    /// when there is no such token.
    pub async fn revoke_token(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<TokenRecord>> {
        dispatch!(self, b => b.revoke_token(hash, now).await)
    }
    pub async fn stored_response(
        &self,
        scope: &str,
        key: &str,
    ) -> StoreResult<Option<(String, StoredResponse)>> {
        dispatch!(self, b => b.stored_response(scope, key).await)
    }
    pub async fn store_response(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        resp: &StoredResponse,
        now: Timestamp,
    ) -> StoreResult<bool> {
        dispatch!(self, b => b.store_response(scope, key, request_hash, resp, now).await)
    }
    pub async fn participant(
        &self,
        market: i64,
        id: i64,
    ) -> StoreResult<Option<haggle_core::Participant>> {
        dispatch!(self, b => b.participant(market, id).await)
    }
    pub async fn participants(
        &self,
        market: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<haggle_core::Participant>> {
        dispatch!(self, b => b.participants(market, after, limit).await)
    }
    pub async fn listing(&self, market: i64, id: i64) -> StoreResult<Option<haggle_core::Listing>> {
        dispatch!(self, b => b.listing(market, id).await)
    }
    /// The moderation queue: held listings with their reasons, oldest first, ids above `after`.
    pub async fn held_listings(
        &self,
        market: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<haggle_core::policy::HeldListing>> {
        dispatch!(self, b => b.held_listings(market, after, limit).await)
    }
    pub async fn search_listings(
        &self,
        market: i64,
        q: &ListingQuery,
    ) -> StoreResult<Page<haggle_core::Listing>> {
        dispatch!(self, b => b.search_listings(market, q).await)
    }
    pub async fn thread(&self, market: i64, id: i64) -> StoreResult<Option<ThreadDetail>> {
        dispatch!(self, b => b.thread(market, id).await)
    }
    /// Threads a participant is party to (or every thread on a listing when `listing` is set).
    pub async fn threads(
        &self,
        market: i64,
        party: Option<i64>,
        listing: Option<i64>,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<haggle_core::Thread>> {
        dispatch!(self, b => b.threads(market, party, listing, after, limit).await)
    }
    pub async fn offer(&self, market: i64, id: i64) -> StoreResult<Option<haggle_core::Offer>> {
        dispatch!(self, b => b.offer(market, id).await)
    }
    pub async fn deal(&self, market: i64, id: i64) -> StoreResult<Option<haggle_core::Deal>> {
        dispatch!(self, b => b.deal(market, id).await)
    }
    /// A deal's notes, newest first, with ids below `before`, at most `limit`.
    pub async fn deal_notes(
        &self,
        market: i64,
        deal: i64,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<haggle_core::DealNote>> {
        dispatch!(self, b => b.deal_notes(market, deal, before, limit).await)
    }

    /// A thread without its messages and offers.
    pub async fn thread_row(
        &self,
        market: i64,
        id: i64,
    ) -> StoreResult<Option<haggle_core::Thread>> {
        dispatch!(self, b => b.thread_row(market, id).await)
    }

    /// A thread's messages, newest first, with ids below `before`, at most `limit`.
    pub async fn thread_messages(
        &self,
        market: i64,
        thread: i64,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<haggle_core::Message>> {
        dispatch!(self, b => b.thread_messages(market, thread, before, limit).await)
    }
    /// A deal's ratings, each with whether it is revealed yet.
    pub async fn deal_ratings(
        &self,
        market: i64,
        deal: i64,
        real_now: Timestamp,
    ) -> StoreResult<Vec<(haggle_core::Rating, bool)>> {
        dispatch!(self, b => b.deal_ratings(market, deal, real_now).await)
    }
    pub async fn reputation(
        &self,
        market: i64,
        participant: i64,
        real_now: Timestamp,
    ) -> StoreResult<haggle_core::lifecycle::Reputation> {
        dispatch!(self, b => b.reputation(market, participant, real_now).await)
    }
    /// The settlement report of a market (`None` if it does not exist).
    pub async fn settlement(
        &self,
        market: i64,
    ) -> StoreResult<Option<haggle_core::settlement::Settlement>> {
        dispatch!(self, b => b.settlement(market).await)
    }
    pub async fn deals(
        &self,
        market: i64,
        party: Option<i64>,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<haggle_core::Deal>> {
        dispatch!(self, b => b.deals(market, party, after, limit).await)
    }
    /// Deals in one status (all parties), by id.
    pub async fn deals_in_status(
        &self,
        market: i64,
        status: haggle_core::DealStatus,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<haggle_core::Deal>> {
        dispatch!(self, b => b.deals_in(market, None, Some(status), after, limit).await)
    }
    pub async fn balance(
        &self,
        market: i64,
        participant: i64,
        real_now: Timestamp,
    ) -> StoreResult<Balance> {
        dispatch!(self, b => b.balance(market, participant, real_now).await)
    }
    pub async fn events(
        &self,
        market: i64,
        viewer: Viewer,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        dispatch!(self, b => b.events(market, viewer, after, limit).await)
    }
    /// The newest events `viewer` may read (before `before`, of `kinds` when not empty), newest
    /// first: what a feed shows on opening.
    pub async fn recent_events(
        &self,
        market: i64,
        viewer: Viewer,
        kinds: &[&str],
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        dispatch!(self, b => b.recent_events(market, viewer, kinds, before, limit).await)
    }
    pub async fn verify(&self, market: i64) -> StoreResult<Verification> {
        dispatch!(self, b => b.verify(market).await)
    }
    /// Markets with a real clock, for the periodic sweep.
    pub async fn real_clock_markets(&self) -> StoreResult<Vec<i64>> {
        Ok(self
            .markets()
            .await?
            .into_iter()
            .filter(|m| m.clock_mode == ClockMode::Real)
            .map(|m| m.id)
            .collect())
    }
}
