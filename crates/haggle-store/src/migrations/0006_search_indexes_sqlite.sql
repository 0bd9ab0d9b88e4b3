-- Searches stay index range scans as a market grows to tens of thousands of listings: a
-- category search walks one side's active listings already in the order it returns (newest,
-- or cheapest), and an owner's listings are found without reading anyone else's.
DROP INDEX listings_by_category;
-- SQLite: the index also carries search_text, so a keyword search filters while it walks the
-- index and reads the table only for the listings it returns. (Not on PostgreSQL: a btree entry
-- there is limited to ~2.7 kB and a description may be longer.)
CREATE INDEX listings_by_category ON listings (market_id, category, side, status, price, id, search_text);
CREATE INDEX listings_by_category_newest ON listings (market_id, category, side, status, id);
DROP INDEX listings_by_owner;
CREATE INDEX listings_by_owner ON listings (market_id, owner, status, id);
-- A party's threads and deals are read as one range scan per side, in id order.
DROP INDEX threads_by_owner;
CREATE INDEX threads_by_owner ON threads (market_id, owner, id);
DROP INDEX threads_by_counterparty;
CREATE INDEX threads_by_counterparty ON threads (market_id, counterparty, id);
DROP INDEX deals_by_buyer;
CREATE INDEX deals_by_buyer ON deals (market_id, buyer, id);
DROP INDEX deals_by_seller;
CREATE INDEX deals_by_seller ON deals (market_id, seller, id);
-- A buyer's live offers (its committed funds) by its own index, before and after the planner
-- has statistics: with only (market_id, buyer, state) a fresh market's planner preferred the
-- expiry index and walked every live offer in the market.
DROP INDEX offers_by_buyer;
CREATE INDEX offers_by_buyer ON offers (market_id, buyer, state, expires_at);
