-- Trading by hand (issue 19): who acted for an event's actor, its agent or its principal in the
-- web UI. Existing events were all the agents' own.
ALTER TABLE events ADD COLUMN acted_by TEXT NOT NULL DEFAULT 'agent';
-- Proposals (trading mode `propose`): an agent's offer, counter or acceptance waiting for its
-- principal to confirm (it then runs with the agent's idempotency key) or decline. Not market
-- state: no event or ledger row until a confirmed step runs as a command.
CREATE TABLE proposals (
    market_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    participant_id BIGINT NOT NULL,
    step TEXT NOT NULL,
    scope TEXT NOT NULL,
    idem_key TEXT,
    request_hash TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    PRIMARY KEY (market_id, id)
);
CREATE INDEX proposals_by_participant ON proposals (market_id, participant_id, status, id);
CREATE INDEX proposals_by_key ON proposals (market_id, scope, idem_key);
