//! The stdio server code (`serve_io` with `haggle-client` over HTTP, exactly what `haggle mcp`
//! runs) over in-memory pipes instead of a process's stdin/stdout, driven by rmcp's client. The
//! real binary over real stdio is tested in `crates/haggle/tests/mcp.rs`.

mod support;

use haggle_client::HttpClient;
use rmcp::ServiceExt;
use serde_json::json;
use support::agent::{McpAgent, whole_negotiation};
use support::*;

/// An MCP client connected through a pair of pipes to the stdio server acting for `token`.
async fn stdio_agent(m: &Market, name: &'static str, token: &str) -> McpAgent {
    stdio_agent_at(&m.base, name, token).await
}

/// [`stdio_agent`] against the server at `base`.
async fn stdio_agent_at(base: &str, name: &'static str, token: &str) -> McpAgent {
    let market_client = HttpClient::connect(base, token).await.expect("agent token");
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_io);
    tokio::spawn(haggle_mcp::serve_io(
        market_client,
        server_read,
        server_write,
    ));
    let client = ().serve(client_io).await.expect("MCP handshake over the pipe");
    McpAgent::new(name, client).await
}

#[tokio::test]
async fn two_stdio_agents_negotiate_a_deal_to_completion() {
    let m = Market::start().await;
    let (alice, bob) = (
        m.participant("Alice", 10_000).await,
        m.participant("Bob", 10_000).await,
    );
    let a = stdio_agent(&m, "alice", &alice.token).await;
    let b = stdio_agent(&m, "bob", &bob.token).await;
    assert_eq!(a.tools.len(), haggle_agents::tools::catalogue().len());
    let done = whole_negotiation(&a, &b).await;

    // Refusals: Bob may not hand over Alice's sale, nor Alice accept an offer on a listing
    // already sold; the bodies are the HTTP API's.
    let e = b.refused("hand_over", json!({"deal_id": done.deal})).await;
    let (_, http) = m
        .http(
            "POST",
            &m.path(&format!("/deals/{}/handover", done.deal)),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(e, http);
    let offer = done.opening_offer;
    let e = a.refused("accept_offer", json!({"offer_id": offer})).await;
    let (status, http) = m
        .http(
            "POST",
            &m.path(&format!("/offers/{offer}/accept")),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!((status, &e), (409, &http));
    assert!(m.svc.store().verify(m.id).await.unwrap().ok());
}

#[tokio::test]
async fn a_market_that_went_away_is_unavailable_not_invalid_request() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    // A second server over the same market, which the test stops.
    let (listener, base) = haggle_testkit::loopback().await;
    let (mut stop, stopped) = haggle_testkit::shutdown_signal();
    let server = tokio::spawn(haggle_http::serve(listener, m.svc.clone(), stopped));
    let a = stdio_agent_at(&base, "alice", &alice.token).await;
    a.ok("my_balance", json!({})).await;

    stop.now();
    server.await.unwrap().unwrap();
    for (tool, args) in [
        ("my_balance", json!({})),
        (
            "post_listing",
            json!({"title": "Bike", "category": "bikes", "price": 5000}),
        ),
    ] {
        let e = a.refused(tool, args).await;
        assert_eq!(e["error"]["code"], "unavailable", "{tool}: {e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains("could not be reached"), "{message}");
        assert!(message.contains(&base), "{message}");
    }
}
