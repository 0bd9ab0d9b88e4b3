-- Listing search through FTS5: every listing's lower-cased search text, indexed by the `ascii`
-- tokenizer, which splits words exactly where `row::is_word_char` does (ASCII letters and digits
-- and every non-ASCII byte are word characters). Contentless (the text stays in `listings`) and
-- without positions (`detail=none`): a search asks only which listings have all its words.
-- Its rowid is the listing's market and id (market_id * 2^32 + id, `search::fts5_rowid`), so a
-- search reads one market's range and gets listing ids without a lookup.
-- The store writes a listing's row here in the listing's transaction. A simulation's store
-- (batched, savepoint per command) notes the listing in `listing_words_pending` instead and
-- indexes the noted listings at each flush: FTS5 writes its pending terms to disk at every
-- savepoint, which cost ~100-150 us per listing there.
CREATE VIRTUAL TABLE listing_words USING fts5(
    search_text, content='', columnsize=0, detail=none, tokenize='ascii'
);
CREATE TABLE listing_words_pending (
    market_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    PRIMARY KEY (market_id, id)
);
INSERT INTO listing_words (rowid, search_text)
SELECT market_id * 4294967296 + id, search_text FROM listings;
