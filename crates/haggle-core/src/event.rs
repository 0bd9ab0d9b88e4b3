//! The audit log: every state change appends one event to its market's hash-chained log
//! (`hash = H(prev_hash ‖ canonical event)`), so an edit or a deletion breaks the chain.
//! What happened is an [`EventBody`] (see `body.rs`): a kind with its typed payload.

use crate::model::{ActedBy, MarketId, ParticipantId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::sync::Arc;

mod body;
pub use body::*;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDraft {
    pub actor: Option<ParticipantId>,
    /// Whether the actor's agent or its principal (by hand) acted.
    pub by: ActedBy,
    pub visibility: Visibility,
    pub body: EventBody,
}

/// A sealed event. On the wire (and in the hash) it is the flat object it always was: `kind` and
/// `payload` next to the chain fields, the payload's keys sorted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "EventWire")]
pub struct Event {
    pub market_id: MarketId,
    pub seq: i64,
    pub at: Timestamp,
    pub actor: Option<ParticipantId>,
    /// Whether the actor's agent or its principal (by hand) acted; on the wire and in the hash
    /// only when the principal did, so events stored before it read and chain unchanged.
    pub by: ActedBy,
    pub visibility: Visibility,
    pub body: EventBody,
    pub prev_hash: String,
    pub hash: String,
    /// The payload's text as a store holds it, when the event was read back from one.
    pub stored: StoredPayload,
}

/// An event's payload text as stored (and hashed), kept by an event read back from a store so
/// that serving it copies the text instead of writing the payload again (a page of events was
/// ~5% of an API server's CPU in `Value`s). A cache of `body`: it takes no part in equality, and
/// `ChainCheck` (so `verify`) reports an event whose text is not its body's canonical form.
#[derive(Clone, Default)]
pub struct StoredPayload(Option<Arc<RawValue>>);

impl StoredPayload {
    /// Keeps a stored payload's text; refused unless it is one JSON value.
    pub fn read(text: String) -> Result<StoredPayload, serde_json::Error> {
        Ok(StoredPayload(Some(Arc::from(RawValue::from_string(text)?))))
    }

    pub fn text(&self) -> Option<&str> {
        self.0.as_deref().map(RawValue::get)
    }
}

impl PartialEq for StoredPayload {
    fn eq(&self, _: &StoredPayload) -> bool {
        true
    }
}

impl Eq for StoredPayload {}

impl std::fmt::Debug for StoredPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "StoredPayload(kept)"
        } else {
            "StoredPayload(none)"
        })
    }
}

/// An event's payload on the wire: its stored text when it has one, else written from its body.
struct PayloadOut<'a>(&'a Event);

impl Serialize for PayloadOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0.stored.0 {
            Some(raw) => raw.serialize(s),
            None => self.0.body.payload_json().serialize(s),
        }
    }
}

// The wire form of `Event`: what the store holds and the API serves. (A plain comment: a doc
// comment would become the schema's description and change the OpenAPI document.)
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Deserialize)]
struct EventWire {
    market_id: MarketId,
    seq: i64,
    at: Timestamp,
    kind: String,
    actor: Option<ParticipantId>,
    #[serde(default)]
    by: ActedBy,
    visibility: Visibility,
    payload: serde_json::Value,
    prev_hash: String,
    hash: String,
}

/// The same fields, borrowed, in the same order (the field order is part of the bytes).
#[derive(Serialize)]
struct EventWireRef<'a> {
    market_id: MarketId,
    seq: i64,
    at: Timestamp,
    kind: &'a str,
    actor: Option<ParticipantId>,
    #[serde(skip_serializing_if = "ActedBy::is_agent")]
    by: ActedBy,
    visibility: &'a Visibility,
    payload: PayloadOut<'a>,
    prev_hash: &'a str,
    hash: &'a str,
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EventWireRef {
            market_id: self.market_id,
            seq: self.seq,
            at: self.at,
            kind: self.kind(),
            actor: self.actor,
            by: self.by,
            visibility: &self.visibility,
            payload: PayloadOut(self),
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
        .serialize(s)
    }
}

impl TryFrom<EventWire> for Event {
    type Error = EventParseError;
    fn try_from(w: EventWire) -> Result<Event, EventParseError> {
        Ok(Event {
            market_id: w.market_id,
            seq: w.seq,
            at: w.at,
            actor: w.actor,
            by: w.by,
            visibility: w.visibility,
            body: EventBody::from_parts(&w.kind, w.payload)?,
            prev_hash: w.prev_hash,
            hash: w.hash,
            stored: StoredPayload::default(),
        })
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Event {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <EventWire as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Event {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Event")
    }
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <EventWire as utoipa::ToSchema>::schemas(schemas)
    }
}

/// The canonical form's fields before the payload, which comes last (see
/// [`Event::canonical_with`]).
#[derive(Serialize)]
struct CanonicalHead<'a> {
    market_id: MarketId,
    seq: i64,
    at: Timestamp,
    kind: &'a str,
    actor: Option<ParticipantId>,
    #[serde(skip_serializing_if = "ActedBy::is_agent")]
    by: ActedBy,
    visibility: &'a Visibility,
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
        Event::seal_stored(market_id, seq, at, prev_hash, d).0
    }

    /// [`Event::seal`], with the payload's stored text (the text its hash covers), so a store
    /// writing the event does not serialise the payload again.
    pub fn seal_stored(
        market_id: MarketId,
        seq: i64,
        at: Timestamp,
        prev_hash: &str,
        d: EventDraft,
    ) -> (Event, String) {
        let mut e = Event {
            market_id,
            seq,
            at,
            actor: d.actor,
            by: d.by,
            visibility: d.visibility,
            body: d.body,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
            stored: StoredPayload::default(),
        };
        let payload = e.body.payload_json().to_string();
        e.hash = e.hash_with(&payload);
        (e, payload)
    }

    /// The event's kind as the wire names it (`offer_made`, ...).
    pub fn kind(&self) -> &'static str {
        self.body.kind()
    }

    /// The canonical form: fixed field order, and object keys sorted (serde_json's default map).
    pub fn canonical(&self) -> String {
        self.canonical_with(&self.body.payload_json().to_string())
    }

    /// The canonical form around the payload's text: one compact JSON object whose last field
    /// is `payload` (the head's closing brace gives way to it).
    fn canonical_with(&self, payload: &str) -> String {
        let mut text = serde_json::to_string(&CanonicalHead {
            market_id: self.market_id,
            seq: self.seq,
            at: self.at,
            kind: self.kind(),
            actor: self.actor,
            by: self.by,
            visibility: &self.visibility,
        })
        .expect("events serialise");
        let closing = text.pop();
        assert_eq!(closing, Some('}'), "the head is a JSON object");
        text.reserve(payload.len() + 12);
        text.push_str(",\"payload\":");
        text.push_str(payload);
        text.push('}');
        text
    }

    pub fn compute_hash(&self) -> String {
        self.hash_with(&self.body.payload_json().to_string())
    }

    fn hash_with(&self, payload: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(self.canonical_with(payload).as_bytes());
        hex::encode(h.finalize())
    }
}

/// Checks one market's chain, in sequence order: contiguous sequence numbers from 1, each event's
/// `prev_hash` equal to the previous hash, each hash recomputed. Returns a description of each break.
pub fn verify_chain(events: &[Event]) -> Vec<String> {
    let mut check = ChainCheck::default();
    for e in events {
        check.next(e);
    }
    check.breaks
}

/// [`verify_chain`] one event at a time, so a store can check a long chain page by page without
/// holding it whole.
#[derive(Debug, Clone)]
pub struct ChainCheck {
    /// Events checked so far (the next one's expected seq is one more).
    pub checked: usize,
    prev: String,
    /// A description of each break found so far.
    pub breaks: Vec<String>,
}

impl Default for ChainCheck {
    fn default() -> ChainCheck {
        ChainCheck {
            checked: 0,
            prev: GENESIS_HASH.to_string(),
            breaks: Vec::new(),
        }
    }
}

impl ChainCheck {
    /// Checks the chain's next event against the ones before it.
    pub fn next(&mut self, e: &Event) {
        let want_seq = self.checked as i64 + 1;
        if e.seq != want_seq {
            self.breaks.push(format!(
                "event seq {} where {want_seq} was expected (deleted or reordered)",
                e.seq
            ));
        }
        if e.prev_hash != self.prev {
            self.breaks
                .push(format!("event {} does not link to its predecessor", e.seq));
        }
        let payload = e.body.payload_json().to_string();
        if e.hash_with(&payload) != e.hash {
            self.breaks
                .push(format!("event {} was altered (hash mismatch)", e.seq));
        }
        if e.stored.text().is_some_and(|t| t != payload) {
            self.breaks.push(format!(
                "event {}'s stored payload is not its canonical text (altered)",
                e.seq
            ));
        }
        self.prev.clone_from(&e.hash);
        self.checked += 1;
    }
}
