//! Turning market data into words for people: the event sentences, money and times are the
//! service's (`haggle_service::story`, shared with the chat channels); here are the pages' own:
//! money typed into forms back into minor units, countdowns, query values, the feed's filters.

use haggle_core::Money;
pub use haggle_service::story::{
    FeedEntry, Names, describe, exponent, group_of, money, time, words,
};

/// Parses an amount typed by a person (`12`, `12.5`, `12.34`, `$1,200.00`) into minor units.
pub fn parse_money(input: &str, currency: &str) -> Result<Money, String> {
    let exp = exponent(currency);
    let cleaned: String = input
        .trim()
        .chars()
        .filter(|c| !matches!(c, ',' | '$' | '€' | '£' | ' '))
        .collect();
    let bad = || format!("'{input}' is not an amount (write it like 12.50)");
    let (whole, frac) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > exp as usize
        || whole.len() > 13
    {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<width$}", width = exp as usize)
            .parse()
            .map_err(|_| bad())?
    };
    whole
        .checked_mul(10i64.pow(exp))
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)
}

/// An amount as a form shows it for editing (`12.34`).
pub fn money_input(amount: Money, currency: &str) -> String {
    let exp = exponent(currency);
    if exp == 0 {
        return amount.to_string();
    }
    let unit = 10i64.pow(exp);
    format!(
        "{}.{:0width$}",
        amount / unit,
        (amount % unit).abs(),
        width = exp as usize
    )
}

/// A duration as a person reads a countdown: `2 d 4 h`, `3 h 20 min`, `45 min`, `under a minute`.
pub fn span(ms: i64) -> String {
    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    let (d, h, m) = (ms / DAY, ms % DAY / HOUR, ms % HOUR / MIN);
    match (d, h, m) {
        (0, 0, 0) => "under a minute".into(),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// Percent-encodes a query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Events whose story another event's line tells: a counter is one line (`offer_made`, naming
/// the countered offer), not two.
pub fn told_elsewhere(kind: &str) -> bool {
    matches!(kind, "offer_countered" | "offer_superseded")
}

/// The kinds a feed filter shows (the feed leaves out ledger and mandate bookkeeping, and the
/// countered or superseded offer's own event: the new offer's line tells the counter).
pub fn kinds_of(group: &str) -> &'static [&'static str] {
    const LISTINGS: &[&str] = &[
        "listing_posted",
        "listing_withdrawn",
        "listing_relisted",
        "listing_expired",
        "listing_removed",
        "participant_joined",
        "market_closing_set",
    ];
    const OFFERS: &[&str] = &[
        "thread_opened",
        "message_posted",
        "thread_closed",
        "offer_made",
        "offer_accepted",
        "offer_rejected",
        "offer_withdrawn",
        "offer_expired",
        "offer_voided",
    ];
    const DEALS: &[&str] = &[
        "listing_sold",
        "deal_created",
        "deal_handed_over",
        "receipt_confirmed",
        "deal_cancel_requested",
        "deal_disputed",
        "dispute_evidence_added",
        "deal_approved",
        "deal_rated",
        "deal_completed",
        "deal_cancelled",
        "deal_declined",
        "deal_refunded",
        "deal_partially_refunded",
    ];
    const ALL: &[&str] = &[
        "listing_posted",
        "listing_withdrawn",
        "listing_relisted",
        "listing_expired",
        "listing_removed",
        "participant_joined",
        "market_closing_set",
        "thread_opened",
        "message_posted",
        "thread_closed",
        "offer_made",
        "offer_accepted",
        "offer_rejected",
        "offer_withdrawn",
        "offer_expired",
        "offer_voided",
        "listing_sold",
        "deal_created",
        "deal_handed_over",
        "receipt_confirmed",
        "deal_cancel_requested",
        "deal_disputed",
        "dispute_evidence_added",
        "deal_approved",
        "deal_rated",
        "deal_completed",
        "deal_cancelled",
        "deal_declined",
        "deal_refunded",
        "deal_partially_refunded",
    ];
    match group {
        "listings" => LISTINGS,
        "offers" => OFFERS,
        "deals" => DEALS,
        _ => ALL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_amounts_become_minor_units() {
        assert_eq!(parse_money("12", "USD"), Ok(1200));
        assert_eq!(parse_money("12.5", "USD"), Ok(1250));
        assert_eq!(parse_money("$1,200.05", "USD"), Ok(120_005));
        assert_eq!(parse_money(".5", "USD"), Ok(50));
        assert_eq!(parse_money("1200", "JPY"), Ok(1200));
        for bad in ["", "-1", "1.234", "abc", "1.2.3", "99999999999999999"] {
            assert!(parse_money(bad, "USD").is_err(), "{bad}");
        }
        assert!(parse_money("1.5", "JPY").is_err());
        assert_eq!(money_input(1250, "USD"), "12.50");
    }

    #[test]
    fn time_left_reads_as_days_hours_and_minutes() {
        assert_eq!(span(2 * 86_400_000 + 4 * 3_600_000 + 59_000), "2 d 4 h");
        assert_eq!(span(3 * 3_600_000 + 20 * 60_000), "3 h 20 min");
        assert_eq!(span(45 * 60_000 + 5), "45 min");
        assert_eq!(span(59_999), "under a minute");
    }

    #[test]
    fn every_feed_kind_has_a_group() {
        for k in kinds_of("all") {
            assert_ne!(group_of(k), "other", "{k}");
            assert!(kinds_of(group_of(k)).contains(k), "{k}");
        }
    }
}
