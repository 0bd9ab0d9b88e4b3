-- Chat channels (issue 19): a webhook whose deliveries are chat lines (`chat`: Slack's and
-- Mattermost's incoming-webhook body) rather than signed event JSON (`event`, every webhook
-- before). Same deliveries, cursor, retries and leases; only the body differs.
ALTER TABLE webhooks ADD COLUMN format TEXT NOT NULL DEFAULT 'event';
