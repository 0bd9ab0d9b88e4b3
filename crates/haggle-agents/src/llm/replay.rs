//! Replaying a run's model calls from its call log (`llm_calls.jsonl`), with no network: each
//! agent's k-th call is answered with its k-th recorded reply (failures and malformed replies
//! included, so the brain takes the same path), after checking that the request the brain built
//! is the recorded one; a call the run's spend guard refused is refused again at the same point.
//! Any difference is kept as a divergence naming the agent and the call, and fails that call, so
//! a replay can never pass silently.

use super::log::Record;
use super::openai::{self, OutputMode};
use super::{ChatError, ChatModel, ChatRequest, ChatResponse, Exchange, Usage, anthropic};
use crate::brain::BoxFuture;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One recorded call: what was sent and what came back.
#[derive(Debug, Clone)]
struct Recorded {
    brain: String,
    exchange: Exchange,
    usage: Usage,
    error: Option<String>,
}

/// One step of an agent's record: a call made, or a call its spend guard refused.
#[derive(Debug, Clone)]
enum Entry {
    Call(Box<Recorded>),
    Refused(String),
}

/// A recorded turn of a participant driven from outside the simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct OutsideTurn {
    pub budget_ms: u64,
    /// The store's commands, as JSON, in the order the market applied them.
    pub commands: Vec<serde_json::Value>,
    pub end: haggle_api::TurnEnd,
}

/// The calls of a run, per agent in the order made, and what the replay found different.
#[derive(Debug, Default)]
pub struct Recording {
    calls: BTreeMap<String, Vec<Entry>>,
    /// The agents in the order they took the market (`market` records).
    market_order: Vec<String>,
    /// Outside participants' turns (`turn` records) by agent and turn: the commands the market
    /// applied and how the turn ended.
    turns: BTreeMap<(String, u64), OutsideTurn>,
    /// The outside turns the replay took so far.
    turns_taken: Mutex<usize>,
    /// Per agent, how many calls were asked for so far.
    asked: Mutex<BTreeMap<String, usize>>,
    divergences: Mutex<Vec<String>>,
}

impl Recording {
    pub fn new(records: Vec<Record>) -> Recording {
        let mut calls: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        let mut market_order = Vec::new();
        let mut turns = BTreeMap::new();
        for r in records {
            match r {
                Record::Call {
                    agent,
                    brain,
                    exchange,
                    usage,
                    error,
                    ..
                } => calls
                    .entry(agent)
                    .or_default()
                    .push(Entry::Call(Box::new(Recorded {
                        brain,
                        exchange,
                        usage,
                        error,
                    }))),
                Record::SpendRefused { agent, reason, .. } => {
                    calls.entry(agent).or_default().push(Entry::Refused(reason))
                }
                Record::Market { agent } => market_order.push(agent),
                Record::Turn {
                    agent,
                    turn,
                    budget_ms,
                    commands,
                    end,
                    ..
                } => {
                    let t = OutsideTurn {
                        budget_ms,
                        commands,
                        end,
                    };
                    turns.insert((agent, turn), t);
                }
                Record::Prompt { .. } | Record::Memory { .. } => {}
            }
        }
        Recording {
            calls,
            market_order,
            turns,
            ..Recording::default()
        }
    }

    /// Reads a run's call log.
    pub fn read(path: &Path) -> std::io::Result<Recording> {
        super::CallLog::read(path).map(Recording::new)
    }

    /// Calls recorded in all.
    pub fn len(&self) -> usize {
        self.count(|e| matches!(e, Entry::Call(_)))
    }

    /// Calls the run's spend guard refused.
    pub fn spend_refusals(&self) -> usize {
        self.count(|e| matches!(e, Entry::Refused(_)))
    }

    fn count(&self, f: impl Fn(&Entry) -> bool) -> usize {
        self.calls.values().flatten().filter(|e| f(e)).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The agents in the order they took the market in the run.
    pub fn market_order(&self) -> &[String] {
        &self.market_order
    }

    /// The recorded outside turn `turn` of `agent`; a turn the run did not record is a divergence
    /// (the replay goes on as if it had timed out without a command).
    pub fn outside_turn(&self, agent: &str, turn: u64) -> OutsideTurn {
        if let Ok(mut n) = self.turns_taken.lock() {
            *n += 1;
        }
        match self.turns.get(&(agent.to_string(), turn)) {
            Some(t) => t.clone(),
            None => {
                self.diverged(format!(
                    "agent {agent}: the run recorded no turn {turn} of it"
                ));
                OutsideTurn {
                    budget_ms: 0,
                    commands: Vec::new(),
                    end: haggle_api::TurnEnd::TimedOut,
                }
            }
        }
    }

    /// Everything the replay did differently so far, including recorded calls it never asked for
    /// (call this once the replay has ended).
    pub fn divergences(&self) -> Vec<String> {
        let mut out = self
            .divergences
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        let taken = self.turns_taken.lock().map(|n| *n).unwrap_or(0);
        if taken < self.turns.len() {
            out.push(format!(
                "{} outside turns were recorded, the replay took {taken}",
                self.turns.len()
            ));
        }
        let asked = self.asked.lock().map(|a| a.clone()).unwrap_or_default();
        for (agent, calls) in &self.calls {
            let made = asked.get(agent).copied().unwrap_or(0);
            if made < calls.len() {
                out.push(format!(
                    "agent {agent}: {} calls (and spend refusals) were recorded, the replay reached {made}",
                    calls.len()
                ));
            }
        }
        out
    }

    /// The agent's next entry number (from 1) and its record, if there is one.
    fn next(&self, agent: &str) -> (usize, Option<&Entry>) {
        let k = match self.asked.lock() {
            Ok(mut a) => {
                let n = a.entry(agent.to_string()).or_insert(0);
                *n += 1;
                *n
            }
            Err(_) => 0,
        };
        (k, self.entry(agent, k))
    }

    fn entry(&self, agent: &str, k: usize) -> Option<&Entry> {
        self.calls
            .get(agent)
            .and_then(|c| k.checked_sub(1).and_then(|i| c.get(i)))
    }

    /// Whether the run's spend guard refused the agent's next call, and what the brain noted
    /// then: a replayed brain asks this where it asked the guard, so the refusal is consumed in
    /// order, like a call. One agent's brain asks in turn, never concurrently with itself.
    pub fn spend_refusal(&self, agent: &str) -> Option<String> {
        let mut asked = self.asked.lock().ok()?;
        let n = asked.entry(agent.to_string()).or_insert(0);
        match self.entry(agent, *n + 1) {
            Some(Entry::Refused(reason)) => {
                *n += 1;
                Some(reason.clone())
            }
            _ => None,
        }
    }

    /// Keeps a difference found by the replay (the model calls' or the market order's).
    pub fn diverged(&self, message: String) {
        tracing::warn!("replay diverged: {message}");
        if let Ok(mut d) = self.divergences.lock() {
            d.push(message);
        }
    }
}

/// The wire format a replayed brain's requests are built in: the provider's own, so a request is
/// compared with the recorded one exactly as it would have been sent.
pub enum ReplayWire {
    Anthropic(anthropic::Wire),
    OpenAi(openai::Wire),
}

impl ReplayWire {
    pub fn anthropic(model: &str) -> ReplayWire {
        ReplayWire::Anthropic(anthropic::Wire::new(model, super::Thinking::Off))
    }

    pub fn openai(model: &str, mode: OutputMode) -> ReplayWire {
        ReplayWire::OpenAi(openai::Wire::new(model, mode))
    }

    fn body(&self, req: &ChatRequest) -> Value {
        match self {
            ReplayWire::Anthropic(w) => w.body(req),
            ReplayWire::OpenAi(w) => w.body(req),
        }
    }

    fn parse(&self, v: &Value) -> Result<ChatResponse, ChatError> {
        match self {
            ReplayWire::Anthropic(_) => anthropic::parse(v),
            ReplayWire::OpenAi(w) => w.parse(v),
        }
    }

    /// The body for `req` as the recorded call sent it: in JSON mode the original client switched
    /// to OpenAI's `json_schema` form once a server refused the other, and the record shows when.
    fn body_like(&self, req: &ChatRequest, recorded: &Value) -> Value {
        // Parameters the run's client set or adapted after a refusal (`max_completion_tokens`,
        // thinking, no temperature) show in the recorded body.
        match self {
            ReplayWire::OpenAi(w) => w.adapt_like(recorded),
            ReplayWire::Anthropic(w) => w.adapt_like(recorded),
        }
        let body = self.body(req);
        if let ReplayWire::OpenAi(w) = self
            && w.mode() == OutputMode::Json
            && !w.json_schema_form()
            && body != *recorded
            && recorded["response_format"]["type"] == "json_schema"
        {
            w.use_json_schema_form();
            return self.body(req);
        }
        body
    }
}

/// A model that answers one agent's calls from a [`Recording`].
pub struct RecordedModel {
    recording: Arc<Recording>,
    agent: String,
    brain: String,
    wire: Arc<ReplayWire>,
}

impl RecordedModel {
    /// Answers the calls of `agent` (its label in the log), made by the brain `brain` whose
    /// requests are built by `wire` (shared by the agents of one brain, as the client was).
    pub fn new(
        recording: Arc<Recording>,
        agent: &str,
        brain: &str,
        wire: Arc<ReplayWire>,
    ) -> RecordedModel {
        RecordedModel {
            recording,
            agent: agent.to_string(),
            brain: brain.to_string(),
            wire,
        }
    }

    fn answer(&self, req: &ChatRequest) -> (Result<ChatResponse, ChatError>, Exchange) {
        let started = Instant::now();
        let (k, rec) = self.recording.next(&self.agent);
        let agent = &self.agent;
        let fail = |body: Value, message: String| {
            let message = format!("replay of agent {agent}, call {k}: {message}");
            self.recording.diverged(message.clone());
            let exchange = Exchange {
                provider: self.provider().into(),
                model: self.model().into(),
                url: String::new(),
                request: body,
                response: None,
                status: None,
                attempts: 0,
                latency_ms: started.elapsed().as_millis() as u64,
                earlier: Vec::new(),
            };
            (Err(ChatError::Recorded { message }), exchange)
        };
        let rec = match rec {
            Some(Entry::Call(rec)) => rec,
            Some(Entry::Refused(_)) => {
                let m =
                    "the run's spend guard refused this call; the replay asked the model".into();
                return fail(self.wire.body(req), m);
            }
            None => return fail(self.wire.body(req), "no such call was recorded".into()),
        };
        let body = self.wire.body_like(req, &rec.exchange.request);
        if rec.brain != self.brain {
            let m = format!(
                "recorded for brain '{}', replayed by '{}'",
                rec.brain, self.brain
            );
            return fail(body, m);
        }
        if body != rec.exchange.request {
            let m = format!(
                "the request differs from the recorded one (first at {})",
                first_difference(&rec.exchange.request, &body)
            );
            return fail(body, m);
        }
        let result = match (&rec.error, &rec.exchange.response) {
            (Some(e), _) => Err(ChatError::Recorded { message: e.clone() }),
            (None, Some(response)) => match self.wire.parse(response) {
                Ok(r) if r.usage != rec.usage => {
                    return fail(body, "the recorded reply and its usage disagree".into());
                }
                Ok(r) => Ok(r),
                Err(e) => return fail(body, format!("the recorded reply does not read: {e}")),
            },
            (None, None) => return fail(body, "the record has neither reply nor error".into()),
        };
        let exchange = Exchange {
            request: body,
            latency_ms: started.elapsed().as_millis() as u64,
            ..rec.exchange.clone()
        };
        (result, exchange)
    }
}

impl ChatModel for RecordedModel {
    fn provider(&self) -> &'static str {
        match &*self.wire {
            ReplayWire::Anthropic(_) => "anthropic",
            ReplayWire::OpenAi(_) => "openai",
        }
    }

    fn model(&self) -> &str {
        match &*self.wire {
            ReplayWire::Anthropic(w) => w.model(),
            ReplayWire::OpenAi(w) => w.model(),
        }
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, (Result<ChatResponse, ChatError>, Exchange)> {
        Box::pin(async move { self.answer(req) })
    }
}

/// Where two JSON values first differ, as a JSON pointer (`/messages/3/content`).
pub fn first_difference(a: &Value, b: &Value) -> String {
    fn walk(a: &Value, b: &Value, path: &mut String) -> bool {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys().chain(y.keys()) {
                    let len = path.len();
                    path.push('/');
                    path.push_str(k);
                    match (x.get(k), y.get(k)) {
                        (Some(u), Some(v)) if !walk(u, v, path) => return false,
                        (Some(_), Some(_)) => {}
                        _ => return false,
                    }
                    path.truncate(len);
                }
                true
            }
            (Value::Array(x), Value::Array(y)) => {
                for i in 0..x.len().max(y.len()) {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    match (x.get(i), y.get(i)) {
                        (Some(u), Some(v)) if !walk(u, v, path) => return false,
                        (Some(_), Some(_)) => {}
                        _ => return false,
                    }
                    path.truncate(len);
                }
                true
            }
            _ => a == b,
        }
    }
    let mut path = String::new();
    if walk(a, b, &mut path) {
        "nowhere".into()
    } else if path.is_empty() {
        "/".into()
    } else {
        path
    }
}
