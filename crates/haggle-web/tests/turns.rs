//! The End turn control of a participant a person drives in a simulation (the `human` brain,
//! issue 19): shown on its principal's page while its turn is open, and ending that turn.

mod support;

use haggle_service::turns::{TurnEnd, Turns};
use std::time::Duration;
use support::*;

#[tokio::test]
async fn the_principal_page_ends_the_open_turn_of_a_participant_driven_by_a_person() {
    let s = Server::start().await;
    let m = s.market("Turns").await;
    let alice = s.participant(m, "Alice", 10_000).await;
    let page = format!("/m/{m}/p/{}", alice.id);
    let turns = Turns::new(m, [alice.id]);
    assert!(s.svc.attach_turns(turns.clone()).is_ok());
    let closed = s.page(&page, Some(&alice.principal)).await;
    assert!(!closed.body.contains("End turn"), "no turn is open yet");

    turns.open(alice.id, 3);
    let open = s.page(&page, Some(&alice.principal)).await;
    assert!(open.body.contains("Your turn 3 is open"), "{}", open.body);
    let ended = s
        .form(
            &format!("{page}/turns/3/end"),
            &alice.principal,
            &[("csrf", &open.hidden("csrf"))],
        )
        .await;
    assert_eq!(ended.status, 303, "{}", ended.body);
    assert_eq!(
        ended.location.as_deref(),
        Some(format!("{page}?done=turn_ended").as_str())
    );
    let waited = turns.wait(alice.id, Duration::from_secs(5)).await;
    assert_eq!(waited, TurnEnd::Ended);
    let after = s.page(&page, Some(&alice.principal)).await;
    assert!(!after.body.contains("End turn"), "the ended turn is gone");
}

#[tokio::test]
async fn a_participants_turns_are_told_in_sentences() {
    let s = Server::start().await;
    let m = s.market("Turns").await;
    let alice = s.participant(m, "Alice", 10_000).await;
    let turns = Turns::new(m, [alice.id]);
    assert!(s.svc.attach_turns(turns.clone()).is_ok());
    let operator = haggle_service::Caller {
        role: haggle_service::Role::Operator,
        market: None,
        participant: None,
        scope: "test".into(),
    };
    let marks = [
        haggle_service::TurnMark::Started {
            round: 0,
            budget_ms: 30_000,
        },
        haggle_service::TurnMark::TimedOut,
    ];
    for mark in marks {
        let marked = s.svc.mark_turn(&operator, m, alice.id, 3, mark).await;
        assert!(marked.is_ok());
    }
    // Told as the chat channels tell them (the web feed's filters leave turns aside).
    let events = s
        .svc
        .store()
        .events(m, haggle_service::Viewer::All, 0, 100)
        .await
        .unwrap();
    let mut names = haggle_service::story::Names::new(&s.svc, &operator, m);
    let mut told = Vec::new();
    for e in events.iter().filter(|e| e.kind().starts_with("turn_")) {
        told.push(
            haggle_service::story::describe(e, &mut names, m, "USD")
                .await
                .text,
        );
    }
    assert_eq!(
        told,
        [
            "Alice's turn 3 is open: the market waits up to 30 s",
            "Alice's turn 3 timed out: the market went on"
        ]
    );
}
