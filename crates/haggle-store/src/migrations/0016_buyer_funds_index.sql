-- A buyer's funds (issue 18): every command that may spend reads the sums of the buyer's held and
-- spent deals. With only `deals_by_buyer` each read visited every deal the buyer ever made, in the
-- table, twice; this index answers both sums from the index alone, reaching only the deals in the
-- states asked for.
CREATE INDEX deals_buyer_funds ON deals (market_id, buyer, status, price);
