//! The order in which the turns of one market reach the market (issue 16). Turns of LLM brains
//! run concurrently, but a turn holds the market alone while it reads and writes, and lets go of
//! it while its model thinks. A run records which agent took the market each time (`market`
//! records in `llm_calls.jsonl`); a replay grants the market in that recorded order, so it
//! re-applies the same commands in the same order. It also counts, per round, whose action the
//! market applied first (the fairness figure of the report).

use crate::llm::log::{CallLog, Record};
use crate::llm::replay::Recording;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// One market's gate: who holds the market now, and in which order it was (or must be) held.
pub struct Sequencer {
    state: Mutex<State>,
    wake: Notify,
    /// Recording: every grant is written here.
    log: Option<Arc<CallLog>>,
    /// Replaying: divergences are reported to the recording.
    recording: Option<Arc<Recording>>,
}

#[derive(Default)]
struct State {
    busy: bool,
    /// Replay: the agents still to be granted the market, in the recorded order. `None`: first
    /// come, first served (a recorded run, or a replay that diverged).
    script: Option<VecDeque<String>>,
    /// Turns started and not finished, and the agents of them waiting for the market.
    live: usize,
    waiters: BTreeSet<String>,
    grants: u64,
    /// The agent whose action was applied first in the current round, and the count per agent.
    round_first: Option<String>,
    first_movers: BTreeMap<String, u64>,
}

/// The market, held by one turn until dropped.
pub struct MarketHold {
    seq: Arc<Sequencer>,
}

impl Drop for MarketHold {
    fn drop(&mut self) {
        self.seq.lock().busy = false;
        self.seq.wake.notify_waiters();
    }
}

impl Sequencer {
    /// Grants in arrival order and records nothing (one turn at a time, or rule brains only).
    pub fn free() -> Arc<Sequencer> {
        Sequencer::make(None, None, None)
    }

    /// Grants in arrival order and writes each grant to `log`.
    pub fn recording(log: Arc<CallLog>) -> Arc<Sequencer> {
        Sequencer::make(Some(log), None, None)
    }

    /// Grants in the order `recording` holds (a turn that cannot follow it is a divergence),
    /// and writes each grant to `log` as the run did.
    pub fn replaying(recording: Arc<Recording>, log: Arc<CallLog>) -> Arc<Sequencer> {
        let script = recording.market_order().iter().cloned().collect();
        Sequencer::make(Some(log), Some(recording), Some(script))
    }

    fn make(
        log: Option<Arc<CallLog>>,
        recording: Option<Arc<Recording>>,
        script: Option<VecDeque<String>>,
    ) -> Arc<Sequencer> {
        Arc::new(Sequencer {
            state: Mutex::new(State {
                script,
                ..State::default()
            }),
            wake: Notify::new(),
            log,
            recording,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain counters and queues: usable even after a panic elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this sequencer follows a recorded order.
    pub fn replays(&self) -> bool {
        self.recording.is_some()
    }

    fn diverged(&self, s: &mut State, message: String) {
        if let Some(r) = &self.recording {
            r.diverged(format!("market order: {message}"));
        }
        // From here on the replay cannot follow the record: first come, first served.
        s.script = None;
        self.wake.notify_waiters();
    }

    /// Waits until `agent` may hold the market, then holds it.
    pub async fn enter(self: &Arc<Self>, agent: &str) -> MarketHold {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if !s.busy {
                    let front = s.script.as_ref().map(|q| q.front().cloned());
                    let mine = match front {
                        None => true,
                        Some(Some(next)) => next == agent,
                        Some(None) => {
                            let n = s.grants;
                            self.diverged(
                                &mut s,
                                format!(
                                    "the run's agents took the market {n} times; the replay's agent {agent} asks once more"
                                ),
                            );
                            true
                        }
                    };
                    if mine {
                        if let Some(q) = &mut s.script {
                            q.pop_front();
                        }
                        s.busy = true;
                        s.grants += 1;
                        s.waiters.remove(agent);
                        if let Some(log) = &self.log {
                            log.write(&Record::Market {
                                agent: agent.to_string(),
                            });
                        }
                        return MarketHold { seq: self.clone() };
                    }
                }
                s.waiters.insert(agent.to_string());
                self.check_stall(&mut s);
            }
            notified.await;
        }
    }

    /// A replay stalls when every live turn waits and none is the one the record names next.
    fn check_stall(&self, s: &mut State) {
        let Some(q) = &s.script else { return };
        if s.busy || s.live == 0 || s.waiters.len() < s.live {
            return;
        }
        let next = q.front().cloned().unwrap_or_default();
        if !s.waiters.contains(&next) {
            let waiting: Vec<&str> = s.waiters.iter().map(String::as_str).collect();
            let message = format!(
                "the run gave the market to agent {next} next (grant {}), but the replay's turns waiting are {}",
                s.grants + 1,
                waiting.join(", ")
            );
            self.diverged(s, message);
        }
    }

    /// A turn of this market started (the scheduler calls this before polling it).
    pub fn turn_started(&self) {
        self.lock().live += 1;
    }

    /// A turn of this market ended.
    pub fn turn_ended(&self) {
        let mut s = self.lock();
        s.live = s.live.saturating_sub(1);
        self.check_stall(&mut s);
    }

    /// The market applied an action of `agent` (the first one of a round is counted).
    pub fn acted(&self, agent: &str) {
        let mut s = self.lock();
        if s.round_first.is_none() {
            s.round_first = Some(agent.to_string());
        }
    }

    /// Closes a round for the first-mover count.
    pub fn end_round(&self) {
        let mut s = self.lock();
        if let Some(b) = s.round_first.take() {
            *s.first_movers.entry(b).or_default() += 1;
        }
    }

    /// Per agent, the rounds in which its action was the first one the market applied.
    pub fn first_movers(&self) -> BTreeMap<String, u64> {
        self.lock().first_movers.clone()
    }

    /// At the end of a replay: recorded grants the replay never asked for are a divergence.
    pub fn finish(&self) {
        let mut s = self.lock();
        let left = s.script.as_ref().map_or(0, VecDeque::len);
        if left > 0 {
            let n = s.grants;
            self.diverged(
                &mut s,
                format!(
                    "the run's agents took the market {} times; the replay's {n}",
                    n as usize + left
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_replay_grants_the_market_in_the_recorded_order() {
        let rec = Arc::new(Recording::new(
            ["b", "a", "b"]
                .iter()
                .map(|a| Record::Market {
                    agent: a.to_string(),
                })
                .collect(),
        ));
        let seq = Sequencer::replaying(rec.clone(), Arc::new(CallLog::discard()));
        let order = Arc::new(Mutex::new(Vec::new()));
        let turn = |name: &'static str, times: usize| {
            let (seq, order) = (seq.clone(), order.clone());
            async move {
                for _ in 0..times {
                    let _hold = seq.enter(name).await;
                    order.lock().unwrap().push(name);
                    tokio::task::yield_now().await;
                }
                seq.turn_ended();
            }
        };
        seq.turn_started();
        seq.turn_started();
        tokio::join!(turn("a", 1), turn("b", 2));
        seq.finish();
        assert_eq!(*order.lock().unwrap(), vec!["b", "a", "b"]);
        assert!(rec.divergences().is_empty(), "{:?}", rec.divergences());
    }

    #[tokio::test]
    async fn a_replay_that_cannot_follow_the_record_reports_it_and_goes_on() {
        let rec = Arc::new(Recording::new(vec![Record::Market {
            agent: "ghost".into(),
        }]));
        let seq = Sequencer::replaying(rec.clone(), Arc::new(CallLog::discard()));
        seq.turn_started();
        drop(seq.enter("a").await);
        seq.turn_ended();
        seq.finish();
        let d = rec.divergences();
        assert!(
            d.len() == 1 && d[0].contains("agent ghost next") && d[0].contains("a"),
            "{d:?}"
        );
    }
}
