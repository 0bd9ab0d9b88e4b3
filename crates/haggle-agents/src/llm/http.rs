//! The HTTP call both backends share: POST a JSON body, retry what a provider asks to be retried
//! (429, 5xx, Anthropic's 529 "overloaded", timeouts, dropped connections) with exponential
//! back-off or the server's `retry-after`, and keep every reply for the call log. A
//! `retry-after` pauses every call of the same client, not only the one that got it: with many
//! calls in flight, the others would otherwise keep hitting the limit.

use super::{Attempt, CallPolicy, ChatError, clip};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Until when a client's calls wait before sending (a provider's `retry-after`), shared by all
/// calls in flight through that client.
#[derive(Debug, Default)]
pub(crate) struct Pause(std::sync::Mutex<Option<tokio::time::Instant>>);

impl Pause {
    fn until(&self) -> Option<tokio::time::Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call waits at least `wait` from now.
    fn extend(&self, wait: Duration) {
        let t = tokio::time::Instant::now() + wait;
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none_or(|u| u < t) {
            *g = Some(t);
        }
    }

    async fn wait(&self) {
        while let Some(t) = self.until().filter(|t| *t > tokio::time::Instant::now()) {
            tokio::time::sleep_until(t).await;
        }
    }
}

pub(crate) struct Outcome {
    pub result: Result<Value, ChatError>,
    pub response: Option<Value>,
    pub status: Option<u16>,
    pub attempts: u32,
    pub latency_ms: u64,
    /// The attempts before the last (at most `max_attempts - 1`).
    pub earlier: Vec<Attempt>,
    /// The last attempt's own time.
    last_ms: u64,
}

impl Outcome {
    /// The call went on with another request (`next`, after this outcome's `sent` was refused):
    /// one outcome with every attempt of both, their times and counts added.
    pub fn followed_by(self, sent: Value, mut next: Outcome) -> Outcome {
        next.latency_ms += self.latency_ms;
        next.attempts += self.attempts;
        let mut earlier = self.into_earlier(sent);
        earlier.append(&mut next.earlier);
        next.earlier = earlier;
        next
    }

    /// This outcome's attempts, the last included, as earlier attempts of a call that then sent
    /// another request instead.
    fn into_earlier(self, request: Value) -> Vec<Attempt> {
        let mut all = self.earlier;
        all.push(Attempt {
            request: Some(request),
            status: self.status,
            response: self.response,
            error: match &self.result {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            },
            latency_ms: self.last_ms,
        });
        all
    }

    /// Keeps the attempt just made as an earlier one (the call goes on).
    fn retrying(&mut self) {
        self.earlier.push(Attempt {
            request: None,
            status: self.status,
            response: self.response.take(),
            error: self
                .result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default(),
            latency_ms: self.last_ms,
        });
    }
}

fn retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || (500..=599).contains(&status)
}

/// The server's requested wait: `retry-after-ms` (OpenAI) or `retry-after` in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_millis(ms));
    }
    get("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// A provider's error body as one line: `type: message`, whatever shape the server uses.
pub(crate) fn error_message(body: &Value) -> String {
    let err = body.get("error").unwrap_or(body);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| err.as_str())
        .or_else(|| body.get("detail").and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_else(|| clip(&body.to_string(), 300));
    match err.get("type").and_then(Value::as_str) {
        Some(t) => format!("{t}: {message}"),
        None => message,
    }
}

pub(crate) async fn post_json(
    http: &reqwest::Client,
    provider: &'static str,
    url: &str,
    headers: &[(&str, String)],
    body: &Value,
    policy: &CallPolicy,
    pause: &Pause,
) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        result: Err(ChatError::Transport {
            provider,
            message: "no attempt made".into(),
        }),
        response: None,
        status: None,
        attempts: 0,
        latency_ms: 0,
        earlier: Vec::new(),
        last_ms: 0,
    };
    let max_attempts = policy.max_attempts.max(1);
    for attempt in 1..=max_attempts {
        pause.wait().await;
        out.attempts = attempt;
        let sent_at = Instant::now();
        let mut req = http.post(url).json(body).timeout(policy.timeout);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let backoff = policy
            .base_backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(policy.max_backoff);
        let sent = send(req).await;
        out.last_ms = sent_at.elapsed().as_millis() as u64;
        let (status, wait, text) = match sent {
            Ok(x) => x,
            Err(e) => {
                out.result = Err(transport_error(&e, provider, policy));
                out.response = None;
                out.status = None;
                if attempt < max_attempts {
                    out.retrying();
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                break;
            }
        };
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        out.status = Some(status);
        out.response = Some(
            parsed
                .clone()
                .unwrap_or_else(|| json!({ "raw": clip(&text, 20_000) })),
        );
        if (200..300).contains(&status) {
            out.result = parsed.ok_or_else(|| ChatError::InvalidResponse {
                provider,
                message: format!("the body is not JSON: {}", clip(&text, 200)),
            });
            break;
        }
        out.result = Err(http_error(parsed.as_ref(), &text, provider, status));
        if retryable(status) && attempt < max_attempts {
            out.retrying();
            match wait {
                // The provider asked for a pause: every call of this client honours it.
                Some(w) => {
                    pause.extend(w.min(policy.max_backoff));
                    pause.wait().await;
                }
                None => tokio::time::sleep(backoff).await,
            }
            continue;
        }
        break;
    }
    out.latency_ms = started.elapsed().as_millis() as u64;
    // Every attempt but the last is kept as an earlier one, so the log holds them all.
    assert_eq!(out.earlier.len() + 1, out.attempts as usize);
    out
}

/// Sends one request: the status, the pause the provider asked for (`Retry-After`), the body.
async fn send(
    req: reqwest::RequestBuilder,
) -> Result<(u16, Option<Duration>, String), reqwest::Error> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let wait = retry_after(resp.headers());
    let text = resp.text().await?;
    Ok((status, wait, text))
}

/// A request that got no answer: timed out, or failed in transport.
fn transport_error(e: &reqwest::Error, provider: &'static str, policy: &CallPolicy) -> ChatError {
    if e.is_timeout() {
        ChatError::Timeout {
            provider,
            timeout_ms: policy.timeout.as_millis() as u64,
        }
    } else {
        ChatError::Transport {
            provider,
            message: e.to_string(),
        }
    }
}

/// A non-2xx answer, with the provider's error message (or the start of the body).
fn http_error(
    parsed: Option<&Value>,
    text: &str,
    provider: &'static str,
    status: u16,
) -> ChatError {
    let message = parsed
        .map(error_message)
        .unwrap_or_else(|| clip(text.trim(), 300));
    let message = if message.trim().is_empty() {
        "(no error message in the reply)".to_string()
    } else {
        message
    };
    ChatError::Http {
        provider,
        status,
        message,
    }
}

/// A client with no overall timeout (each request carries its own).
pub(crate) fn client() -> Result<reqwest::Client, String> {
    haggle_tls::client_builder()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_each_provider_become_one_line() {
        let anthropic = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        assert_eq!(error_message(&anthropic), "overloaded_error: Overloaded");
        let openai =
            json!({"error": {"message": "Rate limit reached", "type": "requests", "code": null}});
        assert_eq!(error_message(&openai), "requests: Rate limit reached");
        let fastapi = json!({"detail": "Input should be 'text' or 'json_object'"});
        assert_eq!(
            error_message(&fastapi),
            "Input should be 'text' or 'json_object'"
        );
    }

    #[test]
    fn retryable_statuses_are_rate_limits_overload_and_server_errors() {
        for s in [408, 409, 429, 500, 502, 503, 529] {
            assert!(retryable(s), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!retryable(s), "{s}");
        }
    }
}
