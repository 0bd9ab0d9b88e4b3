-- Claims and inspection (trust.md): a listing's claims and a simulated item's true state (never
-- shown), a deal's inspection and the grounds of its dispute, each as JSON.
ALTER TABLE listings ADD COLUMN claims TEXT NOT NULL DEFAULT '{}';
ALTER TABLE listings ADD COLUMN true_state TEXT;
ALTER TABLE deals ADD COLUMN inspection TEXT;
ALTER TABLE deals ADD COLUMN dispute TEXT;
