//! The run's record of every model call, one JSON object per line (`llm_calls.jsonl`): the
//! rendered system prompt of each agent once (`kind: "prompt"`), then each call (`kind: "call"`)
//! with the request as sent, the reply as received (and every earlier attempt), usage, cost and
//! latency, the calls the spend guard refused (`kind: "spend_refused"`), and the order in which
//! agents took the market (`kind: "market"`), the notes agents wrote at the end of a session of a
//! repeated market (`kind: "memory"`) — enough to audit a run and to replay it
//! (`replay.rs`).

use super::{Exchange, Usage};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

// A call record is large and a prompt record small; records are made one at a time and
// written out at once, so boxing the call would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Prompt {
        agent: String,
        brain: String,
        template_version: String,
        system_prompt: String,
    },
    Call {
        agent: String,
        brain: String,
        /// The agent's turn (counted by the brain) and the step within it.
        turn: u64,
        step: u32,
        round: u64,
        #[serde(flatten)]
        exchange: Exchange,
        usage: Usage,
        /// µUSD; absent when the model's price is unknown.
        cost_micro_usd: Option<i64>,
        /// Why the call gave no reply (HTTP refusal after retries, timeout, broken body).
        error: Option<String>,
        /// Why its reply could not be used as it came (not JSON, unknown tool, invalid
        /// arguments); the model was told.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        malformed: Option<String>,
    },
    /// The agent took the market (one market's turns run concurrently and hold the market in
    /// turn, `sequencer.rs`): a replay grants it in the order of these records.
    Market { agent: String },
    /// The experiment's spend guard did not admit a call the brain was about to make (the turn
    /// ended there): a replay refuses the same call, since the guard's decision depended on what
    /// other calls were in flight at that moment.
    SpendRefused {
        agent: String,
        brain: String,
        turn: u64,
        step: u32,
        round: u64,
        /// What the brain noted for the turn, word for word.
        reason: String,
    },
    /// A turn of a participant driven from outside the simulation (issue 24): the commands the
    /// market applied in it, in order (the store's `Command`s as JSON, refusals included), and
    /// how it ended. A replay applies the same commands at the same turn without the agent.
    Turn {
        agent: String,
        turn: u64,
        round: u64,
        /// The turn's real-time budget (its `turn_started` event says so).
        budget_ms: u64,
        commands: Vec<serde_json::Value>,
        end: haggle_api::TurnEnd,
    },
    /// The note an agent wrote at the end of a market session for the next one (repeated
    /// markets): its model's reply to the end-of-session call, clipped to the memory limit.
    Memory {
        agent: String,
        brain: String,
        /// The session that ended (1-based); the note is read at the start of the next.
        session: u32,
        text: String,
    },
}

/// Where records go: a JSONL file, or nowhere.
pub struct CallLog {
    file: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl CallLog {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> std::io::Result<CallLog> {
        let f = std::fs::File::create(path)?;
        Ok(CallLog {
            file: Some(Mutex::new(std::io::BufWriter::new(f))),
        })
    }

    pub fn discard() -> CallLog {
        CallLog { file: None }
    }

    /// Appends one record and flushes it (a crashed run keeps every call made so far). A failed
    /// write is reported, never fatal to the run.
    pub fn write(&self, r: &Record) {
        let Some(file) = &self.file else { return };
        let Ok(mut f) = file.lock() else { return };
        let line = serde_json::to_string(r).unwrap_or_default();
        if let Err(e) = writeln!(f, "{line}").and_then(|_| f.flush()) {
            tracing::warn!(error = %e, "cannot write the LLM call log");
        }
    }

    /// Reads a log back (for replay and reports).
    pub fn read(path: &Path) -> std::io::Result<Vec<Record>> {
        let text = std::fs::read_to_string(path)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })
            .collect()
    }
}
