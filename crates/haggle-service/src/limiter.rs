//! Per-token rate limit: a token bucket refilled by the injected clock. The map is bounded: when
//! it grows past its cap, buckets idle for a minute are dropped.

use std::collections::HashMap;
use std::sync::Mutex;

const MAX_BUCKETS: usize = 100_000;

pub struct Limiter {
    per_sec: u32,
    buckets: Mutex<HashMap<String, (f64, i64)>>,
}

impl Limiter {
    pub fn new(per_sec: u32) -> Limiter {
        Limiter {
            per_sec,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn allow(&self, scope: &str, now_ms: i64) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        let burst = 2.0 * self.per_sec as f64;
        let mut b = self.buckets.lock().expect("limiter");
        if b.len() > MAX_BUCKETS {
            b.retain(|_, (_, at)| now_ms - *at < 60_000);
        }
        let (tokens, at) = b.entry(scope.to_string()).or_insert((burst, now_ms));
        *tokens =
            (*tokens + (now_ms - *at).max(0) as f64 * self.per_sec as f64 / 1000.0).min(burst);
        *at = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
