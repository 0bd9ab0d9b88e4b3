-- A buyer's held and spent money (issue 18), kept beside its deals: every command that may spend
-- read both sums over every deal the buyer ever made (`deals_buyer_funds`), so the reads grew
-- with the buyer's history, inside the market's write lock. A trigger keeps one row per buyer as
-- its deals are written; `Store::verify` compares it with the deals' sums. The state lists are
-- `DealStatus::hold_is_open` and `DealStatus::is_spent` (a test compares them).
CREATE TABLE buyer_funds (
    market_id BIGINT NOT NULL,
    buyer BIGINT NOT NULL,
    held BIGINT NOT NULL,
    spent BIGINT NOT NULL,
    PRIMARY KEY (market_id, buyer)
);
INSERT INTO buyer_funds (market_id, buyer, held, spent)
SELECT market_id, buyer,
       SUM(CASE WHEN status IN ('awaiting_approval', 'agreed', 'handed_over', 'disputed') THEN price ELSE 0 END),
       SUM(CASE WHEN status IN ('awaiting_approval', 'agreed', 'handed_over', 'completed', 'disputed', 'partially_refunded') THEN price ELSE 0 END)
FROM deals GROUP BY market_id, buyer;
CREATE FUNCTION haggle_buyer_funds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        UPDATE buyer_funds
        SET held = held - CASE WHEN OLD.status IN ('awaiting_approval', 'agreed', 'handed_over', 'disputed') THEN OLD.price ELSE 0 END,
            spent = spent - CASE WHEN OLD.status IN ('awaiting_approval', 'agreed', 'handed_over', 'completed', 'disputed', 'partially_refunded') THEN OLD.price ELSE 0 END
        WHERE market_id = OLD.market_id AND buyer = OLD.buyer;
    END IF;
    INSERT INTO buyer_funds (market_id, buyer, held, spent)
    VALUES (NEW.market_id, NEW.buyer,
            CASE WHEN NEW.status IN ('awaiting_approval', 'agreed', 'handed_over', 'disputed') THEN NEW.price ELSE 0 END,
            CASE WHEN NEW.status IN ('awaiting_approval', 'agreed', 'handed_over', 'completed', 'disputed', 'partially_refunded') THEN NEW.price ELSE 0 END)
    ON CONFLICT (market_id, buyer) DO UPDATE
    SET held = buyer_funds.held + EXCLUDED.held, spent = buyer_funds.spent + EXCLUDED.spent;
    RETURN NULL;
END;
$$;
CREATE TRIGGER deals_buyer_funds_insert AFTER INSERT ON deals FOR EACH ROW EXECUTE FUNCTION haggle_buyer_funds();
CREATE TRIGGER deals_buyer_funds_update AFTER UPDATE OF status, price, buyer ON deals FOR EACH ROW
WHEN (OLD.status <> NEW.status OR OLD.price <> NEW.price OR OLD.buyer <> NEW.buyer)
EXECUTE FUNCTION haggle_buyer_funds();
-- Deals are never deleted; if one were, its buyer's row would disagree with `verify`.
DROP INDEX deals_buyer_funds;
