//! Recent token checks, so that a request does not read its token row (and, for an agent, its
//! participant's suspension) from the database each time: bounded ([`CACHED_TOKENS`]), at most
//! [`TOKEN_RECHECK`] old, and forgotten at once on a revocation or a suspension through this process.

use crate::Caller;
use crate::tokens::TOKEN_RECHECK;
use haggle_core::limits::CACHED_TOKENS;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Token hash → the caller it authenticated (a token found, not revoked, its participant not
/// suspended) and when that was read. Only successes are kept: a refused token is re-read
/// every time, so a token that starts to work (created, reinstated) works at once.
#[derive(Default)]
pub(crate) struct TokenCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    checks: HashMap<String, (Caller, Instant)>,
    /// Bumped by every forgetting: a check read before it is not kept (it may predate the
    /// revocation or suspension that was just forgotten).
    generation: u64,
}

impl TokenCache {
    /// The caller of token `hash` if it was checked less than [`TOKEN_RECHECK`] ago.
    pub(crate) fn fresh(&self, hash: &str) -> Option<Caller> {
        let inner = self.inner.lock().expect("token cache");
        let (caller, at) = inner.checks.get(hash)?;
        (at.elapsed() < TOKEN_RECHECK).then(|| caller.clone())
    }

    /// Where the forgetting stands: pass it to [`TokenCache::keep`] after reading a token.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.lock().expect("token cache").generation
    }

    /// Keeps a successful check read at `read_at`, unless something was forgotten since
    /// `generation` (then the read may be older than that forgetting).
    pub(crate) fn keep(&self, caller: &Caller, generation: u64, read_at: Instant) {
        let mut inner = self.inner.lock().expect("token cache");
        if inner.generation != generation {
            return;
        }
        if inner.checks.len() >= CACHED_TOKENS && !inner.checks.contains_key(&caller.scope) {
            inner
                .checks
                .retain(|_, (_, at)| at.elapsed() < TOKEN_RECHECK);
            if inner.checks.len() >= CACHED_TOKENS {
                inner.checks.clear();
            }
        }
        inner
            .checks
            .insert(caller.scope.clone(), (caller.clone(), read_at));
    }

    /// Forgets token `hash` (revoked through this process).
    pub(crate) fn forget(&self, hash: &str) {
        let mut inner = self.inner.lock().expect("token cache");
        inner.generation += 1;
        inner.checks.remove(hash);
    }

    /// Forgets the agent tokens of participant `p` of market `m` (suspended or reinstated
    /// through this process).
    pub(crate) fn forget_participant(&self, m: i64, p: i64) {
        let mut inner = self.inner.lock().expect("token cache");
        inner.generation += 1;
        inner
            .checks
            .retain(|_, (c, _)| !(c.market == Some(m) && c.participant == Some(p)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn agent(scope: &str, participant: i64) -> Caller {
        Caller {
            role: Role::Agent,
            market: Some(1),
            participant: Some(participant),
            scope: scope.to_string(),
        }
    }

    #[test]
    fn a_check_read_before_a_forgetting_is_not_kept() {
        let cache = TokenCache::default();
        let generation = cache.generation();
        cache.forget("other");
        cache.keep(&agent("t", 1), generation, Instant::now());
        assert!(cache.fresh("t").is_none());
    }

    #[test]
    fn suspending_a_participant_forgets_its_tokens_only() {
        let cache = TokenCache::default();
        for (scope, p) in [("a", 1), ("b", 2)] {
            cache.keep(&agent(scope, p), cache.generation(), Instant::now());
        }
        cache.forget_participant(1, 1);
        assert!(cache.fresh("a").is_none());
        assert_eq!(cache.fresh("b"), Some(agent("b", 2)));
    }

    #[test]
    fn a_check_older_than_the_recheck_is_not_fresh() {
        let cache = TokenCache::default();
        let read_at = Instant::now() - TOKEN_RECHECK;
        cache.keep(&agent("t", 1), cache.generation(), read_at);
        assert!(cache.fresh("t").is_none());
    }

    #[test]
    fn the_cache_holds_at_most_its_limit() {
        let cache = TokenCache::default();
        for i in 0..=CACHED_TOKENS {
            cache.keep(
                &agent(&i.to_string(), 1),
                cache.generation(),
                Instant::now(),
            );
        }
        let held = cache.inner.lock().unwrap().checks.len();
        assert!(held <= CACHED_TOKENS, "{held} held");
    }
}
