//! The OpenAPI document: served without a token, valid OpenAPI 3.1 (checked against the official
//! schema, vendored in `fixtures/`) with every `$ref` resolving, describing exactly the routes the
//! router serves (every path with its methods) and the error statuses each can return.

mod support;

use reqwest::Method;
use serde_json::Value;
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
    ("/v1/markets/{market}/participants/{participant}/pause", &["post"]),
    ("/v1/markets/{market}/participants/{participant}/trading_mode", &["put"]),
    ("/v1/markets/{market}/listings", &["get", "post"]),
    ("/v1/markets/{market}/listings/{listing}", &["get"]),
    ("/v1/markets/{market}/listings/{listing}/withdraw", &["post"]),
    ("/v1/markets/{market}/listings/{listing}/threads", &["post"]),
    ("/v1/markets/{market}/threads", &["get"]),
    ("/v1/markets/{market}/threads/{thread}", &["get"]),
    ("/v1/markets/{market}/threads/{thread}/messages", &["get", "post"]),
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
    ("/v1/markets/{market}/deals/{deal}/ship", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/confirm", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/cancel", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/dispute", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/evidence", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/resolve", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/approval", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/inspection", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/ratings", &["get", "post"]),
    ("/v1/markets/{market}/deals/{deal}/notes", &["get"]),
    ("/v1/markets/{market}/participants/{participant}/reputation", &["get"]),
    ("/v1/markets/{market}/settlement", &["get"]),
    ("/v1/markets/{market}/webhooks", &["get", "post"]),
    ("/v1/markets/{market}/webhooks/{webhook}/deactivate", &["post"]),
    ("/v1/markets/{market}/webhooks/{webhook}/deliveries", &["get"]),
    ("/v1/markets/{market}/channel", &["get", "put"]),
    ("/v1/markets/{market}/channel/remove", &["post"]),
    ("/v1/markets/{market}/summary", &["get"]),
    ("/v1/markets/{market}/disputes", &["get"]),
    ("/v1/markets/{market}/survey", &["get"]),
    ("/v1/markets/{market}/participants/{participant}/survey", &["get", "put"]),
    ("/v1/markets/{market}/policy", &["get", "put"]),
    ("/v1/markets/{market}/moderation", &["get"]),
    ("/v1/markets/{market}/listings/{listing}/approve", &["post"]),
    ("/v1/markets/{market}/listings/{listing}/remove", &["post"]),
    ("/v1/markets/{market}/participants/{participant}/suspend", &["post"]),
    ("/v1/markets/{market}/participants/{participant}/payment_method", &["put"]),
    ("/v1/markets/{market}/payments/reconcile", &["get"]),
    ("/v1/markets/{market}/payments/sync", &["post"]),
    ("/v1/markets/{market}/deals/{deal}/payment/retry", &["post"]),
    ("/v1/markets/{market}/participants/{participant}/reinstate", &["post"]),
    ("/v1/markets/{market}/turns/{turn}/end", &["post"]),
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

/// The official JSON Schema of OpenAPI 3.1 documents (spec.openapis.org/oas/3.1/schema/2022-10-07).
const OAS_3_1_SCHEMA: &str = include_str!("fixtures/oas-3.1-schema.json");

fn document() -> Value {
    serde_json::to_value(haggle_http::openapi()).expect("the document serialises")
}

#[test]
fn the_document_is_valid_against_the_openapi_3_1_schema() {
    let schema: Value = serde_json::from_str(OAS_3_1_SCHEMA).expect("the vendored schema parses");
    let validator = jsonschema::validator_for(&schema).expect("the OAS schema compiles");
    let doc = document();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not valid OpenAPI 3.1:\n{}",
        errors.join("\n")
    );
}

/// The OAS schema leaves Schema Objects to JSON Schema 2020-12: each is checked against it.
#[test]
fn every_schema_is_valid_json_schema_2020_12() {
    let doc = document();
    let mut schemas = Vec::new();
    collect_schemas(&doc, "", &mut schemas);
    assert!(schemas.len() > 50, "schemas found: {}", schemas.len());
    for (at, schema) in schemas {
        if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
            panic!("{at} is not a valid JSON Schema: {e}");
        }
    }
}

/// Every value under a `schema` key and every component schema, with its JSON pointer.
fn collect_schemas<'a>(v: &'a Value, at: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{at}/{k}");
                if k == "schema" || at == "/components/schemas" {
                    out.push((here.clone(), child));
                }
                collect_schemas(child, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_schemas(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_ref_resolves_inside_the_document() {
    let doc = document();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r} points outside the document"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|c| collect_refs(c, out));
        }
        Value::Array(items) => items.iter().for_each(|c| collect_refs(c, out)),
        _ => {}
    }
}

/// Query strings are query parameters: none is documented as part of the path unless the path
/// names it, and every path parameter is in the path.
#[test]
fn parameters_are_where_the_router_reads_them() {
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let placeholder = format!("{{{name}}}");
                let expected = if path.contains(&placeholder) {
                    "path"
                } else if name == "Idempotency-Key" {
                    "header"
                } else {
                    "query"
                };
                assert_eq!(p["in"], expected, "{method} {path} parameter {name}");
                assert_eq!(
                    p["required"],
                    expected == "path",
                    "{method} {path} {name} required"
                );
            }
        }
    }
}

/// The bounds the server enforces are in the schemas, so clients and fuzzers see them.
#[test]
fn enforced_bounds_are_documented() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let bounds = |schema: &str, field: &str| {
        let f = &schemas[schema]["properties"][field];
        (f["minimum"].as_i64(), f["maximum"].as_i64())
    };
    assert_eq!(bounds("RateDeal", "score"), (Some(1), Some(5)));
    assert_eq!(bounds("AnswerSurvey", "fairness"), (Some(1), Some(7)));
    assert_eq!(
        bounds("MakeOffer", "price"),
        (Some(1), Some(1_000_000_000_000))
    );
    assert_eq!(bounds("MakeOffer", "expires_in_ms"), (Some(1), None));
    assert_eq!(
        bounds("AdvanceClock", "by_ms"),
        (Some(1), Some(366 * 86_400_000))
    );
    let limit = |path: &str| {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let p = params.iter().find(|p| p["name"] == "limit").unwrap();
        (
            p["schema"]["minimum"].as_i64(),
            p["schema"]["maximum"].as_i64(),
        )
    };
    assert_eq!(limit("/v1/markets/{market}/listings"), (Some(1), Some(500)));
    assert_eq!(limit("/v1/markets/{market}/deals"), (Some(1), Some(500)));
    assert_eq!(limit("/v1/markets/{market}/events"), (Some(1), Some(1000)));
}

/// Every operation documents a success and the refusals every route can give: 401 (no token)
/// and 429 (rate limit); mutations also 409 and 422. The statuses actually returned are checked
/// against the document on every request the HTTP tests send (`support::Server::raw`).
#[test]
fn every_operation_documents_its_error_statuses() {
    let doc = document();
    for (path, methods) in ROUTES {
        for m in *methods {
            let responses = doc["paths"][*path][*m]["responses"].as_object().unwrap();
            // 403: every token is checked for a suspension (`participant_suspended`).
            let mut expected = vec!["401", "403", "429"];
            if *m != "get" {
                expected.extend(["409", "422"]);
            }
            for status in expected {
                let r = &responses.get(status);
                let r = r.unwrap_or_else(|| panic!("{m} {path} does not document {status}"));
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody"
                );
            }
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{m} {path} documents a success"
            );
        }
    }
}

/// The check every HTTP test's requests go through refuses a status its operation lacks.
#[test]
#[should_panic(expected = "does not document")]
fn an_undocumented_status_fails_the_request_check() {
    // `/v1/me` names nothing, so it cannot answer 404.
    assert_documented("get".into(), "/v1/me", 404);
}

#[test]
fn a_documented_status_passes_the_request_check() {
    assert_documented("get".into(), "/v1/markets/7/listings?limit=3", 422);
    assert_eq!(
        template_of("/v1/markets/7/deals/3/ratings"),
        Some("/v1/markets/{market}/deals/{deal}/ratings")
    );
}
