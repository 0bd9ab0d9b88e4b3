-- Payments behind the escrow (issue 23; spec, trust.md: Payments): per deal, what the payment
-- provider confirmed (a JSON `haggle_core::payment::Payment`, its state beside it for lists), and
-- per participant the provider's customer and payment method its principal attached. Not market
-- state: written outside the market's write lock, never in the event log. No card data: a
-- provider's ids only.
CREATE TABLE payments (
    market_id BIGINT NOT NULL,
    deal_id BIGINT NOT NULL,
    state TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (market_id, deal_id)
);
CREATE TABLE payment_methods (
    market_id BIGINT NOT NULL,
    participant_id BIGINT NOT NULL,
    customer TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (market_id, participant_id)
);
