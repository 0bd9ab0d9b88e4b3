//! Property-based requests built from the served OpenAPI document: any operation, path ids from a
//! fixture market or made up, query parameters and JSON bodies generated from the operation's
//! schemas (in and out of their bounds, and of the wrong type), by any role. Whatever is asked,
//! the server never answers 5xx and only with a status the operation documents. A second property
//! creates markets with generated rules and clocks and runs a deal's life in each.

mod support;

use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config as RunConfig, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Map, Value, json};
use support::*;

/// How deep generated JSON nests before it stops (objects inside objects).
const MAX_DEPTH: u32 = 4;

/// One generated request.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    template: String,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
    /// Index into the tokens of [`Callers`]; 0 is anonymous.
    caller: usize,
}

/// The ids a path parameter takes: mostly the fixture's (or the other market's), now and then a
/// made-up one.
fn path_id(name: &str, fx: &Fixture, other_market: i64) -> BoxedStrategy<String> {
    // Token ids: unknown or malformed only, so no request revokes a caller the run goes on using.
    if name == "token_id" {
        const IDS: [&str; 4] = ["00", "abc", "-1", "0123456789abcdef"];
        return prop_oneof![
            Just("0".repeat(64)),
            Just("f".repeat(64)),
            prop::sample::select(&IDS[..]).prop_map(String::from),
        ]
        .boxed();
    }
    let real = match name {
        "market" => vec![fx.market, fx.market, fx.market, other_market],
        "participant" => vec![fx.seller.id, fx.buyer.id, fx.outsider.id],
        "listing" => vec![fx.listing],
        "thread" => vec![fx.thread],
        "offer" => vec![fx.offer],
        "deal" => vec![fx.deal],
        "webhook" => vec![fx.webhook],
        // The fixture market has no turns: any turn meets `not_your_turn`.
        "turn" => vec![1, 2],
        other => panic!("no ids for path parameter {other}"),
    };
    const MADE_UP: [&str; 5] = ["0", "-1", "9999999", "abc", "1.5"];
    prop_oneof![
        8 => prop::sample::select(real).prop_map(|id| id.to_string()),
        1 => prop::sample::select(&MADE_UP[..]).prop_map(String::from),
    ]
    .boxed()
}

/// `$ref` resolved against the document.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => resolve(doc, doc.pointer(&r[1..]).expect("the $ref resolves")),
        None => schema,
    }
}

/// A JSON value of any type (what a careless or hostile client sends).
fn any_json() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e15f64..1e15).prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::from),
        prop::collection::vec(any::<i32>().prop_map(Value::from), 0..3).prop_map(Value::from),
        Just(json!({"unexpected": 1})),
    ]
    .boxed()
}

/// Values for a schema: mostly of its shape (integers also just outside their bounds), sometimes
/// of any type.
fn value(doc: &Value, schema: &Value, depth: u32) -> BoxedStrategy<Value> {
    let typed = typed_value(doc, resolve(doc, schema), depth);
    prop_oneof![12 => typed, 1 => any_json()].boxed()
}

fn typed_value(doc: &Value, schema: &Value, depth: u32) -> BoxedStrategy<Value> {
    if depth > MAX_DEPTH {
        return Just(Value::Null).boxed();
    }
    if let Some(options) = schema["enum"].as_array() {
        return prop::sample::select(options.clone()).boxed();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            return Union::new(options.iter().map(|o| value(doc, o, depth + 1))).boxed();
        }
    }
    if let Some(parts) = schema["allOf"].as_array() {
        return object(doc, parts.iter().map(|p| resolve(doc, p)).collect(), depth);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if types.is_empty() {
        return any_json();
    }
    Union::new(types.into_iter().map(|t| {
        match t {
            "integer" => integer(schema),
            "number" => (-1e6f64..1e6).prop_map(|f| json!(f)).boxed(),
            "boolean" => any::<bool>().prop_map(Value::from).boxed(),
            "null" => Just(Value::Null).boxed(),
            // Printable text (no control characters: NUL bytes are being handled separately).
            "string" => "\\PC{0,16}".prop_map(Value::from).boxed(),
            "array" => prop::collection::vec(value(doc, &schema["items"], depth + 1), 0..3)
                .prop_map(Value::from)
                .boxed(),
            _ => object(doc, vec![schema], depth),
        }
    }))
    .boxed()
}

/// Integers inside the schema's bounds, on and just past them, and anywhere.
fn integer(schema: &Value) -> BoxedStrategy<Value> {
    let min = schema["minimum"].as_i64();
    let max = schema["maximum"].as_i64();
    let lo = min.unwrap_or(-1_000);
    let hi = max.unwrap_or(lo.saturating_add(10_000)).max(lo);
    let edges: Vec<i64> = [min, max]
        .into_iter()
        .flatten()
        .flat_map(|b| [b.saturating_sub(1), b, b.saturating_add(1)])
        .chain([0, -1, i64::MAX, i64::MIN])
        .collect();
    prop_oneof![
        4 => (lo..=hi).prop_map(Value::from),
        2 => prop::sample::select(edges).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
    ]
    .boxed()
}

/// An object with the properties of `parts` (all of `allOf`): required ones always, optional
/// ones half the time, and now and then a field nobody declared.
fn object(doc: &Value, parts: Vec<&Value>, depth: u32) -> BoxedStrategy<Value> {
    let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    for part in parts {
        let required: Vec<&str> = part["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (name, schema) in part["properties"].as_object().into_iter().flatten() {
            let name = name.clone();
            let v = value(doc, schema, depth + 1);
            let field = if required.contains(&name.as_str()) {
                v.prop_map(move |v| Some((name.clone(), v))).boxed()
            } else {
                prop::option::of(v.prop_map(move |v| (name.clone(), v))).boxed()
            };
            fields.push(field);
        }
    }
    let extra = prop::option::weighted(0.05, Just(("surprise".to_string(), json!(true))));
    (fields, extra)
        .prop_map(|(fields, extra)| {
            let map: Map<String, Value> = fields.into_iter().chain([extra]).flatten().collect();
            Value::Object(map)
        })
        .boxed()
}

/// A query parameter's text: a value of its schema, or any text.
fn query_text(doc: &Value, schema: &Value) -> BoxedStrategy<String> {
    let as_text = |v: Value| match v {
        Value::String(s) => s,
        other => other.to_string(),
    };
    prop_oneof![
        6 => typed_value(doc, resolve(doc, schema), MAX_DEPTH).prop_map(as_text),
        1 => "\\PC{0,8}",
    ]
    .boxed()
}

/// Requests for one operation of the document.
fn requests(
    doc: &Value,
    method: &str,
    template: &str,
    op: &Value,
    fx: &Fixture,
    other_market: i64,
    callers: usize,
) -> BoxedStrategy<Request> {
    let mut path_params: Vec<BoxedStrategy<(String, String)>> = Vec::new();
    let mut query_params: Vec<BoxedStrategy<Option<(String, String)>>> = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap().to_string();
        match p["in"].as_str() {
            Some("path") => {
                let id = path_id(&name, fx, other_market);
                path_params.push(id.prop_map(move |v| (name.clone(), v)).boxed());
            }
            Some("query") => query_params.push(
                prop::option::of(
                    query_text(doc, &p["schema"]).prop_map(move |v| (name.clone(), v)),
                )
                .boxed(),
            ),
            _ => {}
        }
    }
    let body_schema = op["requestBody"]["content"]["application/json"]["schema"].clone();
    let body: BoxedStrategy<Option<Value>> = match method {
        "get" => Just(None).boxed(),
        _ if body_schema.is_null() => {
            prop_oneof![4 => Just(Some(json!({}))), 1 => any_json().prop_map(Some)].boxed()
        }
        _ => value(doc, &body_schema, 0).prop_map(Some).boxed(),
    };
    let (method, template) = (method.to_string(), template.to_string());
    (path_params, query_params, body, 0..callers)
        .prop_map(move |(path_params, query, body, caller)| {
            let path = path_params.iter().fold(template.clone(), |p, (name, v)| {
                p.replace(&format!("{{{name}}}"), v)
            });
            Request {
                method: method.clone(),
                template: template.clone(),
                path,
                query: query.into_iter().flatten().collect(),
                body,
                caller,
            }
        })
        .boxed()
}

/// Sends a request and returns its status (599 when the connection dropped); a stream's body is
/// not read.
async fn send(s: &Server, tokens: &[Option<String>], r: &Request) -> u16 {
    let method = reqwest::Method::from_bytes(r.method.to_uppercase().as_bytes()).unwrap();
    let url = reqwest::Url::parse_with_params(&s.url(&r.path), &r.query).expect("a URL");
    let mut req = s.client.request(method, url);
    if let Some(t) = &tokens[r.caller] {
        req = req.bearer_auth(t);
    }
    if let Some(b) = &r.body {
        req = req
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    // A handler that panics drops the connection: count it as the 5xx it stands for.
    req.send().await.map_or(599, |resp| resp.status().as_u16())
}

#[test]
fn generated_requests_get_no_5xx_and_only_documented_statuses() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (s, fx, other_market) = rt.block_on(async {
        let s = Server::allowing_private_webhooks().await;
        let other_market = s.market().await;
        let fx = Fixture::new(&s).await;
        (s, fx, other_market)
    });
    let tokens: Vec<Option<String>> = vec![
        None,
        Some(fx.seller.agent.clone()),
        Some(fx.buyer.agent.clone()),
        Some(fx.seller.principal.clone()),
        Some(fx.observer.clone()),
        Some(fx.operator.clone()),
        Some(s.operator.clone()),
        Some(fx.outsider.agent.clone()),
    ];
    let doc = document();
    let mut ops = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push(requests(
                doc,
                method,
                template,
                op,
                &fx,
                other_market,
                tokens.len(),
            ));
        }
    }
    let mut runner = TestRunner::new(RunConfig {
        cases: 2000,
        failure_persistence: None,
        ..RunConfig::default()
    });
    let successes = std::sync::Mutex::new(0);
    let result = runner.run(&Union::new(ops), |r| {
        let status = rt.block_on(send(&s, &tokens, &r));
        if status < 300 {
            *successes.lock().unwrap() += 1;
        }
        if status >= 500 {
            return Err(TestCaseError::fail(format!("answered {status}")));
        }
        let documented = doc["paths"][&r.template][&r.method]["responses"]
            .get(status.to_string())
            .is_some();
        if !documented {
            return Err(TestCaseError::fail(format!("undocumented status {status}")));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator reaches the handlers, not only the refusals in front of them.
    assert!(
        *successes.lock().unwrap() > 0,
        "no generated request succeeded"
    );
}

/// The life of one deal in a market created with generated rules and clock: every step answers
/// without a 5xx and with a documented status (`Server::call` checks it), whatever the rules.
/// `Ok(false)` when the market was (rightly) refused.
async fn trade_under(s: &Server, create: &Value) -> std::result::Result<bool, String> {
    let (status, market) = s
        .call(
            Method::POST,
            "/v1/markets",
            Some(&s.operator),
            Some(create.clone()),
            None,
        )
        .await;
    if status != 201 {
        return if status < 500 {
            Ok(false)
        } else {
            Err(format!("create answered {status}"))
        };
    }
    let m = market["id"].as_i64().unwrap();
    let seller = s.participant(m, "Seller", 0).await;
    let buyer = s.participant(m, "Buyer", 1_000_000).await;
    let op = s.operator.as_str();
    let mut statuses = Vec::new();
    let mut step = async |path: String, token: &str, body: Value| {
        let r = s
            .call(
                Method::POST,
                &format!("/v1/markets/{m}{path}"),
                Some(token),
                Some(body),
                None,
            )
            .await;
        statuses.push((path, r.0));
        r.1
    };
    let listing = step(
        "/listings".into(),
        &seller.agent,
        json!({"side": "sell", "title": "Lamp", "category": "home", "price": 1_000}),
    )
    .await;
    let l = listing["id"].as_i64().unwrap_or(0);
    let opened = step(
        format!("/listings/{l}/threads"),
        &buyer.agent,
        json!({"price": 900, "message": "Hello"}),
    )
    .await;
    let offer = opened["offer"]["id"].as_i64().unwrap_or(0);
    let t = opened["thread"]["id"].as_i64().unwrap_or(0);
    step(
        format!("/threads/{t}/offers"),
        &seller.agent,
        json!({"price": 950}),
    )
    .await;
    let counter = step(
        format!("/threads/{t}/offers"),
        &buyer.agent,
        json!({"price": 950, "expires_in_ms": 1_000}),
    )
    .await;
    let accepted = step(
        format!("/offers/{}/accept", counter["id"].as_i64().unwrap_or(offer)),
        &seller.agent,
        json!({}),
    )
    .await;
    let d = accepted["id"].as_i64().unwrap_or(0);
    step(
        format!("/deals/{d}/approval"),
        &buyer.principal,
        json!({"approve": true}),
    )
    .await;
    step(format!("/deals/{d}/handover"), &seller.agent, json!({})).await;
    step(
        format!("/deals/{d}/dispute"),
        &buyer.agent,
        json!({"reason": "Scratched"}),
    )
    .await;
    step(
        format!("/deals/{d}/resolve"),
        op,
        json!({"ruling": {"outcome": "split", "to_buyer": 100}}),
    )
    .await;
    step(
        format!("/deals/{d}/ratings"),
        &buyer.agent,
        json!({"score": 4}),
    )
    .await;
    step(
        "/clock/advance".into(),
        op,
        json!({"by_ms": 366 * 86_400_000_i64}),
    )
    .await;
    s.advance(400 * 86_400_000);
    for read in [
        "/summary",
        "/events",
        "/deals",
        "/settlement",
        "/ledger/verify",
    ] {
        let r = s.get(&format!("/v1/markets/{m}{read}"), op).await;
        statuses.push((read.into(), r.0));
    }
    match statuses.iter().find(|(_, status)| *status >= 500) {
        Some((path, status)) => Err(format!("{path} answered {status}")),
        None => Ok(true),
    }
}

#[test]
fn any_market_the_api_accepts_can_be_traded_in_without_a_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(Server::allowing_private_webhooks());
    let doc = document();
    let create = &doc["components"]["schemas"]["CreateMarket"];
    let mut runner = TestRunner::new(RunConfig {
        cases: 200,
        failure_persistence: None,
        ..RunConfig::default()
    });
    // Generated rules and clocks; a name and currency that pass, so most markets get created.
    let bodies = typed_value(doc, create, 0).prop_map(|mut body| {
        if let Some(b) = body.as_object_mut() {
            b.insert("name".into(), json!("Generated"));
            b.insert("currency".into(), json!("USD"));
        }
        body
    });
    let created = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&bodies, |body| {
        let outcome = rt
            .block_on(trade_under(&s, &body))
            .map_err(TestCaseError::fail)?;
        if outcome {
            created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let created = created.into_inner();
    assert!(
        created >= 10,
        "only {created} of 200 generated markets were accepted"
    );
}
