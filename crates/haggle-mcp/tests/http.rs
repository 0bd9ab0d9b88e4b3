//! The MCP server over streamable HTTP at `/mcp` of the real server, driven by rmcp's client:
//! the tool list, a whole negotiation between two MCP clients, refusals with the HTTP API's code
//! and message, tool-level authorisation, bearer-token checks, resources and the prompt.

mod support;

use haggle_agents::tools;
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::{Value, json};
use support::agent::{McpAgent, id, whole_negotiation};
use support::*;

#[tokio::test]
async fn the_tool_list_is_the_catalogue_with_schemas_and_truthful_annotations() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let a = m.connect("alice", &alice.token).await;
    let listed: Vec<&str> = a.tools.iter().map(|t| t.name.as_ref()).collect();
    let catalogue: Vec<&str> = tools::catalogue().iter().map(|t| t.name).collect();
    assert_eq!(listed, catalogue);
    for (t, c) in a.tools.iter().zip(tools::catalogue()) {
        assert_eq!(t.description.as_deref(), Some(c.description));
        assert_eq!(
            Value::Object((*t.input_schema).clone()),
            c.input_schema,
            "{}",
            c.name
        );
        assert_eq!(
            t.output_schema.as_deref().map(|o| Value::Object(o.clone())),
            Some(c.output_schema.clone()),
            "{}",
            c.name
        );
        let ann = t.annotations.as_ref().expect("annotations");
        assert_eq!(
            ann.read_only_hint,
            Some(c.annotations.read_only),
            "{}",
            c.name
        );
        assert_eq!(
            ann.destructive_hint,
            Some(c.annotations.destructive),
            "{}",
            c.name
        );
        assert_eq!(
            ann.idempotent_hint,
            Some(c.annotations.idempotent),
            "{}",
            c.name
        );
        assert_eq!(ann.open_world_hint, Some(false));
    }
    let search = a
        .tools
        .iter()
        .find(|t| t.name == "search_listings")
        .unwrap();
    assert_eq!(
        search.annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );
    let accept = a.tools.iter().find(|t| t.name == "accept_offer").unwrap();
    assert_eq!(
        accept.annotations.as_ref().unwrap().destructive_hint,
        Some(true)
    );
}

#[tokio::test]
async fn search_listings_ranks_by_relevance_by_default_as_its_schema_says() {
    let m = Market::start().await;
    let (alice, bob) = (
        m.participant("Alice", 10_000).await,
        m.participant("Bob", 10_000).await,
    );
    let (a, b) = (
        m.connect("alice", &alice.token).await,
        m.connect("bob", &bob.token).await,
    );
    let search = b
        .tools
        .iter()
        .find(|t| t.name == "search_listings")
        .unwrap();
    let sort = Value::Object((*search.input_schema).clone())["properties"]["sort"].to_string();
    for order in ["relevance", "newest", "cheapest"] {
        assert!(sort.contains(&format!("\"{order}\"")), "{sort}");
    }
    // "road" in the older listing's title (2 points), in the newer one's description (1).
    let bike = a
        .ok(
            "post_listing",
            json!({"title": "Road bike", "category": "bikes", "price": 5000}),
        )
        .await;
    let lamp = a
        .ok(
            "post_listing",
            json!({"title": "Desk lamp", "description": "Road-tested", "category": "home",
                   "price": 1500}),
        )
        .await;
    let (bike, lamp) = (id(&bike, "/id"), id(&lamp, "/id"));
    let found = |v: Value| -> Vec<i64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        found(b.ok("search_listings", json!({"q": "road"})).await),
        vec![bike, lamp]
    );
    assert_eq!(
        found(
            b.ok("search_listings", json!({"q": "road", "sort": "newest"}))
                .await
        ),
        vec![lamp, bike]
    );
}

#[tokio::test]
async fn two_mcp_clients_negotiate_a_deal_to_completion() {
    let m = Market::start().await;
    let (alice, bob) = (
        m.participant("Alice", 10_000).await,
        m.participant("Bob", 10_000).await,
    );
    let (a, b) = (
        m.connect("alice", &alice.token).await,
        m.connect("bob", &bob.token).await,
    );
    let done = whole_negotiation(&a, &b).await;
    // The HTTP API sees the same completed deal, and the ledger holds.
    let (status, deal) = m
        .http(
            "GET",
            &m.path(&format!("/deals/{}", done.deal)),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(
        (status, deal["status"].as_str()),
        (200, Some("completed")),
        "{deal}"
    );
    assert!(m.svc.store().verify(m.id).await.unwrap().ok());
}

#[tokio::test]
async fn refusals_are_tool_errors_with_the_http_code_and_message() {
    let m = Market::start().await;
    let (alice, bob) = (
        m.participant("Alice", 10_000).await,
        m.participant("Bob", 10_000).await,
    );
    let (a, b) = (
        m.connect("alice", &alice.token).await,
        m.connect("bob", &bob.token).await,
    );
    let listing = a
        .ok(
            "post_listing",
            json!({"title": "Lamp", "category": "home", "price": 1500}),
        )
        .await;
    let opened = b
        .ok(
            "make_offer",
            json!({"listing_id": id(&listing, "/id"), "price": 1000}),
        )
        .await;
    let offer = id(&opened, "/offer/id");

    // Bob accepting his own offer: the error body is the HTTP API's, word for word.
    let via_mcp = b.refused("accept_offer", json!({"offer_id": offer})).await;
    let (status, via_http) = m
        .http(
            "POST",
            &m.path(&format!("/offers/{offer}/accept")),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(via_mcp, via_http);
    assert_eq!(via_mcp["error"]["code"], "not_your_offer");

    // Over budget, and a price of zero: the market's own codes.
    let over = b
        .refused(
            "make_offer",
            json!({"thread_id": id(&opened, "/thread/id"), "price": 50_000}),
        )
        .await;
    assert_eq!(over["error"]["code"], "insufficient_funds", "{over}");
    let zero = a
        .refused(
            "post_listing",
            json!({"title": "Free", "category": "x", "price": 0}),
        )
        .await;
    let (_, http_zero) = m
        .http(
            "POST",
            &m.path("/listings"),
            Some(&alice.token),
            Some(json!({"side": "sell", "title": "Free", "category": "x", "price": 0})),
        )
        .await;
    assert_eq!(zero, http_zero);

    // Arguments that do not parse: invalid_request naming the field; nothing changes.
    let bad = b
        .refused(
            "make_offer",
            json!({"thread_id": id(&opened, "/thread/id"), "price": "ten"}),
        )
        .await;
    assert_eq!(bad["error"]["code"], "invalid_request");
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("price"),
        "{bad}"
    );
    let thread = a
        .ok(
            "read_thread",
            json!({"thread_id": id(&opened, "/thread/id")}),
        )
        .await;
    assert_eq!(thread["offers"].as_array().unwrap().len(), 1);

    // An unknown tool is a protocol error, not a tool result.
    let mut params = rmcp::model::CallToolRequestParams::new("steal_everything");
    params.arguments = Some(Default::default());
    let e = b.client.call_tool(params).await.expect_err("unknown tool");
    assert!(e.to_string().contains("steal_everything"), "{e}");
}

#[tokio::test]
async fn a_closed_market_refuses_new_trading_with_market_closed_as_over_http() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let a = m.connect("alice", &alice.token).await;
    // Closing now (the service's clock) closes the market at once.
    m.svc
        .set_closing_time(&operator(), m.id, Some(1_700_000_000_000), None)
        .await
        .unwrap();
    let args = json!({"title": "Lamp", "category": "home", "price": 1500});
    let via_mcp = a.refused("post_listing", args).await;
    let (status, via_http) = m
        .http(
            "POST",
            &m.path("/listings"),
            Some(&alice.token),
            Some(json!({"side": "sell", "title": "Lamp", "category": "home", "price": 1500})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(via_mcp, via_http);
    assert_eq!(via_mcp["error"]["code"], "market_closed");
}

#[tokio::test]
async fn a_token_never_acts_for_another_participant() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let bob = m.participant("Bob", 10_000).await;
    let carol = m.participant("Carol", 10_000).await;
    let a = m.connect("alice", &alice.token).await;
    let b = m.connect("bob", &bob.token).await;
    let c = m.connect("carol", &carol.token).await;
    let listing = a
        .ok(
            "post_listing",
            json!({"title": "Bike", "category": "bikes", "price": 5000}),
        )
        .await;
    let listing_id = id(&listing, "/id");
    let opened = b
        .ok(
            "make_offer",
            json!({"listing_id": listing_id, "price": 4000}),
        )
        .await;
    let (thread, offer) = (id(&opened, "/thread/id"), id(&opened, "/offer/id"));

    // Carol (and Bob, on Alice's listing) try what only the others may do; each answer is
    // exactly what the HTTP API says to the same token.
    let attempts: Vec<(&support::agent::McpAgent, &str, &str, Value, &str, String)> = vec![
        (
            &c,
            &carol.token,
            "read_thread",
            json!({"thread_id": thread}),
            "GET",
            format!("/threads/{thread}"),
        ),
        (
            &c,
            &carol.token,
            "accept_offer",
            json!({"offer_id": offer}),
            "POST",
            format!("/offers/{offer}/accept"),
        ),
        (
            &c,
            &carol.token,
            "reject_offer",
            json!({"offer_id": offer}),
            "POST",
            format!("/offers/{offer}/reject"),
        ),
        (
            &c,
            &carol.token,
            "withdraw_offer",
            json!({"offer_id": offer}),
            "POST",
            format!("/offers/{offer}/withdraw"),
        ),
        (
            &c,
            &carol.token,
            "walk_away",
            json!({"thread_id": thread}),
            "POST",
            format!("/threads/{thread}/walk-away"),
        ),
        (
            &c,
            &carol.token,
            "send_message",
            json!({"thread_id": thread, "body": "psst"}),
            "POST",
            format!("/threads/{thread}/messages"),
        ),
        (
            &b,
            &bob.token,
            "withdraw_listing",
            json!({"listing_id": listing_id}),
            "POST",
            format!("/listings/{listing_id}/withdraw"),
        ),
    ];
    for (agent, token, tool, args, method, path) in attempts {
        let via_mcp = agent.refused(tool, args.clone()).await;
        let body = (method == "POST" && tool == "send_message").then(|| json!({"body": "psst"}));
        let (status, via_http) = m.http(method, &m.path(&path), Some(token), body).await;
        assert!(
            status == 403 || status == 404,
            "{tool}: HTTP {status} {via_http}"
        );
        assert_eq!(via_mcp, via_http, "{tool} by {}", agent.name);
        let code = via_mcp["error"]["code"].as_str().unwrap();
        assert!(
            code == "forbidden" || code == "not_found",
            "{tool}: {via_mcp}"
        );
    }

    // The deal's steps belong to its parties only.
    let counter = a
        .ok("make_offer", json!({"thread_id": thread, "price": 4500}))
        .await;
    let deal = b
        .ok(
            "accept_offer",
            json!({"offer_id": id(&counter, "/offer/id")}),
        )
        .await;
    let deal_id = id(&deal, "/id");
    for (tool, path) in [
        ("hand_over", "handover"),
        ("confirm_receipt", "confirm"),
        ("cancel_deal", "cancel"),
    ] {
        let via_mcp = c.refused(tool, json!({"deal_id": deal_id})).await;
        let (_, via_http) = m
            .http(
                "POST",
                &m.path(&format!("/deals/{deal_id}/{path}")),
                Some(&carol.token),
                None,
            )
            .await;
        assert_eq!(via_mcp, via_http, "{tool}");
    }
    // The buyer cannot hand over for the seller.
    let e = b.refused("hand_over", json!({"deal_id": deal_id})).await;
    let (_, http) = m
        .http(
            "POST",
            &m.path(&format!("/deals/{deal_id}/handover")),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(e, http);

    // Nothing those attempts touched changed; Carol's own view shows nothing of theirs.
    let thread_now = a.ok("read_thread", json!({"thread_id": thread})).await;
    assert!(thread_now["messages"].as_array().unwrap().is_empty());
    let deals = c.ok("my_deals", json!({})).await;
    assert!(deals["items"].as_array().unwrap().is_empty());
    let carols = c.ok("my_balance", json!({})).await;
    assert_eq!(carols["participant_id"], carol.id);
}

fn initialize_body(version: &str) -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    })
}

async fn post_mcp(
    m: &Market,
    token: Option<&str>,
    session: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = haggle_tls::client()
        .post(m.mcp_url())
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-06-18")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(s) = session {
        req = req.header("Mcp-Session-Id", s);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_missing_bad_or_non_agent_token_is_refused_with_the_api_error_body() {
    let m = Market::start().await;
    let init = initialize_body("2025-06-18");
    for token in [None, Some("hgl_not_a_token")] {
        let r = post_mcp(&m, token, None, &init).await;
        assert_eq!(r.status().as_u16(), 401);
        let body: Value = r.json().await.unwrap();
        let (_, http) = m.http("GET", "/v1/me", token, None).await;
        assert_eq!(body, http, "{token:?}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let observer = m
        .svc
        .create_token(haggle_service::Role::Observer, Some(m.id), None, "observer")
        .await
        .unwrap();
    let r = post_mcp(&m, Some(&observer), None, &init).await;
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden", "{body}");

    // rmcp's own client cannot even open a session without a valid token.
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            m.mcp_url(),
        )
        .auth_header("hgl_not_a_token");
    haggle_tls::install_provider();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
    assert!(rmcp::ServiceExt::serve((), transport).await.is_err());
}

/// The JSON-RPC response in a streamable-HTTP reply (an SSE stream or a JSON body).
async fn rpc_reply(r: reqwest::Response) -> Value {
    let text = r.text().await.unwrap();
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        return v;
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC reply in {text}"))
}

#[tokio::test]
async fn a_session_is_bound_to_the_participant_that_opened_it() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let bob = m.participant("Bob", 10_000).await;
    // A session-based client (protocol 2025-06-18) opens a session with Alice's token.
    let r = post_mcp(&m, Some(&alice.token), None, &initialize_body("2025-06-18")).await;
    assert_eq!(r.status().as_u16(), 200);
    let session = r
        .headers()
        .get("mcp-session-id")
        .expect("a session id")
        .to_str()
        .unwrap()
        .to_string();
    let _ = rpc_reply(r).await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post_mcp(&m, Some(&alice.token), Some(&session), &initialized).await;
    assert!(r.status().is_success(), "{}", r.status());

    let call = |id: i64, tool: &str| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    // Bob's valid token on Alice's session acts for nobody, even as the session's first call.
    let hijack =
        rpc_reply(post_mcp(&m, Some(&bob.token), Some(&session), &call(2, "my_balance")).await)
            .await;
    assert_eq!(hijack["result"]["isError"], true, "{hijack}");
    assert_eq!(
        hijack["result"]["structuredContent"]["error"]["code"], "forbidden",
        "{hijack}"
    );
    let mine = rpc_reply(
        post_mcp(
            &m,
            Some(&alice.token),
            Some(&session),
            &call(3, "my_balance"),
        )
        .await,
    )
    .await;
    assert_eq!(
        mine["result"]["structuredContent"]["participant_id"], alice.id,
        "{mine}"
    );
    // Without any token the request does not reach the session at all.
    let r = post_mcp(&m, None, Some(&session), &call(4, "my_balance")).await;
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn resources_give_the_market_rules_and_the_own_profile() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let a = m.connect("alice", &alice.token).await;
    let listed = a.client.list_all_resources().await.unwrap();
    let uris: Vec<&str> = listed.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(uris, [haggle_mcp::RULES_URI, haggle_mcp::PROFILE_URI]);

    let read = |uri: &str| {
        let uri = uri.to_string();
        let client = &a.client;
        async move {
            let r = client
                .read_resource(ReadResourceRequestParams::new(uri.clone()))
                .await
                .unwrap();
            match &r.contents[0] {
                rmcp::model::ResourceContents::TextResourceContents {
                    text, mime_type, ..
                } => {
                    assert_eq!(mime_type.as_deref(), Some("application/json"));
                    serde_json::from_str::<Value>(text).unwrap()
                }
                other => panic!("{uri}: not text: {other:?}"),
            }
        }
    };
    let rules = read(haggle_mcp::RULES_URI).await;
    let (_, http_market) = m.http("GET", &m.path(""), Some(&alice.token), None).await;
    assert_eq!(rules, http_market);
    assert!(rules["rules"]["offer_ttl_ms"].is_i64());

    a.ok(
        "post_listing",
        json!({"title": "Bike", "category": "bikes", "price": 5000}),
    )
    .await;
    a.ok(
        "post_wanted",
        json!({"title": "Wanted: helmet", "category": "bikes", "price": 2000}),
    )
    .await;
    let profile = read(haggle_mcp::PROFILE_URI).await;
    assert_eq!(profile["participant"]["name"], "Alice");
    assert_eq!(profile["participant"]["id"], alice.id);
    assert_eq!(profile["market"]["currency"], "USD");
    assert_eq!(profile["balance"]["available"], 10_000);
    assert_eq!(profile["participant"]["mandate"]["frozen"], false);
    assert_eq!(
        profile["active_listings"].as_array().unwrap().len(),
        2,
        "{profile}"
    );

    let e = a
        .client
        .read_resource(ReadResourceRequestParams::new("haggle://someone/else"))
        .await
        .expect_err("an unknown resource");
    assert!(e.to_string().contains("haggle://someone/else"), "{e}");
}

#[tokio::test]
async fn the_prompt_explains_trading_with_the_markets_own_numbers() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let a = m.connect("alice", &alice.token).await;
    let prompts = a.client.list_all_prompts().await.unwrap();
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0].name, haggle_mcp::guide::PROMPT_NAME);
    let mut params = GetPromptRequestParams::new(haggle_mcp::guide::PROMPT_NAME);
    params.arguments = Some(
        json!({"goal": "Sell the bike for at least 40 USD"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let p = a.client.get_prompt(params).await.unwrap();
    let text = match &p.messages[0].content {
        rmcp::model::ContentBlock::Text(t) => t.text.clone(),
        other => panic!("not text: {other:?}"),
    };
    assert!(text.contains("minor units of USD"), "{text}");
    assert!(text.contains("At most 20 offers"), "{text}");
    assert!(
        text.contains("accept_offer") && text.contains("untrusted"),
        "{text}"
    );
    assert!(text.contains("Sell the bike for at least 40 USD"));
}

/// A session opened with a token that is then revoked: its open SSE stream (the GET that
/// carries server messages) ends within seconds, the session is closed, and every further
/// request with the token is a 401.
#[tokio::test]
async fn a_revoked_tokens_session_and_stream_end() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let r = post_mcp(&m, Some(&alice.token), None, &initialize_body("2025-06-18")).await;
    assert_eq!(r.status().as_u16(), 200);
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let _ = rpc_reply(r).await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post_mcp(&m, Some(&alice.token), Some(&session), &initialized).await;
    assert!(r.status().is_success(), "{}", r.status());

    let mut stream = haggle_tls::client()
        .get(m.mcp_url())
        .header("Accept", "text/event-stream")
        .header("MCP-Protocol-Version", "2025-06-18")
        .header("Mcp-Session-Id", &session)
        .header("Authorization", format!("Bearer {}", alice.token))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let open = tokio::time::timeout(std::time::Duration::from_millis(1500), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(
        open.is_err(),
        "the stream stays open while the token is valid"
    );

    let revoked = m
        .svc
        .revoke_token(
            &operator(),
            m.id,
            &haggle_service::hash_token(&alice.token),
            None,
        )
        .await
        .unwrap();
    assert_eq!(revoked.status, 200);
    let t = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(3), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await
    .expect("the stream ends within 3 s of the revocation");
    eprintln!("MCP stream ended {:?} after the revocation", t.elapsed());

    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "my_balance", "arguments": {}}});
    let r = post_mcp(&m, Some(&alice.token), Some(&session), &call).await;
    assert_eq!(r.status().as_u16(), 401);
    // The session itself is gone: even a new token of the same participant cannot resume it.
    let fresh = m
        .svc
        .create_token(
            haggle_service::Role::Agent,
            Some(m.id),
            Some(alice.id),
            "new agent token",
        )
        .await
        .unwrap();
    let r = post_mcp(&m, Some(&fresh), Some(&session), &call).await;
    assert_eq!(r.status().as_u16(), 404, "the closed session is unknown");
}

/// Opens a session the raw way (initialize, then `initialized`); returns its id.
async fn raw_session(m: &Market, token: &str) -> String {
    let r = post_mcp(m, Some(token), None, &initialize_body("2025-06-18")).await;
    assert_eq!(r.status().as_u16(), 200);
    let session = r
        .headers()
        .get("mcp-session-id")
        .expect("a session id")
        .to_str()
        .unwrap()
        .to_string();
    let _ = rpc_reply(r).await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post_mcp(m, Some(token), Some(&session), &initialized).await;
    assert!(r.status().is_success(), "{}", r.status());
    session
}

fn tool_call(id: i64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

/// A tool call's structured result, asserting it is not a refusal.
async fn call_ok(m: &Market, token: &str, session: &str, body: &Value) -> Value {
    let reply = rpc_reply(post_mcp(m, Some(token), Some(session), body).await).await;
    assert_ne!(reply["result"]["isError"], true, "{reply}");
    reply["result"]["structuredContent"].clone()
}

#[tokio::test]
async fn a_request_resent_in_its_session_acts_once_and_answers_the_same() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let bob = m.participant("Bob", 10_000).await;
    let a = m.connect("alice", &alice.token).await;
    let bike = a
        .ok(
            "post_listing",
            json!({"title": "Bike", "category": "bikes", "price": 5000}),
        )
        .await;
    let session = raw_session(&m, &bob.token).await;
    // The same JSON-RPC request twice (a client re-sending after a lost answer): one message.
    let hello = tool_call(
        7,
        "send_message",
        json!({"listing_id": bike["id"], "body": "Still there?"}),
    );
    let first = call_ok(&m, &bob.token, &session, &hello).await;
    let again = call_ok(&m, &bob.token, &session, &hello).await;
    assert_eq!(first, again);
    let thread = first["thread_id"].as_i64().unwrap();
    let read = a.ok("read_thread", json!({"thread_id": thread})).await;
    assert_eq!(read["messages"].as_array().unwrap().len(), 1, "{read}");
    // Another request id in the same session is another action.
    let hello2 = tool_call(
        8,
        "send_message",
        json!({"thread_id": thread, "body": "Still there?"}),
    );
    let second = call_ok(&m, &bob.token, &session, &hello2).await;
    assert_ne!(second["id"], first["id"]);
}

#[tokio::test]
async fn a_retried_call_with_its_idempotency_key_acts_once_across_sessions() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let bob = m.participant("Bob", 10_000).await;
    let a = m.connect("alice", &alice.token).await;
    let bike = a
        .ok(
            "post_listing",
            json!({"title": "Bike", "category": "bikes", "price": 5000}),
        )
        .await;
    let offer = json!({"listing_id": bike["id"], "price": 4000, "idempotency_key": "bid-1"});
    // The first try in one session, the retry in a new one (the client reconnected).
    let b1 = m.connect("bob", &bob.token).await;
    let first = b1.ok("make_offer", offer.clone()).await;
    let b2 = m.connect("bob again", &bob.token).await;
    let retry = b2.ok("make_offer", offer).await;
    assert_eq!(first, retry);
    let threads = a.ok("my_threads", json!({})).await;
    assert_eq!(threads["items"].as_array().unwrap().len(), 1, "{threads}");
    let balance = b2.ok("my_balance", json!({})).await;
    assert_eq!(balance["held"], 4000, "committed once: {balance}");
    // The key reused for another request is refused, as over HTTP.
    let other = json!({"listing_id": bike["id"], "price": 4100, "idempotency_key": "bid-1"});
    let e = b2.refused("make_offer", other).await;
    assert_eq!(e["error"]["code"], "idempotency_conflict", "{e}");
}

#[tokio::test]
async fn ending_a_session_answers_200_as_the_official_sdks_expect() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let session = raw_session(&m, &alice.token).await;
    let r = haggle_tls::client()
        .delete(m.mcp_url())
        .header("Authorization", format!("Bearer {}", alice.token))
        .header("Mcp-Session-Id", &session)
        .header("MCP-Protocol-Version", "2025-06-18")
        .send()
        .await
        .unwrap();
    // The Python SDK takes 200 and 204 as success and logs anything else as a failure.
    assert_eq!(r.status().as_u16(), 200);
    // The session is gone.
    let r = post_mcp(
        &m,
        Some(&alice.token),
        Some(&session),
        &tool_call(2, "my_balance", json!({})),
    )
    .await;
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test]
async fn thread_or_listing_is_a_one_of_in_the_listed_schemas() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let a = m.connect("alice", &alice.token).await;
    for name in ["make_offer", "send_message"] {
        let t = a.tools.iter().find(|t| t.name == name).unwrap();
        let one_of = t.input_schema.get("oneOf").expect("a root oneOf");
        assert_eq!(one_of.as_array().unwrap().len(), 2, "{name}");
        assert!(
            t.input_schema["properties"]
                .get("idempotency_key")
                .is_some()
        );
    }
    // Both or neither: refused with the rule in words.
    let e = a
        .refused(
            "send_message",
            json!({"thread_id": 1, "listing_id": 1, "body": "hi"}),
        )
        .await;
    assert_eq!(e["error"]["code"], "invalid_request");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exactly one of `thread_id`"),
        "{e}"
    );
}

#[tokio::test]
async fn portable_schemas_leave_out_the_root_one_of_for_anthropic_based_clients() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            format!("{}?schemas=portable", m.mcp_url()),
        )
        .auth_header(alice.token.clone());
    haggle_tls::install_provider();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
    let client = rmcp::ServiceExt::serve((), transport)
        .await
        .expect("handshake");
    let a = support::agent::McpAgent::new("alice", client).await;
    for (t, c) in a.tools.iter().zip(tools::catalogue()) {
        for combinator in ["oneOf", "anyOf", "allOf"] {
            assert!(t.input_schema.get(combinator).is_none(), "{}", c.name);
        }
        let mut expected = c.input_schema.clone();
        expected.as_object_mut().unwrap().remove("oneOf");
        assert_eq!(
            Value::Object((*t.input_schema).clone()),
            expected,
            "{}",
            c.name
        );
    }
    // The rule still holds when called.
    let e = a
        .refused(
            "make_offer",
            json!({"thread_id": 1, "listing_id": 1, "price": 5}),
        )
        .await;
    assert_eq!(e["error"]["code"], "invalid_request", "{e}");
}

/// Alice's operator-set seller mandate (spec: trust.md) over `mandate`; returns Alice, Bob and
/// their MCP clients.
async fn seller_market(
    m: &Market,
    mandate: Value,
) -> (support::Party, support::Party, McpAgent, McpAgent) {
    let (alice, bob) = (
        m.participant("Alice", 0).await,
        m.participant("Bob", 10_000).await,
    );
    m.svc
        .set_mandate(
            &operator(),
            m.id,
            alice.id,
            serde_json::from_value(mandate).unwrap(),
            None,
        )
        .await
        .unwrap();
    let (a, b) = (
        m.connect("alice", &alice.token).await,
        m.connect("bob", &bob.token).await,
    );
    (alice, bob, a, b)
}

#[tokio::test]
async fn a_sale_below_the_sellers_minimum_is_refused_over_mcp_as_over_http() {
    let m = Market::start().await;
    let (alice, _, a, b) = seller_market(
        &m,
        json!({"min_price_by_item": {"drill": 1100}, "min_sale": 500}),
    )
    .await;
    let listing = json!({"title": "Drill", "category": "tools", "price": 30,
                         "attributes": {"item_id": "drill"}});
    let via_mcp = a.refused("post_listing", listing).await;
    let (status, via_http) = m
        .http(
            "POST",
            &m.path("/listings"),
            Some(&alice.token),
            Some(
                json!({"side": "sell", "title": "Drill", "category": "tools", "price": 30,
                        "attributes": {"item_id": "drill"}}),
            ),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(via_mcp, via_http);
    assert_eq!(via_mcp["error"]["code"], "below_seller_minimum");
    assert!(!via_mcp.to_string().contains("1100"), "{via_mcp}");

    // Listed at its price, the buyer's low offer can be neither countered nor accepted below.
    let listed = a
        .ok(
            "post_listing",
            json!({"title": "Drill", "category": "tools", "price": 1500,
                   "attributes": {"item_id": "drill"}}),
        )
        .await;
    let opened = b
        .ok(
            "make_offer",
            json!({"listing_id": id(&listed, "/id"), "price": 200}),
        )
        .await;
    let counter = a
        .refused(
            "make_offer",
            json!({"thread_id": id(&opened, "/thread/id"), "price": 900}),
        )
        .await;
    assert_eq!(counter["error"]["code"], "below_seller_minimum");
    let accept = a
        .refused(
            "accept_offer",
            json!({"offer_id": id(&opened, "/offer/id")}),
        )
        .await;
    assert_eq!(accept["error"]["code"], "below_seller_minimum");

    // The agent's own view: a minimum exists, its value is withheld.
    let money = a.ok("my_balance", json!({})).await;
    assert_eq!(money["mandate"]["has_minimum"], true, "{money}");
    let text = money.to_string();
    assert!(
        !text.contains("1100") && !text.contains("min_sale"),
        "{text}"
    );
}

#[tokio::test]
async fn ask_routes_a_sale_below_the_minimum_to_the_sellers_principal_over_mcp() {
    let m = Market::start().await;
    let (alice, _, a, b) = seller_market(&m, json!({"min_sale": 1000, "below_min": "ask"})).await;
    let listed = a
        .ok(
            "post_listing",
            json!({"title": "Drill", "category": "tools", "price": 500}),
        )
        .await;
    let opened = b
        .ok(
            "make_offer",
            json!({"listing_id": id(&listed, "/id"), "price": 500}),
        )
        .await;
    let deal = a
        .ok(
            "accept_offer",
            json!({"offer_id": id(&opened, "/offer/id")}),
        )
        .await;
    assert_eq!(deal["status"], "awaiting_approval", "{deal}");
    assert_eq!(deal["approval_from"], "seller", "{deal}");
    // The principal answers over HTTP (approvals are not an agent's tool).
    let principal = m
        .svc
        .create_token(
            haggle_service::Role::Principal,
            Some(m.id),
            Some(alice.id),
            "alice's principal",
        )
        .await
        .unwrap();
    let d = id(&deal, "/id");
    let (status, body) = m
        .http(
            "POST",
            &m.path(&format!("/deals/{d}/approval")),
            Some(&principal),
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let deals = a.ok("my_deals", json!({})).await;
    assert_eq!(deals["items"][0]["status"], "agreed", "{deals}");
}

/// The path through MCP tools: claims on `post_listing`, shown by `get_listing`; the
/// buyer's principal reports the mismatch; the buyer's agent disputes `not_as_described` naming
/// the claim with `open_dispute`; the operator refunds; the ledger verifies.
#[tokio::test]
async fn a_not_as_described_dispute_through_mcp_tools_ends_in_a_refund() {
    use haggle_service::{Caller, Role};
    let m = Market::start().await;
    let (alice, bob) = (
        m.participant("Alice", 0).await,
        m.participant("Bob", 10_000).await,
    );
    let (a, b) = (
        m.connect("alice", &alice.token).await,
        m.connect("bob", &bob.token).await,
    );
    let listing = a
        .ok(
            "post_listing",
            json!({"title": "Phone", "category": "phones", "price": 3000,
                   "claims": {"condition": "like_new", "working": "yes"}}),
        )
        .await;
    let seen = b
        .ok("get_listing", json!({"listing_id": id(&listing, "/id")}))
        .await;
    assert_eq!(seen["claims"]["condition"], "like_new", "{seen}");
    let opened = b
        .ok(
            "make_offer",
            json!({"listing_id": id(&listing, "/id"), "price": 3000}),
        )
        .await;
    let deal = a
        .ok(
            "accept_offer",
            json!({"offer_id": id(&opened, "/offer/id")}),
        )
        .await;
    let d = id(&deal, "/id");
    a.ok("hand_over", json!({"deal_id": d})).await;
    // No inspection found anything yet: the market refuses the grounds.
    let early = b
        .refused(
            "open_dispute",
            json!({"deal_id": d, "reason": "scratched", "grounds": "not_as_described", "claims": ["condition"]}),
        )
        .await;
    assert_eq!(early["error"]["code"], "invalid_transition", "{early}");
    let principal = Caller {
        role: Role::Principal,
        market: Some(m.id),
        participant: Some(bob.id),
        scope: "bob's principal".into(),
    };
    m.svc
        .report_inspection(&principal, m.id, d, vec!["condition".into()], None)
        .await
        .unwrap();
    let disputed = b
        .ok(
            "open_dispute",
            json!({"deal_id": d, "reason": "Scratched all over", "grounds": "not_as_described", "claims": ["condition"]}),
        )
        .await;
    assert_eq!(disputed["status"], "disputed", "{disputed}");
    assert_eq!(disputed["dispute"]["grounds"], "not_as_described");
    let req = haggle_api::ResolveDispute {
        ruling: haggle_api::haggle_core::lifecycle::Ruling::Refund,
        note: "as reported".into(),
    };
    m.svc
        .resolve(&operator(), m.id, d, req, None)
        .await
        .unwrap();
    let money = b.ok("my_balance", json!({})).await;
    assert_eq!(money["available"], 10_000, "{money}");
    let v = m.svc.store().verify(m.id).await.unwrap();
    assert!(v.breaches.is_empty(), "{:?}", v.breaches);
    let rep = b
        .ok("get_listing", json!({"listing_id": id(&listing, "/id")}))
        .await;
    assert_eq!(
        rep["owner_reputation"]["upheld_not_as_described"], 1,
        "{rep}"
    );
}

/// `my_threads` and `read_thread` carry the thread's summary, and `my_threads` filters by
/// `state` and `your_move`.
#[tokio::test]
async fn my_threads_says_whose_move_it_is_and_filters_by_it() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let bob = m.participant("Bob", 10_000).await;
    let a = m.connect("alice", &alice.token).await;
    let b = m.connect("bob", &bob.token).await;
    let mut listings = Vec::new();
    for title in ["Bike", "Lamp"] {
        let l = a
            .ok(
                "post_listing",
                json!({"title": title, "category": "misc", "price": 5000}),
            )
            .await;
        listings.push(l["id"].clone());
    }
    let offer = b
        .ok(
            "make_offer",
            json!({"listing_id": listings[0], "price": 4000}),
        )
        .await;
    let bike_thread = offer["offer"]["thread_id"].as_i64().unwrap();
    let hello = b
        .ok(
            "send_message",
            json!({"listing_id": listings[1], "body": "Is the lamp still there?"}),
        )
        .await;
    let lamp_thread = hello["thread_id"].as_i64().unwrap();
    b.ok("walk_away", json!({"thread_id": lamp_thread})).await;

    let listed = a.ok("my_threads", json!({"state": "open"})).await;
    assert_eq!(
        listed,
        a.ok("my_threads", json!({"status": "open"})).await,
        "`status` is the accepted older name of `state`"
    );
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["id"], bike_thread);
    let summary = &items[0]["summary"];
    assert_eq!(summary["your_move"], true, "{summary}");
    assert_eq!(summary["live_offer"]["price"], 4000);
    assert_eq!(summary["live_offer"]["by"], bob.id);
    assert_eq!(summary["offers_made"], 1);
    let read = a.ok("read_thread", json!({"thread_id": bike_thread})).await;
    assert_eq!(read["summary"]["live_offer"], summary["live_offer"]);
    assert_eq!(read["summary"]["your_move"], true);

    let waiting = a.ok("my_threads", json!({"your_move": true})).await;
    let ids: Vec<i64> = waiting["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [bike_thread]);
    let bobs = b.ok("my_threads", json!({"your_move": true})).await;
    assert_eq!(bobs["items"].as_array().unwrap().len(), 0, "{bobs}");
    let all = b.ok("my_threads", json!({"your_move": false})).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2, "{all}");

    let e = a.refused("my_threads", json!({"state": "pending"})).await;
    assert_eq!(e["error"]["code"], "invalid_request", "{e}");
    assert!(e.to_string().contains("state"), "{e}");
}

/// `my_threads` lists as the HTTP thread list does: open threads first, each by newest activity,
/// then ended ones, and pages in that order.
#[tokio::test]
async fn my_threads_lists_newest_activity_first_as_the_http_list_does() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let bob = m.participant("Bob", 10_000).await;
    let a = m.connect("alice", &alice.token).await;
    let b = m.connect("bob", &bob.token).await;
    let mut threads = Vec::new();
    for title in ["Bike", "Lamp", "Desk", "Rug"] {
        let l = a
            .ok(
                "post_listing",
                json!({"title": title, "category": "misc", "price": 5000}),
            )
            .await;
        let hello = b
            .ok(
                "send_message",
                json!({"listing_id": l["id"], "body": "Still there?"}),
            )
            .await;
        threads.push(hello["thread_id"].as_i64().unwrap());
        m.clock.advance(1_000);
    }
    b.ok("walk_away", json!({"thread_id": threads[3]})).await;
    m.clock.advance(1_000);
    b.ok(
        "send_message",
        json!({"thread_id": threads[0], "body": "Any news on the bike?"}),
    )
    .await;

    let listed = a.ok("my_threads", json!({})).await;
    let order: Vec<i64> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(order, [threads[0], threads[2], threads[1], threads[3]]);
    let http: Value = haggle_tls::client()
        .get(format!("{}/v1/markets/{}/threads", m.base, m.id))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http["items"], listed["items"], "one order for MCP and HTTP");
    let open = a.ok("my_threads", json!({"state": "open"})).await;
    assert_eq!(open["items"].as_array().unwrap().len(), 3, "{open}");
}
