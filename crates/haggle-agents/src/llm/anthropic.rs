//! The Anthropic Messages API (`POST {base}/v1/messages`): tool use, the system prompt and the
//! conversation so far marked for prompt caching (`cache_control`), stop reasons, and usage with
//! cache reads and writes. Headers `x-api-key` and `anthropic-version`.

use super::http::{self, Outcome};
use super::{
    CallPolicy, ChatError, ChatMessage, ChatModel, ChatRequest, ChatResponse, Exchange, StopReason,
    ToolCall, Usage,
};
use crate::brain::BoxFuture;
use serde_json::{Value, json};

pub const KEY_VAR: &str = "ANTHROPIC_API_KEY";
pub const BASE_URL_VAR: &str = "ANTHROPIC_BASE_URL";
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const API_VERSION: &str = "2023-06-01";
const PROVIDER: &str = "anthropic";

pub struct Anthropic {
    http: reqwest::Client,
    base_url: String,
    key: String,
    model: String,
    policy: CallPolicy,
    pause: http::Pause,
}

impl Anthropic {
    /// A client for `model`; `key` is `ANTHROPIC_API_KEY` (required), `base_url` defaults to the
    /// public API.
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
            model: model.to_string(),
            policy,
            pause: http::Pause::default(),
        })
    }

    pub fn url(&self) -> String {
        format!("{}/v1/messages", self.base_url)
    }

    /// The request body for `req`.
    pub fn body(&self, req: &ChatRequest) -> Value {
        body(&self.model, req)
    }
}

/// The request body for `req` to `model` (also what a replay checks a recorded request against).
pub fn body(model: &str, req: &ChatRequest) -> Value {
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
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    body
}

fn message(m: &ChatMessage) -> Option<Value> {
    match m {
        ChatMessage::User { text } => Some(json!({
            "role": "user",
            "content": [{"type": "text", "text": text}],
        })),
        ChatMessage::Assistant { text, tool_calls } => {
            let mut content = Vec::new();
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
            // Thinking and other blocks carry nothing the brain acts on.
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
    })
}

impl ChatModel for Anthropic {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, (Result<ChatResponse, ChatError>, Exchange)> {
        Box::pin(async move {
            let body = self.body(req);
            let url = self.url();
            let headers = [
                ("x-api-key", self.key.clone()),
                ("anthropic-version", API_VERSION.to_string()),
            ];
            let Outcome {
                result,
                response,
                status,
                attempts,
                latency_ms,
                earlier,
                ..
            } = http::post_json(
                &self.http,
                PROVIDER,
                &url,
                &headers,
                &body,
                &self.policy,
                &self.pause,
            )
            .await;
            let result = result.and_then(|v| parse(&v));
            let exchange = Exchange {
                provider: PROVIDER.into(),
                model: self.model.clone(),
                url,
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
