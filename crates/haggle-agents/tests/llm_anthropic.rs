//! The Anthropic Messages backend against a local fake server: the exact request (headers, system
//! prompt and conversation marked for caching, tool schemas, tool results), replies with tool
//! calls, stop reasons and cache usage, and the failures a provider produces — 429 with
//! `retry-after`, 529 overloaded, 5xx, timeouts, bodies that are not JSON, refused requests.

mod fake_llm;

use fake_llm::{FakeLlm, Reply};
use haggle_agents::llm::anthropic::Anthropic;
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

fn model(fake: &FakeLlm, policy: CallPolicy) -> Anthropic {
    Anthropic::new(
        "claude-test-1",
        Some("sk-ant-test".into()),
        Some(fake.base.clone()),
        policy,
    )
    .unwrap()
}

fn offer_tool() -> ToolSpec {
    ToolSpec {
        name: "make_offer".into(),
        description: "Make a binding offer in a thread.".into(),
        input_schema: json!({
            "type": "object",
            "properties": {"thread_id": {"type": "integer"}, "price": {"type": "integer"}},
            "required": ["thread_id", "price"],
        }),
    }
}

fn request(messages: Vec<ChatMessage>) -> ChatRequest {
    ChatRequest {
        system: "You are the trading agent of Ada.".into(),
        messages,
        tools: vec![offer_tool()],
        max_tokens: 512,
        temperature: Some(0.5),
        seed: None,
    }
}

fn user(text: &str) -> ChatMessage {
    ChatMessage::User { text: text.into() }
}

fn tool_use_reply() -> Value {
    json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-1",
        "content": [
            {"type": "text", "text": "I'll counter."},
            {"type": "tool_use", "id": "toolu_1", "name": "make_offer", "input": {"thread_id": 7, "price": 4200}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 120, "output_tokens": 40,
                  "cache_creation_input_tokens": 900, "cache_read_input_tokens": 0},
    })
}

#[tokio::test]
async fn sends_the_messages_api_request_with_caching_and_tools() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::json(tool_use_reply())]);
    let (r, ex) = model(&fake, policy())
        .chat(&request(vec![user("Thread 7: the buyer offers 4000.")]))
        .await;
    let r = r.unwrap();
    let req = &fake.requests()[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.headers["x-api-key"], "sk-ant-test");
    assert_eq!(req.headers["anthropic-version"], "2023-06-01");
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(
        req.body,
        json!({
            "model": "claude-test-1",
            "max_tokens": 512,
            "temperature": 0.5,
            "system": [{"type": "text", "text": "You are the trading agent of Ada.",
                        "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Thread 7: the buyer offers 4000.",
                 "cache_control": {"type": "ephemeral"}}]}],
            "tools": [{"name": "make_offer", "description": "Make a binding offer in a thread.",
                       "input_schema": offer_tool().input_schema}],
        })
    );
    assert_eq!(r.text, "I'll counter.");
    assert_eq!(r.stop, StopReason::ToolUse);
    assert_eq!(
        r.tool_calls,
        vec![ToolCall {
            id: "toolu_1".into(),
            name: "make_offer".into(),
            arguments: json!({"thread_id": 7, "price": 4200}),
            malformed: None,
        }]
    );
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 120,
            output_tokens: 40,
            cache_read_tokens: 0,
            cache_write_tokens: 900
        }
    );
    assert_eq!((ex.status, ex.attempts), (Some(200), 1));
    assert_eq!(ex.request, req.body, "the log keeps the request as sent");
    assert_eq!(ex.response.unwrap()["id"], "msg_1");
}

#[tokio::test]
async fn tool_results_go_back_as_tool_result_blocks_with_their_error_flag() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::json(json!({
        "content": [{"type": "text", "text": "Done."}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 900,
                  "cache_creation_input_tokens": 0}
    }))]);
    let call = ToolCall {
        id: "toolu_1".into(),
        name: "make_offer".into(),
        arguments: json!({"thread_id": 7, "price": 4200}),
        malformed: None,
    };
    let msgs = vec![
        user("go"),
        ChatMessage::Assistant {
            text: String::new(),
            tool_calls: vec![call],
            thinking: Vec::new(),
        },
        ChatMessage::ToolResults {
            results: vec![ToolResult {
                call_id: "toolu_1".into(),
                name: "make_offer".into(),
                content: "offer_not_live: the offer is no longer live".into(),
                is_error: true,
            }],
            note: Some("1 tool call left this turn.".into()),
        },
    ];
    let (r, _) = model(&fake, policy()).chat(&request(msgs)).await;
    let r = r.unwrap();
    assert_eq!(
        (r.stop, r.usage.cache_read_tokens),
        (StopReason::EndTurn, 900)
    );
    let body = &fake.requests()[0].body;
    assert_eq!(
        body["messages"][1],
        json!({"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
               "name": "make_offer", "input": {"thread_id": 7, "price": 4200}}]})
    );
    assert_eq!(
        body["messages"][2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": "offer_not_live: the offer is no longer live", "is_error": true},
            {"type": "text", "text": "1 tool call left this turn.",
             "cache_control": {"type": "ephemeral"}}]})
    );
    assert!(
        body["messages"][0]["content"][0]
            .get("cache_control")
            .is_none(),
        "only the newest block is a cache breakpoint"
    );
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_servers_retry_after() {
    let fake = FakeLlm::start().await;
    let limited =
        r#"{"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}"#;
    fake.script([
        Reply::status(429, limited).header("retry-after", "1"),
        Reply::json(tool_use_reply()),
    ]);
    let (r, ex) = model(&fake, policy())
        .chat(&request(vec![user("go")]))
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(ex.attempts, 2);
    assert!(
        ex.latency_ms >= 1_000,
        "waited the second the server asked for, not the 10 ms back-off: {} ms",
        ex.latency_ms
    );
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn overloaded_and_server_errors_are_retried_a_bounded_number_of_times() {
    let fake = FakeLlm::start().await;
    let overloaded =
        r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#;
    fake.script([
        Reply::status(
            500,
            r#"{"type": "error", "error": {"type": "api_error", "message": "oops"}}"#,
        ),
        Reply::status(529, overloaded),
        Reply::status(529, overloaded),
        Reply::json(tool_use_reply()),
    ]);
    let (r, ex) = model(&fake, policy())
        .chat(&request(vec![user("go")]))
        .await;
    assert_eq!(
        r.unwrap_err(),
        ChatError::Http {
            provider: "anthropic",
            status: 529,
            message: "overloaded_error: Overloaded".into()
        }
    );
    assert_eq!((ex.attempts, ex.status), (3, Some(529)));
    assert_eq!(fake.requests().len(), 3, "three attempts, then it gives up");
}

#[tokio::test]
async fn a_slow_server_times_out_and_is_retried() {
    let fake = FakeLlm::start().await;
    fake.script([
        Reply::json(tool_use_reply()).delayed(Duration::from_millis(800)),
        Reply::json(tool_use_reply()),
    ]);
    let short = CallPolicy {
        timeout: Duration::from_millis(200),
        ..policy()
    };
    let (r, ex) = model(&fake, short.clone())
        .chat(&request(vec![user("go")]))
        .await;
    assert!(r.is_ok(), "the second attempt answers in time: {r:?}");
    assert_eq!(ex.attempts, 2);

    fake.script([
        Reply::json(tool_use_reply()).delayed(Duration::from_millis(800)),
        Reply::json(tool_use_reply()).delayed(Duration::from_millis(800)),
    ]);
    let once = CallPolicy {
        max_attempts: 2,
        ..short
    };
    let (r, ex) = model(&fake, once).chat(&request(vec![user("go")])).await;
    assert_eq!(
        r.unwrap_err(),
        ChatError::Timeout {
            provider: "anthropic",
            timeout_ms: 200
        }
    );
    assert_eq!((ex.attempts, ex.status), (2, None));
}

#[tokio::test]
async fn a_reply_that_is_not_json_is_an_invalid_response_not_a_crash() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::status(
        200,
        "{\"content\": [{\"type\": \"text\", \"te",
    )]);
    let (r, ex) = model(&fake, policy())
        .chat(&request(vec![user("go")]))
        .await;
    assert!(
        matches!(
            r,
            Err(ChatError::InvalidResponse {
                provider: "anthropic",
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(ex.attempts, 1, "a complete but broken reply is not retried");
    assert!(
        ex.response.unwrap()["raw"]
            .as_str()
            .unwrap()
            .starts_with("{\"content\"")
    );

    fake.script([Reply::json(json!({"content": "nope"}))]);
    let (r, _) = model(&fake, policy())
        .chat(&request(vec![user("go")]))
        .await;
    assert!(matches!(r, Err(ChatError::InvalidResponse { .. })), "{r:?}");
}

#[tokio::test]
async fn a_refused_request_is_not_retried_and_says_why() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::status(
        400,
        r#"{"type": "error", "error": {"type": "invalid_request_error", "message": "tools.0.input_schema: bad"}}"#,
    )]);
    let (r, ex) = model(&fake, policy())
        .chat(&request(vec![user("go")]))
        .await;
    let e = r.unwrap_err();
    assert_eq!(
        e.to_string(),
        "anthropic answered HTTP 400: invalid_request_error: tools.0.input_schema: bad"
    );
    assert_eq!(ex.attempts, 1);
}

#[tokio::test]
async fn stop_reasons_and_malformed_tool_input_are_reported() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::json(json!({
        "content": [{"type": "tool_use", "id": "t", "name": "make_offer", "input": "price=5"}],
        "stop_reason": "max_tokens", "usage": {"input_tokens": 1, "output_tokens": 512}
    }))]);
    let (r, _) = model(&fake, policy())
        .chat(&request(vec![user("go")]))
        .await;
    let r = r.unwrap();
    assert_eq!(r.stop, StopReason::MaxTokens);
    assert!(r.tool_calls[0].malformed.is_some());
}

#[test]
fn a_missing_key_is_an_error_naming_the_variable() {
    for key in [None, Some("  ".to_string())] {
        let e = Anthropic::new("claude-x", key, None, CallPolicy::default())
            .err()
            .unwrap();
        assert_eq!(
            e,
            ChatError::MissingKey {
                var: "ANTHROPIC_API_KEY"
            }
        );
        assert!(e.to_string().contains("ANTHROPIC_API_KEY is not set"));
    }
}

/// The LLM brain over this backend: an unknown tool is answered with a `tool_result` error naming
/// the tools, the model's next call runs, and its result goes back the same way.
#[tokio::test]
async fn the_brain_answers_an_unknown_tool_with_an_error_and_runs_the_next_call() {
    use haggle_agents::brain::{BoxFuture, Brain, ToolBox};
    use haggle_agents::llm_brain::{LlmBrain, LlmSettings};
    use haggle_agents::tools::ToolError;
    struct Balance(u32);
    impl ToolBox for Balance {
        fn call<'a>(
            &'a mut self,
            name: &'a str,
            _: Value,
        ) -> BoxFuture<'a, Result<Value, ToolError>> {
            self.0 += 1;
            Box::pin(async move {
                assert_eq!(name, "my_balance");
                Ok(json!({"available": 100}))
            })
        }
    }
    let fake = FakeLlm::start().await;
    let tool_use = |id: &str, name: &str| {
        Reply::json(json!({
            "content": [{"type": "tool_use", "id": id, "name": name, "input": {}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5},
        }))
    };
    fake.script([
        tool_use("t1", "teleport"),
        tool_use("t2", "my_balance"),
        Reply::json(json!({"content": [{"type": "text", "text": "done"}],
                           "stop_reason": "end_turn", "usage": {"input_tokens": 10, "output_tokens": 1}})),
    ]);
    let mut brain = LlmBrain::new(
        "anthropic:claude-test-1",
        "Ada",
        std::sync::Arc::new(model(&fake, policy())),
        LlmSettings::default(),
        None,
        std::sync::Arc::new(CallLog::discard()),
        "USD",
        None,
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
    let mut tools = Balance(0);
    brain.turn(&profile, &view, &mut tools).await;
    assert_eq!(tools.0, 1, "only the known tool ran");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    let answer = &reqs[1].body["messages"][2]["content"][0];
    assert_eq!(answer["type"], "tool_result");
    assert_eq!(answer["tool_use_id"], "t1");
    assert_eq!(answer["is_error"], true);
    assert!(
        answer["content"]
            .as_str()
            .unwrap()
            .contains("unknown tool `teleport`")
    );
    let result = &reqs[2].body["messages"][4]["content"][0];
    assert_eq!(
        (result["tool_use_id"].as_str(), result["is_error"].as_bool()),
        (Some("t2"), Some(false))
    );
    let st = brain.llm_stats().unwrap();
    assert_eq!(
        (
            st.calls,
            st.malformed_outputs,
            st.tool_calls,
            st.usage.input_tokens
        ),
        (3, 1, 1, 30)
    );
}

fn thinking_policy(t: Thinking) -> CallPolicy {
    CallPolicy {
        thinking: t,
        ..policy()
    }
}

/// A reply of a thinking model: a signed thinking block, a redacted one, then a tool call.
fn thinking_reply() -> Value {
    json!({
        "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-test-1",
        "content": [
            {"type": "thinking", "thinking": "4200 leaves room.", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "tool_use", "id": "toolu_2", "name": "make_offer", "input": {"thread_id": 7, "price": 4200}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 100, "output_tokens": 900},
    })
}

#[tokio::test]
async fn extended_thinking_sends_its_budget_on_top_of_max_tokens_and_no_temperature() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::json(thinking_reply())]);
    let m = model(&fake, thinking_policy(Thinking::Budget(2_048)));
    let req = request(vec![user("go")]);
    assert_eq!(
        m.max_output_tokens(&req),
        512 + 2_048,
        "what a guard reserves"
    );
    let (r, _) = m.chat(&req).await;
    let body = &fake.requests()[0].body;
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(body["max_tokens"], 512 + 2_048);
    assert!(body.get("temperature").is_none(), "{body}");
    let r = r.unwrap();
    assert_eq!(r.tool_calls.len(), 1);
    assert_eq!(
        r.thinking,
        vec![
            json!({"type": "thinking", "thinking": "4200 leaves room.", "signature": "sig-1"}),
            json!({"type": "redacted_thinking", "data": "opaque"}),
        ]
    );
}

#[tokio::test]
async fn thinking_blocks_go_back_first_in_the_assistant_turn() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::json(tool_use_reply())]);
    let thinking = vec![json!({"type": "thinking", "thinking": "hm", "signature": "sig-1"})];
    let call = ToolCall {
        id: "toolu_2".into(),
        name: "make_offer".into(),
        arguments: json!({"thread_id": 7, "price": 4200}),
        malformed: None,
    };
    let msgs = vec![
        user("go"),
        ChatMessage::Assistant {
            text: String::new(),
            tool_calls: vec![call],
            thinking: thinking.clone(),
        },
        ChatMessage::ToolResults {
            results: vec![ToolResult {
                call_id: "toolu_2".into(),
                name: "make_offer".into(),
                content: "{\"ok\":true}".into(),
                is_error: false,
            }],
            note: None,
        },
    ];
    let m = model(&fake, thinking_policy(Thinking::Budget(2_048)));
    let _ = m.chat(&request(msgs)).await;
    let content = &fake.requests()[0].body["messages"][1]["content"];
    assert_eq!(content[0], thinking[0]);
    assert_eq!(content[1]["type"], "tool_use");
}

const ADAPTIVE_ONLY: &str = r#"{"type": "error", "error": {"type": "invalid_request_error", "message": "thinking.type.enabled is not supported for this model. Use thinking.type.adaptive instead."}}"#;
const NO_TEMPERATURE: &str = r#"{"type": "error", "error": {"type": "invalid_request_error", "message": "temperature: this model does not support sampling parameters"}}"#;

#[tokio::test]
async fn a_model_taking_only_adaptive_thinking_gets_it_from_then_on() {
    let fake = FakeLlm::start().await;
    fake.script([
        Reply::status(400, ADAPTIVE_ONLY),
        Reply::json(thinking_reply()),
        Reply::json(thinking_reply()),
    ]);
    let m = model(&fake, thinking_policy(Thinking::Budget(2_048)));
    let req = request(vec![user("go")]);
    let (r, ex) = m.chat(&req).await;
    assert!(r.is_ok(), "{r:?}");
    let reqs = fake.requests();
    assert_eq!(reqs[1].body["thinking"], json!({"type": "adaptive"}));
    assert_eq!(reqs[1].body["max_tokens"], 512 + Thinking::ADAPTIVE_ROOM);
    assert_eq!((ex.attempts, ex.earlier.len()), (2, 1));
    assert_eq!(ex.earlier[0].request.as_ref(), Some(&reqs[0].body));
    assert_eq!(ex.earlier[0].status, Some(400));
    let (_, ex) = m.chat(&req).await;
    assert_eq!(ex.attempts, 1, "remembered for the model");
    assert_eq!(fake.requests()[2].body["thinking"]["type"], "adaptive");
}

#[tokio::test]
async fn a_model_refusing_temperature_is_sent_none_from_then_on() {
    let fake = FakeLlm::start().await;
    fake.script([
        Reply::status(400, NO_TEMPERATURE),
        Reply::json(tool_use_reply()),
        Reply::json(tool_use_reply()),
    ]);
    let m = model(&fake, policy());
    let req = request(vec![user("go")]);
    let (r, _) = m.chat(&req).await;
    assert!(r.is_ok(), "{r:?}");
    let reqs = fake.requests();
    assert_eq!(reqs[0].body["temperature"], 0.5);
    assert!(reqs[1].body.get("temperature").is_none());
    let (_, ex) = m.chat(&req).await;
    assert_eq!(ex.attempts, 1);
    assert!(fake.requests()[2].body.get("temperature").is_none());
}

#[tokio::test]
async fn other_refusals_adapt_nothing() {
    let fake = FakeLlm::start().await;
    fake.script([Reply::status(
        400,
        r#"{"type": "error", "error": {"type": "invalid_request_error", "message": "messages: roles must alternate"}}"#,
    )]);
    let (r, ex) = model(&fake, policy())
        .chat(&request(vec![user("go")]))
        .await;
    assert!(r.is_err());
    assert_eq!((ex.attempts, fake.requests().len()), (1, 1));
}

#[test]
fn thinking_settings_parse_with_bounds() {
    assert_eq!(Thinking::parse("off"), Ok(Thinking::Off));
    assert_eq!(Thinking::parse("adaptive"), Ok(Thinking::Adaptive));
    assert_eq!(Thinking::parse("4096"), Ok(Thinking::Budget(4_096)));
    for bad in ["1023", "128001", "-1", "lots", ""] {
        assert!(Thinking::parse(bad).is_err(), "{bad}");
    }
}
