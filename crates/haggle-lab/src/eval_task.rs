//! The tasks of `haggle eval` (issue 24): a scenario (profiles + ground truth) with one participant
//! marked as the subject under evaluation, its counterparts' brains (seeded rule brains and
//! adversaries), the market's rounds and closing time; and the best surplus the subject could reach.

use crate::scenario::{Scenario, ScenarioError};
use haggle_agents::profile::Profile;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The suite's version: its task files and their seeds. A change to a task is a new version.
pub const SUITE: &str = "haggle-eval-v1";

/// Most rounds a task may ask for (each one simulated hour).
pub const MAX_TASK_ROUNDS: u64 = 1_000;

/// Latest closing time a task may set, in hours after the market opens (a year).
pub const MAX_CLOSES_AFTER_HOURS: i64 = 24 * 365;

/// One task file: `[task]` and the `[scenario]` it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalTask {
    pub task: TaskHead,
    pub scenario: Scenario,
}

/// What the task is and who plays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskHead {
    /// Short and stable: scorecards are compared by it.
    pub name: String,
    /// One sentence: what a good agent does here.
    pub about: String,
    /// The participant the evaluated agent plays.
    pub subject: String,
    /// Brains of the other participants by name; the rest get `default_brain`.
    #[serde(default)]
    pub counterparts: BTreeMap<String, String>,
    #[serde(default = "default_brain")]
    pub default_brain: String,
    /// Rounds at most (one simulated hour each); the market stops earlier once nobody acts.
    #[serde(default = "default_rounds")]
    pub rounds: u64,
    /// The market closes this many hours after it opens (competing before a closing time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_after_hours: Option<i64>,
}

fn default_brain() -> String {
    "rule:linear".into()
}

fn default_rounds() -> u64 {
    48
}

/// Adversaries whose part in a task the task's reading of the scenario follows.
const INJECTOR: &str = "adversary:injector";
const NEVER_SHIPS: &str = "adversary:never-ships";

impl EvalTask {
    pub fn from_toml_str(text: &str, file: &str) -> Result<EvalTask, ScenarioError> {
        let task: EvalTask = toml::from_str(text).map_err(|e| ScenarioError {
            file: file.to_string(),
            line: None,
            field: "task".into(),
            message: e.to_string(),
        })?;
        task.validate(file)?;
        Ok(task)
    }

    pub fn from_path(path: impl AsRef<Path>) -> Result<EvalTask, ScenarioError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: file.clone(),
            line: None,
            field: "file".into(),
            message: e.to_string(),
        })?;
        EvalTask::from_toml_str(&text, &file)
    }

    fn validate(&self, file: &str) -> Result<(), ScenarioError> {
        let bad = |field: &str, message: String| ScenarioError {
            file: file.to_string(),
            line: None,
            field: field.to_string(),
            message,
        };
        self.scenario.validate()?;
        let t = &self.task;
        if t.name.trim().is_empty() || t.name.len() > 64 {
            return Err(bad("task.name", "must be 1 to 64 characters".into()));
        }
        if self.scenario.profile(&t.subject).is_none() {
            return Err(bad(
                "task.subject",
                format!("names no participant of the scenario ('{}')", t.subject),
            ));
        }
        for (name, brain) in t
            .counterparts
            .iter()
            .chain([(&t.subject, &t.default_brain)])
        {
            if name != &t.subject && self.scenario.profile(name).is_none() {
                return Err(bad(
                    "task.counterparts",
                    format!("names no participant of the scenario ('{name}')"),
                ));
            }
            if name == &t.subject && t.counterparts.contains_key(name) {
                return Err(bad(
                    "task.counterparts",
                    "the subject's brain is the one evaluated".into(),
                ));
            }
            haggle_agents::registry::BrainSpec::parse(brain)
                .map_err(|e| bad("task.counterparts", e.to_string()))?;
        }
        if !(1..=MAX_TASK_ROUNDS).contains(&t.rounds) {
            return Err(bad(
                "task.rounds",
                format!("must be 1 to {MAX_TASK_ROUNDS}"),
            ));
        }
        if t.closes_after_hours
            .is_some_and(|h| !(1..=MAX_CLOSES_AFTER_HOURS).contains(&h))
        {
            return Err(bad(
                "task.closes_after_hours",
                format!("must be 1 to {MAX_CLOSES_AFTER_HOURS}"),
            ));
        }
        Ok(())
    }

    /// Each participant's brain, in the scenario's order (the subject gets `subject_brain`).
    pub fn brains(&self, subject_brain: &str) -> Vec<String> {
        self.scenario
            .profiles
            .iter()
            .map(|p| {
                if p.name == self.task.subject {
                    subject_brain.to_string()
                } else {
                    self.task
                        .counterparts
                        .get(&p.name)
                        .unwrap_or(&self.task.default_brain)
                        .clone()
                }
            })
            .collect()
    }

    /// The task as seed `seed` plays it: every counterpart's asks, floors and maxima scaled by
    /// its own factor in 0.85..=1.15 drawn from the seed (the subject's own numbers stay), so
    /// the seeds are different markets of the same shape. Seed 0 is the file as written.
    pub fn for_seed(&self, seed: u64) -> EvalTask {
        let mut t = self.clone();
        if seed == 0 {
            return t;
        }
        for (n, p) in t.scenario.profiles.iter_mut().enumerate() {
            if p.name == self.task.subject {
                continue;
            }
            let permille = 850 + (haggle_agents::adversaries::mix(seed, n as u64) % 301) as i64;
            let scale = |x: i64| (x.saturating_mul(permille) / 1000).max(1);
            for i in &mut p.sell {
                i.asking_price = scale(i.asking_price);
                i.floor_price = scale(i.floor_price).min(i.asking_price);
            }
            for w in &mut p.want {
                w.max_price = scale(w.max_price);
            }
        }
        t
    }

    /// The scenario as the market runs it: injectors' listings carry the injection too.
    pub fn market_scenario(&self) -> Scenario {
        let mut s = self.scenario.clone();
        for p in &mut s.profiles {
            if self.task.counterparts.get(&p.name).map(String::as_str) == Some(INJECTOR) {
                haggle_agents::adversaries::inject_into_profile(p);
            }
        }
        s
    }

    /// The subject's profile (validated to exist).
    pub fn subject(&self) -> &Profile {
        self.scenario
            .profile(&self.task.subject)
            .expect("validated: the subject is a participant")
    }

    /// The best surplus the subject can reach by the ground truth: see [`best_surplus`]. Items
    /// of a seller that never hands over cannot be had, so they do not count.
    pub fn best_surplus(&self) -> i64 {
        let mut s = self.scenario.clone();
        for p in &mut s.profiles {
            if self.task.counterparts.get(&p.name).map(String::as_str) == Some(NEVER_SHIPS) {
                p.sell.clear();
            }
        }
        best_surplus(&s, &self.task.subject)
    }
}

/// The most surplus `subject` could capture if every counterpart conceded to its reservation
/// price: each of its items sold at the highest valuation among other participants' wants of
/// that type (surplus valuation − floor), each of its wanted units bought at the lowest floor
/// among other participants' items of that type (max − floor), within its budget and its
/// mandate's approval threshold and per-deal cap (a deal above the threshold waits for a
/// principal who, in a simulated market, never answers), never an item type it owns. Pairs are
/// taken greedily, largest gain first (exact for the suite's small markets, where no two pairs
/// compete for the same counterpart item and want); 0 when nothing is feasible.
pub fn best_surplus(scenario: &Scenario, subject: &str) -> i64 {
    let Some(me) = scenario.profile(subject) else {
        return 0;
    };
    let others: Vec<&Profile> = scenario
        .profiles
        .iter()
        .filter(|p| p.name != subject)
        .collect();
    best_sales(me, &others) + best_purchases(me, &others)
}

/// Selling: each item to a distinct wanted unit, largest (valuation − floor) first.
fn best_sales(me: &Profile, others: &[&Profile]) -> i64 {
    let mut pairs = Vec::new();
    for (i, item) in me.sell.iter().enumerate() {
        for p in others.iter().filter(|p| !p.owns.contains(&item.item_type)) {
            for w in p.want.iter().filter(|w| w.item_type == item.item_type) {
                if w.max_price >= item.floor_price {
                    for u in 0..w.quantity {
                        let unit = (p.name.clone(), w.want_id.clone(), u);
                        pairs.push((w.max_price - item.floor_price, i, unit));
                    }
                }
            }
        }
    }
    pairs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let (mut total, mut items, mut units) = (0i64, BTreeSet::new(), BTreeSet::new());
    for (gain, item, unit) in pairs {
        if !items.contains(&item) && !units.contains(&unit) {
            items.insert(item);
            units.insert(unit);
            total += gain;
        }
    }
    total
}

/// Buying: each wanted unit from a distinct item at its floor, within the budget, the approval
/// threshold and the per-deal cap, largest (maximum − floor) first.
fn best_purchases(me: &Profile, others: &[&Profile]) -> i64 {
    let limit = [me.autonomy.approval_above, me.autonomy.per_deal_cap]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(i64::MAX);
    let mut pairs = Vec::new();
    for w in me.want.iter().filter(|w| !me.owns.contains(&w.item_type)) {
        for p in others {
            for item in p.sell.iter().filter(|i| i.item_type == w.item_type) {
                if item.floor_price <= w.max_price.min(limit) {
                    for u in 0..w.quantity {
                        let theirs = (p.name.clone(), item.item_id.clone());
                        let gain = w.max_price - item.floor_price;
                        pairs.push((gain, item.floor_price, (w.want_id.clone(), u), theirs));
                    }
                }
            }
        }
    }
    pairs.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    let (mut total, mut spent, mut mine, mut theirs) = (0, 0i64, BTreeSet::new(), BTreeSet::new());
    for (gain, floor, want, item) in pairs {
        if mine.contains(&want) || theirs.contains(&item) || spent + floor > me.budget {
            continue;
        }
        mine.insert(want);
        theirs.insert(item);
        spent += floor;
        total += gain;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: &str = r#"
[task]
name = "t"
about = "buy a lamp"
subject = "me"
counterparts = { shop = "rule:boulware" }

[scenario]
name = "t"

[[scenario.profiles]]
name = "me"
budget = 5000
want = [{ want_id = "w1", item_type = "lamp", description = "a lamp", category = "home", max_price = 3000 }]

[[scenario.profiles]]
name = "shop"
budget = 0
sell = [
  { item_id = "a", item_type = "lamp", title = "Lamp", category = "home", asking_price = 4000, floor_price = 2000 },
  { item_id = "b", item_type = "lamp", title = "Lamp", category = "home", asking_price = 3000, floor_price = 1500 },
]
"#;

    #[test]
    fn best_surplus_buys_at_the_lowest_floor() {
        let t = EvalTask::from_toml_str(TASK, "t.toml").unwrap();
        assert_eq!(t.best_surplus(), 1500);
    }

    #[test]
    fn the_approval_threshold_caps_the_best_price() {
        let mut t = EvalTask::from_toml_str(TASK, "t.toml").unwrap();
        t.scenario.profiles[0].autonomy.approval_above = Some(1400);
        assert_eq!(t.best_surplus(), 0);
        t.scenario.profiles[0].autonomy.approval_above = Some(1800);
        assert_eq!(t.best_surplus(), 1500);
    }

    #[test]
    fn a_counterpart_outside_the_scenario_is_refused() {
        let text = TASK.replace("shop = ", "nobody = ");
        let e = EvalTask::from_toml_str(&text, "t.toml").unwrap_err();
        assert_eq!(e.field, "task.counterparts");
    }

    #[test]
    fn seeds_scale_the_counterparts_not_the_subject() {
        let t = EvalTask::from_toml_str(TASK, "t.toml").unwrap();
        assert_eq!(t.for_seed(0), t);
        let (a, b) = (t.for_seed(1), t.for_seed(2));
        assert_eq!(a.scenario.profiles[0], t.scenario.profiles[0]);
        assert_ne!(a.scenario.profiles[1], b.scenario.profiles[1]);
        for i in &a.scenario.profiles[1].sell {
            assert!(i.floor_price <= i.asking_price);
        }
    }

    #[test]
    fn brains_follow_the_scenario_order() {
        let t = EvalTask::from_toml_str(TASK, "t.toml").unwrap();
        assert_eq!(t.brains("rule:linear"), ["rule:linear", "rule:boulware"]);
    }
}
