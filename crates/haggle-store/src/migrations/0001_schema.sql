-- Haggle schema, shared by SQLite and PostgreSQL. Money columns are BIGINT minor units.
-- Ids inside a market come from markets.next_id (one counter per market, taken under the market's
-- write lock), so every table keys on (market_id, id).
CREATE TABLE markets (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    currency TEXT NOT NULL,
    clock_mode TEXT NOT NULL,
    sim_now BIGINT NOT NULL,
    rules TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    next_id BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);
CREATE TABLE participants (
    market_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    mandate TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (market_id, id)
);
CREATE TABLE listings (
    market_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    owner BIGINT NOT NULL,
    side TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    item_condition TEXT NOT NULL,
    price BIGINT NOT NULL CHECK (price > 0),
    attributes TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    first_offer_at BIGINT,
    search_text TEXT NOT NULL,
    PRIMARY KEY (market_id, id)
);
CREATE INDEX listings_by_status ON listings (market_id, status, id);
CREATE INDEX listings_by_price ON listings (market_id, status, price, id);
CREATE INDEX listings_by_owner ON listings (market_id, owner);
CREATE TABLE threads (
    market_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    listing_id BIGINT NOT NULL,
    owner BIGINT NOT NULL,
    counterparty BIGINT NOT NULL,
    status TEXT NOT NULL,
    offers_made BIGINT NOT NULL,
    last_offer_by BIGINT,
    created_at BIGINT NOT NULL,
    deadline BIGINT,
    PRIMARY KEY (market_id, id),
    UNIQUE (market_id, listing_id, counterparty)
);
CREATE INDEX threads_by_owner ON threads (market_id, owner);
CREATE INDEX threads_by_counterparty ON threads (market_id, counterparty);
CREATE INDEX threads_by_listing ON threads (market_id, listing_id, status);
CREATE TABLE messages (
    market_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    thread_id BIGINT NOT NULL,
    author BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (market_id, id)
);
CREATE INDEX messages_by_thread ON messages (market_id, thread_id);
CREATE TABLE offers (
    market_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    thread_id BIGINT NOT NULL,
    listing_id BIGINT NOT NULL,
    proposer BIGINT NOT NULL,
    buyer BIGINT NOT NULL,
    seller BIGINT NOT NULL,
    price BIGINT NOT NULL CHECK (price > 0),
    state TEXT NOT NULL,
    void_reason TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (market_id, id)
);
CREATE INDEX offers_by_thread ON offers (market_id, thread_id, state);
CREATE INDEX offers_by_listing ON offers (market_id, listing_id, state);
CREATE INDEX offers_by_buyer ON offers (market_id, buyer, state);
CREATE INDEX offers_by_expiry ON offers (market_id, state, expires_at);
CREATE TABLE deals (
    market_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    listing_id BIGINT NOT NULL,
    thread_id BIGINT NOT NULL,
    offer_id BIGINT NOT NULL,
    buyer BIGINT NOT NULL,
    seller BIGINT NOT NULL,
    price BIGINT NOT NULL CHECK (price > 0),
    status TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    approval_deadline BIGINT,
    PRIMARY KEY (market_id, id)
);
-- One winner per listing, enforced by the database as well as by the rules.
CREATE UNIQUE INDEX deals_one_winner ON deals (market_id, listing_id) WHERE status NOT IN ('cancelled', 'declined');
CREATE INDEX deals_by_buyer ON deals (market_id, buyer);
CREATE INDEX deals_by_seller ON deals (market_id, seller);
CREATE TABLE accounts (
    market_id BIGINT NOT NULL,
    account TEXT NOT NULL,
    balance BIGINT NOT NULL,
    PRIMARY KEY (market_id, account)
);
CREATE TABLE transfers (
    market_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    debit TEXT NOT NULL,
    credit TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    kind TEXT NOT NULL,
    deal_id BIGINT,
    at BIGINT NOT NULL,
    idempotency_id TEXT NOT NULL,
    PRIMARY KEY (market_id, id),
    UNIQUE (market_id, idempotency_id)
);
CREATE TABLE events (
    market_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor BIGINT,
    scope TEXT NOT NULL,
    party_a BIGINT,
    party_b BIGINT,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (market_id, seq)
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    market_id BIGINT,
    participant_id BIGINT,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE idempotency (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
