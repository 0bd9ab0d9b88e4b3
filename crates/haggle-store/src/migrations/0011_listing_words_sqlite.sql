-- Listing search through FTS5: every listing's lower-cased search text, indexed by the `ascii`
-- tokenizer, which splits words exactly where `row::is_word_char` does (ASCII letters and digits
-- and every non-ASCII byte are word characters). Contentless (the text stays in `listings`) and
-- without positions (`detail=none`): a search asks only which listings have all its words.
-- Its rowid is the listing's market and id (market_id * 2^32 + id), so a search reads one
-- market's range and gets listing ids without a lookup; the trigger refuses ids outside that
-- range rather than mixing two listings up.
CREATE VIRTUAL TABLE listing_words USING fts5(
    search_text, content='', columnsize=0, detail=none, tokenize='ascii'
);
CREATE TRIGGER listing_words_insert AFTER INSERT ON listings BEGIN
    SELECT RAISE(ABORT, 'listing outside the search index range')
    WHERE new.market_id NOT BETWEEN 0 AND 2147483647 OR new.id NOT BETWEEN 0 AND 4294967295;
    INSERT INTO listing_words (rowid, search_text)
    VALUES (new.market_id * 4294967296 + new.id, new.search_text);
END;
-- No command changes a listing's text or deletes a listing; if one ever does, the index follows.
CREATE TRIGGER listing_words_update AFTER UPDATE OF search_text ON listings BEGIN
    INSERT INTO listing_words (listing_words, rowid, search_text)
    VALUES ('delete', old.market_id * 4294967296 + old.id, old.search_text);
    INSERT INTO listing_words (rowid, search_text)
    VALUES (new.market_id * 4294967296 + new.id, new.search_text);
END;
CREATE TRIGGER listing_words_delete AFTER DELETE ON listings BEGIN
    INSERT INTO listing_words (listing_words, rowid, search_text)
    VALUES ('delete', old.market_id * 4294967296 + old.id, old.search_text);
END;
INSERT INTO listing_words (rowid, search_text)
SELECT market_id * 4294967296 + id, search_text FROM listings;
