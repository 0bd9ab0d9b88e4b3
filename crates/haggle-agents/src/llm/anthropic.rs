//! The Anthropic Messages API (`POST {base}/v1/messages`): tool use, the system prompt and the
//! conversation so far marked for prompt caching (`cache_control`), stop reasons, and usage with
//! cache reads and writes. Headers `x-api-key` and `anthropic-version`. Extended thinking
//! (`Thinking`) adds its block and output allowance, leaves out `temperature`, and keeps the
//! reply's signed thinking blocks for the next request; a refusal naming `temperature` or asking
//! for adaptive thinking adapts the model's requests once, for good.

use super::http::{self, Outcome};
use super::{
    CallPolicy, ChatError, ChatMessage, ChatModel, ChatRequest, ChatResponse, Exchange, StopReason,
    Thinking, ToolCall, Usage,
};
use crate::brain::BoxFuture;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub const KEY_VAR: &str = "ANTHROPIC_API_KEY";
pub const BASE_URL_VAR: &str = "ANTHROPIC_BASE_URL";
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const API_VERSION: &str = "2023-06-01";
const PROVIDER: &str = "anthropic";

pub struct Anthropic {
    http: reqwest::Client,
    base_url: String,
    key: String,
    wire: Wire,
    policy: CallPolicy,
    pause: http::Pause,
}

impl Anthropic {
    /// A client for `model`; `key` is `ANTHROPIC_API_KEY` (required), `base_url` defaults to the
    /// public API; `policy.thinking` turns extended thinking on.
    pub fn new(
        model: &str,
        key: Option<String>,
        base_url: Option<String>,
        policy: CallPolicy,
    ) -> Result<Anthropic, ChatError> {
        let key = key
            .filter(|k| !k.trim().is_empty())
            .ok_or(ChatError::MissingKey { var: KEY_VAR })?;
        let http = http::client().map_err(|message| ChatError::Transport {
            provider: PROVIDER,
            message,
        })?;
        Ok(Anthropic {
            http,
            base_url: base_url
                .unwrap_or_else(|| DEFAULT_BASE_URL.into())
                .trim_end_matches('/')
                .to_string(),
            key,
            wire: Wire::new(model, policy.thinking),
            policy,
            pause: http::Pause::default(),
        })
    }

    pub fn url(&self) -> String {
        format!("{}/v1/messages", self.base_url)
    }

    /// The request body for `req`, as the model's requests are built now.
    pub fn body(&self, req: &ChatRequest) -> Value {
        self.wire.body(req)
    }

    async fn post(&self, body: &Value) -> Outcome {
        let headers = [
            ("x-api-key", self.key.clone()),
            ("anthropic-version", API_VERSION.to_string()),
        ];
        http::post_json(
            &self.http,
            PROVIDER,
            &self.url(),
            &headers,
            body,
            &self.policy,
            &self.pause,
        )
        .await
    }
}

/// What a refusal asks to change in a model's requests, remembered for the model from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adaptation {
    /// The model takes no `temperature` (thinking models, and some newer models).
    NoTemperature,
    /// The model takes only adaptive thinking, not a fixed budget.
    AdaptiveThinking,
}

impl Adaptation {
    /// The change a 400 refusal asks for, if it names one.
    pub fn asked_by(e: &ChatError) -> Option<Adaptation> {
        let ChatError::Http {
            status: 400,
            message,
            ..
        } = e
        else {
            return None;
        };
        let m = message.to_lowercase();
        if m.contains("thinking") && m.contains("adaptive") {
            Some(Adaptation::AdaptiveThinking)
        } else if m.contains("temperature") {
            Some(Adaptation::NoTemperature)
        } else {
            None
        }
    }
}

/// How requests to one model are built: the thinking in use and whether `temperature` is sent.
/// Shared by the client's calls in flight; a replay builds a recorded run's requests with it.
#[derive(Debug)]
pub struct Wire {
    model: String,
    thinking: Mutex<Thinking>,
    /// Cleared once the model refused a temperature.
    temperature: AtomicBool,
}

impl Wire {
    pub fn new(model: &str, thinking: Thinking) -> Wire {
        Wire {
            model: model.to_string(),
            thinking: Mutex::new(thinking),
            temperature: AtomicBool::new(true),
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn thinking(&self) -> Thinking {
        *self.thinking.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the model's requests as a refusal asked (doing it twice changes nothing).
    pub fn adapt(&self, a: Adaptation) {
        match a {
            Adaptation::NoTemperature => self.temperature.store(false, Ordering::Relaxed),
            Adaptation::AdaptiveThinking => {
                let mut t = self.thinking.lock().unwrap_or_else(|e| e.into_inner());
                if matches!(*t, Thinking::Budget(_)) {
                    *t = Thinking::Adaptive;
                }
            }
        }
    }

    /// Adopts what a recorded request body shows (its thinking, a temperature left out): a
    /// replay builds the requests the run's client sent.
    pub fn adapt_like(&self, recorded: &Value) {
        let thinking = &recorded["thinking"];
        let shown = match thinking["type"].as_str() {
            Some("adaptive") => Some(Thinking::Adaptive),
            Some("enabled") => thinking["budget_tokens"]
                .as_u64()
                .and_then(|b| u32::try_from(b).ok())
                .map(Thinking::Budget),
            _ => None,
        };
        if let Some(t) = shown {
            *self.thinking.lock().unwrap_or_else(|e| e.into_inner()) = t;
        }
        if recorded.get("temperature").is_none() {
            self.temperature.store(false, Ordering::Relaxed);
        }
    }

    /// The most output a call may produce: the answer's `max_tokens` and the thinking's room.
    pub fn max_output_tokens(&self, req: &ChatRequest) -> u32 {
        req.max_tokens.saturating_add(self.thinking().room())
    }

    /// The request body for `req` (also what a replay checks a recorded request against).
    pub fn body(&self, req: &ChatRequest) -> Value {
        let mut body = plain_body(&self.model, req);
        let thinking = self.thinking();
        body["max_tokens"] = json!(self.max_output_tokens(req));
        match thinking {
            Thinking::Off => {}
            Thinking::Budget(b) => {
                body["thinking"] = json!({"type": "enabled", "budget_tokens": b});
            }
            Thinking::Adaptive => body["thinking"] = json!({"type": "adaptive"}),
        }
        // Thinking takes no sampling parameters but its own.
        if let Some(t) = req.temperature
            && thinking == Thinking::Off
            && self.temperature.load(Ordering::Relaxed)
        {
            body["temperature"] = json!(t);
        }
        body
    }
}

/// The body without thinking and temperature.
fn plain_body(model: &str, req: &ChatRequest) -> Value {
    let mut messages: Vec<Value> = req.messages.iter().filter_map(message).collect();
    // Cache the conversation up to its newest block too: within a turn, each tool round
    // re-reads everything before it.
    if let Some(last) = messages
        .last_mut()
        .and_then(|m| m["content"].as_array_mut())
        .and_then(|c| c.last_mut())
    {
        last["cache_control"] = json!({"type": "ephemeral"});
    }
    let mut body = json!({
        "model": model,
        "max_tokens": req.max_tokens,
        "system": [{
            "type": "text",
            "text": req.system,
            "cache_control": {"type": "ephemeral"},
        }],
        "messages": messages,
    });
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.input_schema,
                })
            })
            .collect();
    }
    body
}

fn message(m: &ChatMessage) -> Option<Value> {
    match m {
        ChatMessage::User { text } => Some(json!({
            "role": "user",
            "content": [{"type": "text", "text": text}],
        })),
        ChatMessage::Assistant {
            text,
            tool_calls,
            thinking,
        } => {
            // Signed thinking blocks go back first, as they came.
            let mut content = thinking.clone();
            if !text.trim().is_empty() {
                content.push(json!({"type": "text", "text": text}));
            }
            for c in tool_calls {
                let input = if c.arguments.is_object() {
                    c.arguments.clone()
                } else {
                    json!({})
                };
                content.push(json!({
                    "type": "tool_use", "id": c.id, "name": c.name, "input": input,
                }));
            }
            (!content.is_empty()).then(|| json!({"role": "assistant", "content": content}))
        }
        ChatMessage::ToolResults { results, note } => {
            let mut content: Vec<Value> = results
                .iter()
                .map(|r| {
                    json!({
                        "type": "tool_result",
                        "tool_use_id": r.call_id,
                        "content": r.content,
                        "is_error": r.is_error,
                    })
                })
                .collect();
            if let Some(n) = note {
                content.push(json!({"type": "text", "text": n}));
            }
            (!content.is_empty()).then(|| json!({"role": "user", "content": content}))
        }
    }
}

fn invalid(message: impl Into<String>) -> ChatError {
    ChatError::InvalidResponse {
        provider: PROVIDER,
        message: message.into(),
    }
}

/// Reads a Messages API response.
pub fn parse(v: &Value) -> Result<ChatResponse, ChatError> {
    let content = v["content"]
        .as_array()
        .ok_or_else(|| invalid("no `content` array"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut thinking = Vec::new();
    for block in content {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => {
                let input = block["input"].clone();
                tool_calls.push(ToolCall {
                    id: block["id"].as_str().unwrap_or_default().to_string(),
                    name: block["name"].as_str().unwrap_or_default().to_string(),
                    malformed: (!input.is_object())
                        .then(|| format!("the arguments must be a JSON object, got {input}")),
                    arguments: input,
                });
            }
            // Kept to be sent back; nothing the brain acts on.
            Some("thinking" | "redacted_thinking") => thinking.push(block.clone()),
            _ => {}
        }
    }
    let stop = match v["stop_reason"].as_str() {
        Some("end_turn") => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("refusal") => StopReason::Refusal,
        Some(other) => StopReason::Other(other.to_string()),
        None => return Err(invalid("no `stop_reason`")),
    };
    let u = &v["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    Ok(ChatResponse {
        text,
        tool_calls,
        stop,
        usage: Usage {
            input_tokens: n("input_tokens"),
            output_tokens: n("output_tokens"),
            cache_read_tokens: n("cache_read_input_tokens"),
            cache_write_tokens: n("cache_creation_input_tokens"),
        },
        format_error: None,
        thinking,
    })
}

impl ChatModel for Anthropic {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn model(&self) -> &str {
        &self.wire.model
    }

    fn max_output_tokens(&self, req: &ChatRequest) -> u32 {
        self.wire.max_output_tokens(req)
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, (Result<ChatResponse, ChatError>, Exchange)> {
        Box::pin(async move {
            let mut body = self.body(req);
            let mut out = self.post(&body).await;
            // At most both adaptations; another call in flight may have made them already.
            for _ in 0..2 {
                let Some(a) = out.result.as_ref().err().and_then(Adaptation::asked_by) else {
                    break;
                };
                self.wire.adapt(a);
                let next = self.body(req);
                if next == body {
                    break;
                }
                let sent = std::mem::replace(&mut body, next);
                out = out.followed_by(sent, self.post(&body).await);
            }
            let Outcome {
                result,
                response,
                status,
                attempts,
                latency_ms,
                earlier,
                ..
            } = out;
            let result = result.and_then(|v| parse(&v));
            let exchange = Exchange {
                provider: PROVIDER.into(),
                model: self.wire.model.clone(),
                url: self.url(),
                request: body,
                response,
                status,
                attempts,
                latency_ms,
                earlier,
            };
            (result, exchange)
        })
    }
}
