-- Webhooks: an operator's HTTP endpoint per market for chosen event types, and the deliveries of
-- that market's events to it (signed, retried with backoff). Not market state: written outside the
-- market's write lock, never part of the event log or the ledger. Ids are global
-- (MAX(id) + 1 under the writer, retried on a unique violation).
CREATE TABLE webhooks (
    id BIGINT PRIMARY KEY,
    market_id BIGINT NOT NULL,
    url TEXT NOT NULL,
    -- The HMAC key deliveries are signed with; kept in plain text because signing needs it.
    secret TEXT NOT NULL,
    -- JSON array of event kinds; empty = every event.
    event_types TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    -- Events of the market up to this sequence number have been enqueued (or filtered out).
    cursor_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_by_market ON webhooks (market_id, id);
CREATE TABLE webhook_deliveries (
    id BIGINT PRIMARY KEY,
    webhook_id BIGINT NOT NULL,
    market_id BIGINT NOT NULL,
    event_seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    -- pending | delivered | failed
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    -- When a pending delivery is next due (also the lease of an attempt in flight).
    next_attempt_at BIGINT NOT NULL,
    last_status_code BIGINT,
    last_error TEXT,
    delivered_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (webhook_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at, id);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
