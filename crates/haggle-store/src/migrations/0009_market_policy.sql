-- Market policy (issue 17): a participant's suspension (JSON: reason and time; NULL when not
-- suspended), the moderation queue's row for each listing a policy rule held, and offers by
-- proposer for the per-hour offer limit.
ALTER TABLE participants ADD COLUMN suspension TEXT;
CREATE TABLE listing_holds (
    market_id BIGINT NOT NULL,
    listing_id BIGINT NOT NULL,
    rules TEXT NOT NULL,
    reason TEXT NOT NULL,
    held_at BIGINT NOT NULL,
    PRIMARY KEY (market_id, listing_id)
);
CREATE INDEX offers_by_proposer ON offers (market_id, proposer, created_at);
