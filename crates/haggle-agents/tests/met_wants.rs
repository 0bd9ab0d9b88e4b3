//! An agent restarted after it met a want (`haggle agent run` again) does not post a wanted ad
//! for it: the runtime learns at its first turn which want each of its earlier purchases met,
//! and never carries out a wanted ad for a met want whatever the brain asks.

use haggle_agents::brain::{Action, BoxFuture, Brain, View};
use haggle_agents::profile::Profile;
use haggle_agents::runtime::Agent;
use haggle_api::haggle_core::{ListingStatus, Side};
use haggle_api::{
    CreateMarket, ListingQuery, MarketClient, NewListing, OpenThread, ParticipantCreated,
    RegisterParticipant,
};
use haggle_service::{Caller, Config, InProcess, ManualClock, Role, Service, Store};
use std::sync::{Arc, Mutex};

const START: i64 = 1_767_603_600_000;

const BUYER: &str = r#"
name = "Bob"
budget = 10000
[[want]]
want_id = "w-desk"
item_type = "desk"
description = "a desk"
category = "home"
max_price = 6000
"#;

/// A brain that asks for a wanted ad for every want of its profile, each turn, and keeps the
/// views it was shown.
struct AlwaysWanted(Arc<Mutex<Vec<View>>>);

impl Brain for AlwaysWanted {
    fn name(&self) -> String {
        "test:always-wanted".into()
    }
    fn decide<'a>(
        &'a mut self,
        profile: &'a Profile,
        view: &'a View,
    ) -> BoxFuture<'a, Vec<Action>> {
        self.0.lock().unwrap().push(view.clone());
        let acts = profile
            .want
            .iter()
            .map(|w| Action::PostWanted {
                want_id: w.want_id.clone(),
                price: 4_000,
            })
            .collect();
        Box::pin(std::future::ready(acts))
    }
}

struct Market {
    svc: Arc<Service>,
    op: Caller,
    id: i64,
    _db: haggle_testkit::TempSqlite,
}

impl Market {
    async fn new() -> Market {
        let db = haggle_testkit::TempSqlite::new("met-wants");
        let store = Store::open(&db.url()).await.unwrap();
        let svc = Service::new(store, Arc::new(ManualClock::new(START)), Config::default());
        let op = Caller {
            role: Role::Operator,
            market: None,
            participant: None,
            scope: "test".into(),
        };
        let req = CreateMarket {
            name: "desks".into(),
            currency: "USD".into(),
            clock: None,
            sim_start_ms: None,
            rules: None,
        };
        let m: haggle_api::haggle_core::Market =
            serde_json::from_str(&svc.create_market(&op, req, None).await.unwrap().body).unwrap();
        Market {
            svc,
            op,
            id: m.id,
            _db: db,
        }
    }

    async fn participant(&self, name: &str, budget: i64) -> InProcess {
        let reg = RegisterParticipant {
            name: name.into(),
            budget,
            mandate: None,
        };
        let r = self
            .svc
            .register_participant(&self.op, self.id, reg, None)
            .await
            .unwrap();
        let created: ParticipantCreated = serde_json::from_str(&r.body).unwrap();
        InProcess::from_token(self.svc.clone(), &created.agent_token)
            .await
            .unwrap()
    }
}

/// A seller's desk listing (an item of type `desk`, as a seller agent lists it).
async fn desk(seller: &InProcess) -> i64 {
    let listing = NewListing {
        side: Side::Sell,
        title: "Oak desk".into(),
        description: String::new(),
        category: "home".into(),
        condition: String::new(),
        price: 5_000,
        attributes: [("item_type".to_string(), "desk".to_string())].into(),
        claims: Default::default(),
        true_state: None,
        fulfilment: Default::default(),
        true_transit: None,
    };
    seller.create_listing(&listing).await.unwrap().id
}

async fn wanted_ads(buyer: &InProcess) -> usize {
    let q = ListingQuery {
        owner: Some(buyer.participant_id()),
        side: Some(Side::Buy),
        status: Some(ListingStatus::Active),
        ..Default::default()
    };
    buyer.search(&q).await.unwrap().items.len()
}

/// One turn of a fresh agent (a restarted `haggle agent run`) for the buyer; the view it saw.
async fn restarted_turn(buyer: InProcess) -> (View, InProcess) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let profile = Profile::from_toml(BUYER).unwrap();
    let mut agent = Agent::new(profile, buyer, Box::new(AlwaysWanted(seen.clone())));
    agent.turn(START, 0).await;
    let view = seen.lock().unwrap().pop().expect("the brain was asked");
    (view, agent.client)
}

#[tokio::test]
async fn a_want_met_before_a_restart_gets_no_wanted_ad() {
    let m = Market::new().await;
    let seller = m.participant("Alice", 0).await;
    let buyer = m.participant("Bob", 10_000).await;
    let listing = desk(&seller).await;
    // The earlier run bought the desk through the seller's listing.
    let opened = buyer
        .open_thread(
            listing,
            &OpenThread {
                message: None,
                price: Some(5_000),
                expires_in_ms: None,
            },
        )
        .await
        .unwrap();
    let offer = opened.offer.expect("an opening offer").id;
    seller.accept(offer).await.unwrap();

    let (view, buyer) = restarted_turn(buyer).await;
    assert!(view.unmet_wants.is_empty(), "{:?}", view.unmet_wants);
    assert_eq!(wanted_ads(&buyer).await, 0, "no wanted ad for a met want");
}

#[tokio::test]
async fn an_unmet_want_still_gets_its_wanted_ad() {
    let m = Market::new().await;
    let buyer = m.participant("Bob", 10_000).await;
    let (view, buyer) = restarted_turn(buyer).await;
    assert_eq!(view.unmet_wants, ["w-desk"]);
    assert_eq!(wanted_ads(&buyer).await, 1);
}
