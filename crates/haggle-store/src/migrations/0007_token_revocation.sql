-- Revoked tokens stay (their hash scopes stored idempotency keys) but no longer authenticate.
ALTER TABLE tokens ADD COLUMN revoked_at BIGINT;
