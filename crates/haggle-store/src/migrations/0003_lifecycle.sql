-- The deal lifecycle after agreement: handover, confirmation window, cancellation requests,
-- resolution of the hold; notes (handover, dispute evidence, resolution reasons) and ratings.
ALTER TABLE deals ADD COLUMN handover_note TEXT;
ALTER TABLE deals ADD COLUMN handed_over_at BIGINT;
ALTER TABLE deals ADD COLUMN confirm_deadline BIGINT;
ALTER TABLE deals ADD COLUMN cancel_requested_by BIGINT;
ALTER TABLE deals ADD COLUMN finished_at BIGINT;
ALTER TABLE deals ADD COLUMN resolution TEXT;
CREATE INDEX deals_by_status ON deals (market_id, status);
CREATE TABLE deal_notes (
    market_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    deal_id BIGINT NOT NULL,
    author BIGINT,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (market_id, id)
);
CREATE INDEX deal_notes_by_deal ON deal_notes (market_id, deal_id);
CREATE TABLE ratings (
    market_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    deal_id BIGINT NOT NULL,
    rater BIGINT NOT NULL,
    ratee BIGINT NOT NULL,
    score BIGINT NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (market_id, id),
    UNIQUE (market_id, deal_id, rater)
);
CREATE INDEX ratings_by_ratee ON ratings (market_id, ratee);
-- Agents search wanted items by category far more often than anything else.
CREATE INDEX listings_by_category ON listings (market_id, category, status, price);
-- An agent polls the events that name it (its threads, deals and money).
CREATE INDEX events_by_party_a ON events (market_id, party_a, seq);
CREATE INDEX events_by_party_b ON events (market_id, party_b, seq);
