-- Listing search through a tsvector with a GIN index. The lexemes are the listing's words
-- themselves (`search::tsvector`, built in Rust: `row::is_word_char` decides what a word is, not
-- PostgreSQL's parser, which keeps "1.5" or an e-mail address whole and splits on non-ASCII
-- punctuation), weighted A for the title and B for the description, for relevance. The rows
-- already there are filled by the migration's Rust step (`fill_search_docs`), in this
-- transaction.
ALTER TABLE listings ADD COLUMN search_doc tsvector;
CREATE INDEX listings_by_words ON listings USING GIN (search_doc);
