//! An agent as an MCP client sees the market (rmcp's real client over any transport), and the
//! whole negotiation two such agents run to a completed deal. Shared by the streamable-HTTP
//! tests here and the stdio tests of the `haggle` binary (`crates/haggle/tests/mcp.rs`), so both
//! transports run the same script.
#![allow(dead_code)]

use haggle_agents::tools;
use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, Tool};
use rmcp::service::RunningService;
use serde_json::{Value, json};

pub struct McpAgent {
    pub name: &'static str,
    pub client: RunningService<RoleClient, ()>,
    /// The tools as the server listed them.
    pub tools: Vec<Tool>,
}

impl McpAgent {
    /// Wraps a connected client and reads its tool list.
    pub async fn new(name: &'static str, client: RunningService<RoleClient, ()>) -> McpAgent {
        let tools = client.list_all_tools().await.expect("tools/list");
        McpAgent {
            name,
            client,
            tools,
        }
    }

    /// Calls a tool: `Ok(structured result)`, checked against the tool's listed output schema,
    /// or `Err(the error body)` of a tool error (`isError`).
    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, Value> {
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = match args.clone() {
            Value::Object(o) => Some(o),
            Value::Null => None,
            other => panic!("arguments must be an object, got {other}"),
        };
        let r = self
            .client
            .call_tool(params)
            .await
            .unwrap_or_else(|e| panic!("{}: tools/call {tool} failed: {e}", self.name));
        let structured = r
            .structured_content
            .clone()
            .unwrap_or_else(|| panic!("{}: {tool} returned no structured content", self.name));
        // The text content carries the same JSON, for clients that only read text.
        let text = r
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone());
        let text: Value = serde_json::from_str(&text.expect("a text content")).expect("JSON text");
        assert_eq!(
            text, structured,
            "{tool}: text and structured content differ"
        );
        if r.is_error == Some(true) {
            return Err(structured);
        }
        let listed = self
            .tools
            .iter()
            .find(|t| t.name == tool)
            .unwrap_or_else(|| panic!("{tool} is not listed"));
        let schema = Value::Object(
            listed
                .output_schema
                .as_deref()
                .cloned()
                .expect("an output schema"),
        );
        tools::check_against(&schema, &structured).unwrap_or_else(|e| {
            panic!("{tool} result breaks its output schema: {e}\n{structured}")
        });
        Ok(structured)
    }

    /// A call that must succeed.
    pub async fn ok(&self, tool: &str, args: Value) -> Value {
        match self.call(tool, args.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{}: {tool} {args} was refused: {e}", self.name),
        }
    }

    /// A call that must be refused: its error body.
    pub async fn refused(&self, tool: &str, args: Value) -> Value {
        match self.call(tool, args.clone()).await {
            Ok(v) => panic!("{}: {tool} {args} should be refused, got {v}", self.name),
            Err(e) => e,
        }
    }
}

pub fn id(v: &Value, path: &str) -> i64 {
    v.pointer(path)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer at {path} in {v}"))
}

/// What the negotiation left behind, for further checks.
pub struct Negotiated {
    pub listing: i64,
    pub thread: i64,
    pub deal: i64,
    /// The buyer's opening offer (countered, so no longer live).
    pub opening_offer: i64,
}

/// Alice sells a bike to Bob, both through MCP tools only: post, search, read with reputation,
/// offer, counter, counter, accept, hand over, confirm receipt, rate. Both start with 10,000.
pub async fn whole_negotiation(alice: &McpAgent, bob: &McpAgent) -> Negotiated {
    let listing = alice
        .ok(
            "post_listing",
            json!({"title": "Red road bike", "description": "54 cm, new tyres", "category": "bikes", "condition": "good", "price": 5000}),
        )
        .await;
    let listing_id = id(&listing, "/id");

    let found = bob
        .ok(
            "search_listings",
            json!({"q": "road bike", "max_price": 6000, "sort": "cheapest"}),
        )
        .await;
    assert_eq!(id(&found, "/items/0/id"), listing_id, "{found}");
    let seen = bob
        .ok("get_listing", json!({"listing_id": listing_id}))
        .await;
    assert_eq!(seen["owner_reputation"]["completed_deals"], 0, "{seen}");

    let opened = bob
        .ok(
            "make_offer",
            json!({"listing_id": listing_id, "price": 4000, "message": "Would you take 40?"}),
        )
        .await;
    let thread = id(&opened, "/thread/id");
    let opening_offer = id(&opened, "/offer/id");

    let mine = alice.ok("my_threads", json!({})).await;
    assert_eq!(id(&mine, "/items/0/id"), thread, "{mine}");
    let read = alice.ok("read_thread", json!({"thread_id": thread})).await;
    assert_eq!(read["offers"][0]["state"], "live", "{read}");
    assert_eq!(read["messages"][0]["body"], "Would you take 40?", "{read}");

    alice
        .ok("make_offer", json!({"thread_id": thread, "price": 4600}))
        .await;
    alice
        .ok(
            "send_message",
            json!({"thread_id": thread, "body": "New tyres; 46 is fair."}),
        )
        .await;
    let bobs = bob
        .ok("make_offer", json!({"thread_id": thread, "price": 4300}))
        .await;
    let deal = alice
        .ok("accept_offer", json!({"offer_id": id(&bobs, "/offer/id")}))
        .await;
    assert_eq!(
        (deal["status"].as_str(), deal["price"].as_i64()),
        (Some("agreed"), Some(4300))
    );
    let deal_id = id(&deal, "/id");

    let money = bob.ok("my_balance", json!({})).await;
    assert_eq!(
        (
            money["available"].as_i64(),
            money["held"].as_i64(),
            money["total"].as_i64()
        ),
        (Some(5700), Some(4300), Some(10_000)),
        "{money}"
    );

    alice
        .ok(
            "hand_over",
            json!({"deal_id": deal_id, "note": "left it at reception"}),
        )
        .await;
    let done = bob.ok("confirm_receipt", json!({"deal_id": deal_id})).await;
    assert_eq!(done["status"], "completed", "{done}");
    bob.ok(
        "rate_deal",
        json!({"deal_id": deal_id, "score": 5, "comment": "smooth"}),
    )
    .await;
    alice
        .ok("rate_deal", json!({"deal_id": deal_id, "score": 5}))
        .await;

    let deals = alice.ok("my_deals", json!({})).await;
    assert_eq!(deals["items"][0]["status"], "completed", "{deals}");
    let paid = alice.ok("my_balance", json!({})).await;
    assert_eq!(paid["total"].as_i64(), Some(14_300), "{paid}");
    let news = bob.ok("events_since", json!({"after": 0})).await;
    let kinds: Vec<&str> = news["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"deal_created"), "{kinds:?}");

    Negotiated {
        listing: listing_id,
        thread,
        deal: deal_id,
        opening_offer,
    }
}
