//! The HTTP client against a real server on a random port: every contract method a trading agent
//! uses, refusals as typed errors, and a rule-brain agent trading over HTTP.

use haggle_agents::profile::Profile;
use haggle_agents::runtime::Agent;
use haggle_api::haggle_core::{DealStatus, ListingStatus, Side};
use haggle_api::*;
use haggle_client::HttpClient;
use haggle_service::{Caller, Config, Role, Service, Store, SystemClock};
use std::sync::Arc;

struct Server {
    base: String,
    svc: Arc<Service>,
    market: i64,
    _db: haggle_testkit::TempSqlite,
}

fn operator() -> Caller {
    Caller {
        role: Role::Operator,
        market: None,
        participant: None,
        scope: "test".into(),
    }
}

async fn server() -> Server {
    let db = haggle_testkit::TempSqlite::new("client");
    let store = Store::open(&db.url()).await.unwrap();
    let svc = Service::new(store, Arc::new(SystemClock), Config::default());
    let (listener, base) = haggle_testkit::loopback().await;
    tokio::spawn(haggle_http::serve(
        listener,
        svc.clone(),
        std::future::pending(),
    ));
    let req = CreateMarket {
        name: "t".into(),
        currency: "USD".into(),
        clock: None,
        sim_start_ms: None,
        rules: None,
    };
    let m: haggle_api::haggle_core::Market = serde_json::from_str(
        &svc.create_market(&operator(), req, None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    Server {
        base,
        svc,
        market: m.id,
        _db: db,
    }
}

async fn participant(s: &Server, name: &str, budget: i64) -> HttpClient {
    let reg = RegisterParticipant {
        name: name.into(),
        budget,
        mandate: None,
    };
    let p: ParticipantCreated = serde_json::from_str(
        &s.svc
            .register_participant(&operator(), s.market, reg, None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    HttpClient::connect(&s.base, &p.agent_token).await.unwrap()
}

#[tokio::test]
async fn a_whole_deal_through_the_http_client() {
    let s = server().await;
    let alice = participant(&s, "Alice", 10_000).await;
    let bob = participant(&s, "Bob", 10_000).await;
    assert_eq!(alice.market_id(), s.market);
    let listing = NewListing {
        side: Side::Sell,
        title: "Red road bike".into(),
        description: "54 cm".into(),
        category: "bikes".into(),
        condition: "good".into(),
        price: 5_000,
        attributes: Default::default(),
        claims: Default::default(),
        true_state: None,
        fulfilment: Default::default(),
        true_transit: None,
    };
    let l = alice.create_listing(&listing).await.unwrap();
    let found = bob
        .search(&ListingQuery {
            q: Some("road bike".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        found.items.iter().map(|l| l.id).collect::<Vec<_>>(),
        vec![l.id]
    );
    assert_eq!(
        bob.listing(l.id).await.unwrap().listing.title,
        "Red road bike"
    );
    let opened = bob
        .open_thread(
            l.id,
            &OpenThread {
                message: Some("hi".into()),
                price: Some(4_000),
                expires_in_ms: None,
            },
        )
        .await
        .unwrap();
    let t = opened.thread.id;
    alice.post_message(t, "how about 45?").await.unwrap();
    let counter = alice
        .make_offer(
            t,
            &MakeOffer {
                price: 4_500,
                expires_in_ms: None,
            },
        )
        .await
        .unwrap();
    // A refusal comes back typed, with the spec's code.
    let own = alice.accept(counter.id).await.unwrap_err();
    assert_eq!((own.status, own.code()), (422, ErrorCode::NotYourOffer));
    let deal = bob.accept(counter.id).await.unwrap();
    assert_eq!(deal.price, 4_500);
    assert_eq!(bob.balance().await.unwrap().held_in_escrow, 4_500);
    assert_eq!(bob.thread(t).await.unwrap().detail.offers.len(), 2);
    assert_eq!(
        bob.threads(ThreadFilter::default(), None, 500)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    alice
        .hand_over(deal.id, Some("at reception"))
        .await
        .unwrap();
    let done = bob.confirm_receipt(deal.id).await.unwrap();
    assert_eq!(done.status, DealStatus::Completed);
    bob.rate(deal.id, 5, "smooth").await.unwrap();
    alice.rate(deal.id, 5, "prompt payment").await.unwrap();
    assert_eq!(
        alice
            .reputation(bob.participant_id())
            .await
            .unwrap()
            .ratings,
        1
    );
    assert_eq!(alice.balance().await.unwrap().available, 14_500);
    assert_eq!(bob.deals(None).await.unwrap().items.len(), 1);
    let mine = bob.events(0, 1000, true).await.unwrap();
    assert!(
        mine.events.iter().all(|e| e.kind() != "listing_posted"),
        "mine=true leaves out the public feed"
    );
    assert!(mine.events.iter().any(|e| e.kind() == "deal_created"));
    assert!(bob.mandate().await.unwrap().spend_cap.is_none());
    assert!(s.svc.store().verify(s.market).await.unwrap().ok());
}

#[tokio::test]
async fn a_non_agent_token_cannot_connect() {
    let s = server().await;
    let token = s
        .svc
        .create_token(Role::Observer, Some(s.market), None, "obs")
        .await
        .unwrap();
    let e = HttpClient::connect(&s.base, &token).await.err().unwrap();
    assert_eq!(e.code(), ErrorCode::Forbidden);
    let e = HttpClient::connect(&s.base, "hgl_nonsense")
        .await
        .err()
        .unwrap();
    assert_eq!((e.status, e.code()), (401, ErrorCode::Unauthorized));
}

fn profile(text: &str) -> Profile {
    Profile::from_toml(text).unwrap()
}

#[tokio::test]
async fn rule_agents_trade_over_http() {
    let s = server().await;
    let seller = Agent::new(
        profile(
            r#"
name = "Sam"
budget = 0
[[sell]]
item_id = "bike-1"
item_type = "road bike"
title = "Road bike"
category = "bikes"
asking_price = 6000
floor_price = 4000
"#,
        ),
        participant(&s, "Sam", 0).await,
        haggle_agents::registry::brain_from_name("rule:linear", 1).unwrap(),
    );
    let buyer = Agent::new(
        profile(
            r#"
name = "Bea"
budget = 10000
[[want]]
want_id = "w1"
item_type = "road bike"
description = "a road bike"
category = "bikes"
keywords = ["bike"]
max_price = 5500
"#,
        ),
        participant(&s, "Bea", 10_000).await,
        haggle_agents::registry::brain_from_name("rule:linear", 2).unwrap(),
    );
    let (mut seller, mut buyer) = (seller, buyer);
    for round in 0..40 {
        seller.turn(0, round).await;
        buyer.turn(0, round).await;
    }
    let deals = s.svc.store().deals(s.market, None, 0, 10).await.unwrap();
    assert_eq!(deals.len(), 1, "the two agents agree");
    let d = &deals[0];
    assert!(
        (4_000..=5_500).contains(&d.price),
        "within floor and maximum: {}",
        d.price
    );
    assert_eq!(d.status, DealStatus::Completed, "handed over and received");
    let l = s
        .svc
        .store()
        .listing(s.market, d.listing_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.status, ListingStatus::Sold);
    assert!(s.svc.store().verify(s.market).await.unwrap().ok());
}

#[tokio::test]
async fn the_market_and_the_own_participant_read_as_in_process() {
    let s = server().await;
    let alice = participant(&s, "Alice", 10_000).await;
    let market = alice.market().await.unwrap();
    assert_eq!((market.id, market.currency.as_str()), (s.market, "USD"));
    let me = alice.participant().await.unwrap();
    assert_eq!((me.id, me.name.as_str()), (alice.participant_id(), "Alice"));
    // The same reads in-process give the same answers.
    let token = s
        .svc
        .create_token(
            Role::Agent,
            Some(s.market),
            Some(alice.participant_id()),
            "second agent token",
        )
        .await
        .unwrap();
    let local = haggle_service::InProcess::from_token(s.svc.clone(), &token)
        .await
        .unwrap();
    assert_eq!(local.market().await.unwrap(), market);
    assert_eq!(local.participant().await.unwrap(), me);
}
