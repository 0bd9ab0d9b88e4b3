//! The OpenAI-compatible backend against a local fake server: the exact request in both output
//! modes (function calling; JSON constrained by a schema built from the tools, with the fallback
//! to OpenAI's `json_schema` form), tool calls with good and broken arguments, usage with cached
//! tokens, and 429/5xx/timeouts.

mod fake_llm;

use fake_llm::{FakeLlm, Reply};
use haggle_agents::llm::openai::{OpenAi, OutputMode};
use haggle_agents::llm::*;
use serde_json::{Value, json};
use std::time::Duration;

fn policy() -> CallPolicy {
    CallPolicy {
        timeout: Duration::from_millis(2_000),
        max_attempts: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(3_000),
        completion_tokens: None,
        strict_schemas: None,
        thinking: Thinking::Off,
    }
}

fn model(fake: &FakeLlm, mode: OutputMode) -> OpenAi {
    OpenAi::new(
        "gpt-test",
        Some("sk-test".into()),
        Some(format!("{}/v1", fake.base)),
        mode,
        policy(),
    )
    .unwrap()
}

fn offer_tool() -> ToolSpec {
    ToolSpec {
        name: "make_offer".into(),
        description: "Make a binding offer in a thread.\nMore detail.".into(),
        input_schema: json!({
            "type": "object",
            "properties": {"thread_id": {"type": "integer"}, "message": {"type": "string"}},
            "required": ["thread_id"],
        }),
    }
}

fn request() -> ChatRequest {
    ChatRequest {
        system: "You are the trading agent of Ada.".into(),
        messages: vec![ChatMessage::User {
            text: "Thread 7: the buyer offers 4000.".into(),
        }],
        tools: vec![offer_tool()],
        max_tokens: 256,
        temperature: Some(0.25),
        seed: Some(9),
    }
}

fn completion(message: Value, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 30,
                  "prompt_tokens_details": {"cached_tokens": 768}},
    })
}

#[tokio::test]
async fn sends_function_calling_requests_and_reads_tool_calls() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::json(completion(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "make_offer", "arguments": "{\"thread_id\": 7}"}},
            {"id": "call_b", "type": "function",
             "function": {"name": "make_offer", "arguments": "{\"thread_id\": 7, \"mess"}},
            {"id": "call_c", "type": "function",
             "function": {"name": "teleport", "arguments": "{}"}},
        ]}),
        "tool_calls",
    ))]);
    let (r, ex) = model(&fake, OutputMode::Tools).chat(&request()).await;
    let r = r.unwrap();
    let req = &fake.requests()[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.headers["authorization"], "Bearer sk-test");
    assert_eq!(
        req.body,
        json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You are the trading agent of Ada."},
                {"role": "user", "content": "Thread 7: the buyer offers 4000."},
            ],
            "max_tokens": 256,
            "temperature": 0.25,
            "seed": 9,
            "tools": [{"type": "function", "function": {
                "name": "make_offer", "description": "Make a binding offer in a thread.\nMore detail.",
                "parameters": offer_tool().input_schema}}],
            "tool_choice": "auto",
        })
    );
    assert_eq!(r.stop, StopReason::ToolUse);
    assert_eq!(r.tool_calls.len(), 3);
    assert_eq!(r.tool_calls[0].arguments, json!({"thread_id": 7}));
    assert!(r.tool_calls[0].malformed.is_none());
    assert!(
        r.tool_calls[1]
            .malformed
            .as_deref()
            .unwrap()
            .contains("not valid JSON"),
        "cut-off arguments are flagged, not guessed"
    );
    assert_eq!(
        r.tool_calls[1].arguments,
        json!("{\"thread_id\": 7, \"mess"),
        "and kept as sent"
    );
    assert_eq!(
        r.tool_calls[2].name, "teleport",
        "an unknown tool is the brain's to refuse"
    );
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 232,
            output_tokens: 30,
            cache_read_tokens: 768,
            cache_write_tokens: 0
        }
    );
    assert_eq!(ex.request, req.body);
}

#[tokio::test]
async fn tool_results_go_back_as_tool_messages() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::json(completion(
        json!({"role": "assistant", "content": "done"}),
        "stop",
    ))]);
    let mut req = request();
    req.messages.push(ChatMessage::Assistant {
        thinking: Vec::new(),
        text: String::new(),
        tool_calls: vec![ToolCall {
            id: "call_b".into(),
            name: "make_offer".into(),
            arguments: json!("{\"thread_id\": 7, \"mess"),
            malformed: Some("not valid JSON".into()),
        }],
    });
    req.messages.push(ChatMessage::ToolResults {
        results: vec![ToolResult {
            call_id: "call_b".into(),
            name: "make_offer".into(),
            content: "invalid_arguments: not valid JSON".into(),
            is_error: true,
        }],
        note: Some("Try again.".into()),
    });
    let (r, _) = model(&fake, OutputMode::Tools).chat(&req).await;
    assert_eq!(r.unwrap().text, "done");
    let msgs = &fake.requests()[0].body["messages"];
    assert_eq!(
        msgs[2],
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_b",
               "type": "function", "function": {"name": "make_offer",
               "arguments": "{\"thread_id\": 7, \"mess"}}]})
    );
    assert_eq!(
        msgs[3],
        json!({"role": "tool", "tool_call_id": "call_b", "content": "invalid_arguments: not valid JSON"})
    );
    assert_eq!(msgs[4], json!({"role": "user", "content": "Try again."}));
}

#[tokio::test]
async fn json_mode_constrains_the_reply_to_one_tool_or_words() {
    let fake = FakeLlm::start().await;
    fake.script([
        Reply::json(completion(
            json!({"role": "assistant",
                   "content": "{\"action\": \"make_offer\", \"arguments\": {\"thread_id\": 7, \"message\": \"ok\"}}"}),
            "stop",
        )),
        Reply::json(completion(
            json!({"role": "assistant", "content": "{\"action\": \"reply\", \"arguments\": {\"text\": \"Nothing to do.\"}}"}),
            "stop",
        )),
        Reply::json(completion(
            json!({"role": "assistant", "content": "{\"action\": \"make_off"}),
            "length",
        )),
    ]);
    let m = model(&fake, OutputMode::Json);
    let (r, _) = m.chat(&request()).await;
    let r = r.unwrap();
    assert_eq!(r.tool_calls.len(), 1);
    assert_eq!(r.tool_calls[0].name, "make_offer");
    assert_eq!(
        r.tool_calls[0].arguments,
        json!({"thread_id": 7, "message": "ok"})
    );
    let body = &fake.requests()[0].body;
    assert!(
        body.get("tools").is_none(),
        "no function calling in JSON mode"
    );
    let rf = &body["response_format"];
    assert_eq!(rf["type"], "json_object");
    let options = rf["schema"]["anyOf"].as_array().unwrap();
    assert_eq!(options.len(), 2, "one option per tool, plus reply");
    assert_eq!(
        options[0]["properties"]["action"],
        json!({"const": "make_offer"})
    );
    let args = &options[0]["properties"]["arguments"];
    assert_eq!(args["additionalProperties"], json!(false));
    assert_eq!(args["properties"]["message"]["maxLength"], json!(120));
    assert_eq!(
        options[1]["properties"]["action"],
        json!({"const": "reply"})
    );
    let system = body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("- make_offer (message, thread_id): Make a binding offer in a thread.\n"),
        "the tools are described in the prompt: {system}"
    );

    let (r, _) = m.chat(&request()).await;
    let r = r.unwrap();
    assert_eq!((r.text.as_str(), r.tool_calls.len()), ("Nothing to do.", 0));

    let (r, _) = m.chat(&request()).await;
    let r = r.unwrap();
    assert_eq!(r.stop, StopReason::MaxTokens);
    assert!(r.format_error.unwrap().contains("not valid JSON"));
    assert_eq!(r.text, "{\"action\": \"make_off", "the raw reply is kept");
}

/// OpenAI's answer to `max_tokens` for its newer models, word for word.
const MAX_TOKENS_REFUSED: &str = r#"{"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}"#;

/// OpenAI's answer to a temperature its reasoning models do not take.
const TEMPERATURE_REFUSED: &str = r#"{"error": {"message": "Unsupported value: 'temperature' does not support 0.25 with this model. Only the default (1) value is supported.", "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}}"#;

fn words(text: &str) -> Reply {
    Reply::json(completion(
        json!({"role": "assistant", "content": text}),
        "stop",
    ))
}

#[tokio::test]
async fn a_model_refusing_max_tokens_gets_max_completion_tokens_from_then_on() {
    let fake = FakeLlm::start().await;
    fake.script([
        Reply::status(400, MAX_TOKENS_REFUSED),
        Reply::status(400, TEMPERATURE_REFUSED),
        words("first"),
        words("second"),
    ]);
    let m = model(&fake, OutputMode::Tools);
    let (r, ex) = m.chat(&request()).await;
    assert_eq!(r.unwrap().text, "first");
    assert_eq!(ex.attempts, 3);
    let reqs = fake.requests();
    assert_eq!(reqs[0].body["max_tokens"], 256);
    assert_eq!(reqs[1].body["max_completion_tokens"], 256);
    assert!(reqs[1].body.get("max_tokens").is_none(), "{}", reqs[1].body);
    assert_eq!(reqs[1].body["temperature"], 0.25);
    assert!(
        reqs[2].body.get("temperature").is_none(),
        "{}",
        reqs[2].body
    );
    assert_eq!(
        ex.request, reqs[2].body,
        "the log holds the request that worked"
    );
    // And every attempt before it: the request each sent, and the refusal each got.
    assert_eq!(ex.earlier.len(), 2);
    for (i, a) in ex.earlier.iter().enumerate() {
        assert_eq!(a.request.as_ref(), Some(&reqs[i].body), "attempt {}", i + 1);
        assert_eq!(a.status, Some(400));
    }
    assert!(
        ex.earlier[0].error.contains("max_tokens"),
        "{:?}",
        ex.earlier[0]
    );
    assert_eq!(
        ex.earlier[1].response.as_ref().unwrap()["error"]["param"],
        "temperature"
    );
    // Remembered for the model: the next call is right the first time.
    let (r, ex) = m.chat(&request()).await;
    assert_eq!(r.unwrap().text, "second");
    assert_eq!(ex.attempts, 1);
    let next = &fake.requests()[3].body;
    assert_eq!(next["max_completion_tokens"], 256);
    assert!(next.get("max_tokens").is_none() && next.get("temperature").is_none());
}

#[tokio::test]
async fn a_reasoning_model_or_the_flag_starts_with_max_completion_tokens() {
    let fake = FakeLlm::start().await;
    fake.script([words("o3"), words("flag")]);
    let o3 = OpenAi::new(
        "o3-mini",
        Some("sk-test".into()),
        Some(format!("{}/v1", fake.base)),
        OutputMode::Tools,
        policy(),
    )
    .unwrap();
    let (r, ex) = o3.chat(&request()).await;
    assert_eq!((r.unwrap().text.as_str(), ex.attempts), ("o3", 1));
    let first = &fake.requests()[0].body;
    assert_eq!(first["max_completion_tokens"], 256);
    assert!(first.get("max_tokens").is_none() && first.get("temperature").is_none());
    let flagged = OpenAi::new(
        "gpt-test",
        Some("sk-test".into()),
        Some(format!("{}/v1", fake.base)),
        OutputMode::Tools,
        CallPolicy {
            completion_tokens: Some(true),
            ..policy()
        },
    )
    .unwrap();
    flagged.chat(&request()).await.0.unwrap();
    let second = &fake.requests()[1].body;
    assert_eq!(second["max_completion_tokens"], 256);
    assert_eq!(
        second["temperature"], 0.25,
        "the flag changes only the limit's name"
    );
}

/// Issue 25: OpenAI's own API gets strict function schemas (other servers only when asked).
#[tokio::test]
async fn strict_function_schemas_close_every_object_and_require_every_property() {
    let fake = FakeLlm::start().await;
    fake.script([words("plain"), words("strict")]);
    model(&fake, OutputMode::Tools)
        .chat(&request())
        .await
        .0
        .unwrap();
    let plain = &fake.requests()[0].body["tools"][0]["function"];
    assert!(
        plain.get("strict").is_none(),
        "a local server gets the schema as it is"
    );
    let strict = OpenAi::new(
        "gpt-test",
        Some("sk-test".into()),
        Some(format!("{}/v1", fake.base)),
        OutputMode::Tools,
        CallPolicy {
            strict_schemas: Some(true),
            ..policy()
        },
    )
    .unwrap();
    strict.chat(&request()).await.0.unwrap();
    let f = &fake.requests()[1].body["tools"][0]["function"];
    assert_eq!(f["strict"], true);
    let p = &f["parameters"];
    assert_eq!(p["additionalProperties"], false);
    let mut required: Vec<&str> = p["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["message", "thread_id"]);
    assert_eq!(p["properties"]["thread_id"]["type"], "integer");
    assert_eq!(
        p["properties"]["message"]["type"],
        json!(["string", "null"])
    );
}

/// Issue 25: JSON mode asks OpenAI's own API for strict structured output from the first call.
#[tokio::test]
async fn strict_json_mode_sends_a_strict_json_schema_first() {
    let fake = FakeLlm::start().await;
    fake.script([words(
        "{\"action\": \"reply\", \"arguments\": {\"text\": \"hi\"}}",
    )]);
    let m = OpenAi::new(
        "gpt-test",
        Some("sk-test".into()),
        Some(format!("{}/v1", fake.base)),
        OutputMode::Json,
        CallPolicy {
            strict_schemas: Some(true),
            ..policy()
        },
    )
    .unwrap();
    let (r, ex) = m.chat(&request()).await;
    assert_eq!((r.unwrap().text.as_str(), ex.attempts), ("hi", 1));
    let rf = &fake.requests()[0].body["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(rf["json_schema"]["strict"], true);
    let schema = &rf["json_schema"]["schema"];
    assert_eq!(schema["type"], "object", "a strict root is an object");
    assert_eq!(
        schema["properties"]["action"]["enum"],
        json!(["make_offer", "reply"])
    );
    assert_eq!(schema["additionalProperties"], false);
}

#[tokio::test]
async fn a_refusal_naming_another_parameter_is_not_retried() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::status(
        400,
        r#"{"error": {"message": "Invalid value for 'seed'.", "type": "invalid_request_error", "param": "seed"}}"#,
    )]);
    let m = model(&fake, OutputMode::Tools);
    let (r, ex) = m.chat(&request()).await;
    assert!(
        matches!(r, Err(ChatError::Http { status: 400, .. })),
        "{r:?}"
    );
    assert_eq!(ex.attempts, 1);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn json_mode_falls_back_to_the_json_schema_form_when_the_server_refuses_a_schema() {
    let fake = FakeLlm::start().await;
    fake.script([
        Reply::status(400, r#"{"error": {"message": "Unrecognized request argument: schema"}}"#),
        Reply::json(completion(
            json!({"role": "assistant", "content": "{\"action\": \"reply\", \"arguments\": {\"text\": \"hi\"}}"}),
            "stop",
        )),
        Reply::json(completion(
            json!({"role": "assistant", "content": "{\"action\": \"reply\", \"arguments\": {\"text\": \"again\"}}"}),
            "stop",
        )),
    ]);
    let m = model(&fake, OutputMode::Json);
    let (r, ex) = m.chat(&request()).await;
    assert_eq!(r.unwrap().text, "hi");
    assert_eq!(ex.attempts, 2);
    let reqs = fake.requests();
    assert_eq!(reqs[1].body["response_format"]["type"], "json_schema");
    assert_eq!(
        reqs[1].body["response_format"]["json_schema"]["schema"],
        reqs[0].body["response_format"]["schema"]
    );
    let (r, _) = m.chat(&request()).await;
    assert_eq!(r.unwrap().text, "again");
    assert_eq!(
        fake.requests()[2].body["response_format"]["type"],
        "json_schema",
        "the working form is remembered"
    );
}

#[tokio::test]
async fn rate_limits_server_errors_and_timeouts_are_retried() {
    let fake = FakeLlm::start().await;
    let ok = completion(json!({"role": "assistant", "content": "fine"}), "stop");
    fake.script([
        Reply::status(
            429,
            r#"{"error": {"message": "Rate limit", "type": "requests"}}"#,
        )
        .header("retry-after-ms", "300"),
        Reply::status(503, "upstream unavailable"),
        Reply::json(ok.clone()),
    ]);
    let (r, ex) = model(&fake, OutputMode::Tools).chat(&request()).await;
    assert_eq!(r.unwrap().text, "fine");
    assert_eq!(ex.attempts, 3);
    assert!(ex.latency_ms >= 300, "{} ms", ex.latency_ms);
    // The log keeps both failed attempts with what the server said; their request was the
    // final one, so it is not repeated.
    let seen: Vec<(Option<u16>, Option<&Value>)> = ex
        .earlier
        .iter()
        .map(|a| (a.status, a.response.as_ref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                Some(429),
                Some(&json!({"error": {"message": "Rate limit", "type": "requests"}}))
            ),
            (Some(503), Some(&json!({"raw": "upstream unavailable"}))),
        ]
    );
    assert!(ex.earlier.iter().all(|a| a.request.is_none()));
    assert_eq!(
        ex.earlier[0].error,
        "openai answered HTTP 429: requests: Rate limit"
    );

    fake.script([
        Reply::json(ok.clone()).delayed(Duration::from_millis(700)),
        Reply::json(ok.clone()).delayed(Duration::from_millis(700)),
        Reply::json(ok.clone()).delayed(Duration::from_millis(700)),
    ]);
    let slow = OpenAi::new(
        "gpt-test",
        Some("sk-test".into()),
        Some(format!("{}/v1", fake.base)),
        OutputMode::Tools,
        CallPolicy {
            timeout: Duration::from_millis(150),
            ..policy()
        },
    )
    .unwrap();
    let (r, ex) = slow.chat(&request()).await;
    assert_eq!(
        r.unwrap_err(),
        ChatError::Timeout {
            provider: "openai",
            timeout_ms: 150
        }
    );
    assert_eq!(ex.attempts, 3);
    assert_eq!(ex.earlier.len(), 2);
    assert!(
        ex.earlier
            .iter()
            .all(|a| a.status.is_none() && a.response.is_none() && a.error.contains("150 ms")),
        "{:?}",
        ex.earlier
    );
}

#[test]
fn a_key_is_required_except_for_a_server_on_this_machine() {
    let e = OpenAi::new(
        "gpt-4o",
        None,
        None,
        OutputMode::Tools,
        CallPolicy::default(),
    )
    .err()
    .unwrap();
    assert_eq!(
        e,
        ChatError::MissingKey {
            var: "OPENAI_API_KEY"
        }
    );
    assert!(e.to_string().starts_with("OPENAI_API_KEY is not set"));
    assert!(
        OpenAi::new(
            "gemma",
            None,
            Some("http://127.0.0.1:8088/v1".into()),
            OutputMode::Json,
            CallPolicy::default()
        )
        .is_ok()
    );
}

#[tokio::test]
async fn a_local_server_gets_no_authorization_header() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::json(completion(
        json!({"role": "assistant", "content": "x"}),
        "stop",
    ))]);
    let m = OpenAi::new(
        "gemma",
        None,
        Some(format!("{}/v1", fake.base)),
        OutputMode::Tools,
        policy(),
    )
    .unwrap();
    let (r, _) = m.chat(&request()).await;
    assert!(r.is_ok());
    assert!(fake.requests()[0].headers.get("authorization").is_none());
}

/// The LLM brain over this backend in JSON mode: a reply that is not JSON is shown back to the
/// model with the error, and its corrected reply runs.
#[tokio::test]
async fn the_brain_retries_a_malformed_json_reply_with_the_error_shown() {
    use haggle_agents::brain::{BoxFuture, Brain, ToolBox};
    use haggle_agents::llm_brain::{LlmBrain, LlmSettings};
    use haggle_agents::tools::ToolError;
    struct Calls(Vec<(String, Value)>);
    impl ToolBox for Calls {
        fn call<'a>(
            &'a mut self,
            name: &'a str,
            args: Value,
        ) -> BoxFuture<'a, Result<Value, ToolError>> {
            self.0.push((name.to_string(), args));
            Box::pin(async { Ok(json!({"ok": true})) })
        }
    }
    let fake = FakeLlm::start().await;
    let content = |c: &str, finish: &str| {
        Reply::json(completion(
            json!({"role": "assistant", "content": c}),
            finish,
        ))
    };
    fake.script([
        content(
            "{\"action\": \"make_offer\", \"arguments\": {\"thread_id\": 7, \"pri",
            "length",
        ),
        content(
            "{\"action\": \"make_offer\", \"arguments\": {\"thread_id\": 7, \"price\": 4200}}",
            "stop",
        ),
        content(
            "{\"action\": \"reply\", \"arguments\": {\"text\": \"done\"}}",
            "stop",
        ),
    ]);
    let mut brain = LlmBrain::new(
        "openai-json:gpt-test",
        "Ada",
        std::sync::Arc::new(model(&fake, OutputMode::Json)),
        LlmSettings::default(),
        None,
        std::sync::Arc::new(CallLog::discard()),
        "USD",
        Some(3),
    );
    let profile =
        haggle_agents::profile::Profile::from_toml("name = \"Ada\"\nbudget = 100\n").unwrap();
    let view = haggle_agents::brain::View {
        now: 0,
        round: 0,
        me: 1,
        balance: haggle_api::Balance {
            available: 100,
            held_in_escrow: 0,
            committed_to_offers: 0,
            held: 0,
            total: 100,
        },
        my_listings: vec![],
        unlisted: vec![],
        unmet_wants: vec![],
        threads: vec![],
        deals: vec![],
        candidates: vec![],
        buyer_leads: vec![],
        new_events: vec![],
    };
    let mut tools = Calls(Vec::new());
    brain.turn(&profile, &view, &mut tools).await;
    assert_eq!(
        tools.0,
        vec![(
            "make_offer".to_string(),
            json!({"thread_id": 7, "price": 4200})
        )]
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    let retry = &reqs[1].body["messages"];
    assert_eq!(
        retry[2],
        json!({"role": "assistant", "content": "{\"action\": \"make_offer\", \"arguments\": {\"thread_id\": 7, \"pri"})
    );
    assert!(
        retry[3]["content"]
            .as_str()
            .unwrap()
            .starts_with("Your reply could not be used: the reply is not valid JSON")
    );
    assert_eq!(
        reqs[0].body["seed"], 1004,
        "the seed moves with turn and step"
    );
    let results = reqs[2].body["messages"][5]["content"].as_str().unwrap();
    assert_eq!(results, "Result of make_offer: {\"ok\":true}");
    let st = brain.llm_stats().unwrap();
    assert_eq!(
        (
            st.malformed_outputs,
            st.malformed_turns,
            st.turns_ended_malformed
        ),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn a_retry_after_pauses_every_call_in_flight_through_the_client() {
    let fake = FakeLlm::start().await;
    let ok = completion(json!({"role": "assistant", "content": "fine"}), "stop");
    // The first call is told to wait 800 ms; the second, sent 100 ms later, waits too.
    fake.script([Reply::status(
        429,
        r#"{"error": {"message": "Rate limit", "type": "requests"}}"#,
    )
    .header("retry-after-ms", "800")]);
    fake.respond_with(move |_| Reply::json(ok.clone()));
    let m = model(&fake, OutputMode::Tools);
    let req = request();
    let started = std::time::Instant::now();
    let first = m.chat(&req);
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = m.chat(&req).await;
        (r, started.elapsed())
    };
    let ((r1, ex1), ((r2, ex2), second_done)) = tokio::join!(first, second);
    assert_eq!(r1.unwrap().text, "fine");
    assert_eq!(ex1.attempts, 2);
    assert_eq!(r2.unwrap().text, "fine");
    assert_eq!(
        ex2.attempts, 1,
        "the second call was never refused: it waited"
    );
    assert!(
        second_done >= Duration::from_millis(790),
        "the second call waited for the pause: {second_done:?}"
    );
    assert_eq!(fake.requests().len(), 3);
}
