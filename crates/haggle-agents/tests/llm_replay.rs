//! A brain's run replayed from its call log, through the real OpenAI-compatible client against a
//! local server: calls the experiment's spend guard refused are refused again at the same points
//! with the same words, and every attempt of a retried call is in the log.

mod fake_llm;
mod support;

use fake_llm::{FakeLlm, Reply};
use haggle_agents::brain::{BoxFuture, Brain, ToolBox, View};
use haggle_agents::llm::log::Record;
use haggle_agents::llm::openai::{OpenAi, OutputMode};
use haggle_agents::llm::replay::{RecordedModel, Recording, ReplayWire};
use haggle_agents::llm::{CallLog, CallPolicy, ChatModel, Price};
use haggle_agents::llm_brain::{LlmBrain, LlmSettings};
use haggle_agents::spend::SpendGuard;
use haggle_agents::tools::ToolError;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::*;

const BRAIN: &str = "openai:gpt-test";
const AGENT: &str = "Sella";

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

fn policy() -> CallPolicy {
    CallPolicy {
        timeout: Duration::from_millis(2_000),
        max_attempts: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(1_000),
        ..CallPolicy::default()
    }
}

/// A reply in words whose usage reports `output` tokens.
fn words(output: u64) -> Reply {
    Reply::json(json!({
        "id": "chatcmpl-1", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "nothing to do now"}}],
        "usage": {"prompt_tokens": 900, "completion_tokens": output},
    }))
}

fn price() -> Price {
    Price {
        input: 3_000_000,
        output: 15_000_000,
        cache_read: 300_000,
        cache_write: 3_750_000,
    }
}

fn temp_log(name: &str) -> std::path::PathBuf {
    haggle_testkit::temp_path(name).with_extension("jsonl")
}

fn brain(model: Arc<dyn ChatModel>, log: &std::path::Path) -> LlmBrain {
    LlmBrain::new(
        BRAIN,
        AGENT,
        model,
        LlmSettings::default(),
        Some(price()),
        Arc::new(CallLog::create(log).unwrap()),
        "USD",
        Some(5),
    )
}

/// Three turns of a seller with nothing new to do.
async fn three_turns(brain: &mut LlmBrain) -> Vec<(String, Value)> {
    let profile = seller_profile(6_000, 4_500);
    let view: View = empty_view(SELLER, 0);
    let mut tools = Calls(Vec::new());
    for _ in 0..3 {
        brain.turn(&profile, &view, &mut tools).await;
    }
    tools.0
}

/// The run: the first call fits under the maximum, but its reply costs so much (a million output
/// tokens at 15 µUSD each) that the guard refuses every later call.
async fn guarded_run(log: &std::path::Path) -> (LlmBrain, FakeLlm) {
    let fake = FakeLlm::start().await;
    fake.respond_with(|_| words(1_000_000));
    let client = OpenAi::new(
        "gpt-test",
        Some("sk-test".into()),
        Some(format!("{}/v1", fake.base)),
        OutputMode::Tools,
        policy(),
    )
    .unwrap();
    let guard = Arc::new(SpendGuard::new(2, Some(10_000_000), 0));
    let mut b = brain(Arc::new(client), log).with_spend_guard(Some(guard.clone()));
    three_turns(&mut b).await;
    assert_eq!(
        guard.refused(),
        2,
        "the guard refused the second and third turns' calls"
    );
    (b, fake)
}

fn replayed(recording: &Arc<Recording>, log: &std::path::Path) -> LlmBrain {
    let wire = Arc::new(ReplayWire::openai("gpt-test", OutputMode::Tools));
    let model = RecordedModel::new(recording.clone(), AGENT, BRAIN, wire);
    brain(Arc::new(model), log)
}

#[tokio::test]
async fn a_replay_refuses_the_calls_the_runs_spend_guard_refused() {
    let (run_log, replay_log) = (temp_log("guard-run"), temp_log("guard-replay"));
    let (run, fake) = guarded_run(&run_log).await;
    let records = CallLog::read(&run_log).unwrap();
    let refusals: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r, Record::SpendRefused { .. }))
        .collect();
    assert_eq!(refusals.len(), 2);
    assert!(
        matches!(refusals[0], Record::SpendRefused { turn: 2, step: 1, reason, .. }
            if reason.starts_with("no call: the experiment's LLM spend limit is reached")),
        "{refusals:?}"
    );
    let recording = Arc::new(Recording::new(records.clone()));
    assert_eq!((recording.len(), recording.spend_refusals()), (1, 2));
    let mut again = replayed(&recording, &replay_log).with_recorded_refusals(recording.clone());
    three_turns(&mut again).await;
    assert_eq!(recording.divergences(), Vec::<String>::new());
    assert_eq!(fake.requests().len(), 1, "the replay asked no server");
    let (a, b) = (run.llm_stats().unwrap(), again.llm_stats().unwrap());
    assert_eq!((a.calls, a.spend_refused), (1, 2));
    assert_eq!((b.calls, b.spend_refused), (a.calls, a.spend_refused));
    let again_records = CallLog::read(&replay_log).unwrap();
    let kinds = |rs: &[Record]| {
        rs.iter()
            .map(|r| serde_json::to_value(r).unwrap()["kind"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&again_records), kinds(&records));
    let _ = (
        std::fs::remove_file(run_log),
        std::fs::remove_file(replay_log),
    );
}

/// Before refusals were recorded, the replay asked the model where the run's guard had refused:
/// the same log replayed without them diverges at the second turn.
#[tokio::test]
async fn a_replay_that_ignored_the_guards_refusals_would_diverge() {
    let (run_log, replay_log) = (temp_log("noguard-run"), temp_log("noguard-replay"));
    guarded_run(&run_log).await;
    let recording = Arc::new(Recording::read(&run_log).unwrap());
    let mut again = replayed(&recording, &replay_log);
    three_turns(&mut again).await;
    let d = recording.divergences();
    assert!(
        d.first()
            .is_some_and(|d| d.contains("call 2: the run's spend guard refused this call")),
        "{d:?}"
    );
    let _ = (
        std::fs::remove_file(run_log),
        std::fs::remove_file(replay_log),
    );
}

/// An Anthropic thinking model's turn: a tool call after signed thinking, then words.
fn anthropic_replies(fake: &FakeLlm) {
    fake.script([
        Reply::json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-1",
            "content": [
                {"type": "thinking", "thinking": "Look around first.", "signature": "sig-1"},
                {"type": "tool_use", "id": "toolu_1", "name": "search_listings", "input": {"q": "bike"}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 800, "output_tokens": 300},
        })),
        Reply::json(json!({
            "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-test-1",
            "content": [{"type": "text", "text": "Nothing worth buying."}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 900, "output_tokens": 20},
        })),
    ]);
}

#[tokio::test]
async fn an_anthropic_thinking_run_replays_with_its_thinking_and_signed_blocks() {
    use haggle_agents::llm::Thinking;
    use haggle_agents::llm::anthropic::Anthropic;
    const CLAUDE: &str = "anthropic:claude-test-1";
    let (run_log, replay_log) = (temp_log("thinking-run"), temp_log("thinking-replay"));
    let fake = FakeLlm::start().await;
    anthropic_replies(&fake);
    let client = Anthropic::new(
        "claude-test-1",
        Some("sk-ant-test".into()),
        Some(fake.base.clone()),
        CallPolicy {
            thinking: Thinking::Budget(2_048),
            ..policy()
        },
    )
    .unwrap();
    let make = |model: Arc<dyn ChatModel>, log: &std::path::Path| {
        LlmBrain::new(
            CLAUDE,
            AGENT,
            model,
            LlmSettings::default(),
            Some(price()),
            Arc::new(CallLog::create(log).unwrap()),
            "USD",
            Some(5),
        )
    };
    let profile = seller_profile(6_000, 4_500);
    let view: View = empty_view(SELLER, 0);
    let mut tools = Calls(Vec::new());
    make(Arc::new(client), &run_log)
        .turn(&profile, &view, &mut tools)
        .await;
    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].body["messages"][1]["content"][0]["signature"], "sig-1",
        "the signed thinking went back with the tool call"
    );
    // The replay starts from a wire without thinking and builds the run's requests anyway.
    let recording = Arc::new(Recording::read(&run_log).unwrap());
    let wire = Arc::new(ReplayWire::anthropic("claude-test-1"));
    let model = RecordedModel::new(recording.clone(), AGENT, CLAUDE, wire);
    let mut again_tools = Calls(Vec::new());
    make(Arc::new(model), &replay_log)
        .with_recorded_refusals(recording.clone())
        .turn(&profile, &view, &mut again_tools)
        .await;
    assert_eq!(recording.divergences(), Vec::<String>::new());
    assert_eq!(again_tools.0, tools.0);
    assert_eq!(
        tools.0,
        vec![("search_listings".to_string(), json!({"q": "bike"}))]
    );
    let _ = (
        std::fs::remove_file(run_log),
        std::fs::remove_file(replay_log),
    );
}
