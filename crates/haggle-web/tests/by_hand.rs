//! Trading by hand: principals trade for their own participants through the web forms, in a
//! real headless Chromium (as `browser.rs`) and as a browser without JavaScript submits forms.
//! The market's rules, mandate and idempotency apply as to agents, and the events and the feed
//! say the principal acted. Without Chromium the browser tests print a loud NOT RUN line.

mod support;

#[path = "support/browser.rs"]
#[allow(dead_code)] // resizing and scripts are the other browser tests'
mod browser;

use browser::{Browser, find_browser};
use serde_json::{Value, json};
use support::*;

/// Browser tests take turns (each starts its own Chromium).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn browser() -> Option<Browser> {
    match find_browser() {
        Ok((chromium, driver)) => Some(Browser::start(&chromium, &driver).await),
        Err(why) => {
            haggle_testkit::not_run("BROWSER TESTS", &why);
            None
        }
    }
}

/// The listing id at the end of a page's URL (`/m/1/listings/7?done=1`).
fn trailing_id(url: &str, after: &str) -> i64 {
    let rest = &url[url
        .find(after)
        .unwrap_or_else(|| panic!("{after} in {url}"))
        + after.len()..];
    rest.split(['?', '/'])
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("an id after {after} in {url}"))
}

async fn verify(s: &Server, m: i64) -> Value {
    s.api(
        reqwest::Method::GET,
        &format!("/v1/markets/{m}/ledger/verify"),
        &s.operator,
        Value::Null,
    )
    .await
}

async fn available(s: &Server, m: i64, p: i64) -> i64 {
    s.svc
        .store()
        .balance(m, p, START_MS)
        .await
        .unwrap()
        .available
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_trade_by_hand_from_listing_to_confirmed_handover() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    // Alice posts a listing from her page.
    b.sign_in(&s.base, &alice.principal).await;
    b.goto(&format!("{}/m/{m}/p/{}", s.base, alice.id)).await;
    b.type_into("#tr-title", "Bookshelf").await;
    b.type_into("#tr-category", "furniture").await;
    b.type_into("#tr-price", "60.00").await;
    b.click("#post-listing button[type=submit]").await;
    b.wait_for_text("main", "Done.", 10).await;
    let l = trailing_id(&b.url().await, "/listings/");
    // Bob makes an offer on it.
    b.sign_in(&s.base, &bob.principal).await;
    b.goto(&format!("{}/m/{m}/listings/{l}", s.base)).await;
    b.type_into("#offer-price", "50.00").await;
    b.type_into("#offer-text", "Would you take fifty?").await;
    b.click("#offer-form button[type=submit]").await;
    b.wait_for_text("main", "offers $50.00", 10).await;
    // Alice counters.
    b.sign_in(&s.base, &alice.principal).await;
    b.goto(&format!("{}/m/{m}/listings/{l}", s.base)).await;
    b.wait_for_text("main", "Their offer: $50.00", 5).await;
    b.type_into("form[id^=counter-] input[name=price]", "55.00")
        .await;
    b.click("form[id^=counter-] button[type=submit]").await;
    b.wait_for_text("main", "offers $55.00", 10).await;
    // Bob accepts the counter: the deal's page opens.
    b.sign_in(&s.base, &bob.principal).await;
    b.goto(&format!("{}/m/{m}/listings/{l}", s.base)).await;
    b.wait_for_text("main", "Their offer: $55.00", 5).await;
    b.screenshot("by-hand-counter").await;
    b.click("form[id^=accept-] button[type=submit]").await;
    b.wait_for_text("main", "Deal #", 10).await;
    let d = trailing_id(&b.url().await, "/deals/");
    // Alice hands it over; Bob confirms.
    b.sign_in(&s.base, &alice.principal).await;
    b.goto(&format!("{}/m/{m}/deals/{d}", s.base)).await;
    b.type_into("#handover-note", "left with reception").await;
    b.click("#hand-over-form button[type=submit]").await;
    b.wait_for_text("main", "left with reception", 10).await;
    b.sign_in(&s.base, &bob.principal).await;
    b.goto(&format!("{}/m/{m}/deals/{d}", s.base)).await;
    b.click("#confirm-form button[type=submit]").await;
    b.wait_for_text("main", "completed", 10).await;
    b.screenshot("by-hand-completed").await;
    let deal = s.svc.store().deal(m, d).await.unwrap().unwrap();
    assert_eq!(deal.status.as_str(), "completed");
    assert_eq!(deal.price, 5_500);
    assert_eq!(available(&s, m, alice.id).await, 5_500);
    assert_eq!(available(&s, m, bob.id).await, 4_500);
    let v = verify(&s, m).await;
    assert_eq!(v["breaches"], json!([]), "{v}");
    // The feed says the principals did it.
    b.goto(&format!("{}/m/{m}", s.base)).await;
    b.wait_for_text("#feed", "Alice's principal listed “Bookshelf”", 5)
        .await;
    b.quit().await;
}

/// A buyer's rule agent that pays the listed price of a road bike up to 55.00.
async fn taker(
    s: &Server,
    m: i64,
    buyer: &Party,
) -> haggle_agents::runtime::Agent<haggle_service::InProcess> {
    let profile = haggle_agents::profile::Profile::from_toml(&format!(
        r#"
name = "{}"
budget = 10000
[[want]]
want_id = "w1"
item_type = "road bike"
description = "a road bike"
category = "misc"
keywords = ["bike"]
max_price = 5500
"#,
        buyer.name
    ))
    .unwrap();
    let client = haggle_service::InProcess::from_token(s.svc.clone(), &buyer.agent)
        .await
        .unwrap();
    let _ = m;
    haggle_agents::runtime::Agent::new(
        profile,
        client,
        haggle_agents::registry::brain_from_name("rule:taker", 1).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_confirms_its_rule_agents_offer_in_propose_mode() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    let l = s.sell(m, &alice, "Road bike", 5_000).await;
    // Bob's principal asks to confirm each binding step of its agent.
    b.sign_in(&s.base, &bob.principal).await;
    b.goto(&format!("{}/m/{m}/p/{}", s.base, bob.id)).await;
    b.click("#mode-form input[value=propose]").await;
    b.click("#mode-form button[type=submit]").await;
    b.wait_for_text("main", "Trading mode saved.", 10).await;
    // The agent tries to buy: its offer waits as a proposal, and it is told so.
    let mut agent = taker(&s, m, &bob).await;
    for round in 0..4 {
        agent.turn(0, round).await;
    }
    assert!(
        agent
            .stats
            .refusals
            .get("awaiting_principal")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{:?}",
        agent.stats.refusals
    );
    let threads = s
        .svc
        .store()
        .threads(m, Some(bob.id), None, 0, 10)
        .await
        .unwrap();
    assert!(
        threads.is_empty(),
        "nothing ran before the principal confirmed"
    );
    b.goto(&format!("{}/m/{m}/p/{}", s.base, bob.id)).await;
    let waiting = b.wait_for_text("#proposals", "Offer $50.00", 5).await;
    assert_eq!(
        waiting.matches("Confirm").count(),
        1,
        "one proposal: {waiting}"
    );
    b.screenshot("by-hand-proposal").await;
    b.click("#proposals form[action$='/confirm'] button").await;
    b.wait_for_text("main", "Confirmed: your agent's step ran.", 10)
        .await;
    let threads = s
        .svc
        .store()
        .threads(m, Some(bob.id), None, 0, 10)
        .await
        .unwrap();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].listing_id, l);
    // The agent's offer is live; Alice's agent accepts it, and the books balance.
    let offer = s
        .svc
        .store()
        .thread(m, threads[0].id)
        .await
        .unwrap()
        .unwrap()
        .offers[0]
        .clone();
    assert_eq!((offer.price, offer.proposer), (5_000, bob.id));
    let deal = s.accept(m, &alice, offer.id).await;
    assert_eq!(deal["status"], "agreed");
    assert_eq!(verify(&s, m).await["breaches"], json!([]));
    b.quit().await;
}

// ---- HTTP: trading modes and refusals, as a browser without JavaScript submits forms ----

async fn mode(s: &Server, m: i64, who: &Party, token: &str, mode: &str) -> (u16, Value) {
    let r = s
        .client
        .put(s.url(&format!(
            "/v1/markets/{m}/participants/{}/trading_mode",
            who.id
        )))
        .bearer_auth(token)
        .json(&json!({"mode": mode}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// POSTs a by-hand form as `token`, with the CSRF token of `page`.
async fn by_hand(
    s: &Server,
    token: &str,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> Page {
    let csrf = s.page(page, Some(token)).await.hidden("csrf");
    let mut all = vec![("csrf", csrf.as_str()), ("idem", "k-1")];
    all.extend_from_slice(fields);
    s.form(action, token, &all).await
}

#[tokio::test]
async fn a_principal_sets_the_trading_mode_and_its_agent_sees_it() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let (status, _) = mode(&s, m, &alice, &alice.principal, "principal").await;
    assert_eq!(status, 200);
    let mandate = s
        .api(
            reqwest::Method::GET,
            &format!("/v1/markets/{m}/participants/{}/mandate", alice.id),
            &alice.agent,
            Value::Null,
        )
        .await;
    assert_eq!(mandate["trading_mode"], "principal");
    let events = s
        .svc
        .store()
        .events(m, haggle_service::Viewer::All, 0, 100)
        .await
        .unwrap();
    let changed = events
        .iter()
        .find(|e| e.kind() == "trading_mode_changed")
        .expect("a trading_mode_changed event");
    assert_eq!(changed.by.as_str(), "principal");
}

#[tokio::test]
async fn a_trading_mode_change_is_told_in_a_sentence() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let (status, _) = mode(&s, m, &alice, &alice.principal, "principal").await;
    assert_eq!(status, 200);
    // Told as the chat channels tell it (the web feed's filters leave mandates aside).
    let events = s
        .svc
        .store()
        .events(m, haggle_service::Viewer::All, 0, 100)
        .await
        .unwrap();
    let changed = events
        .iter()
        .find(|e| e.kind() == "trading_mode_changed")
        .expect("a trading_mode_changed event");
    let operator = haggle_service::Caller {
        role: haggle_service::Role::Operator,
        market: None,
        participant: None,
        scope: "test".into(),
    };
    let mut names = haggle_service::story::Names::new(&s.svc, &operator, m);
    let told = haggle_service::story::describe(changed, &mut names, m, "USD").await;
    assert_eq!(
        told.text,
        "Alice's principal trades by hand (its agent is paused)"
    );
}

#[tokio::test]
async fn only_its_principal_sets_the_trading_mode() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 0).await;
    for token in [&alice.agent, &bob.principal, &s.operator] {
        let (status, body) = mode(&s, m, &alice, token, "principal").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
    }
    let (status, body) = mode(&s, m, &alice, &alice.principal, "robot").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_request")),
        "{body}"
    );
}

#[tokio::test]
async fn in_principal_mode_the_agent_is_paused_and_the_principal_trades() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    mode(&s, m, &alice, &alice.principal, "principal").await;
    let r = s
        .client
        .post(s.url(&format!("/v1/markets/{m}/listings")))
        .bearer_auth(&alice.agent)
        .json(&json!({"side": "sell", "title": "Lamp", "category": "misc", "price": 1_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "agent_paused");
    let page = format!("/m/{m}/p/{}", alice.id);
    let posted = by_hand(
        &s,
        &alice.principal,
        &page,
        &format!("/m/{m}/listings"),
        &[
            ("side", "sell"),
            ("title", "Lamp"),
            ("category", "misc"),
            ("price", "10.00"),
        ],
    )
    .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let events = s
        .svc
        .store()
        .events(m, haggle_service::Viewer::All, 0, 100)
        .await
        .unwrap();
    let listed = events
        .iter()
        .find(|e| e.kind() == "listing_posted")
        .unwrap();
    assert_eq!(
        (listed.actor, listed.by.as_str()),
        (Some(alice.id), "principal")
    );
}

#[tokio::test]
async fn a_by_hand_offer_is_refused_by_the_same_rules_with_its_code() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 1_000).await;
    let l = s.sell(m, &alice, "Desk", 5_000).await;
    let page = format!("/m/{m}/listings/{l}");
    let refused = by_hand(
        &s,
        &bob.principal,
        &page,
        &format!("{page}/offer"),
        &[("price", "40.00")],
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("insufficient_funds"),
        "{}",
        refused.body
    );
    let threads = s
        .svc
        .store()
        .threads(m, Some(bob.id), None, 0, 10)
        .await
        .unwrap();
    assert!(threads.is_empty(), "a refusal changes nothing");
}

#[tokio::test]
async fn a_resubmitted_by_hand_form_replays_its_first_answer() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let page = format!("/m/{m}/p/{}", alice.id);
    let fields = [
        ("side", "sell"),
        ("title", "Lamp"),
        ("category", "misc"),
        ("price", "10.00"),
    ];
    let first = by_hand(
        &s,
        &alice.principal,
        &page,
        &format!("/m/{m}/listings"),
        &fields,
    )
    .await;
    let again = by_hand(
        &s,
        &alice.principal,
        &page,
        &format!("/m/{m}/listings"),
        &fields,
    )
    .await;
    assert_eq!((first.status, again.status), (303, 303));
    assert_eq!(first.location, again.location, "the same listing");
    let events = s
        .svc
        .store()
        .events(m, haggle_service::Viewer::All, 0, 100)
        .await
        .unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == "listing_posted")
            .count(),
        1
    );
}

#[tokio::test]
async fn an_agent_token_may_not_use_the_by_hand_forms() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let page = format!("/m/{m}/listings");
    let refused = by_hand(
        &s,
        &alice.agent,
        &page,
        &page,
        &[
            ("side", "sell"),
            ("title", "Lamp"),
            ("category", "misc"),
            ("price", "10.00"),
        ],
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("forbidden"));
}

#[tokio::test]
async fn in_propose_mode_an_agents_offer_waits_and_its_retry_gets_the_confirmed_answer() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    let l = s.sell(m, &alice, "Desk", 5_000).await;
    mode(&s, m, &bob, &bob.principal, "propose").await;
    let offer = || async {
        let r = s
            .client
            .post(s.url(&format!("/v1/markets/{m}/listings/{l}/threads")))
            .bearer_auth(&bob.agent)
            .header("Idempotency-Key", "agent-key-1")
            .json(&json!({"price": 4_500}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (status, body) = offer().await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("awaiting_principal")),
        "{body}"
    );
    let (status, _) = offer().await;
    assert_eq!(status, 409, "still waiting");
    let waiting = s
        .svc
        .store()
        .proposals(
            m,
            bob.id,
            haggle_service::proposals::ProposalStatus::Waiting,
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1, "one proposal per key");
    let page = format!("/m/{m}/p/{}", bob.id);
    let confirmed = by_hand(
        &s,
        &bob.principal,
        &page,
        &format!("/m/{m}/proposals/{}/confirm", waiting[0].id),
        &[],
    )
    .await;
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);
    let (status, body) = offer().await;
    assert_eq!(
        status, 201,
        "the agent's retry replays the step's answer: {body}"
    );
    assert_eq!(body["offer"]["price"], 4_500);
    let again = by_hand(
        &s,
        &bob.principal,
        &page,
        &format!("/m/{m}/proposals/{}/decline", waiting[0].id),
        &[],
    )
    .await;
    assert!(again.body.contains("invalid_transition"), "{}", again.body);
}

#[tokio::test]
async fn a_by_hand_listing_may_be_shipped_at_a_shipping_price() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let page = format!("/m/{m}/p/{}", alice.id);
    let post = |fulfilment: &'static str| {
        [
            ("side", "sell"),
            ("title", "Lamp"),
            ("category", "misc"),
            ("price", "10.00"),
            ("fulfilment", fulfilment),
            ("shipping_price", "4.50"),
        ]
    };
    let listings = format!("/m/{m}/listings");
    let bad = by_hand(&s, &alice.principal, &page, &listings, &post("by_pigeon")).await;
    assert_eq!(bad.status, 422);
    let shipped = by_hand(&s, &alice.principal, &page, &listings, &post("shipping")).await;
    assert_eq!(shipped.status, 303);
    let events = s
        .svc
        .store()
        .events(m, haggle_service::Viewer::All, 0, 100)
        .await
        .unwrap();
    let posted: Vec<Value> = events
        .iter()
        .filter(|e| e.kind() == "listing_posted")
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert_eq!(posted.len(), 1, "the refused form changed nothing");
    assert_eq!(
        posted[0]["payload"]["listing"]["fulfilment"],
        json!({"shipping": {"shipping_price": 450}}),
        "{}",
        posted[0]
    );
}
