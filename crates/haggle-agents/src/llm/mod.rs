//! Language-model backends behind one interface ([`ChatModel`]): the Anthropic Messages API and
//! OpenAI-compatible chat completions, as thin clients over reqwest. A request is provider-neutral
//! (system prompt, turns, tools); each backend maps it to its wire format, retries what is
//! retryable, and reports every HTTP exchange so a run can store and replay it.

pub mod anthropic;
mod http;
pub mod limits;
pub mod log;
pub mod openai;
pub mod prices;
pub mod replay;

use crate::brain::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

pub use log::CallLog;
pub use prices::{Price, PriceTable};

/// A tool the model may call: its name, what it does, and a JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// One tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id, echoed back with the result.
    pub id: String,
    pub name: String,
    /// The arguments; when they did not parse, the raw text as a JSON string.
    pub arguments: Value,
    /// Why the arguments could not be read (bad JSON, not an object), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
}

/// What a tool call returned, as the model will read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    pub call_id: String,
    /// The tool's name (OpenAI's JSON mode and plain-text renderings need it).
    pub name: String,
    pub content: String,
    pub is_error: bool,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ChatMessage {
    User {
        text: String,
    },
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
        /// The reply's thinking blocks (Anthropic), sent back as they came.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        thinking: Vec<Value>,
    },
    /// The results of the previous assistant turn's tool calls, plus an optional note after them
    /// (e.g. "the tool-call limit is reached").
    ToolResults {
        results: Vec<ToolResult>,
        note: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub system: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    /// Passed to servers that take one (OpenAI-compatible), for reproducible sampling.
    pub seed: Option<u64>,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It finished its answer.
    EndTurn,
    /// It wants its tool calls run.
    ToolUse,
    /// It ran into `max_tokens` (its last tool call may be cut off).
    MaxTokens,
    StopSequence,
    /// The provider refused to answer (safety filter).
    Refusal,
    Other(String),
}

/// Tokens of one call. `input_tokens` excludes cached input: the three input figures add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens
    }
    pub fn add(&mut self, o: &Usage) {
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub stop: StopReason,
    pub usage: Usage,
    /// The reply did not have the shape asked for (JSON mode: not JSON, or not one of the
    /// allowed tools); the text holds what came back.
    pub format_error: Option<String>,
    /// Anthropic's thinking blocks, verbatim (signed): sent back with the assistant turn, as the
    /// API requires when a thinking model's turn goes on with tool results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thinking: Vec<Value>,
}

/// A call that produced no usable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("{var} is not set: export it (or choose another brain)")]
    MissingKey { var: &'static str },
    #[error("{provider} answered HTTP {status}: {message}")]
    Http {
        provider: &'static str,
        status: u16,
        message: String,
    },
    #[error("{provider} did not answer within {timeout_ms} ms")]
    Timeout {
        provider: &'static str,
        timeout_ms: u64,
    },
    #[error("cannot reach {provider}: {message}")]
    Transport {
        provider: &'static str,
        message: String,
    },
    #[error("{provider} sent a reply that is not its API's format: {message}")]
    InvalidResponse {
        provider: &'static str,
        message: String,
    },
    /// A replayed call: the recorded failure, word for word, or why the replay could not answer.
    #[error("{message}")]
    Recorded { message: String },
}

/// The record of one model call as it went over the wire (the last attempt's reply, and every
/// attempt before it), for the run's call log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub provider: String,
    pub model: String,
    pub url: String,
    pub request: Value,
    /// The last reply's body (JSON, or `{"raw": text}` when it was not JSON); none without a reply.
    pub response: Option<Value>,
    pub status: Option<u16>,
    /// Attempts in all: `earlier` holds all but the last.
    pub attempts: u32,
    /// Wall time of the whole call, retries and waits included.
    pub latency_ms: u64,
    /// The attempts before the last, oldest first (a rate limit, an overloaded server, a request
    /// adapted after a refusal): an audit sees every answer the provider gave.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<Attempt>,
}

/// One attempt of a call that was then tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The body sent, when the call's later attempts sent another one (a parameter adapted to
    /// the model, another JSON form); absent when it was the call's final request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    pub status: Option<u16>,
    /// The reply's body, as for the last attempt; none when nothing came back.
    pub response: Option<Value>,
    /// Why it did not count (an HTTP refusal, a timeout, a dropped connection).
    pub error: String,
    /// From sending to the whole reply (or the failure), without the wait after it.
    pub latency_ms: u64,
}

/// A language model behind one interface: the two real backends, the replay of a recorded run
/// (`replay::RecordedModel`) and, in tests, a scripted one.
pub trait ChatModel: Send + Sync {
    /// `anthropic` or `openai`.
    fn provider(&self) -> &'static str;
    fn model(&self) -> &str;
    /// One call. Always returns the exchange, also when the call failed.
    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, (Result<ChatResponse, ChatError>, Exchange)>;
    /// The most output tokens a call with `req` may produce (more than `max_tokens` when the
    /// model also thinks): what a spend guard must reserve for it.
    fn max_output_tokens(&self, req: &ChatRequest) -> u32 {
        req.max_tokens
    }
}

/// Timeouts and retries of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPolicy {
    /// Per attempt, from sending to the whole body received.
    pub timeout: Duration,
    /// Attempts in all (1 = no retry) for 408, 409, 429, 5xx, 529 overloaded, timeouts and
    /// connection failures.
    pub max_attempts: u32,
    /// First back-off, doubled per attempt, never above `max_backoff` (a `retry-after` header
    /// wins, also capped by `max_backoff`).
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// OpenAI-compatible servers: send the output limit as `max_completion_tokens` (`Some(true)`)
    /// or `max_tokens` (`Some(false)`); `None` decides by the model's name and switches once a
    /// server refuses `max_tokens`.
    pub completion_tokens: Option<bool>,
    /// OpenAI-compatible servers: send function schemas with `strict: true` (strict-compatible);
    /// `None` does so for OpenAI's own API only (other servers may not take it).
    pub strict_schemas: Option<bool>,
    /// Anthropic: extended thinking (off by default).
    pub thinking: Thinking,
}

/// Anthropic's extended thinking: off, a fixed budget of thinking tokens (`thinking.type:
/// "enabled"`, the older models' only form), or adaptive (the model decides how much; the newer
/// models' only form). Either way the output limit grows by the thinking allowance, and the
/// sampling parameters thinking does not take are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Thinking {
    #[default]
    Off,
    Budget(u32),
    Adaptive,
}

impl Thinking {
    /// Anthropic's smallest thinking budget.
    pub const MIN_BUDGET: u32 = 1_024;
    /// The largest budget taken here (a bound on what one call may cost).
    pub const MAX_BUDGET: u32 = 128_000;
    /// Output tokens added for adaptive thinking, which has no budget of its own.
    pub const ADAPTIVE_ROOM: u32 = 8_192;

    /// `off`, `adaptive`, or a budget of thinking tokens.
    pub fn parse(s: &str) -> Result<Thinking, String> {
        match s.trim() {
            "off" => Ok(Thinking::Off),
            "adaptive" => Ok(Thinking::Adaptive),
            n => match n.parse::<u32>() {
                Ok(b) if (Self::MIN_BUDGET..=Self::MAX_BUDGET).contains(&b) => {
                    Ok(Thinking::Budget(b))
                }
                _ => Err(format!(
                    "'{n}': expected off, adaptive, or a budget of {} to {} thinking tokens",
                    Self::MIN_BUDGET,
                    Self::MAX_BUDGET
                )),
            },
        }
    }

    /// Output tokens allowed for thinking, on top of the answer's `max_tokens`.
    pub fn room(self) -> u32 {
        match self {
            Thinking::Off => 0,
            Thinking::Budget(b) => b,
            Thinking::Adaptive => Self::ADAPTIVE_ROOM,
        }
    }
}

impl Default for CallPolicy {
    fn default() -> CallPolicy {
        CallPolicy {
            timeout: Duration::from_secs(120),
            max_attempts: 4,
            base_backoff: Duration::from_millis(1000),
            max_backoff: Duration::from_secs(60),
            completion_tokens: None,
            strict_schemas: None,
            thinking: Thinking::Off,
        }
    }
}

/// Whether a base URL points at this machine (a local server needs no API key).
pub fn is_loopback(base_url: &str) -> bool {
    let rest = base_url
        .split_once("://")
        .map_or(base_url, |(_, r)| r)
        .trim_start_matches('[');
    ["127.", "localhost", "::1]", "::1"]
        .iter()
        .any(|p| rest.starts_with(p))
}

/// `text` cut to `max` characters (an ellipsis marks the cut), for logs and for the model.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:8088/v1"));
        assert!(is_loopback("http://localhost:11434/v1"));
        assert!(is_loopback("http://[::1]:8000/v1"));
        assert!(!is_loopback("https://api.openai.com/v1"));
        assert!(!is_loopback("http://10.0.0.2/v1"));
    }
}
