//! The record of one simulated run, read back from the market itself (as its operator) plus what
//! each agent knows of its own threads (which profile item a wanted-ad sale was): the lab's
//! `RunRecord`, from which `haggle_lab::metrics` computes every one-run metric.

use crate::sim::SimOutput;
use haggle_agents::brain::Role;
use haggle_api::haggle_core::{ListingStatus, Side, Thread};
use haggle_lab::metrics::{
    DealRecord, ListingRecord, OfferRecord, ParticipantRecord, RunRecord, ThreadRecord,
};
use haggle_service::Store;
use std::collections::BTreeMap;

/// The market's participants' names by id (a participant outside the run is named by its id).
struct Names(BTreeMap<i64, String>);

impl Names {
    fn of(&self, id: i64) -> String {
        self.0
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("participant {id}"))
    }
}

/// Each thread's first offer: when it was made, and how many offers the thread has.
type FirstOffers = BTreeMap<i64, (i64, u32)>;

pub async fn record(run: &SimOutput) -> anyhow::Result<RunRecord> {
    let store = run.svc.store();
    let m = run.market_id;
    let names = Names(
        run.members
            .iter()
            .map(|x| (x.participant_id, x.name.clone()))
            .collect(),
    );
    let participants = run
        .members
        .iter()
        .map(|x| {
            (
                x.name.clone(),
                ParticipantRecord {
                    participant_id: x.participant_id,
                    brain: x.brain.clone(),
                },
            )
        })
        .collect();
    let listings = listings(store, m, &names).await?;
    let (threads, first_offer) = threads(store, m, &names).await?;
    let deals = deals(run, store, &names, &first_offer).await?;
    let refusals = run
        .members
        .iter()
        .zip(&run.agents)
        .map(|(x, a)| (x.name.clone(), a.stats.refusals.clone()))
        .collect();
    Ok(RunRecord {
        participants,
        listings,
        threads,
        deals,
        started_at: crate::sim::SIM_START_MS,
        rounds: run.rounds,
        simulated_ms: run.sim_ms,
        refusals,
        trust: trust(run, store).await?,
        outside: run.outside.clone(),
    })
}

/// Every listing of the market, in every status, by id.
async fn listings(store: &Store, m: i64, names: &Names) -> anyhow::Result<Vec<ListingRecord>> {
    let mut listings = Vec::new();
    for status in [
        ListingStatus::Active,
        ListingStatus::Sold,
        ListingStatus::Withdrawn,
        ListingStatus::Expired,
    ] {
        let mut cursor = None;
        loop {
            let q = haggle_api::ListingQuery {
                status: Some(status),
                limit: Some(500),
                cursor: cursor.clone(),
                ..Default::default()
            };
            let page = store.search_listings(m, &q).await?;
            for l in &page.items {
                let key = if l.side == Side::Sell {
                    "item_id"
                } else {
                    "want_id"
                };
                listings.push(ListingRecord {
                    id: l.id,
                    owner: names.of(l.owner),
                    side: l.side,
                    subject: l.attributes.get(key).cloned(),
                    price: l.price,
                    posted_at: l.created_at,
                });
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    listings.sort_by_key(|l| l.id);
    Ok(listings)
}

/// Every thread of the market with its offers, and each thread's [`FirstOffers`] entry.
async fn threads(
    store: &Store,
    m: i64,
    names: &Names,
) -> anyhow::Result<(Vec<ThreadRecord>, FirstOffers)> {
    let mut all_threads: Vec<Thread> = Vec::new();
    loop {
        let after = all_threads.last().map_or(0, |t| t.id);
        let page = store.threads(m, None, None, after, 500).await?;
        let done = page.len() < 500;
        all_threads.extend(page);
        if done {
            break;
        }
    }
    let mut threads = Vec::new();
    let mut first_offer = FirstOffers::new();
    for t in &all_threads {
        let detail = store
            .thread(m, t.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("thread {} vanished", t.id))?;
        let (buyer, seller) = match detail.offers.first() {
            Some(o) => (o.buyer, o.seller),
            None => {
                let l = store
                    .listing(m, t.listing_id)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("listing {} vanished", t.listing_id))?;
                (l.buyer_with(t.counterparty), l.seller_with(t.counterparty))
            }
        };
        let offers: Vec<OfferRecord> = detail
            .offers
            .iter()
            .map(|o| OfferRecord {
                proposer: if o.proposer == o.buyer {
                    Role::Buyer
                } else {
                    Role::Seller
                },
                price: o.price,
                at: o.created_at,
            })
            .collect();
        if let Some(o) = detail.offers.first() {
            first_offer.insert(t.id, (o.created_at, offers.len() as u32));
        }
        threads.push(ThreadRecord {
            id: t.id,
            listing_id: t.listing_id,
            buyer: names.of(buyer),
            seller: names.of(seller),
            status: t.status,
            offers,
        });
    }
    Ok((threads, first_offer))
}

/// Every deal of the market, with the profile items it sold (from the agents when the listing
/// names none) and its thread's first offer.
async fn deals(
    run: &SimOutput,
    store: &Store,
    names: &Names,
    first_offer: &FirstOffers,
) -> anyhow::Result<Vec<DealRecord>> {
    let agent_of: BTreeMap<i64, usize> = run
        .members
        .iter()
        .enumerate()
        .map(|(i, x)| (x.participant_id, i))
        .collect();
    let mut deals = Vec::new();
    for d in store.deals(run.market_id, None, 0, 100_000).await? {
        let subject = |p: i64| {
            agent_of
                .get(&p)
                .and_then(|&i| run.agents[i].thread_subject(d.thread_id))
                .map(str::to_string)
        };
        // A sale through a wanted ad names no item: the seller's agent knows which it offered.
        let item_id = d
            .snapshot
            .attributes
            .get("item_id")
            .cloned()
            .or_else(|| subject(d.seller));
        let want_id = d
            .snapshot
            .attributes
            .get("want_id")
            .cloned()
            .or_else(|| subject(d.buyer));
        let (first_offer_at, offers) = first_offer
            .get(&d.thread_id)
            .map_or((None, 0), |(at, n)| (Some(*at), *n));
        deals.push(DealRecord {
            id: d.id,
            listing_id: d.listing_id,
            thread_id: Some(d.thread_id),
            item_id,
            want_id,
            seller: names.of(d.seller),
            buyer: names.of(d.buyer),
            price: d.price,
            status: d.status,
            created_at: d.created_at,
            first_offer_at,
            offers,
        });
    }
    Ok(deals)
}

/// The trust measures, in a run with a misdescriber (each deal beside its listing's true state).
async fn trust(
    run: &SimOutput,
    store: &Store,
) -> anyhow::Result<Option<haggle_lab::trust::TrustMeasures>> {
    if !run
        .members
        .iter()
        .any(|x| x.brain == crate::sim::MISDESCRIBER)
    {
        return Ok(None);
    }
    let m = run.market_id;
    let mut with_truth = Vec::new();
    for d in store.deals(m, None, 0, 100_000).await? {
        let truth = store
            .listing(m, d.listing_id)
            .await?
            .and_then(|l| l.true_state);
        with_truth.push((d, truth));
    }
    Ok(Some(haggle_lab::trust::measure(
        &with_truth,
        run.trust_timeline.clone(),
    )))
}
