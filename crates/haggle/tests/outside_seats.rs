//! Participants driven from outside in `haggle experiment run` (issue 19): each run invites them
//! as the demo does; a program drives an `external` seat over HTTP within its turns (and the
//! run's replay, without the program, is identical); a silent seat times out each turn while the
//! experiment completes, and runs serving on one fixed port never overlap; a person plays a
//! `human` seat through the web forms in headless Chromium, turn by turn.

mod support;

#[path = "../../haggle-web/tests/support/browser.rs"]
#[allow(dead_code)] // resizing, scripts and screenshots are the web crate's tests'
mod browser;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use support::*;

/// One seat of a run's invitation.
#[derive(Debug, Clone)]
struct SeatLine {
    name: String,
    participant: i64,
    brain: String,
    /// The agent token of an `external` seat, the principal token of a `human` one.
    token: String,
}

/// What a run printed when its market was served.
#[derive(Debug, Clone)]
struct Invitation {
    run: String,
    url: String,
    market: i64,
    seats: Vec<SeatLine>,
}

/// `text` between `from` and the next `to`.
fn between<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
    let at = text
        .find(from)
        .unwrap_or_else(|| panic!("'{from}' in '{text}'"))
        + from.len();
    let rest = &text[at..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

/// The header `RUN: haggle: the market waits for N participant(s) driven from outside at URL
/// (market M; ...)`, then N seat lines.
fn parse_invitation(header: &str, seats: &[String]) -> Invitation {
    let seats = seats
        .iter()
        .map(|l| {
            let l = l.trim();
            let token = match l.contains("agent token ") {
                true => between(l, "agent token ", " "),
                false => between(l, "principal token ", ";"),
            };
            SeatLine {
                name: l[..l.find(" (participant ").expect("a seat line")].to_string(),
                participant: between(l, "(participant ", ",").parse().expect("an id"),
                brain: between(l, ", ", ")").to_string(),
                token: token.to_string(),
            }
        })
        .collect();
    Invitation {
        run: header[..header.find(": haggle:").expect("a run's label")].to_string(),
        url: between(header, "driven from outside at ", " ").to_string(),
        market: between(header, "(market ", ";")
            .parse()
            .expect("a market id"),
        seats,
    }
}

/// A running `haggle experiment run`: its output so far and the invitations it printed.
struct Running {
    child: Child,
    log: Arc<Mutex<String>>,
    invitations: mpsc::Receiver<Invitation>,
}

impl Running {
    fn start(dir: &Scratch, file: &str, out: &str) -> Running {
        let out = dir.path(out).display().to_string();
        let mut child = haggle(&dir.0)
            .args(["experiment", "run", file, "--out", &out])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn haggle experiment run");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, invitations) = mpsc::channel();
        let (stderr, stdout) = (child.stderr.take().unwrap(), child.stdout.take().unwrap());
        let l = log.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
            while let Some(line) = lines.next() {
                l.lock().unwrap().push_str(&format!("{line}\n"));
                if !line.contains("driven from outside at ") {
                    continue;
                }
                let n: usize = between(&line, "waits for ", " ").parse().expect("a count");
                let seats: Vec<String> = lines.by_ref().take(n).collect();
                l.lock().unwrap().push_str(&(seats.join("\n") + "\n"));
                let _ = tx.send(parse_invitation(&line, &seats));
            }
        });
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                l.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Running {
            child,
            log,
            invitations,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn next_invitation(&self, within: Duration) -> Invitation {
        self.invitations
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("no invitation ({e}):\n{}", self.log()))
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().expect("the run's status").is_some()
    }

    /// Waits (bounded) for the experiment to finish; it must succeed.
    fn finish(mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("status") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the experiment did not finish within {within:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader threads drain what is left.
        std::thread::sleep(Duration::from_millis(200));
        assert!(status.success(), "the experiment failed:\n{}", self.log());
        self.log()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The generated market of these tests and the first participant with something to sell.
fn market() -> (haggle_lab::scenario::Scenario, String) {
    let scenario = haggle_lab::generator::generate(42, 6, 10_000);
    let seat = scenario
        .profiles
        .iter()
        .find(|p| !p.sell.is_empty())
        .expect("a seller")
        .name
        .clone();
    (scenario, seat)
}

/// An experiment of `count` runs of the generated market: `seat` is driven from outside, the
/// others by rule brains.
fn experiment(dir: &Scratch, name: &str, seat: &str, count: u32, outside: &str) -> String {
    let text = format!(
        r#"
name = "{name}"
seed = 1
[scenario]
generate = {{ seed = 42, participants = 6 }}
[arms]
outside = "external"
rules = "rule:linear"
[[runs]]
name = "seat"
count = {count}
table = {{ "{seat}" = "outside" }}
default_arm = "rules"
[market]
max_rounds = 3
[execution]
concurrency = 2
[outside]
{outside}
"#
    );
    let path = dir.path(&format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A GET or POST that may find the server gone (the run ended): `None` then.
async fn call(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let req = match body {
        Some(b) => client.post(url).json(&b),
        None => client.get(url),
    };
    let r = req.bearer_auth(token).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// The program driving the `external` seat: on each `turn_started` of its feed it posts
/// `listing` (first turn only) and ends the turn, until the run's server goes away. Returns what
/// it did, a line per step.
async fn drive(inv: &Invitation, listing: Value) -> Vec<String> {
    let client = haggle_tls::client();
    let (base, token) = (
        format!("{}/v1/markets/{}", inv.url, inv.market),
        inv.seats[0].token.clone(),
    );
    let (mut after, mut turns, mut said) = (0i64, 0u32, Vec::new());
    loop {
        let feed = format!("{base}/events?mine=true&after={after}");
        let Some((200, page)) = call(&client, &feed, &token, None).await else {
            return said;
        };
        for e in page["events"].as_array().cloned().unwrap_or_default() {
            after = e["seq"].as_i64().unwrap_or(after);
            if e["kind"] != "turn_started" {
                continue;
            }
            let turn = e["payload"]["turn"].as_u64().expect("the turn");
            if turns == 0 {
                let posted = call(
                    &client,
                    &format!("{base}/listings"),
                    &token,
                    Some(listing.clone()),
                )
                .await;
                said.push(format!("listed {:?}", posted.map(|p| p.0)));
            }
            turns += 1;
            let end = format!("{base}/turns/{turn}/end");
            let ended = call(&client, &end, &token, Some(json!({}))).await;
            said.push(format!("ended {turn} {:?}", ended.map(|p| p.0)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The events of a run's `events.jsonl` of this kind.
fn events_of(run: &std::path::Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(run.join("events.jsonl"))
        .expect("events.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("an event"))
        .filter(|e| e["kind"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_drives_an_external_seat_over_http_and_the_replay_is_identical() {
    let dir = Scratch::new("outside-driven");
    let (scenario, seat) = market();
    let item = &scenario
        .profiles
        .iter()
        .find(|p| p.name == seat)
        .unwrap()
        .sell[0];
    let listing = json!({"side": "sell", "title": item.title, "category": item.category,
        "price": item.asking_price});
    let file = experiment(&dir, "driven", &seat, 1, "turn_budget_ms = 60000");
    let run = Running::start(&dir, &file, "out");
    let inv = run.next_invitation(Duration::from_secs(60));
    assert_eq!(
        (inv.run.as_str(), inv.seats.len()),
        ("seat-01", 1),
        "{inv:?}"
    );
    assert_eq!(
        (inv.seats[0].name.as_str(), inv.seats[0].brain.as_str()),
        (seat.as_str(), "external")
    );
    let said = drive(&inv, listing).await;
    let log = run.finish(Duration::from_secs(120));
    assert!(said.len() >= 3, "{said:?}\n{log}");
    assert_eq!(said[0], "listed Some(201)", "{said:?}");
    assert!(
        said[1..].iter().all(|l| l.ends_with("Some(200)")),
        "{said:?}"
    );
    // The seat's turns and commands are in the results; its listing is in the events.
    let rd = dir.path("out").join("runs").join("seat-01");
    let record = read_json(&rd.join("record.json"));
    let t = &record["record"]["outside"][&seat];
    assert!(t["turns"].as_u64() >= Some(2), "{t}");
    assert_eq!(
        (&t["ended"], &t["timed_out"]),
        (&t["turns"], &json!(0)),
        "{t}"
    );
    assert!(t["commands"].as_u64() >= Some(1), "{t}");
    let posted = events_of(&rd, "listing_posted");
    assert!(
        posted
            .iter()
            .any(|e| e["payload"]["listing"]["title"] == item.title.as_str()
                && e["actor"] == inv.seats[0].participant),
        "{posted:?}"
    );
    assert!(read_json(&rd.join("run.json"))["outside"].is_object());
    // The replay applies the recorded commands at the same turns, without the program.
    let out = dir.path("out").display().to_string();
    let replayed = run_ok(&dir.0, &["experiment", "replay", &out, "seat-01"]);
    assert!(replayed.contains("identical"), "{replayed}");
}

#[test]
fn a_silent_seat_times_out_each_turn_and_runs_on_one_port_take_turns() {
    let dir = Scratch::new("outside-silent");
    let (_, seat) = market();
    let port = haggle_testkit::free_port();
    let settings = format!("listen = \"127.0.0.1:{port}\"\nturn_budget_ms = 100");
    let file = experiment(&dir, "silent", &seat, 2, &settings);
    let out = dir.path("out").display().to_string();
    let o = run_within(
        &dir.0,
        &["experiment", "run", &file, "--out", &out],
        Duration::from_secs(120),
    );
    let log = text(&o.stderr) + &text(&o.stdout);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("they run one at a time"), "{log}");
    let at = format!("driven from outside at http://127.0.0.1:{port} ");
    assert_eq!(log.matches(&at).count(), 2, "{log}");
    // The second run started only once the first had finished.
    let journal: Vec<String> = std::fs::read_to_string(dir.path("out").join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {}",
                v["run"].as_str().unwrap(),
                v["event"].as_str().unwrap()
            )
        })
        .collect();
    let first_done = journal
        .iter()
        .position(|l| l.ends_with(" finished"))
        .expect("a run finished");
    let second = journal
        .iter()
        .filter(|l| l.ends_with(" started"))
        .nth(1)
        .expect("two runs");
    assert!(
        journal.iter().position(|l| l == second) > Some(first_done),
        "{journal:?}"
    );
    for run in ["seat-01", "seat-02"] {
        let rd = dir.path("out").join("runs").join(run);
        let t = read_json(&rd.join("record.json"))["record"]["outside"][&seat].clone();
        assert!(t["turns"].as_u64() >= Some(1), "{run}: {t}");
        assert_eq!(
            (&t["timed_out"], &t["ended"], &t["commands"]),
            (&t["turns"], &json!(0), &json!(0)),
            "{run}: {t}"
        );
        assert_eq!(
            Some(events_of(&rd, "turn_timed_out").len() as u64),
            t["turns"].as_u64(),
            "{run}"
        );
    }
}

/// One person's desk lamp and a colleague who wants one (a price taker: it offers the listed
/// price within its maximum).
const LAMP: &str = r#"
name = "lamp"
seed = 1
currency = "USD"

[[profiles]]
name = "Sella"
budget = 0
[[profiles.sell]]
item_id = "lamp-1"
item_type = "desk lamp"
title = "Desk lamp"
category = "furniture"
asking_price = 1500
floor_price = 1000

[[profiles]]
name = "Xavi"
budget = 10000
[[profiles.want]]
want_id = "w-lamp"
item_type = "desk lamp"
description = "a desk lamp"
category = "furniture"
keywords = ["lamp"]
max_price = 5000
"#;

/// Sella is the person's seat; Xavi a rule brain.
const PERSON: &str = r#"
name = "person"
seed = 1
[scenario]
file = "lamp.toml"
[arms]
person = "human"
taker = "rule:taker"
[[runs]]
name = "by-hand"
table = { Sella = "person" }
default_arm = "taker"
[market]
max_rounds = 4
[outside]
turn_budget_ms = 120000
"#;

/// More turns than the person's seat gets in [`PERSON`]'s rounds.
const MAX_TURNS: u64 = 12;

/// The id after `after` in a page's URL (`/m/1/listings/7?done=1`).
fn trailing_id(url: &str, after: &str) -> i64 {
    let at = url
        .find(after)
        .unwrap_or_else(|| panic!("{after} in {url}"))
        + after.len();
    url[at..]
        .split(['?', '/'])
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("an id after {after} in {url}"))
}

/// The text of the page's `main` (empty on a page without one: the run's server went away).
async fn main_text(b: &browser::Browser) -> String {
    let js = "const m = document.querySelector('main'); return m ? m.innerText : '';";
    b.script(js).await.as_str().unwrap_or_default().to_string()
}

/// Reloads the seat's page until it says turn `turn` is open; `false` once the run has ended.
async fn wait_for_turn(b: &browser::Browser, page: &str, turn: u64, run: &mut Running) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    let open = format!("Your turn {turn} is open");
    loop {
        if run.exited() {
            return false;
        }
        b.goto(page).await;
        if main_text(b).await.contains(&open) {
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "turn {turn} did not open:\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Presses End turn on the seat's page: the page says so, or (after the last turn) the run
/// ends and its server goes away.
async fn end_turn(b: &browser::Browser, page: &str, run: &mut Running) {
    b.goto(page).await;
    b.click("form[data-testid=end-turn] button[type=submit]")
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !main_text(b).await.contains("Turn ended") && !run.exited() {
        assert!(
            Instant::now() < deadline,
            "the turn did not end:\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_plays_a_human_seat_through_the_web_forms_turn_by_turn() {
    let b = match browser::find_browser() {
        Ok((chromium, driver)) => browser::Browser::start(&chromium, &driver).await,
        Err(why) => return haggle_testkit::not_run("BROWSER TESTS", &why),
    };
    let dir = Scratch::new("outside-person");
    std::fs::write(dir.path("lamp.toml"), LAMP).unwrap();
    std::fs::write(dir.path("person.toml"), PERSON).unwrap();
    let mut run = Running::start(&dir, &dir.path("person.toml").display().to_string(), "out");
    let inv = run.next_invitation(Duration::from_secs(60));
    let seat = inv.seats[0].clone();
    assert_eq!(
        (seat.name.as_str(), seat.brain.as_str()),
        ("Sella", "human"),
        "{inv:?}"
    );
    // The person signs in with the principal token the invitation gave, and lists the lamp in
    // the first turn.
    b.sign_in(&inv.url, &seat.token).await;
    let page = format!("{}/m/{}/p/{}", inv.url, inv.market, seat.participant);
    assert!(wait_for_turn(&b, &page, 1, &mut run).await);
    b.type_into("#tr-title", "Desk lamp").await;
    b.type_into("#tr-category", "furniture").await;
    b.type_into("#tr-price", "15.00").await;
    b.click("#post-listing button[type=submit]").await;
    b.wait_for_text("main", "Done.", 10).await;
    let listing = format!(
        "{}/m/{}/listings/{}",
        inv.url,
        inv.market,
        trailing_id(&b.url().await, "/listings/")
    );
    end_turn(&b, &page, &mut run).await;
    // In each later turn, until the run ends: accept the colleague's offer once it is there, then end the turn.
    let mut deal = None;
    for turn in 2..=MAX_TURNS {
        if !wait_for_turn(&b, &page, turn, &mut run).await {
            break;
        }
        b.goto(&listing).await;
        if deal.is_none() && main_text(&b).await.contains("Their offer: $15.00") {
            b.click("form[id^=accept-] button[type=submit]").await;
            b.wait_for_text("main", "Deal #", 10).await;
            deal = Some(trailing_id(&b.url().await, "/deals/"));
        }
        end_turn(&b, &page, &mut run).await;
    }
    b.quit().await;
    let log = run.finish(Duration::from_secs(120));
    assert!(deal.is_some(), "no offer came to accept:\n{log}");
    // The market moved on with every turn the person ended; the deal is in the results, and
    // the run's ledger verifies (the runner checks it too, before it writes the record).
    let rd = dir.path("out").join("runs").join("by-hand-01");
    let t = read_json(&rd.join("record.json"))["record"]["outside"]["Sella"].clone();
    assert!(t["turns"].as_u64() >= Some(4), "{t}");
    assert_eq!(
        (&t["ended"], &t["timed_out"]),
        (&t["turns"], &json!(0)),
        "{t}"
    );
    assert!(
        t["commands"].as_u64() >= Some(2),
        "listed and accepted: {t}"
    );
    let deals = read_json(&rd.join("results.json"))["metrics"]["deals"].clone();
    assert_eq!(deals.as_array().map(|d| d.len()), Some(1), "{deals}");
    assert_eq!(deals[0]["price"], 1500, "{deals}");
    let db = format!("sqlite://{}", rd.join("haggle.db").display());
    let verified = run_ok(&dir.0, &["ledger", "verify", "--database", &db]);
    assert!(!verified.contains("breach"), "{verified}");
    // The replay applies the person's commands again as the principal's, without a browser.
    let out = dir.path("out").display().to_string();
    let replayed = run_ok(&dir.0, &["experiment", "replay", &out, "by-hand-01"]);
    assert!(replayed.contains("identical"), "{replayed}");
}
