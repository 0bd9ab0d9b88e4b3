//! Events stored by earlier versions still parse, serialise to the same bytes and verify: the
//! fixture holds chains written before events were typed (a demo market and the core's tests).

use haggle_core::Event;
use haggle_core::event::verify_chain;

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
        chains.last_mut().expect("a chain starts at seq 1").push((line, e));
    }
    chains
}

#[test]
fn stored_events_serialise_to_the_same_bytes() {
    for (line, e) in chains().into_iter().flatten() {
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
    }
}

#[test]
fn stored_chains_still_verify() {
    let chains = chains();
    assert_eq!(chains.len(), 10);
    for chain in chains {
        let events: Vec<Event> = chain.into_iter().map(|(_, e)| e).collect();
        assert_eq!(verify_chain(&events), Vec::<String>::new());
    }
}
