//! The market the MCP tests trade in: the real HTTP server (`haggle_http::serve`, the code
//! `haggle serve` runs, with `/mcp` mounted) on a random loopback port over a fresh SQLite file,
//! participants registered by an operator, and rmcp clients connected to `/mcp` with their
//! agent tokens.
#![allow(dead_code)]

pub mod agent;

use agent::McpAgent;
use haggle_api::{CreateMarket, ParticipantCreated, RegisterParticipant};
use haggle_service::{Caller, Config, ManualClock, Role, Service, Store};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;
use std::sync::Arc;

pub struct Market {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub svc: Arc<Service>,
    pub id: i64,
    /// The server's clock (the market runs on it).
    pub clock: Arc<ManualClock>,
    _db: haggle_testkit::TempSqlite,
}

/// A participant and its agent token.
pub struct Party {
    pub id: i64,
    pub token: String,
}

pub fn operator() -> Caller {
    Caller {
        role: Role::Operator,
        market: None,
        participant: None,
        scope: "mcp test operator".into(),
    }
}

impl Market {
    pub async fn start() -> Market {
        let db = haggle_testkit::TempSqlite::new("mcp-test");
        let store = Store::open(&db.url()).await.expect("open the store");
        let clock = Arc::new(ManualClock::new(haggle_testkit::START_MS));
        let svc = Service::new(store, clock.clone(), Config::default());
        let (listener, base) = haggle_testkit::loopback().await;
        tokio::spawn(haggle_http::serve(
            listener,
            svc.clone(),
            std::future::pending(),
        ));
        let req = CreateMarket {
            name: "MCP market".into(),
            currency: "USD".into(),
            clock: None,
            sim_start_ms: None,
            rules: None,
        };
        let m: haggle_api::haggle_core::Market = serde_json::from_str(
            &svc.create_market(&operator(), req, None)
                .await
                .unwrap()
                .body,
        )
        .unwrap();
        Market {
            base,
            svc,
            id: m.id,
            clock,
            _db: db,
        }
    }

    pub async fn participant(&self, name: &str, budget: i64) -> Party {
        let req = RegisterParticipant {
            name: name.into(),
            budget,
            mandate: None,
        };
        let p: ParticipantCreated = serde_json::from_str(
            &self
                .svc
                .register_participant(&operator(), self.id, req, None)
                .await
                .unwrap()
                .body,
        )
        .unwrap();
        Party {
            id: p.participant.id,
            token: p.agent_token,
        }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// An rmcp client connected to `/mcp` with `token`.
    pub async fn connect(&self, name: &'static str, token: &str) -> McpAgent {
        let config =
            StreamableHttpClientTransportConfig::with_uri(self.mcp_url()).auth_header(token);
        haggle_tls::install_provider();
        let transport = StreamableHttpClientTransport::from_config(config);
        let client = ().serve(transport).await.expect("MCP handshake over HTTP");
        McpAgent::new(name, client).await
    }

    /// The same request over the HTTP API: `(status, body)`.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = haggle_tls::client().request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn path(&self, rest: &str) -> String {
        format!("/v1/markets/{}{rest}", self.id)
    }
}
