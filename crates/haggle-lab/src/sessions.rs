//! Repeated markets (issue 20): a run's participants trade in several consecutive sessions of
//! one market. This module splits a run's record into its sessions, measures each (deals,
//! surplus, efficiency, irrational deals, disputes, the record carried over), and draws an
//! experiment's learning curve: each outcome by session, per arm and per run group.

use crate::metrics::{Metrics, RunRecord};
use crate::scenario::Scenario;
use haggle_agents::profile::Profile;
use haggle_api::haggle_core::DealStatus;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One session of a run, measured against that session's own lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionMetrics {
    /// 1-based.
    pub session: u32,
    /// The market clock when the session's first round started.
    pub started_at: i64,
    pub rounds: u64,
    /// Deals on the session's listings that stand (counted), and their value.
    pub deals: usize,
    pub gross_volume: i64,
    /// Surplus (welfare) of those deals, the most the session's lists allowed, and the share.
    pub surplus: i64,
    pub max_surplus: i64,
    pub efficiency: Option<f64>,
    /// Deals irrational for a party (below the seller's floor, above the buyer's valuation).
    pub irrational_deals: usize,
    /// Deals that went to a dispute (still disputed, or refunded in whole or in part by a
    /// ruling; a dispute released to the seller reads as completed and is not counted).
    pub disputes: usize,
    /// The market's record of the participants when the session started (reputation carried
    /// over): settled deals over all of them, revealed ratings, and how many had any deal.
    pub completed_deals_at_start: u64,
    pub ratings_at_start: u64,
    pub participants_with_record: u64,
    /// Participant → its surplus in the session (as seller plus as buyer).
    pub surplus_by_participant: BTreeMap<String, i64>,
}

/// The record carried into a session (see [`SessionMetrics::completed_deals_at_start`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    pub completed_deals: u64,
    pub ratings: u64,
    pub participants_with_record: u64,
}

/// The part of a run's record that belongs to the session posted between `from` (inclusive) and
/// `to` (exclusive; `None`: to the end): its listings, the threads on them and their deals.
/// Refusals are not split by session (they stay in the whole run's record).
pub fn session_record(record: &RunRecord, from: i64, to: Option<i64>) -> RunRecord {
    let inside = |at: i64| at >= from && to.is_none_or(|t| at < t);
    let listings: Vec<_> = record
        .listings
        .iter()
        .filter(|l| inside(l.posted_at))
        .cloned()
        .collect();
    let ids: BTreeSet<i64> = listings.iter().map(|l| l.id).collect();
    RunRecord {
        participants: record.participants.clone(),
        threads: record
            .threads
            .iter()
            .filter(|t| ids.contains(&t.listing_id))
            .cloned()
            .collect(),
        deals: record
            .deals
            .iter()
            .filter(|d| ids.contains(&d.listing_id))
            .cloned()
            .collect(),
        listings,
        started_at: from,
        rounds: 0,
        simulated_ms: to.map_or(record.started_at + record.simulated_ms - from, |t| t - from),
        refusals: BTreeMap::new(),
        trust: None,
        // Outside participants' turns are counted for the whole run, not per session.
        outside: BTreeMap::new(),
    }
}

/// The session's figures from its metrics (computed on [`session_record`] against the
/// session's scenario and efficiency).
pub fn measure(session: u32, rounds: u64, carried: Carried, m: &Metrics) -> SessionMetrics {
    let disputes = m
        .deals
        .iter()
        .filter(|d| {
            matches!(
                d.status,
                DealStatus::Disputed | DealStatus::Refunded | DealStatus::PartiallyRefunded
            )
        })
        .count();
    SessionMetrics {
        session,
        started_at: m.market.started_at,
        rounds,
        deals: m.market.deals,
        gross_volume: m.market.gross_volume,
        surplus: m.market.welfare,
        max_surplus: m.market.max_welfare,
        efficiency: m.market.allocative_efficiency,
        irrational_deals: m.market.irrational_deals,
        disputes,
        completed_deals_at_start: carried.completed_deals,
        ratings_at_start: carried.ratings,
        participants_with_record: carried.participants_with_record,
        surplus_by_participant: m
            .participants
            .iter()
            .map(|(n, p)| (n.clone(), p.seller_surplus + p.buyer_surplus))
            .collect(),
    }
}

/// The whole run's scenario: every participant with the items and wants of all its sessions
/// (ids are distinct per session) and its first session's budget. Measured against
/// [`crate::efficiency::Efficiency::sum`] of the sessions', since an item of one session never meets a want of
/// another.
pub fn whole_run_scenario(base: &Scenario, lists: &[Vec<Profile>]) -> Scenario {
    let mut profiles = base.profiles.clone();
    for later in lists.iter().skip(1) {
        for (p, q) in profiles.iter_mut().zip(later) {
            p.sell.extend(q.sell.iter().cloned());
            p.want.extend(q.want.iter().cloned());
        }
    }
    base.with_profiles(profiles)
}

/// One point of an arm's learning curve: the arm's participants' mean surplus in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmPoint {
    pub arm: String,
    pub session: u32,
    /// Participant-runs averaged.
    pub participants: usize,
    pub mean_surplus: f64,
}

/// One point of a run group's learning curve: means over its runs of a session's market figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupPoint {
    pub group: String,
    pub session: u32,
    pub runs: usize,
    pub deals: f64,
    pub surplus: f64,
    /// Mean over the runs with a known efficiency.
    pub efficiency: Option<f64>,
    pub irrational_deals: f64,
    pub disputes: f64,
    pub completed_deals_at_start: f64,
}

/// An experiment's learning curve (present when its runs had more than one session).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LearningCurve {
    pub sessions: u32,
    pub by_arm: Vec<ArmPoint>,
    pub by_group: Vec<GroupPoint>,
}

/// One run's sessions with what the curve needs of the run: its group and participants' arms.
pub struct RunSessions<'a> {
    pub group: &'a str,
    pub arms: &'a BTreeMap<String, String>,
    pub sessions: &'a [SessionMetrics],
}

/// The learning curve over the runs; `None` when no run had a second session.
pub fn learning_curve(runs: &[RunSessions<'_>]) -> Option<LearningCurve> {
    let sessions = runs
        .iter()
        .flat_map(|r| r.sessions.iter().map(|s| s.session))
        .max()?;
    if sessions < 2 {
        return None;
    }
    let mut arm_sum: BTreeMap<(String, u32), (usize, i64)> = BTreeMap::new();
    let mut group_sum: BTreeMap<(String, u32), Vec<&SessionMetrics>> = BTreeMap::new();
    for r in runs {
        for s in r.sessions {
            group_sum
                .entry((r.group.to_string(), s.session))
                .or_default()
                .push(s);
            for (name, arm) in r.arms {
                let e = arm_sum.entry((arm.clone(), s.session)).or_default();
                e.0 += 1;
                e.1 += s.surplus_by_participant.get(name).copied().unwrap_or(0);
            }
        }
    }
    let by_arm = arm_sum
        .into_iter()
        .map(|((arm, session), (n, sum))| ArmPoint {
            arm,
            session,
            participants: n,
            mean_surplus: sum as f64 / n.max(1) as f64,
        })
        .collect();
    let by_group = group_sum
        .into_iter()
        .map(|((group, session), xs)| {
            let n = xs.len() as f64;
            let mean =
                |f: &dyn Fn(&SessionMetrics) -> f64| xs.iter().map(|s| f(s)).sum::<f64>() / n;
            let known: Vec<f64> = xs.iter().filter_map(|s| s.efficiency).collect();
            GroupPoint {
                group,
                session,
                runs: xs.len(),
                deals: mean(&|s| s.deals as f64),
                surplus: mean(&|s| s.surplus as f64),
                efficiency: (!known.is_empty())
                    .then(|| known.iter().sum::<f64>() / known.len() as f64),
                irrational_deals: mean(&|s| s.irrational_deals as f64),
                disputes: mean(&|s| s.disputes as f64),
                completed_deals_at_start: mean(&|s| s.completed_deals_at_start as f64),
            }
        })
        .collect();
    Some(LearningCurve {
        sessions,
        by_arm,
        by_group,
    })
}

/// `sessions.csv`: one line per run and session.
pub fn sessions_csv(runs: &[(&str, &str, &[SessionMetrics])]) -> String {
    let mut out = String::from(
        "run,group,session,started_at,rounds,deals,gross_volume,surplus,max_surplus,efficiency,irrational_deals,disputes,completed_deals_at_start,ratings_at_start,participants_with_record\n",
    );
    for (run, group, sessions) in runs {
        for s in *sessions {
            out.push_str(&format!(
                "{run},{group},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                s.session,
                s.started_at,
                s.rounds,
                s.deals,
                s.gross_volume,
                s.surplus,
                s.max_surplus,
                s.efficiency.map_or(String::new(), |e| format!("{e:.6}")),
                s.irrational_deals,
                s.disputes,
                s.completed_deals_at_start,
                s.ratings_at_start,
                s.participants_with_record
            ));
        }
    }
    out
}

/// `learning_curve.csv`: the curve, arm lines then group lines.
pub fn learning_curve_csv(c: &LearningCurve) -> String {
    let mut out = String::from(
        "kind,name,session,units,mean_surplus,deals,efficiency,irrational_deals,disputes,completed_deals_at_start\n",
    );
    for p in &c.by_arm {
        out.push_str(&format!(
            "arm,{},{},{},{:.2},,,,,\n",
            p.arm, p.session, p.participants, p.mean_surplus
        ));
    }
    for p in &c.by_group {
        out.push_str(&format!(
            "group,{},{},{},{:.2},{:.2},{},{:.2},{:.2},{:.2}\n",
            p.group,
            p.session,
            p.runs,
            p.surplus,
            p.deals,
            p.efficiency.map_or(String::new(), |e| format!("{e:.6}")),
            p.irrational_deals,
            p.disputes,
            p.completed_deals_at_start
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(session: u32, deals: usize, surplus: i64, by: &[(&str, i64)]) -> SessionMetrics {
        SessionMetrics {
            session,
            started_at: 0,
            rounds: 1,
            deals,
            gross_volume: 0,
            surplus,
            max_surplus: 100,
            efficiency: Some(surplus as f64 / 100.0),
            irrational_deals: 0,
            disputes: 0,
            completed_deals_at_start: 0,
            ratings_at_start: 0,
            participants_with_record: 0,
            surplus_by_participant: by.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn a_session_holds_the_listings_posted_in_it_with_their_threads_and_deals() {
        use crate::metrics::{DealRecord, ListingRecord, ThreadRecord};
        use haggle_api::haggle_core::{Side, ThreadStatus};
        let listing = |id: i64, at: i64| ListingRecord {
            id,
            owner: "ada".into(),
            side: Side::Sell,
            subject: None,
            price: 100,
            posted_at: at,
        };
        let deal = |id: i64, listing_id: i64| DealRecord {
            id,
            listing_id,
            thread_id: Some(listing_id + 100),
            item_id: None,
            want_id: None,
            seller: "ada".into(),
            buyer: "bo".into(),
            price: 90,
            status: DealStatus::Completed,
            // Agreed after the next session began: still the session of its listing.
            created_at: 25,
            first_offer_at: None,
            offers: 1,
        };
        let record = RunRecord {
            participants: BTreeMap::new(),
            listings: vec![
                listing(1, 0),
                listing(2, 19),
                listing(3, 20),
                listing(4, 35),
            ],
            threads: (1..=4)
                .map(|l| ThreadRecord {
                    id: l + 100,
                    listing_id: l,
                    buyer: "bo".into(),
                    seller: "ada".into(),
                    status: ThreadStatus::Agreed,
                    offers: Vec::new(),
                })
                .collect(),
            deals: vec![deal(7, 2), deal(8, 3)],
            started_at: 0,
            rounds: 9,
            simulated_ms: 50,
            refusals: BTreeMap::new(),
            trust: None,
            outside: BTreeMap::new(),
        };
        let first = session_record(&record, 0, Some(20));
        let ids = |r: &RunRecord| r.listings.iter().map(|l| l.id).collect::<Vec<_>>();
        assert_eq!(ids(&first), [1, 2]);
        assert_eq!(first.threads.len(), 2);
        assert_eq!(first.deals.iter().map(|d| d.id).collect::<Vec<_>>(), [7]);
        assert_eq!((first.started_at, first.simulated_ms), (0, 20));
        let last = session_record(&record, 20, None);
        assert_eq!(ids(&last), [3, 4]);
        assert_eq!(last.deals.iter().map(|d| d.id).collect::<Vec<_>>(), [8]);
        assert_eq!((last.started_at, last.simulated_ms), (20, 30));
    }

    #[test]
    fn the_curve_averages_each_session_per_arm_and_per_group() {
        let arms: BTreeMap<String, String> = [("ada", "a"), ("bo", "b")]
            .iter()
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect();
        let r1 = [
            s(1, 2, 40, &[("ada", 30), ("bo", 10)]),
            s(2, 4, 80, &[("ada", 50), ("bo", 30)]),
        ];
        let r2 = [
            s(1, 4, 60, &[("ada", 10), ("bo", 50)]),
            s(2, 6, 100, &[("ada", 70), ("bo", 30)]),
        ];
        let runs = [
            RunSessions {
                group: "g",
                arms: &arms,
                sessions: &r1,
            },
            RunSessions {
                group: "g",
                arms: &arms,
                sessions: &r2,
            },
        ];
        let c = learning_curve(&runs).unwrap();
        assert_eq!(c.sessions, 2);
        let a2 = c
            .by_arm
            .iter()
            .find(|p| p.arm == "a" && p.session == 2)
            .unwrap();
        assert_eq!((a2.participants, a2.mean_surplus), (2, 60.0));
        let g1 = &c.by_group[0];
        assert_eq!((g1.session, g1.deals, g1.surplus), (1, 3.0, 50.0));
        assert_eq!(g1.efficiency, Some(0.5));
        assert!(learning_curve(&runs[..0]).is_none());
        let one = [s(1, 1, 1, &[])];
        let single = [RunSessions {
            group: "g",
            arms: &arms,
            sessions: &one,
        }];
        assert!(learning_curve(&single).is_none(), "one session: no curve");
    }
}
