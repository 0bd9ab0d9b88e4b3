//! A provider's limits around one model client (issue 16): at most so many calls to that model
//! at once, and at most so many tokens a minute. The token limit is a bucket refilled evenly
//! over the minute; a call takes its estimate (request characters / 4 plus `max_tokens`) before
//! it starts and is corrected by the usage the reply reports.

use super::{ChatError, ChatModel, ChatRequest, ChatResponse, Exchange};
use crate::brain::BoxFuture;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::time::{Duration, Instant};

/// Optional limits of one model (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelLimits {
    pub concurrency: Option<usize>,
    pub tokens_per_minute: Option<u64>,
}

impl ModelLimits {
    pub fn is_none(&self) -> bool {
        self.concurrency.is_none() && self.tokens_per_minute.is_none()
    }
}

/// Tokens a minute, refilled continuously.
#[derive(Debug)]
struct Bucket {
    per_minute: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(per_minute: u64) -> Bucket {
        let per_minute = per_minute.max(1) as f64;
        Bucket {
            per_minute,
            state: Mutex::new((per_minute, Instant::now())),
        }
    }

    /// Takes `tokens` (at most a minute's worth) once they are there.
    async fn take(&self, tokens: f64) {
        let tokens = tokens.min(self.per_minute);
        loop {
            let wait = {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let refill = now.duration_since(s.1).as_secs_f64() * self.per_minute / 60.0;
                s.0 = (s.0 + refill).min(self.per_minute);
                s.1 = now;
                if s.0 >= tokens {
                    s.0 -= tokens;
                    return;
                }
                (tokens - s.0) * 60.0 / self.per_minute
            };
            tokio::time::sleep(Duration::from_secs_f64(wait.max(0.001))).await;
        }
    }

    /// Corrects an estimate by what the call really used (the balance may go below zero).
    fn settle(&self, estimated: f64, used: f64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = (s.0 + estimated.min(self.per_minute) - used).min(self.per_minute);
    }
}

/// A model client within its limits.
pub struct Limited {
    inner: Arc<dyn ChatModel>,
    slots: Option<Semaphore>,
    tokens: Option<Bucket>,
}

impl Limited {
    pub fn new(inner: Arc<dyn ChatModel>, limits: ModelLimits) -> Limited {
        Limited {
            inner,
            slots: limits.concurrency.map(|n| Semaphore::new(n.max(1))),
            tokens: limits.tokens_per_minute.map(Bucket::new),
        }
    }
}

/// What a call may use: its text at four characters a token, plus its output allowance.
fn estimate(req: &ChatRequest, max_output: u32) -> f64 {
    let chars = req.system.len()
        + serde_json::to_string(&req.messages).map_or(0, |s| s.len())
        + serde_json::to_string(&req.tools).map_or(0, |s| s.len());
    (chars / 4) as f64 + f64::from(max_output)
}

impl ChatModel for Limited {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    fn model(&self) -> &str {
        self.inner.model()
    }

    fn max_output_tokens(&self, req: &ChatRequest) -> u32 {
        self.inner.max_output_tokens(req)
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, (Result<ChatResponse, ChatError>, Exchange)> {
        Box::pin(async move {
            let _slot = match &self.slots {
                Some(s) => Some(s.acquire().await.expect("never closed")),
                None => None,
            };
            let estimated = estimate(req, self.inner.max_output_tokens(req));
            if let Some(b) = &self.tokens {
                b.take(estimated).await;
            }
            let (result, exchange) = self.inner.chat(req).await;
            if let Some(b) = &self.tokens {
                let used = result.as_ref().map_or(0, |r| r.usage.total());
                b.settle(estimated, used as f64);
            }
            (result, exchange)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_bucket_spreads_calls_over_the_minute() {
        // 6,000 a minute: 100 tokens a second.
        let b = Bucket::new(6_000);
        let t = Instant::now();
        b.take(6_000.0).await;
        assert!(
            t.elapsed() < Duration::from_millis(50),
            "a full minute's worth at once"
        );
        b.take(30.0).await;
        let waited = t.elapsed().as_secs_f64();
        assert!((0.29..0.6).contains(&waited), "{waited}");
        // A call that used more than its estimate is paid for by the next ones.
        b.settle(0.0, 20.0);
        let t = Instant::now();
        b.take(10.0).await;
        assert!(t.elapsed().as_secs_f64() >= 0.29, "{:?}", t.elapsed());
    }
}

#[cfg(test)]
mod concurrency_tests {
    use super::*;
    use crate::llm::{StopReason, Usage};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A model that counts its calls in flight.
    struct Counting {
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    impl ChatModel for Counting {
        fn provider(&self) -> &'static str {
            "test"
        }
        fn model(&self) -> &str {
            "counting"
        }
        fn chat<'a>(
            &'a self,
            _: &'a ChatRequest,
        ) -> BoxFuture<'a, (Result<ChatResponse, ChatError>, Exchange)> {
            Box::pin(async move {
                let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.now.fetch_sub(1, Ordering::SeqCst);
                let reply = ChatResponse {
                    text: "ok".into(),
                    tool_calls: Vec::new(),
                    stop: StopReason::EndTurn,
                    usage: Usage::default(),
                    format_error: None,
                    thinking: Vec::new(),
                };
                let exchange = Exchange {
                    provider: "test".into(),
                    model: "counting".into(),
                    url: String::new(),
                    request: serde_json::Value::Null,
                    response: None,
                    status: None,
                    attempts: 1,
                    latency_ms: 20,
                    earlier: Vec::new(),
                };
                (Ok(reply), exchange)
            })
        }
    }

    #[tokio::test]
    async fn no_more_calls_to_a_model_run_at_once_than_its_limit() {
        let inner = Arc::new(Counting {
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let limits = ModelLimits {
            concurrency: Some(3),
            tokens_per_minute: None,
        };
        let m = Arc::new(Limited::new(inner.clone(), limits));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let m = m.clone();
            calls.spawn(async move {
                let req = ChatRequest {
                    system: String::new(),
                    messages: Vec::new(),
                    tools: Vec::new(),
                    max_tokens: 10,
                    temperature: None,
                    seed: None,
                };
                m.chat(&req).await.0.is_ok()
            });
        }
        while let Some(ok) = calls.join_next().await {
            assert!(ok.unwrap());
        }
        assert_eq!(inner.peak.load(Ordering::SeqCst), 3);
    }
}
