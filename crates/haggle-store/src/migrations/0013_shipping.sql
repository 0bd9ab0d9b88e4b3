-- Shipping beside handover (issue 23; spec, trust.md: Shipping): a listing's `fulfilment` (JSON
-- `haggle_core::shipping::Fulfilment`; NULL = in person, as every listing before) and a shipped
-- deal's shipping record (JSON `haggle_core::shipping::Shipping`; NULL = handed over in person).
-- A simulation's ground truth of a shipment, like `true_state`: the listing's `true_transit`
-- (JSON `Transit`) and the deal's hidden `arrives_at`, which the sweep's carrier reads.
ALTER TABLE listings ADD COLUMN fulfilment TEXT;
ALTER TABLE listings ADD COLUMN true_transit TEXT;
ALTER TABLE deals ADD COLUMN shipping TEXT;
ALTER TABLE deals ADD COLUMN arrives_at BIGINT;
CREATE INDEX deals_arrivals ON deals (market_id, arrives_at) WHERE arrives_at IS NOT NULL;
