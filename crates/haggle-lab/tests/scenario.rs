//! Scenario files: TOML, JSON and CSV round trips, and errors that name the line and field.

use haggle_lab::generator::generate;
use haggle_lab::scenario::{Scenario, ScenarioError};

fn tmp(name: &str) -> std::path::PathBuf {
    haggle_testkit::temp_dir("lab-scenario").join(name)
}

const TOML_OK: &str = r#"
name = "two colleagues"
currency = "USD"
budget_default = 5000

[[profiles]]
name = "Ada"
budget = 10000

[[profiles.sell]]
item_id = "ada-bike"
item_type = "road bike"
title = "Road bike, 56 cm"
category = "bikes"
condition = "good"
asking_price = 8000
floor_price = 6000

[[profiles.want]]
want_id = "ada-lamp"
item_type = "desk lamp"
description = "A desk lamp"
category = "office"
max_price = 1500

[[profiles]]
name = "Ben"
budget = 9000

[[profiles.sell]]
item_id = "ben-lamp"
item_type = "desk lamp"
title = "LED desk lamp"
category = "office"
asking_price = 1200
floor_price = 800

[[profiles.want]]
want_id = "ben-bike"
item_type = "road bike"
description = "A road bike"
category = "bikes"
max_price = 9000
"#;

#[test]
fn toml_json_and_csv_round_trip() {
    let s = generate(11, 12, 10_000);
    // TOML and JSON keep everything.
    let toml = s.to_toml().unwrap();
    assert_eq!(Scenario::from_toml_str(&toml, "s.toml").unwrap(), s);
    assert_eq!(Scenario::from_json_str(&s.to_json(), "s.json").unwrap(), s);
    for ext in ["toml", "json", "csv"] {
        let path = tmp(&format!("round.{ext}"));
        s.write_path(&path).unwrap();
        let back = Scenario::from_path(&path).unwrap();
        if ext == "csv" {
            // The CSV form keeps the trade, not the style, attributes or reference prices.
            assert_eq!(back.name, s.name);
            assert_eq!(back.seed, s.seed);
            assert_eq!(back.budget_default, s.budget_default);
            assert_eq!(back.profiles.len(), s.profiles.len());
            for (a, b) in back.profiles.iter().zip(&s.profiles) {
                assert_eq!(a.name, b.name);
                assert_eq!(a.budget, b.budget);
                assert_eq!(a.sell, b.sell);
                assert_eq!(a.want, b.want);
                assert_eq!(a.owns, b.owns);
            }
            // And writing it again gives the same text.
            assert_eq!(back.to_csv(), s.to_csv());
        } else {
            assert_eq!(back, s, "{ext}");
        }
    }
}

#[test]
fn a_hand_written_toml_scenario_reads() {
    let s = Scenario::from_toml_str(TOML_OK, "two.toml").unwrap();
    assert_eq!(s.profiles.len(), 2);
    assert_eq!(s.profiles[1].want[0].max_price, 9000);
    assert_eq!(s.item("ben-lamp").unwrap().0.name, "Ben");
    assert_eq!(s.seed, 0);
}

fn toml_err(text: &str) -> ScenarioError {
    Scenario::from_toml_str(text, "scenario.toml").unwrap_err()
}

#[test]
fn bad_toml_names_the_line_and_field() {
    // A string where a number belongs (line 8 is Ada's budget).
    let e = toml_err(&TOML_OK.replace("budget = 10000", "budget = \"lots\""));
    assert_eq!(e.line, Some(8), "{e}");
    assert_eq!(e.field, "profiles[0].budget", "{e}");
    assert!(
        e.to_string()
            .starts_with("scenario.toml line 8, profiles[0].budget: "),
        "{e}"
    );

    // In the second participant's item.
    let e = toml_err(&TOML_OK.replace("asking_price = 1200", "asking_price = 12.5"));
    assert_eq!(e.field, "profiles[1].sell[0].asking_price", "{e}");
    assert_eq!(
        e.line,
        Some(
            TOML_OK
                .lines()
                .position(|l| l.contains("asking_price = 1200"))
                .unwrap()
                + 1
        )
    );

    // A missing field names it.
    let e = toml_err(&TOML_OK.replace("floor_price = 800\n", ""));
    assert!(e.field.ends_with("floor_price"), "{e}");
    assert!(e.message.contains("missing field"), "{e}");

    // An unknown field.
    let e = toml_err(&TOML_OK.replace("condition = \"good\"", "colour = \"red\""));
    assert!(
        e.field.contains("colour") || e.message.contains("colour"),
        "{e}"
    );
    assert!(e.line.is_some(), "{e}");

    // Syntax.
    let e = toml_err("name = \"x\"\n[[profiles]\n");
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn invalid_profiles_are_refused_with_the_participant_named() {
    // Floor above the asking price: Profile::validate's error, prefixed with the participant.
    let e = toml_err(&TOML_OK.replace("floor_price = 800", "floor_price = 5000"));
    assert_eq!(e.field, "participant 'Ben', sell[0].asking_price", "{e}");
    let line = TOML_OK
        .lines()
        .position(|l| l.contains("asking_price = 1200"))
        .unwrap()
        + 1;
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "scenario.toml line {line}, participant 'Ben', sell[0].asking_price: must be at least the floor price (5000)"
        )
    );

    // An item id used by two participants.
    let e = toml_err(&TOML_OK.replace("item_id = \"ben-lamp\"", "item_id = \"ada-bike\""));
    assert_eq!(e.field, "participant 'Ben', sell[0].item_id", "{e}");
    assert!(e.message.contains("also an item of 'Ada'"), "{e}");

    // Two participants with one name.
    let e = toml_err(&TOML_OK.replace("name = \"Ben\"", "name = \"Ada\""));
    assert_eq!(e.field, "participant 'Ada', name", "{e}");

    // The scenario itself.
    let e = toml_err(&TOML_OK.replace("budget_default = 5000", "budget_default = -1"));
    assert_eq!(e.field, "budget_default");
    let e = toml_err("name = \"empty\"\n");
    assert_eq!(e.field, "profiles");
}

#[test]
fn bad_json_names_the_line_and_field() {
    let good = generate(5, 3, 10_000).to_json();
    // Break the first floor price.
    let at = good.find("\"floor_price\": ").unwrap();
    let end = at + good[at..].find(',').unwrap();
    let bad = format!("{}\"floor_price\": \"cheap\"{}", &good[..at], &good[end..]);
    let e = Scenario::from_json_str(&bad, "scenario.json").unwrap_err();
    let line = bad[..at].matches('\n').count() + 1;
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.field, "profiles[0].sell[0].floor_price", "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "scenario.json line {line}, profiles[0].sell[0].floor_price: invalid type"
        )),
        "{e}"
    );

    // Validation errors are located too.
    let at = good.find("\"max_price\": ").unwrap();
    let end = at + good[at..].find(',').unwrap();
    let bad = format!("{}\"max_price\": 0{}", &good[..at], &good[end..]);
    let e = Scenario::from_json_str(&bad, "scenario.json").unwrap_err();
    assert_eq!(e.line, Some(bad[..at].matches('\n').count() + 1), "{e}");
    assert!(
        e.field.starts_with("participant '") && e.field.ends_with("want[0].max_price"),
        "{e}"
    );

    let e = Scenario::from_json_str("{\"name\": \"x\",\n \"profiles\": [\n", "s.json").unwrap_err();
    assert!(e.line.is_some(), "{e}");
}

const CSV_OK: &str = "# name: hand written
# budget_default: 10000
participant,budget,kind,id,item_type,title,category,condition,price,limit,quantity
Ada,12000,sell,ada-bike,road bike,\"Road bike, 56 cm\",bikes,good,8000,6000,
Ada,,want,ada-lamp,desk lamp,A desk lamp,office,,,1500,
Ben,,sell,ben-lamp,desk lamp,LED desk lamp,office,like new,1200,800,
Ben,,want,,road bike,,bikes,,,9000,2
Ben,,owns,,snowboard,,,,,,
";

fn csv_err(text: &str) -> ScenarioError {
    Scenario::from_csv_str(text, "scenario.csv", "scenario").unwrap_err()
}

#[test]
fn a_hand_written_csv_scenario_reads() {
    let s = Scenario::from_csv_str(CSV_OK, "scenario.csv", "fallback").unwrap();
    assert_eq!(s.name, "hand written");
    assert_eq!(s.budget_default, 10_000);
    let ada = s.profile("Ada").unwrap();
    assert_eq!(ada.budget, 12_000);
    assert_eq!(ada.sell[0].title, "Road bike, 56 cm");
    assert_eq!(
        (ada.sell[0].asking_price, ada.sell[0].floor_price),
        (8000, 6000)
    );
    assert_eq!(ada.want[0].max_price, 1500);
    let ben = s.profile("Ben").unwrap();
    assert_eq!(ben.budget, 10_000, "the default budget");
    assert_eq!(ben.want[0].want_id, "ben-want-1", "a generated id");
    assert_eq!(ben.want[0].quantity, 2);
    assert_eq!(ben.want[0].description, "road bike");
    assert_eq!(ben.owns, ["snowboard"]);
    // From a file, the name defaults to the file's.
    let path = tmp("office.csv");
    std::fs::write(&path, CSV_OK.replace("# name: hand written\n", "")).unwrap();
    assert_eq!(Scenario::from_path(&path).unwrap().name, "office");
}

#[test]
fn bad_csv_names_the_line_and_column() {
    // Line 7 holds a price that is not an integer.
    let bad = format!("{CSV_OK}Cleo,,sell,cleo-1,vinyl record,LP,collectibles,good,12.5,500,\n");
    assert_eq!(
        csv_err(&bad).to_string(),
        "scenario.csv line 9, column price: not an integer (got '12.5')"
    );
    let bad = CSV_OK.replace(
        "Ben,,sell,ben-lamp,desk lamp,LED desk lamp,office,like new,1200,800,",
        "Ben,,sell,ben-lamp,desk lamp,LED desk lamp,office,like new,1200,cheap,",
    );
    let e = csv_err(&bad);
    assert_eq!((e.line, e.field.as_str()), (Some(6), "column limit"), "{e}");

    // Validation errors map back to the row and column.
    let bad = CSV_OK.replace("1200,800", "700,800");
    assert_eq!(
        csv_err(&bad).to_string(),
        "scenario.csv line 6, participant 'Ben', column price: must be at least the floor price (800)"
    );
    let bad = CSV_OK.replace("A desk lamp,office,,,1500", "A desk lamp,,,,1500");
    assert_eq!(
        csv_err(&bad).to_string(),
        "scenario.csv line 5, participant 'Ada', column category: must not be empty"
    );

    // Row kinds and their columns.
    let e = csv_err(&CSV_OK.replace(",want,ada-lamp", ",buy-it,ada-lamp"));
    assert_eq!((e.line, e.field.as_str()), (Some(5), "column kind"), "{e}");
    let e = csv_err(&CSV_OK.replace("A desk lamp,office,,,1500", "A desk lamp,office,,1400,1500"));
    assert_eq!(
        e.to_string(),
        "scenario.csv line 5, column price: must be blank on a want row (put the maximum price in limit)"
    );
    let e = csv_err(
        &CSV_OK
            .replace("Ben,,sell,ben-lamp", "Ben,9000,sell,ben-lamp")
            .replace("Ben,,want,,road bike", "Ben,8000,want,,road bike"),
    );
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(7), "column budget"),
        "{e}"
    );
    assert!(
        e.message
            .contains("conflicts with Ben's budget 9000 on line 6"),
        "{e}"
    );

    // Header problems.
    let e = csv_err("participant,kind,item_type,colour\n");
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(1), "column colour"),
        "{e}"
    );
    let e = csv_err("participant,item_type\nAda,bike\n");
    assert_eq!(e.field, "column kind");
    // Quoting.
    let e = csv_err(&CSV_OK.replace("\"Road bike, 56 cm\"", "\"Road bike, 56 cm"));
    assert!(e.message.contains("unterminated"), "{e}");
    // A directive that is not a number.
    let e = csv_err(&CSV_OK.replace("# budget_default: 10000", "# budget_default: lots"));
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(2), "directive budget_default"),
        "{e}"
    );
}

#[test]
fn unknown_extensions_and_missing_files_are_errors() {
    let e = Scenario::from_path("scenario.yaml").unwrap_err();
    assert!(e.message.contains(".toml, .json or .csv"), "{e}");
    let e = Scenario::from_path(tmp("missing.toml")).unwrap_err();
    assert!(e.message.starts_with("cannot read"), "{e}");
}

/// The TOML scenario with Ben's lamp described in `n` characters (a real ad ran to 5,084).
fn with_long_description(n: usize, truncate: bool) -> String {
    let head = if truncate {
        "truncate_long_text = true\n"
    } else {
        ""
    };
    let long = "x".repeat(n);
    format!("{head}{TOML_OK}").replace(
        "title = \"LED desk lamp\"",
        &format!("title = \"LED desk lamp\"\ndescription = \"{long}\""),
    )
}

#[test]
fn an_item_text_longer_than_the_market_takes_is_refused_naming_the_item_and_field() {
    let e = Scenario::from_toml_str(&with_long_description(5_084, false), "s.toml").unwrap_err();
    let m = e.to_string();
    assert!(m.contains("participant 'Ben'"), "{m}");
    assert!(m.contains("sell[0].description"), "{m}");
    assert!(
        m.contains("5084 characters long; the market takes at most 4000"),
        "{m}"
    );
    // At the limit it reads.
    Scenario::from_toml_str(&with_long_description(4_000, false), "s.toml").unwrap();
    // A wanted ad's title is `Wanted: <item_type>`: the type is bounded so the title fits.
    let long_type = TOML_OK.replace(
        "item_type = \"road bike\"\ndescription = \"A road bike\"",
        &format!(
            "item_type = \"{}\"\ndescription = \"A road bike\"",
            "b".repeat(193)
        ),
    );
    let m = Scenario::from_toml_str(&long_type, "s.toml")
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("want[0].item_type") && m.contains("at most 192"),
        "{m}"
    );
}

#[test]
fn a_scenario_that_asks_for_it_has_long_texts_cut_with_a_warning() {
    let s = Scenario::from_toml_str(&with_long_description(5_084, true), "s.toml").unwrap();
    let lamp = &s.profile("Ben").unwrap().sell[0];
    assert_eq!(lamp.description.chars().count(), 4_000);
    assert_eq!(
        s.truncated,
        ["participant 'Ben', sell[0].description: cut from 5084 to 4000 characters"]
    );
    // The same from the CSV form's directive.
    let csv = CSV_OK.replace(
        "Ben,,sell,ben-lamp,desk lamp,LED desk lamp",
        &format!("Ben,,sell,ben-lamp,desk lamp,{}", "t".repeat(250)),
    );
    assert!(csv_err(&csv).to_string().contains("at most 200"));
    let s = Scenario::from_csv_str(&format!("# truncate_long_text: true\n{csv}"), "s.csv", "s")
        .unwrap();
    assert_eq!(s.profile("Ben").unwrap().sell[0].title.chars().count(), 200);
    assert_eq!(s.truncated.len(), 1);
}

/// Repeated markets: a scenario's own lists for later sessions (`[[sessions]]`, each with
/// `[[sessions.profiles]]`).
const SESSIONS: &str = r#"

[[sessions]]
[[sessions.profiles]]
name = "Ben"
budget = 7000

[[sessions.profiles.sell]]
item_id = "ben-kettle"
item_type = "kettle"
title = "Kettle"
category = "kitchen"
asking_price = 2000
floor_price = 1500
"#;

#[test]
fn a_scenario_may_list_each_later_sessions_items_and_wants() {
    let s = Scenario::from_toml_str(&format!("{TOML_OK}{SESSIONS}"), "two.toml").unwrap();
    let lists = s.session_lists(2).unwrap();
    assert_eq!(
        lists[0], s.profiles,
        "the first session is the scenario's profiles"
    );
    let (ada, ben) = (&lists[1][0], &lists[1][1]);
    assert_eq!((ada.name.as_str(), ben.name.as_str()), ("Ada", "Ben"));
    assert!(
        ada.sell.is_empty() && ada.want.is_empty(),
        "left out: nothing to trade"
    );
    assert_eq!(ben.budget, 7000);
    assert_eq!(
        ben.sell[0].item_id, "s2-ben-kettle",
        "ids unique in the one market"
    );
    // JSON keeps the lists; a scenario without them stores none.
    assert_eq!(Scenario::from_json_str(&s.to_json(), "x.json").unwrap(), s);
    assert!(
        !Scenario::from_toml_str(TOML_OK, "two.toml")
            .unwrap()
            .to_json()
            .contains("sessions")
    );
    // More sessions than listed is refused; without lists every session repeats the profiles.
    assert!(s.session_lists(3).unwrap_err().contains("fewer than 3"));
    let plain = Scenario::from_toml_str(TOML_OK, "two.toml").unwrap();
    let again = plain.session_lists(3).unwrap();
    assert_eq!(again[2][0].sell[0].item_id, "s3-ada-bike");
    assert_eq!(
        again[2][0].sell[0].floor_price,
        plain.profiles[0].sell[0].floor_price
    );
}

#[test]
fn a_later_sessions_list_naming_a_stranger_is_refused_naming_the_field() {
    let text = format!("{TOML_OK}{}", SESSIONS.replace("\"Ben\"", "\"Cleo\""));
    let e = toml_err(&text);
    assert_eq!(e.field, "sessions[0].profiles[0].name", "{e}");
    assert!(e.message.contains("not a participant"), "{e}");
}
