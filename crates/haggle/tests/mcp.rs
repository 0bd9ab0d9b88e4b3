//! `haggle mcp` over stdio, as a desktop client runs it: the real binary spawned by rmcp's
//! child-process client, talking to a real `haggle serve` over HTTP. Two such agents negotiate a
//! deal to completion with the same script the streamable-HTTP tests run.

mod support;

#[path = "../../haggle-mcp/tests/support/agent.rs"]
mod agent;

use agent::{McpAgent, whole_negotiation};
use rmcp::ServiceExt;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::json;
use support::*;

/// `haggle mcp --server BASE` for `token`, spawned with the environment a desktop client gives it.
async fn spawn_mcp(dir: &std::path::Path, name: &'static str, base: &str, token: &str) -> McpAgent {
    let command = tokio::process::Command::new(BIN).configure(|c| {
        c.current_dir(dir)
            .args(["mcp", "--server", base])
            .env("HAGGLE_AGENT_TOKEN", token)
            .env_remove("HAGGLE_CONFIG")
            .env_remove("HAGGLE_SERVER")
            .env("RUST_LOG", "warn");
    });
    let transport = TokioChildProcess::new(command).expect("spawn haggle mcp");
    let client = ().serve(transport).await.expect("MCP handshake over stdio");
    McpAgent::new(name, client).await
}

#[tokio::test]
async fn two_stdio_agents_negotiate_a_deal_to_completion() {
    let dir = Scratch::new("mcp-stdio");
    let db = dir.sqlite("h.db");
    let op = operator_token(&dir.0, &db);
    let server = Server::start(&dir.0, &["--database", &db]).await;
    let http = Http::default();
    let market = create_market(&http, &server.base, &op, "stdio market").await;
    let alice = register(&http, &server.base, &op, market, "Alice", 10_000).await;
    let bob = register(&http, &server.base, &op, market, "Bob", 10_000).await;
    let a = spawn_mcp(&dir.0, "alice", &server.base, &alice.token).await;
    let b = spawn_mcp(&dir.0, "bob", &server.base, &bob.token).await;
    assert_eq!(a.tools.len(), haggle_agents::tools::catalogue().len());

    let done = whole_negotiation(&a, &b).await;

    // A refusal over stdio carries the HTTP API's body, word for word.
    let via_mcp = b
        .refused("accept_offer", json!({"offer_id": done.opening_offer}))
        .await;
    let (status, via_http) = http
        .post(
            &server.url(&format!(
                "/v1/markets/{market}/offers/{}/accept",
                done.opening_offer
            )),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{via_http}");
    assert_eq!(via_mcp, via_http);
    // And Bob's stdio server can never act for Alice.
    let e = b.refused("hand_over", json!({"deal_id": done.deal})).await;
    assert_eq!(e["error"]["code"], "forbidden", "{e}");
    a.client.cancel().await.unwrap();
    b.client.cancel().await.unwrap();
}

#[tokio::test]
async fn haggle_mcp_with_a_bad_token_fails_with_one_line() {
    let dir = Scratch::new("mcp-bad-token");
    let db = dir.sqlite("h.db");
    let server = Server::start(&dir.0, &["--database", &db]).await;
    let o = run(
        &dir.0,
        &["mcp", "--server", &server.base, "--token", "hgl_nonsense"],
    );
    assert!(!o.status.success());
    assert!(
        o.stdout.is_empty(),
        "stdout is the protocol's: {}",
        text(&o.stdout)
    );
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unauthorized"), "{err}");
}

#[tokio::test]
async fn haggle_mcp_with_no_server_answering_says_unavailable() {
    let dir = Scratch::new("mcp-no-server");
    let base = haggle_testkit::dead_base();
    let o = run(&dir.0, &["mcp", "--server", &base, "--token", "hgl_x"]);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unavailable"), "{err}");
    assert!(!err.contains("invalid_request"), "{err}");
    assert!(err.contains("could not be reached"), "{err}");
}
