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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
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
