//! OpenAI-compatible chat completions (`POST {base}/chat/completions`): OpenAI itself, or a local
//! server such as llama.cpp, vLLM or Ollama. Two ways to get actions out of the model:
//! - [`OutputMode::Tools`]: function calling (`tools`, `tool_choice: "auto"`);
//! - [`OutputMode::Json`]: for servers or small models without reliable tool calls, one JSON
//!   object `{"action": NAME, "arguments": {...}}` constrained by a JSON Schema built from the same
//!   tools (`response_format: {"type": "json_object", "schema": ...}`, which llama.cpp turns into a
//!   grammar; servers that refuse that form get OpenAI's `json_schema` form instead). The pseudo-tool
//!   `reply` carries plain words.

use super::http::{self, Outcome};
use super::{
    CallPolicy, ChatError, ChatMessage, ChatModel, ChatRequest, ChatResponse, Exchange, StopReason,
    ToolCall, ToolSpec, Usage, clip,
};
use crate::brain::BoxFuture;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const KEY_VAR: &str = "OPENAI_API_KEY";
pub const BASE_URL_VAR: &str = "OPENAI_BASE_URL";
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
const PROVIDER: &str = "openai";
/// The pseudo-tool of JSON mode that carries words instead of an action.
pub const REPLY_TOOL: &str = "reply";
/// Every free-text field in JSON mode is bounded (tighter bounds are kept), so the object closes
/// well inside `max_tokens` and the grammar stays small: llama.cpp refuses a grammar whose bounded
/// repetitions multiply past its limit (the catalogue's 4,000-character texts do), and a large
/// grammar slows every sampled token.
const JSON_MODE_MAX_STRING: u64 = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    Tools,
    Json,
}

pub struct OpenAi {
    http: reqwest::Client,
    base_url: String,
    key: Option<String>,
    policy: CallPolicy,
    pause: http::Pause,
    wire: Wire,
}

/// The wire format of one model's calls: request bodies, replies read back, and the state both
/// carry (the JSON-mode form in use, ids for tool calls the server left without one). Shared by
/// the HTTP client and the replay of a recorded run, so both build and read the same bodies.
pub struct Wire {
    model: String,
    mode: OutputMode,
    /// The server refused `json_object` + `schema`: use `json_schema` from now on.
    json_schema_form: AtomicBool,
    /// The model takes `max_completion_tokens`, not `max_tokens` (newer OpenAI models).
    completion_tokens: AtomicBool,
    /// The model takes only its default `temperature` (reasoning models): none is sent.
    default_temperature: AtomicBool,
    /// Function schemas go out with `strict: true`, made strict-compatible ([`strict_schema`]):
    /// OpenAI's own API then never sends arguments outside them.
    strict: AtomicBool,
    next_id: AtomicU64,
}

/// Whether `model` is one of OpenAI's reasoning models (o1, o3, o4, gpt-5 families), which take
/// `max_completion_tokens` and only the default temperature. Other models learn it from the
/// server's first refusal (see [`Adaptation`]).
pub fn is_reasoning_model(model: &str) -> bool {
    let name = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| name == *p || name.starts_with(&format!("{p}-")))
}

/// What a refusal asks the request to change, read from OpenAI's error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adaptation {
    /// `max_tokens` is not supported: send `max_completion_tokens`.
    CompletionTokens,
    /// Only the default temperature is supported: send none.
    DefaultTemperature,
}

impl Adaptation {
    /// The change a 400 asks for: OpenAI says `Unsupported parameter: 'max_tokens' ... Use
    /// 'max_completion_tokens' instead.` or `Unsupported value: 'temperature' does not support
    /// 0.2 with this model. Only the default (1) value is supported.`
    pub fn asked_by(e: &ChatError) -> Option<Adaptation> {
        let ChatError::Http {
            status: 400,
            message,
            ..
        } = e
        else {
            return None;
        };
        let m = message.to_ascii_lowercase();
        if m.contains("max_completion_tokens") && m.contains("max_tokens") {
            Some(Adaptation::CompletionTokens)
        } else if m.contains("temperature")
            && (m.contains("unsupported") || m.contains("not support"))
        {
            Some(Adaptation::DefaultTemperature)
        } else {
            None
        }
    }
}

impl OpenAi {
    /// A client for `model` at `base_url` (default the public API). The key
    /// (`OPENAI_API_KEY`) is required except for a server on this machine.
    pub fn new(
        model: &str,
        key: Option<String>,
        base_url: Option<String>,
        mode: OutputMode,
        policy: CallPolicy,
    ) -> Result<OpenAi, ChatError> {
        let base_url = base_url
            .unwrap_or_else(|| DEFAULT_BASE_URL.into())
            .trim_end_matches('/')
            .to_string();
        let key = key.filter(|k| !k.trim().is_empty());
        // OpenAI's own API takes strict function schemas; other servers may refuse them.
        let official = base_url == DEFAULT_BASE_URL;
        if key.is_none() && !super::is_loopback(&base_url) {
            return Err(ChatError::MissingKey { var: KEY_VAR });
        }
        let http = http::client().map_err(|message| ChatError::Transport {
            provider: PROVIDER,
            message,
        })?;
        Ok(OpenAi {
            http,
            base_url,
            key,
            wire: Wire::with(
                model,
                mode,
                policy.completion_tokens,
                policy.strict_schemas.unwrap_or(official),
            ),
            policy,
            pause: http::Pause::default(),
        })
    }

    pub fn mode(&self) -> OutputMode {
        self.wire.mode
    }

    pub fn url(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    /// The request body for `req` (in JSON mode, in the `response_format` form now in use).
    pub fn body(&self, req: &ChatRequest) -> Value {
        self.wire.body(req)
    }

    async fn post(&self, body: &Value) -> Outcome {
        let mut headers = Vec::new();
        if let Some(k) = &self.key {
            headers.push(("authorization", format!("Bearer {k}")));
        }
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

impl Wire {
    /// The wire of `model`: a reasoning model starts with `max_completion_tokens` and no
    /// temperature; `completion_tokens` (a flag) overrides the first.
    pub fn new(model: &str, mode: OutputMode) -> Wire {
        Wire::with(model, mode, None, false)
    }

    pub fn with(
        model: &str,
        mode: OutputMode,
        completion_tokens: Option<bool>,
        strict: bool,
    ) -> Wire {
        let reasoning = is_reasoning_model(model);
        Wire {
            model: model.to_string(),
            mode,
            json_schema_form: AtomicBool::new(false),
            completion_tokens: AtomicBool::new(completion_tokens.unwrap_or(reasoning)),
            default_temperature: AtomicBool::new(reasoning),
            strict: AtomicBool::new(strict),
            next_id: AtomicU64::new(1),
        }
    }

    /// Changes the request as a refusal asked (idempotent: the caller retries only if the body
    /// it would send now differs from the one refused).
    pub fn adapt(&self, a: Adaptation) {
        let flag = match a {
            Adaptation::CompletionTokens => &self.completion_tokens,
            Adaptation::DefaultTemperature => &self.default_temperature,
        };
        flag.store(true, Ordering::Relaxed);
    }

    /// Whether schemas go out strict (OpenAI's own API, or asked for).
    pub fn strict(&self) -> bool {
        self.strict.load(Ordering::Relaxed)
    }

    /// Adopts the adaptations a recorded request body shows (a replay follows the run's client).
    pub fn adapt_like(&self, recorded: &Value) {
        if recorded.get("max_completion_tokens").is_some() {
            self.completion_tokens.store(true, Ordering::Relaxed);
        }
        if recorded.get("temperature").is_none() {
            self.default_temperature.store(true, Ordering::Relaxed);
        }
        if recorded["tools"][0]["function"]["strict"] == true
            || recorded["response_format"]["json_schema"]["strict"] == true
        {
            self.strict.store(true, Ordering::Relaxed);
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn mode(&self) -> OutputMode {
        self.mode
    }

    /// Whether JSON mode now sends OpenAI's `json_schema` form.
    pub fn json_schema_form(&self) -> bool {
        self.json_schema_form.load(Ordering::Relaxed)
    }

    /// Switches JSON mode to OpenAI's `json_schema` form (a server refused the other one).
    pub fn use_json_schema_form(&self) {
        self.json_schema_form.store(true, Ordering::Relaxed);
    }

    /// The request body for `req` (in JSON mode, in the `response_format` form now in use).
    pub fn body(&self, req: &ChatRequest) -> Value {
        let mut messages = Vec::new();
        let mut system = req.system.clone();
        if self.mode == OutputMode::Json {
            system.push_str(&json_mode_instructions(&req.tools));
        }
        messages.push(json!({"role": "system", "content": system}));
        for m in &req.messages {
            match self.mode {
                OutputMode::Tools => tools_message(m, &mut messages),
                OutputMode::Json => json_message(m, &mut messages),
            }
        }
        let mut body = json!({
            "model": self.model,
            "messages": messages,
        });
        let limit = if self.completion_tokens.load(Ordering::Relaxed) {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[limit] = json!(req.max_tokens);
        if let Some(t) = req.temperature
            && !self.default_temperature.load(Ordering::Relaxed)
        {
            body["temperature"] = json!(t);
        }
        if let Some(s) = req.seed {
            body["seed"] = json!(s);
        }
        match self.mode {
            OutputMode::Tools if !req.tools.is_empty() => {
                body["tools"] = req
                    .tools
                    .iter()
                    .map(|t| {
                        if self.strict.load(Ordering::Relaxed) {
                            json!({"type": "function", "function": {
                                "name": t.name, "description": t.description,
                                "parameters": strict_schema(&t.input_schema), "strict": true,
                            }})
                        } else {
                            json!({"type": "function", "function": {
                                "name": t.name, "description": t.description, "parameters": t.input_schema,
                            }})
                        }
                    })
                    .collect();
                body["tool_choice"] = json!("auto");
            }
            OutputMode::Tools => {}
            OutputMode::Json if self.strict.load(Ordering::Relaxed) => {
                body["response_format"] = json!({"type": "json_schema", "json_schema": {
                    "name": "action", "strict": true, "schema": strict_json_mode_schema(&req.tools),
                }});
            }
            OutputMode::Json => {
                let schema = json_mode_schema(&req.tools);
                body["response_format"] = if self.json_schema_form.load(Ordering::Relaxed) {
                    json!({"type": "json_schema", "json_schema": {"name": "action", "schema": schema}})
                } else {
                    json!({"type": "json_object", "schema": schema})
                };
            }
        }
        body
    }

    /// The reply in a successful response body.
    pub fn parse(&self, v: &Value) -> Result<ChatResponse, ChatError> {
        let choice = v["choices"]
            .get(0)
            .ok_or_else(|| invalid("no `choices[0]`"))?;
        let msg = &choice["message"];
        let stop = match choice["finish_reason"].as_str() {
            Some("stop") => StopReason::EndTurn,
            Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
            Some("length") => StopReason::MaxTokens,
            Some("content_filter") => StopReason::Refusal,
            Some(other) => StopReason::Other(other.to_string()),
            None => StopReason::Other("none".into()),
        };
        let u = &v["usage"];
        let cached = u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0);
        let usage = Usage {
            input_tokens: u["prompt_tokens"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(cached),
            output_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
            cache_read_tokens: cached,
            cache_write_tokens: 0,
        };
        let content = msg["content"].as_str().unwrap_or_default().to_string();
        let mut out = ChatResponse {
            text: String::new(),
            tool_calls: Vec::new(),
            stop,
            usage,
            format_error: None,
            thinking: Vec::new(),
        };
        match self.mode {
            OutputMode::Tools => {
                out.text = content;
                for c in msg["tool_calls"].as_array().into_iter().flatten() {
                    let raw = &c["function"]["arguments"];
                    let (arguments, malformed) = match raw {
                        Value::String(s) => match serde_json::from_str::<Value>(s) {
                            Ok(a) if a.is_object() => (a, None),
                            Ok(a) => (
                                Value::String(s.clone()),
                                Some(format!("the arguments must be a JSON object, got {a}")),
                            ),
                            Err(e) => (
                                Value::String(s.clone()),
                                Some(format!("the arguments are not valid JSON ({e})")),
                            ),
                        },
                        // Some servers send the object itself.
                        Value::Object(_) => (raw.clone(), None),
                        other => (
                            other.clone(),
                            Some("the arguments are missing or not a JSON string".into()),
                        ),
                    };
                    out.tool_calls.push(ToolCall {
                        id: c["id"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| self.fresh_id()),
                        name: c["function"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        arguments,
                        malformed,
                    });
                }
            }
            OutputMode::Json => match read_json_action(&content) {
                Ok((name, arguments)) if name == REPLY_TOOL => {
                    out.text = arguments["text"].as_str().unwrap_or_default().to_string();
                }
                Ok((name, arguments)) => out.tool_calls.push(ToolCall {
                    id: self.fresh_id(),
                    name,
                    arguments,
                    malformed: None,
                }),
                Err(e) => {
                    out.text = content;
                    out.format_error = Some(e);
                }
            },
        }
        Ok(out)
    }

    fn fresh_id(&self) -> String {
        format!("call_{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

fn invalid(message: impl Into<String>) -> ChatError {
    ChatError::InvalidResponse {
        provider: PROVIDER,
        message: message.into(),
    }
}

fn tools_message(m: &ChatMessage, out: &mut Vec<Value>) {
    match m {
        ChatMessage::User { text } => out.push(json!({"role": "user", "content": text})),
        // Thinking blocks are Anthropic's; other servers never sent any.
        ChatMessage::Assistant {
            text, tool_calls, ..
        } => {
            let mut msg = json!({
                "role": "assistant",
                "content": if text.is_empty() { Value::Null } else { json!(text) },
            });
            if !tool_calls.is_empty() {
                msg["tool_calls"] = tool_calls
                    .iter()
                    .map(|c| {
                        let arguments = match &c.arguments {
                            Value::String(raw) if c.malformed.is_some() => raw.clone(),
                            a => a.to_string(),
                        };
                        json!({"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": arguments}})
                    })
                    .collect();
            }
            out.push(msg);
        }
        ChatMessage::ToolResults { results, note } => {
            for r in results {
                out.push(json!({"role": "tool", "tool_call_id": r.call_id, "content": r.content}));
            }
            if let Some(n) = note {
                out.push(json!({"role": "user", "content": n}));
            }
        }
    }
}

fn json_message(m: &ChatMessage, out: &mut Vec<Value>) {
    match m {
        ChatMessage::User { text } => out.push(json!({"role": "user", "content": text})),
        // Thinking blocks are Anthropic's; other servers never sent any.
        ChatMessage::Assistant {
            text, tool_calls, ..
        } => {
            let content = match tool_calls.first() {
                Some(c) => json!({"action": c.name, "arguments": c.arguments}).to_string(),
                // A reply that did not parse is shown as it came, so the error makes sense.
                None if text.trim_start().starts_with('{') => text.clone(),
                None => json!({"action": REPLY_TOOL, "arguments": {"text": text}}).to_string(),
            };
            out.push(json!({"role": "assistant", "content": content}));
        }
        ChatMessage::ToolResults { results, note } => {
            let mut text = String::new();
            for r in results {
                let what = if r.is_error {
                    "Error from"
                } else {
                    "Result of"
                };
                text.push_str(&format!("{what} {}: {}\n", r.name, r.content));
            }
            if let Some(n) = note {
                text.push_str(n);
            }
            out.push(json!({"role": "user", "content": text.trim_end()}));
        }
    }
}

/// `{"action": NAME, "arguments": {...}}` from a JSON-mode reply.
fn read_json_action(content: &str) -> Result<(String, Value), String> {
    let v: Value = serde_json::from_str(content.trim())
        .map_err(|e| format!("the reply is not valid JSON ({e}): {}", clip(content, 200)))?;
    let name = v["action"]
        .as_str()
        .ok_or("the reply has no string field `action`")?
        .to_string();
    let arguments = v.get("arguments").cloned().unwrap_or_else(|| json!({}));
    if !arguments.is_object() {
        return Err("`arguments` must be a JSON object".into());
    }
    Ok((name, arguments))
}

/// Bounds a tool's schema for grammar-constrained decoding: every string gets a `maxLength`,
/// every object `additionalProperties: false`, every array `maxItems`, so the model cannot
/// ramble inside the JSON.
pub fn harden_schema(schema: &Value) -> Value {
    let mut s = schema.clone();
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                let ty = map.get("type").cloned();
                let is = |t: &str| {
                    ty.as_ref().is_some_and(|x| {
                        x == t || x.as_array().is_some_and(|a| a.iter().any(|y| y == t))
                    })
                };
                let bounded = map
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .is_some_and(|n| n <= JSON_MODE_MAX_STRING);
                if is("string") && !bounded && !map.contains_key("enum") {
                    map.insert("maxLength".into(), json!(JSON_MODE_MAX_STRING));
                }
                if is("object") && !map.contains_key("additionalProperties") {
                    map.insert("additionalProperties".into(), json!(false));
                }
                if is("array") && !map.contains_key("maxItems") {
                    map.insert("maxItems".into(), json!(20));
                }
                for (_, child) in map.iter_mut() {
                    walk(child);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut s);
    s
}

/// The JSON Schema of one JSON-mode reply: one of the tools with its arguments, or `reply`.
/// (`action` sorts before `arguments`, and llama.cpp's converter emits properties in that order,
/// so the model names the tool before writing its arguments.)
pub fn json_mode_schema(tools: &[ToolSpec]) -> Value {
    let one = |name: &str, args: Value| {
        json!({
            "type": "object",
            "properties": {"action": {"const": name}, "arguments": args},
            "required": ["action", "arguments"],
            "additionalProperties": false,
        })
    };
    let mut options: Vec<Value> = tools
        .iter()
        .map(|t| one(&t.name, harden_schema(&t.input_schema)))
        .collect();
    options.push(one(
        REPLY_TOOL,
        json!({
            "type": "object",
            "properties": {"text": {"type": "string", "maxLength": JSON_MODE_MAX_STRING}},
            "required": ["text"],
            "additionalProperties": false,
        }),
    ));
    json!({"anyOf": options})
}

/// `schema` as OpenAI's strict function calling takes it: every object closed
/// (`additionalProperties: false`) with every property required, an optional one made nullable
/// (the tool dispatcher reads a `null` as absent), `oneOf` as `anyOf`, and the keywords strict
/// mode refuses (`minLength`, `maxLength`, `default`, `examples`, `uniqueItems`, ...) left out.
pub fn strict_schema(schema: &Value) -> Value {
    const REFUSED: [&str; 7] = [
        "minLength",
        "maxLength",
        "default",
        "examples",
        "uniqueItems",
        "minProperties",
        "maxProperties",
    ];
    fn nullable(v: Value) -> Value {
        match v {
            Value::Object(mut m) if m.get("type").is_some_and(Value::is_string) => {
                let t = m["type"].clone();
                m.insert("type".into(), json!([t, "null"]));
                Value::Object(m)
            }
            Value::Object(mut m) if m.get("anyOf").is_some_and(Value::is_array) => {
                if let Some(Value::Array(options)) = m.get_mut("anyOf") {
                    options.push(json!({"type": "null"}));
                }
                Value::Object(m)
            }
            other => json!({"anyOf": [other, {"type": "null"}]}),
        }
    }
    fn walk(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, child) in m {
                    if REFUSED.contains(&k.as_str()) {
                        continue;
                    }
                    let key = if k == "oneOf" { "anyOf" } else { k.as_str() };
                    out.insert(key.to_string(), walk(child));
                }
                if let Some(Value::Object(props)) = out.get("properties").cloned() {
                    let required: Vec<String> = m
                        .get("required")
                        .and_then(Value::as_array)
                        .map(|r| {
                            r.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    let props: serde_json::Map<String, Value> = props
                        .into_iter()
                        .map(|(k, p)| {
                            let p = if required.contains(&k) {
                                p
                            } else {
                                nullable(p)
                            };
                            (k, p)
                        })
                        .collect();
                    out.insert("required".into(), json!(props.keys().collect::<Vec<_>>()));
                    out.insert("properties".into(), Value::Object(props));
                    out.insert("additionalProperties".into(), json!(false));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(walk).collect()),
            other => other.clone(),
        }
    }
    walk(schema)
}

/// JSON mode's schema as OpenAI's strict structured outputs take it: the root must be an object,
/// so `action` names the tool and `arguments` is any tool's strict argument object (a mismatch is
/// refused by the tool's own parser, and the model is told).
pub fn strict_json_mode_schema(tools: &[ToolSpec]) -> Value {
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    names.push(REPLY_TOOL);
    let mut options: Vec<Value> = tools
        .iter()
        .map(|t| strict_schema(&t.input_schema))
        .collect();
    options.push(json!({
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": false,
    }));
    json!({
        "type": "object",
        "properties": {"action": {"type": "string", "enum": names}, "arguments": {"anyOf": options}},
        "required": ["action", "arguments"],
        "additionalProperties": false,
    })
}

/// What JSON mode adds to the system prompt: the tools exist only as text for such models.
fn json_mode_instructions(tools: &[ToolSpec]) -> String {
    let mut s = String::from(
        "\n\n## How to answer\nAnswer with exactly one JSON object and nothing else: \
         {\"action\": NAME, \"arguments\": {...}}. NAME is one of:\n",
    );
    for t in tools {
        let args: Vec<String> = t.input_schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        // The first sentence: small models gain nothing from more, large ones read the schema.
        let line = t.description.lines().next().unwrap_or_default();
        let first = line.split(". ").next().unwrap_or_default();
        let first = first.trim_end_matches('.');
        s.push_str(&format!("- {} ({}): {first}.\n", t.name, args.join(", ")));
    }
    s.push_str(&format!(
        "- {REPLY_TOOL} (text): answer in words; ends your turn when you have nothing more to do.\n\
         Each answer runs one tool; you see its result and answer again.\n"
    ));
    s
}

/// Whether an error says the server does not take `json_object` with a `schema`.
fn refuses_schema_form(e: &ChatError) -> bool {
    matches!(e, ChatError::Http { status, .. } if (400..=422).contains(status))
}

impl ChatModel for OpenAi {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn model(&self) -> &str {
        &self.wire.model
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, (Result<ChatResponse, ChatError>, Exchange)> {
        Box::pin(async move {
            let mut body = self.body(req);
            let mut out = self.post(&body).await;
            // A refusal that names what the model does not take changes the request once per
            // kind (remembered for the model); at most the two parameters and the JSON form.
            // Another call in flight may have adapted the wire already: what counts is whether the
            // request this call sent differs from the one the wire builds now.
            for _ in 0..3 {
                let Some(e) = out.result.as_ref().err() else {
                    break;
                };
                match Adaptation::asked_by(e) {
                    Some(a) => self.wire.adapt(a),
                    None if self.wire.mode == OutputMode::Json
                        && !self.wire.strict()
                        && body["response_format"]["type"] == "json_object"
                        && refuses_schema_form(e) =>
                    {
                        self.wire.use_json_schema_form();
                    }
                    None => break,
                }
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
            let result = result.and_then(|v| self.wire.parse(&v));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_models_are_known_by_name() {
        for m in [
            "o1",
            "o3-mini",
            "o4-mini-2025-04-16",
            "gpt-5",
            "gpt-5-mini",
            "openai/o3",
        ] {
            assert!(is_reasoning_model(m), "{m}");
        }
        for m in ["gpt-4o-mini", "gpt-4.1", "o10x", "gemma-3", "llama-o3"] {
            assert!(!is_reasoning_model(m), "{m}");
        }
    }

    /// A replay builds the body the run's client sent after it adapted to a refusal.
    #[test]
    fn a_replayed_wire_follows_the_adaptations_a_recorded_body_shows() {
        let req = ChatRequest {
            system: "s".into(),
            messages: vec![],
            tools: vec![],
            max_tokens: 64,
            temperature: Some(0.5),
            seed: None,
        };
        let w = Wire::new("gpt-test", OutputMode::Tools);
        assert_eq!(w.body(&req)["max_tokens"], 64);
        let recorded = json!({"model": "gpt-test", "max_completion_tokens": 64});
        w.adapt_like(&recorded);
        let body = w.body(&req);
        assert_eq!(body["max_completion_tokens"], 64);
        assert!(body.get("max_tokens").is_none() && body.get("temperature").is_none());
        w.adapt(Adaptation::CompletionTokens);
        assert_eq!(w.body(&req), body, "adapting twice changes nothing");
    }

    #[test]
    fn hardening_bounds_strings_objects_and_arrays() {
        let s = harden_schema(&json!({
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "kind": {"type": "string", "enum": ["a", "b"]},
                "short": {"type": "string", "maxLength": 10},
                "long": {"type": "string", "maxLength": 4000},
                "tags": {"type": "array", "items": {"type": "string"}},
            }
        }));
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["message"]["maxLength"], json!(120));
        assert_eq!(s["properties"]["long"]["maxLength"], json!(120), "capped");
        assert!(s["properties"]["kind"].get("maxLength").is_none());
        assert_eq!(s["properties"]["short"]["maxLength"], json!(10));
        assert_eq!(s["properties"]["tags"]["maxItems"], json!(20));
        assert_eq!(s["properties"]["tags"]["items"]["maxLength"], json!(120));
    }

    #[test]
    fn json_replies_are_read_as_one_tool_call_or_words() {
        assert_eq!(
            read_json_action(r#"{"arguments": {"price": 5}, "action": "make_offer"}"#).unwrap(),
            ("make_offer".to_string(), json!({"price": 5}))
        );
        assert!(read_json_action("{\"action\": \"make_offer\", \"argu").is_err());
        assert!(read_json_action(r#"{"arguments": {}}"#).is_err());
        assert!(read_json_action(r#"{"action": "x", "arguments": 3}"#).is_err());
    }
}
