//! Events stored by earlier versions still parse, serialise to the same bytes and verify: the
//! fixture holds chains written before events were typed (a demo market and the core's tests),
//! the chain of a shipped deal (written when `deal_shipped` and `deal_delivered` came), and a
//! chain of payment steps (written when the `payment_*` kinds came, issue 23).

use haggle_core::event::{StoredPayload, verify_chain};
use haggle_core::{Event, EventBody};

const FIXTURE: &str = include_str!("fixtures/events-v1.jsonl");

/// The fixture's lines, as chains: each chain starts at sequence number 1.
fn chains() -> Vec<Vec<(&'static str, Event)>> {
    let mut chains: Vec<Vec<(&str, Event)>> = Vec::new();
    for (i, line) in FIXTURE.lines().enumerate() {
        let e: Event = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("fixture line {} does not parse: {err}", i + 1));
        if e.seq == 1 {
            chains.push(Vec::new());
        }
        chains
            .last_mut()
            .expect("a chain starts at seq 1")
            .push((line, e));
    }
    chains
}

#[test]
fn stored_events_serialise_to_the_same_bytes() {
    for (line, e) in chains().into_iter().flatten() {
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
    }
}

/// A page of events read back from a store serves each payload's stored text as it is; the bytes
/// are those written from the body.
#[test]
fn an_event_serves_its_stored_payload_text_as_the_same_bytes() {
    for (line, mut e) in chains().into_iter().flatten() {
        e.stored = StoredPayload::read(e.body.payload_json().to_string()).unwrap();
        assert!(e.stored.text().is_some());
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
    }
}

/// The stored text is a cache of the body: a chain whose stored text differs from its body's
/// canonical form (same value, so the same hash) is reported, not served.
#[test]
fn a_stored_payload_text_that_is_not_canonical_breaks_the_chain() {
    let mut events: Vec<Event> = chains().remove(0).into_iter().map(|(_, e)| e).collect();
    for e in &mut events {
        e.stored = StoredPayload::read(e.body.payload_json().to_string()).unwrap();
    }
    assert_eq!(verify_chain(&events), Vec::<String>::new());
    let canonical = events[1].body.payload_json().to_string();
    events[1].stored = StoredPayload::read(format!("{{ {}", &canonical[1..])).unwrap();
    assert_eq!(
        verify_chain(&events),
        vec!["event 2's stored payload is not its canonical text (altered)".to_string()]
    );
}

#[test]
fn stored_chains_still_verify() {
    let chains = chains();
    assert_eq!(chains.len(), 14);
    for chain in chains {
        let events: Vec<Event> = chain.into_iter().map(|(_, e)| e).collect();
        assert_eq!(verify_chain(&events), Vec::<String>::new());
    }
}

#[test]
fn the_fixture_holds_every_kind() {
    let seen: std::collections::BTreeSet<&str> = chains()
        .into_iter()
        .flatten()
        .map(|(_, e)| e.kind())
        .collect();
    let missing: Vec<&&str> = EventBody::KINDS
        .iter()
        .filter(|k| !seen.contains(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "kinds with no stored example: {missing:?}"
    );
}

#[test]
fn an_unknown_kind_is_refused() {
    let line = FIXTURE
        .lines()
        .next()
        .unwrap()
        .replace("participant_joined", "participant_renamed");
    let err = serde_json::from_str::<Event>(&line).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown event kind `participant_renamed`"),
        "{err}"
    );
}

#[test]
fn a_payload_with_a_field_its_kind_lacks_is_refused() {
    let line = FIXTURE
        .lines()
        .next()
        .unwrap()
        .replace(r#""payload":{"#, r#""payload":{"extra":1,"#);
    let err = serde_json::from_str::<Event>(&line).unwrap_err();
    assert!(err.to_string().contains("unknown field `extra`"), "{err}");
}

#[test]
fn stored_payload_texts_read_as_the_same_bodies() {
    for (line, e) in chains().into_iter().flatten() {
        let wire: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = wire["kind"].as_str().unwrap();
        let text = serde_json::to_string(&wire["payload"]).unwrap();
        assert_eq!(EventBody::from_stored(kind, &text).unwrap(), e.body);
    }
}
