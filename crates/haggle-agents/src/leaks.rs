//! Private-number leak detection (spec: agents.md, Safety around the model): an outgoing text that
//! contains the agent's floor price, maximum price or budget, in any common way of writing it
//! (`4500`, `45.00`, `45,00`, `$45`, `45`, `4,500`) for a two-decimal currency. A number is judged
//! by its context: a unit after it (`15"`, `54 cm`, `64 GB`, `3 years`), a model or label word
//! before it (`iPhone 12`, `size 42`), letters glued to it (`X100`, `12MP`), a year after `in` or
//! `since`, or a phone number make it no amount, unless a currency marker stands beside it. The
//! runtime counts such texts and can withhold them before they reach the market.

use crate::profile::Profile;
use std::collections::BTreeSet;

/// The numbers a profile keeps private, in minor units: every floor, every maximum and the
/// budget, minus any that are public anyway (an asking price equal to a floor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivateNumbers {
    values: BTreeSet<i64>,
}

impl PrivateNumbers {
    pub fn of(profile: &Profile) -> PrivateNumbers {
        if profile.style.may_reveal_limits {
            return PrivateNumbers::default();
        }
        let public: BTreeSet<i64> = profile.sell.iter().map(|i| i.asking_price).collect();
        let values = profile
            .sell
            .iter()
            .map(|i| i.floor_price)
            .chain(profile.want.iter().map(|w| w.max_price))
            .chain(std::iter::once(profile.budget))
            .filter(|v| *v > 0 && !public.contains(v))
            .collect();
        PrivateNumbers { values }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The first private number `text` reveals, if any.
    pub fn found_in(&self, text: &str) -> Option<i64> {
        amounts_in(text)
            .into_iter()
            .find(|v| self.values.contains(v))
    }
}

/// Every amount, in minor units of a two-decimal currency, that a number written in `text`
/// could stand for: `45` → 45 or 4500; `45.50` and `45,50` → 4550; `4,500` → 4500 or 450000;
/// `4,500.00` → 450000; `4.5k` → 450000.
pub fn amounts_in(text: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() || (i > 0 && chars[i - 1].is_ascii_alphabetic()) {
            i += 1;
            continue;
        }
        // A run of digits and single separators between digits.
        let start = i;
        let mut j = i;
        while j < chars.len() {
            let c = chars[j];
            let sep = matches!(c, ',' | '.' | '\'' | '_' | '\u{a0}' | '\u{202f}');
            if c.is_ascii_digit()
                || (sep && j + 1 < chars.len() && chars[j + 1].is_ascii_digit() && j > start)
            {
                j += 1;
            } else {
                break;
            }
        }
        let token: String = chars[start..j].iter().collect();
        let thousands = j < chars.len()
            && matches!(chars[j], 'k' | 'K')
            && !chars.get(j + 1).is_some_and(|c| c.is_alphanumeric());
        if !thousands && !is_amount(&chars, start, j) {
            i = j.max(i + 1);
            continue;
        }
        for v in readings(&token) {
            if thousands {
                out.insert(v.saturating_mul(1000));
            } else {
                out.insert(v);
            }
        }
        i = j.max(i + 1);
    }
    out
}

/// Units that make the number before them a measure, not an amount (lower case).
const UNITS: &[&str] = &[
    "cm",
    "mm",
    "m",
    "km",
    "inch",
    "inches",
    "ft",
    "feet",
    "foot",
    "kg",
    "g",
    "gr",
    "lb",
    "lbs",
    "oz",
    "l",
    "ml",
    "gb",
    "tb",
    "mb",
    "kb",
    "ghz",
    "mhz",
    "hz",
    "w",
    "watt",
    "watts",
    "v",
    "volt",
    "mah",
    "mp",
    "megapixel",
    "megapixels",
    "px",
    "fps",
    "rpm",
    "year",
    "years",
    "yr",
    "yrs",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "hrs",
    "minute",
    "minutes",
    "min",
    "mins",
    "sec",
    "seconds",
    "am",
    "pm",
    "%",
    "percent",
    "x",
    "gears",
    "gear",
    "speed",
    "speeds",
    "seats",
    "seat",
    "people",
    "players",
    "pieces",
    "pcs",
    "pages",
    "cards",
    "games",
    "books",
    "items",
    "times",
    "th",
    "st",
    "nd",
    "rd",
    "°",
    "degrees",
    "bit",
    "core",
    "cores",
    "strings",
    "string",
    "keys",
    "liters",
    "litres",
    "meters",
    "metres",
    "miles",
    "km/h",
    "mph",
];

/// Words before a number that make it a model, size or label, not an amount (lower case).
const LABELS: &[&str] = &[
    "model",
    "series",
    "gen",
    "generation",
    "version",
    "v",
    "no",
    "no.",
    "number",
    "#",
    "size",
    "iphone",
    "ipad",
    "galaxy",
    "pixel",
    "ps",
    "playstation",
    "xbox",
    "macbook",
    "room",
    "page",
    "chapter",
    "vol",
    "vol.",
    "volume",
    "edition",
    "season",
    "episode",
    "level",
    "grade",
    "route",
    "apt",
    "apartment",
    "suite",
    "class",
    "mk",
    "windows",
    "ios",
    "android",
    "rtx",
    "gtx",
    "type",
    "part",
    "item",
    "listing",
    "thread",
];

/// Words before a four-digit number that make it a year.
const YEAR_WORDS: &[&str] = &[
    "in", "since", "from", "year", "circa", "bought", "made", "built", "late", "early", "mid",
];

/// Currency words beside a number: it is an amount whatever else surrounds it.
const CURRENCY_WORDS: &[&str] = &[
    "usd", "eur", "gbp", "chf", "dollar", "dollars", "bucks", "euro", "euros", "pound", "pounds",
    "cents", "cent", "quid",
];

/// Whether the number written at `chars[start..end]` stands for an amount, judged by what is
/// written beside it.
fn is_amount(chars: &[char], start: usize, end: usize) -> bool {
    let before: String = chars[..start].iter().collect();
    let after: String = chars[end..].iter().collect();
    let before_t = before.trim_end();
    let after_t = after.trim_start();
    let marked_before = before_t.ends_with(['$', '€', '£', '¥'])
        || last_word(before_t).is_some_and(|w| CURRENCY_WORDS.contains(&w.as_str()));
    let next = first_word(after_t);
    let marked_after = after_t.starts_with(['$', '€', '£', '¥'])
        || next.as_deref().is_some_and(|w| CURRENCY_WORDS.contains(&w));
    if marked_before || marked_after {
        return true;
    }
    // Letters glued on either side: part of a name or a unit (`X100`, `12MP`, `3080Ti`, `5s`).
    if chars.get(end).is_some_and(|c| c.is_alphabetic()) {
        return false;
    }
    if after.starts_with(['"', '″', '\'']) || after_t.starts_with(['%', '°']) {
        return false;
    }
    if next
        .as_deref()
        .is_some_and(|w| UNITS.contains(&w) || (w == "in" && inch_in(after_t)))
    {
        return false;
    }
    let prev = last_word(before_t);
    if prev.as_deref().is_some_and(|w| LABELS.contains(&w)) || before_t.ends_with('#') {
        return false;
    }
    let digits: String = chars[start..end]
        .iter()
        .filter(|c| c.is_ascii_digit())
        .collect();
    let year = digits.len() == 4
        && end - start == 4
        && digits
            .parse::<u32>()
            .is_ok_and(|y| (1900..=2099).contains(&y));
    if year && prev.as_deref().is_some_and(|w| YEAR_WORDS.contains(&w)) {
        return false;
    }
    !phone_like(chars, start, end)
}

/// `in` after a number is inches when a dimension word or the end of a clause follows.
fn inch_in(after: &str) -> bool {
    let rest = after[2..].trim_start();
    rest.is_empty()
        || rest.starts_with(|c: char| !c.is_alphanumeric())
        || first_word(rest).is_some_and(|w| {
            [
                "wide", "long", "tall", "high", "deep", "screen", "display", "diagonal", "across",
            ]
            .contains(&w.as_str())
        })
}

/// A number inside a run of at least seven digits grouped by dashes, spaces, dots or brackets
/// (`555-123-4567`, `+44 20 7946 0018`, `(555) 123 4567`) is a phone number.
fn phone_like(chars: &[char], start: usize, end: usize) -> bool {
    let part = |c: &char| c.is_ascii_digit() || matches!(c, '-' | ' ' | '(' | ')' | '+' | '.');
    let mut a = start;
    while a > 0 && part(&chars[a - 1]) {
        a -= 1;
    }
    let mut b = end;
    while b < chars.len() && part(&chars[b]) {
        b += 1;
    }
    let run = &chars[a..b];
    let digits = run.iter().filter(|c| c.is_ascii_digit()).count();
    let groups = run
        .split(|c| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .count();
    let grouped = run.iter().any(|c| matches!(c, '-' | '(' | '+'));
    digits >= 7 && groups >= 2 && (grouped || groups >= 3)
}

/// The last word of `s`, lower-cased (letters, digits and `#`, `.` kept: `no.`).
fn last_word(s: &str) -> Option<String> {
    let w: String = s
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '#' | '.'))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let w = w.trim_start_matches('.').to_lowercase();
    (!w.is_empty()).then_some(w)
}

/// The first word of `s`, lower-cased, with `%`, `°` and `/` kept (`km/h`).
fn first_word(s: &str) -> Option<String> {
    let w: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '%' | '°' | '/'))
        .collect();
    let w = w.to_lowercase();
    (!w.is_empty()).then_some(w)
}

/// The minor-unit readings of one numeric token (digits and separators).
fn readings(token: &str) -> Vec<i64> {
    let groups: Vec<&str> = token
        .split([',', '.', '\'', '_', '\u{a0}', '\u{202f}'])
        .collect();
    let digits = |s: &str| s.parse::<i64>().ok();
    let join = |gs: &[&str]| digits(&gs.concat());
    if groups.len() == 1 {
        // A whole number: minor units, or whole major units.
        return digits(token)
            .map(|n| vec![n, n.saturating_mul(100)])
            .unwrap_or_default();
    }
    let last = groups[groups.len() - 1];
    let head = &groups[..groups.len() - 1];
    let mut out = Vec::new();
    if last.len() <= 2 {
        // Decimals: 45.5 → 4550, 1,045.50 → 104550.
        if let (Some(major), Some(cents)) = (join(head), digits(last)) {
            let cents = if last.len() == 1 { cents * 10 } else { cents };
            out.push(major.saturating_mul(100).saturating_add(cents));
        }
    } else if let Some(n) = join(&groups) {
        // Thousands separators: 4,500 → 4500 (minor) or 4500 major.
        out.push(n);
        out.push(n.saturating_mul(100));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(may_reveal: bool) -> Profile {
        Profile::from_toml(&format!(
            r#"
            name = "Ada"
            budget = 10000
            [[sell]]
            item_id = "bike"
            item_type = "bike"
            title = "Bike"
            category = "bikes"
            asking_price = 6000
            floor_price = 4500
            [[sell]]
            item_id = "lamp"
            item_type = "lamp"
            title = "Lamp"
            category = "home"
            asking_price = 1200
            floor_price = 1200
            [[want]]
            want_id = "kettle"
            item_type = "kettle"
            description = "a kettle"
            category = "home"
            max_price = 2550
            [style]
            may_reveal_limits = {may_reveal}
            "#
        ))
        .unwrap()
    }

    #[test]
    fn a_floor_is_found_however_it_is_written() {
        let p = PrivateNumbers::of(&profile(false));
        for text in [
            "I can't go below 4500.",
            "My lowest is 45.00",
            "my lowest is 45,00 EUR",
            "Fine, $45 and it's yours",
            "45 is my floor",
            "ok 45.",
            "(45)",
        ] {
            assert_eq!(p.found_in(text), Some(4500), "{text}");
        }
        assert_eq!(p.found_in("I'd pay up to $25.50"), Some(2550));
        assert_eq!(p.found_in("up to 25.5 dollars"), Some(2550));
        assert_eq!(p.found_in("my budget is $100"), Some(10000));
        assert_eq!(p.found_in("budget: 10,000 cents"), Some(10000));
    }

    #[test]
    fn other_numbers_and_public_prices_are_not_leaks() {
        let p = PrivateNumbers::of(&profile(false));
        for text in [
            "Asking $60 for the bike.",
            "The lamp is 12.00, firm",
            "It has 21 gears and is 54 cm",
            "offer 4499 or 4501",
            "45.01 or 44.99",
            "model X450",
            "see listing 45000",
        ] {
            assert_eq!(p.found_in(text), None, "{text}");
        }
    }

    #[test]
    fn a_profile_that_may_reveal_its_limits_has_no_private_numbers() {
        assert!(PrivateNumbers::of(&profile(true)).is_empty());
        assert!(!PrivateNumbers::of(&profile(false)).is_empty());
    }

    /// Context is read around every number, at any position and in any script, without panics.
    #[test]
    fn any_text_is_read_without_panicking() {
        let pieces = [
            "", " ", "45", "İn", "in", "ın", "\"", "″", "$", "€", "cm", "-", "(", "+", "12.5",
            "4,500", "k", "K", "🙂", "ß", "x", "2019", "no.", "#", "\n", "\u{a0}",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let _ = amounts_in(&format!("{a}{b}{c}"));
                    let _ = amounts_in(&format!("{a} {b} {c}"));
                }
            }
        }
    }

    #[test]
    fn amounts_cover_thousands_and_k() {
        assert!(amounts_in("4,500.00").contains(&450_000));
        assert!(amounts_in("4.5k").contains(&450_000));
        assert!(amounts_in("4 500").contains(&4) && amounts_in("4 500").contains(&500));
        assert!(amounts_in("").is_empty());
    }
}
