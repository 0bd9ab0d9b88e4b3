//! The audit log: every state change appends one event to its market's hash-chained log
//! (`hash = H(prev_hash ‖ canonical event)`), so an edit or a deletion breaks the chain.

use crate::model::{MarketId, ParticipantId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who may read an event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scope", content = "participants")]
pub enum Visibility {
    /// Everyone in the market.
    Public,
    /// The named participants (a thread's two parties, or one participant); observers too when the
    /// market allows them to read private threads; operators always.
    Parties(Vec<ParticipantId>),
    /// Operators (and observers) only, e.g. ledger transfers between third parties.
    Operators,
}

impl Visibility {
    pub fn includes(&self, p: ParticipantId) -> bool {
        match self {
            Visibility::Public => true,
            Visibility::Parties(ps) => ps.contains(&p),
            Visibility::Operators => false,
        }
    }
}

/// An event as a command produces it; the store gives it its sequence number and hash.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDraft {
    pub kind: String,
    pub actor: Option<ParticipantId>,
    pub visibility: Visibility,
    pub payload: serde_json::Value,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub market_id: MarketId,
    pub seq: i64,
    pub at: Timestamp,
    pub kind: String,
    pub actor: Option<ParticipantId>,
    pub visibility: Visibility,
    pub payload: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Serialize)]
struct Canonical<'a> {
    market_id: MarketId,
    seq: i64,
    at: Timestamp,
    kind: &'a str,
    actor: Option<ParticipantId>,
    visibility: &'a Visibility,
    payload: &'a serde_json::Value,
}

impl Event {
    /// Seals a draft as the next event of the chain.
    pub fn seal(
        market_id: MarketId,
        seq: i64,
        at: Timestamp,
        prev_hash: &str,
        d: EventDraft,
    ) -> Event {
        let mut e = Event {
            market_id,
            seq,
            at,
            kind: d.kind,
            actor: d.actor,
            visibility: d.visibility,
            payload: d.payload,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }

    /// The canonical form: fixed field order, and object keys sorted (serde_json's default map).
    pub fn canonical(&self) -> String {
        serde_json::to_string(&Canonical {
            market_id: self.market_id,
            seq: self.seq,
            at: self.at,
            kind: &self.kind,
            actor: self.actor,
            visibility: &self.visibility,
            payload: &self.payload,
        })
        .expect("events serialise")
    }

    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(self.canonical().as_bytes());
        hex::encode(h.finalize())
    }
}

/// Checks one market's chain, in sequence order: contiguous sequence numbers from 1, each event's
/// `prev_hash` equal to the previous hash, each hash recomputed. Returns a description of each break.
pub fn verify_chain(events: &[Event]) -> Vec<String> {
    let mut breaks = Vec::new();
    let mut prev = GENESIS_HASH.to_string();
    for (i, e) in events.iter().enumerate() {
        let want_seq = i as i64 + 1;
        if e.seq != want_seq {
            breaks.push(format!(
                "event seq {} where {want_seq} was expected (deleted or reordered)",
                e.seq
            ));
        }
        if e.prev_hash != prev {
            breaks.push(format!("event {} does not link to its predecessor", e.seq));
        }
        if e.compute_hash() != e.hash {
            breaks.push(format!("event {} was altered (hash mismatch)", e.seq));
        }
        prev = e.hash.clone();
    }
    breaks
}
