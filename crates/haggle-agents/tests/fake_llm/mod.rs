//! A fake LLM provider for tests: a real HTTP server on 127.0.0.1:0 that records every request
//! (headers and JSON body) and answers with scripted replies in order (status, headers, body,
//! delay), or with a function of the request.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn json(v: Value) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: v.to_string(),
            delay: Duration::ZERO,
        }
    }
    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub fn delayed(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

#[derive(Clone, Debug)]
pub struct Captured {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

type Responder = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Clone, Default)]
struct State {
    script: Arc<Mutex<VecDeque<Reply>>>,
    responder: Arc<Mutex<Option<Responder>>>,
    captured: Arc<Mutex<Vec<Captured>>>,
}

pub struct FakeLlm {
    pub base: String,
    state: State,
}

impl FakeLlm {
    /// Starts the server (any path; POST only).
    pub async fn start() -> FakeLlm {
        let state = State::default();
        let s = state.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move { handle(s, uri.path().to_string(), headers, body).await }
            },
        );
        let (base, _) = haggle_testkit::serve_router(app).await;
        FakeLlm { base, state }
    }

    /// Queues replies, answered in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Answers every request (after the script runs out) with a function of its body.
    pub fn respond_with(&self, f: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        *self.state.responder.lock().unwrap() = Some(Arc::new(f));
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.state.captured.lock().unwrap().clone()
    }
}

async fn handle(s: State, path: String, headers: HeaderMap, body: Bytes) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.captured.lock().unwrap().push(Captured {
        path,
        headers,
        body: json.clone(),
    });
    let next = s.script.lock().unwrap().pop_front();
    let reply = match next {
        Some(r) => r,
        None => match s.responder.lock().unwrap().clone() {
            Some(f) => f(&json),
            None => Reply::status(500, r#"{"error": {"message": "script exhausted"}}"#),
        },
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (
        StatusCode::from_u16(reply.status).unwrap(),
        reply.body.clone(),
    )
        .into_response();
    resp.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    for (k, v) in &reply.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(v).unwrap(),
        );
    }
    resp
}

/// A scripted model behind the real `ChatModel` interface: each call's reply is a function of the
/// request (the conversation so far), so a test can play any model, well-behaved or not.
pub struct Scripted {
    policy: Box<dyn Fn(&haggle_agents::llm::ChatRequest) -> ScriptReply + Send + Sync>,
    pub requests: Mutex<Vec<haggle_agents::llm::ChatRequest>>,
}

/// A scripted reply: words, tool calls (name, arguments; a string argument stands for JSON that
/// does not parse), a format error, or a failed call.
pub enum ScriptReply {
    Text(String),
    Calls(Vec<(String, Value)>),
    Garbage(String),
    Fail(haggle_agents::llm::ChatError),
}

impl Scripted {
    pub fn new(
        policy: impl Fn(&haggle_agents::llm::ChatRequest) -> ScriptReply + Send + Sync + 'static,
    ) -> Scripted {
        Scripted {
            policy: Box::new(policy),
            requests: Mutex::new(Vec::new()),
        }
    }
}

/// The text of the newest user turn (the observation, or the tool results).
pub fn last_user_text(req: &haggle_agents::llm::ChatRequest) -> String {
    use haggle_agents::llm::ChatMessage;
    match req.messages.last() {
        Some(ChatMessage::User { text }) => text.clone(),
        Some(ChatMessage::ToolResults { results, note }) => {
            let mut s: Vec<String> = results.iter().map(|r| r.content.clone()).collect();
            s.extend(note.clone());
            s.join("\n")
        }
        _ => String::new(),
    }
}

impl haggle_agents::llm::ChatModel for Scripted {
    fn provider(&self) -> &'static str {
        "scripted"
    }
    fn model(&self) -> &str {
        "script-v1"
    }
    fn chat<'a>(
        &'a self,
        req: &'a haggle_agents::llm::ChatRequest,
    ) -> haggle_agents::brain::BoxFuture<
        'a,
        (
            Result<haggle_agents::llm::ChatResponse, haggle_agents::llm::ChatError>,
            haggle_agents::llm::Exchange,
        ),
    > {
        use haggle_agents::llm::*;
        Box::pin(async move {
            self.requests.lock().unwrap().push(req.clone());
            let n = self.requests.lock().unwrap().len();
            let chars: usize = req.system.len()
                + req
                    .messages
                    .iter()
                    .map(|m| serde_json::to_string(m).unwrap().len())
                    .sum::<usize>();
            let usage = Usage {
                input_tokens: (chars / 4) as u64,
                output_tokens: 20,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
            };
            let reply = (self.policy)(req);
            let exchange = Exchange {
                provider: "scripted".into(),
                model: "script-v1".into(),
                url: "scripted://".into(),
                request: serde_json::to_value(req).unwrap(),
                response: None,
                status: Some(200),
                attempts: 1,
                latency_ms: 0,
                earlier: Vec::new(),
            };
            let ok = |text: String, tool_calls: Vec<ToolCall>, format_error: Option<String>| {
                Ok(ChatResponse {
                    stop: if tool_calls.is_empty() {
                        StopReason::EndTurn
                    } else {
                        StopReason::ToolUse
                    },
                    text,
                    tool_calls,
                    usage,
                    format_error,
                    thinking: Vec::new(),
                })
            };
            let result = match reply {
                ScriptReply::Text(t) => ok(t, Vec::new(), None),
                ScriptReply::Garbage(t) => {
                    ok(t, Vec::new(), Some("the reply is not valid JSON".into()))
                }
                ScriptReply::Fail(e) => Err(e),
                ScriptReply::Calls(calls) => ok(
                    String::new(),
                    calls
                        .into_iter()
                        .enumerate()
                        .map(|(i, (name, arguments))| {
                            let malformed = arguments
                                .as_str()
                                .map(|s| format!("the arguments are not valid JSON: {s}"));
                            ToolCall {
                                id: format!("call_{n}_{i}"),
                                name,
                                arguments,
                                malformed,
                            }
                        })
                        .collect(),
                    None,
                ),
            };
            (result, exchange)
        })
    }
}
