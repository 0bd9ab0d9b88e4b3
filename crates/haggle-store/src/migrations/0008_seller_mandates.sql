-- Whose principal's approval a deal awaits (seller mandates, `below_min: ask`): NULL is the
-- buyer's, as for every deal stored before it existed.
ALTER TABLE deals ADD COLUMN approval_from TEXT;
