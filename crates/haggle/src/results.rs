//! The results of one simulated run, from the market's own record (read as its operator) joined
//! with the scenario's ground truth (floors and valuations the agents never saw): every metric of
//! the experiments spec that needs only one run. Deterministic: no wall-clock values, ordered maps.

use crate::sim::SimOutput;
use haggle_api::haggle_core::{Deal, DealStatus, Offer, Side, Thread, ThreadStatus};
use haggle_lab::scenario::Scenario;
use serde::Serialize;
use std::collections::BTreeMap;

/// One deal with its ground truth.
#[derive(Debug, Clone, Serialize)]
pub struct DealRow {
    pub deal_id: i64,
    pub item_id: String,
    pub item_type: String,
    pub title: String,
    pub seller: String,
    pub seller_brain: String,
    pub buyer: String,
    pub buyer_brain: String,
    pub price: i64,
    pub ask: i64,
    /// Seller's floor r and buyer's valuation v (ground truth).
    pub floor: i64,
    pub valuation: Option<i64>,
    pub seller_surplus: i64,
    pub buyer_surplus: Option<i64>,
    pub status: DealStatus,
    /// Offers exchanged in the deal's thread, and the simulated hour the deal was made.
    pub offers: u32,
    pub hour: i64,
    pub first_offer_won: bool,
    /// Sold through the buyer's wanted ad rather than the seller's listing.
    pub via_wanted_ad: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BrainFigures {
    pub participants: u32,
    pub deals_as_seller: u32,
    pub deals_as_buyer: u32,
    pub seller_surplus: i64,
    pub buyer_surplus: i64,
    /// Mean seller share σ = (p − r)/(v − r) over its sales with v > r.
    pub mean_seller_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub scenario: String,
    pub seed: u64,
    pub participants: usize,
    pub items: usize,
    pub wants: usize,
    pub rounds: u64,
    pub simulated_hours: i64,
    pub listings: usize,
    pub deals: usize,
    pub volume: i64,
    pub median_price: Option<i64>,
    pub mean_price: Option<f64>,
    /// Market welfare (sum of v − r over deals) against the best feasible assignment.
    pub welfare: i64,
    pub max_welfare: i64,
    pub efficiency: f64,
    pub efficiency_exact: bool,
    pub irrational_deals: u32,
    pub mean_nash_distance: Option<f64>,
    pub threads: usize,
    pub agreement_rate: f64,
    /// Agreement over threads whose pair could trade (v ≥ r).
    pub agreement_rate_feasible: Option<f64>,
    pub mean_offers_to_deal: Option<f64>,
    /// Share of deals won by the first offer the listing's owner received.
    pub first_proposal_bias: Option<f64>,
    pub wants_met: f64,
    pub items_sold: f64,
    pub completed_deals: usize,
    pub cancelled_deals: usize,
    pub by_brain: BTreeMap<String, BrainFigures>,
    pub refusals: BTreeMap<String, u64>,
    pub deal_list: Vec<DealRow>,
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Rounds to 4 decimals so the JSON is stable and readable.
fn r4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

pub async fn compute(scenario: &Scenario, run: &SimOutput) -> anyhow::Result<Results> {
    let store = run.svc.store();
    let m = run.market_id;
    let names: BTreeMap<i64, &str> = run
        .members
        .iter()
        .map(|x| (x.participant_id, x.name.as_str()))
        .collect();
    let brains: BTreeMap<&str, &str> = run
        .members
        .iter()
        .map(|x| (x.name.as_str(), x.brain.as_str()))
        .collect();
    let agent_of: BTreeMap<i64, usize> = run
        .members
        .iter()
        .enumerate()
        .map(|(i, x)| (x.participant_id, i))
        .collect();
    // Ground truth: each item's floor and ask; each buyer's valuation per item type.
    let mut items = BTreeMap::new();
    let mut valuation: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for p in &scenario.profiles {
        for i in &p.sell {
            items.insert(i.item_id.as_str(), (p.name.as_str(), i));
        }
        for w in &p.want {
            let v = valuation
                .entry((p.name.as_str(), w.item_type.as_str()))
                .or_insert(0);
            *v = (*v).max(w.max_price);
        }
    }
    let deals: Vec<Deal> = store.deals(m, None, 0, 100_000).await?;
    let mut threads: Vec<Thread> = Vec::new();
    loop {
        let after = threads.last().map_or(0, |t| t.id);
        let page = store.threads(m, None, None, after, 500).await?;
        let done = page.len() < 500;
        threads.extend(page);
        if done {
            break;
        }
    }
    let listings = store
        .search_listings(
            m,
            &haggle_api::ListingQuery {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await?;
    let _ = listings;
    let mut listing_count = 0usize;
    for status in [
        haggle_api::haggle_core::ListingStatus::Active,
        haggle_api::haggle_core::ListingStatus::Sold,
        haggle_api::haggle_core::ListingStatus::Withdrawn,
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
            listing_count += page.items.len();
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    // First offer each listing's owner received, for the first-proposal bias.
    let mut first_offer_to_owner: BTreeMap<i64, i64> = BTreeMap::new();
    let mut offers_by_thread: BTreeMap<i64, Vec<Offer>> = BTreeMap::new();
    for t in &threads {
        let detail = store.thread(m, t.id).await?.expect("listed thread exists");
        for o in &detail.offers {
            if o.proposer != t.owner {
                let e = first_offer_to_owner.entry(t.listing_id).or_insert(o.id);
                *e = (*e).min(o.id);
            }
        }
        offers_by_thread.insert(t.id, detail.offers);
    }
    let mut rows = Vec::new();
    for d in &deals {
        let seller = names.get(&d.seller).copied().unwrap_or("?");
        let buyer = names.get(&d.buyer).copied().unwrap_or("?");
        // A sale through a wanted ad: the item is the one the seller's agent offered in the thread.
        let item_id = d
            .snapshot
            .attributes
            .get("item_id")
            .cloned()
            .or_else(|| {
                agent_of
                    .get(&d.seller)
                    .and_then(|&i| run.agents[i].thread_subject(d.thread_id))
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let Some((_, item)) = items.get(item_id.as_str()) else {
            continue;
        };
        let v = valuation.get(&(buyer, item.item_type.as_str())).copied();
        let offers = offers_by_thread
            .get(&d.thread_id)
            .map_or(0, |o| o.len() as u32);
        let first = d.snapshot.side == Side::Sell
            && first_offer_to_owner.get(&d.listing_id) == Some(&d.offer_id);
        rows.push(DealRow {
            deal_id: d.id,
            item_id: item_id.clone(),
            item_type: item.item_type.clone(),
            title: d.snapshot.title.clone(),
            seller: seller.to_string(),
            seller_brain: brains.get(seller).copied().unwrap_or("?").to_string(),
            buyer: buyer.to_string(),
            buyer_brain: brains.get(buyer).copied().unwrap_or("?").to_string(),
            price: d.price,
            ask: item.asking_price,
            floor: item.floor_price,
            valuation: v,
            seller_surplus: d.price - item.floor_price,
            buyer_surplus: v.map(|v| v - d.price),
            status: d.status,
            offers,
            hour: (d.created_at - crate::sim::SIM_START_MS) / haggle_api::haggle_core::HOUR_MS,
            first_offer_won: first,
            via_wanted_ad: d.snapshot.side == Side::Buy,
        });
    }
    // Deals that were undone (cancelled, declined, refunded) moved no goods.
    let live: Vec<&DealRow> = rows
        .iter()
        .filter(|r| {
            !matches!(
                r.status,
                DealStatus::Cancelled | DealStatus::Declined | DealStatus::Refunded
            )
        })
        .collect();
    let mut prices: Vec<i64> = live.iter().map(|r| r.price).collect();
    prices.sort_unstable();
    let welfare: i64 = live
        .iter()
        .filter_map(|r| r.valuation.map(|v| v - r.floor))
        .sum();
    let eff = haggle_lab::efficiency::max_welfare(scenario);
    let irrational = live
        .iter()
        .filter(|r| r.price < r.floor || r.valuation.is_none_or(|v| r.price > v))
        .count() as u32;
    let nash: Vec<f64> = live
        .iter()
        .filter_map(|r| {
            r.valuation
                .map(|v| (r.price as f64 - (r.floor + v) as f64 / 2.0).abs())
        })
        .collect();
    let mut by_brain: BTreeMap<String, BrainFigures> = BTreeMap::new();
    for x in &run.members {
        by_brain.entry(x.brain.clone()).or_default().participants += 1;
    }
    let mut shares: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in &live {
        let s = by_brain.entry(r.seller_brain.clone()).or_default();
        s.deals_as_seller += 1;
        s.seller_surplus += r.seller_surplus;
        let b = by_brain.entry(r.buyer_brain.clone()).or_default();
        b.deals_as_buyer += 1;
        b.buyer_surplus += r.buyer_surplus.unwrap_or(0);
        if let Some(v) = r.valuation.filter(|v| *v > r.floor) {
            shares
                .entry(r.seller_brain.clone())
                .or_default()
                .push((r.price - r.floor) as f64 / (v - r.floor) as f64);
        }
    }
    for (brain, s) in shares {
        if let Some(f) = by_brain.get_mut(&brain) {
            f.mean_seller_share = mean(&s).map(r4);
        }
    }
    // Feasible pairs: threads whose buyer values the seller's item at least at its floor.
    let mut feasible = (0usize, 0usize);
    for t in &threads {
        let Some(offers) = offers_by_thread.get(&t.id) else {
            continue;
        };
        let Some(o) = offers.first() else { continue };
        let (seller, buyer) = (
            names.get(&o.seller).copied().unwrap_or("?"),
            names.get(&o.buyer).copied().unwrap_or("?"),
        );
        let subject = agent_of
            .get(&o.seller)
            .and_then(|&i| run.agents[i].thread_subject(t.id))
            .map(str::to_string);
        if let Some((_, item)) = subject
            .as_deref()
            .and_then(|s| items.get(s))
            .filter(|(owner, _)| *owner == seller)
            && valuation
                .get(&(buyer, item.item_type.as_str()))
                .is_some_and(|v| *v >= item.floor_price)
        {
            feasible.0 += 1;
            if t.status == ThreadStatus::Agreed {
                feasible.1 += 1;
            }
        }
    }
    let wants: u32 = scenario
        .profiles
        .iter()
        .flat_map(|p| &p.want)
        .map(|w| w.quantity)
        .sum();
    let bought: BTreeMap<(String, String), u32> =
        live.iter().fold(BTreeMap::new(), |mut acc, r| {
            *acc.entry((r.buyer.clone(), r.item_type.clone()))
                .or_default() += 1;
            acc
        });
    let met: u32 = scenario
        .profiles
        .iter()
        .flat_map(|p| p.want.iter().map(move |w| (p, w)))
        .map(|(p, w)| {
            bought
                .get(&(p.name.clone(), w.item_type.clone()))
                .copied()
                .unwrap_or(0)
                .min(w.quantity)
        })
        .sum();
    let item_count: usize = scenario.profiles.iter().map(|p| p.sell.len()).sum();
    let mut refusals = BTreeMap::new();
    for a in &run.agents {
        for (k, v) in &a.stats.refusals {
            *refusals.entry(k.clone()).or_default() += v;
        }
    }
    let agreed = threads
        .iter()
        .filter(|t| t.status == ThreadStatus::Agreed)
        .count();
    Ok(Results {
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        participants: scenario.profiles.len(),
        items: item_count,
        wants: wants as usize,
        rounds: run.rounds,
        simulated_hours: run.sim_ms / haggle_api::haggle_core::HOUR_MS,
        listings: listing_count,
        deals: live.len(),
        volume: prices.iter().sum(),
        median_price: prices.get(prices.len() / 2).copied(),
        mean_price: mean(&prices.iter().map(|&p| p as f64).collect::<Vec<_>>()).map(r4),
        welfare,
        max_welfare: eff.max_welfare,
        efficiency: if eff.max_welfare > 0 {
            r4(welfare as f64 / eff.max_welfare as f64)
        } else {
            0.0
        },
        efficiency_exact: eff.exact,
        irrational_deals: irrational,
        mean_nash_distance: mean(&nash).map(r4),
        threads: threads.len(),
        agreement_rate: if threads.is_empty() {
            0.0
        } else {
            r4(agreed as f64 / threads.len() as f64)
        },
        agreement_rate_feasible: (feasible.0 > 0)
            .then(|| r4(feasible.1 as f64 / feasible.0 as f64)),
        mean_offers_to_deal: mean(&live.iter().map(|r| r.offers as f64).collect::<Vec<_>>())
            .map(r4),
        first_proposal_bias: {
            let on_sell: Vec<&&DealRow> = live.iter().filter(|r| !r.via_wanted_ad).collect();
            (!on_sell.is_empty()).then(|| {
                r4(on_sell.iter().filter(|r| r.first_offer_won).count() as f64
                    / on_sell.len() as f64)
            })
        },
        wants_met: if wants == 0 {
            0.0
        } else {
            r4(met as f64 / wants as f64)
        },
        items_sold: if item_count == 0 {
            0.0
        } else {
            r4(live.len() as f64 / item_count as f64)
        },
        completed_deals: rows
            .iter()
            .filter(|r| r.status == DealStatus::Completed)
            .count(),
        cancelled_deals: rows
            .iter()
            .filter(|r| r.status == DealStatus::Cancelled)
            .count(),
        by_brain,
        refusals,
        deal_list: rows,
    })
}
