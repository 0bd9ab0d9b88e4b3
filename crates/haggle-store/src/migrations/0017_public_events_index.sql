-- The public feed (issue 18): a participant's page of events has a branch for the market's public
-- events after its cursor, and an observer's page is only those. With no index on `scope` each
-- such read walked the log from the cursor, payloads and all, until it met a page of public events
-- (five times the page when a fifth of events are public). This index holds only the public ones;
-- `scope` is a column of it so that SQLite answers the branch from the index alone.
CREATE INDEX events_public ON events (market_id, seq, scope) WHERE scope = 'public';
