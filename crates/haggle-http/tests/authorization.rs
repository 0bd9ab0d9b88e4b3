//! The authorisation matrix: every operation of the served OpenAPI document, called by each of
//! seven roles, is allowed or refused exactly as one table says. A new route without a row fails.
//!
//! "Allowed" means not refused for who is asking: the answer is not 401, 403 or 404 (a valid
//! request may still meet a state conflict, e.g. 409 for a deal in the wrong state). A refusal is
//! 401 (anonymous), 403 (`forbidden`), or 404 where the service hides that the object exists from
//! a party who may not see it. Each cell runs on fresh fixtures, so no role's effect changes what
//! the next one meets.

mod support;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use support::*;

/// The callers, in the order of a row's cells.
const ROLES: [&str; 7] = [
    "anonymous",
    "agent",
    "principal",
    "observer",
    "operator",
    "other market's operator",
    "other participant",
];

/// One cell: `y` allowed, `u` 401, `f` 403, `n` 404 (existence hidden).
/// Columns: anonymous, agent, principal, observer, operator, other market's operator, other
/// participant (a third participant of the same market, party to nothing).
#[rustfmt::skip]
const MATRIX: &[(&str, &str, Subject, &str)] = &[
    ("get", "/v1/markets", Seller, "uyyyyyy"),
    ("get", "/v1/markets/{market}", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/deals", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/deals/{deal}", Seller, "uyyyyff"),
    ("get", "/v1/markets/{market}/deals/{deal}/notes", Seller, "uyyyyff"),
    ("get", "/v1/markets/{market}/deals/{deal}/ratings", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/disputes", Seller, "ufffyff"),
    ("get", "/v1/markets/{market}/events", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/events/stream", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/ledger/verify", Seller, "ufffyff"),
    ("get", "/v1/markets/{market}/listings", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/listings/{listing}", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/moderation", Seller, "ufffyff"),
    ("get", "/v1/markets/{market}/policy", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/participants", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/participants/{participant}", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/participants/{participant}/balance", Seller, "uyyyyff"),
    ("get", "/v1/markets/{market}/participants/{participant}/mandate", Seller, "uyyyyff"),
    ("get", "/v1/markets/{market}/participants/{participant}/reputation", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/participants/{participant}/survey", Seller, "uyyyyff"),
    ("get", "/v1/markets/{market}/settlement", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/summary", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/survey", Seller, "uffyyff"),
    ("get", "/v1/markets/{market}/threads", Seller, "uyyyyfy"),
    ("get", "/v1/markets/{market}/threads/{thread}", Seller, "uyyyyff"),
    ("get", "/v1/markets/{market}/threads/{thread}/messages", Seller, "uyyyyff"),
    ("get", "/v1/markets/{market}/webhooks", Seller, "ufffyff"),
    ("get", "/v1/markets/{market}/webhooks/{webhook}/deliveries", Seller, "ufffyff"),
    ("get", "/v1/me", Seller, "uyyyyyy"),
    ("post", "/v1/markets", Seller, "uffffff"),
    ("post", "/v1/markets/{market}/clock/advance", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/deals/{deal}/approval", Buyer, "ufyffff"),
    ("post", "/v1/markets/{market}/deals/{deal}/cancel", Seller, "uyfffff"),
    ("post", "/v1/markets/{market}/deals/{deal}/confirm", Buyer, "uyfffff"),
    ("post", "/v1/markets/{market}/deals/{deal}/dispute", Buyer, "uyfffff"),
    ("post", "/v1/markets/{market}/deals/{deal}/evidence", Seller, "uyffyff"),
    ("post", "/v1/markets/{market}/deals/{deal}/handover", Seller, "uyfffff"),
    ("post", "/v1/markets/{market}/deals/{deal}/ship", Seller, "uyfffff"),
    ("post", "/v1/markets/{market}/deals/{deal}/inspection", Buyer, "ufyffff"),
    ("post", "/v1/markets/{market}/deals/{deal}/ratings", Seller, "uyyffff"),
    ("post", "/v1/markets/{market}/deals/{deal}/resolve", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/listings", Seller, "uyffffy"),
    ("post", "/v1/markets/{market}/listings/{listing}/approve", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/listings/{listing}/remove", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/listings/{listing}/threads", Buyer, "uyffffy"),
    ("post", "/v1/markets/{market}/listings/{listing}/withdraw", Seller, "uyfffff"),
    ("post", "/v1/markets/{market}/offers/{offer}/accept", Seller, "uyfffff"),
    ("post", "/v1/markets/{market}/offers/{offer}/reject", Seller, "uyfffff"),
    ("post", "/v1/markets/{market}/offers/{offer}/withdraw", Buyer, "uyfffff"),
    ("post", "/v1/markets/{market}/participants", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/participants/{participant}/freeze", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/participants/{participant}/pause", Seller, "ufyfyff"),
    ("put", "/v1/markets/{market}/participants/{participant}/trading_mode", Seller, "ufyffff"),
    ("post", "/v1/markets/{market}/participants/{participant}/fund", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/participants/{participant}/reinstate", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/participants/{participant}/suspend", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/threads/{thread}/messages", Seller, "uyfffff"),
    ("post", "/v1/markets/{market}/threads/{thread}/offers", Seller, "uyfffff"),
    ("post", "/v1/markets/{market}/threads/{thread}/walk-away", Seller, "uyfffff"),
    ("post", "/v1/markets/{market}/tokens", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/turns/{turn}/end", Seller, "uyyfffy"),
    ("post", "/v1/markets/{market}/tokens/{token_id}/revoke", Seller, "ufyfyff"),
    ("post", "/v1/markets/{market}/webhooks", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/webhooks/{webhook}/deactivate", Seller, "ufffyff"),
    ("get", "/v1/markets/{market}/channel", Seller, "ufffyff"),
    ("put", "/v1/markets/{market}/channel", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/channel/remove", Seller, "ufffyff"),
    ("put", "/v1/markets/{market}/closes_at", Seller, "ufffyff"),
    ("put", "/v1/markets/{market}/participants/{participant}/mandate", Seller, "ufyfyff"),
    ("put", "/v1/markets/{market}/policy", Seller, "ufffyff"),
    ("put", "/v1/markets/{market}/participants/{participant}/survey", Seller, "ufyffff"),
    // Payments (the fixture market has no provider: an allowed caller meets 422).
    ("put", "/v1/markets/{market}/participants/{participant}/payment_method", Seller, "ufyfyff"),
    ("get", "/v1/markets/{market}/payments/reconcile", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/payments/sync", Seller, "ufffyff"),
    ("post", "/v1/markets/{market}/deals/{deal}/payment/retry", Seller, "uyyyyff"),
];

/// A valid body for each mutation (by its path's last segment), so a refusal is about the caller.
fn body(method: &str, template: &str) -> Option<Value> {
    if method == "get" {
        return None;
    }
    let last = template.rsplit('/').next().unwrap_or_default();
    Some(match (method, last) {
        ("post", "markets") => json!({"name": "Another market"}),
        ("post", "tokens") => json!({"role": "observer", "label": "matrix"}),
        ("post", "participants") => json!({"name": "Newcomer"}),
        ("put", "mandate") => json!({"per_deal_cap": 50_000}),
        ("post", "fund") => json!({"amount": 100}),
        ("post", "freeze") => json!({"frozen": false}),
        ("post", "pause") => json!({"paused": false}),
        ("put", "trading_mode") => json!({"mode": "agent"}),
        ("post", "listings") => {
            json!({"side": "sell", "title": "Chair", "category": "misc", "price": 500})
        }
        ("post", "threads") => json!({"message": "Is it still there?"}),
        ("post", "messages") => json!({"body": "Hello"}),
        ("post", "offers") => json!({"price": 950}),
        ("post", "advance") => json!({"by_ms": 1_000}),
        ("put", "closes_at") => json!({"closes_at": null}),
        ("put", "policy") => json!({"prohibited_terms": ["replica"]}),
        ("post", "remove" | "suspend") => json!({"reason": "Reported as counterfeit"}),
        ("post", "handover") => json!({"note": "Left at the door"}),
        ("post", "ship") => json!({"carrier": "DHL", "tracking": "JJD01"}),
        ("post", "cancel") => json!({"reason": "Changed my mind"}),
        ("post", "dispute") => json!({"reason": "Not as described"}),
        ("post", "evidence") => json!({"body": "A photo"}),
        ("post", "resolve") => json!({"ruling": {"outcome": "refund"}}),
        ("post", "approval") => json!({"approve": true}),
        ("post", "inspection") => json!({"mismatched": []}),
        ("post", "ratings") => json!({"score": 5}),
        ("post", "webhooks") => json!({"url": "http://127.0.0.1:9/other"}),
        ("put", "channel") => json!({"url": "http://127.0.0.1:9/chat", "kinds": ["deal_created"]}),
        ("put", "survey") => json!({"fairness": 5, "satisfaction": 5, "would_pay": 0}),
        ("put", "payment_method") => json!({"customer": "cus_A1", "payment_method": "pm_B2"}),
        // withdraw, walk-away, accept, reject, confirm, deactivate
        _ => json!({}),
    })
}

/// The answer of one cell: `y`, `u`, `f` or `n`.
async fn cell(
    s: &Server,
    other_operator: &str,
    method: &str,
    template: &str,
    who: Subject,
    role: usize,
) -> (char, u16) {
    let fx = Fixture::new(s).await;
    let token = match role {
        0 => None,
        1 => Some(fx.subject(who).agent.as_str()),
        2 => Some(fx.subject(who).principal.as_str()),
        3 => Some(fx.observer.as_str()),
        4 => Some(fx.operator.as_str()),
        5 => Some(other_operator),
        _ => Some(fx.outsider.agent.as_str()),
    };
    let method_ = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let path = fx.path(template, who);
    // The event stream answers with headers and then stays open: read only the status.
    let status = if template.ends_with("/events/stream") {
        let mut req = s.client.get(s.url(&path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let status = req.send().await.expect("stream request").status().as_u16();
        assert_documented(method.into(), &path, status);
        status
    } else {
        s.call(method_, &path, token, body(method, template), None)
            .await
            .0
    };
    let c = match status {
        401 => 'u',
        403 => 'f',
        404 => 'n',
        s if s >= 500 => panic!("{method} {template} as {} answered {s}", ROLES[role]),
        _ => 'y',
    };
    (c, status)
}

#[tokio::test]
async fn every_operation_allows_and_refuses_each_role_as_the_table_says() {
    let s = Server::allowing_private_webhooks().await;
    let other_market = s.market().await;
    let other_operator = token(&s, other_market, "operator").await;

    let doc = document();
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.insert((method.as_str(), path.as_str()));
        }
    }
    let rows: BTreeSet<(&str, &str)> = MATRIX.iter().map(|(m, p, _, _)| (*m, *p)).collect();
    let missing: Vec<_> = operations.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&operations).collect();

    // Every documented operation is called, listed or not, so a missing row shows what it does.
    let mut cases = Vec::new();
    for (method, path) in &operations {
        let who = MATRIX
            .iter()
            .find(|(m, p, _, _)| (m, p) == (method, path))
            .map_or(Seller, |r| r.2);
        for role in 0..ROLES.len() {
            cases.push((*method, *path, who, role));
        }
    }
    let results: Vec<(char, u16)> = futures_util::stream::iter(cases.iter())
        .map(|&(m, p, who, role)| cell(&s, &other_operator, m, p, who, role))
        .buffered(4)
        .collect()
        .await;

    let mut wrong = Vec::new();
    let mut observed = Vec::new();
    for (chunk, row) in results.chunks(ROLES.len()).zip(operations.iter()) {
        let got: String = chunk.iter().map(|(c, _)| *c).collect();
        let (method, path) = row;
        let entry = MATRIX.iter().find(|(m, p, _, _)| (m, p) == (method, path));
        let who = entry.map_or(Seller, |r| r.2);
        observed.push(format!(
            "    (\"{method}\", \"{path}\", {who:?}, \"{got}\"),"
        ));
        if let Some((_, _, _, expected)) = entry
            && *expected != got
        {
            let cells: Vec<String> = ROLES
                .iter()
                .zip(expected.chars().zip(chunk))
                .filter(|(_, (e, (g, _)))| e != g)
                .map(|(role, (e, (g, status)))| format!("{role}: expected {e}, got {g} ({status})"))
                .collect();
            wrong.push(format!("{method} {path}: {}", cells.join("; ")));
        }
    }
    assert!(
        missing.is_empty() && stale.is_empty() && wrong.is_empty(),
        "operations without a row: {missing:?}\nrows without an operation: {stale:?}\n\
         cells that differ:\n{}\nobserved:\n{}",
        wrong.join("\n"),
        observed.join("\n")
    );
}
