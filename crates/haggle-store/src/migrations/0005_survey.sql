-- The principals' survey (fairness 1–7, satisfaction 1–7, what they would pay): research data
-- joined to outcomes, not market state. One answer per participant and market; answering again
-- replaces it.
CREATE TABLE survey_answers (
    market_id BIGINT NOT NULL,
    participant_id BIGINT NOT NULL,
    fairness BIGINT NOT NULL CHECK (fairness BETWEEN 1 AND 7),
    satisfaction BIGINT NOT NULL CHECK (satisfaction BETWEEN 1 AND 7),
    -- Minor units of the market's currency; 0 = would not pay.
    would_pay BIGINT NOT NULL CHECK (would_pay >= 0),
    comment TEXT NOT NULL,
    answered_at BIGINT NOT NULL,
    PRIMARY KEY (market_id, participant_id)
);
