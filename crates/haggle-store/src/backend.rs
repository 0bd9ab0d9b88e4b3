// The store, written once for both databases. This file is `include!`d by `lib.rs` into the
// `sqlite` and `postgres` modules, where `Db` names the database and `dialect` its differences.
// A LIMIT computed here is written into the SQL text, never bound: SQLite re-plans a statement
// on every new binding of a LIMIT parameter (measured: ~30 µs per run of a paged read, more than
// the read itself), while a literal keeps the cached plan.
// `ORDER BY +id` (and `+id <`) on a read of a few rows by another index keeps SQLite's planner
// off the primary key (market_id, id): without statistics it walked a market's whole table in id
// order to save sorting the few rows (measured: a thread's live offer, a listing's live offers
// and open threads grew linear in the market's offers: `bench api` +13-27% on SQLite).

use crate::row::{json, parsed, search_text, to_json};
use crate::memory::MarketMemory;
use crate::shelves::{MarketShelves, ShelfQuery};
use haggle_core::event::{self, ChainCheck, EventBody, EventDraft, StoredPayload};
use haggle_core::ledger::{self, Account, Transfer, TransferKind};
use haggle_core::model::{
    ActedBy, Approver, Deal, DealNote, DealStatus, Listing, ListingStatus, Message, Offer, OfferState, Participant, Rating, Side,
    Thread, ThreadStatus, Funds,
};
use haggle_core::lifecycle;
use haggle_core::negotiation::{self as rules, Scene};
use haggle_core::limits::{STORE_READ_ROWS, SWEEP_ROWS};
use haggle_core::policy;
use haggle_core::{Change, Plan, Visibility, GENESIS_HASH};
use sqlx::Row;
use std::sync::Arc;

type Conn = <Db as sqlx::Database>::Connection;
type DbRow = <Db as sqlx::Database>::Row;

/// One backend's connection pool (and, for SQLite, its in-process writer queue).
#[derive(Clone)]
pub struct Backend {
    pool: sqlx::Pool<Db>,
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Listings in memory for search, by market (see `shelves.rs`): only when this store is its
    /// database's sole writer.
    shelves: Option<Arc<std::sync::Mutex<Shelves>>>,
    /// Markets' hot rows in memory (see `memory.rs`): only when this store is the sole writer.
    memory: Option<Arc<std::sync::Mutex<Memory>>>,
    /// Group commit on the server path (`group_backend.rs`): absent in a batched store, which
    /// commits its own groups.
    lanes: Option<Arc<Lanes>>,
}

/// One command's work, before its transaction or savepoint is ended.
struct Attempt {
    ran: Ran,
    /// Whether its writes stay (a refusal without an idempotency key leaves nothing).
    keep: bool,
    /// The plan's changes (and clock) the memory of a sole-writer store follows.
    kept: Option<(Vec<Change>, i64)>,
    /// Whether the market's listeners are to hear of new events (`notify_events`) before the
    /// commit: once per transaction is enough, so a group commit sends it once per batch.
    notify: bool,
}

/// The markets remembered so far, and a count of commits: a market read from the tables is kept
/// only if no command committed between the read and the keeping.
#[derive(Default)]
struct Memory {
    markets: std::collections::HashMap<i64, MarketMemory>,
    commits: u64,
}

/// The markets shelved so far, and a count of the commits that changed listings: a market read
/// from the table is kept only if no such commit came between the read and the keeping.
#[derive(Default)]
struct Shelves {
    markets: std::collections::HashMap<i64, MarketShelves>,
    changes: u64,
}

/// The write-locked head of a market: the counters every command allocates from.
struct Head {
    market: Market,
    next_id: i64,
    last_seq: i64,
    last_hash: String,
}

const MARKET_COLS: &str = "id, name, currency, clock_mode, sim_now, rules, created_at, next_id, last_seq, last_hash";
const PARTICIPANT_COLS: &str = "market_id, id, name, mandate, created_at, suspension";
const LISTING_COLS: &str = "market_id, id, owner, side, title, description, category, item_condition, price, attributes, status, created_at, first_offer_at, claims, true_state, fulfilment, true_transit";
const THREAD_COLS: &str = "market_id, id, listing_id, owner, counterparty, status, offers_made, last_offer_by, created_at, deadline";
const MESSAGE_COLS: &str = "market_id, id, thread_id, author, body, created_at";
const OFFER_COLS: &str = "market_id, id, thread_id, listing_id, proposer, buyer, seller, price, state, created_at, expires_at";
const DEAL_COLS: &str = "market_id, id, listing_id, thread_id, offer_id, buyer, seller, price, status, snapshot, created_at, approval_deadline, handover_note, handed_over_at, confirm_deadline, cancel_requested_by, finished_at, resolution, approval_from, inspection, dispute, shipping, arrives_at";
const NOTE_COLS: &str = "market_id, id, deal_id, author, kind, body, created_at";
const RATING_COLS: &str = "market_id, id, deal_id, rater, ratee, score, comment, created_at";
const EVENT_COLS: &str = "market_id, seq, at, kind, actor, acted_by, scope, party_a, party_b, payload, prev_hash, hash";

fn sql(s: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(s)
}

/// A listing's insert, with the dialect's words column (`dialect::LISTING_DOC`) if it has one.
static INSERT_LISTING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let (column, value) = dialect::LISTING_DOC;
    format!("INSERT INTO listings (market_id, id, owner, side, title, description, category, item_condition, price, attributes, status, created_at, first_offer_at, search_text, claims, true_state, fulfilment, true_transit{column}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18{value})")
});

/// Fills the `tsvector` of every listing without one (PostgreSQL's migration 11, the only caller:
/// the words are Rust's, see `search::tsvector`), a thousand rows at a time.
async fn fill_search_docs(c: &mut Conn) -> StoreResult<()> {
    loop {
        let rows = sqlx::query("SELECT market_id, id, title, description, search_text FROM listings WHERE search_doc IS NULL ORDER BY market_id, id LIMIT 1000")
            .fetch_all(&mut *c).await?;
        if rows.is_empty() {
            return Ok(());
        }
        for r in &rows {
            let doc = crate::search::tsvector(&r.try_get::<String, _>("title")?, &r.try_get::<String, _>("description")?, &r.try_get::<String, _>("search_text")?);
            sqlx::query("UPDATE listings SET search_doc = $3::tsvector WHERE market_id = $1 AND id = $2")
                .bind(r.try_get::<i64, _>("market_id")?).bind(r.try_get::<i64, _>("id")?).bind(doc).execute(&mut *c).await?;
        }
    }
}

fn market_row(r: &DbRow) -> StoreResult<Head> {
    let market = Market {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        currency: r.try_get("currency")?,
        clock_mode: parsed("clock_mode", &r.try_get::<String, _>("clock_mode")?, ClockMode::parse)?,
        sim_now: r.try_get("sim_now")?,
        rules: json("rules", &r.try_get::<String, _>("rules")?)?,
        created_at: r.try_get("created_at")?,
    };
    Ok(Head { market, next_id: r.try_get("next_id")?, last_seq: r.try_get("last_seq")?, last_hash: r.try_get("last_hash")? })
}

fn participant_row(r: &DbRow) -> StoreResult<Participant> {
    Ok(Participant {
        market_id: r.try_get("market_id")?,
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        mandate: json("mandate", &r.try_get::<String, _>("mandate")?)?,
        created_at: r.try_get("created_at")?,
        suspension: r.try_get::<Option<String>, _>("suspension")?.map(|s| json("suspension", &s)).transpose()?,
    })
}

fn listing_row(r: &DbRow) -> StoreResult<Listing> {
    Ok(Listing {
        market_id: r.try_get("market_id")?,
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        side: parsed("side", &r.try_get::<String, _>("side")?, Side::parse)?,
        title: r.try_get("title")?,
        description: r.try_get("description")?,
        category: r.try_get("category")?,
        condition: r.try_get("item_condition")?,
        price: r.try_get("price")?,
        attributes: json("attributes", &r.try_get::<String, _>("attributes")?)?,
        status: parsed("status", &r.try_get::<String, _>("status")?, ListingStatus::parse)?,
        created_at: r.try_get("created_at")?,
        first_offer_at: r.try_get("first_offer_at")?,
        claims: json("claims", &r.try_get::<String, _>("claims")?)?,
        true_state: r.try_get::<Option<String>, _>("true_state")?.as_deref().map(|s| json("true_state", s)).transpose()?,
        // NULL: in person (every listing stored before shipping).
        fulfilment: r.try_get::<Option<String>, _>("fulfilment")?.as_deref().map(|s| json("fulfilment", s)).transpose()?.unwrap_or_default(),
        true_transit: r.try_get::<Option<String>, _>("true_transit")?.as_deref().map(|s| json("true_transit", s)).transpose()?,
    })
}

/// The stored `fulfilment`: NULL in person, as every listing stored before shipping existed.
fn fulfilment_col(f: &haggle_core::Fulfilment) -> Option<String> {
    (!f.is_in_person()).then(|| to_json(f))
}

fn thread_row(r: &DbRow) -> StoreResult<Thread> {
    Ok(Thread {
        market_id: r.try_get("market_id")?,
        id: r.try_get("id")?,
        listing_id: r.try_get("listing_id")?,
        owner: r.try_get("owner")?,
        counterparty: r.try_get("counterparty")?,
        status: parsed("status", &r.try_get::<String, _>("status")?, ThreadStatus::parse)?,
        offers_made: u32::try_from(r.try_get::<i64, _>("offers_made")?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        last_offer_by: r.try_get("last_offer_by")?,
        created_at: r.try_get("created_at")?,
        deadline: r.try_get("deadline")?,
    })
}

fn message_row(r: &DbRow) -> StoreResult<Message> {
    Ok(Message {
        market_id: r.try_get("market_id")?,
        id: r.try_get("id")?,
        thread_id: r.try_get("thread_id")?,
        author: r.try_get("author")?,
        body: r.try_get("body")?,
        created_at: r.try_get("created_at")?,
    })
}

fn offer_row(r: &DbRow) -> StoreResult<Offer> {
    Ok(Offer {
        market_id: r.try_get("market_id")?,
        id: r.try_get("id")?,
        thread_id: r.try_get("thread_id")?,
        listing_id: r.try_get("listing_id")?,
        proposer: r.try_get("proposer")?,
        buyer: r.try_get("buyer")?,
        seller: r.try_get("seller")?,
        price: r.try_get("price")?,
        state: parsed("state", &r.try_get::<String, _>("state")?, OfferState::parse)?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

fn deal_row(r: &DbRow) -> StoreResult<Deal> {
    let resolution: Option<String> = r.try_get("resolution")?;
    Ok(Deal {
        market_id: r.try_get("market_id")?,
        id: r.try_get("id")?,
        listing_id: r.try_get("listing_id")?,
        thread_id: r.try_get("thread_id")?,
        offer_id: r.try_get("offer_id")?,
        buyer: r.try_get("buyer")?,
        seller: r.try_get("seller")?,
        price: r.try_get("price")?,
        status: parsed("status", &r.try_get::<String, _>("status")?, DealStatus::parse)?,
        snapshot: json("snapshot", &r.try_get::<String, _>("snapshot")?)?,
        created_at: r.try_get("created_at")?,
        approval_deadline: r.try_get("approval_deadline")?,
        handover_note: r.try_get("handover_note")?,
        handed_over_at: r.try_get("handed_over_at")?,
        confirm_deadline: r.try_get("confirm_deadline")?,
        cancel_requested_by: r.try_get("cancel_requested_by")?,
        finished_at: r.try_get("finished_at")?,
        resolution: resolution.as_deref().map(|s| json("resolution", s)).transpose()?,
        // NULL: the buyer's (every deal stored before seller mandates).
        approval_from: r.try_get::<Option<String>, _>("approval_from")?.map(|a| parsed("approval_from", &a, Approver::parse)).transpose()?.unwrap_or_default(),
        inspection: r.try_get::<Option<String>, _>("inspection")?.as_deref().map(|s| json("inspection", s)).transpose()?,
        dispute: r.try_get::<Option<String>, _>("dispute")?.as_deref().map(|s| json("dispute", s)).transpose()?,
        payment: None,
        shipping: r.try_get::<Option<String>, _>("shipping")?.as_deref().map(|s| json("shipping", s)).transpose()?,
        arrives_at: r.try_get("arrives_at")?,
    })
}

/// The stored `approval_from`: NULL for the buyer's, as in every deal stored before it existed.
fn approval_col(a: Approver) -> Option<&'static str> {
    (a != Approver::Buyer).then_some(a.as_str())
}

fn note_row(r: &DbRow) -> StoreResult<DealNote> {
    Ok(DealNote {
        market_id: r.try_get("market_id")?,
        id: r.try_get("id")?,
        deal_id: r.try_get("deal_id")?,
        author: r.try_get("author")?,
        kind: r.try_get("kind")?,
        body: r.try_get("body")?,
        created_at: r.try_get("created_at")?,
    })
}

fn rating_row(r: &DbRow) -> StoreResult<Rating> {
    let score: i64 = r.try_get("score")?;
    Ok(Rating {
        market_id: r.try_get("market_id")?,
        id: r.try_get("id")?,
        deal_id: r.try_get("deal_id")?,
        rater: r.try_get("rater")?,
        ratee: r.try_get("ratee")?,
        score: u8::try_from(score).map_err(|e| StoreError::Corrupt(format!("score {score}: {e}")))?,
        comment: r.try_get("comment")?,
        created_at: r.try_get("created_at")?,
    })
}

fn event_row(r: &DbRow) -> StoreResult<Event> {
    let scope: String = r.try_get("scope")?;
    let parties: Vec<i64> = [r.try_get::<Option<i64>, _>("party_a")?, r.try_get::<Option<i64>, _>("party_b")?].into_iter().flatten().collect();
    let visibility = match scope.as_str() {
        "public" => Visibility::Public,
        "parties" => Visibility::Parties(parties),
        "operators" => Visibility::Operators,
        other => return Err(StoreError::Corrupt(format!("column scope: unknown value '{other}'"))),
    };
    let (seq, kind): (i64, String) = (r.try_get("seq")?, r.try_get("kind")?);
    // A kind this version does not know, or a payload that does not fit it, is refused loudly.
    let payload: String = r.try_get("payload")?;
    let body = EventBody::from_stored(&kind, &payload).map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
    let stored = StoredPayload::read(payload).map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
    Ok(Event {
        market_id: r.try_get("market_id")?,
        seq,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        by: parsed("acted_by", &r.try_get::<String, _>("acted_by")?, ActedBy::parse)?,
        visibility,
        body,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
        stored,
    })
}

fn transfer_row(r: &DbRow) -> StoreResult<Transfer> {
    Ok(Transfer {
        market_id: r.try_get("market_id")?,
        id: r.try_get("id")?,
        debit: parsed("debit", &r.try_get::<String, _>("debit")?, Account::parse)?,
        credit: parsed("credit", &r.try_get::<String, _>("credit")?, Account::parse)?,
        amount: r.try_get("amount")?,
        kind: parsed("kind", &r.try_get::<String, _>("kind")?, TransferKind::parse)?,
        deal_id: r.try_get("deal_id")?,
        at: r.try_get("at")?,
        idempotency_id: r.try_get("idempotency_id")?,
    })
}


/// Rows of `table` after `after` in id order, optionally only one party's: then one index range
/// scan per party column (`owner`/`counterparty`, `buyer`/`seller`: never the same participant),
/// merged in id order (`UNION ALL`). `a = p OR b = p` instead lets the planner walk the whole
/// table in id order, so the cost would follow the market's size, not the party's activity.
#[allow(clippy::too_many_arguments)]
fn party_rows(table: &str, cols: &str, party_columns: &[&str; 2], market: i64, party: Option<i64>, after: i64, limit: i64, filter: impl Fn(&mut sqlx::QueryBuilder<Db>)) -> sqlx::QueryBuilder<Db> {
    let mut b = sqlx::QueryBuilder::<Db>::new("SELECT * FROM (");
    let columns: &[&str] = match party {
        Some(_) => party_columns,
        None => &[""],
    };
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            b.push(" UNION ALL ");
        }
        b.push(format!("SELECT {cols} FROM {table} WHERE market_id = ")).push_bind(market);
        if let Some(p) = party {
            b.push(format!(" AND {column} = ")).push_bind(p);
        }
        b.push(" AND id > ").push_bind(after);
        filter(&mut b);
    }
    b.push(format!(") AS party_rows ORDER BY id LIMIT {limit}"));
    b
}

/// One bounded range scan of an events page: the events naming a party in one of its columns, or
/// the market's public events (`events_public`, a partial index of their own).
#[derive(Clone, Copy)]
enum EventBranch {
    PartyA(i64),
    PartyB(i64),
    Public,
}

/// Restricts an events query to its branches' events after `after`: `AND seq IN (union of one
/// bounded range scan per branch)`. Unlike `party_rows`, the branches overlap (an event may name
/// the same participant twice, and public events), so the union removes duplicates;
/// `party_a = p OR party_b = p` would walk every event after `after`, a whole market's log, and
/// so would `scope = 'public'` beside the page's own `seq > after` (the planner prefers the
/// primary key without statistics).
fn push_event_branches(b: &mut sqlx::QueryBuilder<Db>, branches: &[EventBranch], market: i64, after: i64, limit: i64) {
    b.push(" AND seq IN (");
    for (i, branch) in branches.iter().enumerate() {
        if i > 0 {
            b.push(" UNION ");
        }
        b.push("SELECT seq FROM (SELECT seq FROM events WHERE market_id = ").push_bind(market);
        match *branch {
            EventBranch::PartyA(p) => b.push(" AND party_a = ").push_bind(p),
            EventBranch::PartyB(p) => b.push(" AND party_b = ").push_bind(p),
            EventBranch::Public => b.push(" AND scope = 'public'"),
        };
        b.push(" AND seq > ").push_bind(after);
        b.push(format!(" ORDER BY seq LIMIT {limit}) AS branch{i}"));
    }
    b.push(")");
}

/// A viewer's page of events after `after`, in sequence order (see `Backend::events`).
fn events_after(market: i64, viewer: Viewer, after: i64, limit: u32) -> sqlx::QueryBuilder<Db> {
    use EventBranch::*;
    let limit = limit.clamp(1, STORE_READ_ROWS) as i64;
    let mut b = sqlx::QueryBuilder::<Db>::new(format!("SELECT {EVENT_COLS} FROM events WHERE market_id = "));
    b.push_bind(market);
    match viewer {
        Viewer::All => {
            b.push(" AND seq > ").push_bind(after);
        }
        Viewer::Public => push_event_branches(&mut b, &[Public], market, after, limit),
        Viewer::Participant(p) => push_event_branches(&mut b, &[PartyA(p), PartyB(p), Public], market, after, limit),
        Viewer::Own(p) => push_event_branches(&mut b, &[PartyA(p), PartyB(p)], market, after, limit),
    }
    b.push(format!(" ORDER BY seq LIMIT {limit}"));
    b
}

/// The columns of a buyer's funds (`$1` market, `$2` participant, `$3` now, `$4` its available
/// account), for a query of their own or beside the participant's row. Held and spent come from
/// the buyer's row of `buyer_funds`, kept by triggers as its deals change (one row, not a sum
/// over every deal the buyer ever made; `Store::verify` compares the two).
const FUNDS_COLS: &str = "CAST(COALESCE((SELECT balance FROM accounts WHERE market_id = $1 AND account = $4), 0) AS BIGINT) AS cash, \
     CAST(COALESCE((SELECT SUM(price) FROM offers WHERE market_id = $1 AND buyer = $2 AND proposer = $2 AND state = 'live' AND expires_at > $3), 0) AS BIGINT) AS committed, \
     CAST(COALESCE((SELECT held FROM buyer_funds WHERE market_id = $1 AND buyer = $2), 0) AS BIGINT) AS held, \
     CAST(COALESCE((SELECT spent FROM buyer_funds WHERE market_id = $1 AND buyer = $2), 0) AS BIGINT) AS spent";

/// Where the buyers' kept sums (`buyer_funds`: buyer → held, spent) differ from their deals'.
fn buyer_funds_breaches(deals: &[Deal], kept: &std::collections::BTreeMap<i64, (i64, i64)>) -> Vec<String> {
    let mut sums: std::collections::BTreeMap<i64, (i64, i64)> = std::collections::BTreeMap::new();
    for d in deals {
        let (s, (held, spent)) = (sums.entry(d.buyer).or_default(), d.buyer_share());
        s.0 += held;
        s.1 += spent;
    }
    let buyers: std::collections::BTreeSet<i64> = sums.keys().chain(kept.keys()).copied().collect();
    buyers
        .into_iter()
        .filter_map(|b| {
            let (want, have) = (sums.get(&b).copied().unwrap_or_default(), kept.get(&b).copied().unwrap_or_default());
            (want != have).then(|| format!("buyer_funds_match_deals: buyer {b} has held {} and spent {} kept, but its deals say {} and {}", have.0, have.1, want.0, want.1))
        })
        .collect()
}

fn funds_row(r: &DbRow) -> StoreResult<Funds> {
    Ok(Funds { cash: r.try_get("cash")?, committed: r.try_get("committed")?, held: r.try_get("held")?, spent: r.try_get("spent")? })
}

/// A buyer's money as the rules read it (see `haggle_core::Funds`), in one round trip.
async fn funds(c: &mut Conn, market: i64, p: i64, now: i64) -> StoreResult<Funds> {
    let r = sqlx::query(sql(format!("SELECT {FUNDS_COLS}")))
        .bind(market).bind(p).bind(now).bind(Account::Available(p).key()).fetch_one(&mut *c).await?;
    funds_row(&r)
}

/// A participant and its funds in one round trip (`None` when it does not exist).
async fn participant_funds(c: &mut Conn, market: i64, p: i64, now: i64) -> StoreResult<Option<(Participant, Funds)>> {
    let r = sqlx::query(sql(format!("SELECT {PARTICIPANT_COLS}, {FUNDS_COLS} FROM participants WHERE market_id = $1 AND id = $2")))
        .bind(market).bind(p).bind(now).bind(Account::Available(p).key()).fetch_optional(&mut *c).await?;
    r.map(|r| Ok((participant_row(&r)?, funds_row(&r)?))).transpose()
}

async fn get_participant(c: &mut Conn, market: i64, id: i64) -> StoreResult<Option<Participant>> {
    let r = sqlx::query(sql(format!("SELECT {PARTICIPANT_COLS} FROM participants WHERE market_id = $1 AND id = $2")))
        .bind(market).bind(id).fetch_optional(&mut *c).await?;
    r.as_ref().map(participant_row).transpose()
}

async fn get_listing(c: &mut Conn, market: i64, id: i64) -> StoreResult<Option<Listing>> {
    let r = sqlx::query(sql(format!("SELECT {LISTING_COLS} FROM listings WHERE market_id = $1 AND id = $2")))
        .bind(market).bind(id).fetch_optional(&mut *c).await?;
    r.as_ref().map(listing_row).transpose()
}

async fn get_thread(c: &mut Conn, market: i64, id: i64) -> StoreResult<Option<Thread>> {
    let r = sqlx::query(sql(format!("SELECT {THREAD_COLS} FROM threads WHERE market_id = $1 AND id = $2")))
        .bind(market).bind(id).fetch_optional(&mut *c).await?;
    r.as_ref().map(thread_row).transpose()
}

async fn thread_of(c: &mut Conn, market: i64, listing: i64, counterparty: i64) -> StoreResult<Option<Thread>> {
    let r = sqlx::query(sql(format!("SELECT {THREAD_COLS} FROM threads WHERE market_id = $1 AND listing_id = $2 AND counterparty = $3")))
        .bind(market).bind(listing).bind(counterparty).fetch_optional(&mut *c).await?;
    r.as_ref().map(thread_row).transpose()
}

async fn get_deal(c: &mut Conn, market: i64, id: i64) -> StoreResult<Option<Deal>> {
    let r = sqlx::query(sql(format!("SELECT {DEAL_COLS} FROM deals WHERE market_id = $1 AND id = $2")))
        .bind(market).bind(id).fetch_optional(&mut *c).await?;
    r.as_ref().map(deal_row).transpose()
}

async fn deal_ratings(c: &mut Conn, market: i64, deal: i64) -> StoreResult<Vec<Rating>> {
    let rows = sqlx::query(sql(format!("SELECT {RATING_COLS} FROM ratings WHERE market_id = $1 AND deal_id = $2 ORDER BY +id")))
        .bind(market).bind(deal).fetch_all(&mut *c).await?;
    rows.iter().map(rating_row).collect()
}

async fn get_offer(c: &mut Conn, market: i64, id: i64) -> StoreResult<Option<Offer>> {
    let r = sqlx::query(sql(format!("SELECT {OFFER_COLS} FROM offers WHERE market_id = $1 AND id = $2")))
        .bind(market).bind(id).fetch_optional(&mut *c).await?;
    r.as_ref().map(offer_row).transpose()
}

async fn live_offer_in(c: &mut Conn, market: i64, thread: i64) -> StoreResult<Option<Offer>> {
    let rows = sqlx::query(sql(format!("SELECT {OFFER_COLS} FROM offers WHERE market_id = $1 AND thread_id = $2 AND state = 'live' ORDER BY +id")))
        .bind(market).bind(thread).fetch_all(&mut *c).await?;
    let live = rows.iter().map(offer_row).collect::<StoreResult<Vec<_>>>()?;
    the_live_offer(thread, live)
}

/// Asserts where the data is read back: a thread has at most one live offer.
fn the_live_offer(thread: i64, mut live: Vec<Offer>) -> StoreResult<Option<Offer>> {
    if live.len() > 1 {
        return Err(StoreError::Invariant(format!("thread {thread} has {} live offers", live.len())));
    }
    Ok(live.pop())
}

async fn listing_live_offers(c: &mut Conn, market: i64, listing: i64) -> StoreResult<Vec<Offer>> {
    let rows = sqlx::query(sql(format!("SELECT {OFFER_COLS} FROM offers WHERE market_id = $1 AND listing_id = $2 AND state = 'live' ORDER BY +id")))
        .bind(market).bind(listing).fetch_all(&mut *c).await?;
    rows.iter().map(offer_row).collect()
}

async fn listing_open_threads(c: &mut Conn, market: i64, listing: i64) -> StoreResult<Vec<Thread>> {
    let rows = sqlx::query(sql(format!("SELECT {THREAD_COLS} FROM threads WHERE market_id = $1 AND listing_id = $2 AND status = 'open' ORDER BY +id")))
        .bind(market).bind(listing).fetch_all(&mut *c).await?;
    rows.iter().map(thread_row).collect()
}

/// Loads the buyer of a thread on `listing` with `counterparty` into the scene (`actor_funds`:
/// the actor's, when `load_actor` read them).
async fn load_buyer(b: &Backend, c: &mut Conn, s: &mut Scene, counterparty: i64, actor_funds: Option<Funds>) -> StoreResult<()> {
    let Some(l) = &s.listing else { return Ok(()) };
    let buyer = l.buyer_with(counterparty);
    let (m, now) = (s.market.id, s.now);
    s.buyer = match s.actor.clone().filter(|a| a.id == buyer) {
        // The actor's row (and funds), read at the command's start (same transaction, under the
        // lock, nothing written since).
        Some(p) => Some((p, match actor_funds { Some(f) => f, None => funds_in(b, c, m, buyer, now).await? })),
        None if b.memory.is_some() => match participant_in(b, c, m, buyer).await? {
            Some(p) => Some((p, funds_in(b, c, m, buyer, now).await?)),
            None => None,
        },
        None => participant_funds(c, m, buyer, now).await?,
    };
    Ok(())
}

/// A participant, from the scene's actor when it is the one asked for.
async fn participant_or_actor(b: &Backend, c: &mut Conn, s: &Scene, id: i64) -> StoreResult<Option<Participant>> {
    match s.actor.as_ref().filter(|a| a.id == id) {
        Some(a) => Ok(Some(a.clone())),
        None => participant_in(b, c, s.market.id, id).await,
    }
}

/// Loads a deal and its listing into the scene; `None` when the deal does not exist.
async fn load_deal(b: &Backend, c: &mut Conn, s: &mut Scene, deal: i64) -> StoreResult<Option<()>> {
    let Some(d) = deal_in(b, c, s.market.id, deal).await? else { return Ok(None) };
    s.listing = listing_in(b, c, s.market.id, d.listing_id).await?;
    s.deal = Some(d);
    Ok(Some(()))
}

/// Turns a missing row into the refusal `not_found` (inside a successful store call).
macro_rules! need {
    ($opt:expr, $($msg:tt)*) => {
        match $opt {
            Some(v) => v,
            None => return Ok(Err(DomainError::not_found(format!($($msg)*)))),
        }
    };
}

/// Loads the command's actor into the scene (a refusal when it does not exist), with its funds
/// in the same round trip for the commands whose actor is mostly the buyer (opening a thread,
/// accepting an offer) when they are read from the tables.
async fn load_actor(b: &Backend, c: &mut Conn, s: &mut Scene, cmd: &Command) -> StoreResult<Result<Option<Funds>, DomainError>> {
    let Some(a) = cmd.actor() else { return Ok(Ok(None)) };
    let m = s.market.id;
    let (actor, funds) = if b.memory.is_none() && matches!(cmd, Command::OpenThread { .. } | Command::AcceptOffer { .. }) {
        participant_funds(c, m, a, s.now).await?.map_or((None, None), |(p, f)| (Some(p), Some(f)))
    } else {
        (participant_in(b, c, m, a).await?, None)
    };
    s.actor = Some(need!(actor, "participant {a} not found in market {m}"));
    Ok(Ok(funds))
}

/// A participant, from the market's memory when it is remembered.
async fn participant_in(b: &Backend, c: &mut Conn, market: i64, id: i64) -> StoreResult<Option<Participant>> {
    match b.remembered(market, |m| m.participant(id).cloned()) {
        Some(p) => Ok(p),
        None => get_participant(c, market, id).await,
    }
}

/// A buyer's funds, from the market's memory when it is remembered.
async fn funds_in(b: &Backend, c: &mut Conn, market: i64, p: i64, now: i64) -> StoreResult<Funds> {
    match b.remembered(market, |m| m.funds(p, now)) {
        Some(f) => Ok(f),
        None => funds(c, market, p, now).await,
    }
}

/// A listing, from the shelves when its market is shelved. (Scene reads only: a command's own
/// changes reach memory after its commit.)
async fn listing_in(b: &Backend, c: &mut Conn, market: i64, id: i64) -> StoreResult<Option<Listing>> {
    match b.shelved(market, |s| s.row(id).cloned()) {
        Some(Some(l)) => Ok(Some(l)),
        _ => get_listing(c, market, id).await,
    }
}

async fn thread_in(b: &Backend, c: &mut Conn, market: i64, id: i64) -> StoreResult<Option<Thread>> {
    match b.remembered(market, |m| m.thread(id).cloned()) {
        Some(t) => Ok(t),
        None => get_thread(c, market, id).await,
    }
}

/// `counterparty`'s thread on `listing`.
async fn thread_of_in(b: &Backend, c: &mut Conn, market: i64, listing: i64, counterparty: i64) -> StoreResult<Option<Thread>> {
    match b.remembered(market, |m| m.thread_on(listing, counterparty)) {
        Some(t) => Ok(t),
        None => thread_of(c, market, listing, counterparty).await,
    }
}

/// A thread's live offer, from memory in a simulation's store.
async fn live_offer_of(b: &Backend, c: &mut Conn, market: i64, thread: i64) -> StoreResult<Option<Offer>> {
    match b.remembered(market, |m| m.live_offers_in(thread)) {
        Some(live) => the_live_offer(thread, live),
        None => live_offer_in(c, market, thread).await,
    }
}

/// The messages and offers `$3` has posted in thread `$2`. The thread's index is the one to walk
/// (a thread holds a few rows): with no statistics (a server never runs `ANALYZE`), SQLite would
/// take `offers_by_proposer` and visit every offer the party ever made, in any thread (`+proposer`
/// keeps that index out).
const PARTY_POSTS: &str = "SELECT (SELECT COUNT(*) FROM messages WHERE market_id = $1 AND thread_id = $2 AND author = $3) \
     + (SELECT COUNT(*) FROM offers WHERE market_id = $1 AND thread_id = $2 AND +proposer = $3)";

/// Messages and offers `actor` has added to `thread` (the core bounds them per party), from
/// memory in a simulation's store.
async fn party_posts(b: &Backend, c: &mut Conn, market: i64, thread: i64, actor: i64) -> StoreResult<u32> {
    if let Some(n) = b.remembered(market, |m| m.posts_by(thread, actor)) {
        return Ok(n);
    }
    let n: i64 = sqlx::query_scalar(PARTY_POSTS).bind(market).bind(thread).bind(actor).fetch_one(&mut *c).await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The notes `actor` has added to `deal` (the core bounds them per party).
async fn party_notes(c: &mut Conn, market: i64, deal: i64, actor: i64) -> StoreResult<u32> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deal_notes WHERE market_id = $1 AND deal_id = $2 AND author = $3")
        .bind(market).bind(deal).bind(actor).fetch_one(&mut *c).await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

async fn deal_in(b: &Backend, c: &mut Conn, market: i64, id: i64) -> StoreResult<Option<Deal>> {
    match b.remembered(market, |m| m.deal(id).cloned()) {
        Some(d) => Ok(d),
        None => get_deal(c, market, id).await,
    }
}

/// The actor's listings created in the last day and offers made in the last hour of the market
/// clock, for the policy's rate limits: read only while the policy sets them (a market without
/// them pays nothing), and counted only up to the limit.
async fn recent_activity(c: &mut Conn, s: &mut Scene, actor: i64, listings: bool, offers: bool) -> StoreResult<()> {
    let (m, now, policy) = (s.market.id, s.now, &s.market.rules.policy);
    if let Some(n) = policy.max_listings_per_day.filter(|_| listings) {
        let k: i64 = sqlx::query_scalar(sql(format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM listings WHERE market_id = $1 AND owner = $2 AND created_at > $3 LIMIT {n}) AS recent"
        )))
        .bind(m).bind(actor).bind(now.saturating_sub(haggle_core::DAY_MS)).fetch_one(&mut *c).await?;
        s.recent_listings = u32::try_from(k).unwrap_or(u32::MAX);
    }
    if let Some(n) = policy.max_offers_per_hour.filter(|_| offers) {
        let k: i64 = sqlx::query_scalar(sql(format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM offers WHERE market_id = $1 AND proposer = $2 AND created_at > $3 LIMIT {n}) AS recent"
        )))
        .bind(m).bind(actor).bind(now.saturating_sub(haggle_core::HOUR_MS)).fetch_one(&mut *c).await?;
        s.recent_offers = u32::try_from(k).unwrap_or(u32::MAX);
    }
    Ok(())
}

/// What suspending `p` ends: its active and held listings, the live offers it is party to and its
/// open threads (at most `MAX_SUSPENSION_SWEEP` of each).
async fn load_party(c: &mut Conn, s: &mut Scene, p: i64) -> StoreResult<()> {
    let m = s.market.id;
    let cap = policy::MAX_SUSPENSION_SWEEP;
    let rows = sqlx::query(sql(format!("SELECT {LISTING_COLS} FROM listings WHERE market_id = $1 AND owner = $2 AND status IN ('active', 'held') ORDER BY +id LIMIT {cap}")))
        .bind(m).bind(p).fetch_all(&mut *c).await?;
    s.party_listings = rows.iter().map(listing_row).collect::<StoreResult<_>>()?;
    let rows = sqlx::query(sql(format!(
        "SELECT {OFFER_COLS} FROM offers WHERE market_id = $1 AND buyer = $2 AND state = 'live' \
         UNION ALL SELECT {OFFER_COLS} FROM offers WHERE market_id = $1 AND seller = $2 AND buyer <> $2 AND state = 'live' ORDER BY id LIMIT {cap}"
    )))
    .bind(m).bind(p).fetch_all(&mut *c).await?;
    s.party_live_offers = rows.iter().map(offer_row).collect::<StoreResult<_>>()?;
    let rows = sqlx::query(sql(format!(
        "SELECT {THREAD_COLS} FROM threads WHERE market_id = $1 AND owner = $2 AND status = 'open' \
         UNION ALL SELECT {THREAD_COLS} FROM threads WHERE market_id = $1 AND counterparty = $2 AND status = 'open' ORDER BY id LIMIT {cap}"
    )))
    .bind(m).bind(p).fetch_all(&mut *c).await?;
    s.party_open_threads = rows.iter().map(thread_row).collect::<StoreResult<_>>()?;
    Ok(())
}

/// Loads the scene of `cmd` and asks the core. `Ok(Err(_))` is a refusal; `Err(_)` a backend failure.
async fn execute(b: &Backend, c: &mut Conn, head: &Head, now: i64, cmd: Command, plan: &mut Plan) -> StoreResult<Result<Outcome, DomainError>> {
    let m = head.market.id;
    let mut s = Scene::new(head.market.clone(), now);
    s.by = plan.by;
    let actor_funds = match load_actor(b, c, &mut s, &cmd).await? { Ok(f) => f, Err(refused) => return Ok(Err(refused)) };
    let out = match cmd {
        Command::RegisterParticipant { name, mandate, budget } => rules::register_participant(&s, plan, &name, mandate, budget).map(Outcome::Participant),
        Command::Fund { participant, amount } => {
            let p = need!(participant_in(b, c, m, participant).await?, "participant {participant} not found");
            rules::fund(&s, plan, &p, amount).map(|_| Outcome::Done)
        }
        Command::SetTradingMode { participant, mode } => {
            let p = need!(participant_in(b, c, m, participant).await?, "participant {participant} not found");
            rules::set_trading_mode(plan, &p, mode).map(|_| Outcome::Done)
        }
        Command::SetMandate { participant, mandate, author } => {
            let p = need!(participant_in(b, c, m, participant).await?, "participant {participant} not found");
            let f = funds_in(b, c, m, participant, now).await?;
            s.buyer = Some((p.clone(), f));
            let rows = sqlx::query(sql(format!(
                "SELECT {OFFER_COLS}, (SELECT category FROM listings l WHERE l.market_id = o.market_id AND l.id = o.listing_id) AS category \
                 FROM offers o WHERE market_id = $1 AND buyer = $2 AND proposer = $2 AND state = 'live' AND expires_at > $3 ORDER BY id"
            )))
            .bind(m).bind(participant).bind(now).fetch_all(&mut *c).await?;
            for r in &rows {
                s.own_live_offers.push((offer_row(r)?, r.try_get("category")?));
            }
            rules::set_mandate(&s, plan, &p, mandate, author).map(|_| Outcome::Done)
        }
        Command::CreateListing { actor, listing } => {
            recent_activity(c, &mut s, actor, true, false).await?;
            rules::create_listing(&mut s, plan, listing).map(Outcome::Listing)
        }
        Command::WithdrawListing { listing, .. } => {
            s.listing = Some(need!(listing_in(b, c, m, listing).await?, "listing {listing} not found"));
            s.listing_live_offers = listing_live_offers(c, m, listing).await?;
            s.listing_open_threads = listing_open_threads(c, m, listing).await?;
            rules::withdraw_listing(&mut s, plan).map(|_| Outcome::Done)
        }
        Command::OpenThread { actor, listing, message, offer } => {
            s.listing = Some(need!(listing_in(b, c, m, listing).await?, "listing {listing} not found"));
            s.thread = thread_of_in(b, c, m, listing, actor).await?;
            if let Some(t) = &s.thread {
                s.live_offer = live_offer_of(b, c, m, t.id).await?;
                s.party_posts = party_posts(b, c, m, t.id, actor).await?;
            }
            load_buyer(b, c, &mut s, actor, actor_funds).await?;
            recent_activity(c, &mut s, actor, false, offer.is_some()).await?;
            (|| {
                let thread = rules::open_thread(&mut s, plan)?;
                let message = message.map(|b| rules::post_message(&mut s, plan, &b)).transpose()?;
                let offer = offer.map(|o| rules::make_offer(&mut s, plan, o.price, o.expires_in_ms)).transpose()?;
                // The thread as the opening offer left it (offers used, last proposer).
                let thread = s.thread.clone().unwrap_or(thread);
                Ok(Outcome::Thread { thread, message, offer })
            })()
        }
        Command::PostMessage { actor, thread, body } => {
            s.thread = Some(need!(thread_in(b, c, m, thread).await?, "thread {thread} not found"));
            s.party_posts = party_posts(b, c, m, thread, actor).await?;
            rules::post_message(&mut s, plan, &body).map(Outcome::Message)
        }
        Command::MakeOffer { actor, thread, offer } => {
            let t = need!(thread_in(b, c, m, thread).await?, "thread {thread} not found");
            s.party_posts = party_posts(b, c, m, thread, actor).await?;
            s.listing = listing_in(b, c, m, t.listing_id).await?;
            s.live_offer = live_offer_of(b, c, m, t.id).await?;
            let counterparty = t.counterparty;
            s.thread = Some(t);
            load_buyer(b, c, &mut s, counterparty, actor_funds).await?;
            recent_activity(c, &mut s, actor, false, true).await?;
            rules::make_offer(&mut s, plan, offer.price, offer.expires_in_ms).map(Outcome::Offer)
        }
        Command::AcceptOffer { offer, .. } => {
            let o = need!(get_offer(c, m, offer).await?, "offer {offer} not found");
            let t = need!(thread_in(b, c, m, o.thread_id).await?, "thread {} not found", o.thread_id);
            s.listing = listing_in(b, c, m, o.listing_id).await?;
            s.listing_live_offers = listing_live_offers(c, m, o.listing_id).await?;
            s.listing_open_threads = listing_open_threads(c, m, o.listing_id).await?;
            let counterparty = t.counterparty;
            s.thread = Some(t);
            s.offer = Some(o);
            load_buyer(b, c, &mut s, counterparty, actor_funds).await?;
            if let Some(l) = &s.listing {
                s.seller = participant_or_actor(b, c, &s, l.seller_with(counterparty)).await?;
            }
            rules::accept_offer(&mut s, plan).map(Outcome::Deal)
        }
        Command::RejectOffer { offer, .. } | Command::WithdrawOffer { offer, .. } => {
            let o = need!(get_offer(c, m, offer).await?, "offer {offer} not found");
            s.thread = thread_in(b, c, m, o.thread_id).await?;
            s.offer = Some(o);
            if matches!(cmd, Command::RejectOffer { .. }) {
                rules::reject_offer(&mut s, plan).map(|_| Outcome::Done)
            } else {
                rules::withdraw_offer(&mut s, plan).map(|_| Outcome::Done)
            }
        }
        Command::WalkAway { thread, .. } => {
            let t = need!(thread_in(b, c, m, thread).await?, "thread {thread} not found");
            s.live_offer = live_offer_of(b, c, m, t.id).await?;
            s.thread = Some(t);
            rules::walk_away(&mut s, plan).map(|_| Outcome::Done)
        }
        Command::HandOver { deal, note, .. } => {
            need!(load_deal(b, c, &mut s, deal).await?, "deal {deal} not found");
            lifecycle::hand_over(&mut s, plan, note.as_deref()).map(Outcome::DealUpdated)
        }
        Command::Ship { deal, carrier, tracking, .. } => {
            need!(load_deal(b, c, &mut s, deal).await?, "deal {deal} not found");
            lifecycle::ship(&mut s, plan, &carrier, &tracking).map(Outcome::DealUpdated)
        }
        Command::ConfirmReceipt { deal, .. } => {
            need!(load_deal(b, c, &mut s, deal).await?, "deal {deal} not found");
            lifecycle::confirm_receipt(&mut s, plan).map(|_| Outcome::DealChanged(deal))
        }
        Command::CancelDeal { deal, reason, .. } => {
            need!(load_deal(b, c, &mut s, deal).await?, "deal {deal} not found");
            lifecycle::cancel(&mut s, plan, reason.as_deref()).map(|_| Outcome::DealChanged(deal))
        }
        Command::Dispute { deal, reason, grounds, .. } => {
            need!(load_deal(b, c, &mut s, deal).await?, "deal {deal} not found");
            lifecycle::dispute_on(&mut s, plan, &reason, grounds).map(|_| Outcome::DealChanged(deal))
        }
        Command::ReportInspection { deal, mismatched, .. } => {
            need!(load_deal(b, c, &mut s, deal).await?, "deal {deal} not found");
            lifecycle::report_inspection(&mut s, plan, mismatched).map(Outcome::DealUpdated)
        }
        Command::AddEvidence { author, deal, body } => {
            need!(load_deal(b, c, &mut s, deal).await?, "deal {deal} not found");
            if let Some(a) = author {
                s.party_notes = party_notes(c, m, deal, a).await?;
            }
            lifecycle::add_evidence(&mut s, plan, &body).map(Outcome::Note)
        }
        Command::ResolveDispute { deal, ruling, note, .. } => {
            need!(load_deal(b, c, &mut s, deal).await?, "deal {deal} not found");
            lifecycle::resolve(&mut s, plan, ruling, &note).map(|_| Outcome::DealChanged(deal))
        }
        Command::DecideApproval { deal, approve, .. } => {
            need!(load_deal(b, c, &mut s, deal).await?, "deal {deal} not found");
            lifecycle::decide_approval(&mut s, plan, approve).map(|_| Outcome::DealChanged(deal))
        }
        Command::Rate { deal, score, comment, .. } => {
            need!(load_deal(b, c, &mut s, deal).await?, "deal {deal} not found");
            s.ratings = deal_ratings(c, m, deal).await?;
            lifecycle::rate(&mut s, plan, score, &comment).map(Outcome::Rating)
        }
        Command::AdvanceClock { by_ms } => {
            if head.market.clock_mode != ClockMode::Simulated {
                return Ok(Err(DomainError::invalid_request("only a simulated clock can be advanced")));
            }
            if !(1..=366 * haggle_core::DAY_MS).contains(&by_ms) {
                return Ok(Err(DomainError::invalid_request("by_ms must be between 1 ms and 366 days")));
            }
            s.now = match now.checked_add(by_ms).filter(|t| *t <= haggle_core::MAX_TIMESTAMP) {
                Some(t) => t,
                None => return Ok(Err(DomainError::invalid_request("by_ms would move the simulated clock past 9999-12-31"))),
            };
            plan.now = s.now;
            plan.event(None, Visibility::Public, EventBody::ClockAdvanced(event::ClockAdvanced { now: s.now, by_ms }));
            rules::sweep(&s, plan, &due(c, &s.market, s.now).await?);
            Ok(Outcome::Clock { now: s.now })
        }
        Command::Sweep => {
            rules::sweep(&s, plan, &due(c, &s.market, now).await?);
            Ok(Outcome::Clock { now })
        }
        Command::SetClosingTime { closes_at } => {
            rules::set_closing_time(&mut s, plan, closes_at).map(|_| Outcome::Market(Box::new(s.market.clone())))
        }
        Command::SetPolicy { policy } => policy::set_policy(&mut s, plan, policy).map(|_| Outcome::Market(Box::new(s.market.clone()))),
        Command::ApproveListing { listing } => {
            s.listing = Some(need!(listing_in(b, c, m, listing).await?, "listing {listing} not found"));
            policy::approve_listing(&mut s, plan).map(Outcome::Moderated)
        }
        Command::RemoveListing { listing, reason } => {
            s.listing = Some(need!(listing_in(b, c, m, listing).await?, "listing {listing} not found"));
            s.listing_live_offers = listing_live_offers(c, m, listing).await?;
            s.listing_open_threads = listing_open_threads(c, m, listing).await?;
            policy::remove_listing(&mut s, plan, &reason).map(|_| Outcome::Done)
        }
        Command::Suspend { participant, reason } => {
            let mut p = need!(participant_in(b, c, m, participant).await?, "participant {participant} not found");
            load_party(c, &mut s, participant).await?;
            policy::suspend(&mut s, plan, &p, &reason).map(|_| {
                p.suspension = Some(haggle_core::Suspension { reason: reason.trim().to_string(), at: now });
                Outcome::ParticipantUpdated(p)
            })
        }
        Command::MarkTurn { participant, turn, mark } => {
            need!(participant_in(b, c, m, participant).await?, "participant {participant} not found");
            let body = match mark {
                TurnMark::Started { round, budget_ms } => EventBody::TurnStarted(event::TurnStarted { participant_id: participant, turn, round, budget_ms }),
                TurnMark::TimedOut => EventBody::TurnTimedOut(event::TurnRef { participant_id: participant, turn }),
            };
            plan.event(None, Visibility::Parties(vec![participant]), body);
            Ok(Outcome::Done)
        }
        Command::RecordPayment { deal, read, payment, via } => {
            let d = need!(deal_in(b, c, m, deal).await?, "deal {deal} not found in market {m}");
            payment_sql::record_in(c, m, &d, (&read, &payment), via, now, plan).await?
        }
        Command::Reinstate { participant } => {
            let mut p = need!(participant_in(b, c, m, participant).await?, "participant {participant} not found");
            policy::reinstate(&mut s, plan, &p).map(|_| {
                p.suspension = None;
                Outcome::ParticipantUpdated(p)
            })
        }
    };
    Ok(out)
}

/// Offers past expiry and threads past their deadline, with what `sweep` needs beside them; once
/// the market has closed, every live offer, open thread and active listing (10,000 of each per pass).
async fn due(c: &mut Conn, market: &Market, now: i64) -> StoreResult<rules::Due> {
    let m = market.id;
    let closed = market.is_closed(now);
    let mut due = rules::Due::default();
    let rows = sqlx::query(sql(format!("SELECT {OFFER_COLS} FROM offers WHERE market_id = $1 AND state = 'live' AND expires_at <= $2 ORDER BY id LIMIT {SWEEP_ROWS}")))
        .bind(m).bind(if closed { i64::MAX } else { now }).fetch_all(&mut *c).await?;
    for r in &rows {
        let o = offer_row(r)?;
        let t = get_thread(c, m, o.thread_id).await?.ok_or_else(|| StoreError::Corrupt(format!("offer {} has no thread", o.id)))?;
        due.offers.push((o, t));
    }
    let rows = if closed {
        sqlx::query(sql(format!("SELECT {THREAD_COLS} FROM threads WHERE market_id = $1 AND status = 'open' ORDER BY id LIMIT {SWEEP_ROWS}")))
            .bind(m).fetch_all(&mut *c).await?
    } else {
        sqlx::query(sql(format!("SELECT {THREAD_COLS} FROM threads WHERE market_id = $1 AND status = 'open' AND deadline IS NOT NULL AND deadline <= $2 ORDER BY id LIMIT {SWEEP_ROWS}")))
            .bind(m).bind(now).fetch_all(&mut *c).await?
    };
    for r in &rows {
        let t = thread_row(r)?;
        let live = live_offer_in(c, m, t.id).await?;
        due.threads.push((t, live));
    }
    let rows = sqlx::query(sql(format!("SELECT {DEAL_COLS} FROM deals WHERE market_id = $1 AND status = 'handed_over' AND confirm_deadline <= $2 ORDER BY id LIMIT {SWEEP_ROWS}")))
        .bind(m).bind(now).fetch_all(&mut *c).await?;
    due.deals_to_complete = rows.iter().map(deal_row).collect::<StoreResult<_>>()?;
    let rows = sqlx::query(sql(format!("SELECT {DEAL_COLS} FROM deals WHERE market_id = $1 AND status = 'handed_over' AND arrives_at <= $2 ORDER BY id LIMIT {SWEEP_ROWS}")))
        .bind(m).bind(now).fetch_all(&mut *c).await?;
    due.deliveries = rows.iter().map(deal_row).collect::<StoreResult<_>>()?;
    let rows = sqlx::query(sql(format!("SELECT {DEAL_COLS} FROM deals WHERE market_id = $1 AND status = 'awaiting_approval' AND approval_deadline <= $2 ORDER BY id LIMIT {SWEEP_ROWS}")))
        .bind(m).bind(now).fetch_all(&mut *c).await?;
    for r in &rows {
        let d = deal_row(r)?;
        let l = get_listing(c, m, d.listing_id).await?.ok_or_else(|| StoreError::Corrupt(format!("deal {} has no listing", d.id)))?;
        due.approvals_expired.push((d, l));
    }
    if closed {
        let rows = sqlx::query(sql(format!("SELECT {LISTING_COLS} FROM listings WHERE market_id = $1 AND status = 'active' ORDER BY id LIMIT {SWEEP_ROWS}")))
            .bind(m).fetch_all(&mut *c).await?;
        due.listings = rows.iter().map(listing_row).collect::<StoreResult<_>>()?;
    }
    Ok(due)
}

/// A plan's changes with each `UpdateThread` of a thread the plan itself inserts folded into
/// that `InsertThread` (opening a thread with an offer: one statement instead of two).
fn fold_thread_updates(changes: Vec<Change>) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::with_capacity(changes.len());
    for ch in changes {
        if let Change::UpdateThread { thread, status, offers_made, last_offer_by } = &ch
            && let Some(Change::InsertThread(t)) = out.iter_mut().find(|c| matches!(c, Change::InsertThread(t) if t.id == *thread))
        {
            (t.status, t.offers_made, t.last_offer_by) = (*status, *offers_made, *last_offer_by);
            continue;
        }
        out.push(ch);
    }
    out
}

/// Writes a plan's changes and seals its events onto the chain; returns the sealed events.
/// `note_words`: a batched store notes new listings for the words index instead of indexing
/// them in the command (see migration 11).
async fn apply(c: &mut Conn, head: &Head, plan: Plan, note_words: bool) -> StoreResult<Vec<Event>> {
    let m = head.market.id;
    let mut transfers = Vec::new();
    for ch in fold_thread_updates(plan.changes) {
        match ch {
            Change::SetMarketRules(r) => {
                sqlx::query("UPDATE markets SET rules = $2 WHERE id = $1").bind(m).bind(to_json(&r)).execute(&mut *c).await?;
            }
            Change::InsertParticipant(p) => {
                sqlx::query("INSERT INTO participants (market_id, id, name, mandate, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(m).bind(p.id).bind(&p.name).bind(to_json(&p.mandate)).bind(p.created_at).execute(&mut *c).await?;
            }
            Change::SetMandate { participant, mandate } => {
                sqlx::query("UPDATE participants SET mandate = $3 WHERE market_id = $1 AND id = $2")
                    .bind(m).bind(participant).bind(to_json(&mandate)).execute(&mut *c).await?;
            }
            Change::InsertListing(l) => {
                let text = search_text(&l.title, &l.description, &l.category);
                // PostgreSQL's tsvector is written with the row (`dialect::LISTING_DOC`); SQLite's
                // FTS5 index follows by trigger.
                let doc = (!dialect::LISTING_DOC.0.is_empty()).then(|| crate::search::tsvector(&l.title, &l.description, &text));
                let mut insert = sqlx::query(sql(INSERT_LISTING.clone()))
                    .bind(m).bind(l.id).bind(l.owner).bind(l.side.as_str()).bind(&l.title).bind(&l.description).bind(&l.category)
                    .bind(&l.condition).bind(l.price).bind(to_json(&l.attributes)).bind(l.status.as_str()).bind(l.created_at)
                    .bind(l.first_offer_at).bind(text).bind(to_json(&l.claims))
                    .bind(l.true_state.as_ref().map(to_json))
                    .bind(fulfilment_col(&l.fulfilment))
                    .bind(l.true_transit.as_ref().map(to_json));
                if let Some(doc) = doc {
                    insert = insert.bind(doc);
                }
                insert.execute(&mut *c).await?;
                match (dialect::INDEX_WORDS, dialect::INDEX_WORDS_LATER) {
                    (_, Some(later)) if note_words => {
                        sqlx::query(later).bind(m).bind(l.id).execute(&mut *c).await?;
                    }
                    (Some(now), _) => {
                        let rowid = crate::search::fts5_rowid(m, l.id).ok_or_else(|| StoreError::Invariant(format!("listing {m}/{} is beyond the words index", l.id)))?;
                        sqlx::query(now).bind(rowid).bind(search_text(&l.title, &l.description, &l.category)).execute(&mut *c).await?;
                    }
                    _ => {}
                }
            }
            Change::SetListingStatus { listing, status } => {
                sqlx::query("UPDATE listings SET status = $3 WHERE market_id = $1 AND id = $2")
                    .bind(m).bind(listing).bind(status.as_str()).execute(&mut *c).await?;
            }
            Change::InsertHold { listing, rules, reason } => {
                sqlx::query("INSERT INTO listing_holds (market_id, listing_id, rules, reason, held_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(m).bind(listing).bind(to_json(&rules)).bind(&reason).bind(plan.now).execute(&mut *c).await?;
            }
            Change::SetSuspension { participant, suspension } => {
                sqlx::query("UPDATE participants SET suspension = $3 WHERE market_id = $1 AND id = $2")
                    .bind(m).bind(participant).bind(suspension.as_ref().map(to_json)).execute(&mut *c).await?;
            }
            Change::SetListingFirstOffer { listing, at } => {
                sqlx::query("UPDATE listings SET first_offer_at = $3 WHERE market_id = $1 AND id = $2 AND first_offer_at IS NULL")
                    .bind(m).bind(listing).bind(at).execute(&mut *c).await?;
            }
            Change::InsertThread(t) => {
                sqlx::query("INSERT INTO threads (market_id, id, listing_id, owner, counterparty, status, offers_made, last_offer_by, created_at, deadline) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                    .bind(m).bind(t.id).bind(t.listing_id).bind(t.owner).bind(t.counterparty).bind(t.status.as_str())
                    .bind(t.offers_made as i64).bind(t.last_offer_by).bind(t.created_at).bind(t.deadline).execute(&mut *c).await?;
            }
            Change::UpdateThread { thread, status, offers_made, last_offer_by } => {
                sqlx::query("UPDATE threads SET status = $3, offers_made = $4, last_offer_by = $5 WHERE market_id = $1 AND id = $2")
                    .bind(m).bind(thread).bind(status.as_str()).bind(offers_made as i64).bind(last_offer_by).execute(&mut *c).await?;
            }
            Change::InsertMessage(msg) => {
                sqlx::query("INSERT INTO messages (market_id, id, thread_id, author, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(m).bind(msg.id).bind(msg.thread_id).bind(msg.author).bind(&msg.body).bind(msg.created_at).execute(&mut *c).await?;
            }
            Change::InsertOffer(o) => {
                sqlx::query("INSERT INTO offers (market_id, id, thread_id, listing_id, proposer, buyer, seller, price, state, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
                    .bind(m).bind(o.id).bind(o.thread_id).bind(o.listing_id).bind(o.proposer).bind(o.buyer).bind(o.seller)
                    .bind(o.price).bind(o.state.as_str()).bind(o.created_at).bind(o.expires_at).execute(&mut *c).await?;
            }
            Change::SetOfferState { offer, state, reason } => {
                // Only a live offer changes state: a stale plan can never resurrect a closed one.
                let done = sqlx::query("UPDATE offers SET state = $3, void_reason = $4 WHERE market_id = $1 AND id = $2 AND state = 'live'")
                    .bind(m).bind(offer).bind(state.as_str()).bind(reason.map(|r| r.as_str())).execute(&mut *c).await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Invariant(format!("offer {offer} was not live when set {state}")));
                }
            }
            Change::InsertDeal(d) => {
                sqlx::query("INSERT INTO deals (market_id, id, listing_id, thread_id, offer_id, buyer, seller, price, status, snapshot, created_at, approval_deadline, approval_from, shipping) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
                    .bind(m).bind(d.id).bind(d.listing_id).bind(d.thread_id).bind(d.offer_id).bind(d.buyer).bind(d.seller)
                    .bind(d.price).bind(d.status.as_str()).bind(to_json(&d.snapshot)).bind(d.created_at).bind(d.approval_deadline).bind(approval_col(d.approval_from))
                    .bind(d.shipping.as_ref().map(to_json))
                    .execute(&mut *c).await?;
            }
            Change::UpdateDeal(d) => {
                let done = sqlx::query("UPDATE deals SET status = $3, approval_deadline = $4, handover_note = $5, handed_over_at = $6, confirm_deadline = $7, cancel_requested_by = $8, finished_at = $9, resolution = $10, approval_from = $11, inspection = $12, dispute = $13, shipping = $14, arrives_at = $15 WHERE market_id = $1 AND id = $2")
                    .bind(m).bind(d.id).bind(d.status.as_str()).bind(d.approval_deadline).bind(&d.handover_note).bind(d.handed_over_at)
                    .bind(d.confirm_deadline).bind(d.cancel_requested_by).bind(d.finished_at).bind(d.resolution.as_ref().map(to_json))
                    .bind(approval_col(d.approval_from))
                    .bind(d.inspection.as_ref().map(to_json)).bind(d.dispute.as_ref().map(to_json))
                    .bind(d.shipping.as_ref().map(to_json)).bind(d.arrives_at)
                    .execute(&mut *c).await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Invariant(format!("deal {} to update does not exist", d.id)));
                }
            }
            Change::InsertDealNote(n) => {
                sqlx::query("INSERT INTO deal_notes (market_id, id, deal_id, author, kind, body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(m).bind(n.id).bind(n.deal_id).bind(n.author).bind(&n.kind).bind(&n.body).bind(n.created_at).execute(&mut *c).await?;
            }
            Change::InsertRating(r) => {
                sqlx::query("INSERT INTO ratings (market_id, id, deal_id, rater, ratee, score, comment, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(m).bind(r.id).bind(r.deal_id).bind(r.rater).bind(r.ratee).bind(r.score as i64).bind(&r.comment).bind(r.created_at)
                    .execute(&mut *c).await?;
            }
            Change::SetDealStatus { deal, status } => {
                sqlx::query("UPDATE deals SET status = $3 WHERE market_id = $1 AND id = $2")
                    .bind(m).bind(deal).bind(status.as_str()).execute(&mut *c).await?;
            }
            // Written together after the other changes (their deals exist by then).
            Change::Transfer(t) => transfers.push(t),
        }
    }
    insert_transfers(c, m, &transfers).await?;
    let mut prev = head.last_hash.clone();
    let mut seq = head.last_seq;
    let mut sealed = Vec::with_capacity(plan.events.len());
    let mut payloads = Vec::with_capacity(plan.events.len());
    for d in plan.events {
        seq += 1;
        let (e, payload) = Event::seal_stored(m, seq, plan.now, &prev, d);
        prev = e.hash.clone();
        sealed.push(e);
        payloads.push(payload);
    }
    insert_stored_events(c, &sealed, payloads).await?;
    sqlx::query("UPDATE markets SET next_id = $2, last_seq = $3, last_hash = $4, sim_now = $5 WHERE id = $1")
        .bind(m).bind(plan.next_id).bind(seq).bind(&prev)
        .bind(if head.market.clock_mode == ClockMode::Simulated { plan.now } else { head.market.sim_now })
        .execute(&mut *c).await?;
    Ok(sealed)
}

/// A plan's transfers and the balances they move, in two statements: the transfers (one INSERT
/// per `INSERT_ROWS`) and each account's net change (one upsert per `INSERT_ROWS` accounts).
/// No available account may go below zero after any one of the transfers, in plan order (checked
/// from the new balances: the rules already refused any overdraft; this asserts it where data
/// is written).
async fn insert_transfers(c: &mut Conn, m: i64, transfers: &[Transfer]) -> StoreResult<()> {
    for chunk in transfers.chunks(INSERT_ROWS) {
        let mut q = sqlx::QueryBuilder::<Db>::new("INSERT INTO transfers (market_id, id, debit, credit, amount, kind, deal_id, at, idempotency_id) ");
        q.push_values(chunk, |mut v, t| {
            v.push_bind(m).push_bind(t.id).push_bind(t.debit.key()).push_bind(t.credit.key()).push_bind(t.amount).push_bind(t.kind.as_str())
                .push_bind(t.deal_id).push_bind(t.at).push_bind(t.idempotency_id.clone());
        });
        q.build().execute(&mut *c).await?;
    }
    // Each account's net change, in the order the transfers first name it.
    let mut deltas: Vec<(Account, i64)> = Vec::new();
    for t in transfers {
        for (account, delta) in [(t.debit, -t.amount), (t.credit, t.amount)] {
            match deltas.iter_mut().find(|(a, _)| *a == account) {
                Some((_, d)) => *d += delta,
                None => deltas.push((account, delta)),
            }
        }
    }
    let mut balances = std::collections::HashMap::with_capacity(deltas.len());
    for chunk in deltas.chunks(INSERT_ROWS) {
        let mut q = sqlx::QueryBuilder::<Db>::new("INSERT INTO accounts (market_id, account, balance) ");
        q.push_values(chunk, |mut v, (account, delta)| {
            v.push_bind(m).push_bind(account.key()).push_bind(*delta);
        });
        q.push(" ON CONFLICT (market_id, account) DO UPDATE SET balance = accounts.balance + excluded.balance RETURNING account, balance");
        for r in q.build().fetch_all(&mut *c).await? {
            balances.insert(r.try_get::<String, _>("account")?, r.try_get::<i64, _>("balance")?);
        }
    }
    // Walk the transfers again from each account's balance before them.
    for (account, delta) in &deltas {
        if let Some(b) = balances.get_mut(&account.key()) {
            *b -= delta;
        }
    }
    for t in transfers {
        for (account, delta) in [(t.debit, -t.amount), (t.credit, t.amount)] {
            let key = account.key();
            let balance = balances.get_mut(&key).ok_or_else(|| StoreError::Invariant(format!("{key} was not written")))?;
            *balance += delta;
            if matches!(account, Account::Available(_)) && *balance < 0 {
                return Err(StoreError::Invariant(format!("{key} would be {balance}")));
            }
        }
    }
    Ok(())
}

async fn insert_event(c: &mut Conn, e: &Event) -> StoreResult<()> {
    insert_events(c, std::slice::from_ref(e)).await
}

/// Rows per multi-row INSERT: a plan's few events (or transfers) go in one statement, a sweep's
/// thousands in statements of this many (bounded: SQLite's bound parameters, and each row count
/// is a statement text of its own in the prepared-statement caches).
const INSERT_ROWS: usize = 16;

/// A plan's events in one round trip per `INSERT_ROWS` (on PostgreSQL each statement is a round
/// trip to another process, made while the market's row is locked).
async fn insert_events(c: &mut Conn, events: &[Event]) -> StoreResult<()> {
    let payloads = events.iter().map(|e| to_json(&e.body.payload_json())).collect();
    insert_stored_events(c, events, payloads).await
}

/// [`insert_events`] with each payload's stored text (`Event::seal_stored`'s).
async fn insert_stored_events(c: &mut Conn, events: &[Event], payloads: Vec<String>) -> StoreResult<()> {
    assert_eq!(events.len(), payloads.len(), "one stored payload per event");
    let mut rows = Vec::with_capacity(events.len());
    for (e, payload) in events.iter().zip(payloads) {
        let (scope, a, b) = match &e.visibility {
            Visibility::Public => ("public", None, None),
            Visibility::Operators => ("operators", None, None),
            Visibility::Parties(ps) => {
                if ps.is_empty() || ps.len() > 2 {
                    return Err(StoreError::Invariant(format!("event names {} parties", ps.len())));
                }
                ("parties", ps.first().copied(), ps.get(1).copied())
            }
        };
        rows.push((e, scope, a, b, payload));
    }
    for chunk in rows.chunks(INSERT_ROWS) {
        let mut q = sqlx::QueryBuilder::<Db>::new("INSERT INTO events (market_id, seq, at, kind, actor, acted_by, scope, party_a, party_b, payload, prev_hash, hash) ");
        q.push_values(chunk, |mut v, (e, scope, a, b, payload)| {
            v.push_bind(e.market_id).push_bind(e.seq).push_bind(e.at).push_bind(e.kind()).push_bind(e.actor).push_bind(e.by.as_str())
                .push_bind(*scope).push_bind(*a).push_bind(*b).push_bind(payload.clone()).push_bind(e.prev_hash.clone()).push_bind(e.hash.clone());
        });
        q.build().execute(&mut *c).await?;
    }
    Ok(())
}

/// A page of a search that read up to `limit + 1` listings in its order: the extra one only says
/// there is more, and the last listing shown is where the next page starts.
/// A page of a search's listings, each with its relevance score (0 unless ranked by relevance).
fn listing_page(mut items: Vec<(Listing, i64)>, sort: ListingSort, limit: usize) -> Page<Listing> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|(l, score)| match sort {
            ListingSort::Newest => l.id.to_string(),
            ListingSort::Cheapest => format!("{}:{}", l.price, l.id),
            ListingSort::Relevance => format!("{score}:{}", l.id),
        })
    } else {
        None
    };
    Page { items: items.into_iter().map(|(l, _)| l).collect(), next_cursor }
}

/// Listings a keyword search walks in its order before it asks the words index instead
/// (`search_by_walking`).
const WALK_ROWS: i64 = 256;

/// A search's ORDER BY (listing columns; a relevance search orders on its score).
fn order_by(sort: ListingSort) -> &'static str {
    match sort {
        ListingSort::Relevance => " ORDER BY score DESC, id DESC",
        ListingSort::Newest => " ORDER BY id DESC",
        ListingSort::Cheapest => " ORDER BY price ASC, id ASC",
    }
}

/// A search's filters after `WHERE market_id = m`, its cursor and its order (for a relevance
/// search: closes the inner select that scores, the cursor and order apply to the score).
fn push_listing_filters(b: &mut sqlx::QueryBuilder<Db>, q: &ListingQuery) -> StoreResult<()> {
    b.push(" AND status = ").push_bind(q.status.unwrap_or(ListingStatus::Active).as_str().to_string());
    if let Some(cat) = &q.category {
        b.push(" AND category = ").push_bind(cat.trim().to_lowercase());
    }
    if let Some(side) = q.side {
        b.push(" AND side = ").push_bind(side.as_str().to_string());
    }
    if let Some(min) = q.min_price {
        b.push(" AND price >= ").push_bind(min);
    }
    if let Some(max) = q.max_price {
        b.push(" AND price <= ").push_bind(max);
    }
    if let Some(owner) = q.owner {
        b.push(" AND owner = ").push_bind(owner);
    }
    let sort = q.order();
    match (sort, listing_cursor(q)?) {
        (ListingSort::Relevance, after) => {
            b.push(") AS found");
            if let Some((score, id)) = after {
                b.push(" WHERE score < ").push_bind(score).push(" OR (score = ").push_bind(score).push(" AND id < ").push_bind(id).push(")");
            }
        }
        (ListingSort::Newest, Some((_, id))) => {
            b.push(" AND id < ").push_bind(id);
        }
        (ListingSort::Cheapest, Some((p, id))) => {
            b.push(" AND (price > ").push_bind(p).push(" OR (price = ").push_bind(p).push(" AND id > ").push_bind(id).push("))");
        }
        (_, None) => {}
    }
    b.push(order_by(sort));
    Ok(())
}

/// A search's cursor as (price, id): `id` after newest first (price 0), `price:id` after
/// cheapest first, `score:id` (the score in the price's place) after the most relevant first.
fn listing_cursor(q: &ListingQuery) -> StoreResult<Option<(i64, i64)>> {
    let bad_cursor = || StoreError::Corrupt("bad cursor".into());
    let Some(c) = &q.cursor else { return Ok(None) };
    Ok(Some(match q.order() {
        ListingSort::Newest => (0, c.parse().map_err(|_| bad_cursor())?),
        ListingSort::Cheapest | ListingSort::Relevance => {
            let (p, id) = c.split_once(':').ok_or_else(bad_cursor)?;
            (p.parse().map_err(|_| bad_cursor())?, id.parse().map_err(|_| bad_cursor())?)
        }
    }))
}

/// Announces `market`'s new events to every replica listening (PostgreSQL; delivered at commit).
async fn notify_events(c: &mut Conn, market: i64) -> StoreResult<()> {
    if let Some(sql) = dialect::NOTIFY_EVENTS {
        sqlx::query(sql).bind(market.to_string()).execute(&mut *c).await?;
    }
    Ok(())
}

async fn idempotent_response(c: &mut Conn, scope: &str, key: &str) -> StoreResult<Option<(String, StoredResponse)>> {
    let r = sqlx::query("SELECT request_hash, status, body FROM idempotency WHERE scope = $1 AND idem_key = $2")
        .bind(scope).bind(key).fetch_optional(&mut *c).await?;
    let Some(r) = r else { return Ok(None) };
    let status: i64 = r.try_get("status")?;
    Ok(Some((r.try_get("request_hash")?, StoredResponse { status: status as u16, body: r.try_get("body")? })))
}

async fn insert_idempotent(c: &mut Conn, scope: &str, key: &str, request_hash: &str, resp: &StoredResponse, now: i64) -> StoreResult<bool> {
    let done = sqlx::query("INSERT INTO idempotency (scope, idem_key, request_hash, status, body, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, idem_key) DO NOTHING")
        .bind(scope).bind(key).bind(request_hash).bind(resp.status as i64).bind(&resp.body).bind(now).execute(&mut *c).await?;
    Ok(done.rows_affected() == 1)
}

impl Backend {
    pub async fn open(url: &str, batch: usize) -> StoreResult<Backend> {
        let pool = dialect::connect(url, batch).await?;
        let sole_writer = batch > 1 && dialect::SOLE_WRITER_WHEN_BATCHED;
        let b = Backend {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            shelves: sole_writer.then(Arc::default),
            memory: sole_writer.then(Arc::default),
            lanes: (batch <= 1).then(Arc::default),
        };
        b.migrate().await?;
        // A batched store would otherwise hold the file's write lock from here to its first
        // full batch.
        b.flush().await?;
        dialect::checkpoint_in_background(&b.pool, &b.writer)?;
        Ok(b)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await?;
        if let Some(lock) = dialect::MIGRATION_LOCK {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)").execute(&mut *tx).await?;
        let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(&mut *tx).await?;
        for (version, script) in dialect::MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(*script)).execute(&mut *tx).await?;
            if dialect::FILL_SEARCH_DOCS_AFTER == Some(*version) {
                fill_search_docs(&mut tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)").bind(version).execute(&mut *tx).await?;
            tracing::info!(version, "applied migration");
        }
        // Listings a batched store noted and did not index before it stopped (a crash after one
        // of its batch commits).
        if let Some(index) = dialect::INDEX_NOTED_WORDS {
            sqlx::raw_sql(sqlx::AssertSqlSafe(index)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn write_guard(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        if dialect::SERIALIZE_IN_PROCESS {
            Some(self.writer.clone().lock_owned().await)
        } else {
            None
        }
    }

    /// Commits what a batched SQLite store holds back (nothing to do otherwise).
    pub async fn flush(&self) -> StoreResult<()> {
        let _w = self.write_guard().await;
        if self.shelves.is_some()
            && let Some(index) = dialect::INDEX_NOTED_WORDS
        {
            // The listings noted since the last flush, in one FTS5 write.
            let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(index)).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        dialect::flush(&self.pool).await?;
        Ok(())
    }

    /// Refreshes the query planner's statistics (cheap; call as the data grows).
    pub async fn analyze(&self) -> StoreResult<()> {
        let _w = self.write_guard().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(dialect::ANALYZE)).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn create_market(&self, nm: NewMarket, now: i64) -> StoreResult<Market> {
        match self.create_market_keyed(nm, now, None).await? {
            Ran::Fresh { result: Ok(Outcome::Market(m)), .. } => Ok(*m),
            _ => Err(StoreError::Invariant("creating a market without a key gave no market".into())),
        }
    }

    pub async fn create_market_once(&self, nm: NewMarket, now: i64, idem: Idempotency<'_>) -> StoreResult<Ran> {
        self.create_market_keyed(nm, now, Some(idem)).await
    }

    /// Creates a market; with a key, the key's row is the transaction's first write, so a
    /// replica racing on the same key waits on the row's unique index until this commits and
    /// then replays this answer (PostgreSQL), or finds the key once it gets the writer (SQLite).
    async fn create_market_keyed(&self, nm: NewMarket, now: i64, idem: Option<Idempotency<'_>>) -> StoreResult<Ran> {
        // Never read by anyone: replaced by the real answer before the transaction commits.
        let pending = StoredResponse { status: 0, body: String::new() };
        for _attempt in 0..20 {
            let _w = self.write_guard().await;
            let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await?;
            if let Some(i) = &idem
                && !insert_idempotent(&mut tx, i.scope, i.key, i.request_hash, &pending, now).await?
            {
                tx.rollback().await?;
                let mut c = self.pool.acquire().await?;
                return match idempotent_response(&mut c, i.scope, i.key).await? {
                    Some((hash, resp)) if hash == i.request_hash => Ok(Ran::Replayed(resp)),
                    Some(_) => Ok(Ran::Conflict),
                    None => Err(StoreError::Invariant(format!("idempotency key '{}' taken but not stored", i.key))),
                };
            }
            let id: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) + 1 AS BIGINT) FROM markets").fetch_one(&mut *tx).await?;
            let market = Market { id, name: nm.name.clone(), currency: nm.currency.clone(), clock_mode: nm.clock_mode, sim_now: nm.sim_start, rules: nm.rules.clone(), created_at: now };
            let at = market.now(now);
            let e = Event::seal(id, 1, at, GENESIS_HASH, EventDraft {
                actor: None,
                by: ActedBy::Agent,
                visibility: Visibility::Public,
                body: EventBody::MarketCreated(event::MarketCreated { market: market.clone() }),
            });
            let inserted = sqlx::query("INSERT INTO markets (id, name, currency, clock_mode, sim_now, rules, created_at, next_id, last_seq, last_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 1, $8)")
                .bind(id).bind(&market.name).bind(&market.currency).bind(market.clock_mode.as_str()).bind(market.sim_now)
                .bind(to_json(&market.rules)).bind(now).bind(&e.hash).execute(&mut *tx).await;
            match inserted {
                // Another server took the id: try again with the next (the key's row goes too).
                Err(err) if dialect::is_unique_violation(&err) => continue,
                other => {
                    other?;
                }
            }
            insert_event(&mut tx, &e).await?;
            let result = Ok(Outcome::Market(Box::new(market)));
            if let Some(i) = &idem {
                let resp = (i.render)(&result);
                sqlx::query("UPDATE idempotency SET status = $1, body = $2 WHERE scope = $3 AND idem_key = $4")
                    .bind(resp.status as i64).bind(&resp.body).bind(i.scope).bind(i.key).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            return Ok(Ran::Fresh { result, events: vec![e] });
        }
        Err(StoreError::Invariant("could not allocate a market id after 20 attempts".into()))
    }

    pub async fn market(&self, id: i64) -> StoreResult<Option<Market>> {
        if let Some(m) = self.recall(id, |m| m.market().clone()).await? {
            return Ok(Some(m));
        }
        let r = sqlx::query(sql(format!("SELECT {MARKET_COLS} FROM markets WHERE id = $1"))).bind(id).fetch_optional(&self.pool).await?;
        Ok(r.as_ref().map(market_row).transpose()?.map(|h| h.market))
    }

    pub async fn markets(&self) -> StoreResult<Vec<Market>> {
        let rows = sqlx::query(sql(format!("SELECT {MARKET_COLS} FROM markets ORDER BY id"))).fetch_all(&self.pool).await?;
        rows.iter().map(|r| market_row(r).map(|h| h.market)).collect()
    }

    /// A page of markets: at most `limit` with an id above `after`, oldest first.
    pub async fn markets_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Market>> {
        let rows = sqlx::query(sql(format!("SELECT {MARKET_COLS} FROM markets WHERE id > $1 ORDER BY id LIMIT $2")))
            .bind(after).bind(limit as i64).fetch_all(&self.pool).await?;
        rows.iter().map(|r| market_row(r).map(|h| h.market)).collect()
    }

    /// Runs one command: in the open group commit on the server path (`group_backend.rs`), or
    /// alone in its own transaction in a batched simulation store.
    pub async fn run(&self, market_id: i64, real_now: i64, cmd: Command, by: ActedBy, idem: Option<Idempotency<'_>>) -> StoreResult<Ran> {
        match &self.lanes {
            Some(lanes) => self.run_grouped(lanes, market_id, real_now, cmd, by, idem.as_ref()).await,
            None => self.run_alone(market_id, real_now, cmd, by, idem.as_ref()).await,
        }
    }

    /// One command in its own transaction (commits it, or rolls it back when nothing is kept).
    async fn run_alone(&self, market_id: i64, real_now: i64, cmd: Command, by: ActedBy, idem: Option<&Idempotency<'_>>) -> StoreResult<Ran> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await?;
        // Boxed: a command's future (the rules' loads and the plan's writes) is large, and a debug
        // build's callers nest it several levels deep on a 2 MiB thread stack.
        let attempt = Box::pin(self.attempt(&mut tx, market_id, real_now, cmd, by, idem)).await?;
        if !attempt.keep {
            tx.rollback().await?;
            return Ok(attempt.ran);
        }
        // The memory follows the plan before the transaction hands its connection back: a
        // batched store has one connection, so no read can see the tables ahead of the
        // memory. A commit that fails makes both forget the market.
        if let (Some((changes, now)), Ran::Fresh { events, .. }) = (&attempt.kept, &attempt.ran) {
            self.shelve(market_id, changes);
            self.remember(market_id, changes, events, *now);
        }
        if attempt.notify {
            notify_events(&mut tx, market_id).await?;
        }
        if let Err(e) = tx.commit().await {
            self.unshelve(market_id);
            self.forget(market_id);
            return Err(e.into());
        }
        Ok(attempt.ran)
    }

    /// One command's work on a connection inside a transaction: lock the market row, answer a
    /// seen idempotency key, run the rules, apply the plan, store the response. Whether its
    /// writes are to be kept is the caller's to enact (commit, or release a savepoint).
    async fn attempt(&self, tx: &mut Conn, market_id: i64, real_now: i64, cmd: Command, by: ActedBy, idem: Option<&Idempotency<'_>>) -> StoreResult<Attempt> {
        let head = sqlx::query(sql(format!("SELECT {MARKET_COLS} FROM markets WHERE id = $1{}", dialect::FOR_UPDATE)))
            .bind(market_id).fetch_optional(&mut *tx).await?;
        // Checked under the market's lock, so a concurrent replay of the same key waits for the
        // first to commit and then sees its response.
        if let Some(i) = idem
            && let Some((hash, resp)) = idempotent_response(tx, i.scope, i.key).await?
        {
            let ran = if hash == i.request_hash { Ran::Replayed(resp) } else { Ran::Conflict };
            return Ok(Attempt { ran, keep: false, kept: None, notify: false });
        }
        // What the store keeps in memory follows the committed plan: its changes and clock.
        let mut kept: Option<(Vec<Change>, i64)> = None;
        let (result, events) = match head.as_ref().map(market_row).transpose()? {
            None => (Err(DomainError::not_found(format!("market {market_id} not found"))), Vec::new()),
            Some(head) => {
                let now = head.market.now(real_now);
                let mut plan = Plan::new(market_id, now, head.next_id);
                plan.by = by;
                match execute(self, tx, &head, now, cmd, &mut plan).await? {
                    Ok(out) => {
                        if self.memory.is_some() && !plan.is_empty() {
                            let follows = |ch: &&Change| MarketMemory::follows(ch) || MarketShelves::follows(ch);
                            kept = Some((plan.changes.iter().filter(follows).cloned().collect(), plan.now));
                        }
                        let events = if plan.is_empty() { Vec::new() } else { apply(tx, &head, plan, self.shelves.is_some()).await? };
                        let out = match out {
                            // Lifecycle commands answer with the deal as they left it.
                            Outcome::DealChanged(id) => Outcome::DealUpdated(get_deal(tx, market_id, id).await?.ok_or_else(|| StoreError::Invariant(format!("deal {id} vanished")))?),
                            out => out,
                        };
                        (Ok(out), events)
                    }
                    Err(e) => (Err(e), Vec::new()),
                }
            }
        };
        if let Some(i) = idem {
            let resp = (i.render)(&result);
            // A 5xx is never stored (spec): the caller may retry it.
            if resp.status < 500 {
                insert_idempotent(tx, i.scope, i.key, i.request_hash, &resp, real_now).await?;
            }
        }
        // A refusal keeps nothing, unless its response is stored under the caller's key.
        let keep = result.is_ok() || idem.is_some();
        let notify = keep && !events.is_empty();
        Ok(Attempt { ran: Ran::Fresh { result, events }, keep, kept, notify })
    }

    pub async fn insert_token(&self, t: &TokenRecord) -> StoreResult<()> {
        let _w = self.write_guard().await;
        sqlx::query("INSERT INTO tokens (hash, role, market_id, participant_id, label, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&t.hash).bind(t.role.as_str()).bind(t.market_id).bind(t.participant_id).bind(&t.label).bind(t.created_at)
            .execute(&self.pool).await?;
        Ok(())
    }

    pub async fn token(&self, hash: &str) -> StoreResult<Option<TokenRecord>> {
        let r = sqlx::query("SELECT hash, role, market_id, participant_id, label, created_at, revoked_at FROM tokens WHERE hash = $1")
            .bind(hash).fetch_optional(&self.pool).await?;
        let Some(r) = r else { return Ok(None) };
        Ok(Some(TokenRecord {
            hash: r.try_get("hash")?,
            role: parsed("role", &r.try_get::<String, _>("role")?, Role::parse)?,
            market_id: r.try_get("market_id")?,
            participant_id: r.try_get("participant_id")?,
            label: r.try_get("label")?,
            created_at: r.try_get("created_at")?,
            revoked_at: r.try_get("revoked_at")?,
        }))
    }

    pub async fn revoke_token(&self, hash: &str, now: i64) -> StoreResult<Option<TokenRecord>> {
        {
            let _w = self.write_guard().await;
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE hash = $2 AND revoked_at IS NULL")
                .bind(now).bind(hash).execute(&self.pool).await?;
        }
        self.token(hash).await
    }

    pub async fn stored_response(&self, scope: &str, key: &str) -> StoreResult<Option<(String, StoredResponse)>> {
        let mut c = self.pool.acquire().await?;
        idempotent_response(&mut c, scope, key).await
    }

    pub async fn store_response(&self, scope: &str, key: &str, request_hash: &str, resp: &StoredResponse, now: i64) -> StoreResult<bool> {
        let _w = self.write_guard().await;
        let mut c = self.pool.acquire().await?;
        insert_idempotent(&mut c, scope, key, request_hash, resp, now).await
    }

    pub async fn participant(&self, market: i64, id: i64) -> StoreResult<Option<Participant>> {
        if let Some(p) = self.recall(market, |m| m.participant(id).cloned()).await? {
            return Ok(p);
        }
        get_participant(&mut *self.pool.acquire().await?, market, id).await
    }

    pub async fn participants(&self, market: i64, after: i64, limit: u32) -> StoreResult<Vec<Participant>> {
        let rows = sqlx::query(sql(format!("SELECT {PARTICIPANT_COLS} FROM participants WHERE market_id = $1 AND id > $2 ORDER BY id LIMIT $3")))
            .bind(market).bind(after).bind(limit as i64).fetch_all(&self.pool).await?;
        rows.iter().map(participant_row).collect()
    }

    pub async fn listing(&self, market: i64, id: i64) -> StoreResult<Option<Listing>> {
        get_listing(&mut *self.pool.acquire().await?, market, id).await
    }

    fn shelves(&self) -> Option<std::sync::MutexGuard<'_, Shelves>> {
        // After a lost batch the shelves hold rolled-back listings: the table answers (and fails).
        if dialect::batch_lost(&self.pool) {
            return None;
        }
        self.shelves.as_ref().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies a command's committed listing changes to the market's shelves, if loaded (a
    /// change the shelves cannot place makes them reload from the table).
    fn shelve(&self, market: i64, changes: &[Change]) {
        if !changes.iter().any(MarketShelves::follows) {
            return;
        }
        let Some(mut all) = self.shelves() else { return };
        all.changes += 1;
        let Some(m) = all.markets.get_mut(&market) else { return };
        let whole = changes.iter().all(|ch| m.apply(market, ch));
        if !whole {
            all.markets.remove(&market);
        }
    }

    fn memory(&self) -> Option<std::sync::MutexGuard<'_, Memory>> {
        // After a lost batch the memory holds rolled-back commands: the tables answer (and fail).
        if dialect::batch_lost(&self.pool) {
            return None;
        }
        self.memory.as_ref().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies a committed command to its market's memory, if remembered (a change it cannot
    /// place makes the market be read again).
    fn remember(&self, market: i64, changes: &[Change], events: &[Event], now: i64) {
        let Some(mut all) = self.memory() else { return };
        all.commits += 1;
        let Some(m) = all.markets.get_mut(&market) else { return };
        let whole = changes.iter().all(|ch| m.apply(ch));
        m.committed(events, now);
        if !whole {
            all.markets.remove(&market);
        }
    }

    fn forget(&self, market: i64) {
        if let Some(mut all) = self.memory() {
            all.commits += 1;
            all.markets.remove(&market);
        }
    }

    /// `read` answered from the market's shelves if they are loaded already.
    fn shelved<T>(&self, market: i64, read: impl FnOnce(&MarketShelves) -> T) -> Option<T> {
        self.shelves()?.markets.get(&market).map(read)
    }

    /// `read` answered from the market's memory if it is remembered already (it is never read
    /// here: the caller may hold the only connection).
    fn remembered<T>(&self, market: i64, read: impl FnOnce(&MarketMemory) -> T) -> Option<T> {
        self.memory()?.markets.get(&market).map(read)
    }

    /// `read` answered from the market's memory: `None` when this store keeps none, the market
    /// does not exist, or a command committed while the market was being read into memory (the
    /// tables answer then).
    async fn recall<T>(&self, market: i64, read: impl FnOnce(&MarketMemory) -> T) -> StoreResult<Option<T>> {
        let commits = match self.memory() {
            None => return Ok(None),
            Some(all) => match all.markets.get(&market) {
                Some(m) => return Ok(Some(read(m))),
                None => all.commits,
            },
        };
        let Some(loaded) = self.read_memory(market).await? else { return Ok(None) };
        let Some(mut all) = self.memory() else { return Ok(None) };
        if all.commits != commits {
            return Ok(None);
        }
        Ok(Some(read(all.markets.entry(market).or_insert(loaded))))
    }

    /// A market's hot rows, read from its tables.
    async fn read_memory(&self, market: i64) -> StoreResult<Option<MarketMemory>> {
        let r = sqlx::query(sql(format!("SELECT {MARKET_COLS} FROM markets WHERE id = $1"))).bind(market).fetch_optional(&self.pool).await?;
        let Some(r) = r else { return Ok(None) };
        let mut m = MarketMemory::new(market_row(&r)?.market);
        let mut c = self.pool.acquire().await?;
        for r in sqlx::query(sql(format!("SELECT {PARTICIPANT_COLS} FROM participants WHERE market_id = $1 ORDER BY id"))).bind(market).fetch_all(&mut *c).await? {
            m.add_participant(participant_row(&r)?);
        }
        for r in sqlx::query(sql(format!("SELECT {DEAL_COLS} FROM deals WHERE market_id = $1 ORDER BY id"))).bind(market).fetch_all(&mut *c).await? {
            m.add_deal(deal_row(&r)?);
        }
        for r in sqlx::query(sql(format!("SELECT {THREAD_COLS} FROM threads WHERE market_id = $1 ORDER BY id"))).bind(market).fetch_all(&mut *c).await? {
            m.add_thread(thread_row(&r)?);
        }
        for r in sqlx::query(sql(format!("SELECT {MESSAGE_COLS} FROM messages WHERE market_id = $1 ORDER BY id"))).bind(market).fetch_all(&mut *c).await? {
            m.add_message(message_row(&r)?);
        }
        for r in sqlx::query(sql(format!("SELECT {OFFER_COLS} FROM offers WHERE market_id = $1 ORDER BY id"))).bind(market).fetch_all(&mut *c).await? {
            m.add_offer(offer_row(&r)?);
        }
        for r in sqlx::query(sql(format!("SELECT {RATING_COLS} FROM ratings WHERE market_id = $1 ORDER BY id"))).bind(market).fetch_all(&mut *c).await? {
            m.add_rating(rating_row(&r)?);
        }
        for r in sqlx::query("SELECT account, balance FROM accounts WHERE market_id = $1").bind(market).fetch_all(&mut *c).await? {
            let key: String = r.try_get("account")?;
            let account = Account::parse(&key).ok_or_else(|| StoreError::Corrupt(format!("account '{key}'")))?;
            m.add_balance(account, r.try_get("balance")?);
        }
        let rows = sqlx::query("SELECT seq, party_a, party_b FROM events WHERE market_id = $1 AND scope = 'parties' ORDER BY seq")
            .bind(market).fetch_all(&mut *c).await?;
        for r in rows {
            let seq: i64 = r.try_get("seq")?;
            for column in ["party_a", "party_b"] {
                if let Some(p) = r.try_get::<Option<i64>, _>(column)? {
                    m.saw_event(p, seq);
                }
            }
        }
        Ok(Some(m))
    }

    fn unshelve(&self, market: i64) {
        if let Some(mut all) = self.shelves() {
            all.changes += 1;
            all.markets.remove(&market);
        }
    }

    /// A search answered from the shelves: `None` when this store keeps none or the search
    /// names neither a category and a side nor an owner (the table answers those).
    async fn search_shelves(&self, market: i64, q: &ListingQuery) -> StoreResult<Option<Page<Listing>>> {
        let one_shelf = q.category.is_some() && q.side.is_some();
        if self.shelves.is_none() || !(one_shelf || q.owner.is_some()) {
            return Ok(None);
        }
        let (loaded, changes) = self.shelves().map_or((false, 0), |all| (all.markets.contains_key(&market), all.changes));
        if !loaded {
            let rows = sqlx::query(sql(format!("SELECT {LISTING_COLS}, search_text FROM listings WHERE market_id = $1")))
                .bind(market).fetch_all(&self.pool).await?;
            let mut m = MarketShelves::default();
            for r in &rows {
                m.add(listing_row(r)?, r.try_get("search_text")?);
            }
            match self.shelves() {
                Some(mut all) if all.changes == changes => {
                    all.markets.entry(market).or_insert(m);
                }
                // Listings changed while they were read (another task's command): this search
                // reads the table instead, the next one shelves them again.
                _ => return Ok(None),
            }
        }
        let after = listing_cursor(q)?;
        let limit = q.limit.unwrap_or(50).clamp(1, haggle_core::limits::MAX_PAGE) as usize;
        let words = crate::row::search_words(q.q.as_deref().unwrap_or(""));
        let category = q.category.as_deref().map(|c| c.trim().to_lowercase());
        let Some(mut all) = self.shelves() else { return Ok(None) };
        let Some(m) = all.markets.get_mut(&market) else { return Ok(None) };
        let sort = q.order();
        let ids = m.search(&ShelfQuery {
            category: category.as_deref(),
            side: q.side.map(|s| s.as_str()),
            status: q.status.unwrap_or(ListingStatus::Active).as_str(),
            words: &words,
            min_price: q.min_price,
            max_price: q.max_price,
            owner: q.owner,
            sort,
            after,
            take: limit + 1,
        });
        match m.rows(&ids) {
            Some(items) => {
                let score = |l: &Listing| match sort {
                    ListingSort::Relevance => crate::search::relevance(&l.title, &l.description, &words),
                    _ => 0,
                };
                let items = items.into_iter().map(|l| { let s = score(&l); (l, s) }).collect();
                Ok(Some(listing_page(items, sort, limit)))
            }
            // A shelved listing without its row: read the market again.
            None => {
                all.changes += 1;
                all.markets.remove(&market);
                Ok(None)
            }
        }
    }

    /// The moderation queue: listings still held, oldest first, with ids above `after`.
    pub async fn held_listings(&self, market: i64, after: i64, limit: u32) -> StoreResult<Vec<policy::HeldListing>> {
        let cols = LISTING_COLS.split(", ").map(|c| format!("l.{c}")).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(sql(format!(
            "SELECT {cols}, h.rules, h.reason, h.held_at FROM listings l JOIN listing_holds h ON h.market_id = l.market_id AND h.listing_id = l.id \
             WHERE l.market_id = $1 AND l.status = 'held' AND l.id > $2 ORDER BY l.id LIMIT {limit}"
        )))
        .bind(market).bind(after).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(policy::HeldListing {
                    listing: listing_row(r)?,
                    rules: json("rules", &r.try_get::<String, _>("rules")?)?,
                    reason: r.try_get("reason")?,
                    held_at: r.try_get("held_at")?,
                })
            })
            .collect()
    }

    pub async fn search_listings(&self, market: i64, q: &ListingQuery) -> StoreResult<Page<Listing>> {
        // A query of punctuation only (`%`) names no word: nothing has all of its words.
        let text = q.q.as_deref().unwrap_or("");
        if crate::row::search_words(text).is_empty() && !text.trim().is_empty() {
            listing_cursor(q)?;
            return Ok(Page { items: Vec::new(), next_cursor: None });
        }
        if let Some(page) = self.search_shelves(market, q).await? {
            return Ok(page);
        }
        let sort = q.order();
        let words = crate::row::search_words(q.q.as_deref().unwrap_or(""));
        let limit = q.limit.unwrap_or(50).clamp(1, haggle_core::limits::MAX_PAGE);
        if dialect::WALK_BEFORE_WORDS_INDEX
            && !words.is_empty()
            && sort != ListingSort::Relevance
            && let Some(page) = self.search_by_walking(market, q, &words, limit).await?
        {
            return Ok(page);
        }
        // Ranked by relevance: the listings found with their scores, then ordered (and the
        // cursor applied) on the score outside.
        let mut b = sqlx::QueryBuilder::<Db>::new("SELECT ");
        if sort == ListingSort::Relevance {
            b.push(format!("* FROM (SELECT {LISTING_COLS}, "));
            dialect::push_score(&mut b, &words);
            b.push(" AS score");
        } else {
            b.push(LISTING_COLS);
        }
        b.push(" FROM listings WHERE market_id = ");
        b.push_bind(market);
        if !words.is_empty() {
            dialect::push_words(&mut b, market, &words, self.shelves.is_some());
        }
        push_listing_filters(&mut b, q)?;
        self.fetch_listing_page(b, sort, limit).await
    }

    /// A keyword search sorted by price or id answered by walking the listings in that order
    /// (`listings_by_price` / `listings_by_status`, or the category's) and matching each one's
    /// words (`contains_word`), if the page is found among the first [`WALK_ROWS`] listings or
    /// there are no more: then it is the words index's answer, without reading every listing
    /// that has the words (a common word matches nearly all of them, sold ones too). `None`:
    /// ask the words index.
    async fn search_by_walking(&self, market: i64, q: &ListingQuery, words: &[String], limit: u32) -> StoreResult<Option<Page<Listing>>> {
        let sort = q.order();
        let mut b = sqlx::QueryBuilder::<Db>::new(format!("SELECT {LISTING_COLS} FROM (SELECT * FROM listings WHERE market_id = "));
        b.push_bind(market);
        push_listing_filters(&mut b, q)?;
        b.push(format!(" LIMIT {WALK_ROWS}) AS walked WHERE 1 = 1"));
        dialect::push_words(&mut b, market, words, true);
        b.push(order_by(sort));
        let page = self.fetch_listing_page(b, sort, limit).await?;
        if page.next_cursor.is_some() {
            return Ok(Some(page));
        }
        let mut b = sqlx::QueryBuilder::<Db>::new("SELECT CAST(COUNT(*) AS BIGINT) AS walked FROM (SELECT 1 FROM listings WHERE market_id = ");
        b.push_bind(market);
        push_listing_filters(&mut b, q)?;
        b.push(format!(" LIMIT {WALK_ROWS}) AS walked"));
        let walked: i64 = b.build().fetch_one(&self.pool).await?.try_get("walked")?;
        Ok((walked < WALK_ROWS).then_some(page))
    }

    /// Runs a search ordered as `sort` asks, one listing more than the page to know if another
    /// page follows.
    async fn fetch_listing_page(&self, mut b: sqlx::QueryBuilder<Db>, sort: ListingSort, limit: u32) -> StoreResult<Page<Listing>> {
        b.push(format!(" LIMIT {}", limit as i64 + 1));
        let rows = b.build().fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(|r| {
                let score = if sort == ListingSort::Relevance { r.try_get("score")? } else { 0 };
                Ok((listing_row(r)?, score))
            })
            .collect::<StoreResult<_>>()?;
        Ok(listing_page(items, sort, limit as usize))
    }

    pub async fn thread(&self, market: i64, id: i64) -> StoreResult<Option<ThreadDetail>> {
        if let Some(Some(detail)) = self.recall(market, |m| m.thread_detail(id)).await? {
            return Ok(Some(detail));
        }
        let mut c = self.pool.acquire().await?;
        let Some(thread) = get_thread(&mut c, market, id).await? else { return Ok(None) };
        // The newest THREAD_WINDOW of each, oldest first.
        let window = crate::THREAD_WINDOW;
        let messages = sqlx::query(sql(format!("SELECT {MESSAGE_COLS} FROM (SELECT {MESSAGE_COLS} FROM messages WHERE market_id = $1 AND thread_id = $2 ORDER BY +id DESC LIMIT {window}) AS w ORDER BY id")))
            .bind(market).bind(id).fetch_all(&mut *c).await?.iter().map(message_row).collect::<StoreResult<_>>()?;
        let offers = sqlx::query(sql(format!("SELECT {OFFER_COLS} FROM (SELECT {OFFER_COLS} FROM offers WHERE market_id = $1 AND thread_id = $2 ORDER BY +id DESC LIMIT {window}) AS w ORDER BY id")))
            .bind(market).bind(id).fetch_all(&mut *c).await?.iter().map(offer_row).collect::<StoreResult<_>>()?;
        Ok(Some(ThreadDetail { thread, messages, offers }))
    }

    pub async fn threads(&self, market: i64, party: Option<i64>, listing: Option<i64>, after: i64, limit: u32) -> StoreResult<Vec<Thread>> {
        if let (Some(p), None) = (party, listing)
            && let Some(threads) = self.recall(market, |m| m.threads_of(p, after, limit.clamp(1, haggle_core::limits::MAX_PAGE) as usize)).await?
        {
            return Ok(threads);
        }
        let limit = i64::from(limit.clamp(1, haggle_core::limits::MAX_PAGE));
        let filter = |b: &mut sqlx::QueryBuilder<Db>| {
            if let Some(l) = listing {
                b.push(" AND listing_id = ").push_bind(l);
            }
        };
        let mut b = party_rows("threads", THREAD_COLS, &["owner", "counterparty"], market, party, after, limit, filter);
        b.build().fetch_all(&self.pool).await?.iter().map(thread_row).collect()
    }

    pub async fn offer(&self, market: i64, id: i64) -> StoreResult<Option<Offer>> {
        get_offer(&mut *self.pool.acquire().await?, market, id).await
    }

    pub async fn deal(&self, market: i64, id: i64) -> StoreResult<Option<Deal>> {
        get_deal(&mut *self.pool.acquire().await?, market, id).await
    }

    pub async fn deal_notes(&self, market: i64, deal: i64, before: Option<i64>, limit: u32) -> StoreResult<Vec<DealNote>> {
        let limit = limit.clamp(1, haggle_core::limits::MAX_PAGE);
        let rows = sqlx::query(sql(format!("SELECT {NOTE_COLS} FROM deal_notes WHERE market_id = $1 AND deal_id = $2 AND +id < $3 ORDER BY +id DESC LIMIT {limit}")))
            .bind(market).bind(deal).bind(before.unwrap_or(i64::MAX)).fetch_all(&self.pool).await?;
        rows.iter().map(note_row).collect()
    }

    pub async fn thread_row(&self, market: i64, id: i64) -> StoreResult<Option<Thread>> {
        get_thread(&mut *self.pool.acquire().await?, market, id).await
    }

    pub async fn thread_messages(&self, market: i64, thread: i64, before: Option<i64>, limit: u32) -> StoreResult<Vec<Message>> {
        let limit = limit.clamp(1, haggle_core::limits::MAX_PAGE);
        let rows = sqlx::query(sql(format!("SELECT {MESSAGE_COLS} FROM messages WHERE market_id = $1 AND thread_id = $2 AND +id < $3 ORDER BY +id DESC LIMIT {limit}")))
            .bind(market).bind(thread).bind(before.unwrap_or(i64::MAX)).fetch_all(&self.pool).await?;
        rows.iter().map(message_row).collect()
    }

    /// A deal's ratings with whether each is revealed yet (both rated, or the window closed).
    pub async fn deal_ratings(&self, market: i64, deal: i64, real_now: i64) -> StoreResult<Vec<(Rating, bool)>> {
        let Some(m) = self.market(market).await? else { return Ok(Vec::new()) };
        let mut c = self.pool.acquire().await?;
        let Some(d) = get_deal(&mut c, market, deal).await? else { return Ok(Vec::new()) };
        let rs = deal_ratings(&mut c, market, deal).await?;
        let revealed = lifecycle::rating_revealed(&d, rs.len(), &m.rules, m.now(real_now));
        Ok(rs.into_iter().map(|r| (r, revealed)).collect())
    }

    /// A participant's reputation from its deals and the revealed ratings it received.
    pub async fn reputation(&self, market: i64, participant: i64, real_now: i64) -> StoreResult<lifecycle::Reputation> {
        if let Some(r) = self.recall(market, |m| m.reputation(participant, real_now)).await? {
            return Ok(r);
        }
        let deals = self.deals_in(market, Some(participant), None, 0, STORE_READ_ROWS).await?;
        if deals.is_empty() {
            // Ratings are of deals: with none, there is nothing more to read (most participants
            // an agent looks up, in a big market).
            return Ok(lifecycle::reputation(participant, &deals, &[]));
        }
        // Before taking a connection: holding one while `market` takes another would wait
        // forever on a pool of one (an in-memory database).
        let Some(m) = self.market(market).await? else { return Ok(lifecycle::Reputation::default()) };
        let mut c = self.pool.acquire().await?;
        let now = m.now(real_now);
        let received: Vec<Rating> = sqlx::query(sql(format!("SELECT {RATING_COLS} FROM ratings WHERE market_id = $1 AND ratee = $2 ORDER BY +id")))
            .bind(market).bind(participant).fetch_all(&mut *c).await?.iter().map(rating_row).collect::<StoreResult<_>>()?;
        let mut revealed = Vec::new();
        for r in received {
            let Some(d) = deals.iter().find(|d| d.id == r.deal_id) else { continue };
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ratings WHERE market_id = $1 AND deal_id = $2").bind(market).bind(d.id).fetch_one(&mut *c).await?;
            if lifecycle::rating_revealed(d, n as usize, &m.rules, now) {
                revealed.push(r);
            }
        }
        Ok(lifecycle::reputation(participant, &deals, &revealed))
    }

    /// Everything the settlement report needs: participants, deals and transfers of a market.
    pub async fn settlement(&self, market: i64) -> StoreResult<Option<haggle_core::settlement::Settlement>> {
        let Some(m) = self.market(market).await? else { return Ok(None) };
        let mut c = self.pool.acquire().await?;
        let participants: Vec<Participant> = sqlx::query(sql(format!("SELECT {PARTICIPANT_COLS} FROM participants WHERE market_id = $1 ORDER BY id")))
            .bind(market).fetch_all(&mut *c).await?.iter().map(participant_row).collect::<StoreResult<_>>()?;
        let deals: Vec<Deal> = sqlx::query(sql(format!("SELECT {DEAL_COLS} FROM deals WHERE market_id = $1 ORDER BY id")))
            .bind(market).fetch_all(&mut *c).await?.iter().map(deal_row).collect::<StoreResult<_>>()?;
        let transfers: Vec<Transfer> = sqlx::query("SELECT market_id, id, debit, credit, amount, kind, deal_id, at, idempotency_id FROM transfers WHERE market_id = $1 ORDER BY id")
            .bind(market).fetch_all(&mut *c).await?.iter().map(transfer_row).collect::<StoreResult<_>>()?;
        Ok(Some(haggle_core::settlement::settle(&m, &participants, &deals, &transfers)))
    }

    pub async fn deals(&self, market: i64, party: Option<i64>, after: i64, limit: u32) -> StoreResult<Vec<Deal>> {
        self.deals_in(market, party, None, after, limit).await
    }

    /// Deals by id, optionally only one party's and only in one status (e.g. disputes to resolve).
    pub async fn deals_in(&self, market: i64, party: Option<i64>, status: Option<DealStatus>, after: i64, limit: u32) -> StoreResult<Vec<Deal>> {
        if let (Some(p), None) = (party, status)
            && let Some(deals) = self.recall(market, |m| m.deals_of(p, after, limit.clamp(1, STORE_READ_ROWS) as usize)).await?
        {
            return Ok(deals);
        }
        let filter = |b: &mut sqlx::QueryBuilder<Db>| {
            if let Some(s) = status {
                b.push(" AND status = ").push_bind(s.as_str());
            }
        };
        let mut b = party_rows("deals", DEAL_COLS, &["buyer", "seller"], market, party, after, i64::from(limit.clamp(1, STORE_READ_ROWS)), filter);
        b.build().fetch_all(&self.pool).await?.iter().map(deal_row).collect()
    }

    pub async fn balance(&self, market: i64, participant: i64, real_now: i64) -> StoreResult<Balance> {
        let now = self.market(market).await?.map_or(real_now, |m| m.now(real_now));
        if let Some(f) = self.recall(market, |m| m.funds(participant, now)).await? {
            return Ok(Balance::from(f));
        }
        let f = funds(&mut *self.pool.acquire().await?, market, participant, now).await?;
        Ok(Balance::from(f))
    }

    pub async fn events(&self, market: i64, viewer: Viewer, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
        // An agent reads its own feed within a round or two of its events: from memory then.
        if let Viewer::Own(p) = viewer
            && let Some(Some(events)) = self.recall(market, |m| m.events_of(p, after, limit.clamp(1, STORE_READ_ROWS) as usize)).await?
        {
            return Ok(events);
        }
        events_after(market, viewer, after, limit).build().fetch_all(&self.pool).await?.iter().map(event_row).collect()
    }

    /// The newest events a viewer may read, newest first: those before `before` (all when `None`),
    /// only of the given kinds when `kinds` is not empty.
    pub async fn recent_events(&self, market: i64, viewer: Viewer, kinds: &[&str], before: Option<i64>, limit: u32) -> StoreResult<Vec<Event>> {
        let mut b = sqlx::QueryBuilder::<Db>::new(format!("SELECT {EVENT_COLS} FROM events WHERE market_id = "));
        b.push_bind(market);
        if let Some(before) = before {
            b.push(" AND seq < ").push_bind(before);
        }
        match viewer {
            Viewer::All => {}
            Viewer::Public => {
                b.push(" AND scope = 'public'");
            }
            Viewer::Participant(p) => {
                b.push(" AND (scope = 'public' OR party_a = ").push_bind(p).push(" OR party_b = ").push_bind(p).push(")");
            }
            Viewer::Own(p) => {
                b.push(" AND (party_a = ").push_bind(p).push(" OR party_b = ").push_bind(p).push(")");
            }
        }
        if !kinds.is_empty() {
            b.push(" AND kind IN (");
            let mut list = b.separated(", ");
            for k in kinds {
                list.push_bind(k.to_string());
            }
            b.push(")");
        }
        b.push(format!(" ORDER BY seq DESC LIMIT {}", limit.clamp(1, STORE_READ_ROWS)));
        b.build().fetch_all(&self.pool).await?.iter().map(event_row).collect()
    }

    /// Every ledger and hash-chain invariant of one market, checked on the stored data.
    pub async fn verify(&self, market: i64) -> StoreResult<Verification> {
        let mut c = self.pool.acquire().await?;
        let transfers: Vec<Transfer> = sqlx::query("SELECT market_id, id, debit, credit, amount, kind, deal_id, at, idempotency_id FROM transfers WHERE market_id = $1 ORDER BY id")
            .bind(market).fetch_all(&mut *c).await?.iter().map(transfer_row).collect::<StoreResult<_>>()?;
        let deals: Vec<Deal> = sqlx::query(sql(format!("SELECT {DEAL_COLS} FROM deals WHERE market_id = $1 ORDER BY id")))
            .bind(market).fetch_all(&mut *c).await?.iter().map(deal_row).collect::<StoreResult<_>>()?;
        let mut stored = std::collections::BTreeMap::new();
        for r in sqlx::query("SELECT account, balance FROM accounts WHERE market_id = $1").bind(market).fetch_all(&mut *c).await? {
            stored.insert(parsed("account", &r.try_get::<String, _>("account")?, Account::parse)?, r.try_get::<i64, _>("balance")?);
        }
        // The chain is read a page at a time and checked as it goes, keeping only its end and
        // its transfer events: a 10,000-participant simulation's ~900,000 events held whole (raw
        // rows and parsed) were the larger part of `bench sim`'s peak memory.
        let mut chain = ChainCheck::default();
        let mut last: Option<(i64, String)> = None;
        let mut booked: std::collections::BTreeMap<i64, event::TransferBooked> = std::collections::BTreeMap::new();
        let mut told: std::collections::BTreeMap<i64, Vec<EventBody>> = std::collections::BTreeMap::new();
        loop {
            let after = last.as_ref().map_or(i64::MIN, |l| l.0);
            let page: Vec<Event> = sqlx::query(sql(format!("SELECT {EVENT_COLS} FROM events WHERE market_id = $1 AND seq > $2 ORDER BY seq LIMIT {STORE_READ_ROWS}")))
                .bind(market).bind(after).fetch_all(&mut *c).await?.iter().map(event_row).collect::<StoreResult<_>>()?;
            for e in &page {
                chain.next(e);
                if let EventBody::TransferBooked(p) = &e.body {
                    booked.insert(p.transfer_id, p.clone());
                }
                if let Some(d) = e.body.payment_deal() {
                    told.entry(d).or_default().push(e.body.clone());
                }
            }
            match page.last() {
                Some(e) if page.len() == STORE_READ_ROWS as usize => last = Some((e.seq, e.hash.clone())),
                Some(e) => { last = Some((e.seq, e.hash.clone())); break; }
                None => break,
            }
        }
        let head = sqlx::query(sql(format!("SELECT {MARKET_COLS} FROM markets WHERE id = $1"))).bind(market).fetch_optional(&mut *c).await?;
        let mut breaches: Vec<String> = ledger::verify(&transfers, &deals, &stored).into_iter().map(|b| format!("{}: {}", b.invariant, b.detail)).collect();
        breaches.extend(chain.breaks);
        if let Some(h) = head.as_ref().map(market_row).transpose()? {
            let (seq, hash) = last.unwrap_or((0, GENESIS_HASH.to_string()));
            if h.last_seq != seq || h.last_hash != hash {
                breaches.push(format!("chain head: market says seq {} but the log ends at {seq} (events deleted?)", h.last_seq));
                let _ = hash;
            }
        }
        let kept = sqlx::query("SELECT buyer, held, spent FROM buyer_funds WHERE market_id = $1").bind(market).fetch_all(&mut *c).await?;
        let kept = kept.iter().map(|r| Ok((r.try_get("buyer")?, (r.try_get("held")?, r.try_get("spent")?)))).collect::<StoreResult<_>>()?;
        breaches.extend(buyer_funds_breaches(&deals, &kept));
        // Every transfer is also an event on the chain, so a deleted or edited transfer shows.
        for t in &transfers {
            let same = booked.get(&t.id).is_some_and(|p| {
                p.amount == t.amount && p.debit == t.debit && p.credit == t.credit && p.kind == t.kind && p.deal_id == t.deal_id
            });
            if !same {
                breaches.push(format!("transfers_match_events: transfer {} differs from its transfer_booked event", t.id));
            }
        }
        if booked.len() != transfers.len() {
            breaches.push(format!("transfers_match_events: {} transfer events but {} transfers", booked.len(), transfers.len()));
        }
        // Every payment record is what its deal's `payment_*` events say (issue 23).
        let records: Vec<haggle_core::payment::Payment> = sqlx::query("SELECT record FROM payments WHERE market_id = $1 ORDER BY deal_id")
            .bind(market).fetch_all(&mut *c).await?.iter().map(|r| json("record", &r.try_get::<String, _>("record")?)).collect::<StoreResult<_>>()?;
        for p in &records {
            let bodies: Vec<&EventBody> = told.get(&p.deal_id).map_or(Vec::new(), |b| b.iter().collect());
            if let Some(d) = haggle_core::payment::disagreement(p, &bodies) {
                breaches.push(format!("payments_match_events: {d}"));
            }
        }
        Ok(Verification { market_id: market, transfers: transfers.len(), events: chain.checked, breaches })
    }
}
