//! Storage conformance suite: every behaviour is written once and run against both backends, as
//! `sqlite_<name>` (a fresh temporary SQLite file per test) and `postgres_<name>` (a fresh database
//! per test on the server that `HAGGLE_TEST_POSTGRES_URL` names, dropped at the end).
//!
//! Locally: `HAGGLE_TEST_POSTGRES_URL='postgres:///haggle_test?host=/var/run/postgresql'
//! cargo test -p haggle-store`. Without the variable the PostgreSQL half does not run (and says so
//! loudly); in CI (`CI` set) `postgres_url_is_set_in_ci` fails instead.

use haggle_core::event::verify_chain;
use haggle_core::negotiation::NewListing;
use haggle_core::policy::{MarketPolicy, PolicyAction, PolicyRule};
use haggle_core::{
    Account, Approver, BelowMin, ClockMode, Deal, DealStatus, DomainError, ErrorCode, Event,
    EventBody, GENESIS_HASH, HOUR_MS, Listing, ListingStatus, Mandate, Market, MarketRules, Offer,
    OfferState, Side, Thread, ThreadStatus, Visibility,
};
use haggle_store::survey::SurveyAnswer;
use haggle_store::{
    Balance, Command, Idempotency, ListingQuery, ListingSort, NewMarket, NewOffer, Outcome, Ran,
    Role, Store, StoredResponse, TokenRecord, Viewer,
};
use sqlx::{AssertSqlSafe, Connection};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

/// The (real) time every command runs at unless a test says otherwise.
const T0: i64 = 1_700_000_000_000;
const PG_ENV: &str = "HAGGLE_TEST_POSTGRES_URL";

// ---------------------------------------------------------------------------------------------
// Harness: one behaviour, two backends.
// ---------------------------------------------------------------------------------------------

/// Instantiates each behaviour `b` as the tests `sqlite_b` and `postgres_b`.
macro_rules! conformance {
    ($($behaviour:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            run(Backend::Sqlite, $behaviour).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $postgres() {
            run(Backend::Postgres, $behaviour).await
        }
    )*};
}

conformance! {
    migrations_are_idempotent => sqlite_migrations_are_idempotent, postgres_migrations_are_idempotent;
    markets_and_participants => sqlite_markets_and_participants, postgres_markets_and_participants;
    listing_search_filters_orders_and_pages => sqlite_listing_search_filters_orders_and_pages, postgres_listing_search_filters_orders_and_pages;
    search_by_category_and_side_finds_what_reading_every_listing_finds => sqlite_search_by_category_and_side_finds_what_reading_every_listing_finds, postgres_search_by_category_and_side_finds_what_reading_every_listing_finds;
    search_matches_whole_words_and_starred_prefixes => sqlite_search_matches_whole_words_and_starred_prefixes, postgres_search_matches_whole_words_and_starred_prefixes;
    a_keyword_search_finds_matches_behind_many_cheaper_listings => sqlite_a_keyword_search_finds_matches_behind_many_cheaper_listings, postgres_a_keyword_search_finds_matches_behind_many_cheaper_listings;
    search_ranks_by_relevance_by_default_when_words_are_given => sqlite_search_ranks_by_relevance_by_default_when_words_are_given, postgres_search_ranks_by_relevance_by_default_when_words_are_given;
    search_splits_words_alike_in_edge_cases => sqlite_search_splits_words_alike_in_edge_cases, postgres_search_splits_words_alike_in_edge_cases;
    migration_11_indexes_the_listings_already_there => sqlite_migration_11_indexes_the_listings_already_there, postgres_migration_11_indexes_the_listings_already_there;
    migration_18_sums_the_deals_already_there => sqlite_migration_18_sums_the_deals_already_there, postgres_migration_18_sums_the_deals_already_there;
    thread_message_offer_and_counters => sqlite_thread_message_offer_and_counters, postgres_thread_message_offer_and_counters;
    acceptance_makes_one_deal_and_voids_the_rest => sqlite_acceptance_makes_one_deal_and_voids_the_rest, postgres_acceptance_makes_one_deal_and_voids_the_rest;
    withdraw_and_walk_away_release_commitments => sqlite_withdraw_and_walk_away_release_commitments, postgres_withdraw_and_walk_away_release_commitments;
    simulated_clock_expires_offers_and_threads => sqlite_simulated_clock_expires_offers_and_threads, postgres_simulated_clock_expires_offers_and_threads;
    refuses_insufficient_funds => sqlite_refuses_insufficient_funds, postgres_refuses_insufficient_funds;
    refuses_mandate_exceeded => sqlite_refuses_mandate_exceeded, postgres_refuses_mandate_exceeded;
    seller_mandates_refuse_or_ask => sqlite_seller_mandates_refuse_or_ask, postgres_seller_mandates_refuse_or_ask;
    refuses_offer_not_live => sqlite_refuses_offer_not_live, postgres_refuses_offer_not_live;
    refuses_not_your_offer => sqlite_refuses_not_your_offer, postgres_refuses_not_your_offer;
    refuses_too_many_offers => sqlite_refuses_too_many_offers, postgres_refuses_too_many_offers;
    refuses_thread_closed => sqlite_refuses_thread_closed, postgres_refuses_thread_closed;
    refuses_listing_unavailable => sqlite_refuses_listing_unavailable, postgres_refuses_listing_unavailable;
    refuses_offer_expired => sqlite_refuses_offer_expired, postgres_refuses_offer_expired;
    idempotency_replays_conflicts_and_stores_refusals => sqlite_idempotency_replays_conflicts_and_stores_refusals, postgres_idempotency_replays_conflicts_and_stores_refusals;
    events_visibility => sqlite_events_visibility, postgres_events_visibility;
    event_hash_chain_verifies => sqlite_event_hash_chain_verifies, postgres_event_hash_chain_verifies;
    append_only_tables_refuse_edits => sqlite_append_only_tables_refuse_edits, postgres_append_only_tables_refuse_edits;
    tampering_is_detected => sqlite_tampering_is_detected, postgres_tampering_is_detected;
    tokens_insert_and_find => sqlite_tokens_insert_and_find, postgres_tokens_insert_and_find;
    tokens_are_revoked_once => sqlite_tokens_are_revoked_once, postgres_tokens_are_revoked_once;
    market_creation_key_is_taken_once_across_stores => sqlite_market_creation_key_is_taken_once_across_stores, postgres_market_creation_key_is_taken_once_across_stores;
    fifty_buyers_accept_at_once => sqlite_fifty_buyers_accept_at_once, postgres_fifty_buyers_accept_at_once;
    many_listings_accept_at_once_with_limited_funds => sqlite_many_listings_accept_at_once_with_limited_funds, postgres_many_listings_accept_at_once_with_limited_funds;
    survey_answers_are_one_per_participant_and_replaced => sqlite_survey_answers_are_one_per_participant_and_replaced, postgres_survey_answers_are_one_per_participant_and_replaced;
    payment_records_are_written_with_one_event_per_change => sqlite_payment_records_are_written_with_one_event_per_change, postgres_payment_records_are_written_with_one_event_per_change;
    proposals_wait_are_found_by_key_and_decided_once => sqlite_proposals_wait_are_found_by_key_and_decided_once, postgres_proposals_wait_are_found_by_key_and_decided_once;
    recent_events_are_newest_first_filtered_by_viewer_and_kind => sqlite_recent_events_are_newest_first_filtered_by_viewer_and_kind, postgres_recent_events_are_newest_first_filtered_by_viewer_and_kind;
    deals_are_listed_by_status => sqlite_deals_are_listed_by_status, postgres_deals_are_listed_by_status;
    closing_expires_listings_offers_and_threads_and_deals_still_settle => sqlite_closing_expires_listings_offers_and_threads_and_deals_still_settle, postgres_closing_expires_listings_offers_and_threads_and_deals_still_settle;
    claims_true_state_inspection_and_dispute_are_stored => sqlite_claims_true_state_inspection_and_dispute_are_stored, postgres_claims_true_state_inspection_and_dispute_are_stored;
    closing_time_is_stored_and_moved_by_the_operator => sqlite_closing_time_is_stored_and_moved_by_the_operator, postgres_closing_time_is_stored_and_moved_by_the_operator;
    reputation_own_deals_and_news_follow_every_commit => sqlite_reputation_own_deals_and_news_follow_every_commit, postgres_reputation_own_deals_and_news_follow_every_commit;
    an_expired_bid_no_longer_holds_the_buyers_money => sqlite_an_expired_bid_no_longer_holds_the_buyers_money, postgres_an_expired_bid_no_longer_holds_the_buyers_money;
    policy_holds_and_moderation_follow_every_store => sqlite_policy_holds_and_moderation_follow_every_store, postgres_policy_holds_and_moderation_follow_every_store;
    suspension_withdraws_voids_and_is_stored => sqlite_suspension_withdraws_voids_and_is_stored, postgres_suspension_withdraws_voids_and_is_stored;
    shipping_is_stored_and_a_simulated_carrier_delivers => sqlite_shipping_is_stored_and_a_simulated_carrier_delivers, postgres_shipping_is_stored_and_a_simulated_carrier_delivers;
}

#[test]
fn postgres_url_is_set_in_ci() {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if ci {
        assert!(
            pg_url().is_some(),
            "CI is set but {PG_ENV} is not: the PostgreSQL conformance tests would not run"
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database for one test. The behaviour opens the store on it (so it can also
/// test opening and migrating).
struct Db {
    backend: Backend,
    url: String,
    /// Commands per commit (`Store::open_batched`); 1 is a server's store.
    batch: usize,
}

/// What to remove when a test ends (whether it passed or not).
enum Cleanup {
    File(haggle_testkit::TempSqlite),
    Database(haggle_testkit::TempDatabase),
}

fn pg_url() -> Option<String> {
    std::env::var(PG_ENV).ok().filter(|u| !u.trim().is_empty())
}

async fn run<F, Fut>(backend: Backend, behaviour: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_with(backend, 1, behaviour).await
}

/// A simulation's own store: SQLite committing `batch` commands at a time, listings shelved in
/// memory for search. Its behaviours must be a server store's.
macro_rules! batched {
    ($($behaviour:ident => $test:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $test() {
            run_with(Backend::Sqlite, 7, $behaviour).await
        }
    )*};
}

batched! {
    a_batched_store_holds_its_file_exclusively => batched_sqlite_a_batched_store_holds_its_file_exclusively;
    a_batched_store_that_fails_after_writing_loses_its_batch_and_refuses_work => batched_sqlite_a_batched_store_that_fails_after_writing_loses_its_batch_and_refuses_work;
    listing_search_filters_orders_and_pages => batched_sqlite_listing_search_filters_orders_and_pages;
    search_by_category_and_side_finds_what_reading_every_listing_finds => batched_sqlite_search_by_category_and_side_finds_what_reading_every_listing_finds;
    search_matches_whole_words_and_starred_prefixes => batched_sqlite_search_matches_whole_words_and_starred_prefixes;
    search_ranks_by_relevance_by_default_when_words_are_given => batched_sqlite_search_ranks_by_relevance_by_default_when_words_are_given;
    search_splits_words_alike_in_edge_cases => batched_sqlite_search_splits_words_alike_in_edge_cases;
    acceptance_makes_one_deal_and_voids_the_rest => batched_sqlite_acceptance_makes_one_deal_and_voids_the_rest;
    withdraw_and_walk_away_release_commitments => batched_sqlite_withdraw_and_walk_away_release_commitments;
    closing_expires_listings_offers_and_threads_and_deals_still_settle => batched_sqlite_closing_expires_listings_offers_and_threads_and_deals_still_settle;
    idempotency_replays_conflicts_and_stores_refusals => batched_sqlite_idempotency_replays_conflicts_and_stores_refusals;
    refuses_listing_unavailable => batched_sqlite_refuses_listing_unavailable;
    reputation_own_deals_and_news_follow_every_commit => batched_sqlite_reputation_own_deals_and_news_follow_every_commit;
    an_expired_bid_no_longer_holds_the_buyers_money => batched_sqlite_an_expired_bid_no_longer_holds_the_buyers_money;
    markets_and_participants => batched_sqlite_markets_and_participants;
    thread_message_offer_and_counters => batched_sqlite_thread_message_offer_and_counters;
    simulated_clock_expires_offers_and_threads => batched_sqlite_simulated_clock_expires_offers_and_threads;
    refuses_insufficient_funds => batched_sqlite_refuses_insufficient_funds;
    refuses_mandate_exceeded => batched_sqlite_refuses_mandate_exceeded;
    refuses_offer_expired => batched_sqlite_refuses_offer_expired;
    events_visibility => batched_sqlite_events_visibility;
    claims_true_state_inspection_and_dispute_are_stored => batched_sqlite_claims_true_state_inspection_and_dispute_are_stored;
    event_hash_chain_verifies => batched_sqlite_event_hash_chain_verifies;
    recent_events_are_newest_first_filtered_by_viewer_and_kind => batched_sqlite_recent_events_are_newest_first_filtered_by_viewer_and_kind;
    deals_are_listed_by_status => batched_sqlite_deals_are_listed_by_status;
    closing_time_is_stored_and_moved_by_the_operator => batched_sqlite_closing_time_is_stored_and_moved_by_the_operator;
    many_listings_accept_at_once_with_limited_funds => batched_sqlite_many_listings_accept_at_once_with_limited_funds;
    policy_holds_and_moderation_follow_every_store => batched_sqlite_policy_holds_and_moderation_follow_every_store;
    suspension_withdraws_voids_and_is_stored => batched_sqlite_suspension_withdraws_voids_and_is_stored;
    shipping_is_stored_and_a_simulated_carrier_delivers => batched_sqlite_shipping_is_stored_and_a_simulated_carrier_delivers;
}

async fn run_with<F, Fut>(backend: Backend, batch: usize, behaviour: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (url, cleanup) = match backend {
        Backend::Sqlite => {
            let file = haggle_testkit::TempSqlite::new("conformance");
            (file.url(), Cleanup::File(file))
        }
        Backend::Postgres => {
            let Some(admin_url) = haggle_testkit::postgres_url("POSTGRES CONFORMANCE") else {
                return;
            };
            let db = haggle_testkit::TempDatabase::create(&admin_url, "haggle_t").await;
            (db.url.clone(), Cleanup::Database(db))
        }
    };
    let db = Db {
        backend,
        url,
        batch,
    };
    // The behaviour runs in its own task so that a failing assertion still reaches the cleanup.
    let outcome = tokio::spawn(behaviour(db)).await;
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

impl Db {
    async fn open(&self) -> Store {
        let store = Store::open_batched(&self.url, self.batch)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url));
        let want = match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        assert_eq!(store.backend_name(), want);
        store
    }

    /// Runs raw SQL on a separate connection (to tamper with the database behind the store).
    async fn exec(&self, sql: &str) -> Result<u64, String> {
        match self.backend {
            Backend::Sqlite => {
                let c = self.sqlite();
                c.execute_batch(sql).map_err(|e| e.to_string())?;
                Ok(c.changes())
            }
            Backend::Postgres => {
                let sql = AssertSqlSafe(sql.to_string());
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .map_err(|e| e.to_string())?;
                let done = sqlx::raw_sql(sql).execute(&mut c).await;
                let _ = c.close().await;
                Ok(done.map_err(|e| e.to_string())?.rows_affected())
            }
        }
    }

    /// A second connection to the SQLite file, outside the store.
    fn sqlite(&self) -> rusqlite::Connection {
        let path = self.url.trim_start_matches("sqlite://");
        let c = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        c.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
        c
    }

    async fn scalar(&self, sql: &str) -> i64 {
        let q = AssertSqlSafe(sql.to_string());
        let v = match self.backend {
            Backend::Sqlite => self
                .sqlite()
                .query_row(&q.0, [], |r| r.get::<_, i64>(0))
                .map_err(|e| e.to_string()),
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, i64>(q)
                    .fetch_one(&mut c)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        v.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Market helpers.
// ---------------------------------------------------------------------------------------------

/// One market of a store, with shorthands for its commands.
#[derive(Clone)]
struct Mkt {
    store: Store,
    id: i64,
}

/// What a refused command must leave untouched.
#[derive(Debug, PartialEq)]
struct State {
    market: Option<Market>,
    events: usize,
    last_hash: Option<String>,
    balances: Vec<Balance>,
    threads: usize,
    deals: usize,
    transfers: usize,
}

async fn market(store: &Store, rules: MarketRules) -> Mkt {
    market_with(store, ClockMode::Real, rules).await
}

async fn market_with(store: &Store, clock_mode: ClockMode, rules: MarketRules) -> Mkt {
    let m = store
        .create_market(
            NewMarket {
                name: "conformance".into(),
                currency: "EUR".into(),
                clock_mode,
                sim_start: T0,
                rules,
            },
            T0,
        )
        .await
        .expect("create market");
    Mkt {
        store: store.clone(),
        id: m.id,
    }
}

fn new_listing(side: Side, title: &str, category: &str, price: i64) -> NewListing {
    NewListing {
        side,
        title: title.into(),
        description: String::new(),
        category: category.into(),
        condition: "used".into(),
        price,
        attributes: BTreeMap::new(),
        claims: Default::default(),
        true_state: None,
        fulfilment: Default::default(),
        true_transit: None,
    }
}

fn offer(price: i64) -> Option<NewOffer> {
    Some(NewOffer {
        price,
        expires_in_ms: None,
    })
}

impl Mkt {
    async fn try_run_at(&self, now: i64, cmd: Command) -> Result<Outcome, DomainError> {
        let ran = self
            .store
            .run(self.id, now, cmd.clone(), None)
            .await
            .unwrap_or_else(|e| panic!("{cmd:?}: store error: {e}"));
        match ran {
            Ran::Fresh { result, events } => {
                match &result {
                    Ok(_) => assert!(!events.is_empty(), "{cmd:?} succeeded without an event"),
                    Err(e) => assert!(events.is_empty(), "{cmd:?} refused ({e}) with events"),
                }
                result
            }
            other => panic!("{cmd:?} without a key must run fresh, got {other:?}"),
        }
    }

    async fn try_run(&self, cmd: Command) -> Result<Outcome, DomainError> {
        self.try_run_at(T0, cmd).await
    }

    async fn ok(&self, cmd: Command) -> Outcome {
        let what = format!("{cmd:?}");
        self.try_run(cmd)
            .await
            .unwrap_or_else(|e| panic!("{what} refused: {e}"))
    }

    async fn join(&self, name: &str, budget: i64) -> i64 {
        self.join_with(name, budget, Mandate::default()).await
    }

    async fn join_with(&self, name: &str, budget: i64, mandate: Mandate) -> i64 {
        match self
            .ok(Command::RegisterParticipant {
                name: name.into(),
                mandate,
                budget,
            })
            .await
        {
            Outcome::Participant(p) => p.id,
            o => panic!("expected a participant, got {o:?}"),
        }
    }

    async fn list(&self, owner: i64, listing: NewListing) -> Listing {
        match self
            .ok(Command::CreateListing {
                actor: owner,
                listing,
            })
            .await
        {
            Outcome::Listing(l) => l,
            o => panic!("expected a listing, got {o:?}"),
        }
    }

    async fn sell(&self, owner: i64, price: i64) -> Listing {
        self.list(owner, new_listing(Side::Sell, "Road bike", "bikes", price))
            .await
    }

    async fn open(
        &self,
        actor: i64,
        listing: i64,
        message: Option<&str>,
        price: Option<i64>,
    ) -> (Thread, Option<Offer>) {
        match self
            .ok(Command::OpenThread {
                actor,
                listing,
                message: message.map(Into::into),
                offer: price.and_then(offer),
            })
            .await
        {
            Outcome::Thread { thread, offer, .. } => (thread, offer),
            o => panic!("expected a thread, got {o:?}"),
        }
    }

    /// Opens the actor's thread on `listing` with an offer.
    async fn bid(&self, actor: i64, listing: i64, price: i64) -> Offer {
        self.open(actor, listing, None, Some(price))
            .await
            .1
            .expect("offer")
    }

    async fn offer(&self, actor: i64, thread: i64, price: i64) -> Offer {
        match self
            .ok(Command::MakeOffer {
                actor,
                thread,
                offer: NewOffer {
                    price,
                    expires_in_ms: None,
                },
            })
            .await
        {
            Outcome::Offer(o) => o,
            o => panic!("expected an offer, got {o:?}"),
        }
    }

    async fn deal(&self, actor: i64, offer: i64) -> Deal {
        match self.ok(Command::AcceptOffer { actor, offer }).await {
            Outcome::Deal(d) => d,
            o => panic!("expected a deal, got {o:?}"),
        }
    }

    async fn balance(&self, p: i64) -> Balance {
        self.store.balance(self.id, p, T0).await.unwrap()
    }

    async fn offer_state(&self, id: i64) -> OfferState {
        self.store.offer(self.id, id).await.unwrap().unwrap().state
    }

    async fn thread_status(&self, id: i64) -> ThreadStatus {
        self.store
            .thread(self.id, id)
            .await
            .unwrap()
            .unwrap()
            .thread
            .status
    }

    async fn listing_status(&self, id: i64) -> ListingStatus {
        self.store
            .listing(self.id, id)
            .await
            .unwrap()
            .unwrap()
            .status
    }

    async fn events(&self, viewer: Viewer) -> Vec<Event> {
        self.store.events(self.id, viewer, 0, 10_000).await.unwrap()
    }

    async fn verified(&self) {
        let v = self.store.verify(self.id).await.unwrap();
        assert_eq!(v.market_id, self.id);
        assert!(v.ok(), "market {} breaches: {:#?}", self.id, v.breaches);
    }

    async fn state(&self, participants: &[i64]) -> State {
        let events = self.events(Viewer::All).await;
        let mut balances = Vec::new();
        for p in participants {
            balances.push(self.balance(*p).await);
        }
        State {
            market: self.store.market(self.id).await.unwrap(),
            events: events.len(),
            last_hash: events.last().map(|e| e.hash.clone()),
            balances,
            threads: self
                .store
                .threads(self.id, None, None, 0, 500)
                .await
                .unwrap()
                .len(),
            deals: self
                .store
                .deals(self.id, None, 0, 10_000)
                .await
                .unwrap()
                .len(),
            transfers: self.store.verify(self.id).await.unwrap().transfers,
        }
    }

    /// Asserts `cmd` is refused with `code` and changes nothing.
    async fn refuses(&self, code: ErrorCode, cmd: Command, participants: &[i64]) -> DomainError {
        self.refuses_at(T0, code, cmd, participants).await
    }

    async fn refuses_at(
        &self,
        now: i64,
        code: ErrorCode,
        cmd: Command,
        participants: &[i64],
    ) -> DomainError {
        let before = self.state(participants).await;
        let e = self
            .try_run_at(now, cmd.clone())
            .await
            .expect_err("the command should be refused");
        assert_eq!(e.code, code, "{cmd:?} refused with the wrong code: {e}");
        assert!(!e.message.is_empty());
        let after = self.state(participants).await;
        assert_eq!(after, before, "refused {cmd:?} changed state");
        e
    }
}

/// A market with a seller, a buyer and a rival (10 000 each) and the seller's listing at 5 000.
struct Fx {
    m: Mkt,
    seller: i64,
    buyer: i64,
    rival: i64,
    listing: Listing,
}

impl Fx {
    fn all(&self) -> [i64; 3] {
        [self.seller, self.buyer, self.rival]
    }
}

async fn fx(store: &Store, rules: MarketRules) -> Fx {
    let m = market(store, rules).await;
    let seller = m.join("seller", 0).await;
    let buyer = m.join("buyer", 10_000).await;
    let rival = m.join("rival", 10_000).await;
    let listing = m.sell(seller, 5_000).await;
    Fx {
        m,
        seller,
        buyer,
        rival,
        listing,
    }
}

fn bal(available: i64, in_escrow: i64, committed: i64) -> Balance {
    Balance {
        available,
        held_in_escrow: in_escrow,
        committed_to_offers: committed,
        held: in_escrow + committed,
        total: available + in_escrow + committed,
    }
}

// ---------------------------------------------------------------------------------------------
// Behaviours.
// ---------------------------------------------------------------------------------------------

async fn migrations_are_idempotent(db: Db) {
    // Two replicas opening the same fresh database at once: both migrate it without a clash.
    let (a, b) = tokio::join!(Store::open(&db.url), Store::open(&db.url));
    let a = a.expect("first concurrent open");
    let b = b.expect("second concurrent open");
    let m = market(&a, MarketRules::default()).await;
    let alice = m.join("alice", 1_000).await;
    let applied = db.scalar("SELECT COUNT(*) FROM schema_migrations").await;
    assert!(applied >= 2, "the schema and the append-only triggers");
    assert_eq!(
        db.scalar("SELECT COUNT(DISTINCT version) FROM schema_migrations")
            .await,
        applied,
        "each migration is recorded once"
    );
    // And again later, on a database that holds data: nothing is applied twice.
    let c = db.open().await;
    let d = db.open().await;
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM schema_migrations").await,
        applied
    );
    for s in [&a, &b, &c, &d] {
        assert_eq!(s.markets().await.unwrap().len(), 1);
        let p = s.participant(m.id, alice).await.unwrap().expect("alice");
        assert_eq!(p.name, "alice");
        assert_eq!(s.balance(m.id, alice, T0).await.unwrap(), bal(1_000, 0, 0));
    }
    let via_c = Mkt {
        store: c.clone(),
        id: m.id,
    };
    let bob = via_c.join("bob", 500).await;
    assert_eq!(
        a.participants(m.id, 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        vec![alice, bob]
    );
    m.verified().await;
}

async fn markets_and_participants(db: Db) {
    let store = db.open().await;
    let rules = MarketRules {
        max_offers_per_thread: Some(5),
        public_negotiations: true,
        ..MarketRules::default()
    };
    let sim = store
        .create_market(
            NewMarket {
                name: "Bikes".into(),
                currency: "EUR".into(),
                clock_mode: ClockMode::Simulated,
                sim_start: T0 - 5_000,
                rules: rules.clone(),
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(sim.name, "Bikes");
    assert_eq!(sim.currency, "EUR");
    assert_eq!(sim.rules, rules);
    assert_eq!(sim.clock_mode, ClockMode::Simulated);
    assert_eq!(sim.sim_now, T0 - 5_000);
    assert_eq!(sim.created_at, T0);
    assert_eq!(store.market(sim.id).await.unwrap(), Some(sim.clone()));
    let real = market(&store, MarketRules::default()).await;
    assert_ne!(real.id, sim.id);
    assert_eq!(
        store
            .markets()
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        vec![sim.id, real.id]
    );
    assert_eq!(store.real_clock_markets().await.unwrap(), vec![real.id]);
    assert_eq!(store.market(sim.id + real.id + 100).await.unwrap(), None);
    // A command on a market that does not exist is refused, not an error.
    let ghost = Mkt {
        store: store.clone(),
        id: sim.id + real.id + 100,
    };
    let e = ghost.try_run(Command::Sweep).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    let m = Mkt {
        store: store.clone(),
        id: sim.id,
    };
    let mandate = Mandate {
        spend_cap: Some(7_000),
        per_deal_cap: Some(3_000),
        categories: Some(vec!["bikes".into()]),
        ..Mandate::default()
    };
    let alice = m.join_with("  Alice ", 5_000, mandate.clone()).await;
    let bob = m.join("Bob", 0).await;
    let carol = m.join("Carol", 10_000).await;
    let p = store.participant(m.id, alice).await.unwrap().unwrap();
    assert_eq!(p.name, "Alice", "names are trimmed");
    assert_eq!(p.mandate, mandate);
    assert_eq!(p.market_id, m.id);
    assert_eq!(p.created_at, T0 - 5_000, "created on the market's clock");
    assert_eq!(
        store.participant(real.id, alice).await.unwrap(),
        None,
        "participants belong to one market"
    );
    let ids = |ps: Vec<haggle_core::Participant>| ps.iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.participants(m.id, 0, 10).await.unwrap()),
        vec![alice, bob, carol]
    );
    assert_eq!(
        ids(store.participants(m.id, alice, 1).await.unwrap()),
        vec![bob]
    );
    assert_eq!(m.balance(alice).await, bal(5_000, 0, 0));
    assert_eq!(m.balance(bob).await, bal(0, 0, 0));
    assert_eq!(m.balance(carol).await, bal(10_000, 0, 0));

    assert_eq!(
        m.ok(Command::Fund {
            participant: bob,
            amount: 2_500
        })
        .await,
        Outcome::Done
    );
    assert_eq!(m.balance(bob).await, bal(2_500, 0, 0));
    let everyone = [alice, bob, carol];
    m.refuses(
        ErrorCode::InvalidRequest,
        Command::Fund {
            participant: bob,
            amount: 0,
        },
        &everyone,
    )
    .await;
    m.refuses(
        ErrorCode::NotFound,
        Command::Fund {
            participant: 9_999,
            amount: 10,
        },
        &everyone,
    )
    .await;
    m.refuses(
        ErrorCode::InvalidRequest,
        Command::RegisterParticipant {
            name: "dave".into(),
            mandate: Mandate::default(),
            budget: -1,
        },
        &everyone,
    )
    .await;
    m.refuses(
        ErrorCode::InvalidRequest,
        Command::RegisterParticipant {
            name: "  ".into(),
            mandate: Mandate::default(),
            budget: 0,
        },
        &everyone,
    )
    .await;
    let lifted = Mandate {
        spend_cap: Some(9_000),
        ..Mandate::default()
    };
    m.ok(Command::SetMandate {
        author: haggle_core::MandateAuthor::Operator,
        participant: alice,
        mandate: lifted.clone(),
    })
    .await;
    assert_eq!(
        store
            .participant(m.id, alice)
            .await
            .unwrap()
            .unwrap()
            .mandate,
        lifted
    );
    let v = store.verify(m.id).await.unwrap();
    assert_eq!(
        v.transfers, 3,
        "alice's and carol's budgets and bob's funding"
    );
    m.verified().await;
    real.verified().await;
    assert_eq!(
        store.verify(real.id).await.unwrap().events,
        1,
        "market_created"
    );
}

/// Pages through a whole search, checking page sizes and cursors; returns the ids in order.
async fn search_all(m: &Mkt, q: &ListingQuery) -> Vec<i64> {
    let mut q = q.clone();
    let limit = q.limit.expect("set a page size") as usize;
    let mut ids = Vec::new();
    for _ in 0..100 {
        let page = m.store.search_listings(m.id, &q).await.unwrap();
        assert!(page.items.len() <= limit);
        ids.extend(page.items.iter().map(|l| l.id));
        match page.next_cursor {
            Some(c) => {
                assert_eq!(page.items.len(), limit, "only the last page is short");
                q.cursor = Some(c);
            }
            None => {
                let unique: BTreeSet<_> = ids.iter().collect();
                assert_eq!(unique.len(), ids.len(), "pages overlap: {ids:?}");
                return ids;
            }
        }
    }
    panic!("pagination does not end");
}

/// The expected result of a search, computed from the listings themselves (`q` only ranks
/// them, for `relevance`: `keep` decides which match).
fn expected(
    all: &[Listing],
    sort: ListingSort,
    q: &str,
    keep: impl Fn(&Listing) -> bool,
) -> Vec<i64> {
    let mut v: Vec<&Listing> = all.iter().filter(|l| keep(l)).collect();
    match sort {
        ListingSort::Newest => v.sort_by_key(|l| std::cmp::Reverse(l.id)),
        ListingSort::Cheapest => v.sort_by_key(|l| (l.price, l.id)),
        ListingSort::Relevance => v.sort_by_key(|l| std::cmp::Reverse((score(l, q), l.id))),
    }
    v.iter().map(|l| l.id).collect()
}

/// A query's words as the contract defines them, independently of the stores: runs of ASCII
/// letters and digits or non-ASCII characters, lower-cased, each with whether a `*` follows it
/// (a prefix), the first 16.
fn query_words(q: &str) -> Vec<(String, bool)> {
    let q = q.to_lowercase();
    let chars: Vec<char> = q.chars().collect();
    let mut wanted: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if separates(chars[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && !separates(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        wanted.push((word, chars.get(i) == Some(&'*')));
    }
    wanted.truncate(16);
    wanted
}

fn separates(c: char) -> bool {
    c.is_ascii() && !c.is_ascii_alphanumeric()
}

/// Whether lower-cased `text` has a word matching `(word, prefix)`.
fn text_has(text: &str, (word, prefix): &(String, bool)) -> bool {
    text.split(separates).filter(|t| !t.is_empty()).any(|t| {
        if *prefix {
            t.starts_with(word.as_str())
        } else {
            t == word
        }
    })
}

/// A listing's relevance by the contract, independently of the stores: each query word scores
/// 2 if it matches a word of the title and 1 if of the description.
fn score(l: &Listing, q: &str) -> i64 {
    let (title, description) = (l.title.to_lowercase(), l.description.to_lowercase());
    query_words(q)
        .iter()
        .map(|w| 2 * i64::from(text_has(&title, w)) + i64::from(text_has(&description, w)))
        .sum()
}

fn text(l: &Listing) -> String {
    format!("{} {} {}", l.title, l.description, l.category).to_lowercase()
}

/// Whether a listing has every word of query `q`, by the search contract written out
/// independently of the stores: a word is a run of ASCII letters and digits or non-ASCII
/// characters (any other character separates words, case is ignored); a query word matches a
/// whole word of the title, description or category, or a word's beginning when `*` follows it.
fn has_words(l: &Listing, q: &str) -> bool {
    let text = text(l);
    query_words(q).iter().all(|w| text_has(&text, w))
}

/// Words match whole (`table` is not found in "comfortable", `tv` not in "Fruitvale"), a `*`
/// after a word matches words beginning with it, and every store answers alike, within one
/// category and side (a simulation's shelves) and across the market.
async fn search_matches_whole_words_and_starred_prefixes(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let ann = m.join("ann", 0).await;
    let titles = [
        "Comfortable chair",
        "Oak table",
        "Tables and chairs, set",
        "Fruitvale apartment",
        "TV stand (42\")",
        "Smart-TV",
        "Café table",
        "cafés guide",
    ];
    let mut ids = Vec::new();
    for t in titles {
        ids.push(
            m.list(ann, new_listing(Side::Sell, t, "home", 100))
                .await
                .id,
        );
    }
    let id = |t: &str| ids[titles.iter().position(|x| *x == t).unwrap()];
    let cases: [(&str, Vec<&str>); 9] = [
        ("table", vec!["Café table", "Oak table"]),
        (
            "tab*",
            vec!["Café table", "Tables and chairs, set", "Oak table"],
        ),
        ("TV", vec!["Smart-TV", "TV stand (42\")"]),
        ("tv*", vec!["Smart-TV", "TV stand (42\")"]),
        ("fruit", vec![]),
        ("fruit*", vec!["Fruitvale apartment"]),
        ("chair*  comfortable", vec!["Comfortable chair"]),
        ("café", vec!["Café table"]),
        ("caf*", vec!["cafés guide", "Café table"]),
    ];
    for (q, want) in cases {
        let want: Vec<i64> = want.into_iter().map(id).collect();
        for (category, side) in [(Some("home"), Some(Side::Sell)), (None, None)] {
            let query = ListingQuery {
                q: Some(q.into()),
                category: category.map(Into::into),
                side,
                limit: Some(2),
                ..ListingQuery::default()
            };
            assert_eq!(search_all(&m, &query).await, want, "{query:?}");
        }
    }
    m.verified().await;
}

/// A keyword search sorted by price or id finds its matches however many listings without the
/// word come before them in that order (SQLite walks the first few hundred, then asks its words
/// index), and pages through them.
async fn a_keyword_search_finds_matches_behind_many_cheaper_listings(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let ann = m.join("ann", 0).await;
    let mut bikes = Vec::new();
    for i in 0..3 {
        bikes.push(
            m.list(ann, new_listing(Side::Sell, "Road bike", "sport", 500 + i))
                .await
                .id,
        );
    }
    for i in 0..300 {
        m.list(
            ann,
            new_listing(Side::Sell, &format!("Chair {i}"), "home", 1),
        )
        .await;
    }
    for (sort, want) in [
        (ListingSort::Cheapest, bikes.clone()),
        (ListingSort::Newest, bikes.iter().rev().copied().collect()),
    ] {
        let query = ListingQuery {
            q: Some("bike".into()),
            sort: Some(sort),
            limit: Some(2),
            ..ListingQuery::default()
        };
        assert_eq!(search_all(&m, &query).await, want, "{sort:?}");
    }
    m.verified().await;
}

/// With words and no `sort`, a search ranks by relevance: each word scores 2 in the title and 1
/// in the description (the category scores nothing), ties newest first; pages follow the
/// ranking. An asked order is kept, and without words the default stays newest first.
async fn search_ranks_by_relevance_by_default_when_words_are_given(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let ann = m.join("ann", 0).await;
    // (title, description, category): score for "oak table".
    let listings = [
        ("Oak table", "", "home"),                       // 4
        ("Table", "solid oak", "home"),                  // 3
        ("Chair", "fits an oak table", "home"),          // 2
        ("Oak table", "Oak table, barely used", "home"), // 6
        ("Lamp", "for a table", "oak"),                  // 1: the category scores nothing
        ("Oak table", "", "home"),                       // 4, newer than the first
        ("Comfortable chair", "oak", "home"),            // no "table": not found
        ("Wanted: oak table", "", "home"),               // 4, a wanted ad: no precedence
    ];
    let mut ids = Vec::new();
    for (i, (title, description, category)) in listings.iter().enumerate() {
        let side = if i == 7 { Side::Buy } else { Side::Sell };
        let mut l = new_listing(side, title, category, 100 + i as i64);
        l.description = description.to_string();
        ids.push(m.list(ann, l).await.id);
    }
    let ranked: Vec<i64> = [3, 7, 5, 0, 1, 2, 4].iter().map(|&i| ids[i]).collect();
    for limit in [1, 2, 500] {
        for sort in [None, Some(ListingSort::Relevance)] {
            let query = ListingQuery {
                q: Some("Oak TABLE".into()),
                sort,
                limit: Some(limit),
                ..ListingQuery::default()
            };
            assert_eq!(search_all(&m, &query).await, ranked, "{query:?}");
            let mine = ListingQuery {
                owner: Some(ann),
                ..query.clone()
            };
            assert_eq!(search_all(&m, &mine).await, ranked, "{mine:?}");
        }
        // One category and side (a simulation's shelves), a starred word.
        let query = ListingQuery {
            q: Some("oak tab*".into()),
            category: Some("home".into()),
            side: Some(Side::Sell),
            limit: Some(limit),
            ..ListingQuery::default()
        };
        let home: Vec<i64> = [3, 5, 0, 1, 2].iter().map(|&i| ids[i]).collect();
        assert_eq!(search_all(&m, &query).await, home, "{query:?}");
        // An order asked for is kept.
        let newest = ListingQuery {
            sort: Some(ListingSort::Newest),
            ..query.clone()
        };
        let by_id: Vec<i64> = [5, 3, 2, 1, 0].iter().map(|&i| ids[i]).collect();
        assert_eq!(search_all(&m, &newest).await, by_id, "{newest:?}");
    }
    // No words: newest first, whatever the text.
    let all = ListingQuery {
        q: Some("  ".into()),
        limit: Some(3),
        ..ListingQuery::default()
    };
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(search_all(&m, &all).await, newest_first);
    // A server reading the same database ranks alike (a batched store indexes the listings'
    // words when it flushes).
    store.flush().await.unwrap();
    m.verified().await;
    // A simulation's store holds its file exclusively: it closes before a server opens it.
    let market_id = m.id;
    drop(m);
    drop(store);
    let server = Mkt {
        store: Store::open(&db.url).await.unwrap(),
        id: market_id,
    };
    let query = ListingQuery {
        q: Some("oak table".into()),
        limit: Some(2),
        ..ListingQuery::default()
    };
    assert_eq!(search_all(&server, &query).await, ranked);
    server.verified().await;
}

/// Where words split, as the contract says (a word is a run of ASCII letters and digits or
/// non-ASCII characters), in the cases where tokenizers usually differ: digits and decimal
/// points, apostrophes, e-mail addresses, underscores, accents (kept, not folded), upper-case
/// non-ASCII letters, non-ASCII symbols and dashes (word characters), other scripts, and words
/// too long for a PostgreSQL lexeme. Every store finds, and ranks, what the contract's oracle does.
async fn search_splits_words_alike_in_edge_cases(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let ann = m.join("ann", 0).await;
    let long_a = format!("{}a", "é".repeat(1100));
    let long_b = format!("{}b", "é".repeat(1100));
    let texts: Vec<(String, String)> = vec![
        ("1.5 litre kettle".into(), "100% steel".into()),
        ("Don't panic".into(), "towel".into()),
        ("Naïve art".into(), "ÉCRAN plat".into()),
        ("Price €100".into(), "a–b test".into()),
        ("東京 apartment".into(), "near 東京駅".into()),
        ("Contact".into(), "bob@example.com or x_y".into()),
        ("e-bike".into(), long_a.clone()),
        ("long words".into(), long_b.clone()),
        ("Fifteen".into(), "15 pieces, 1,5 kg".into()),
    ];
    let mut all = Vec::new();
    for (i, (title, description)) in texts.iter().enumerate() {
        let mut l = new_listing(Side::Sell, title, "misc", 100 + i as i64);
        l.description = description.clone();
        all.push(m.list(ann, l).await);
    }
    let queries = [
        "1",
        "5",
        "1.5",
        "15",
        "100",
        "100%",
        "don't",
        "dont",
        "t",
        "naïve",
        "naive",
        "NAÏVE",
        "écran",
        "ecran",
        "€100",
        "€*",
        "price 100",
        "a",
        "a–b",
        "a–*",
        "東京",
        "東*",
        "駅",
        "example",
        "bob@example.com",
        "x",
        "y",
        "x_y",
        "e",
        "bike",
        "e-bike*",
        long_a.as_str(),
        &format!("{}*", "é".repeat(1100)),
        &format!("{}*", "é".repeat(3)),
        &"é".repeat(1100),
        "kg",
    ];
    for q in queries {
        let want_found: Vec<&Listing> = all.iter().filter(|l| has_words(l, q)).collect();
        if q == "1" {
            assert_eq!(want_found.len(), 2, "the oracle splits 1.5 and 1,5");
        }
        for (category, side) in [(Some("misc"), Some(Side::Sell)), (None, None)] {
            for sort in [ListingSort::Newest, ListingSort::Relevance] {
                let query = ListingQuery {
                    q: Some(q.to_string()),
                    category: category.map(Into::into),
                    side,
                    sort: Some(sort),
                    limit: Some(2),
                    ..ListingQuery::default()
                };
                let want = expected(&all, sort, q, |l| has_words(l, q));
                assert_eq!(
                    search_all(&m, &query).await,
                    want,
                    "{q:?} {sort:?} {category:?}"
                );
            }
        }
    }
    // A server reading the same database (through the words index, also for a batched
    // store's listings once it flushed) finds alike.
    store.flush().await.unwrap();
    m.verified().await;
    // A simulation's store holds its file exclusively: it closes before a server opens it.
    let market_id = m.id;
    drop(m);
    drop(store);
    let server = Mkt {
        store: Store::open(&db.url).await.unwrap(),
        id: market_id,
    };
    for q in queries {
        let query = ListingQuery {
            q: Some(q.to_string()),
            limit: Some(500),
            ..ListingQuery::default()
        };
        let want = expected(&all, ListingSort::Relevance, q, |l| has_words(l, q));
        assert_eq!(search_all(&server, &query).await, want, "{q:?} on a server");
    }
    server.verified().await;
}

/// A database with deals from before migration 18 gets its buyers' held and spent sums from
/// them.
async fn migration_18_sums_the_deals_already_there(db: Db) {
    let store = db.open().await;
    let f = market_with_a_deal(&store).await;
    let before = store.balance(f.m.id, f.buyer, T0).await.unwrap();
    assert!(before.held_in_escrow > 0, "{before:?}");
    store.flush().await.unwrap();
    drop(store);
    let undo = match db.backend {
        Backend::Sqlite => {
            "DROP TABLE buyer_funds; DROP TRIGGER deals_buyer_funds_insert; \
             DROP TRIGGER deals_buyer_funds_update; \
             CREATE INDEX deals_buyer_funds ON deals (market_id, buyer, status, price); \
             DELETE FROM schema_migrations WHERE version = 18"
        }
        Backend::Postgres => {
            "DROP TABLE buyer_funds; DROP FUNCTION haggle_buyer_funds() CASCADE; \
             CREATE INDEX deals_buyer_funds ON deals (market_id, buyer, status, price); \
             DELETE FROM schema_migrations WHERE version = 18"
        }
    };
    db.exec(undo).await.unwrap();
    let store = db.open().await;
    assert_eq!(store.balance(f.m.id, f.buyer, T0).await.unwrap(), before);
    let again = Mkt {
        store: store.clone(),
        id: f.m.id,
    };
    again.verified().await;
}

/// Migration 11 indexes the listings a database already holds (PostgreSQL: in Rust, in the
/// migration's transaction), so a search finds them after an upgrade.
async fn migration_11_indexes_the_listings_already_there(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let ann = m.join("ann", 0).await;
    let mut l = new_listing(Side::Sell, "Oak table", "home", 100);
    l.description = "Café crème stains".into();
    let table = m.list(ann, l).await.id;
    let chair = m
        .list(ann, new_listing(Side::Sell, "Oak chair", "home", 90))
        .await
        .id;
    store.flush().await.unwrap();
    drop(store);
    // The database as it was before migration 11.
    let undo = match db.backend {
        Backend::Sqlite => {
            "DROP TABLE listing_words; DROP TABLE listing_words_pending; \
             DELETE FROM schema_migrations WHERE version = 11"
        }
        Backend::Postgres => {
            "DROP INDEX listings_by_words; ALTER TABLE listings DROP COLUMN search_doc; \
             DELETE FROM schema_migrations WHERE version = 11"
        }
    };
    db.exec(undo).await.unwrap();
    let again = Mkt {
        store: db.open().await,
        id: m.id,
    };
    let search = |q: &str| ListingQuery {
        q: Some(q.into()),
        limit: Some(10),
        ..ListingQuery::default()
    };
    assert_eq!(search_all(&again, &search("oak")).await, vec![chair, table]);
    assert_eq!(search_all(&again, &search("oak crème")).await, vec![table]);
    assert_eq!(search_all(&again, &search("tab* café")).await, vec![table]);
    again.verified().await;
}

/// Searches in one category and side (what agents run most; a simulation's store answers them
/// from memory) return what a scan of every listing returns, page by page, before and after
/// listings change.
async fn search_by_category_and_side_finds_what_reading_every_listing_finds(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let ann = m.join("ann", 0).await;
    let ben = m.join("ben", 1_000_000).await;
    // Words inside other words, punctuation, a long word, case, ties on price.
    let words = [
        "bike",
        "bikes",
        "motorbike",
        "e-bike,",
        "road",
        "railroad",
        "book",
        "notebook",
        "Road-Bike",
    ];
    let long = format!("{}bikeparts", "x".repeat(70));
    let mut all = Vec::new();
    let mut seed = 7u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for i in 0..60 {
        let title = format!("{} {}", words[next(9) as usize], words[next(9) as usize]);
        let category = if next(3) == 0 { "Books" } else { "bikes" };
        let side = if next(4) == 0 { Side::Buy } else { Side::Sell };
        let mut l = new_listing(side, &title, category, 100 + 50 * next(6) as i64);
        l.description = match next(5) {
            0 => long.clone(),
            1 => "barely ridden\nroad\tready".into(),
            _ => String::new(),
        };
        all.push(m.list(if i % 2 == 0 { ann } else { ben }, l).await);
    }
    let check = |all: Vec<Listing>| {
        let m = Mkt {
            store: store.clone(),
            id: m.id,
        };
        async move {
            let mut cases = Vec::new();
            for q in [
                None,
                Some("bike"),
                Some("BIKE road"),
                Some("rail"),
                Some("rail*"),
                Some("parts"),
                Some("bike*"),
                Some("road bik*"),
                Some("e-bike,"),
                Some("zzz"),
            ] {
                for (min, max, owner) in [
                    (None, None, None),
                    (Some(150), Some(250), None),
                    (None, None, Some(ann)),
                ] {
                    for status in [
                        None,
                        Some(ListingStatus::Withdrawn),
                        Some(ListingStatus::Sold),
                    ] {
                        cases.push((q, min, max, owner, status));
                    }
                }
            }
            for (q, min, max, owner, status) in cases {
                // A category and a side (one shelf), or an owner's listings in every category
                // and on both sides.
                let mut scopes: Vec<(Option<&str>, Option<Side>)> = Vec::new();
                if owner.is_some() {
                    scopes.push((None, None));
                }
                for category in ["bikes", " BOOKS "] {
                    for side in [Side::Sell, Side::Buy] {
                        scopes.push((Some(category), Some(side)));
                    }
                }
                for (category, side) in scopes {
                    for sort in [
                        ListingSort::Cheapest,
                        ListingSort::Newest,
                        ListingSort::Relevance,
                    ] {
                        let want = expected(&all, sort, q.unwrap_or(""), |l| {
                            l.status == status.unwrap_or(ListingStatus::Active)
                                && category.is_none_or(|c| l.category == c.trim().to_lowercase())
                                && side.is_none_or(|s| l.side == s)
                                && min.is_none_or(|x| l.price >= x)
                                && max.is_none_or(|x| l.price <= x)
                                && owner.is_none_or(|o| l.owner == o)
                                && has_words(l, q.unwrap_or(""))
                        });
                        for limit in [3, 500] {
                            let query = ListingQuery {
                                q: q.map(str::to_string),
                                category: category.map(Into::into),
                                side,
                                min_price: min,
                                max_price: max,
                                owner,
                                status,
                                sort: Some(sort),
                                limit: Some(limit),
                                ..ListingQuery::default()
                            };
                            assert_eq!(search_all(&m, &query).await, want, "{query:?}");
                        }
                    }
                }
            }
        }
    };
    check(all.clone()).await;
    // Listings change after they were first searched: withdrawn, sold, new.
    for i in (0..all.len()).step_by(7) {
        m.ok(Command::WithdrawListing {
            actor: all[i].owner,
            listing: all[i].id,
        })
        .await;
        all[i].status = ListingStatus::Withdrawn;
    }
    let sold = all
        .iter()
        .position(|l| l.owner == ann && l.side == Side::Sell && l.status == ListingStatus::Active)
        .expect("ann sells");
    let bid = m.bid(ben, all[sold].id, all[sold].price).await;
    m.deal(ann, bid.id).await;
    all[sold].status = ListingStatus::Sold;
    all.push(
        m.list(ben, new_listing(Side::Sell, "unicycle bike", "bikes", 120))
            .await,
    );
    check(all.clone()).await;
    // A refused command changes nothing.
    assert!(
        m.try_run(Command::WithdrawListing {
            actor: ann,
            listing: all[sold].id
        })
        .await
        .is_err()
    );
    check(all.clone()).await;
    // Another process reads them from the table (a simulation's store holds its file
    // exclusively: it commits what it holds back and closes first).
    let market_id = m.id;
    drop(m);
    drop(store);
    let fresh = db.open().await;
    let again = Mkt {
        store: fresh,
        id: market_id,
    };
    let query = ListingQuery {
        category: Some("bikes".into()),
        side: Some(Side::Sell),
        sort: Some(ListingSort::Cheapest),
        limit: Some(500),
        ..ListingQuery::default()
    };
    assert_eq!(
        search_all(&again, &query).await,
        expected(&all, ListingSort::Cheapest, "", |l| l.status
            == ListingStatus::Active
            && l.category == "bikes"
            && l.side == Side::Sell)
    );
}

/// A batched store does not journal each command (ARCHITECTURE.md, Performance): a command that
/// fails after it has written (here a trigger put in the file refuses a listing's event, after the
/// listing row is written) rolls back the whole open batch, and from then on the store answers
/// nothing — not even from memory, which holds the lost commands — until it is opened again,
/// with what its last commit held.
async fn a_batched_store_that_fails_after_writing_loses_its_batch_and_refuses_work(db: Db) {
    assert!(db.batch > 1, "a batched store");
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let ann = m.join("ann", 1_000).await;
    let bikes_for_sale = ListingQuery {
        category: Some("bikes".into()),
        side: Some(Side::Sell),
        ..Default::default()
    };
    drop(m);
    drop(store);
    db.exec("CREATE TRIGGER injected BEFORE INSERT ON events WHEN NEW.payload LIKE '%Poisoned%' BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        .await
        .unwrap();
    let store = db.open().await;
    let m = Mkt {
        store: store.clone(),
        id: 1,
    };
    m.sell(ann, 100).await;
    store.flush().await.unwrap();
    let bob = m.join("bob", 500).await;
    assert!(
        store.participant(m.id, bob).await.unwrap().is_some(),
        "bob, in the open batch"
    );
    let poisoned = new_listing(Side::Sell, "Poisoned bike", "bikes", 50);
    let failed = store
        .run(
            m.id,
            T0,
            Command::CreateListing {
                actor: ann,
                listing: poisoned,
            },
            None,
        )
        .await;
    assert!(
        failed.is_err(),
        "the trigger refused the listing's event: {failed:?}"
    );
    assert!(
        store.participant(m.id, bob).await.is_err(),
        "memory must not answer"
    );
    assert!(store.participant(m.id, ann).await.is_err());
    let page = store.search_listings(m.id, &bikes_for_sale).await;
    assert!(page.is_err(), "the shelves must not answer");
    assert!(
        store
            .run(
                m.id,
                T0,
                Command::RegisterParticipant {
                    name: "cy".into(),
                    mandate: Mandate::default(),
                    budget: 1
                },
                None
            )
            .await
            .is_err()
    );
    assert!(store.flush().await.is_err());
    drop(m);
    drop(store);
    let store = db.open().await;
    let m = Mkt {
        store: store.clone(),
        id: 1,
    };
    assert!(store.participant(m.id, ann).await.unwrap().is_some());
    assert_eq!(
        store.participant(m.id, bob).await.unwrap(),
        None,
        "bob was in the lost batch"
    );
    let titles: Vec<String> = store
        .search_listings(m.id, &bikes_for_sale)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|l| l.title)
        .collect();
    assert_eq!(titles, vec!["Road bike".to_string()]);
    m.verified().await;
}

/// A simulation's store keeps the file's rows in memory as their only writer: while it is open,
/// another connection can neither write nor read the file; once it closes, both can.
async fn a_batched_store_holds_its_file_exclusively(db: Db) {
    assert!(db.batch > 1, "a batched store");
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    m.join("ann", 1_000).await;
    let other = db.sqlite();
    other.busy_timeout(std::time::Duration::ZERO).unwrap();
    let busy = |r: rusqlite::Result<i64>| matches!(r, Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy);
    let count = "SELECT COUNT(*) FROM participants";
    assert!(
        busy(other.query_row(count, [], |r| r.get(0))),
        "a read while it is open"
    );
    assert!(
        busy(
            other
                .execute("UPDATE markets SET name = 'x'", [])
                .map(|n| n as i64)
        ),
        "a write while it is open"
    );
    drop(m);
    drop(store);
    assert_eq!(
        other.query_row(count, [], |r| r.get::<_, i64>(0)).unwrap(),
        1
    );
}

async fn listing_search_filters_orders_and_pages(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let ann = m.join("ann", 0).await;
    let ben = m.join("ben", 100_000).await;
    let colours = ["RED", "Blue", "green"];
    let things = [("Bike", " Bikes "), ("Novel", "books"), ("Phone", "PHONES")];
    let mut all = Vec::new();
    for i in 0..25usize {
        let (thing, category) = things[i % 3];
        let mut l = new_listing(
            if i % 4 == 0 { Side::Buy } else { Side::Sell },
            &format!("{} {thing} #{i}", colours[(i / 3) % 3]),
            category,
            1_000 + (i as i64 % 7) * 250,
        );
        l.description = match i {
            5 => "100% cotton seat cover".into(),
            6 => "1000 pages".into(),
            _ => "good condition".into(),
        };
        all.push(m.list(if i % 2 == 0 { ann } else { ben }, l).await);
    }
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(
        all[0].category, "bikes",
        "categories are trimmed and lower-cased"
    );
    assert_eq!(all[2].category, "phones");
    // One withdrawn, one sold.
    m.ok(Command::WithdrawListing {
        actor: ben,
        listing: all[7].id,
    })
    .await;
    all[7].status = ListingStatus::Withdrawn;
    let sold = &all[2]; // ann's sell listing
    assert_eq!(sold.side, Side::Sell);
    let bid = m.bid(ben, sold.id, sold.price).await;
    m.deal(ann, bid.id).await;
    all[2].status = ListingStatus::Sold;
    let active = |l: &Listing| l.status == ListingStatus::Active;

    let q = |f: &dyn Fn(&mut ListingQuery)| {
        let mut q = ListingQuery {
            limit: Some(10),
            ..ListingQuery::default()
        };
        f(&mut q);
        q
    };
    // Newest and cheapest over everything active, ten at a time (23 active: 10, 10, 3).
    for sort in [ListingSort::Newest, ListingSort::Cheapest] {
        for limit in [10, 7, 1, 23, 500] {
            let query = q(&|q| {
                q.sort = Some(sort);
                q.limit = Some(limit);
            });
            assert_eq!(
                search_all(&m, &query).await,
                expected(&all, sort, "", active),
                "{sort:?} by {limit}"
            );
        }
    }
    // Words: every word, anywhere in title, description or category, any case.
    type Keep<'a> = Box<dyn Fn(&Listing) -> bool + Send + Sync + 'a>;
    let cases: Vec<(&str, ListingQuery, Keep)> = vec![
        (
            "red bike",
            q(&|q| q.q = Some("red BIKE".into())),
            Box::new(move |l| active(l) && has_words(l, "red bike")),
        ),
        (
            "novel",
            q(&|q| q.q = Some("  novel  ".into())),
            Box::new(move |l| active(l) && has_words(l, "novel")),
        ),
        // Punctuation in a query separates words: `100%` is the word 100 (not 1000), `_ed`
        // the word ed (in no listing).
        (
            "100%",
            q(&|q| q.q = Some("100%".into())),
            Box::new(move |l| active(l) && l.description.starts_with("100%")),
        ),
        ("_ed", q(&|q| q.q = Some("_ed".into())), Box::new(|_| false)),
        (
            "category",
            q(&|q| q.category = Some(" Books ".into())),
            Box::new(move |l| active(l) && l.category == "books"),
        ),
        (
            "side",
            q(&|q| q.side = Some(Side::Buy)),
            Box::new(move |l| active(l) && l.side == Side::Buy),
        ),
        (
            "price range",
            q(&|q| {
                q.min_price = Some(1_500);
                q.max_price = Some(2_000);
            }),
            Box::new(move |l| active(l) && (1_500..=2_000).contains(&l.price)),
        ),
        (
            "owner",
            q(&|q| q.owner = Some(ann)),
            Box::new(move |l| active(l) && l.owner == ann),
        ),
        (
            "withdrawn",
            q(&|q| q.status = Some(ListingStatus::Withdrawn)),
            Box::new(move |l| l.status == ListingStatus::Withdrawn),
        ),
        (
            "sold",
            q(&|q| q.status = Some(ListingStatus::Sold)),
            Box::new(move |l| l.status == ListingStatus::Sold),
        ),
        (
            "combined",
            q(&|q| {
                q.q = Some("bike".into());
                q.side = Some(Side::Sell);
                q.max_price = Some(2_000);
                q.limit = Some(3);
            }),
            Box::new(move |l| {
                active(l) && has_words(l, "bike") && l.side == Side::Sell && l.price <= 2_000
            }),
        ),
    ];
    for (name, query, keep) in &cases {
        for sort in [
            ListingSort::Newest,
            ListingSort::Cheapest,
            ListingSort::Relevance,
        ] {
            let query = ListingQuery {
                sort: Some(sort),
                ..query.clone()
            };
            let want = expected(&all, sort, query.q.as_deref().unwrap_or(""), keep);
            assert_eq!(search_all(&m, &query).await, want, "{name} {sort:?}");
        }
    }
    assert_eq!(
        search_all(&m, &q(&|q| q.q = Some("100%".into()))).await,
        vec![all[5].id]
    );
    // The default page size holds everything here; a page size of 0 is clamped to 1.
    let page = store
        .search_listings(m.id, &ListingQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 23);
    assert_eq!(page.next_cursor, None);
    let page = store
        .search_listings(
            m.id,
            &ListingQuery {
                limit: Some(0),
                ..ListingQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next_cursor.is_some());
    // Keyset cursors are stable: a listing posted between pages does not shift them.
    for sort in [ListingSort::Newest, ListingSort::Cheapest] {
        let first = store
            .search_listings(
                m.id,
                &q(&|q| {
                    q.sort = Some(sort);
                    q.owner = Some(ben);
                }),
            )
            .await
            .unwrap();
        // Newer and cheaper than everything: before the cursor in both orders.
        let late = m
            .list(
                ben,
                new_listing(Side::Sell, "late bike", "bikes", 1 + all.len() as i64),
            )
            .await;
        let rest = store
            .search_listings(
                m.id,
                &q(&|q| {
                    q.sort = Some(sort);
                    q.owner = Some(ben);
                    q.cursor = first.next_cursor.clone();
                    q.limit = Some(500);
                }),
            )
            .await
            .unwrap();
        let mut got: Vec<i64> = first.items.iter().map(|l| l.id).collect();
        got.extend(rest.items.iter().map(|l| l.id));
        let want = expected(&all, sort, "", |l| active(l) && l.owner == ben);
        assert_eq!(got, want, "{sort:?}: the pages neither shift nor repeat");
        all.push(late);
    }
    assert!(
        store
            .search_listings(
                m.id,
                &ListingQuery {
                    cursor: Some("not a cursor".into()),
                    ..ListingQuery::default()
                }
            )
            .await
            .is_err(),
        "a bad cursor is an error, not a silent first page"
    );
    m.verified().await;
}

async fn thread_message_offer_and_counters(db: Db) {
    let store = db.open().await;
    let Fx {
        m,
        seller,
        buyer,
        listing,
        ..
    } = fx(&store, MarketRules::default()).await;
    assert_eq!(listing.first_offer_at, None);
    let out = m
        .ok(Command::OpenThread {
            actor: buyer,
            listing: listing.id,
            message: Some("Is it still available?".into()),
            offer: offer(4_000),
        })
        .await;
    let Outcome::Thread {
        thread,
        message: Some(msg),
        offer: Some(bid),
    } = out
    else {
        panic!("expected a thread with a message and an offer, got {out:?}")
    };
    assert_eq!(thread.listing_id, listing.id);
    assert_eq!((thread.owner, thread.counterparty), (seller, buyer));
    assert_eq!(thread.status, ThreadStatus::Open);
    assert_eq!(msg.body, "Is it still available?");
    assert_eq!((msg.author, msg.thread_id), (buyer, thread.id));
    assert_eq!(bid.state, OfferState::Live);
    assert_eq!(
        (bid.proposer, bid.buyer, bid.seller),
        (buyer, buyer, seller)
    );
    assert_eq!(bid.price, 4_000);
    assert_eq!(bid.expires_at, T0 + MarketRules::default().offer_ttl_ms);
    assert_eq!(m.balance(buyer).await, bal(6_000, 0, 4_000));

    let detail = store.thread(m.id, thread.id).await.unwrap().unwrap();
    assert_eq!(detail.thread.offers_made, 1);
    assert_eq!(detail.thread.last_offer_by, Some(buyer));
    assert_eq!(detail.messages, vec![msg.clone()]);
    assert_eq!(detail.offers, vec![bid.clone()]);
    assert_eq!(
        store
            .listing(m.id, listing.id)
            .await
            .unwrap()
            .unwrap()
            .first_offer_at,
        Some(T0)
    );

    // The seller counters: the buyer's bid is countered, and a seller's offer commits nothing.
    let ask = m.offer(seller, thread.id, 4_800).await;
    assert_eq!(m.offer_state(bid.id).await, OfferState::Countered);
    assert_eq!(
        (ask.proposer, ask.buyer, ask.seller),
        (seller, buyer, seller)
    );
    assert_eq!(m.balance(buyer).await, bal(10_000, 0, 0));
    // The buyer counters back, then raises its own offer (superseded).
    let counter = m.offer(buyer, thread.id, 4_500).await;
    assert_eq!(m.offer_state(ask.id).await, OfferState::Countered);
    let raised = m.offer(buyer, thread.id, 4_600).await;
    assert_eq!(m.offer_state(counter.id).await, OfferState::Superseded);
    assert_eq!(m.offer_state(raised.id).await, OfferState::Live);
    assert_eq!(m.balance(buyer).await, bal(5_400, 0, 4_600));
    let reply = match m
        .ok(Command::PostMessage {
            actor: seller,
            thread: thread.id,
            body: "Let me think".into(),
        })
        .await
    {
        Outcome::Message(x) => x,
        o => panic!("{o:?}"),
    };
    assert_eq!(reply.author, seller);

    // Opening again reuses the thread.
    let (again, none) = m.open(buyer, listing.id, Some("ping"), None).await;
    assert_eq!(again.id, thread.id);
    assert!(none.is_none());
    let detail = store.thread(m.id, thread.id).await.unwrap().unwrap();
    assert_eq!(detail.thread.offers_made, 4);
    assert_eq!(detail.thread.last_offer_by, Some(buyer));
    assert_eq!(detail.messages.len(), 3);
    assert_eq!(
        detail.offers.iter().map(|o| o.state).collect::<Vec<_>>(),
        vec![
            OfferState::Countered,
            OfferState::Countered,
            OfferState::Superseded,
            OfferState::Live
        ]
    );
    let mine = store.threads(m.id, Some(buyer), None, 0, 10).await.unwrap();
    assert_eq!(
        mine.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![thread.id]
    );
    let theirs = store
        .threads(m.id, Some(seller), None, 0, 10)
        .await
        .unwrap();
    assert_eq!(theirs.len(), 1);
    let on_listing = store
        .threads(m.id, None, Some(listing.id), 0, 10)
        .await
        .unwrap();
    assert_eq!(on_listing.len(), 1);
    assert!(
        store
            .threads(m.id, None, Some(listing.id), thread.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.offer(m.id, 9_999).await.unwrap(), None);
    assert_eq!(store.thread(m.id, 9_999).await.unwrap(), None);
    m.verified().await;
}

async fn acceptance_makes_one_deal_and_voids_the_rest(db: Db) {
    let store = db.open().await;
    let Fx {
        m,
        seller,
        buyer,
        rival,
        listing,
    } = fx(&store, MarketRules::default()).await;
    let third = m.join("third", 10_000).await;
    let a = m.bid(buyer, listing.id, 4_000).await;
    let b = m.bid(rival, listing.id, 4_200).await;
    let c = m.bid(third, listing.id, 3_000).await;
    let c_ask = m.offer(seller, c.thread_id, 4_500).await;
    let transfers_before = store.verify(m.id).await.unwrap().transfers;

    let deal = m.deal(seller, b.id).await;
    assert_eq!(deal.listing_id, listing.id);
    assert_eq!(deal.thread_id, b.thread_id);
    assert_eq!(deal.offer_id, b.id);
    assert_eq!(
        (deal.buyer, deal.seller, deal.price),
        (rival, seller, 4_200)
    );
    assert_eq!(deal.status, haggle_core::DealStatus::Agreed);
    assert_eq!(deal.snapshot, listing.snapshot());
    assert_eq!(store.deal(m.id, deal.id).await.unwrap(), Some(deal.clone()));
    assert_eq!(
        store.deals(m.id, Some(rival), 0, 10).await.unwrap(),
        vec![deal.clone()]
    );
    assert_eq!(
        store.deals(m.id, Some(seller), 0, 10).await.unwrap().len(),
        1
    );
    assert!(
        store
            .deals(m.id, Some(buyer), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(m.listing_status(listing.id).await, ListingStatus::Sold);
    assert_eq!(m.offer_state(b.id).await, OfferState::Accepted);
    assert_eq!(m.offer_state(a.id).await, OfferState::Void);
    assert_eq!(m.offer_state(c.id).await, OfferState::Countered);
    assert_eq!(m.offer_state(c_ask.id).await, OfferState::Void);
    assert_eq!(m.thread_status(b.thread_id).await, ThreadStatus::Agreed);
    assert_eq!(m.thread_status(a.thread_id).await, ThreadStatus::Void);
    assert_eq!(m.thread_status(c.thread_id).await, ThreadStatus::Void);
    // The price is held in escrow; everyone else's commitments are released.
    assert_eq!(m.balance(rival).await, bal(5_800, 4_200, 0));
    assert_eq!(m.balance(buyer).await, bal(10_000, 0, 0));
    assert_eq!(m.balance(third).await, bal(10_000, 0, 0));
    assert_eq!(m.balance(seller).await, bal(0, 0, 0));
    let v = store.verify(m.id).await.unwrap();
    assert_eq!(v.transfers, transfers_before + 1, "one hold");

    let kinds: Vec<String> = m
        .events(Viewer::All)
        .await
        .into_iter()
        .rev()
        .take_while(|e| e.kind() != "offer_made")
        .map(|e| e.kind().to_string())
        .collect();
    for kind in [
        "offer_accepted",
        "deal_created",
        "listing_sold",
        "transfer_booked",
    ] {
        assert_eq!(kinds.iter().filter(|k| *k == kind).count(), 1, "{kind}");
    }
    assert_eq!(kinds.iter().filter(|k| *k == "offer_voided").count(), 2);
    assert_eq!(kinds.iter().filter(|k| *k == "thread_closed").count(), 2);
    // The voided parties are notified.
    let voided_for_buyer = m
        .events(Viewer::Participant(buyer))
        .await
        .into_iter()
        .any(|e| matches!(&e.body, EventBody::OfferVoided(p) if p.offer_id == a.id));
    assert!(voided_for_buyer);
    m.verified().await;
}

async fn withdraw_and_walk_away_release_commitments(db: Db) {
    let store = db.open().await;
    let Fx {
        m,
        seller,
        buyer,
        rival,
        listing,
    } = fx(&store, MarketRules::default()).await;
    let other = m.sell(seller, 3_000).await;
    let a = m.bid(buyer, listing.id, 4_000).await;
    let b = m.bid(rival, listing.id, 4_500).await;
    let c = m.bid(buyer, other.id, 2_000).await;
    assert_eq!(m.balance(buyer).await, bal(4_000, 0, 6_000));

    // The buyer walks away from the second listing: its bid is voided, the thread broken.
    m.ok(Command::WalkAway {
        actor: buyer,
        thread: c.thread_id,
    })
    .await;
    assert_eq!(m.offer_state(c.id).await, OfferState::Void);
    assert_eq!(m.thread_status(c.thread_id).await, ThreadStatus::Broken);
    assert_eq!(m.balance(buyer).await, bal(6_000, 0, 4_000));
    // The rival withdraws its bid; the thread stays open.
    m.ok(Command::WithdrawOffer {
        actor: rival,
        offer: b.id,
    })
    .await;
    assert_eq!(m.offer_state(b.id).await, OfferState::Withdrawn);
    assert_eq!(m.thread_status(b.thread_id).await, ThreadStatus::Open);
    assert_eq!(m.balance(rival).await, bal(10_000, 0, 0));
    // The seller withdraws the listing: every thread on it becomes void.
    m.ok(Command::WithdrawListing {
        actor: seller,
        listing: listing.id,
    })
    .await;
    assert_eq!(m.listing_status(listing.id).await, ListingStatus::Withdrawn);
    assert_eq!(m.offer_state(a.id).await, OfferState::Void);
    assert_eq!(m.thread_status(a.thread_id).await, ThreadStatus::Void);
    assert_eq!(m.thread_status(b.thread_id).await, ThreadStatus::Void);
    assert_eq!(m.balance(buyer).await, bal(10_000, 0, 0));
    m.refuses(
        ErrorCode::InvalidTransition,
        Command::WithdrawListing {
            actor: seller,
            listing: listing.id,
        },
        &[seller, buyer, rival],
    )
    .await;
    m.refuses(
        ErrorCode::Forbidden,
        Command::WithdrawListing {
            actor: buyer,
            listing: other.id,
        },
        &[seller, buyer, rival],
    )
    .await;
    m.verified().await;
}

async fn simulated_clock_expires_offers_and_threads(db: Db) {
    let store = db.open().await;
    let rules = MarketRules {
        offer_ttl_ms: HOUR_MS,
        thread_time_limit_ms: Some(3 * HOUR_MS),
        ..MarketRules::default()
    };
    let m = market_with(&store, ClockMode::Simulated, rules).await;
    let seller = m.join("seller", 0).await;
    let buyer = m.join("buyer", 10_000).await;
    let listing = m.sell(seller, 5_000).await;
    // The real time passed in is ignored by a simulated market.
    let bid = match m
        .try_run_at(
            T0 + 7 * HOUR_MS,
            Command::OpenThread {
                actor: buyer,
                listing: listing.id,
                message: None,
                offer: offer(4_000),
            },
        )
        .await
        .unwrap()
    {
        Outcome::Thread { offer: Some(o), .. } => o,
        o => panic!("{o:?}"),
    };
    assert_eq!(bid.created_at, T0);
    assert_eq!(bid.expires_at, T0 + HOUR_MS);
    let thread = store
        .thread(m.id, bid.thread_id)
        .await
        .unwrap()
        .unwrap()
        .thread;
    assert_eq!(thread.deadline, Some(T0 + 3 * HOUR_MS));

    let now = m.ok(Command::AdvanceClock { by_ms: HOUR_MS / 2 }).await;
    assert_eq!(
        now,
        Outcome::Clock {
            now: T0 + HOUR_MS / 2
        }
    );
    assert_eq!(
        store.market(m.id).await.unwrap().unwrap().sim_now,
        T0 + HOUR_MS / 2
    );
    assert_eq!(m.offer_state(bid.id).await, OfferState::Live);
    assert_eq!(m.balance(buyer).await, bal(6_000, 0, 4_000));
    m.ok(Command::AdvanceClock { by_ms: HOUR_MS / 2 }).await;
    assert_eq!(m.offer_state(bid.id).await, OfferState::Expired);
    assert_eq!(m.balance(buyer).await, bal(10_000, 0, 0));
    assert_eq!(m.thread_status(bid.thread_id).await, ThreadStatus::Open);
    // A sweep at the same time changes nothing.
    let before = m.state(&[buyer]).await;
    let ran = store.run(m.id, T0, Command::Sweep, None).await.unwrap();
    assert!(
        matches!(ran, Ran::Fresh { result: Ok(Outcome::Clock { now }), .. } if now == T0 + HOUR_MS)
    );
    assert_eq!(m.state(&[buyer]).await.balances, before.balances);
    // Past the thread's deadline the thread times out.
    m.ok(Command::AdvanceClock { by_ms: 2 * HOUR_MS }).await;
    assert_eq!(m.thread_status(bid.thread_id).await, ThreadStatus::TimedOut);
    let kinds: Vec<String> = m
        .events(Viewer::All)
        .await
        .into_iter()
        .map(|e| e.kind().to_string())
        .collect();
    assert!(kinds.contains(&"offer_expired".to_string()));
    assert!(kinds.contains(&"clock_advanced".to_string()));
    m.refuses(
        ErrorCode::InvalidRequest,
        Command::AdvanceClock { by_ms: 0 },
        &[buyer],
    )
    .await;
    // Only a simulated clock can be advanced.
    let real = market(&store, MarketRules::default()).await;
    real.refuses(
        ErrorCode::InvalidRequest,
        Command::AdvanceClock { by_ms: 1 },
        &[],
    )
    .await;
    m.verified().await;
    real.verified().await;
}

async fn refuses_insufficient_funds(db: Db) {
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let (m, buyer) = (&f.m, f.buyer);
    let second = m.sell(f.seller, 5_000).await;
    m.refuses(
        ErrorCode::InsufficientFunds,
        Command::OpenThread {
            actor: buyer,
            listing: f.listing.id,
            message: Some("all in".into()),
            offer: offer(10_001),
        },
        &f.all(),
    )
    .await;
    // Live offers commit funds: 6 000 here leaves 4 000 for the second listing.
    let a = m.bid(buyer, f.listing.id, 6_000).await;
    m.refuses(
        ErrorCode::InsufficientFunds,
        Command::OpenThread {
            actor: buyer,
            listing: second.id,
            message: None,
            offer: offer(4_001),
        },
        &f.all(),
    )
    .await;
    // Raising one's own offer only needs the difference.
    m.offer(buyer, a.thread_id, 10_000).await;
    let (t, _) = m.open(buyer, second.id, Some("hello"), None).await;
    m.refuses(
        ErrorCode::InsufficientFunds,
        Command::MakeOffer {
            actor: buyer,
            thread: t.id,
            offer: NewOffer {
                price: 1,
                expires_in_ms: None,
            },
        },
        &f.all(),
    )
    .await;
    // A wanted ad's owner is the buyer: its counter-offers need funds too.
    let poor = m.join("poor", 100).await;
    let wanted = m
        .list(poor, new_listing(Side::Buy, "Wanted: bike", "bikes", 5_000))
        .await;
    let ask = m.bid(f.seller, wanted.id, 4_000).await;
    assert_eq!((ask.buyer, ask.seller), (poor, f.seller));
    m.refuses(
        ErrorCode::InsufficientFunds,
        Command::MakeOffer {
            actor: poor,
            thread: ask.thread_id,
            offer: NewOffer {
                price: 3_000,
                expires_in_ms: None,
            },
        },
        &[f.seller, poor],
    )
    .await;
    // Accepting the seller's offer checks the buyer's funds at acceptance.
    m.refuses(
        ErrorCode::InsufficientFunds,
        Command::AcceptOffer {
            actor: poor,
            offer: ask.id,
        },
        &[f.seller, poor],
    )
    .await;
    assert_eq!(m.balance(buyer).await, bal(0, 0, 10_000));
    m.verified().await;
}

async fn refuses_mandate_exceeded(db: Db) {
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let m = &f.m;
    let capped = m
        .join_with(
            "capped",
            100_000,
            Mandate {
                per_deal_cap: Some(3_000),
                spend_cap: Some(5_000),
                ..Mandate::default()
            },
        )
        .await;
    let books_only = m
        .join_with(
            "books only",
            100_000,
            Mandate {
                categories: Some(vec!["books".into()]),
                ..Mandate::default()
            },
        )
        .await;
    let who = [f.seller, capped, books_only];
    m.refuses(
        ErrorCode::MandateExceeded,
        Command::OpenThread {
            actor: capped,
            listing: f.listing.id,
            message: None,
            offer: offer(3_001),
        },
        &who,
    )
    .await;
    m.refuses(
        ErrorCode::MandateExceeded,
        Command::OpenThread {
            actor: books_only,
            listing: f.listing.id,
            message: None,
            offer: offer(100),
        },
        &who,
    )
    .await;
    // The spend cap counts live offers: 3 000 live leaves 2 000 under the cap.
    m.bid(capped, f.listing.id, 3_000).await;
    let second = m.sell(f.seller, 2_500).await;
    m.refuses(
        ErrorCode::MandateExceeded,
        Command::OpenThread {
            actor: capped,
            listing: second.id,
            message: None,
            offer: offer(2_001),
        },
        &who,
    )
    .await;
    // A seller's offer the mandate does not allow cannot be accepted either.
    let (t, _) = m.open(books_only, second.id, Some("hi"), None).await;
    let ask = m.offer(f.seller, t.id, 2_000).await;
    m.refuses(
        ErrorCode::MandateExceeded,
        Command::AcceptOffer {
            actor: books_only,
            offer: ask.id,
        },
        &who,
    )
    .await;
    // A frozen agent can read but not act.
    m.ok(Command::SetMandate {
        author: haggle_core::MandateAuthor::Operator,
        participant: f.buyer,
        mandate: Mandate {
            frozen: true,
            ..Mandate::default()
        },
    })
    .await;
    m.refuses(
        ErrorCode::AgentFrozen,
        Command::OpenThread {
            actor: f.buyer,
            listing: second.id,
            message: Some("hi".into()),
            offer: None,
        },
        &who,
    )
    .await;
    m.verified().await;
}

/// Seller mandates (spec: trust.md): a sale below the minimum is refused, or (`ask`) the deal
/// waits for the seller's principal, and whose approval it awaits survives the round trip.
async fn seller_mandates_refuse_or_ask(db: Db) {
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let m = &f.m;
    let floor = |below_min| Mandate {
        min_sale: Some(1_000),
        below_min,
        ..Mandate::default()
    };
    let strict = m.join_with("strict", 0, floor(BelowMin::Refuse)).await;
    let asking = m.join_with("asking", 0, floor(BelowMin::Ask)).await;
    let who = [strict, asking, f.buyer];
    m.refuses(
        ErrorCode::BelowSellerMinimum,
        Command::CreateListing {
            actor: strict,
            listing: new_listing(Side::Sell, "Drill", "tools", 30),
        },
        &who,
    )
    .await;
    let l = m.sell(asking, 30).await;
    let bid = m.bid(f.buyer, l.id, 30).await;
    let d = m.deal(asking, bid.id).await;
    let stored = m.store.deal(m.id, d.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.approval_from),
        (DealStatus::AwaitingApproval, Approver::Seller)
    );
    m.refuses(
        ErrorCode::Forbidden,
        Command::DecideApproval {
            principal: f.buyer,
            deal: d.id,
            approve: true,
        },
        &who,
    )
    .await;
    m.ok(Command::DecideApproval {
        principal: asking,
        deal: d.id,
        approve: true,
    })
    .await;
    let stored = m.store.deal(m.id, d.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.approval_from),
        (DealStatus::Agreed, Approver::Buyer)
    );
    m.verified().await;
}

async fn refuses_offer_not_live(db: Db) {
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let m = &f.m;
    let bid = m.bid(f.buyer, f.listing.id, 4_000).await;
    // The buyer raises its bid a moment before the seller accepts the old one.
    let raised = m.offer(f.buyer, bid.thread_id, 4_200).await;
    m.refuses(
        ErrorCode::OfferNotLive,
        Command::AcceptOffer {
            actor: f.seller,
            offer: bid.id,
        },
        &f.all(),
    )
    .await;
    m.ok(Command::RejectOffer {
        actor: f.seller,
        offer: raised.id,
    })
    .await;
    assert_eq!(m.offer_state(raised.id).await, OfferState::Rejected);
    for cmd in [
        Command::AcceptOffer {
            actor: f.seller,
            offer: raised.id,
        },
        Command::RejectOffer {
            actor: f.seller,
            offer: raised.id,
        },
        Command::WithdrawOffer {
            actor: f.buyer,
            offer: raised.id,
        },
    ] {
        m.refuses(ErrorCode::OfferNotLive, cmd, &f.all()).await;
    }
    m.refuses(
        ErrorCode::NotFound,
        Command::AcceptOffer {
            actor: f.seller,
            offer: 9_999,
        },
        &f.all(),
    )
    .await;
    m.verified().await;
}

async fn refuses_not_your_offer(db: Db) {
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let m = &f.m;
    let bid = m.bid(f.buyer, f.listing.id, 4_000).await;
    for cmd in [
        Command::AcceptOffer {
            actor: f.buyer,
            offer: bid.id,
        },
        Command::RejectOffer {
            actor: f.buyer,
            offer: bid.id,
        },
        Command::WithdrawOffer {
            actor: f.seller,
            offer: bid.id,
        },
    ] {
        m.refuses(ErrorCode::NotYourOffer, cmd, &f.all()).await;
    }
    // A third party is not a party at all.
    m.refuses(
        ErrorCode::Forbidden,
        Command::AcceptOffer {
            actor: f.rival,
            offer: bid.id,
        },
        &f.all(),
    )
    .await;
    assert_eq!(m.offer_state(bid.id).await, OfferState::Live);
    m.verified().await;
}

async fn refuses_too_many_offers(db: Db) {
    let store = db.open().await;
    let f = fx(
        &store,
        MarketRules {
            max_offers_per_thread: Some(2),
            ..MarketRules::default()
        },
    )
    .await;
    let m = &f.m;
    let bid = m.bid(f.buyer, f.listing.id, 4_000).await;
    let ask = m.offer(f.seller, bid.thread_id, 4_800).await;
    for (actor, price) in [(f.buyer, 4_400), (f.seller, 4_700)] {
        m.refuses(
            ErrorCode::TooManyOffers,
            Command::MakeOffer {
                actor,
                thread: bid.thread_id,
                offer: NewOffer {
                    price,
                    expires_in_ms: None,
                },
            },
            &f.all(),
        )
        .await;
    }
    // The last offer can still be accepted.
    let deal = m.deal(f.buyer, ask.id).await;
    assert_eq!(deal.price, 4_800);
    m.verified().await;
}

async fn refuses_thread_closed(db: Db) {
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let m = &f.m;
    let bid = m.bid(f.buyer, f.listing.id, 4_000).await;
    m.ok(Command::WalkAway {
        actor: f.seller,
        thread: bid.thread_id,
    })
    .await;
    assert_eq!(m.thread_status(bid.thread_id).await, ThreadStatus::Broken);
    assert_eq!(m.offer_state(bid.id).await, OfferState::Void);
    for cmd in [
        Command::PostMessage {
            actor: f.buyer,
            thread: bid.thread_id,
            body: "wait".into(),
        },
        Command::MakeOffer {
            actor: f.seller,
            thread: bid.thread_id,
            offer: NewOffer {
                price: 4_500,
                expires_in_ms: None,
            },
        },
        Command::OpenThread {
            actor: f.buyer,
            listing: f.listing.id,
            message: Some("again?".into()),
            offer: offer(4_500),
        },
        Command::WalkAway {
            actor: f.buyer,
            thread: bid.thread_id,
        },
    ] {
        m.refuses(ErrorCode::ThreadClosed, cmd, &f.all()).await;
    }
    // Others can still negotiate on the listing.
    let other = m.bid(f.rival, f.listing.id, 4_100).await;
    m.deal(f.seller, other.id).await;
    m.refuses(
        ErrorCode::ThreadClosed,
        Command::PostMessage {
            actor: f.rival,
            thread: other.thread_id,
            body: "thanks".into(),
        },
        &f.all(),
    )
    .await;
    m.verified().await;
}

async fn refuses_listing_unavailable(db: Db) {
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let m = &f.m;
    let late = m.join("late", 10_000).await;
    let who = [f.seller, f.buyer, f.rival, late];
    let rival_bid = m.bid(f.rival, f.listing.id, 3_000).await;
    let bid = m.bid(f.buyer, f.listing.id, 4_000).await;
    m.deal(f.seller, bid.id).await;
    m.refuses(
        ErrorCode::ListingUnavailable,
        Command::AcceptOffer {
            actor: f.seller,
            offer: rival_bid.id,
        },
        &who,
    )
    .await;
    m.refuses(
        ErrorCode::ListingUnavailable,
        Command::OpenThread {
            actor: late,
            listing: f.listing.id,
            message: Some("sold already?".into()),
            offer: None,
        },
        &who,
    )
    .await;
    let withdrawn = m.sell(f.seller, 1_000).await;
    m.ok(Command::WithdrawListing {
        actor: f.seller,
        listing: withdrawn.id,
    })
    .await;
    m.refuses(
        ErrorCode::ListingUnavailable,
        Command::OpenThread {
            actor: late,
            listing: withdrawn.id,
            message: None,
            offer: offer(900),
        },
        &who,
    )
    .await;
    m.verified().await;
}

async fn refuses_offer_expired(db: Db) {
    let store = db.open().await;
    // A simulated clock moved past the offer's expiry (the advance also sweeps).
    let m = market_with(
        &store,
        ClockMode::Simulated,
        MarketRules {
            offer_ttl_ms: HOUR_MS,
            ..MarketRules::default()
        },
    )
    .await;
    let seller = m.join("seller", 0).await;
    let buyer = m.join("buyer", 10_000).await;
    let listing = m.sell(seller, 5_000).await;
    let (t, _) = m
        .open(buyer, listing.id, Some("still for sale?"), None)
        .await;
    let ask = m.offer(seller, t.id, 4_500).await;
    m.ok(Command::AdvanceClock { by_ms: HOUR_MS }).await;
    assert_eq!(
        m.offer_state(ask.id).await,
        OfferState::Expired,
        "the advance swept it"
    );
    m.refuses(
        ErrorCode::OfferExpired,
        Command::AcceptOffer {
            actor: buyer,
            offer: ask.id,
        },
        &[seller, buyer],
    )
    .await;
    assert_eq!(m.balance(buyer).await, bal(10_000, 0, 0));
    assert_eq!(m.listing_status(listing.id).await, ListingStatus::Active);

    // A real clock past the expiry, before any sweep ran.
    let f = fx(&store, MarketRules::default()).await;
    let (thread, _) = f.m.open(f.buyer, f.listing.id, Some("hi"), None).await;
    let short = match f
        .m
        .ok(Command::MakeOffer {
            actor: f.buyer,
            thread: thread.id,
            offer: NewOffer {
                price: 4_000,
                expires_in_ms: Some(HOUR_MS),
            },
        })
        .await
    {
        Outcome::Offer(o) => o,
        o => panic!("{o:?}"),
    };
    assert_eq!(short.expires_at, T0 + HOUR_MS);
    f.m.refuses_at(
        T0 + HOUR_MS,
        ErrorCode::OfferExpired,
        Command::AcceptOffer {
            actor: f.seller,
            offer: short.id,
        },
        &f.all(),
    )
    .await;
    // Still acceptable a moment before.
    let deal = match f
        .m
        .try_run_at(
            T0 + HOUR_MS - 1,
            Command::AcceptOffer {
                actor: f.seller,
                offer: short.id,
            },
        )
        .await
        .unwrap()
    {
        Outcome::Deal(d) => d,
        o => panic!("{o:?}"),
    };
    assert_eq!(deal.created_at, T0 + HOUR_MS - 1);
    m.verified().await;
    f.m.verified().await;
}

fn render(r: &Result<Outcome, DomainError>) -> StoredResponse {
    match r {
        Ok(o) => StoredResponse {
            status: 201,
            body: format!("{o:?}"),
        },
        Err(e) => StoredResponse {
            status: e.code.http_status(),
            body: format!(r#"{{"error":{{"code":"{}"}}}}"#, e.code),
        },
    }
}

fn server_error(_: &Result<Outcome, DomainError>) -> StoredResponse {
    StoredResponse {
        status: 500,
        body: "oops".into(),
    }
}

async fn idempotency_replays_conflicts_and_stores_refusals(db: Db) {
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let m = &f.m;
    let key = |scope: &'static str, key: &'static str, hash: &'static str| Idempotency {
        scope,
        key,
        request_hash: hash,
        render: &render,
    };
    let open = |price| Command::OpenThread {
        actor: f.buyer,
        listing: f.listing.id,
        message: Some("hi".into()),
        offer: offer(price),
    };
    let first = store
        .run(m.id, T0, open(4_000), Some(key("agent-a", "k1", "h1")))
        .await
        .unwrap();
    let Ran::Fresh {
        result: Ok(out),
        events,
    } = first
    else {
        panic!("{first:?}")
    };
    assert!(!events.is_empty());
    let stored = render(&Ok(out.clone()));
    assert_eq!(
        store.stored_response("agent-a", "k1").await.unwrap(),
        Some(("h1".into(), stored.clone()))
    );
    // The same key and request: the first response, and nothing runs again.
    let before = m.state(&f.all()).await;
    for _ in 0..2 {
        let again = store
            .run(m.id, T0, open(4_000), Some(key("agent-a", "k1", "h1")))
            .await
            .unwrap();
        match again {
            Ran::Replayed(resp) => assert_eq!(resp, stored),
            other => panic!("expected a replay, got {other:?}"),
        }
    }
    assert_eq!(m.state(&f.all()).await, before);
    // The same key with another request: a conflict, and nothing runs.
    let other = store
        .run(m.id, T0, open(4_500), Some(key("agent-a", "k1", "h2")))
        .await
        .unwrap();
    assert!(matches!(other, Ran::Conflict), "{other:?}");
    assert_eq!(m.state(&f.all()).await, before);
    // Keys are per caller: another scope's "k1" is a new request.
    let rival = Command::OpenThread {
        actor: f.rival,
        listing: f.listing.id,
        message: None,
        offer: offer(3_000),
    };
    let fresh = store
        .run(m.id, T0, rival, Some(key("agent-b", "k1", "h1")))
        .await
        .unwrap();
    assert!(
        matches!(fresh, Ran::Fresh { result: Ok(_), .. }),
        "{fresh:?}"
    );

    // A refusal is stored and replayed, even after the cause went away.
    let broke = m.join("broke", 1_000).await;
    let too_much = Command::OpenThread {
        actor: broke,
        listing: f.listing.id,
        message: None,
        offer: offer(2_000),
    };
    let before = m.state(&[broke]).await;
    let refused = store
        .run(m.id, T0, too_much.clone(), Some(key("agent-c", "k2", "h3")))
        .await
        .unwrap();
    let Ran::Fresh {
        result: Err(e),
        events,
    } = refused
    else {
        panic!("{refused:?}")
    };
    assert_eq!(e.code, ErrorCode::InsufficientFunds);
    assert!(events.is_empty());
    assert_eq!(m.state(&[broke]).await, before, "a refusal changes nothing");
    let refusal = render(&Err(e));
    assert_eq!(refusal.status, 422);
    m.ok(Command::Fund {
        participant: broke,
        amount: 5_000,
    })
    .await;
    let before = m.state(&[broke]).await;
    let replay = store
        .run(m.id, T0, too_much.clone(), Some(key("agent-c", "k2", "h3")))
        .await
        .unwrap();
    match replay {
        Ran::Replayed(resp) => assert_eq!(resp, refusal),
        other => panic!("expected the stored refusal, got {other:?}"),
    }
    assert_eq!(m.state(&[broke]).await, before, "the replay ran nothing");

    // A 5xx is never stored: the retry runs.
    let five = store
        .run(
            m.id,
            T0,
            too_much.clone(),
            Some(Idempotency {
                scope: "agent-c",
                key: "k3",
                request_hash: "h4",
                render: &server_error,
            }),
        )
        .await
        .unwrap();
    assert!(matches!(five, Ran::Fresh { result: Ok(_), .. }), "{five:?}");
    assert_eq!(store.stored_response("agent-c", "k3").await.unwrap(), None);

    // The adapter-level store/lookup pair.
    let resp = StoredResponse {
        status: 200,
        body: "{}".into(),
    };
    assert!(
        store
            .store_response("s", "k", "h", &resp, T0)
            .await
            .unwrap()
    );
    assert!(
        !store
            .store_response("s", "k", "other", &resp, T0)
            .await
            .unwrap()
    );
    assert_eq!(
        store.stored_response("s", "k").await.unwrap(),
        Some(("h".into(), resp))
    );
    assert_eq!(store.stored_response("s", "nope").await.unwrap(), None);

    // The same key sent ten times at once runs once; the others replay its response.
    let late = m.join("late", 10_000).await;
    let before = m.state(&[late]).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, barrier, mid, listing) =
                (store.clone(), barrier.clone(), m.id, f.listing.id);
            tokio::spawn(async move {
                barrier.wait().await;
                let cmd = Command::OpenThread {
                    actor: late,
                    listing,
                    message: None,
                    offer: offer(1_000),
                };
                let idem = Idempotency {
                    scope: "agent-late",
                    key: "same",
                    request_hash: "h",
                    render: &render,
                };
                store.run(mid, T0, cmd, Some(idem)).await.unwrap()
            })
        })
        .collect();
    let (mut fresh, mut replayed) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ran::Fresh { result: Ok(_), .. } => fresh += 1,
            Ran::Replayed(r) => {
                assert_eq!(r.status, 201);
                replayed += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((fresh, replayed), (1, 9));
    let after = m.state(&[late]).await;
    assert_eq!(
        after.threads,
        before.threads + 1,
        "exactly one thread opened"
    );
    assert_eq!(after.balances, vec![bal(9_000, 0, 1_000)]);
    m.verified().await;
}

async fn events_visibility(db: Db) {
    let store = db.open().await;
    let Fx {
        m,
        seller,
        buyer,
        rival,
        listing,
    } = fx(&store, MarketRules::default()).await;
    let a = m.bid(buyer, listing.id, 4_000).await;
    let b = m.bid(rival, listing.id, 3_500).await;
    m.offer(seller, a.thread_id, 4_800).await;
    m.ok(Command::SetMandate {
        author: haggle_core::MandateAuthor::Operator,
        participant: rival,
        mandate: Mandate {
            spend_cap: Some(9_000),
            ..Mandate::default()
        },
    })
    .await;

    let all = m.events(Viewer::All).await;
    assert_eq!(all.len(), store.verify(m.id).await.unwrap().events);
    assert_eq!(all.first().map(|e| e.kind()), Some("market_created"));
    assert!(
        all.iter()
            .any(|e| matches!(e.visibility, Visibility::Parties(_)))
    );
    for p in [seller, buyer, rival] {
        let seen = m.events(Viewer::Participant(p)).await;
        let want: Vec<Event> = all
            .iter()
            .filter(|e| e.visibility.includes(p))
            .cloned()
            .collect();
        assert_eq!(seen, want, "participant {p} sees public events and its own");
        // Read in small pages (as agents catch up), both views give the same log in order.
        for viewer in [Viewer::Participant(p), Viewer::Own(p)] {
            let whole = m.events(viewer).await;
            let (mut paged, mut after) = (Vec::new(), 0);
            loop {
                let page = store.events(m.id, viewer, after, 2).await.unwrap();
                assert!(page.len() <= 2);
                let Some(last) = page.last() else { break };
                after = last.seq;
                paged.extend(page);
            }
            assert_eq!(paged, whole, "{viewer:?} in pages of two");
        }
        let own = m.events(Viewer::Own(p)).await;
        assert!(
            own.iter().all(|e| seen.contains(e)),
            "own events are among those seen"
        );
        assert!(
            want.iter()
                .filter(|e| matches!(&e.visibility, Visibility::Parties(ps) if ps.contains(&p)))
                .all(|e| own.contains(e)),
            "every private event naming {p} is among its own"
        );
    }
    let seen_by_buyer = m.events(Viewer::Participant(buyer)).await;
    let thread_of = |e: &Event| e.body.thread_id();
    assert!(
        seen_by_buyer
            .iter()
            .any(|e| thread_of(e) == Some(a.thread_id))
    );
    assert!(
        !seen_by_buyer
            .iter()
            .any(|e| thread_of(e) == Some(b.thread_id)),
        "the buyer sees nothing of the rival's private thread"
    );
    assert!(
        all.iter().any(|e| thread_of(e) == Some(b.thread_id)),
        "operators see every thread"
    );
    assert!(
        !seen_by_buyer.iter().any(|e| e.kind() == "mandate_changed"),
        "another participant's mandate is private"
    );
    assert!(
        seen_by_buyer
            .iter()
            .any(|e| e.kind() == "listing_posted" && e.visibility == Visibility::Public)
    );
    let funded = |seen: &[Event], p: i64| {
        seen.iter()
            .any(|e| matches!(&e.body, EventBody::TransferBooked(t) if t.credit == Account::Available(p)))
    };
    assert!(funded(&seen_by_buyer, buyer));
    assert!(!funded(&seen_by_buyer, rival));
    let public = m.events(Viewer::Public).await;
    assert_eq!(
        public,
        all.iter()
            .filter(|e| e.visibility == Visibility::Public)
            .cloned()
            .collect::<Vec<_>>()
    );
    // Reading after a sequence number, with a limit.
    let page = store.events(m.id, Viewer::All, 3, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    let tail = store
        .events(m.id, Viewer::Participant(buyer), 5, 10_000)
        .await
        .unwrap();
    assert_eq!(
        tail,
        seen_by_buyer
            .iter()
            .filter(|e| e.seq > 5)
            .cloned()
            .collect::<Vec<_>>()
    );

    // In a market with public negotiations everyone sees every thread.
    let open = fx(
        &store,
        MarketRules {
            public_negotiations: true,
            ..MarketRules::default()
        },
    )
    .await;
    let x = open.m.bid(open.rival, open.listing.id, 3_000).await;
    let seen = open.m.events(Viewer::Participant(open.buyer)).await;
    assert!(seen.iter().any(|e| thread_of(e) == Some(x.thread_id)));
    m.verified().await;
    open.m.verified().await;
}

async fn event_hash_chain_verifies(db: Db) {
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let g = fx(&store, MarketRules::default()).await;
    let bid = f.m.bid(f.buyer, f.listing.id, 4_500).await;
    let ran = store
        .run(
            f.m.id,
            T0,
            Command::AcceptOffer {
                actor: f.seller,
                offer: bid.id,
            },
            None,
        )
        .await
        .unwrap();
    let Ran::Fresh {
        result: Ok(Outcome::Deal(_)),
        events: returned,
    } = ran
    else {
        panic!("{ran:?}")
    };
    g.m.bid(g.rival, g.listing.id, 1_000).await;
    for m in [&f.m, &g.m] {
        let all = m.events(Viewer::All).await;
        assert!(all.len() > 5);
        assert_eq!(
            all[0].prev_hash, GENESIS_HASH,
            "each market has its own chain"
        );
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.market_id, m.id);
            assert_eq!(e.seq, i as i64 + 1);
            assert_eq!(e.hash, e.compute_hash());
            if i > 0 {
                assert_eq!(e.prev_hash, all[i - 1].hash);
                assert!(e.at >= all[i - 1].at);
            }
        }
        assert!(verify_chain(&all).is_empty());
        let v = store.verify(m.id).await.unwrap();
        assert_eq!(v.events, all.len());
        m.verified().await;
    }
    // What `run` returned is exactly what was stored, and ends the chain.
    let all = f.m.events(Viewer::All).await;
    assert_eq!(returned.as_slice(), &all[all.len() - returned.len()..]);
}

/// Books a deal in a fresh market, so it has transfers of every kind the commands make.
async fn market_with_a_deal(store: &Store) -> Fx {
    let f = fx(store, MarketRules::default()).await;
    let bid = f.m.bid(f.buyer, f.listing.id, 4_000).await;
    f.m.bid(f.rival, f.listing.id, 3_000).await;
    f.m.deal(f.seller, bid.id).await;
    f
}

async fn append_only_tables_refuse_edits(db: Db) {
    let store = db.open().await;
    let f = market_with_a_deal(&store).await;
    let m = f.m.id;
    let before = f.m.state(&f.all()).await;
    for sql in [
        format!("UPDATE transfers SET amount = amount + 1 WHERE market_id = {m}"),
        format!("DELETE FROM transfers WHERE market_id = {m}"),
        format!("UPDATE events SET payload = '{{}}' WHERE market_id = {m} AND seq = 2"),
        format!("UPDATE events SET kind = 'x' WHERE market_id = {m}"),
        format!("DELETE FROM events WHERE market_id = {m} AND seq = 3"),
        format!("DELETE FROM events WHERE market_id = {m}"),
    ] {
        let e = db
            .exec(&sql)
            .await
            .expect_err(&format!("the database must refuse: {sql}"));
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(f.m.state(&f.all()).await, before);
    f.m.verified().await;
}

async fn tampering_is_detected(db: Db) {
    let store = db.open().await;
    let edited_transfer = market_with_a_deal(&store).await;
    let deleted_transfer = market_with_a_deal(&store).await;
    let deleted_event = market_with_a_deal(&store).await;
    let deleted_last_event = market_with_a_deal(&store).await;
    let edited_event = market_with_a_deal(&store).await;
    let edited_balance = market_with_a_deal(&store).await;
    let edited_funds = market_with_a_deal(&store).await;
    let reformatted_event = market_with_a_deal(&store).await;
    let untouched = market_with_a_deal(&store).await;
    let drops: &[&str] = match db.backend {
        Backend::Sqlite => &[
            "DROP TRIGGER transfers_no_update",
            "DROP TRIGGER transfers_no_delete",
            "DROP TRIGGER events_no_update",
            "DROP TRIGGER events_no_delete",
        ],
        Backend::Postgres => &[
            "DROP TRIGGER transfers_append_only ON transfers",
            "DROP TRIGGER events_append_only ON events",
        ],
    };
    for sql in drops {
        db.exec(sql).await.unwrap();
    }
    let last_transfer = |m: i64| format!("(SELECT MAX(id) FROM transfers WHERE market_id = {m})");
    let tamper = [
        (
            &edited_transfer,
            format!(
                "UPDATE transfers SET amount = amount + 1 WHERE market_id = {m} AND id = {t}",
                m = edited_transfer.m.id,
                t = last_transfer(edited_transfer.m.id)
            ),
        ),
        (
            &deleted_transfer,
            format!(
                "DELETE FROM transfers WHERE market_id = {m} AND id = {t}",
                m = deleted_transfer.m.id,
                t = last_transfer(deleted_transfer.m.id)
            ),
        ),
        (
            &deleted_event,
            format!(
                "DELETE FROM events WHERE market_id = {} AND seq = 4",
                deleted_event.m.id
            ),
        ),
        (
            &deleted_last_event,
            format!(
                "DELETE FROM events WHERE market_id = {m} AND seq = (SELECT MAX(seq) FROM events WHERE market_id = {m})",
                m = deleted_last_event.m.id
            ),
        ),
        (
            &edited_event,
            format!(
                "UPDATE events SET payload = '{{\"name\":\"mallory\",\"participant_id\":2}}' WHERE market_id = {} AND seq = 2",
                edited_event.m.id
            ),
        ),
        (
            &edited_balance,
            format!(
                "UPDATE accounts SET balance = balance + 100 WHERE market_id = {} AND account = 'available:{}'",
                edited_balance.m.id, edited_balance.buyer
            ),
        ),
        (
            &edited_funds,
            format!(
                "UPDATE buyer_funds SET spent = spent - 1 WHERE market_id = {} AND buyer = {}",
                edited_funds.m.id, edited_funds.buyer
            ),
        ),
        (
            // The same payload (so the same hash), in text that is not its canonical form.
            &reformatted_event,
            format!(
                "UPDATE events SET payload = '{{ ' || substr(payload, 2) WHERE market_id = {} AND seq = 2",
                reformatted_event.m.id
            ),
        ),
    ];
    for (f, sql) in &tamper {
        f.m.verified().await;
        assert_eq!(db.exec(sql).await.unwrap(), 1, "{sql}");
        let v = store.verify(f.m.id).await.unwrap();
        assert!(!v.ok(), "verify missed: {sql}");
    }
    // What each report names.
    let breaches = |f: &Fx| {
        let (store, id) = (f.m.store.clone(), f.m.id);
        async move { store.verify(id).await.unwrap().breaches.join("\n") }
    };
    assert!(
        breaches(&edited_transfer)
            .await
            .contains("transfers_match_events")
    );
    assert!(
        breaches(&deleted_transfer)
            .await
            .contains("transfers_match_events")
    );
    assert!(breaches(&deleted_event).await.contains("event"));
    assert!(breaches(&deleted_last_event).await.contains("chain head"));
    assert!(breaches(&edited_event).await.contains("hash mismatch"));
    assert!(
        breaches(&edited_funds)
            .await
            .contains("buyer_funds_match_deals")
    );
    assert!(
        breaches(&reformatted_event)
            .await
            .contains("stored payload is not its canonical text")
    );
    untouched.m.verified().await;
}

async fn tokens_insert_and_find(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let alice = m.join("alice", 0).await;
    let agent = TokenRecord {
        hash: "a".repeat(64),
        role: Role::Agent,
        market_id: Some(m.id),
        participant_id: Some(alice),
        label: "alice's agent".into(),
        created_at: T0,
        revoked_at: None,
    };
    let operator = TokenRecord {
        hash: "b".repeat(64),
        role: Role::Operator,
        market_id: None,
        participant_id: None,
        label: "ops".into(),
        created_at: T0 + 1,
        revoked_at: None,
    };
    store.insert_token(&agent).await.unwrap();
    store.insert_token(&operator).await.unwrap();
    assert_eq!(store.token(&agent.hash).await.unwrap(), Some(agent.clone()));
    assert_eq!(
        store.token(&operator.hash).await.unwrap(),
        Some(operator.clone())
    );
    assert_eq!(store.token(&"c".repeat(64)).await.unwrap(), None);
    let dup = TokenRecord {
        role: Role::Observer,
        ..agent.clone()
    };
    assert!(store.insert_token(&dup).await.is_err(), "hashes are unique");
    assert_eq!(store.token(&agent.hash).await.unwrap(), Some(agent));
    for role in [Role::Operator, Role::Agent, Role::Principal, Role::Observer] {
        let t = TokenRecord {
            hash: format!("role-{}", role.as_str()),
            role,
            market_id: Some(m.id),
            participant_id: None,
            label: String::new(),
            created_at: T0,
            revoked_at: None,
        };
        store.insert_token(&t).await.unwrap();
        assert_eq!(
            store.token(&t.hash).await.unwrap().map(|t| t.role),
            Some(role)
        );
    }
    m.verified().await;
}

async fn tokens_are_revoked_once(db: Db) {
    let store = db.open().await;
    let t = TokenRecord {
        hash: "d".repeat(64),
        role: Role::Operator,
        market_id: None,
        participant_id: None,
        label: "ops".into(),
        created_at: T0,
        revoked_at: None,
    };
    store.insert_token(&t).await.unwrap();
    let revoked = store.revoke_token(&t.hash, T0 + 5).await.unwrap();
    assert_eq!(revoked.as_ref().and_then(|r| r.revoked_at), Some(T0 + 5));
    // Revoking again keeps the first time; the record is still found (it scopes stored keys).
    let again = store.revoke_token(&t.hash, T0 + 9).await.unwrap();
    assert_eq!(again, revoked);
    assert_eq!(store.token(&t.hash).await.unwrap(), revoked);
    assert_eq!(store.revoke_token(&"e".repeat(64), T0).await.unwrap(), None);
}

fn market_answer(r: &Result<Outcome, DomainError>) -> StoredResponse {
    match r {
        Ok(Outcome::Market(m)) => StoredResponse {
            status: 201,
            body: m.id.to_string(),
        },
        other => panic!("unexpected {other:?}"),
    }
}

/// Two stores on one database (two server replicas) create a market with the same key ten
/// times at once: one market is created, every other call replays its answer.
async fn market_creation_key_is_taken_once_across_stores(db: Db) {
    let stores = [db.open().await, db.open().await];
    let before = stores[0].markets().await.unwrap().len();
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (store, barrier) = (stores[i % 2].clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let nm = NewMarket {
                    name: "raced".into(),
                    currency: "EUR".into(),
                    clock_mode: ClockMode::Real,
                    sim_start: T0,
                    rules: MarketRules::default(),
                };
                let idem = Idempotency {
                    scope: "operator",
                    key: "create-once",
                    request_hash: "h",
                    render: &market_answer,
                };
                store.create_market_once(nm, T0, idem).await.unwrap()
            })
        })
        .collect();
    let (mut created, mut answers) = (Vec::new(), BTreeSet::new());
    for t in tasks {
        match t.await.unwrap() {
            Ran::Fresh {
                result: Ok(Outcome::Market(m)),
                events,
            } => {
                assert_eq!(events.len(), 1, "the market_created event");
                answers.insert(m.id.to_string());
                created.push(m.id);
            }
            Ran::Replayed(r) => {
                assert_eq!(r.status, 201);
                answers.insert(r.body);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "one market created");
    assert_eq!(
        answers.len(),
        1,
        "every call answered with that market: {answers:?}"
    );
    assert_eq!(stores[1].markets().await.unwrap().len(), before + 1);
    let other = Idempotency {
        scope: "operator",
        key: "create-once",
        request_hash: "another request",
        render: &market_answer,
    };
    let nm = NewMarket {
        name: "other".into(),
        currency: "EUR".into(),
        clock_mode: ClockMode::Real,
        sim_start: T0,
        rules: MarketRules::default(),
    };
    assert!(matches!(
        stores[0].create_market_once(nm, T0, other).await.unwrap(),
        Ran::Conflict
    ));
    assert_eq!(stores[0].markets().await.unwrap().len(), before + 1);
}

/// Runs `cmd`s all at once (released together by a barrier); results in the same order.
async fn all_at_once(store: &Store, market: i64, cmds: Vec<Command>) -> Vec<Ran> {
    let barrier = Arc::new(tokio::sync::Barrier::new(cmds.len()));
    let tasks: Vec<_> = cmds
        .into_iter()
        .map(|cmd| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.run(market, T0, cmd, None).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap().expect("no backend error under contention"));
    }
    out
}

async fn fifty_buyers_accept_at_once(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let seller = m.join("seller", 0).await;
    let listing = m.sell(seller, 10_000).await;
    let mut counters = Vec::new();
    for i in 0..50 {
        let buyer = m.join(&format!("buyer {i}"), 20_000).await;
        let bid = m.bid(buyer, listing.id, 8_000 + i).await;
        let counter = m.offer(seller, bid.thread_id, 9_000 + i).await;
        counters.push((buyer, bid, counter));
    }
    let cmds = counters
        .iter()
        .map(|(buyer, _, counter)| Command::AcceptOffer {
            actor: *buyer,
            offer: counter.id,
        })
        .collect();
    let results = all_at_once(&store, m.id, cmds).await;
    let mut deals = Vec::new();
    for (ran, (buyer, _, counter)) in results.into_iter().zip(&counters) {
        match ran {
            Ran::Fresh {
                result: Ok(Outcome::Deal(d)),
                events,
            } => {
                assert!(!events.is_empty());
                assert_eq!((d.buyer, d.offer_id), (*buyer, counter.id));
                deals.push(d);
            }
            Ran::Fresh {
                result: Err(e),
                events,
            } => {
                assert_eq!(e.code, ErrorCode::ListingUnavailable, "{e}");
                assert!(events.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(deals.len(), 1, "exactly one acceptance wins");
    let deal = &deals[0];
    assert_eq!(store.deals(m.id, None, 0, 100).await.unwrap(), deals);
    assert_eq!(m.listing_status(listing.id).await, ListingStatus::Sold);
    for (buyer, bid, counter) in &counters {
        assert_eq!(m.offer_state(bid.id).await, OfferState::Countered);
        if *buyer == deal.buyer {
            assert_eq!(m.offer_state(counter.id).await, OfferState::Accepted);
            assert_eq!(
                m.thread_status(counter.thread_id).await,
                ThreadStatus::Agreed
            );
            assert_eq!(
                m.balance(*buyer).await,
                bal(20_000 - deal.price, deal.price, 0)
            );
        } else {
            assert_eq!(m.offer_state(counter.id).await, OfferState::Void);
            assert_eq!(m.thread_status(counter.thread_id).await, ThreadStatus::Void);
            assert_eq!(m.balance(*buyer).await, bal(20_000, 0, 0));
        }
    }
    m.verified().await;
}

async fn many_listings_accept_at_once_with_limited_funds(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let sellers = [m.join("seller a", 0).await, m.join("seller b", 0).await];
    let mut listings = Vec::new();
    for k in 0..10 {
        listings.push(m.sell(sellers[k % 2], 1_000 + 100 * k as i64).await);
    }
    // Budgets that cover none, one, two, or (with a spend cap) two of each buyer's five offers.
    let kinds = [
        (500, None),
        (1_500, None),
        (2_600, None),
        (100_000, Some(2_500)),
    ];
    struct Buyer {
        id: i64,
        budget: i64,
        cap: Option<i64>,
    }
    let mut buyers = Vec::new();
    for i in 0..20 {
        let (budget, cap) = kinds[i % kinds.len()];
        let mandate = Mandate {
            spend_cap: cap,
            ..Mandate::default()
        };
        let id = m.join_with(&format!("buyer {i}"), budget, mandate).await;
        buyers.push(Buyer { id, budget, cap });
    }
    // Each buyer asks about five listings; the seller offers each a price.
    let mut offers: Vec<(usize, usize, Offer)> = Vec::new(); // (buyer, listing, offer)
    for j in 0..5 {
        for (i, b) in buyers.iter().enumerate() {
            let k = (i + 2 * j) % listings.len();
            let l = &listings[k];
            let (t, _) = m.open(b.id, l.id, Some("interested"), None).await;
            let o = m.offer(l.owner, t.id, l.price + i as i64).await;
            offers.push((i, k, o));
        }
    }
    let cmds = offers
        .iter()
        .map(|(i, _, o)| Command::AcceptOffer {
            actor: buyers[*i].id,
            offer: o.id,
        })
        .collect();
    let results = all_at_once(&store, m.id, cmds).await;

    let mut deals_per_listing: BTreeMap<usize, Vec<Deal>> = BTreeMap::new();
    let mut spent = vec![0i64; buyers.len()];
    let mut refusals: Vec<(usize, usize, i64, ErrorCode)> = Vec::new();
    for (ran, (i, k, o)) in results.into_iter().zip(&offers) {
        match ran {
            Ran::Fresh {
                result: Ok(Outcome::Deal(d)),
                ..
            } => {
                assert_eq!(
                    (d.buyer, d.offer_id, d.price),
                    (buyers[*i].id, o.id, o.price)
                );
                spent[*i] += d.price;
                deals_per_listing.entry(*k).or_default().push(d);
            }
            Ran::Fresh {
                result: Err(e),
                events,
            } => {
                assert!(events.is_empty());
                assert!(
                    matches!(
                        e.code,
                        ErrorCode::ListingUnavailable
                            | ErrorCode::InsufficientFunds
                            | ErrorCode::MandateExceeded
                    ),
                    "{e}"
                );
                refusals.push((*i, *k, o.price, e.code));
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        !deals_per_listing.is_empty(),
        "some buyer could afford something"
    );
    for (k, l) in listings.iter().enumerate() {
        let deals = deals_per_listing.get(&k).map_or(&[][..], |v| v.as_slice());
        assert!(
            deals.len() <= 1,
            "listing {} sold {} times",
            l.id,
            deals.len()
        );
        let want = if deals.is_empty() {
            ListingStatus::Active
        } else {
            ListingStatus::Sold
        };
        assert_eq!(m.listing_status(l.id).await, want);
        for (_, _, o) in offers.iter().filter(|(_, lk, _)| *lk == k) {
            let state = m.offer_state(o.id).await;
            match deals.first() {
                Some(d) if d.offer_id == o.id => assert_eq!(state, OfferState::Accepted),
                Some(_) => assert_eq!(state, OfferState::Void),
                None => assert_eq!(state, OfferState::Live),
            }
        }
    }
    for (i, b) in buyers.iter().enumerate() {
        assert!(spent[i] <= b.budget);
        if let Some(cap) = b.cap {
            assert!(spent[i] <= cap);
        }
        let balance = m.balance(b.id).await;
        assert!(balance.available >= 0);
        assert_eq!(balance, bal(b.budget - spent[i], spent[i], 0), "buyer {i}");
        assert_eq!(
            store.deals(m.id, Some(b.id), 0, 100).await.unwrap().len(),
            deals_per_listing
                .values()
                .flatten()
                .filter(|d| d.buyer == b.id)
                .count()
        );
    }
    // No refusal was spurious: funds or mandate really fell short (they only shrink), and a
    // listing was unavailable only because it sold.
    for (i, k, price, code) in refusals {
        let b = &buyers[i];
        match code {
            ErrorCode::InsufficientFunds => assert!(b.budget - spent[i] < price),
            ErrorCode::MandateExceeded => assert!(spent[i] + price > b.cap.unwrap()),
            ErrorCode::ListingUnavailable => assert!(deals_per_listing.contains_key(&k)),
            _ => unreachable!(),
        }
    }
    m.verified().await;
}

/// Trading mode `propose`: proposals get the market's next id, are found by the agent's key,
/// listed by participant and status in id order, and leave `waiting` once.
async fn proposals_wait_are_found_by_key_and_decided_once(db: Db) {
    use haggle_store::proposals::{Proposal, ProposalStatus as S, ProposedStep};
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let bob = m.join("bob", 0).await;
    let proposal = |key: &str, offer| Proposal {
        market_id: m.id,
        id: 0,
        participant_id: bob,
        step: ProposedStep::Accept { offer },
        scope: "agent-scope".into(),
        idem_key: Some(key.into()),
        request_hash: Some("h".into()),
        status: S::Waiting,
        created_at: T0,
        decided_at: None,
    };
    let first = store.insert_proposal(&proposal("k1", 7)).await.unwrap();
    let second = store.insert_proposal(&proposal("k2", 8)).await.unwrap();
    assert_eq!((first.id, second.id), (1, 2));
    let found = store
        .proposal_by_key(m.id, "agent-scope", "k2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.step, ProposedStep::Accept { offer: 8 });
    assert_eq!(found.request_hash.as_deref(), Some("h"));
    let waiting = store.proposals(m.id, bob, S::Waiting, 0, 10).await.unwrap();
    assert_eq!(waiting.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 2]);
    assert!(
        store
            .set_proposal_status(m.id, 1, S::Waiting, S::Declined, T0 + 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_proposal_status(m.id, 1, S::Waiting, S::Confirmed, T0 + 2)
            .await
            .unwrap()
    );
    let declined = store.proposal(m.id, 1).await.unwrap().unwrap();
    assert_eq!(
        (declined.status, declined.decided_at),
        (S::Declined, Some(T0 + 1))
    );
    let waiting = store.proposals(m.id, bob, S::Waiting, 0, 10).await.unwrap();
    assert_eq!(waiting.len(), 1);
}

/// Issue 23: a deal's payment record is written by `RecordPayment` under the market's lock, with
/// one event per confirmed change or refusal; a rewrite or a step in flight adds none, and a
/// writer that read an older record is refused.
async fn payment_records_are_written_with_one_event_per_change(db: Db) {
    use haggle_core::payment::{Confirmed, Failure, Payment, PaymentStep, PaymentVia};
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let o = f.m.bid(f.buyer, f.listing.id, 5_000).await;
    let d = f.m.deal(f.seller, o.id).await;
    let record = |read: &Payment, p: &Payment, via| Command::RecordPayment {
        deal: d.id,
        read: read.clone(),
        payment: p.clone(),
        via,
    };
    let fresh = Payment::new(d.id);
    let payment_kinds = |events: &[Event]| -> Vec<&'static str> {
        events
            .iter()
            .map(|e| e.kind())
            .filter(|k| k.starts_with("payment_"))
            .collect()
    };
    let mut p = Payment::new(d.id);
    p.pending = Some(PaymentStep::Hold);
    // A rewrite that changes no state: recorded, no event.
    let ran = store
        .run(f.m.id, T0, record(&fresh, &p, PaymentVia::Call), None)
        .await
        .unwrap();
    assert!(
        matches!(ran, Ran::Fresh { result: Ok(_), ref events } if events.is_empty()),
        "{ran:?}"
    );
    assert_eq!(store.payment(f.m.id, d.id).await.unwrap(), Some(p.clone()));
    let pending = p.clone();
    p.pending = None;
    p.confirmed = Confirmed::Authorized;
    p.intent = Some("pi_1".into());
    p.held = 5_000;
    f.m.ok(record(&pending, &p, PaymentVia::Call)).await;
    // A writer that read the record before that write is refused: nothing older overwrites it.
    let stale =
        f.m.try_run(record(&pending, &fresh, PaymentVia::Webhook))
            .await
            .unwrap_err();
    assert_eq!(stale.code, ErrorCode::InvalidTransition);
    assert_eq!(store.payment(f.m.id, d.id).await.unwrap(), Some(p.clone()));
    let again = store
        .run(f.m.id, T0, record(&p, &p, PaymentVia::Lookup), None)
        .await
        .unwrap();
    assert!(
        matches!(again, Ran::Fresh { result: Ok(_), ref events } if events.is_empty()),
        "{again:?}"
    );
    let held = p.clone();
    p.failure = Some(Failure {
        step: PaymentStep::Capture,
        code: "expired_for_capture".into(),
    });
    f.m.ok(record(&held, &p, PaymentVia::Call)).await;
    let all = f.m.events(Viewer::All).await;
    assert_eq!(
        payment_kinds(&all),
        ["payment_authorized", "payment_failed"]
    );
    let told = all.iter().find(|e| e.kind() == "payment_failed").unwrap();
    assert_eq!(
        told.visibility,
        Visibility::Parties(vec![f.buyer, f.seller])
    );
    assert!(payment_kinds(&f.m.events(Viewer::Participant(f.rival)).await).is_empty());
    assert_eq!(
        payment_kinds(&f.m.events(Viewer::Participant(f.buyer)).await).len(),
        2
    );
    assert_eq!(store.payment(f.m.id, d.id).await.unwrap(), Some(p.clone()));
    f.m.verified().await;
    // A record for a deal the market does not have is refused, and nothing is written.
    let before = f.m.events(Viewer::All).await.len();
    let err =
        f.m.try_run(Command::RecordPayment {
            deal: 999,
            read: Payment::new(999),
            payment: Payment::new(999),
            via: PaymentVia::Call,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(store.payment(f.m.id, 999).await.unwrap(), None);
    assert_eq!(f.m.events(Viewer::All).await.len(), before);
}

async fn survey_answers_are_one_per_participant_and_replaced(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let other = market(&store, MarketRules::default()).await;
    let alice = m.join("alice", 0).await;
    let bob = m.join("bob", 0).await;
    let answer = |market_id, participant_id, fairness, would_pay| SurveyAnswer {
        market_id,
        participant_id,
        fairness,
        satisfaction: 5,
        would_pay,
        comment: format!("from {participant_id}"),
        answered_at: T0,
    };
    assert_eq!(store.survey_answer(m.id, alice).await.unwrap(), None);
    store
        .put_survey_answer(&answer(m.id, bob, 2, 0))
        .await
        .unwrap();
    store
        .put_survey_answer(&answer(m.id, alice, 6, 1_500))
        .await
        .unwrap();
    // The same participant id in another market is another answer.
    store
        .put_survey_answer(&answer(other.id, alice, 1, 0))
        .await
        .unwrap();
    let replaced = SurveyAnswer {
        fairness: 7,
        comment: "changed my mind".into(),
        answered_at: T0 + 5,
        ..answer(m.id, alice, 6, 1_500)
    };
    store.put_survey_answer(&replaced).await.unwrap();
    assert_eq!(
        store.survey_answer(m.id, alice).await.unwrap(),
        Some(replaced.clone())
    );
    assert_eq!(
        store.survey_answers(m.id, 0, 500).await.unwrap(),
        vec![replaced, answer(m.id, bob, 2, 0)],
        "one answer per participant, by participant id"
    );
    assert_eq!(
        store.survey_answers(m.id, alice, 500).await.unwrap().len(),
        1,
        "paged by id"
    );
    assert_eq!(
        store.survey_answers(other.id, 0, 500).await.unwrap().len(),
        1
    );
    // The schema refuses answers off the scales.
    assert!(
        store
            .put_survey_answer(&answer(m.id, bob, 8, 0))
            .await
            .is_err()
    );
    assert!(
        store
            .put_survey_answer(&answer(m.id, bob, 3, -1))
            .await
            .is_err()
    );
    assert_eq!(
        store
            .survey_answer(m.id, bob)
            .await
            .unwrap()
            .map(|a| a.fairness),
        Some(2)
    );
    // Not market state: the log and the ledger are untouched.
    m.verified().await;
}

async fn recent_events_are_newest_first_filtered_by_viewer_and_kind(db: Db) {
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let offer = f.m.bid(f.buyer, f.listing.id, 4_000).await;
    f.m.deal(f.seller, offer.id).await;
    let all = f.m.events(Viewer::All).await;
    let newest_first: Vec<i64> = all.iter().rev().map(|e| e.seq).collect();
    let recent = |viewer, kinds: &'static [&'static str], before, limit| {
        let store = store.clone();
        let id = f.m.id;
        async move {
            store
                .recent_events(id, viewer, kinds, before, limit)
                .await
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(recent(Viewer::All, &[], None, 10_000).await, newest_first);
    assert_eq!(recent(Viewer::All, &[], None, 3).await, newest_first[..3]);
    let before = newest_first[2];
    assert_eq!(
        recent(Viewer::All, &[], Some(before), 2).await,
        newest_first[3..5],
        "the page before a sequence number"
    );
    let public: Vec<i64> =
        f.m.events(Viewer::Public)
            .await
            .iter()
            .rev()
            .map(|e| e.seq)
            .collect();
    assert_eq!(recent(Viewer::Public, &[], None, 10_000).await, public);
    let rival_sees: Vec<i64> =
        f.m.events(Viewer::Participant(f.rival))
            .await
            .iter()
            .rev()
            .map(|e| e.seq)
            .collect();
    assert_eq!(
        recent(Viewer::Participant(f.rival), &[], None, 10_000).await,
        rival_sees
    );
    let sold: Vec<i64> = all
        .iter()
        .rev()
        .filter(|e| e.kind() == "listing_sold" || e.kind() == "offer_made")
        .map(|e| e.seq)
        .collect();
    assert_eq!(sold.len(), 2);
    assert_eq!(
        recent(Viewer::All, &["listing_sold", "offer_made"], None, 100).await,
        sold
    );
    assert!(
        recent(Viewer::Participant(f.rival), &["offer_made"], None, 100)
            .await
            .is_empty(),
        "a private offer stays private when filtered by kind"
    );
}

/// A buyer's live bid holds their money until it expires, even before a sweep marks it expired:
/// after that the same money backs a new bid. (A simulation's store sums funds from memory.)
async fn an_expired_bid_no_longer_holds_the_buyers_money(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let seller = m.join("seller", 0).await;
    let buyer = m.join("buyer", 10_000).await;
    let first = m.sell(seller, 8_000).await;
    let second = m.sell(seller, 8_000).await;
    let bid = |listing: i64| Command::OpenThread {
        actor: buyer,
        listing,
        message: None,
        offer: Some(NewOffer {
            price: 8_000,
            expires_in_ms: Some(60_000),
        }),
    };
    m.try_run_at(T0, bid(first.id))
        .await
        .expect("the first bid");
    assert_eq!(
        store
            .balance(m.id, buyer, T0 + 59_999)
            .await
            .unwrap()
            .committed_to_offers,
        8_000
    );
    let refused = m
        .try_run_at(T0 + 59_999, bid(second.id))
        .await
        .expect_err("the money is committed");
    assert_eq!(refused.code, ErrorCode::InsufficientFunds);
    let later = T0 + 60_000;
    assert_eq!(
        store
            .balance(m.id, buyer, later)
            .await
            .unwrap()
            .committed_to_offers,
        0
    );
    m.try_run_at(later, bid(second.id))
        .await
        .expect("the expired bid commits nothing");
    let b = store.balance(m.id, buyer, later).await.unwrap();
    assert_eq!((b.committed_to_offers, b.available), (8_000, 2_000));
}

/// A reputation counts completed deals and the ratings received once revealed (both parties
/// rated, or the rating window passed); a participant's own deals page by id; the mine feed has
/// news only after an event names the participant. A simulation's store answers these from memory:
/// the answers must be the tables', and a fresh store reading the tables must agree.
async fn reputation_own_deals_and_news_follow_every_commit(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let seller = m.join("seller", 0).await;
    let buyer = m.join("buyer", 100_000).await;
    let stranger = m.join("stranger", 0).await;
    let rep =
        |store: Store, p: i64, at: i64| async move { store.reputation(m.id, p, at).await.unwrap() };
    assert_eq!(rep(store.clone(), stranger, T0).await.completed_deals, 0);
    let after = m
        .events(Viewer::Own(buyer))
        .await
        .last()
        .map_or(0, |e| e.seq);
    assert!(
        store
            .events(m.id, Viewer::Own(buyer), after, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let mut deals = Vec::new();
    for price in [1_000, 2_000, 3_000] {
        let l = m.sell(seller, price).await;
        let o = m.bid(buyer, l.id, price).await;
        deals.push(m.deal(seller, o.id).await);
    }
    let threads = store
        .threads(m.id, Some(seller), None, 0, 500)
        .await
        .unwrap();
    assert_eq!(threads.len(), 3);
    assert!(
        threads
            .iter()
            .all(|t| t.status == ThreadStatus::Agreed && t.offers_made == 1),
        "{threads:?}"
    );
    assert!(
        store
            .threads(m.id, Some(stranger), None, 0, 500)
            .await
            .unwrap()
            .is_empty()
    );
    let news = store
        .events(m.id, Viewer::Own(buyer), after, 100)
        .await
        .unwrap();
    assert!(!news.is_empty(), "deals are news to the buyer");
    assert!(
        store
            .events(m.id, Viewer::Own(stranger), 0, 10)
            .await
            .unwrap()
            .iter()
            .all(|e| e.kind() != "deal_created")
    );
    let ids = |v: Vec<Deal>| v.iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.deals(m.id, Some(buyer), 0, 10).await.unwrap()),
        ids(deals.clone())
    );
    assert_eq!(
        ids(store
            .deals(m.id, Some(seller), deals[0].id, 1)
            .await
            .unwrap()),
        vec![deals[1].id]
    );
    assert!(
        store
            .deals(m.id, Some(stranger), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let d = deals[0].id;
    m.ok(Command::HandOver {
        actor: seller,
        deal: d,
        note: Some("at reception".into()),
    })
    .await;
    m.ok(Command::ConfirmReceipt {
        actor: buyer,
        deal: d,
    })
    .await;
    m.ok(Command::CancelDeal {
        actor: buyer,
        deal: deals[1].id,
        reason: None,
    })
    .await;
    m.ok(Command::Rate {
        actor: buyer,
        deal: d,
        score: 4,
        comment: "fine".into(),
    })
    .await;
    let r = rep(store.clone(), seller, T0).await;
    assert_eq!(
        (r.completed_deals, r.ratings),
        (1, 0),
        "one rating of two stays hidden"
    );
    let window = MarketRules::default().rating_window_ms;
    assert_eq!(
        rep(store.clone(), seller, T0 + window).await.ratings,
        1,
        "until the window passes"
    );
    m.ok(Command::Rate {
        actor: seller,
        deal: d,
        score: 5,
        comment: "prompt".into(),
    })
    .await;
    let r = rep(store.clone(), seller, T0).await;
    assert_eq!((r.ratings, r.average_x100), (1, Some(400)));
    let r = rep(store.clone(), buyer, T0).await;
    assert_eq!(
        (r.completed_deals, r.ratings, r.average_x100),
        (1, 1, Some(500))
    );
    let handed = &store.deals(m.id, Some(buyer), 0, 10).await.unwrap()[0];
    assert_eq!(handed.handover_note.as_deref(), Some("at reception"));
    for p in [seller, buyer, stranger] {
        let threads = store.threads(m.id, Some(p), None, 0, 500).await.unwrap();
        for t in &threads {
            let detail = store.thread(m.id, t.id).await.unwrap().expect("the thread");
            assert!(
                !detail.offers.is_empty(),
                "each thread opened with an offer"
            );
        }
        if let Some(first) = threads.first() {
            assert_eq!(
                store
                    .threads(m.id, Some(p), None, first.id, 1)
                    .await
                    .unwrap(),
                threads[1..threads.len().min(2)].to_vec()
            );
        }
    }
    // A fresh store reads the same from the tables. A simulation's store holds its file
    // exclusively: it commits what it holds back and closes before another store opens it.
    let parties = [seller, buyer, stranger];
    let remembered = Reads::of(&store, m.id, &parties).await;
    let market_id = m.id;
    drop(m);
    drop(store);
    let fresh = db.open().await;
    assert_eq!(Reads::of(&fresh, market_id, &parties).await, remembered);
}

/// Everything an agent reads about itself, as one store answers it (to compare two stores).
#[derive(Debug, PartialEq)]
struct Reads {
    market: Option<Market>,
    reputations: Vec<haggle_core::lifecycle::Reputation>,
    deals: Vec<Vec<Deal>>,
    participants: Vec<Option<haggle_core::Participant>>,
    threads: Vec<Vec<Thread>>,
    details: Vec<Option<haggle_core::ThreadDetail>>,
    /// Each party's feed after seq 0, after its second-newest event and after its newest.
    feeds: Vec<Vec<Event>>,
}

impl Reads {
    async fn of(store: &Store, market: i64, parties: &[i64]) -> Reads {
        let mut r = Reads {
            market: store.market(market).await.unwrap(),
            reputations: Vec::new(),
            deals: Vec::new(),
            participants: Vec::new(),
            threads: Vec::new(),
            details: Vec::new(),
            feeds: Vec::new(),
        };
        for &p in parties {
            r.reputations
                .push(store.reputation(market, p, T0).await.unwrap());
            r.deals
                .push(store.deals(market, Some(p), 0, 10).await.unwrap());
            r.participants
                .push(store.participant(market, p).await.unwrap());
            let threads = store.threads(market, Some(p), None, 0, 500).await.unwrap();
            for t in &threads {
                r.details.push(store.thread(market, t.id).await.unwrap());
            }
            r.threads.push(threads);
            let feed = store.events(market, Viewer::Own(p), 0, 100).await.unwrap();
            let last = feed.last().map_or(0, |e| e.seq);
            r.feeds.push(feed);
            for after in [last - 1, last] {
                r.feeds.push(
                    store
                        .events(market, Viewer::Own(p), after, 100)
                        .await
                        .unwrap(),
                );
            }
        }
        r
    }
}

async fn deals_are_listed_by_status(db: Db) {
    let store = db.open().await;
    let f = fx(&store, MarketRules::default()).await;
    let second = f.m.sell(f.seller, 3_000).await;
    let a = f.m.bid(f.buyer, f.listing.id, 4_000).await;
    let b = f.m.bid(f.rival, second.id, 2_000).await;
    let first_deal = f.m.deal(f.seller, a.id).await;
    let second_deal = f.m.deal(f.seller, b.id).await;
    f.m.ok(Command::HandOver {
        actor: f.seller,
        deal: second_deal.id,
        note: None,
    })
    .await;
    let ids = |deals: Vec<Deal>| deals.into_iter().map(|d| d.id).collect::<Vec<_>>();
    use haggle_core::DealStatus;
    assert_eq!(
        ids(store
            .deals_in_status(f.m.id, DealStatus::Agreed, 0, 500)
            .await
            .unwrap()),
        vec![first_deal.id]
    );
    assert_eq!(
        ids(store
            .deals_in_status(f.m.id, DealStatus::HandedOver, 0, 500)
            .await
            .unwrap()),
        vec![second_deal.id]
    );
    assert!(
        store
            .deals_in_status(f.m.id, DealStatus::Disputed, 0, 500)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn closing_expires_listings_offers_and_threads_and_deals_still_settle(db: Db) {
    let store = db.open().await;
    let close = T0 + 10 * HOUR_MS;
    let rules = MarketRules {
        closes_at: Some(close),
        ..MarketRules::default()
    };
    let m = market_with(&store, ClockMode::Simulated, rules).await;
    let seller = m.join("seller", 0).await;
    let buyer = m.join("buyer", 10_000).await;
    let rival = m.join("rival", 10_000).await;
    let open = m.sell(seller, 5_000).await;
    let sold = m.sell(seller, 2_000).await;
    let wanted = m
        .list(rival, new_listing(Side::Buy, "Wanted: lamp", "lamps", 900))
        .await;
    let deal = m.deal(seller, m.bid(buyer, sold.id, 1_500).await.id).await;
    let bid = m.bid(buyer, open.id, 3_000).await;
    assert_eq!(m.balance(buyer).await, bal(5_500, 1_500, 3_000));

    m.ok(Command::AdvanceClock {
        by_ms: 10 * HOUR_MS,
    })
    .await;
    assert_eq!(m.listing_status(open.id).await, ListingStatus::Expired);
    assert_eq!(m.listing_status(wanted.id).await, ListingStatus::Expired);
    assert_eq!(m.listing_status(sold.id).await, ListingStatus::Sold);
    assert_eq!(m.offer_state(bid.id).await, OfferState::Expired);
    assert_eq!(m.thread_status(bid.thread_id).await, ThreadStatus::TimedOut);
    // The live offer's commitment is released; the deal's hold stays.
    assert_eq!(m.balance(buyer).await, bal(8_500, 1_500, 0));
    let closing: Vec<String> = m
        .events(Viewer::All)
        .await
        .into_iter()
        // Every kind that gives a reason names the close the same way.
        .filter(|e| e.body.payload_json()["reason"] == "market_closed")
        .map(|e| e.kind().to_string())
        .collect();
    assert!(
        closing.contains(&"listing_expired".to_string()),
        "{closing:?}"
    );
    assert!(
        closing.contains(&"offer_expired".to_string()),
        "{closing:?}"
    );
    assert!(
        closing.contains(&"thread_closed".to_string()),
        "{closing:?}"
    );

    let e = m
        .refuses(
            ErrorCode::MarketClosed,
            Command::CreateListing {
                actor: seller,
                listing: new_listing(Side::Sell, "Late", "bikes", 100),
            },
            &[seller, buyer, rival],
        )
        .await;
    assert!(e.message.contains("closed at"), "{}", e.message);
    m.ok(Command::HandOver {
        actor: seller,
        deal: deal.id,
        note: None,
    })
    .await;
    m.ok(Command::ConfirmReceipt {
        actor: buyer,
        deal: deal.id,
    })
    .await;
    assert_eq!(m.balance(seller).await, bal(1_500, 0, 0));
    // A second sweep finds nothing left to close.
    let before = m.state(&[seller, buyer, rival]).await;
    let ran = store.run(m.id, T0, Command::Sweep, None).await.unwrap();
    assert!(
        matches!(ran, Ran::Fresh { ref events, .. } if events.is_empty()),
        "{ran:?}"
    );
    assert_eq!(m.state(&[seller, buyer, rival]).await, before);
    m.verified().await;
}

async fn closing_time_is_stored_and_moved_by_the_operator(db: Db) {
    let store = db.open().await;
    let Fx {
        m, seller, listing, ..
    } = fx(&store, MarketRules::default()).await;
    assert_eq!(
        store.market(m.id).await.unwrap().unwrap().rules.closes_at,
        None
    );
    let out = m
        .ok(Command::SetClosingTime {
            closes_at: Some(T0 + HOUR_MS),
        })
        .await;
    let Outcome::Market(market) = out else {
        panic!("expected the market, got {out:?}")
    };
    assert_eq!(market.rules.closes_at, Some(T0 + HOUR_MS));
    let stored = store.market(m.id).await.unwrap().unwrap();
    assert_eq!(stored.rules.closes_at, Some(T0 + HOUR_MS));
    assert_eq!(
        stored.rules.offer_ttl_ms,
        MarketRules::default().offer_ttl_ms
    );
    let last = m.events(Viewer::Public).await.pop().unwrap();
    assert_eq!(last.kind(), "market_closing_set");
    // Moved into the past (by this real clock), the market closes at the next sweep.
    m.ok(Command::SetClosingTime {
        closes_at: Some(T0 - 1),
    })
    .await;
    assert_eq!(m.listing_status(listing.id).await, ListingStatus::Active);
    m.ok(Command::Sweep).await;
    assert_eq!(m.listing_status(listing.id).await, ListingStatus::Expired);
    m.refuses(
        ErrorCode::MarketClosed,
        Command::CreateListing {
            actor: seller,
            listing: new_listing(Side::Sell, "Late", "bikes", 100),
        },
        &[seller],
    )
    .await;
    m.verified().await;
}

/// Active bikes for sale as a search sees them (a category and a side: a batched store answers
/// it from its shelves).
async fn bikes_on_sale(m: &Mkt) -> Vec<i64> {
    let q = ListingQuery {
        category: Some("bikes".into()),
        side: Some(Side::Sell),
        limit: Some(50),
        ..ListingQuery::default()
    };
    search_all(m, &q).await
}

async fn policy_holds_and_moderation_follow_every_store(db: Db) {
    let store = db.open().await;
    let Fx {
        m,
        seller,
        buyer,
        rival,
        listing,
    } = fx(&store, MarketRules::default()).await;
    let mut policy = MarketPolicy {
        prohibited_terms: vec!["vintage".into()],
        max_offers_per_hour: Some(1),
        ..MarketPolicy::default()
    };
    policy.actions.prohibited_terms = PolicyAction::Hold;
    match m.ok(Command::SetPolicy { policy }).await {
        Outcome::Market(mk) => assert_eq!(mk.rules.policy.prohibited_terms, ["vintage"]),
        o => panic!("expected the market, got {o:?}"),
    }
    let held = m
        .list(
            seller,
            new_listing(Side::Sell, "Vintage bike", "bikes", 4_000),
        )
        .await;
    assert_eq!(held.status, ListingStatus::Held);
    assert_eq!(bikes_on_sale(&m).await, [listing.id]);
    let queue = store.held_listings(m.id, 0, 50).await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(
        (queue[0].listing.id, queue[0].rules.as_slice()),
        (held.id, &[PolicyRule::ProhibitedTerms][..])
    );
    assert!(queue[0].reason.contains("vintage"), "{}", queue[0].reason);
    m.refuses(
        ErrorCode::ListingUnavailable,
        Command::OpenThread {
            actor: buyer,
            listing: held.id,
            message: None,
            offer: offer(3_000),
        },
        &[seller, buyer, rival],
    )
    .await;
    // Approved, it is on the market; the buyer's second offer within the hour is refused.
    m.ok(Command::ApproveListing { listing: held.id }).await;
    assert_eq!(bikes_on_sale(&m).await, [held.id, listing.id]);
    assert!(store.held_listings(m.id, 0, 50).await.unwrap().is_empty());
    let bid = m.bid(buyer, held.id, 3_000).await;
    let e = m
        .refuses(
            ErrorCode::PolicyViolation,
            Command::MakeOffer {
                actor: buyer,
                thread: bid.thread_id,
                offer: NewOffer {
                    price: 3_100,
                    expires_in_ms: None,
                },
            },
            &[seller, buyer, rival],
        )
        .await;
    assert!(e.message.contains("max_offers_per_hour"), "{e}");
    // Removed, its bid is void and its thread ended; searches no longer find it.
    m.ok(Command::RemoveListing {
        listing: held.id,
        reason: "counterfeit".into(),
    })
    .await;
    assert_eq!(m.listing_status(held.id).await, ListingStatus::Removed);
    assert_eq!(m.offer_state(bid.id).await, OfferState::Void);
    assert_eq!(m.thread_status(bid.thread_id).await, ThreadStatus::Void);
    assert_eq!(m.balance(buyer).await, bal(10_000, 0, 0));
    assert_eq!(bikes_on_sale(&m).await, [listing.id]);
    m.verified().await;
}

async fn suspension_withdraws_voids_and_is_stored(db: Db) {
    let store = db.open().await;
    let Fx {
        m,
        seller,
        buyer,
        rival,
        listing,
    } = fx(&store, MarketRules::default()).await;
    let bid = m.bid(buyer, listing.id, 4_000).await;
    let wanted = m
        .list(
            rival,
            new_listing(Side::Buy, "Wanted: bike", "bikes", 3_000),
        )
        .await;
    let (thread, _) = m.open(seller, wanted.id, None, None).await;
    match m
        .ok(Command::Suspend {
            participant: seller,
            reason: "fraud reports".into(),
        })
        .await
    {
        Outcome::ParticipantUpdated(p) => assert_eq!(p.suspension.unwrap().reason, "fraud reports"),
        o => panic!("expected the participant, got {o:?}"),
    }
    assert_eq!(m.listing_status(listing.id).await, ListingStatus::Withdrawn);
    assert_eq!(m.offer_state(bid.id).await, OfferState::Void);
    assert_eq!(m.thread_status(bid.thread_id).await, ThreadStatus::Void);
    assert_eq!(m.thread_status(thread.id).await, ThreadStatus::Void);
    assert_eq!(m.listing_status(wanted.id).await, ListingStatus::Active);
    assert_eq!(m.balance(buyer).await, bal(10_000, 0, 0));
    assert!(bikes_on_sale(&m).await.is_empty());
    let stored = store.participant(m.id, seller).await.unwrap().unwrap();
    assert_eq!(stored.suspension.unwrap().reason, "fraud reports");
    m.refuses(
        ErrorCode::ParticipantSuspended,
        Command::CreateListing {
            actor: seller,
            listing: new_listing(Side::Sell, "Bike", "bikes", 100),
        },
        &[seller, buyer, rival],
    )
    .await;
    m.ok(Command::Reinstate {
        participant: seller,
    })
    .await;
    assert!(
        store
            .participant(m.id, seller)
            .await
            .unwrap()
            .unwrap()
            .suspension
            .is_none()
    );
    m.sell(seller, 2_000).await;
    m.verified().await;
}

/// Claims and the true state are stored with a listing (the true state read back by the store,
/// never serialised), the inspection at handover and the dispute's grounds with the deal, and the
/// reputation counts them once the ruling settles the deal.
async fn claims_true_state_inspection_and_dispute_are_stored(db: Db) {
    use haggle_core::{Claims, Condition, DealStatus, Dispute, DisputeGrounds, Working};
    let store = db.open().await;
    let m = market_with(&store, ClockMode::Simulated, MarketRules::default()).await;
    let seller = m.join("seller", 0).await;
    let buyer = m.join("buyer", 10_000).await;
    let said = Claims {
        condition: Some(Condition::New),
        working: Some(Working::Yes),
        included: vec!["charger".into()],
        details: BTreeMap::from([("battery".to_string(), "90%".to_string())]),
    };
    let truth = Claims {
        condition: Some(Condition::Fair),
        ..said.clone()
    };
    let listing = m
        .list(
            seller,
            NewListing {
                claims: said.clone(),
                true_state: Some(truth.clone()),
                fulfilment: Default::default(),
                true_transit: None,
                ..new_listing(Side::Sell, "Phone", "phones", 2_000)
            },
        )
        .await;
    let stored = store.listing(m.id, listing.id).await.unwrap().unwrap();
    assert_eq!(stored.claims, said);
    assert_eq!(stored.true_state, Some(truth.clone()));
    assert!(!serde_json::to_string(&stored).unwrap().contains("fair"));
    let deal = m
        .deal(seller, m.bid(buyer, listing.id, 2_000).await.id)
        .await;
    assert_eq!(deal.snapshot.claims, said);
    m.ok(Command::HandOver {
        actor: seller,
        deal: deal.id,
        note: None,
    })
    .await;
    let handed = store.deal(m.id, deal.id).await.unwrap().unwrap();
    let inspection = handed.inspection.clone().expect("inspected at handover");
    assert_eq!(inspection.mismatched, vec!["condition".to_string()]);
    assert_eq!(inspection.found, Some(truth));
    let grounds = Dispute {
        grounds: DisputeGrounds::NotAsDescribed,
        claims: vec!["condition".into()],
    };
    m.ok(Command::Dispute {
        actor: buyer,
        deal: deal.id,
        reason: "scratched".into(),
        grounds: grounds.clone(),
    })
    .await;
    let disputed = store.deal(m.id, deal.id).await.unwrap().unwrap();
    assert_eq!(disputed.status, DealStatus::Disputed);
    assert_eq!(disputed.dispute, Some(grounds));
    m.ok(Command::ResolveDispute {
        arbiter: None,
        deal: deal.id,
        ruling: haggle_core::lifecycle::Ruling::Split { to_buyer: 900 },
        note: String::new(),
    })
    .await;
    let r = store.reputation(m.id, seller, T0).await.unwrap();
    assert_eq!((r.inspected_sales, r.accurate_sales), (1, 0));
    assert_eq!(r.upheld_not_as_described, 1);
    assert_eq!(r.claim_accuracy_pct, Some(0));
}

// ---------------------------------------------------------------------------------------------
// Group commit on the server path: on one thread, commands that arrive together share one
// commit, each in its own savepoint. (Not in the conformance macro: its four worker threads
// would make the grouping a race.)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_group_commit_keeps_the_others_when_one_command_is_refused() {
    run(
        Backend::Sqlite,
        group_commit_keeps_the_others_when_one_command_is_refused,
    )
    .await
}

#[tokio::test]
async fn postgres_group_commit_keeps_the_others_when_one_command_is_refused() {
    run(
        Backend::Postgres,
        group_commit_keeps_the_others_when_one_command_is_refused,
    )
    .await
}

async fn group_commit_keeps_the_others_when_one_command_is_refused(db: Db) {
    let store = db.open().await;
    let m = market(&store, MarketRules::default()).await;
    let seller = m.join("seller", 0).await;
    let before = store
        .group_commit_stats()
        .expect("a server's store groups commits");
    // Every fourth listing has no price: refused, and rolled back alone.
    let cmds: Vec<Command> = (0..40)
        .map(|i| Command::CreateListing {
            actor: seller,
            listing: new_listing(
                Side::Sell,
                &format!("Lamp {i}"),
                "home",
                if i % 4 == 3 { 0 } else { 100 + i },
            ),
        })
        .collect();
    let ran = all_at_once(&store, m.id, cmds).await;
    let after = store.group_commit_stats().unwrap();
    assert_eq!(
        after.commands - before.commands,
        40,
        "every command went through group commit"
    );
    assert_eq!(
        after.commits - before.commits,
        1,
        "the forty commands arrived together and shared one commit"
    );
    let mut listed = BTreeSet::new();
    for (i, r) in ran.iter().enumerate() {
        match r {
            Ran::Fresh {
                result: Ok(Outcome::Listing(l)),
                events,
            } if i % 4 != 3 => {
                assert!(!events.is_empty());
                listed.insert(l.id);
            }
            Ran::Fresh {
                result: Err(e),
                events,
            } if i % 4 == 3 => {
                assert_eq!(e.code, ErrorCode::InvalidPrice, "{e}");
                assert!(events.is_empty());
            }
            other => panic!("command {i}: {other:?}"),
        }
    }
    assert_eq!(listed.len(), 30);
    let stored: BTreeSet<i64> = search_all(
        &m,
        &ListingQuery {
            limit: Some(50),
            ..ListingQuery::default()
        },
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(
        stored, listed,
        "the refused commands left nothing; the others are all committed"
    );
    m.verified().await;
    assert!(verify_chain(&m.events(Viewer::All).await).is_empty());
}

/// A shipped listing's fulfilment and ground truth are stored (the truth never serialised), the
/// deal's price and hold include the shipping price, `ship` stores carrier and tracking, the
/// sweep's simulated carrier delivers at the truth's time, and the buyer's confirmation pays the
/// seller price and shipping; the ledger verifies.
async fn shipping_is_stored_and_a_simulated_carrier_delivers(db: Db) {
    use haggle_core::shipping::Transit;
    use haggle_core::{DealStatus, Fulfilment, ShippingStatus};
    let store = db.open().await;
    let m = market_with(&store, ClockMode::Simulated, MarketRules::default()).await;
    let seller = m.join("seller", 0).await;
    let buyer = m.join("buyer", 10_000).await;
    let fulfilment = Fulfilment::Shipping {
        shipping_price: 450,
    };
    let transit = Transit {
        delivery_ms: 5 * HOUR_MS,
        lost: false,
    };
    let listing = m
        .list(
            seller,
            NewListing {
                fulfilment,
                true_transit: Some(transit),
                ..new_listing(Side::Sell, "Lamp", "home", 2_000)
            },
        )
        .await;
    let stored = store.listing(m.id, listing.id).await.unwrap().unwrap();
    assert_eq!(stored.fulfilment, fulfilment);
    assert_eq!(stored.true_transit, Some(transit));
    assert!(
        !serde_json::to_string(&stored)
            .unwrap()
            .contains("delivery_ms")
    );
    let deal = m
        .deal(seller, m.bid(buyer, listing.id, 2_000).await.id)
        .await;
    assert_eq!(deal.price, 2_450);
    assert_eq!(deal.snapshot.fulfilment, fulfilment);
    m.ok(Command::Ship {
        actor: seller,
        deal: deal.id,
        carrier: "DHL".into(),
        tracking: "JJD01".into(),
    })
    .await;
    let shipped = store.deal(m.id, deal.id).await.unwrap().unwrap();
    let s = shipped.shipping.clone().expect("a shipped deal");
    assert_eq!(
        (s.status, s.carrier.as_deref(), s.tracking.as_deref()),
        (ShippingStatus::Shipped, Some("DHL"), Some("JJD01"))
    );
    assert!(shipped.arrives_at.is_some());
    m.ok(Command::AdvanceClock { by_ms: 5 * HOUR_MS }).await;
    let delivered = store.deal(m.id, deal.id).await.unwrap().unwrap();
    let s = delivered.shipping.clone().expect("a shipped deal");
    assert_eq!(s.status, ShippingStatus::Delivered);
    assert_eq!(delivered.arrives_at, None, "delivered once");
    assert_eq!(delivered.status, DealStatus::HandedOver);
    m.ok(Command::ConfirmReceipt {
        actor: buyer,
        deal: deal.id,
    })
    .await;
    let done = store.deal(m.id, deal.id).await.unwrap().unwrap();
    assert_eq!(done.status, DealStatus::Completed);
    assert_eq!(done.resolution.map(|r| r.to_seller), Some(2_450));
    m.verified().await;
}
