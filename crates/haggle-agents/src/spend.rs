//! The shared limits on language-model calls of an experiment (spec: agents.md, Running agents;
//! issue 8, cost guard): how many calls are in flight at once over every market, and a hard
//! maximum on what they cost in all. An LLM brain asks for a [`CallPermit`] before each model
//! call, giving the most that call can cost (its input tokens plus `max_tokens` of output at the
//! model's price), and settles the permit with the actual cost from the reply's usage.
//!
//! The guard admits a call only if `spent + in flight + this call's worst case ≤ maximum`, so the
//! maximum holds even with many calls in flight. A permit dropped without being settled (the call
//! failed in an unknown state) is charged its worst case. Amounts are integer micro-dollars (µUSD).

use std::sync::Mutex;
use tokio::sync::{Semaphore, SemaphorePermit};

/// A call the guard will not admit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpendError {
    #[error(
        "the experiment's LLM spend limit is reached: {spent} µUSD spent + {in_flight} in flight + up to {call} for this call would exceed the maximum of {max} µUSD"
    )]
    LimitReached {
        spent: i64,
        in_flight: i64,
        call: i64,
        max: i64,
    },
    #[error("a call's worst-case cost must not be negative (got {0} µUSD)")]
    NegativeCost(i64),
}

#[derive(Debug, Default)]
struct Ledger {
    spent: i64,
    in_flight: i64,
    calls: u64,
    refused: u64,
}

/// Concurrency slots and the spend counter, shared by every LLM brain of an experiment.
#[derive(Debug)]
pub struct SpendGuard {
    slots: Semaphore,
    max_micro_usd: Option<i64>,
    ledger: Mutex<Ledger>,
}

/// Admission of one model call: holds a concurrency slot and the call's worst-case cost.
#[derive(Debug)]
pub struct CallPermit<'a> {
    guard: &'a SpendGuard,
    reserved: i64,
    settled: bool,
    _slot: SemaphorePermit<'a>,
}

impl SpendGuard {
    /// `concurrency` calls at once (at least one); no maximum when `max_micro_usd` is `None`.
    /// `already_spent` carries the spend of earlier sessions of a resumed experiment.
    pub fn new(concurrency: usize, max_micro_usd: Option<i64>, already_spent: i64) -> SpendGuard {
        SpendGuard {
            slots: Semaphore::new(concurrency.max(1)),
            max_micro_usd,
            ledger: Mutex::new(Ledger {
                spent: already_spent,
                ..Ledger::default()
            }),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A panic while holding the lock leaves plain integers behind: still usable.
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self, worst_case: i64) -> Result<(), SpendError> {
        let mut l = self.ledger();
        if let Some(max) = self.max_micro_usd
            && l.spent
                .saturating_add(l.in_flight)
                .saturating_add(worst_case)
                > max
        {
            l.refused += 1;
            return Err(SpendError::LimitReached {
                spent: l.spent,
                in_flight: l.in_flight,
                call: worst_case,
                max,
            });
        }
        l.in_flight += worst_case;
        l.calls += 1;
        Ok(())
    }

    /// Waits for a free slot, then admits the call if its worst case fits under the maximum.
    pub async fn begin(&self, worst_case_micro_usd: i64) -> Result<CallPermit<'_>, SpendError> {
        if worst_case_micro_usd < 0 {
            return Err(SpendError::NegativeCost(worst_case_micro_usd));
        }
        // The semaphore is never closed, so acquiring only waits.
        let slot = self
            .slots
            .acquire()
            .await
            .expect("the spend guard's semaphore is never closed");
        self.admit(worst_case_micro_usd)?;
        Ok(CallPermit {
            guard: self,
            reserved: worst_case_micro_usd,
            settled: false,
            _slot: slot,
        })
    }

    /// µUSD spent by settled (and abandoned) calls.
    pub fn spent(&self) -> i64 {
        self.ledger().spent
    }

    /// Calls admitted.
    pub fn calls(&self) -> u64 {
        self.ledger().calls
    }

    /// Calls refused for the maximum: once positive, the experiment should stop starting runs.
    pub fn refused(&self) -> u64 {
        self.ledger().refused
    }

    pub fn max_micro_usd(&self) -> Option<i64> {
        self.max_micro_usd
    }
}

impl CallPermit<'_> {
    /// Records the call's actual cost (µUSD; an unknown price is 0 here and counted by the
    /// caller). A cost above the worst case given is still charged in full.
    pub fn settle(mut self, actual_micro_usd: i64) {
        self.release(actual_micro_usd.max(0));
    }

    fn release(&mut self, charge: i64) {
        let mut l = self.guard.ledger();
        l.in_flight -= self.reserved;
        l.spent = l.spent.saturating_add(charge);
        self.settled = true;
    }
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let reserved = self.reserved;
            self.release(reserved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn calls_are_refused_once_the_maximum_could_be_exceeded() {
        let g = SpendGuard::new(4, Some(1_000), 0);
        let p = g.begin(600).await.unwrap();
        // 600 in flight: another worst case of 500 could exceed 1000.
        assert!(matches!(
            g.begin(500).await,
            Err(SpendError::LimitReached {
                in_flight: 600,
                call: 500,
                max: 1000,
                ..
            })
        ));
        p.settle(250);
        assert_eq!(g.spent(), 250);
        // Now 250 spent: 500 fits, 800 does not.
        g.begin(500).await.unwrap().settle(500);
        assert!(g.begin(251).await.is_err());
        assert_eq!((g.calls(), g.refused(), g.spent()), (2, 2, 750));
    }

    #[tokio::test]
    async fn an_unsettled_permit_is_charged_its_worst_case() {
        let g = SpendGuard::new(1, Some(100), 0);
        drop(g.begin(40).await.unwrap());
        assert_eq!(g.spent(), 40);
        // Earlier sessions' spend counts too.
        let g = SpendGuard::new(1, Some(100), 90);
        assert!(g.begin(11).await.is_err());
        assert!(g.begin(10).await.is_ok());
    }

    #[tokio::test]
    async fn no_more_calls_than_the_limit_run_at_once() {
        let g = Arc::new(SpendGuard::new(2, None, 0));
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (g, now, peak) = (g.clone(), now.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let p = g.begin(1).await.unwrap();
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                p.settle(1);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!((g.calls(), g.spent()), (8, 8));
        assert!(g.begin(-1).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_maximum_holds_with_many_calls_in_flight() {
        // 200 calls, 64 at once, each reserving up to 150 and spending less: never past 5,000.
        let max = 5_000;
        let g = Arc::new(SpendGuard::new(64, Some(max), 0));
        let mut tasks = Vec::new();
        for i in 0..200i64 {
            let g = g.clone();
            tasks.push(tokio::spawn(async move {
                let worst = 50 + (i * 37) % 100;
                let Ok(p) = g.begin(worst).await else {
                    return false;
                };
                {
                    let l = g.ledger();
                    assert!(l.spent + l.in_flight <= max, "{l:?}");
                }
                tokio::time::sleep(std::time::Duration::from_millis((i % 7) as u64)).await;
                p.settle(worst * 2 / 3);
                true
            }));
        }
        let mut admitted = 0;
        for t in tasks {
            admitted += u64::from(t.await.unwrap());
        }
        assert!(g.spent() <= max, "{}", g.spent());
        assert!(g.refused() > 0 && admitted == g.calls());
        // Refusals come while others' worst cases are reserved, so some of the maximum is left.
        assert!(
            g.spent() > max / 2,
            "most of the budget was used: {}",
            g.spent()
        );
    }
}
