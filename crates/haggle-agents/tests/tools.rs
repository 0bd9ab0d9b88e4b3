//! The agent tool catalogue against the real service (in-process, in-memory SQLite): the schemas
//! are well-formed, every tool runs and returns what its output schema says, bad arguments are
//! `invalid_request` naming the field, and refusals carry the market's code and message.

use haggle_agents::tools::{self, ToolError};
use haggle_api::haggle_core::{DealStatus, ErrorCode};
use haggle_api::{CreateMarket, MarketClient, ParticipantCreated, RegisterParticipant};
use haggle_service::{Caller, Config, InProcess, ManualClock, Role, Service, Store};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

struct Market {
    alice: InProcess,
    bob: InProcess,
    _db: haggle_testkit::TempSqlite,
    svc: Arc<Service>,
    op: Caller,
    id: i64,
}

/// A third participant, driven from outside (its turns attached to the service), with its
/// turn 1 open.
async fn outside_participant(m: &Market) -> (InProcess, Arc<haggle_service::turns::Turns>) {
    let req = RegisterParticipant {
        name: "Carol".into(),
        budget: 10_000,
        mandate: None,
    };
    let p: ParticipantCreated = serde_json::from_str(
        &m.svc
            .register_participant(&m.op, m.id, req, None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let turns = haggle_service::turns::Turns::new(m.id, [p.participant.id]);
    assert!(m.svc.attach_turns(turns.clone()).is_ok());
    turns.open(p.participant.id, 1);
    let carol = InProcess::from_token(m.svc.clone(), &p.agent_token)
        .await
        .unwrap();
    (carol, turns)
}

/// A SQLite file removed on drop. (Not `sqlite::memory:`: its one-connection pool deadlocks in
/// `Store::reputation`, which holds a connection while reading the market with another.)
async fn market() -> Market {
    let db = haggle_testkit::TempSqlite::new("tools");
    let store = Store::open(&db.url()).await.unwrap();
    let svc = Service::new(
        store,
        Arc::new(ManualClock::new(1_700_000_000_000)),
        Config::default(),
    );
    let op = Caller {
        role: Role::Operator,
        market: None,
        participant: None,
        scope: "test".into(),
    };
    let req = CreateMarket {
        name: "tools".into(),
        currency: "USD".into(),
        clock: None,
        sim_start_ms: None,
        rules: None,
    };
    let m: haggle_api::haggle_core::Market =
        serde_json::from_str(&svc.create_market(&op, req, None).await.unwrap().body).unwrap();
    let mut agents = Vec::new();
    for name in ["Alice", "Bob"] {
        let req = RegisterParticipant {
            name: name.into(),
            budget: 10_000,
            mandate: None,
        };
        let p: ParticipantCreated = serde_json::from_str(
            &svc.register_participant(&op, m.id, req, None)
                .await
                .unwrap()
                .body,
        )
        .unwrap();
        agents.push(
            InProcess::from_token(svc.clone(), &p.agent_token)
                .await
                .unwrap(),
        );
    }
    let bob = agents.pop().unwrap();
    let alice = agents.pop().unwrap();
    Market {
        alice,
        bob,
        _db: db,
        svc,
        op,
        id: m.id,
    }
}

/// Runs a tool, checks a success against the tool's output schema, and records its name.
async fn run<C: MarketClient>(
    used: &mut BTreeSet<&'static str>,
    c: &C,
    name: &'static str,
    args: Value,
) -> Value {
    let out = tools::call(c, name, args.clone())
        .await
        .unwrap_or_else(|e| panic!("{name} {args} was refused: {e}"));
    let tool = tools::find(name).expect("a catalogue tool");
    tools::check_against(&tool.output_schema, &out)
        .unwrap_or_else(|e| panic!("{name}'s result does not match its output schema: {e}\n{out}"));
    used.insert(name);
    out
}

async fn refused<C: MarketClient>(c: &C, name: &str, args: Value) -> ToolError {
    match tools::call(c, name, args.clone()).await {
        Ok(v) => panic!("{name} {args} should be refused, got {v}"),
        Err(e) => e,
    }
}

fn id(v: &Value, path: &str) -> i64 {
    v.pointer(path)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer at {path} in {v}"))
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k == "$ref" {
                    out.push(x.as_str().unwrap_or_default().to_string());
                }
                refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn tool_names_are_unique_snake_case_and_cover_the_agent_actions() {
    let names: Vec<&str> = tools::catalogue().iter().map(|t| t.name).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "duplicate tool names: {names:?}");
    for n in &names {
        assert!(
            n.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{n} is not snake_case"
        );
    }
    for expected in [
        "search_listings",
        "get_listing",
        "post_listing",
        "withdraw_listing",
        "post_wanted",
        "my_threads",
        "read_thread",
        "send_message",
        "make_offer",
        "accept_offer",
        "reject_offer",
        "withdraw_offer",
        "walk_away",
        "my_deals",
        "hand_over",
        "ship",
        "confirm_receipt",
        "open_dispute",
        "rate_deal",
        "my_balance",
        "events_since",
    ] {
        assert!(unique.contains(expected), "missing tool {expected}");
    }
}

#[test]
fn input_schemas_are_closed_objects_without_references() {
    for t in tools::catalogue() {
        let s = &t.input_schema;
        assert_eq!(s["type"], "object", "{}", t.name);
        assert_eq!(s["additionalProperties"], false, "{}", t.name);
        let props = s.get("properties").cloned().unwrap_or(json!({}));
        assert!(props.is_object(), "{}", t.name);
        for r in s["required"].as_array().into_iter().flatten() {
            assert!(
                props.get(r.as_str().unwrap()).is_some(),
                "{}: required {r} is not a property",
                t.name
            );
        }
        let mut found = Vec::new();
        refs(s, &mut found);
        assert!(
            found.is_empty(),
            "{}: input schema has $refs {found:?}",
            t.name
        );
        assert!(
            !t.description.is_empty() && !t.title.is_empty(),
            "{}",
            t.name
        );
    }
}

#[test]
fn output_schemas_are_objects_whose_references_resolve() {
    for t in tools::catalogue() {
        let s = &t.output_schema;
        assert_eq!(s["type"], "object", "{}", t.name);
        let mut found = Vec::new();
        refs(s, &mut found);
        for r in found {
            let name = r.strip_prefix("#/$defs/").unwrap_or_else(|| panic!("{r}"));
            assert!(s["$defs"].get(name).is_some(), "{}: {r} dangles", t.name);
        }
    }
}

#[test]
fn annotations_say_which_tools_only_read() {
    let read_only: BTreeSet<&str> = tools::catalogue()
        .iter()
        .filter(|t| t.annotations.read_only)
        .map(|t| t.name)
        .collect();
    let expected: BTreeSet<&str> = [
        "search_listings",
        "get_listing",
        "my_threads",
        "read_thread",
        "my_deals",
        "my_balance",
        "events_since",
    ]
    .into();
    assert_eq!(read_only, expected);
    for t in tools::catalogue() {
        if t.annotations.read_only {
            assert!(
                !t.annotations.destructive && t.annotations.idempotent,
                "{}",
                t.name
            );
        }
    }
    let accept = tools::find("accept_offer").unwrap().annotations;
    assert!(accept.destructive && !accept.read_only);
    let post = tools::find("post_listing").unwrap().annotations;
    assert!(!post.destructive && !post.idempotent);
}

#[tokio::test]
async fn every_tool_runs_and_returns_what_its_schema_says() {
    let Market {
        alice, bob, _db, ..
    } = market().await;
    let mut used = BTreeSet::new();
    let u = &mut used;

    // A sale negotiated to completion, with every negotiation move on the way.
    let bike = run(
        u,
        &alice,
        "post_listing",
        json!({"title": "Red road bike", "category": "bikes", "condition": "good", "price": 5000}),
    )
    .await;
    let bike_id = id(&bike, "/id");
    assert_eq!(bike["side"], "sell");
    let helmet = run(
        u,
        &alice,
        "post_wanted",
        json!({"title": "Wanted: helmet", "category": "bikes", "price": 2000}),
    )
    .await;
    assert_eq!(helmet["side"], "buy");
    let found = run(
        u,
        &bob,
        "search_listings",
        json!({"q": "bike", "max_price": 6000, "sort": "cheapest", "side": "sell"}),
    )
    .await;
    assert_eq!(id(&found, "/items/0/id"), bike_id);
    let seen = run(u, &bob, "get_listing", json!({"listing_id": bike_id})).await;
    assert_eq!(
        id(&seen, "/owner_reputation/participant_id"),
        alice.participant_id()
    );
    let hello = run(
        u,
        &bob,
        "send_message",
        json!({"listing_id": bike_id, "body": "Still available?"}),
    )
    .await;
    let thread = id(&hello, "/thread_id");
    let o1 = run(
        u,
        &bob,
        "make_offer",
        json!({"thread_id": thread, "price": 4000}),
    )
    .await;
    assert!(o1["thread"].is_null());
    let threads = run(u, &alice, "my_threads", json!({})).await;
    assert_eq!(id(&threads, "/items/0/id"), thread);
    let read = run(u, &alice, "read_thread", json!({"thread_id": thread})).await;
    assert_eq!(read["offers"][0]["price"], 4000);
    assert_eq!(read["messages"][0]["body"], "Still available?");
    run(
        u,
        &alice,
        "reject_offer",
        json!({"offer_id": id(&o1, "/offer/id")}),
    )
    .await;
    let o2 = run(
        u,
        &bob,
        "make_offer",
        json!({"thread_id": thread, "price": 4200}),
    )
    .await;
    run(
        u,
        &bob,
        "withdraw_offer",
        json!({"offer_id": id(&o2, "/offer/id")}),
    )
    .await;
    run(
        u,
        &bob,
        "make_offer",
        json!({"thread_id": thread, "price": 4400}),
    )
    .await;
    let counter = run(
        u,
        &alice,
        "make_offer",
        json!({"thread_id": thread, "price": 4600}),
    )
    .await;
    run(
        u,
        &alice,
        "send_message",
        json!({"thread_id": thread, "body": "Meet me at 46?"}),
    )
    .await;
    let deal = run(
        u,
        &bob,
        "accept_offer",
        json!({"offer_id": id(&counter, "/offer/id")}),
    )
    .await;
    assert_eq!(deal["status"], DealStatus::Agreed.as_str());
    let deal_id = id(&deal, "/id");
    let money = run(u, &bob, "my_balance", json!({})).await;
    assert_eq!(
        (
            money["available"].as_i64(),
            money["held"].as_i64(),
            money["total"].as_i64()
        ),
        (Some(5400), Some(4600), Some(10_000))
    );
    assert_eq!(money["mandate"]["frozen"], false);
    run(
        u,
        &alice,
        "hand_over",
        json!({"deal_id": deal_id, "note": "at reception"}),
    )
    .await;
    let done = run(u, &bob, "confirm_receipt", json!({"deal_id": deal_id})).await;
    assert_eq!(done["status"], "completed");
    run(
        u,
        &bob,
        "rate_deal",
        json!({"deal_id": deal_id, "score": 5, "comment": "smooth"}),
    )
    .await;
    let deals = run(u, &bob, "my_deals", json!({})).await;
    assert_eq!(deals["items"][0]["status"], "completed");
    let events = run(u, &bob, "events_since", json!({"after": 0})).await;
    assert!(id(&events, "/next_after") > 0);
    assert!(!events["events"].as_array().unwrap().is_empty());

    // A disputed deal: an offer that opens its thread with a message.
    let lamp = run(
        u,
        &alice,
        "post_listing",
        json!({"title": "Desk lamp", "category": "home", "price": 1500}),
    )
    .await;
    let opened = run(
        u,
        &bob,
        "make_offer",
        json!({"listing_id": id(&lamp, "/id"), "price": 1000, "message": "Would you take 10?"}),
    )
    .await;
    assert_eq!(opened["message"]["body"], "Would you take 10?");
    assert_eq!(id(&opened, "/thread/id"), id(&opened, "/offer/thread_id"));
    let lamp_deal = run(
        u,
        &alice,
        "accept_offer",
        json!({"offer_id": id(&opened, "/offer/id")}),
    )
    .await;
    run(
        u,
        &alice,
        "hand_over",
        json!({"deal_id": id(&lamp_deal, "/id")}),
    )
    .await;
    let disputed = run(
        u,
        &bob,
        "open_dispute",
        json!({"deal_id": id(&lamp_deal, "/id"), "reason": "never arrived"}),
    )
    .await;
    assert_eq!(disputed["status"], "disputed");

    // A shipped deal: the shipping price is added to the deal's, the seller ships with a
    // tracking reference, the buyer confirms delivery, and `my_deals` shows it.
    let lamp2 = run(
        u,
        &alice,
        "post_listing",
        json!({"title": "Floor lamp", "category": "home", "price": 1200, "shipping_price": 300}),
    )
    .await;
    let bid = run(
        u,
        &bob,
        "make_offer",
        json!({"listing_id": id(&lamp2, "/id"), "price": 1100}),
    )
    .await;
    let shipped_deal = run(
        u,
        &alice,
        "accept_offer",
        json!({"offer_id": id(&bid, "/offer/id")}),
    )
    .await;
    assert_eq!(shipped_deal["price"], 1400);
    let shipped = run(
        u,
        &alice,
        "ship",
        json!({"deal_id": id(&shipped_deal, "/id"), "carrier": "DHL", "tracking": "JJD01"}),
    )
    .await;
    assert_eq!(shipped["shipping"]["status"], "shipped");
    let deals = run(u, &bob, "my_deals", json!({})).await;
    let mine = deals["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == shipped_deal["id"])
        .expect("the shipped deal is listed");
    assert_eq!(mine["shipping"]["tracking"], "JJD01", "{mine}");
    run(
        u,
        &bob,
        "confirm_receipt",
        json!({"deal_id": id(&shipped_deal, "/id")}),
    )
    .await;

    // A cancelled deal, a walk-away and a withdrawn wanted ad.
    let kettle = run(
        u,
        &alice,
        "post_listing",
        json!({"title": "Kettle", "category": "kitchen", "price": 800}),
    )
    .await;
    let offer = run(
        u,
        &bob,
        "make_offer",
        json!({"listing_id": id(&kettle, "/id"), "price": 800}),
    )
    .await;
    let kettle_deal = run(
        u,
        &alice,
        "accept_offer",
        json!({"offer_id": id(&offer, "/offer/id")}),
    )
    .await;
    let cancelled = run(
        u,
        &alice,
        "cancel_deal",
        json!({"deal_id": id(&kettle_deal, "/id"), "reason": "it broke"}),
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    let pitch = run(
        u,
        &bob,
        "make_offer",
        json!({"listing_id": id(&helmet, "/id"), "price": 1900}),
    )
    .await;
    run(
        u,
        &bob,
        "walk_away",
        json!({"thread_id": id(&pitch, "/offer/thread_id")}),
    )
    .await;
    run(
        u,
        &alice,
        "withdraw_listing",
        json!({"listing_id": id(&helmet, "/id")}),
    )
    .await;

    // `end_turn` needs a participant driven from outside: its own test below.
    let all: BTreeSet<&str> = tools::catalogue()
        .iter()
        .map(|t| t.name)
        .filter(|n| *n != tools::END_TURN)
        .collect();
    assert_eq!(
        used,
        all,
        "tools never run: {:?}",
        all.difference(&used).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn end_turn_ends_the_open_turn_and_returns_what_its_schema_says() {
    let m = market().await;
    let (carol, turns) = outside_participant(&m).await;
    let mut used = BTreeSet::new();
    let ended = run(&mut used, &carol, tools::END_TURN, json!({"turn": 1})).await;
    assert_eq!(ended["ended"], true);
    let waited = turns
        .wait(carol.participant_id(), std::time::Duration::from_secs(5))
        .await;
    assert_eq!(waited, haggle_service::turns::TurnEnd::Ended);
}

#[tokio::test]
async fn end_turn_of_a_turn_that_is_not_open_is_not_your_turn_and_ends_nothing() {
    let m = market().await;
    let (carol, turns) = outside_participant(&m).await;
    let e = refused(&carol, "end_turn", json!({"turn": 2})).await;
    assert_eq!((e.code(), e.status), (ErrorCode::NotYourTurn, 409));
    assert!(e.message().contains("open turn is 1"), "{}", e.message());
    // A participant not driven from outside has no turns to end.
    let e = refused(&m.alice, "end_turn", json!({"turn": 1})).await;
    assert_eq!(e.code(), ErrorCode::NotYourTurn);
    let waited = turns
        .wait(carol.participant_id(), std::time::Duration::from_millis(20))
        .await;
    assert_eq!(waited, haggle_service::turns::TurnEnd::TimedOut);
}

#[tokio::test]
async fn every_tool_refuses_an_unknown_argument_by_name() {
    let Market { alice, _db, .. } = market().await;
    for t in tools::catalogue() {
        let e = refused(&alice, t.name, json!({"colour": "red"})).await;
        assert_eq!(e.code(), ErrorCode::InvalidRequest, "{}", t.name);
        assert_eq!(e.status, 422, "{}", t.name);
        assert!(
            e.message().contains("colour"),
            "{}: {}",
            t.name,
            e.message()
        );
    }
}

#[tokio::test]
async fn bad_arguments_are_invalid_request_naming_the_field_and_change_nothing() {
    let Market {
        alice, bob, _db, ..
    } = market().await;
    let mut u = BTreeSet::new();
    let bike = run(
        &mut u,
        &alice,
        "post_listing",
        json!({"title": "Bike", "category": "bikes", "price": 5000}),
    )
    .await;
    let opened = run(
        &mut u,
        &bob,
        "make_offer",
        json!({"listing_id": id(&bike, "/id"), "price": 4000}),
    )
    .await;
    let thread = id(&opened, "/offer/thread_id");

    let cases = [
        (json!({"thread_id": thread, "price": "forty"}), "price"),
        (json!({"thread_id": thread}), "price"),
        (
            json!({"thread_id": thread, "price": 4100, "colour": "red"}),
            "colour",
        ),
        (
            json!({"thread_id": thread, "listing_id": 1, "price": 4100}),
            "listing_id",
        ),
        (json!({"price": 4100}), "thread_id"),
        (
            json!({"thread_id": thread, "price": 4100, "message": "hi"}),
            "message",
        ),
        (json!([thread, 4100]), "JSON object"),
    ];
    for (args, field) in cases {
        let e = refused(&bob, "make_offer", args.clone()).await;
        assert_eq!(e.code(), ErrorCode::InvalidRequest, "{args}");
        assert!(e.message().contains(field), "{args}: {}", e.message());
    }
    let read = tools::call(&bob, "read_thread", json!({"thread_id": thread}))
        .await
        .unwrap();
    assert_eq!(
        read["offers"].as_array().unwrap().len(),
        1,
        "a refused call changed the thread"
    );
    assert!(read["messages"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_tool_is_invalid_request_listing_the_tools() {
    let Market { alice, _db, .. } = market().await;
    let e = refused(&alice, "buy_everything", json!({})).await;
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert!(e.message().contains("buy_everything") && e.message().contains("make_offer"));
}

#[tokio::test]
async fn refusals_carry_the_markets_code_and_message() {
    let Market {
        alice, bob, _db, ..
    } = market().await;
    let mut u = BTreeSet::new();
    let bike = run(
        &mut u,
        &alice,
        "post_listing",
        json!({"title": "Bike", "category": "bikes", "price": 5000}),
    )
    .await;
    let opened = run(
        &mut u,
        &bob,
        "make_offer",
        json!({"listing_id": id(&bike, "/id"), "price": 4000}),
    )
    .await;
    let offer = id(&opened, "/offer/id");

    // Accepting one's own offer: the tool's error is the contract's error, field for field.
    let via_tool = refused(&bob, "accept_offer", json!({"offer_id": offer})).await;
    let direct = bob.accept(offer).await.unwrap_err();
    assert_eq!(via_tool, ToolError::from(direct.clone()));
    assert_eq!(via_tool.code(), ErrorCode::NotYourOffer);
    assert_eq!(via_tool.status, direct.status);

    // Over budget, and a listing that does not exist.
    let e = refused(
        &bob,
        "make_offer",
        json!({"thread_id": id(&opened, "/offer/thread_id"), "price": 20_000}),
    )
    .await;
    assert_eq!(e.code(), ErrorCode::InsufficientFunds, "{e}");
    let e = refused(&bob, "get_listing", json!({"listing_id": 999_999})).await;
    assert_eq!((e.code(), e.status), (ErrorCode::NotFound, 404));
    let e = refused(
        &alice,
        "post_listing",
        json!({"title": "Free", "category": "x", "price": 0}),
    )
    .await;
    assert_eq!(e.code(), ErrorCode::InvalidPrice);
}

/// Issue 25: under OpenAI's strict schemas a model sends `null` for every optional argument it
/// leaves out; each tool reads such a `null` as absent.
#[tokio::test]
async fn a_null_argument_is_read_as_absent() {
    let Market { alice, bob, .. } = market().await;
    let mut used = BTreeSet::new();
    let u = &mut used;
    let bike = run(
        u,
        &alice,
        "post_listing",
        json!({"title": "Blue bike", "category": "bikes", "condition": null,
               "description": null, "price": 5000}),
    )
    .await;
    let offer = run(
        u,
        &bob,
        "make_offer",
        json!({"thread_id": null, "listing_id": id(&bike, "/id"), "price": 4000,
               "message": null}),
    )
    .await;
    assert_eq!(offer["offer"]["price"], 4000);
}

/// Every tool's argument schema, made strict for OpenAI, is closed, requires every property and
/// keeps no keyword strict mode refuses.
#[test]
fn strict_argument_schemas_are_closed_and_require_every_property() {
    use haggle_agents::llm::openai::strict_schema;
    fn check(v: &Value, at: &str) {
        if let Some(m) = v.as_object() {
            for k in ["maxLength", "minLength", "default", "oneOf"] {
                assert!(!m.contains_key(k), "{at}: {k} left in {v}");
            }
            if let Some(props) = m.get("properties").and_then(Value::as_object) {
                assert_eq!(m["additionalProperties"], false, "{at}");
                let required: BTreeSet<&str> = m["required"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect();
                let keys: BTreeSet<&str> = props.keys().map(String::as_str).collect();
                assert_eq!(required, keys, "{at}: every property required");
            }
            for (k, child) in m {
                check(child, &format!("{at}.{k}"));
            }
        } else if let Some(items) = v.as_array() {
            items.iter().for_each(|i| check(i, at));
        }
    }
    for t in tools::catalogue() {
        check(&strict_schema(&t.model_input_schema()), t.name);
    }
}

#[test]
fn thread_or_listing_is_exactly_one_of_in_the_schemas() {
    for name in ["make_offer", "send_message"] {
        let s = &tools::find(name).unwrap().input_schema;
        assert_eq!(s["oneOf"].as_array().map(Vec::len), Some(2), "{name}: {s}");
        let base = if name == "make_offer" {
            json!({"price": 4000})
        } else {
            json!({"body": "hello"})
        };
        let with = |extra: Value| {
            let mut v = base.clone();
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        for ok in [
            with(json!({"thread_id": 1})),
            with(json!({"listing_id": 2})),
            with(json!({"thread_id": 1, "listing_id": null})),
        ] {
            tools::check_against(s, &ok).unwrap_or_else(|e| panic!("{name} {ok}: {e}"));
        }
        for bad in [
            base.clone(),
            with(json!({"thread_id": 1, "listing_id": 2})),
            with(json!({"thread_id": null, "listing_id": null})),
        ] {
            assert!(tools::check_against(s, &bad).is_err(), "{name} {bad}");
        }
    }
    // Only where both ids are arguments.
    for t in tools::catalogue() {
        if !["make_offer", "send_message"].contains(&t.name) {
            assert!(t.input_schema.get("oneOf").is_none(), "{}", t.name);
        }
    }
}

#[tokio::test]
async fn both_or_neither_of_thread_and_listing_is_refused_with_the_rule() {
    let Market { bob, .. } = market().await;
    for (name, args) in [
        ("make_offer", json!({"price": 4000})),
        (
            "make_offer",
            json!({"thread_id": 1, "listing_id": 1, "price": 4000}),
        ),
        ("send_message", json!({"body": "hi"})),
        (
            "send_message",
            json!({"thread_id": 1, "listing_id": 1, "body": "hi"}),
        ),
    ] {
        let e = refused(&bob, name, args.clone()).await;
        assert_eq!(e.code(), ErrorCode::InvalidRequest, "{name} {args}");
        assert!(
            e.message()
                .contains("give exactly one of `thread_id` (an existing thread) or `listing_id`"),
            "{name}: {}",
            e.message()
        );
    }
}

#[test]
fn state_changing_tools_take_an_idempotency_key_and_reads_do_not() {
    for t in tools::catalogue() {
        let has = t.input_schema["properties"]
            .get(tools::IDEMPOTENCY_KEY)
            .is_some();
        assert_eq!(has, !t.annotations.read_only, "{}", t.name);
        // Haggle's own brains see neither the key nor the root oneOf.
        let model = t.model_input_schema();
        assert!(model["properties"].get(tools::IDEMPOTENCY_KEY).is_none());
        assert!(model.get("oneOf").is_none(), "{}", t.name);
    }
}

#[tokio::test]
async fn a_retried_call_with_the_same_idempotency_key_acts_once() {
    let Market { alice, bob, .. } = market().await;
    let mut u = BTreeSet::new();
    let bike = run(
        &mut u,
        &alice,
        "post_listing",
        json!({"title": "Bike", "category": "bikes", "price": 5000}),
    )
    .await;
    let args = json!({"listing_id": id(&bike, "/id"), "price": 4000, "idempotency_key": "k-1"});
    let first = run(&mut u, &bob, "make_offer", args.clone()).await;
    let retry = run(&mut u, &bob, "make_offer", args).await;
    assert_eq!(first, retry);
    let threads = run(&mut u, &alice, "my_threads", json!({})).await;
    assert_eq!(threads["items"].as_array().unwrap().len(), 1);
    let balance = run(&mut u, &bob, "my_balance", json!({})).await;
    assert_eq!(balance["committed_to_offers"], 4000);
    // The same key for another request is a conflict, not a second action.
    let e = refused(
        &bob,
        "make_offer",
        json!({"listing_id": id(&bike, "/id"), "price": 4500, "idempotency_key": "k-1"}),
    )
    .await;
    assert_eq!(e.code(), ErrorCode::IdempotencyConflict, "{e}");
    // A key derived by the transport (no argument) deduplicates the same way.
    let thread = id(&first, "/thread/id");
    let say = json!({"thread_id": thread, "body": "Deal?"});
    let m1 = tools::call_keyed(&bob, "send_message", say.clone(), Some("mcp:s:n9"))
        .await
        .unwrap();
    let m2 = tools::call_keyed(&bob, "send_message", say, Some("mcp:s:n9"))
        .await
        .unwrap();
    assert_eq!(m1, m2);
    let read = run(&mut u, &alice, "read_thread", json!({"thread_id": thread})).await;
    assert_eq!(read["messages"].as_array().unwrap().len(), 1, "{read}");
}

#[tokio::test]
async fn a_bad_idempotency_key_is_invalid_request_naming_it() {
    let Market { alice, .. } = market().await;
    for key in [
        json!(""),
        json!("has space"),
        json!(7),
        json!("x".repeat(101)),
    ] {
        let e = refused(
            &alice,
            "post_listing",
            json!({"title": "Bike", "category": "bikes", "price": 5000, "idempotency_key": key}),
        )
        .await;
        assert_eq!(e.code(), ErrorCode::InvalidRequest, "{key}");
        assert!(e.message().contains("idempotency_key"), "{}", e.message());
    }
    // A read takes no key.
    let e = refused(&alice, "my_balance", json!({"idempotency_key": "k"})).await;
    assert!(e.message().contains("idempotency_key"), "{}", e.message());
}

#[tokio::test]
async fn my_threads_lists_open_threads_first_newest_first() {
    let Market { alice, bob, .. } = market().await;
    let mut u = BTreeSet::new();
    let mut threads = Vec::new();
    for title in ["Bike", "Lamp", "Desk"] {
        let l = run(
            &mut u,
            &alice,
            "post_listing",
            json!({"title": title, "category": "misc", "price": 5000}),
        )
        .await;
        let m = run(
            &mut u,
            &bob,
            "send_message",
            json!({"listing_id": id(&l, "/id"), "body": "hello"}),
        )
        .await;
        threads.push(id(&m, "/thread_id"));
    }
    // The newest thread ends; the two older ones stay open.
    run(&mut u, &bob, "walk_away", json!({"thread_id": threads[2]})).await;
    for who in [&alice, &bob] {
        let listed = run(&mut u, who, "my_threads", json!({})).await;
        let order: Vec<i64> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect();
        assert_eq!(order, vec![threads[1], threads[0], threads[2]]);
        assert_eq!(listed["items"][2]["status"], "broken");
        assert!(listed["next_cursor"].is_null());
    }
}
