//! Turns of participants driven from outside a simulated market (issue 24): which of them may act
//! now, the commands each made in its open turn (recorded in order, for the run's replay), and the
//! end of a turn (`end_turn`). A simulation attaches one [`Turns`] to its service; a service
//! without one has no turns, and its participants act whenever they like.

use crate::ApiError;
use haggle_core::limits::MAX_TURN_COMMANDS;
use haggle_core::{ActedBy, ErrorCode};
use haggle_store::Command;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// The outside participants of one market and the state of their turns.
pub struct Turns {
    market: i64,
    slots: Mutex<BTreeMap<i64, Slot>>,
}

#[derive(Default)]
struct Slot {
    /// The open turn, if any.
    open: Option<u64>,
    ended: bool,
    /// With who acted: an agent, or its principal by hand (a replay applies it as either).
    commands: Vec<(Command, ActedBy)>,
    /// How many of the open turn's commands the market refused, by error code.
    refusals: BTreeMap<String, u64>,
    /// Held while one of the participant's commands runs and is recorded, so the record's order
    /// is the order the market applied them in.
    gate: Arc<tokio::sync::Mutex<()>>,
    wake: Arc<Notify>,
}

pub use haggle_api::TurnEnd;

/// One command admitted in an open turn: recorded with [`Admitted::record`] once it ran.
pub struct Admitted {
    turns: Arc<Turns>,
    participant: i64,
    _order: tokio::sync::OwnedMutexGuard<()>,
}

impl Admitted {
    /// Records a command that ran, who acted, and the code of its refusal if the market
    /// refused it.
    pub fn record(&self, cmd: Command, by: ActedBy, refused: Option<ErrorCode>) {
        let mut slots = self.turns.lock();
        if let Some(s) = slots.get_mut(&self.participant) {
            s.commands.push((cmd, by));
            if let Some(code) = refused {
                *s.refusals.entry(code.as_str().to_string()).or_default() += 1;
            }
        }
    }
}

impl Turns {
    /// `participants` are driven from outside; nobody's turn is open yet.
    pub fn new(market: i64, participants: impl IntoIterator<Item = i64>) -> Arc<Turns> {
        let slots = participants
            .into_iter()
            .map(|p| (p, Slot::default()))
            .collect();
        Arc::new(Turns {
            market,
            slots: Mutex::new(slots),
        })
    }

    /// Drives `participant` from outside too (no turn open yet).
    pub fn add(&self, participant: i64) {
        self.lock().entry(participant).or_default();
    }

    pub fn market(&self) -> i64 {
        self.market
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<i64, Slot>> {
        // Plain flags and lists: usable even after a panic elsewhere.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `participant` is driven from outside.
    pub fn drives(&self, participant: i64) -> bool {
        self.lock().contains_key(&participant)
    }

    /// The participant's open turn, if one is open and not ended yet.
    pub fn open_turn(&self, participant: i64) -> Option<u64> {
        self.lock()
            .get(&participant)
            .filter(|s| !s.ended)
            .and_then(|s| s.open)
    }

    /// Opens `participant`'s turn `turn`: its commands are admitted until the turn closes.
    pub fn open(&self, participant: i64, turn: u64) {
        if let Some(s) = self.lock().get_mut(&participant) {
            s.open = Some(turn);
            s.ended = false;
            s.commands.clear();
            s.refusals.clear();
        }
    }

    /// Waits until the participant ends its open turn or `budget` passes (real time).
    pub async fn wait(&self, participant: i64, budget: std::time::Duration) -> TurnEnd {
        let Some(wake) = self.lock().get(&participant).map(|s| s.wake.clone()) else {
            return TurnEnd::TimedOut;
        };
        let ended = async {
            loop {
                let notified = wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let ended = self.lock().get(&participant).is_some_and(|s| s.ended);
                if ended {
                    return;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(budget, ended).await {
            Ok(()) => TurnEnd::Ended,
            Err(_) => TurnEnd::TimedOut,
        }
    }

    /// Closes the participant's turn (no command of it is admitted any more) once the commands
    /// already running are recorded; returns them in the order the market applied them.
    pub async fn close(&self, participant: i64) -> Vec<(Command, ActedBy)> {
        let Some(gate) = self.lock().get(&participant).map(|s| s.gate.clone()) else {
            return Vec::new();
        };
        if let Some(s) = self.lock().get_mut(&participant) {
            s.open = None;
        }
        // A command admitted before the close holds the gate until it is recorded.
        let _wait = gate.lock().await;
        self.lock()
            .get_mut(&participant)
            .map(|s| std::mem::take(&mut s.commands))
            .unwrap_or_default()
    }

    /// The refusals of the participant's last closed turn, by error code (taken: asked again, none).
    pub fn take_refusals(&self, participant: i64) -> BTreeMap<String, u64> {
        self.lock()
            .get_mut(&participant)
            .map(|s| std::mem::take(&mut s.refusals))
            .unwrap_or_default()
    }

    /// Admits a command by `participant` (one of the market's participants): `None` when it is
    /// not driven from outside (it acts freely), a refusal when its turn is not open.
    pub async fn admit(self: &Arc<Self>, participant: i64) -> Result<Option<Admitted>, ApiError> {
        let Some(gate) = self.lock().get(&participant).map(|s| s.gate.clone()) else {
            return Ok(None);
        };
        let order = gate.lock_owned().await;
        let slots = self.lock();
        let s = &slots[&participant];
        if s.open.is_none() || s.ended {
            return Err(ApiError::new(
                ErrorCode::NotYourTurn,
                "this participant acts only during its turn: wait for the next turn_started event on its feed",
            ));
        }
        if s.commands.len() >= MAX_TURN_COMMANDS {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {MAX_TURN_COMMANDS} commands in one turn; end the turn (POST .../turns/{{turn}}/end)"
                ),
            ));
        }
        drop(slots);
        Ok(Some(Admitted {
            turns: self.clone(),
            participant,
            _order: order,
        }))
    }

    /// The participant ends its turn `turn`, which must be the open one.
    pub fn end(&self, participant: i64, turn: u64) -> Result<(), ApiError> {
        let mut slots = self.lock();
        let Some(s) = slots.get_mut(&participant) else {
            return Err(ApiError::new(
                ErrorCode::NotYourTurn,
                "this participant is not driven from outside: it has no turns to end",
            ));
        };
        match s.open {
            Some(t) if t == turn && !s.ended => {
                s.ended = true;
                s.wake.notify_waiters();
                Ok(())
            }
            Some(t) if t == turn => Err(ApiError::new(
                ErrorCode::NotYourTurn,
                format!("turn {turn} has already ended"),
            )),
            Some(t) => Err(ApiError::new(
                ErrorCode::NotYourTurn,
                format!("turn {turn} is not open: the open turn is {t}"),
            )),
            None => Err(ApiError::new(
                ErrorCode::NotYourTurn,
                format!(
                    "turn {turn} is not open: no turn of this participant is open now; wait for the next turn_started event"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_turn_ended_by_its_participant_ends_the_wait_and_an_old_one_is_refused() {
        let turns = Turns::new(1, [7]);
        turns.open(7, 3);
        assert_eq!(turns.end(7, 2).unwrap_err().code(), ErrorCode::NotYourTurn);
        turns.end(7, 3).unwrap();
        let waited = turns.wait(7, std::time::Duration::from_secs(5)).await;
        assert_eq!(waited, TurnEnd::Ended);
        turns.close(7).await;
        assert_eq!(turns.end(7, 3).unwrap_err().code(), ErrorCode::NotYourTurn);
    }

    #[tokio::test]
    async fn a_command_outside_the_turn_is_refused_and_one_inside_is_recorded() {
        let turns = Turns::new(1, [7]);
        assert!(turns.admit(8).await.unwrap().is_none());
        assert_eq!(
            turns.admit(7).await.err().unwrap().code(),
            ErrorCode::NotYourTurn
        );
        turns.open(7, 1);
        let a = turns.admit(7).await.unwrap().unwrap();
        a.record(Command::Sweep, ActedBy::Principal, None);
        drop(a);
        assert_eq!(
            turns.close(7).await,
            vec![(Command::Sweep, ActedBy::Principal)]
        );
    }

    #[tokio::test]
    async fn a_turn_nobody_ends_times_out() {
        let turns = Turns::new(1, [7]);
        turns.open(7, 1);
        let waited = turns.wait(7, std::time::Duration::from_millis(20)).await;
        assert_eq!(waited, TurnEnd::TimedOut);
    }
}
