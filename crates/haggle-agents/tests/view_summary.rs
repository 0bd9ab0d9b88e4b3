//! The view a brain gets each turn carries each thread's summary (whose move, the live offer,
//! offers made and left, time left) as the market computes it at that turn, not as old as the
//! runtime's cached read of the thread.

use haggle_agents::brain::{Action, BoxFuture, Brain, View};
use haggle_agents::profile::Profile;
use haggle_agents::runtime::Agent;
use haggle_api::haggle_core::{MarketRules, Side};
use haggle_api::{
    CreateMarket, MarketClient, NewListing, OpenThread, ParticipantCreated, RegisterParticipant,
};
use haggle_service::{Caller, Config, InProcess, ManualClock, Role, Service, Store};
use std::sync::{Arc, Mutex};

const START: i64 = 1_767_603_600_000;

/// A brain that does nothing and keeps every view it was shown.
struct Recorder(Arc<Mutex<Vec<View>>>);

impl Brain for Recorder {
    fn name(&self) -> String {
        "test:recorder".into()
    }
    fn decide<'a>(&'a mut self, _: &'a Profile, view: &'a View) -> BoxFuture<'a, Vec<Action>> {
        self.0.lock().unwrap().push(view.clone());
        Box::pin(std::future::ready(Vec::new()))
    }
}

async fn participant(svc: &Arc<Service>, op: &Caller, market: i64, name: &str) -> InProcess {
    let reg = RegisterParticipant {
        name: name.into(),
        budget: 10_000,
        mandate: None,
    };
    let created: ParticipantCreated = serde_json::from_str(
        &svc.register_participant(op, market, reg, None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    InProcess::from_token(svc.clone(), &created.agent_token)
        .await
        .unwrap()
}

#[tokio::test]
async fn each_thread_in_the_view_carries_its_summary_as_of_the_turn() {
    let db = haggle_testkit::TempSqlite::new("view-summary");
    let store = Store::open(&db.url()).await.unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let svc = Service::new(store, clock.clone(), Config::default());
    let op = Caller {
        role: Role::Operator,
        market: None,
        participant: None,
        scope: "test".into(),
    };
    let req = CreateMarket {
        name: "glance".into(),
        currency: "USD".into(),
        clock: None,
        sim_start_ms: None,
        rules: Some(MarketRules {
            max_offers_per_thread: Some(4),
            thread_time_limit_ms: Some(60_000),
            ..MarketRules::default()
        }),
    };
    let m: haggle_api::haggle_core::Market =
        serde_json::from_str(&svc.create_market(&op, req, None).await.unwrap().body).unwrap();
    let alice = participant(&svc, &op, m.id, "Alice").await;
    let bob = participant(&svc, &op, m.id, "Bob").await;
    let lamp = alice
        .create_listing(&NewListing {
            side: Side::Sell,
            title: "Brass lamp".into(),
            description: String::new(),
            category: "home".into(),
            condition: String::new(),
            price: 5_000,
            attributes: Default::default(),
            claims: Default::default(),
            true_state: None,
            fulfilment: Default::default(),
            true_transit: None,
        })
        .await
        .unwrap();
    let opened = bob
        .open_thread(
            lamp.id,
            &OpenThread {
                message: None,
                price: Some(4_000),
                expires_in_ms: None,
            },
        )
        .await
        .unwrap();
    let bob_id = opened.thread.counterparty;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let profile = Profile::from_toml("name = \"Alice\"\nbudget = 0\n").unwrap();
    let mut agent = Agent::new(profile, alice, Box::new(Recorder(seen.clone())));
    agent.turn(START, 0).await;
    clock.advance(15_000);
    // Nothing happened in the thread: the runtime keeps its cached read, yet the summary moves
    // (woken, as a turn without news is otherwise skipped).
    agent.wake();
    agent.turn(START + 15_000, 1).await;

    let views = seen.lock().unwrap();
    assert_eq!(views.len(), 2);
    let [first, later] = [&views[0], &views[1]].map(|v| {
        assert_eq!(v.threads.len(), 1);
        v.threads[0].thread.summary.clone()
    });
    assert_eq!(first.your_move, Some(true), "Bob's offer waits for Alice");
    let live = first.live_offer.expect("Bob's offer is live");
    assert_eq!((live.price, live.by), (4_000, bob_id));
    assert_eq!((first.offers_made, first.offers_left), (1, Some(3)));
    assert_eq!(first.time_left_ms, Some(60_000));
    assert_eq!(later.time_left_ms, Some(45_000));
    assert_eq!(later.live_offer, first.live_offer);
}
