//! The stand-in model server of `haggle bench llm` (a benchmark tool, never a brain a user can
//! pick): an OpenAI-compatible `POST /v1/chat/completions` on a loopback port that answers after
//! a set latency with valid tool calls read off the agent's observation — post unlisted items,
//! search, open threads with offers, counter, accept, hand over, confirm — so the market really
//! trades. It counts calls and the calls in flight itself. Faults can be injected for tests.

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How the stand-in answers.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Every reply waits this long, plus up to `jitter` (a function of the request, so varied).
    pub latency: Duration,
    pub jitter: Duration,
    /// Every n-th call answers 500 (0: never).
    pub error_every: u64,
    /// Every n-th call answers only after `slow` (0: never).
    pub slow_every: u64,
    pub slow: Duration,
    /// Every n-th call's connection breaks mid-reply: the status line goes out, then the body
    /// fails, as a connection reset does (0: never).
    pub reset_every: u64,
}

/// What the stand-in saw.
#[derive(Debug, Default)]
pub struct Counts {
    pub calls: AtomicU64,
    pub in_flight: AtomicUsize,
    pub peak_in_flight: AtomicUsize,
    pub errors: AtomicU64,
}

pub struct StandIn {
    /// `http://127.0.0.1:PORT/v1`
    pub base: String,
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the server on a random loopback port.
pub async fn start(behaviour: Behaviour) -> std::io::Result<StandIn> {
    let counts = Arc::new(Counts::default());
    let (c, b) = (counts.clone(), Arc::new(behaviour));
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let (c, b) = (c.clone(), b.clone());
            async move { answer(&c, &b, &body).await }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/v1", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(StandIn { base, counts, task })
}

/// Leaves the in-flight count when the reply is done (or the client went away).
struct InFlight<'a>(&'a Counts);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(c: &Counts, b: &Behaviour, body: &Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    let n = c.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    c.peak_in_flight.fetch_max(now, Ordering::SeqCst);
    let _left = InFlight(c);
    let h = hash(&body.to_string());
    let jitter = if b.jitter.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_millis(h % (b.jitter.as_millis() as u64 + 1))
    };
    let slow = b.slow_every > 0 && n.is_multiple_of(b.slow_every);
    tokio::time::sleep(if slow { b.slow } else { b.latency + jitter }).await;
    if b.error_every > 0 && n.is_multiple_of(b.error_every) {
        c.errors.fetch_add(1, Ordering::SeqCst);
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {"type": "server_error", "message": "stand-in fault"}})),
        )
            .into_response();
    }
    if b.reset_every > 0 && n.is_multiple_of(b.reset_every) {
        c.errors.fetch_add(1, Ordering::SeqCst);
        let broken = futures_util::stream::once(async {
            Err::<axum::body::Bytes, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "stand-in reset",
            ))
        });
        return axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(broken))
            .expect("a valid response")
            .into_response();
    }
    (axum::http::StatusCode::OK, axum::Json(completion(body, h))).into_response()
}

/// FNV-1a: a stable, cheap hash for varied but reproducible answers.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The reply: tool calls on the turn's first step, a closing note after.
fn completion(body: &Value, h: u64) -> Value {
    let messages = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let first_step = !messages.iter().any(|m| m["role"] == "assistant");
    let obs = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let calls = if first_step {
        decide(obs, h)
    } else {
        Vec::new()
    };
    let message = if calls.is_empty() {
        json!({"role": "assistant", "content": "Nothing more this turn."})
    } else {
        let tool_calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| {
                json!({"id": format!("call_{i}"), "type": "function",
                       "function": {"name": name, "arguments": args.to_string()}})
            })
            .collect();
        json!({"role": "assistant", "content": null, "tool_calls": tool_calls})
    };
    let prompt = body.to_string().len() as u64 / 4;
    json!({
        "choices": [{"index": 0, "message": message,
                     "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": 40 * calls.len() as u64 + 10},
    })
}

/// Lines of one `## title` section of an observation.
fn section<'a>(obs: &'a str, title: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in obs.lines() {
        if let Some(t) = l.strip_prefix("## ") {
            inside = t.starts_with(title);
        } else if inside && let Some(x) = l.strip_prefix("- ") {
            out.push(x);
        }
    }
    out
}

/// The integer after `key` in `line`.
fn num_after(line: &str, key: &str) -> Option<i64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The text between `open` and `close` after `key`.
fn between<'a>(line: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let rest = &line[line.find(open)? + open.len()..];
    Some(&rest[..rest.find(close)?])
}

/// At most this many tool calls per reply.
const MAX_CALLS: usize = 4;

/// What a plain trader does with this observation; `h` varies accept-or-counter and searches.
fn decide(obs: &str, h: u64) -> Vec<(String, Value)> {
    let mut calls = Vec::new();
    for l in section(obs, "Items not listed yet") {
        let (Some(title), Some(category), Some(price), Some(attrs)) = (
            between(l, "\"", "\""),
            between(l, "(category ", ")"),
            num_after(l, "asking "),
            l.find('{')
                .and_then(|i| serde_json::from_str::<Value>(&l[i..]).ok()),
        ) else {
            continue;
        };
        calls.push((
            "post_listing".to_string(),
            json!({"title": title, "category": category, "price": price, "attributes": attrs}),
        ));
    }
    for (k, l) in section(obs, "Open threads").into_iter().enumerate() {
        let (Some(thread), Some(asking)) = (num_after(l, "thread "), num_after(l, "asking "))
        else {
            continue;
        };
        let (Some(offer), Some(price)) = (num_after(l, "offer "), num_after(l, " by them at "))
        else {
            continue;
        };
        if !l.contains(&format!("offer {offer} by them at {price} [live]")) {
            continue;
        }
        let generous = (h >> (k % 32)) & 3 != 0;
        let selling = l.contains("(you sell");
        let fair = if selling {
            price * 100 >= asking * 85
        } else {
            price <= asking
        };
        calls.push(if fair || generous {
            ("accept_offer".into(), json!({"offer_id": offer}))
        } else {
            let counter = if selling {
                (price + asking) / 2
            } else {
                price * 9 / 10
            };
            (
                "make_offer".into(),
                json!({"thread_id": thread, "price": counter.max(1)}),
            )
        });
    }
    for l in section(obs, "Deals in progress") {
        let Some(deal) = num_after(l, "deal ") else {
            continue;
        };
        if l.contains("(you sell") && l.ends_with("status agreed") {
            calls.push((
                "hand_over".into(),
                json!({"deal_id": deal, "note": "at reception"}),
            ));
        } else if l.contains("(you buy") && l.ends_with("status handed_over") {
            calls.push(("confirm_receipt".into(), json!({"deal_id": deal})));
        }
    }
    for title in ["Listings that match your wants", "Wanted ads that match"] {
        for l in section(obs, title) {
            let (Some(listing), Some(price)) = (num_after(l, "listing "), num_after(l, " at "))
            else {
                continue;
            };
            let bid = if title.starts_with("Wanted") {
                price
            } else {
                (price * 8 / 10).max(1)
            };
            calls.push((
                "make_offer".into(),
                json!({"listing_id": listing, "price": bid, "message": "Is this still available?"}),
            ));
        }
    }
    let wants = section(obs, "Wants not met yet");
    if calls.is_empty() && !wants.is_empty() && h.is_multiple_of(3) {
        let w = wants[(h as usize / 3) % wants.len()];
        if let Some(category) = between(w, "(category ", ")") {
            calls.push((
                "search_listings".into(),
                json!({"category": category, "side": "sell", "sort": "cheapest", "limit": 5}),
            ));
        }
    }
    calls.truncate(MAX_CALLS);
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_becomes_valid_varied_tool_calls() {
        let obs = "# Turn 1\n\n## Items not listed yet\n- `desk-1` \"Oak desk\" (category furniture), asking 4000: post it with post_listing and attributes {\"item_id\": \"desk-1\", \"item_type\": \"desk\"}\n\n## Open threads\n- thread 7 on listing 3 \"Lamp\" (you sell `lamp-2`, with participant 4; asking 1000; 10% of the negotiation elapsed); latest offers: offer 9 by them at 900 [live]\n\n## Listings that match your wants (open a thread with make_offer and listing_id)\n- listing 12 for your `want-1`: <untrusted from=\"participant 5\">Chair</untrusted> at 2500 by participant 5 (0 completed deals)\n";
        let calls = decide(obs, 0);
        let names: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["post_listing", "accept_offer", "make_offer"]);
        assert_eq!(calls[0].1["attributes"]["item_id"], "desk-1");
        assert_eq!(calls[0].1["price"], 4000);
        assert_eq!(calls[1].1["offer_id"], 9);
        assert_eq!(calls[2].1["listing_id"], 12);
        assert_eq!(calls[2].1["price"], 2000);
    }
}
