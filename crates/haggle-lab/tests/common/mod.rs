//! A tiny hand-made market and run, with every metric computed by hand in the tests.
#![allow(dead_code)]

use haggle_agents::brain::Role;
use haggle_agents::profile::{Profile, SellItem, Want};
use haggle_api::haggle_core::model::{DealStatus, Side, ThreadStatus};
use haggle_lab::metrics::{
    DealRecord, ListingRecord, OfferRecord, ParticipantRecord, RunRecord, ThreadRecord,
};
use haggle_lab::scenario::Scenario;
use std::collections::BTreeMap;

pub fn person(name: &str, budget: i64) -> Profile {
    Profile {
        version: 1,
        name: name.into(),
        budget,
        currency: "USD".into(),
        sell: Vec::new(),
        want: Vec::new(),
        owns: Vec::new(),
        style: Default::default(),
        autonomy: Default::default(),
    }
}

pub fn item(id: &str, item_type: &str, floor: i64, ask: i64) -> SellItem {
    SellItem {
        item_id: id.into(),
        item_type: item_type.into(),
        title: format!("A {item_type}"),
        description: String::new(),
        category: "misc".into(),
        condition: "good".into(),
        asking_price: ask,
        floor_price: floor,
        attributes: BTreeMap::new(),
        claims: Default::default(),
        true_state: None,
        shipping_price: None,
        true_transit: None,
    }
}

pub fn want(id: &str, item_type: &str, max: i64) -> Want {
    Want {
        want_id: id.into(),
        item_type: item_type.into(),
        description: item_type.into(),
        category: "misc".into(),
        keywords: Vec::new(),
        max_price: max,
        priority: 1,
        quantity: 1,
    }
}

/// Ada sells a bike (floor $60, ask $80) and wants a lamp ($15); Ben sells two lamps
/// (floors $8 and $5) and wants a bike ($90); Cy wants a bike ($70).
pub fn scenario(ada: &str, ben: &str) -> Scenario {
    let mut a = person(ada, 10_000);
    a.sell.push(item("bike", "road bike", 6000, 8000));
    a.want.push(want("ada-lamp", "desk lamp", 1500));
    let mut b = person(ben, 10_000);
    b.sell.push(item("lamp", "desk lamp", 800, 1200));
    b.sell.push(item("lamp2", "desk lamp", 500, 1000));
    b.want.push(want("ben-bike", "road bike", 9000));
    let mut c = person("Cy", 10_000);
    c.want.push(want("cy-bike", "road bike", 7000));
    c.owns.push("desk lamp".into());
    let mut s = Scenario {
        name: "tiny".into(),
        seed: 1,
        currency: "USD".into(),
        budget_default: 10_000,
        reference_prices: BTreeMap::new(),
        truncate_long_text: false,
        truncated: Vec::new(),
        sessions: Vec::new(),
        profiles: vec![a, b, c],
    };
    s.reference_prices.insert("road bike".into(), 8500);
    s.reference_prices.insert("desk lamp".into(), 1200);
    s.validate().unwrap();
    s
}

fn offer(proposer: Role, price: i64, at: i64) -> OfferRecord {
    OfferRecord {
        proposer,
        price,
        at,
    }
}

/// Deal 1: the bike, Ada → Ben at $70 after three offers (Cy offered first, in another thread).
/// Deal 2: the lamp, Ben → Ada at $16 (above Ada's $15: irrational). Deal 3: lamp2 to Cy,
/// cancelled.
pub fn record(ada: &str, ben: &str) -> RunRecord {
    let (ada, ben) = (ada.to_string(), ben.to_string());
    let mut participants = BTreeMap::new();
    participants.insert(
        ada.clone(),
        ParticipantRecord {
            participant_id: 1,
            brain: "rule:boulware".into(),
        },
    );
    participants.insert(
        ben.clone(),
        ParticipantRecord {
            participant_id: 2,
            brain: "rule:conceder".into(),
        },
    );
    participants.insert(
        "Cy".into(),
        ParticipantRecord {
            participant_id: 3,
            brain: "rule:boulware".into(),
        },
    );
    let listing = |id, owner: &str, subject: &str, price, at| ListingRecord {
        id,
        owner: owner.into(),
        side: Side::Sell,
        subject: Some(subject.into()),
        price,
        posted_at: at,
    };
    let thread = |id, listing_id, buyer: &str, seller: &str, status, offers| ThreadRecord {
        id,
        listing_id,
        buyer: buyer.into(),
        seller: seller.into(),
        status,
        offers,
    };
    let mut refusals = BTreeMap::new();
    refusals.insert(
        "Cy".to_string(),
        BTreeMap::from([("insufficient_funds".to_string(), 2u64)]),
    );
    refusals.insert(
        ada.clone(),
        BTreeMap::from([("invalid_price".to_string(), 1u64)]),
    );
    RunRecord {
        participants,
        listings: vec![
            listing(10, &ada, "bike", 8000, 0),
            listing(11, &ben, "lamp", 1200, 0),
            listing(12, &ben, "lamp2", 1000, 0),
        ],
        threads: vec![
            thread(
                100,
                10,
                &ben,
                &ada,
                ThreadStatus::Agreed,
                vec![
                    offer(Role::Buyer, 6500, 1000),
                    offer(Role::Seller, 7500, 2000),
                    offer(Role::Buyer, 7000, 3000),
                ],
            ),
            thread(
                101,
                10,
                "Cy",
                &ada,
                ThreadStatus::Void,
                vec![offer(Role::Buyer, 6000, 500)],
            ),
            thread(
                102,
                11,
                &ada,
                &ben,
                ThreadStatus::Agreed,
                vec![offer(Role::Buyer, 1600, 4000)],
            ),
            thread(103, 11, "Cy", &ben, ThreadStatus::Broken, vec![]),
            thread(
                104,
                12,
                "Cy",
                &ben,
                ThreadStatus::Agreed,
                vec![offer(Role::Buyer, 900, 5000)],
            ),
        ],
        deals: vec![
            DealRecord {
                id: 1,
                listing_id: 10,
                thread_id: Some(100),
                item_id: Some("bike".into()),
                want_id: None,
                seller: ada.clone(),
                buyer: ben.clone(),
                price: 7000,
                status: DealStatus::Completed,
                created_at: 3500,
                first_offer_at: Some(1000),
                offers: 3,
            },
            DealRecord {
                id: 2,
                listing_id: 11,
                thread_id: None,
                item_id: None,
                want_id: None,
                seller: ben.clone(),
                buyer: ada.clone(),
                price: 1600,
                status: DealStatus::Agreed,
                created_at: 4100,
                first_offer_at: None,
                offers: 1,
            },
            DealRecord {
                id: 3,
                listing_id: 12,
                thread_id: Some(104),
                item_id: Some("lamp2".into()),
                want_id: None,
                seller: ben.clone(),
                buyer: "Cy".into(),
                price: 900,
                status: DealStatus::Cancelled,
                created_at: 5100,
                first_offer_at: Some(5000),
                offers: 1,
            },
        ],
        started_at: 0,
        rounds: 12,
        simulated_ms: 6000,
        refusals,
        trust: None,
        outside: BTreeMap::new(),
    }
}
