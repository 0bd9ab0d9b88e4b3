//! Every row limit in one place: how many rows one page, one read or one pass may take. The
//! service's `limit` checks, the store's SQL and the clients that page name these constants, so
//! a limit changes in one line (and a bare `LIMIT 10000` in SQL is a review finding).

/// Most items on one page of a list read: a `limit` outside `1..=MAX_PAGE` is refused.
pub const MAX_PAGE: u32 = 500;
/// Most events one read of the feed returns: a `limit` outside `1..=MAX_EVENTS` is refused.
pub const MAX_EVENTS: u32 = 1000;
/// Most rows of each kind one sweep pass handles: due offers, open threads, deals past their
/// deadlines, approvals, and after a close the active listings. The next pass takes the rest.
pub const SWEEP_ROWS: usize = 10_000;
/// Most listings, threads and offers one suspension ends (the store loads at most this many).
pub const SUSPENSION_ROWS: usize = 10_000;
/// Most rows one internal store read returns whatever limit it is asked for (a participant's
/// deals and events), and the deals a reputation is computed from.
pub const STORE_READ_ROWS: u32 = 10_000;
/// A thread read holds its newest this many messages and offers (oldest first); older messages
/// are read page by page. The core bounds what one party adds to a thread
/// (`MAX_POSTS_PER_PARTY`), so a whole thread fits: nobody can push the other side's words out.
pub const THREAD_WINDOW: usize = 500;
/// Most webhook deliveries one worker claims at once.
pub const DELIVERY_CLAIM_ROWS: u32 = 1000;
/// Most events one batch of a live stream (the API's SSE feed, the web's live feed) reads.
pub const STREAM_BATCH: u32 = 200;
/// Rows one web chart reads (deals of a market, events of a participant's ledger): a market
/// with more is charted on its newest rows, and the chart says so.
pub const CHART_ROWS: usize = 5_000;
/// Most commands a participant driven from outside a simulated market makes in one turn (each
/// is recorded for the run's replay); further ones are refused with `rate_limited`.
pub const MAX_TURN_COMMANDS: usize = 500;
/// The longest real (wall-clock) time a simulation waits for an outside participant to end one
/// turn (`--turn-budget`); a turn not ended by then counts as a timeout.
pub const MAX_TURN_BUDGET_MS: u64 = 3_600_000;
/// The time budget of an outside participant's turn when the run names none: long enough for a
/// script or an agent with a model, short enough that a silent one does not hold the market.
pub const DEFAULT_TURN_BUDGET_MS: u64 = 30_000;
/// A person at the web UI (the `human` brain) gets this long per turn by default.
pub const DEFAULT_HUMAN_TURN_BUDGET_MS: u64 = 300_000;
/// Most proposals (trading mode `propose`) one participant's agent may leave waiting for its
/// principal: past it the agent's next offer, counter or acceptance is refused.
pub const MAX_WAITING_PROPOSALS: u32 = 100;
/// Most token checks one server process remembers (`haggle-service`'s token cache); when full,
/// the stale ones go, and if none is stale all of them (the next requests re-read their tokens).
pub const CACHED_TOKENS: usize = 10_000;
