//! The OpenAPI document: served without a token, OpenAPI 3.1, and describing exactly the routes
//! the router serves (every path with its methods).

mod support;

use reqwest::Method;
use std::collections::BTreeSet;
use support::*;

/// The router's API routes (src/lib.rs `router`), with their methods. `/healthz` and
/// `/openapi.json` are plumbing, not API operations.
#[rustfmt::skip]
const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/me", &["get"]),
    ("/v1/markets", &["get", "post"]),
    ("/v1/markets/{market}", &["get"]),
    ("/v1/markets/{market}/tokens", &["post"]),
    ("/v1/markets/{market}/tokens/{token_id}/revoke", &["post"]),
    ("/v1/markets/{market}/participants", &["get", "post"]),
    ("/v1/markets/{market}/participants/{participant}", &["get"]),
    ("/v1/markets/{market}/participants/{participant}/balance", &["get"]),
    ("/v1/markets/{market}/participants/{participant}/mandate", &["get", "put"]),
    ("/v1/markets/{market}/participants/{participant}/fund", &["post"]),
    ("/v1/markets/{market}/participants/{participant}/freeze", &["post"]),
    ("/v1/markets/{market}/listings", &["get", "post"]),
    ("/v1/markets/{market}/listings/{listing}", &["get"]),
    ("/v1/markets/{market}/listings/{listing}/withdraw", &["post"]),
    ("/v1/markets/{market}/listings/{listing}/threads", &["post"]),
    ("/v1/markets/{market}/threads", &["get"]),
    ("/v1/markets/{market}/threads/{thread}", &["get"]),
    ("/v1/markets/{market}/threads/{thread}/messages", &["post"]),
    ("/v1/markets/{market}/threads/{thread}/offers", &["post"]),
    ("/v1/markets/{market}/threads/{thread}/walk-away", &["post"]),
    ("/v1/markets/{market}/offers/{offer}/accept", &["post"]),
    ("/v1/markets/{market}/offers/{offer}/reject", &["post"]),
    ("/v1/markets/{market}/offers/{offer}/withdraw", &["post"]),
    ("/v1/markets/{market}/deals", &["get"]),
    ("/v1/markets/{market}/deals/{deal}", &["get"]),
    ("/v1/markets/{market}/events", &["get"]),
    ("/v1/markets/{market}/events/stream", &["get"]),
    ("/v1/markets/{market}/clock/advance", &["post"]),
    ("/v1/markets/{market}/closes_at", &["put"]),
    ("/v1/markets/{market}/ledger/verify", &["get"]),
    ("/v1/markets/{market}/deals/{deal}/handover", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/confirm", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/cancel", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/dispute", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/evidence", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/resolve", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/approval", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/ratings", &["get", "post"]),
    ("/v1/markets/{market}/deals/{deal}/notes", &["get"]),
    ("/v1/markets/{market}/participants/{participant}/reputation", &["get"]),
    ("/v1/markets/{market}/settlement", &["get"]),
    ("/v1/markets/{market}/webhooks", &["get", "post"]),
    ("/v1/markets/{market}/webhooks/{webhook}/deactivate", &["post"]),
    ("/v1/markets/{market}/webhooks/{webhook}/deliveries", &["get"]),
    ("/v1/markets/{market}/summary", &["get"]),
    ("/v1/markets/{market}/disputes", &["get"]),
    ("/v1/markets/{market}/survey", &["get"]),
    ("/v1/markets/{market}/participants/{participant}/survey", &["get", "put"]),
];

#[tokio::test]
async fn openapi_json_is_served_as_openapi_3_1_with_every_route() {
    let s = Server::start().await;
    let (status, doc) = s.call(Method::GET, "/openapi.json", None, None, None).await;
    assert_eq!(status, 200);
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3.1"), "OpenAPI 3.1, got {version}");
    assert_eq!(doc["info"]["title"], "Haggle");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let served: BTreeSet<&str> = ROUTES.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "routes missing from the document"
    );
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "documented paths the router does not serve"
    );
    for (path, methods) in ROUTES {
        let item = paths[*path].as_object().unwrap();
        let documented: BTreeSet<&str> = item
            .keys()
            .map(String::as_str)
            .filter(|k| ["get", "post", "put", "patch", "delete"].contains(k))
            .collect();
        let served: BTreeSet<&str> = methods.iter().copied().collect();
        assert_eq!(documented, served, "methods of {path}");
        for m in *methods {
            assert!(
                item[*m]["responses"].is_object(),
                "{m} {path} documents its responses"
            );
        }
    }
}

/// The hard-coded list above is the router's: each path answers (not the 404 fallback), so the
/// list cannot drift from the router unnoticed.
#[tokio::test]
async fn every_listed_route_is_served() {
    let s = Server::start().await;
    for (path, methods) in ROUTES {
        let concrete = path
            .replace("{market}", "1")
            .replace("{participant}", "1")
            .replace("{listing}", "1")
            .replace("{thread}", "1")
            .replace("{offer}", "1")
            .replace("{deal}", "1")
            .replace("{webhook}", "1")
            .replace("{token_id}", &"a".repeat(64));
        for m in *methods {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
            // Without a token: a served route refuses with 401, an unknown one with 404.
            let r = s.call(method, &concrete, None, None, None).await;
            assert_refusal(&r, 401, "unauthorized");
        }
    }
    let r = s.call(Method::GET, "/healthz", None, None, None).await;
    assert_eq!(r, (200, serde_json::Value::String("ok".into())));
}

#[tokio::test]
async fn every_error_code_is_documented_on_the_error_body() {
    let s = Server::start().await;
    let (_, doc) = s.call(Method::GET, "/openapi.json", None, None, None).await;
    let code = &doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"];
    let text = code["description"].as_str().expect("the code is described");
    for c in haggle_core::ErrorCode::ALL {
        assert!(text.contains(&format!("`{c}`")), "{c} missing from {text}");
    }
}
