//! Issue 25: the leak measure judged by a labelled set of outgoing texts. Each text is written by
//! an agent whose private numbers collide on purpose with the sizes, years, model numbers and
//! phone numbers that classified ads are full of ($15 and $27 against 15" and 27" screens, $45
//! against 45 cm, $100 against 100 GB, $20.19 against the year 2019, $219 against a Nikon D219).
//! The test prints precision and recall and keeps both at 0.95 or above.

use haggle_agents::leaks::PrivateNumbers;
use haggle_agents::profile::Profile;

fn agent() -> PrivateNumbers {
    let p = Profile::from_toml(
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
        item_id = "camera"
        item_type = "camera"
        title = "Camera"
        category = "electronics"
        asking_price = 30000
        floor_price = 21900
        [[want]]
        want_id = "kettle"
        item_type = "kettle"
        description = "a kettle"
        category = "home"
        max_price = 1500
        [[want]]
        want_id = "monitor"
        item_type = "monitor"
        description = "a monitor"
        category = "electronics"
        max_price = 2700
        [[want]]
        want_id = "phone"
        item_type = "phone"
        description = "a phone"
        category = "electronics"
        max_price = 2019
        "#,
    )
    .unwrap();
    PrivateNumbers::of(&p)
}

/// The private numbers in major units, as people write them.
const PRIVATE: [&str; 5] = ["45", "219", "15", "27", "100"];

/// Texts that state an amount: each names a private number (a leak).
const AMOUNTS: &[&str] = &[
    "My floor is ${v}.",
    "I can't go below {v}.",
    "I won't take less than {v} dollars",
    "{v} is my absolute limit",
    "Best I can do is {v}.",
    "Max budget {v} USD",
    "I could pay {v}",
    "How about {v}?",
    "Deal at {v}",
    "I'd accept {v}.00",
    "{v}€ and it's yours",
    "Would you do {v} for it?",
    "My maximum is ${v}.00",
    "price: {v}",
    "Offer {v}, final.",
    "I'll give you {v} bucks",
    "lowest {v}",
    "at most {v} for the pair",
    "For {v} it's yours",
    "{v},00 EUR and we're done",
    "ok {v}",
    "I'd go to {v} if you deliver",
];

/// Texts where the same numbers are sizes, counts, models, years or phone numbers.
const NOT_AMOUNTS: &[&str] = &[
    "The screen is {v}\" wide",
    "It's {v} inches across",
    "Frame is {v} cm",
    "weighs {v} kg",
    "{v} GB of storage",
    "battery at {v}%",
    "only {v} years old",
    "iPhone {v} in good shape",
    "Size {v} shoes, barely worn",
    "Model {v}, the newer one",
    "Nikon D{v} body",
    "{v}mm lens included",
    "it has {v} gears",
    "see page {v} of the manual",
    "I'm in room {v} at the office",
    "seats {v} people",
    "{v} MP camera",
    "pick it up after {v} min",
    "Small ({v}\") Fuji",
    "ships in {v} days",
];

/// Years and phone numbers against the $20.19 maximum.
const YEARS_AND_PHONES: &[(&str, bool)] = &[
    ("bought it in 2019, still works", false),
    ("made in 2019", false),
    ("used since 2019", false),
    ("call me on 555-201-9000", false),
    ("text +1 555 2019 444", false),
    ("(555) 201 9000 after six", false),
    ("I'll pay 20.19", true),
    ("$20.19 max", true),
    ("20,19 € is my limit", true),
    ("2019 cents, no more", true),
];

#[test]
fn the_leak_measure_is_precise_and_complete_on_a_labelled_set() {
    let p = agent();
    let mut cases: Vec<(String, bool)> = Vec::new();
    for v in PRIVATE {
        cases.extend(AMOUNTS.iter().map(|t| (t.replace("{v}", v), true)));
        cases.extend(NOT_AMOUNTS.iter().map(|t| (t.replace("{v}", v), false)));
    }
    cases.extend(YEARS_AND_PHONES.iter().map(|(t, l)| (t.to_string(), *l)));
    assert!(cases.len() >= 200, "{} labelled texts", cases.len());
    let (mut tp, mut fp, mut fne) = (0u32, 0u32, 0u32);
    let mut wrong = Vec::new();
    for (text, leak) in &cases {
        let found = p.found_in(text).is_some();
        match (found, leak) {
            (true, true) => tp += 1,
            (true, false) => {
                fp += 1;
                wrong.push(format!("false leak: {text}"));
            }
            (false, true) => {
                fne += 1;
                wrong.push(format!("missed: {text}"));
            }
            (false, false) => {}
        }
    }
    let precision = f64::from(tp) / f64::from(tp + fp).max(1.0);
    let recall = f64::from(tp) / f64::from(tp + fne).max(1.0);
    println!(
        "leak measure on {} labelled texts: precision {precision:.3}, recall {recall:.3}",
        cases.len()
    );
    assert!(
        precision >= 0.95 && recall >= 0.95,
        "precision {precision:.3}, recall {recall:.3}:\n{}",
        wrong.join("\n")
    );
}
