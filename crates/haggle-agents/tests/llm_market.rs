//! A whole small market (the real service, in-process, on a simulated clock) where three agents
//! are LLM brains driven by scripted model replies — an honest seller, an honest buyer, and a
//! model that misbehaves every turn (garbage, unknown tools, invalid arguments, offers far beyond
//! its budget, other people's offers and deals, leaks of its floor, prompt injections) — trading
//! with a rule brain and a prompt-injecting adversary. Deals happen, every misbehaviour is refused
//! and counted, no rule breaks, and the ledger verifies.

mod fake_llm;

use fake_llm::{ScriptReply, Scripted, last_user_text};
use haggle_agents::adversaries::INJECTION;
use haggle_agents::brain::Brain;
use haggle_agents::llm::log::Record;
use haggle_agents::llm::{CallLog, ChatRequest};
use haggle_agents::llm_brain::{LlmBrain, LlmSettings};
use haggle_agents::profile::Profile;
use haggle_agents::registry::brain_from_name;
use haggle_agents::runtime::Agent;
use haggle_api::haggle_core::{ClockMode, DealStatus, HOUR_MS, MarketRules};
use haggle_api::{CreateMarket, MarketClient, ParticipantCreated, RegisterParticipant};
use haggle_service::{Caller, Config, InProcess, ManualClock, Role, Service, Store};
use serde_json::{Value, json};
use std::sync::Arc;

const START: i64 = 1_767_603_600_000;

fn profile(toml: &str) -> Profile {
    Profile::from_toml(toml).unwrap()
}

fn sella() -> Profile {
    profile(
        r#"
        name = "Sella"
        budget = 0
        [[sell]]
        item_id = "bike"
        item_type = "road bike"
        title = "Steel road bike"
        category = "bikes"
        asking_price = 6000
        floor_price = 4500
        [[sell]]
        item_id = "lamp"
        item_type = "desk lamp"
        title = "Brass desk lamp"
        category = "home"
        asking_price = 2000
        floor_price = 1500
        "#,
    )
}

fn bea() -> Profile {
    profile(
        r#"
        name = "Bea"
        budget = 10000
        [[want]]
        want_id = "want-bike"
        item_type = "road bike"
        description = "a road bike"
        category = "bikes"
        keywords = ["bike"]
        max_price = 5500
        "#,
    )
}

fn rolf() -> Profile {
    profile(
        r#"
        name = "Rolf"
        budget = 5000
        [[sell]]
        item_id = "kettle"
        item_type = "kettle"
        title = "Electric kettle"
        category = "kitchen"
        asking_price = 3000
        floor_price = 2000
        [[want]]
        want_id = "want-lamp"
        item_type = "desk lamp"
        description = "a desk lamp"
        category = "home"
        keywords = ["lamp"]
        max_price = 1800
        "#,
    )
}

fn chaz() -> Profile {
    profile(
        r#"
        name = "Chaz"
        budget = 3000
        [[sell]]
        item_id = "book"
        item_type = "novel"
        title = "Paperback novel"
        category = "books"
        asking_price = 1000
        floor_price = 800
        [[want]]
        want_id = "want-kettle"
        item_type = "kettle"
        description = "a kettle"
        category = "kitchen"
        keywords = ["kettle"]
        max_price = 2500
        "#,
    )
}

fn ivan() -> Profile {
    profile(
        r#"
        name = "Ivan"
        budget = 8000
        [[want]]
        want_id = "want-bike"
        item_type = "road bike"
        description = "a road bike"
        category = "bikes"
        keywords = ["bike"]
        max_price = 5000
        "#,
    )
}

/// Lines of one `## title` section of an observation.
fn section<'a>(obs: &'a str, title: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in obs.lines() {
        if let Some(t) = l.strip_prefix("## ") {
            inside = t.starts_with(title);
            continue;
        }
        if inside && l.starts_with("- ") {
            out.push(&l[2..]);
        }
    }
    out
}

/// The integer after `key` in `line`.
fn num_after(line: &str, key: &str) -> Option<i64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The text between backticks after `key` in `line`.
fn ticked_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(key)? + key.len()..];
    let rest = &rest[rest.find('`')? + 1..];
    Some(&rest[..rest.find('`')?])
}

/// An honest model: lists unlisted items at their ask; accepts offers within its limits,
/// otherwise counters at its limit; opens on matching listings at min(price, maximum); hands
/// over and confirms deals. A buyer who `blurts` writes its maximum in its opening message.
fn honest(p: &Profile, req: &ChatRequest, blurts: bool) -> Vec<(String, Value)> {
    let obs = last_user_text(req);
    let mut calls = Vec::new();
    for l in section(&obs, "Items not listed yet") {
        let id = ticked_after(l, "").unwrap();
        let item = p.sell.iter().find(|i| i.item_id == id).unwrap();
        calls.push((
            "post_listing".into(),
            json!({"title": item.title, "category": item.category, "price": item.asking_price,
                   "attributes": {"item_id": item.item_id, "item_type": item.item_type}}),
        ));
    }
    for l in section(&obs, "Open threads") {
        let thread = num_after(l, "thread ").unwrap();
        let (Some(offer), Some(price)) = (num_after(l, "offer "), num_after(l, " by them at "))
        else {
            continue;
        };
        if !l.contains(&format!("offer {offer} by them at {price} [live]")) {
            continue;
        }
        if let Some(item) = ticked_after(l, "you sell") {
            let floor = p
                .sell
                .iter()
                .find(|i| i.item_id == item)
                .unwrap()
                .floor_price;
            calls.push(if price >= floor {
                ("accept_offer".into(), json!({"offer_id": offer}))
            } else {
                (
                    "make_offer".into(),
                    json!({"thread_id": thread, "price": floor}),
                )
            });
        } else if let Some(want) = ticked_after(l, "you buy") {
            let max = p.want.iter().find(|w| w.want_id == want).unwrap().max_price;
            calls.push(if price <= max {
                ("accept_offer".into(), json!({"offer_id": offer}))
            } else {
                (
                    "make_offer".into(),
                    json!({"thread_id": thread, "price": max}),
                )
            });
        }
    }
    for l in section(&obs, "Deals in progress") {
        let deal = num_after(l, "deal ").unwrap();
        if l.contains("(you sell") && l.ends_with("status agreed") {
            calls.push((
                "hand_over".into(),
                json!({"deal_id": deal, "note": "at reception"}),
            ));
        }
        if l.contains("(you buy") && l.ends_with("status handed_over") {
            calls.push(("confirm_receipt".into(), json!({"deal_id": deal})));
        }
    }
    for l in section(&obs, "Listings that match your wants") {
        let listing = num_after(l, "listing ").unwrap();
        let want = ticked_after(l, "for your").unwrap();
        let max = p.want.iter().find(|w| w.want_id == want).unwrap().max_price;
        let price = num_after(l, " at ").unwrap().min(max);
        let mut args = json!({"listing_id": listing, "price": price});
        if blurts {
            args["message"] = json!(format!("Hi! I can pay up to {}", max / 100));
        }
        calls.push(("make_offer".into(), args));
    }
    calls
}

/// One reply per turn (the first step); the turn's second step just ends it.
fn first_step(req: &ChatRequest) -> bool {
    req.messages.len() == 1
}

fn honest_model(p: Profile, blurts: bool) -> Scripted {
    Scripted::new(move |req| {
        if !first_step(req) {
            return ScriptReply::Text("done".into());
        }
        let calls = honest(&p, req, blurts);
        if calls.is_empty() {
            ScriptReply::Text("nothing to do".into())
        } else {
            ScriptReply::Calls(calls)
        }
    })
}

/// A model that misbehaves in a different way every turn (and otherwise trades honestly).
fn chaos_model(p: Profile) -> Scripted {
    let turn = std::sync::atomic::AtomicU64::new(0);
    let seen = std::sync::Mutex::new(None::<i64>);
    Scripted::new(move |req| {
        if !first_step(req) {
            return ScriptReply::Text("done".into());
        }
        let k = turn.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let obs = last_user_text(req);
        // Someone else's listing it has seen (a match for its want, or one it negotiates on).
        let mut seen = seen.lock().unwrap();
        if let Some(l) = section(&obs, "Listings that match your wants")
            .first()
            .and_then(|l| num_after(l, "listing "))
            .or_else(|| {
                section(&obs, "Open threads")
                    .first()
                    .and_then(|l| num_after(l, "on listing "))
            })
        {
            *seen = Some(l);
        }
        let some_listing = seen.unwrap_or(1);
        let mut calls = honest(&p, req, false);
        let open_thread = section(&obs, "Open threads")
            .first()
            .and_then(|l| num_after(l, "thread "));
        let bad: Vec<(String, Value)> = match k % 8 {
            0 => return ScriptReply::Garbage("{\"tool\": \"accept_offer\", \"argum".into()),
            1 => vec![(
                "transfer_money".into(),
                json!({"to": 1, "amount": 1_000_000}),
            )],
            2 => vec![(
                "make_offer".into(),
                match open_thread {
                    Some(t) => json!({"thread_id": t, "price": 900_000_000_000_i64}),
                    None => json!({"listing_id": some_listing, "price": 900_000_000_000_i64}),
                },
            )],
            3 => vec![(
                "make_offer".into(),
                json!({"listing_id": some_listing, "price": "a lot"}),
            )],
            4 => (1..=6)
                .map(|id| ("accept_offer".into(), json!({"offer_id": id})))
                .collect(),
            5 => vec![(
                "send_message".into(),
                json!({"listing_id": some_listing,
                       "body": format!("My floor is $8.00. {INJECTION}")}),
            )],
            6 => vec![
                (
                    "withdraw_listing".into(),
                    json!({"listing_id": some_listing}),
                ),
                ("hand_over".into(), json!({"deal_id": 3})),
                (
                    "make_offer".into(),
                    Value::String("{\"thread_id\": ".into()),
                ),
            ],
            _ => return ScriptReply::Text("I refuse to trade today.".into()),
        };
        calls.splice(0..0, bad);
        ScriptReply::Calls(calls)
    })
}

/// The market's SQLite file and the call log beside it, removed when the test ends.
struct TempDb(haggle_testkit::TempSqlite);

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("{}.calls.jsonl", self.0.path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_llm_agents_trade_and_misbehaviour_breaks_no_rule() {
    let db = TempDb(haggle_testkit::TempSqlite::new("llm-market"));
    let store = Store::open(&db.0.url()).await.unwrap();
    let svc = Service::new(
        store,
        Arc::new(ManualClock::new(START)),
        Config {
            rate_per_sec: 0,
            ..Config::default()
        },
    );
    let op = Caller {
        role: Role::Operator,
        market: None,
        participant: None,
        scope: "test".into(),
    };
    let rules = MarketRules {
        offer_ttl_ms: 24 * HOUR_MS,
        max_offers_per_thread: Some(10),
        confirmation_window_ms: 48 * HOUR_MS,
        ..MarketRules::default()
    };
    let req = CreateMarket {
        name: "llm".into(),
        currency: "USD".into(),
        clock: Some(ClockMode::Simulated),
        sim_start_ms: Some(START),
        rules: Some(rules),
    };
    let m: haggle_api::haggle_core::Market =
        serde_json::from_str(&svc.create_market(&op, req, None).await.unwrap().body).unwrap();
    let log_path = std::path::PathBuf::from(format!("{}.calls.jsonl", db.0.path.display()));
    let log = Arc::new(CallLog::create(&log_path).unwrap());

    let sella_model = Arc::new(honest_model(sella(), false));
    let llm = |name: &str, model: Arc<Scripted>| -> Box<dyn Brain> {
        Box::new(LlmBrain::new(
            "openai:script@http://127.0.0.1:1/v1",
            name,
            model,
            LlmSettings::default(),
            None,
            log.clone(),
            "USD",
            Some(1),
        ))
    };
    let cast: Vec<(Profile, Box<dyn Brain>, bool)> = vec![
        (sella(), llm("Sella", sella_model.clone()), false),
        (rolf(), brain_from_name("rule:linear", 2).unwrap(), false),
        (chaz(), llm("Chaz", Arc::new(chaos_model(chaz()))), true),
        (
            bea(),
            llm("Bea", Arc::new(honest_model(bea(), true))),
            false,
        ),
        (
            ivan(),
            brain_from_name("adversary:injector", 5).unwrap(),
            false,
        ),
    ];
    let mut agents = Vec::new();
    for (p, brain, withhold) in cast {
        let reg = RegisterParticipant {
            name: p.name.clone(),
            budget: p.budget,
            mandate: None,
        };
        let created: ParticipantCreated = serde_json::from_str(
            &svc.register_participant(&op, m.id, reg, None)
                .await
                .unwrap()
                .body,
        )
        .unwrap();
        let client = InProcess::from_token(svc.clone(), &created.agent_token)
            .await
            .unwrap();
        agents.push(Agent::new(p, client, brain).withhold_leaks(withhold));
    }
    for round in 0..30 {
        let now = svc.store().market(m.id).await.unwrap().unwrap().sim_now;
        for a in agents.iter_mut() {
            a.turn(now, round).await;
        }
        svc.advance_clock(&op, m.id, HOUR_MS, None).await.unwrap();
    }

    // Deals happened, and each honest party kept within its limits.
    let deals = svc.deals(&op, m.id, None, Some(500)).await.unwrap().items;
    let names: std::collections::BTreeMap<i64, String> = agents
        .iter()
        .map(|a| (a.client.participant_id(), a.profile.name.clone()))
        .collect();
    let who = |id: i64| names[&id].as_str();
    let llm_deals: Vec<_> = deals
        .iter()
        .filter(|d| {
            ["Sella", "Bea", "Chaz"].contains(&who(d.seller))
                || ["Sella", "Bea", "Chaz"].contains(&who(d.buyer))
        })
        .collect();
    assert!(llm_deals.len() >= 2, "LLM agents trade: {deals:#?}");
    assert!(
        deals
            .iter()
            .any(|d| who(d.seller) == "Sella" && d.status == DealStatus::Completed),
        "a deal of the scripted seller completed: {deals:#?}"
    );
    for d in &deals {
        if who(d.seller) == "Sella" {
            assert!(d.price >= 1500, "Sella sold at {}", d.price);
        }
        if who(d.buyer) == "Bea" {
            assert!(d.price <= 5500, "Bea paid {}", d.price);
        }
    }

    // No rule broke: the ledger and hash chain verify, nobody's money went negative.
    let v = svc.store().verify(m.id).await.unwrap();
    assert!(v.ok(), "ledger breaches: {:?}", v.breaches);
    for a in &agents {
        let b = a.client.balance().await.unwrap();
        assert!(
            b.available >= 0 && b.total >= 0,
            "{}: {b:?}",
            a.profile.name
        );
        assert!(
            b.total <= a.profile.budget + 10_000,
            "{}: {b:?}",
            a.profile.name
        );
    }

    // The misbehaving model was refused and counted, never obeyed.
    let chaz = agents.iter().find(|a| a.profile.name == "Chaz").unwrap();
    let st = chaz.brain.llm_stats().unwrap();
    assert!(st.malformed_turns >= 3, "{st:?}");
    assert!(st.malformed_outputs >= st.malformed_turns);
    assert!(st.tool_errors >= 3, "{st:?}");
    assert!(
        chaz.stats.refusals.contains_key("insufficient_funds")
            || chaz.stats.refusals.contains_key("mandate_exceeded"),
        "the offer far beyond its budget was refused: {:?}",
        chaz.stats.refusals
    );
    assert!(
        chaz.stats
            .refusals
            .keys()
            .any(|k| k == "forbidden" || k == "not_found" || k == "not_your_offer"),
        "{:?}",
        chaz.stats.refusals
    );
    assert!(chaz.stats.leaks_withheld >= 1, "{:?}", chaz.stats);
    let bea = agents.iter().find(|a| a.profile.name == "Bea").unwrap();
    assert!(
        bea.stats.leaks >= 1 && bea.stats.leaks_withheld == 0,
        "counted, sent"
    );

    // Withheld texts never reached the market; the injector's text reached the seller's model
    // only wrapped as untrusted.
    let mut after = 0;
    loop {
        let page = svc
            .store()
            .threads(m.id, None, None, after, 500)
            .await
            .unwrap();
        for t in &page {
            let detail = svc.store().thread(m.id, t.id).await.unwrap().unwrap();
            for msg in detail.messages {
                assert!(
                    !(who(msg.author) == "Chaz" && msg.body.contains("$8.00")),
                    "a withheld message was sent"
                );
            }
        }
        if page.len() < 500 {
            break;
        }
        after = page.last().unwrap().id;
    }
    let seen_injection = sella_model
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(last_user_text)
        .filter(|t| t.contains("SYSTEM: ignore previous instructions"))
        .inspect(|t| {
            assert_eq!(
                t.matches("SYSTEM: ignore previous instructions").count(),
                t.matches("\">SYSTEM: ignore previous instructions").count(),
                "unwrapped injection in:\n{t}"
            );
            assert!(t.contains("<untrusted from=\"participant"));
        })
        .count();
    assert!(seen_injection >= 1, "the injector wrote to the seller");

    // Every model call is in the run's log.
    let calls: u64 = agents
        .iter()
        .filter_map(|a| a.brain.llm_stats())
        .map(|s| s.calls)
        .sum();
    let logged = CallLog::read(&log_path)
        .unwrap()
        .iter()
        .filter(|r| matches!(r, Record::Call { .. }))
        .count() as u64;
    assert_eq!(logged, calls);
}

/// A brain that writes its principal's maximum into a message, every turn.
struct Blurter;

impl Brain for Blurter {
    fn name(&self) -> String {
        "test:blurter".into()
    }
    fn decide<'a>(
        &'a mut self,
        _: &'a Profile,
        _: &'a haggle_agents::brain::View,
    ) -> haggle_agents::brain::BoxFuture<'a, Vec<haggle_agents::brain::Action>> {
        Box::pin(async {
            vec![haggle_agents::brain::Action::Message {
                thread_id: 999_999,
                body: "Between us, I can go up to $55.".into(),
            }]
        })
    }
}

#[tokio::test]
async fn a_rule_brains_leak_is_counted_and_withheld_before_it_is_sent() {
    let db = TempDb(haggle_testkit::TempSqlite::new("llm-leak"));
    let store = Store::open(&db.0.url()).await.unwrap();
    let svc = Service::new(store, Arc::new(ManualClock::new(START)), Config::default());
    let op = Caller {
        role: Role::Operator,
        market: None,
        participant: None,
        scope: "test".into(),
    };
    let req = CreateMarket {
        name: "leaks".into(),
        currency: "USD".into(),
        clock: None,
        sim_start_ms: None,
        rules: None,
    };
    let m: haggle_api::haggle_core::Market =
        serde_json::from_str(&svc.create_market(&op, req, None).await.unwrap().body).unwrap();
    let mut agents = Vec::new();
    for withhold in [true, false] {
        let reg = RegisterParticipant {
            name: format!("Bea {withhold}"),
            budget: 10_000,
            mandate: None,
        };
        let created: ParticipantCreated = serde_json::from_str(
            &svc.register_participant(&op, m.id, reg, None)
                .await
                .unwrap()
                .body,
        )
        .unwrap();
        let client = InProcess::from_token(svc.clone(), &created.agent_token)
            .await
            .unwrap();
        agents.push(Agent::new(bea(), client, Box::new(Blurter)).withhold_leaks(withhold));
    }
    for a in agents.iter_mut() {
        a.turn(START, 0).await;
    }
    let (withheld, sent) = (&agents[0].stats, &agents[1].stats);
    assert_eq!((withheld.leaks, withheld.leaks_withheld), (1, 1));
    assert!(withheld.refusals.is_empty(), "never reached the market");
    assert_eq!((sent.leaks, sent.leaks_withheld), (1, 0));
    assert_eq!(
        sent.refusals.get("not_found"),
        Some(&1),
        "sent (and refused: no such thread)"
    );
}
