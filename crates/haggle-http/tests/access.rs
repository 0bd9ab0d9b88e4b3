//! Who may call what: a role-by-endpoint table over every route, and the privacy of threads,
//! balances, mandates and deals between participants.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Operator,
    /// The agent of the participant the row is about (the owner, party or proposer).
    AgentSelf,
    /// The agent of a participant with no part in it (Carol).
    AgentOther,
    PrincipalSelf,
    PrincipalOther,
    Observer,
}
use Role::*;

const ROLES: [Role; 6] = [
    Operator,
    AgentSelf,
    AgentOther,
    PrincipalSelf,
    PrincipalOther,
    Observer,
];
const EVERYONE: &[Role] = &ROLES;
const READERS_OF_SELF: &[Role] = &[Operator, AgentSelf, PrincipalSelf, Observer];

/// Whom a row is about.
#[derive(Debug, Clone, Copy)]
enum Who {
    Alice,
    Bob,
}

/// A market with a simulated clock: Alice sells a bike (listing `L`) and Bob has a thread `T` on it
/// with a live offer `O` of his; Alice also sold Bob a lamp (deal `D`). Carol has no part in any of
/// it. Alice's mandate has a per-deal cap of 7777 (private to her, her principal, operators and
/// observers).
struct Fixture {
    m: i64,
    alice: Party,
    bob: Party,
    carol: Party,
    observer: String,
    listing: i64,
    thread: i64,
    offer: i64,
    deal: i64,
    lamp_thread: i64,
    /// Deals of the lifecycle (only in [`full_fixture`], else 0): handed over, disputed, finished
    /// (completed), awaiting Bob's principal's approval, and shipped (not yet sent). Alice
    /// sells, Bob buys.
    handed_over: i64,
    disputed: i64,
    finished: i64,
    awaiting: i64,
    shipped: i64,
}

async fn fixture(s: &Server) -> Fixture {
    let m = s
        .create_market(json!({"name": "Access", "clock": "simulated"}))
        .await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    let carol = s.participant(m, "Carol", 10_000).await;
    let r = s
        .put(
            &format!("/v1/markets/{m}/participants/{}/mandate", alice.id),
            &s.operator,
            json!({"per_deal_cap": 7777}),
        )
        .await;
    assert_status(&r, 200, "Alice's mandate");
    let observer = s.observer(m).await;
    let listing = s.sell(m, &alice, "Bike", 5000).await;
    let (thread, offer) = s.bid(m, &bob, listing, 4000).await;
    let lamp = s.sell(m, &alice, "Lamp", 1000).await;
    let (lamp_thread, lamp_offer) = s.bid(m, &bob, lamp, 1000).await;
    let deal = s.accept(m, &alice, lamp_offer).await["id"]
        .as_i64()
        .unwrap();
    Fixture {
        m,
        alice,
        bob,
        carol,
        observer,
        listing,
        thread,
        offer,
        deal,
        lamp_thread,
        handed_over: 0,
        disputed: 0,
        finished: 0,
        awaiting: 0,
        shipped: 0,
    }
}

/// [`fixture`] plus a deal in each lifecycle state the table's deal routes act on.
async fn full_fixture(s: &Server) -> Fixture {
    let mut fx = fixture(s).await;
    let m = fx.m;
    let deal = |title: &'static str, price: i64| {
        let fx = &fx;
        async move {
            let l = s.sell(m, &fx.alice, title, price).await;
            let (_, o) = s.bid(m, &fx.bob, l, price).await;
            s.accept(m, &fx.alice, o).await["id"].as_i64().unwrap()
        }
    };
    let act = |token: String, deal: i64, action: &'static str, body: Value| async move {
        let r = s
            .post(
                &format!("/v1/markets/{m}/deals/{deal}/{action}"),
                &token,
                body,
            )
            .await;
        assert!((200..300).contains(&r.0), "{action}: {} {}", r.0, r.1);
    };
    let (alice, bob) = (fx.alice.agent.clone(), fx.bob.agent.clone());
    let handed_over = deal("Mug", 300).await;
    act(alice.clone(), handed_over, "handover", json!({})).await;
    let disputed = deal("Book", 200).await;
    act(alice.clone(), disputed, "handover", json!({})).await;
    act(bob.clone(), disputed, "dispute", json!({"reason": "torn"})).await;
    let finished = deal("Pen", 100).await;
    act(alice.clone(), finished, "handover", json!({})).await;
    act(bob.clone(), finished, "confirm", json!({})).await;
    let mandate = format!("/v1/markets/{m}/participants/{}/mandate", fx.bob.id);
    let r = s
        .put(&mandate, &s.operator, json!({"approval_above": 400}))
        .await;
    assert_status(&r, 200, "Bob's approval threshold");
    let awaiting = deal("Sofa", 500).await;
    let r = s.put(&mandate, &s.operator, json!({})).await;
    assert_status(&r, 200, "Bob's mandate back");
    fx.handed_over = handed_over;
    fx.disputed = disputed;
    fx.finished = finished;
    fx.awaiting = awaiting;
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &fx.alice.agent,
            json!({"side": "sell", "title": "Vase", "category": "home", "price": 150,
                   "fulfilment": {"shipping": {"shipping_price": 50}}}),
        )
        .await;
    assert_status(&r, 201, "a shipped listing");
    let (_, o) = s.bid(m, &fx.bob, r.1["id"].as_i64().unwrap(), 150).await;
    fx.shipped = s.accept(m, &fx.alice, o).await["id"].as_i64().unwrap();
    fx
}

impl Fixture {
    fn token(&self, role: Role, who: Who) -> &str {
        let me = match who {
            Who::Alice => &self.alice,
            Who::Bob => &self.bob,
        };
        match role {
            Operator => unreachable!("the operator's token is the server's"),
            AgentSelf => &me.agent,
            AgentOther => &self.carol.agent,
            PrincipalSelf => &me.principal,
            PrincipalOther => &self.carol.principal,
            Observer => &self.observer,
        }
    }

    fn path(&self, template: &str) -> String {
        template
            .replace("{m}", &self.m.to_string())
            .replace("{alice}", &self.alice.id.to_string())
            .replace("{L}", &self.listing.to_string())
            .replace("{T}", &self.thread.to_string())
            .replace("{O}", &self.offer.to_string())
            .replace("{D}", &self.deal.to_string())
            .replace("{H}", &self.handed_over.to_string())
            .replace("{X}", &self.disputed.to_string())
            .replace("{F}", &self.finished.to_string())
            .replace("{A}", &self.awaiting.to_string())
            .replace("{S}", &self.shipped.to_string())
    }
}

struct Row {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    who: Who,
    allowed: &'static [Role],
}

fn row(
    method: Method,
    path: &'static str,
    body: Option<Value>,
    who: Who,
    allowed: &'static [Role],
) -> Row {
    Row {
        method,
        path,
        body,
        who,
        allowed,
    }
}

/// The table: one row per route and method; `who` is whom "self" means in that row.
#[rustfmt::skip]
fn table() -> Vec<Row> {
    use Method as M;
    use Who::*;
    vec![
        row(M::GET,  "/v1/me", None, Alice, EVERYONE),
        row(M::GET,  "/v1/markets", None, Alice, EVERYONE),
        row(M::POST, "/v1/markets", Some(json!({"name": "New"})), Alice, &[Operator]),
        row(M::GET,  "/v1/markets/{m}", None, Alice, EVERYONE),
        row(M::POST, "/v1/markets/{m}/tokens", Some(json!({"role": "observer"})), Alice, &[Operator]),
        row(M::GET,  "/v1/markets/{m}/participants", None, Alice, EVERYONE),
        row(M::POST, "/v1/markets/{m}/participants", Some(json!({"name": "Dave"})), Alice, &[Operator]),
        row(M::GET,  "/v1/markets/{m}/participants/{alice}", None, Alice, EVERYONE),
        row(M::GET,  "/v1/markets/{m}/participants/{alice}/balance", None, Alice, READERS_OF_SELF),
        row(M::GET,  "/v1/markets/{m}/participants/{alice}/mandate", None, Alice, READERS_OF_SELF),
        row(M::PUT,  "/v1/markets/{m}/participants/{alice}/mandate", Some(json!({"per_deal_cap": 100})), Alice, &[Operator, PrincipalSelf]),
        row(M::POST, "/v1/markets/{m}/participants/{alice}/fund", Some(json!({"amount": 100})), Alice, &[Operator]),
        row(M::POST, "/v1/markets/{m}/participants/{alice}/freeze", Some(json!({"frozen": false})), Alice, &[Operator]),
        row(M::POST, "/v1/markets/{m}/participants/{alice}/pause", Some(json!({"paused": false})), Alice, &[Operator, PrincipalSelf]),
        row(M::GET,  "/v1/markets/{m}/listings", None, Alice, EVERYONE),
        row(M::POST, "/v1/markets/{m}/listings", Some(json!({"side": "sell", "title": "Kettle", "category": "home", "price": 300})), Alice, &[AgentSelf, AgentOther]),
        row(M::GET,  "/v1/markets/{m}/listings/{L}", None, Alice, EVERYONE),
        row(M::POST, "/v1/markets/{m}/listings/{L}/withdraw", None, Alice, &[AgentSelf]),
        row(M::POST, "/v1/markets/{m}/listings/{L}/threads", Some(json!({"message": "Still for sale?"})), Bob, &[AgentSelf, AgentOther]),
        row(M::GET,  "/v1/markets/{m}/threads", None, Bob, EVERYONE),
        row(M::GET,  "/v1/markets/{m}/threads/{T}", None, Bob, READERS_OF_SELF),
        row(M::GET,  "/v1/markets/{m}/threads/{T}/messages", None, Bob, READERS_OF_SELF),
        row(M::POST, "/v1/markets/{m}/threads/{T}/messages", Some(json!({"body": "hello"})), Bob, &[AgentSelf]),
        row(M::POST, "/v1/markets/{m}/threads/{T}/offers", Some(json!({"price": 4100})), Bob, &[AgentSelf]),
        row(M::POST, "/v1/markets/{m}/threads/{T}/walk-away", None, Bob, &[AgentSelf]),
        row(M::POST, "/v1/markets/{m}/offers/{O}/accept", None, Alice, &[AgentSelf]),
        row(M::POST, "/v1/markets/{m}/offers/{O}/reject", None, Alice, &[AgentSelf]),
        row(M::POST, "/v1/markets/{m}/offers/{O}/withdraw", None, Bob, &[AgentSelf]),
        row(M::GET,  "/v1/markets/{m}/deals", None, Bob, EVERYONE),
        row(M::GET,  "/v1/markets/{m}/deals/{D}", None, Bob, READERS_OF_SELF),
        row(M::POST, "/v1/markets/{m}/deals/{D}/handover", Some(json!({"note": "at the desk"})), Alice, &[AgentSelf]),
        row(M::POST, "/v1/markets/{m}/deals/{S}/ship", Some(json!({"carrier": "DHL", "tracking": "JJD01"})), Alice, &[AgentSelf]),
        row(M::POST, "/v1/markets/{m}/deals/{D}/cancel", Some(json!({"reason": "sold out"})), Alice, &[AgentSelf]),
        row(M::POST, "/v1/markets/{m}/deals/{H}/confirm", None, Bob, &[AgentSelf]),
        row(M::POST, "/v1/markets/{m}/deals/{H}/dispute", Some(json!({"reason": "broken"})), Bob, &[AgentSelf]),
        row(M::POST, "/v1/markets/{m}/deals/{X}/evidence", Some(json!({"body": "a photo"})), Bob, &[Operator, AgentSelf]),
        row(M::POST, "/v1/markets/{m}/deals/{X}/resolve", Some(json!({"ruling": {"outcome": "refund"}})), Bob, &[Operator]),
        row(M::POST, "/v1/markets/{m}/deals/{A}/approval", Some(json!({"approve": true})), Bob, &[PrincipalSelf]),
        row(M::POST, "/v1/markets/{m}/deals/{F}/ratings", Some(json!({"score": 5})), Bob, &[AgentSelf, PrincipalSelf]),
        row(M::GET,  "/v1/markets/{m}/deals/{F}/ratings", None, Bob, EVERYONE),
        row(M::GET,  "/v1/markets/{m}/deals/{X}/notes", None, Bob, READERS_OF_SELF),
        row(M::GET,  "/v1/markets/{m}/participants/{alice}/reputation", None, Alice, EVERYONE),
        row(M::GET,  "/v1/markets/{m}/settlement", None, Alice, EVERYONE),
        row(M::GET,  "/v1/markets/{m}/events", None, Bob, EVERYONE),
        row(M::GET,  "/v1/markets/{m}/events/stream", None, Bob, EVERYONE),
        row(M::POST, "/v1/markets/{m}/clock/advance", Some(json!({"by_ms": 1})), Alice, &[Operator]),
        row(M::PUT,  "/v1/markets/{m}/closes_at", Some(json!({"closes_at": 4_102_444_800_000_i64})), Alice, &[Operator]),
        row(M::GET,  "/v1/markets/{m}/ledger/verify", None, Alice, &[Operator]),
        row(M::GET,  "/v1/markets/{m}/summary", None, Alice, EVERYONE),
        row(M::GET,  "/v1/markets/{m}/disputes", None, Alice, &[Operator]),
        row(M::GET,  "/v1/markets/{m}/survey", None, Alice, &[Operator, Observer]),
        row(M::GET,  "/v1/markets/{m}/participants/{alice}/survey", None, Alice, READERS_OF_SELF),
        row(M::PUT,  "/v1/markets/{m}/participants/{alice}/survey", Some(json!({"fairness": 5, "satisfaction": 6, "would_pay": 100})), Alice, &[PrincipalSelf]),
    ]
}

/// Sends a row's request as `token`; the SSE stream is only opened (its status read), not read.
async fn send(s: &Server, r: &Row, path: &str, token: &str) -> Resp {
    if path.ends_with("/stream") {
        let resp = s
            .client
            .get(s.url(path))
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        if status >= 400 {
            return (status, resp.json().await.unwrap());
        }
        return (status, Value::Null);
    }
    s.call(r.method.clone(), path, Some(token), r.body.clone(), None)
        .await
}

/// Every route, every role: allowed → 2xx, denied → 403 `forbidden` with nothing changed. Each
/// allowed mutation runs on a fresh fixture so one cell cannot disturb the next.
#[tokio::test]
async fn role_by_endpoint_table() {
    let s = Server::start().await;
    let mut failures = Vec::new();
    for r in table() {
        let mut fx = full_fixture(&s).await;
        let mutating = r.method != Method::GET;
        let before = s.snapshot(fx.m, &[&fx.alice, &fx.bob, &fx.carol]).await;
        let markets_before = s.get_ok("/v1/markets", &s.operator).await;
        for role in ROLES.iter().filter(|x| !r.allowed.contains(x)) {
            let path = fx.path(r.path);
            let token = if *role == Operator {
                s.operator.clone()
            } else {
                fx.token(*role, r.who).to_string()
            };
            let got = send(&s, &r, &path, &token).await;
            let ok = got.0 == 403
                && got.1["error"]["code"] == "forbidden"
                && got.1["error"]["message"].is_string();
            if !ok {
                failures.push(format!(
                    "{} {} as {role:?}: expected 403 forbidden, got {} {}",
                    r.method, r.path, got.0, got.1
                ));
            }
        }
        if s.snapshot(fx.m, &[&fx.alice, &fx.bob, &fx.carol]).await != before
            || s.get_ok("/v1/markets", &s.operator).await != markets_before
        {
            failures.push(format!(
                "{} {}: a denied call changed state",
                r.method, r.path
            ));
        }
        for (i, role) in r.allowed.iter().enumerate() {
            if mutating && i > 0 {
                fx = full_fixture(&s).await;
            }
            let path = fx.path(r.path);
            let token = if *role == Operator {
                s.operator.clone()
            } else {
                fx.token(*role, r.who).to_string()
            };
            let got = send(&s, &r, &path, &token).await;
            if !(200..300).contains(&got.0) {
                failures.push(format!(
                    "{} {} as {role:?}: expected 2xx, got {} {}",
                    r.method, r.path, got.0, got.1
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn an_agent_lists_only_its_own_threads_and_deals() {
    let s = Server::start().await;
    let fx = fixture(&s).await;
    let m = fx.m;
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{}/threads", fx.listing),
            &fx.carol.agent,
            json!({"message": "Would you take 3000?"}),
        )
        .await;
    assert_status(&r, 201, "Carol's thread");
    let carols = r.1["thread"]["id"].as_i64().unwrap();
    // Which threads, in id order (the list's own order is tested in thread_summary.rs).
    let threads = |token: String, query: &'static str| {
        let s = &s;
        async move {
            let mut listed = ids(&s
                .get_ok(&format!("/v1/markets/{m}/threads{query}"), &token)
                .await["items"]);
            listed.sort_unstable();
            listed
        }
    };
    let mut all = vec![fx.thread, fx.lamp_thread, carols];
    all.sort_unstable();

    assert_eq!(
        threads(fx.bob.agent.clone(), "").await,
        [fx.thread, fx.lamp_thread]
    );
    assert_eq!(
        threads(fx.bob.principal.clone(), "").await,
        [fx.thread, fx.lamp_thread]
    );
    assert_eq!(threads(fx.carol.agent.clone(), "").await, [carols]);
    // Alice owns both listings: she is a party to every thread.
    assert_eq!(threads(fx.alice.agent.clone(), "").await, all);
    assert_eq!(threads(s.operator.clone(), "").await, all);
    assert_eq!(threads(fx.observer.clone(), "").await, all);
    // Filtering by listing never widens what an agent sees.
    let on_bike = format!("?listing={}", fx.listing).leak() as &'static str;
    assert_eq!(threads(fx.bob.agent.clone(), on_bike).await, [fx.thread]);
    assert_eq!(threads(fx.carol.agent.clone(), on_bike).await, [carols]);

    let deals = |token: String| {
        let s = &s;
        async move { ids(&s.get_ok(&format!("/v1/markets/{m}/deals"), &token).await["items"]) }
    };
    assert_eq!(deals(fx.bob.agent.clone()).await, [fx.deal]);
    assert_eq!(deals(fx.alice.principal.clone()).await, [fx.deal]);
    assert_eq!(deals(fx.carol.agent.clone()).await, Vec::<i64>::new());
    assert_eq!(deals(fx.carol.principal.clone()).await, Vec::<i64>::new());
    assert_eq!(deals(s.operator.clone()).await, [fx.deal]);
}

#[tokio::test]
async fn an_agent_never_reads_another_participants_threads_balance_mandate_or_deals() {
    let s = Server::start().await;
    let fx = fixture(&s).await;
    let m = fx.m;
    let carol = &fx.carol.agent;
    for path in [
        format!("/v1/markets/{m}/threads/{}", fx.thread),
        format!("/v1/markets/{m}/threads/{}", fx.lamp_thread),
        format!("/v1/markets/{m}/participants/{}/balance", fx.bob.id),
        format!("/v1/markets/{m}/participants/{}/mandate", fx.alice.id),
        format!("/v1/markets/{m}/deals/{}", fx.deal),
    ] {
        assert_refusal(&s.get(&path, carol).await, 403, "forbidden");
    }
    // Nor through the participant profile: another's mandate is not shown.
    let alice_as_seen_by_carol = s
        .get_ok(
            &format!("/v1/markets/{m}/participants/{}", fx.alice.id),
            carol,
        )
        .await;
    assert_eq!(
        alice_as_seen_by_carol["mandate"]["per_deal_cap"],
        Value::Null
    );
    let everyone = s
        .get_ok(&format!("/v1/markets/{m}/participants"), carol)
        .await;
    assert!(
        everyone["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["mandate"]["per_deal_cap"].is_null()),
        "{everyone}"
    );
    let own = s
        .get_ok(
            &format!("/v1/markets/{m}/participants/{}", fx.alice.id),
            &fx.alice.agent,
        )
        .await;
    assert_eq!(own["mandate"]["per_deal_cap"], 7777);
    // Nor through the event log: Carol sees no event of Alice and Bob's negotiations.
    for e in s.events(m, carol).await {
        let v = &e["visibility"];
        assert!(
            v["scope"] == "public"
                || v["participants"]
                    .as_array()
                    .is_some_and(|ps| ps.contains(&json!(fx.carol.id))),
            "Carol sees {e}"
        );
        assert!(
            e["payload"]["thread_id"] != fx.thread && e["payload"]["thread"]["id"] != fx.thread,
            "Carol sees {e}"
        );
    }
}

#[tokio::test]
async fn tokens_are_bound_to_their_market() {
    let s = Server::start().await;
    let fx = fixture(&s).await;
    let other = s.market().await;
    for token in [&fx.alice.agent, &fx.alice.principal, &fx.observer] {
        for path in [
            format!("/v1/markets/{other}"),
            format!("/v1/markets/{other}/listings"),
            format!("/v1/markets/{other}/events"),
        ] {
            assert_refusal(&s.get(&path, token).await, 403, "forbidden");
        }
    }
    let r = s
        .post(
            &format!("/v1/markets/{other}/listings"),
            &fx.alice.agent,
            json!({"side": "sell", "title": "Lamp", "category": "home", "price": 100}),
        )
        .await;
    assert_refusal(&r, 403, "forbidden");
    let markets = s.get_ok("/v1/markets", &fx.alice.agent).await;
    assert_eq!(ids(&markets["items"]), [fx.m]);
}

#[tokio::test]
async fn observers_read_private_threads_only_where_the_market_allows() {
    let s = Server::start().await;
    let m = s
        .create_market(json!({"name": "Closed", "rules": {"observers_see_private": false}}))
        .await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 5000).await;
    let listing = s.sell(m, &alice, "Bike", 5000).await;
    let (thread, _) = s.bid(m, &bob, listing, 4000).await;
    let observer = s.observer(m).await;

    let r = s
        .get(&format!("/v1/markets/{m}/threads/{thread}"), &observer)
        .await;
    assert_refusal(&r, 403, "forbidden");
    let r = s.get(&format!("/v1/markets/{m}/threads"), &observer).await;
    assert_refusal(&r, 403, "forbidden");
    let seen = s.events(m, &observer).await;
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|e| e["visibility"]["scope"] == "public"),
        "only public events"
    );
    // Listings stay public.
    let l = s
        .get_ok(&format!("/v1/markets/{m}/listings/{listing}"), &observer)
        .await;
    assert_eq!(l["id"], listing);
}
