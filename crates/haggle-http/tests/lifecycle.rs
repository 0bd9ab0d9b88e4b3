//! The deal lifecycle over the real server: handover, receipt, automatic completion on a simulated
//! clock, cancellation, disputes with evidence and a split, the principal's approval, ratings,
//! reputation, and the settlement report (JSON and CSV). Every refusal is checked for its error
//! body and for leaving the market unchanged.

mod support;

use serde_json::{Value, json};
use support::*;

/// Alice sells, Bob buys, Carol has no part in it.
struct Fx {
    m: i64,
    alice: Party,
    bob: Party,
    carol: Party,
}

const BUDGET: i64 = 10_000;

async fn fx_in(s: &Server, market: i64) -> Fx {
    Fx {
        m: market,
        alice: s.participant(market, "Alice", 0).await,
        bob: s.participant(market, "Bob", BUDGET).await,
        carol: s.participant(market, "Carol", BUDGET).await,
    }
}

async fn fx(s: &Server) -> Fx {
    let m = s.market().await;
    fx_in(s, m).await
}

impl Fx {
    fn parties(&self) -> [&Party; 3] {
        [&self.alice, &self.bob, &self.carol]
    }

    fn deal_path(&self, deal: i64, action: &str) -> String {
        format!("/v1/markets/{}/deals/{deal}/{action}", self.m)
    }

    /// Alice lists `title` at `price` and accepts Bob's bid of `price`; returns the deal.
    async fn deal(&self, s: &Server, title: &str, price: i64) -> Value {
        let l = s.sell(self.m, &self.alice, title, price).await;
        let (_, offer) = s.bid(self.m, &self.bob, l, price).await;
        s.accept(self.m, &self.alice, offer).await
    }

    /// A lifecycle action that must succeed with `status`; returns the body.
    async fn act(
        &self,
        s: &Server,
        who: &str,
        deal: i64,
        action: &str,
        body: Value,
        status: u16,
    ) -> Value {
        let r = s.post(&self.deal_path(deal, action), who, body).await;
        assert_status(&r, status, action);
        r.1
    }

    /// A request that must be refused with `status` and `code` and change nothing.
    async fn refused(
        &self,
        s: &Server,
        who: &str,
        path: &str,
        body: Value,
        status: u16,
        code: &str,
    ) {
        let before = s.snapshot(self.m, &self.parties()).await;
        let r = s.post(path, who, body).await;
        assert_refusal(&r, status, code);
        assert_eq!(
            s.snapshot(self.m, &self.parties()).await,
            before,
            "a refused POST {path} changed the market"
        );
    }

    async fn balance(&self, s: &Server, p: &Party) -> Value {
        s.balance(self.m, p.id).await
    }

    async fn verify_ledger(&self, s: &Server) {
        let v = s
            .get_ok(
                &format!("/v1/markets/{}/ledger/verify", self.m),
                &s.operator,
            )
            .await;
        assert_eq!(v["breaches"], json!([]), "ledger verify: {v}");
    }
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

#[tokio::test]
async fn happy_path_handover_receipt_ratings_and_reputation() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let m = f.m;
    let listing = s.sell(m, &f.alice, "Red bike", 5000).await;
    let (_, offer) = s.bid(m, &f.bob, listing, 4500).await;
    let deal = s.accept(m, &f.alice, offer).await;
    let d = id(&deal);
    assert_eq!(deal["status"], "agreed");
    assert_eq!(f.balance(&s, &f.bob).await["held_in_escrow"], 4500);

    // Only the seller hands over; nothing is rated or confirmed before that.
    let handover = f.deal_path(d, "handover");
    f.refused(&s, &f.bob.agent, &handover, json!({}), 403, "forbidden")
        .await;
    f.refused(&s, &f.carol.agent, &handover, json!({}), 403, "forbidden")
        .await;
    f.refused(
        &s,
        &f.alice.principal,
        &handover,
        json!({}),
        403,
        "forbidden",
    )
    .await;
    f.refused(
        &s,
        &f.bob.agent,
        &f.deal_path(d, "confirm"),
        json!({}),
        409,
        "invalid_transition",
    )
    .await;
    f.refused(
        &s,
        &f.bob.agent,
        &f.deal_path(d, "ratings"),
        json!({"score": 5}),
        409,
        "invalid_transition",
    )
    .await;
    f.refused(
        &s,
        &f.alice.agent,
        &f.deal_path(999, "handover"),
        json!({}),
        404,
        "not_found",
    )
    .await;

    let after = f
        .act(
            &s,
            &f.alice.agent,
            d,
            "handover",
            json!({"note": "Left it at reception"}),
            200,
        )
        .await;
    assert_eq!(after["status"], "handed_over");
    assert_eq!(after["handover_note"], "Left it at reception");
    assert_eq!(after["handed_over_at"], START_MS);
    assert_eq!(after["confirm_deadline"], START_MS + 3 * 24 * 3_600_000);
    f.refused(
        &s,
        &f.alice.agent,
        &handover,
        json!({}),
        409,
        "invalid_transition",
    )
    .await;
    let notes = s.get_ok(&f.deal_path(d, "notes"), &f.bob.agent).await["items"].clone();
    assert_eq!(notes.as_array().unwrap().len(), 1, "{notes}");
    assert_eq!(notes[0]["kind"], "handover");
    assert_eq!(notes[0]["author"], f.alice.id);
    assert_eq!(notes[0]["body"], "Left it at reception");
    assert_refusal(
        &s.get(&f.deal_path(d, "notes"), &f.carol.agent).await,
        403,
        "forbidden",
    );

    // Only the buyer confirms.
    f.refused(
        &s,
        &f.alice.agent,
        &f.deal_path(d, "confirm"),
        json!({}),
        403,
        "forbidden",
    )
    .await;
    f.refused(
        &s,
        &f.bob.principal,
        &f.deal_path(d, "confirm"),
        json!({}),
        403,
        "forbidden",
    )
    .await;
    let done = f.act(&s, &f.bob.agent, d, "confirm", json!({}), 200).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["resolution"]["to_seller"], 4500);
    assert_eq!(done["resolution"]["to_buyer"], 0);
    let alice = f.balance(&s, &f.alice).await;
    assert_eq!(
        (alice["available"].as_i64(), alice["total"].as_i64()),
        (Some(4500), Some(4500))
    );
    let bob = f.balance(&s, &f.bob).await;
    assert_eq!(
        (bob["available"].as_i64(), bob["held"].as_i64()),
        (Some(5500), Some(0))
    );
    f.refused(
        &s,
        &f.bob.agent,
        &f.deal_path(d, "confirm"),
        json!({}),
        409,
        "invalid_transition",
    )
    .await;
    assert_eq!(
        s.get_ok(&format!("/v1/markets/{m}/deals/{d}"), &f.bob.agent)
            .await,
        done
    );

    // Ratings: bad scores and outsiders are refused; a rating stays hidden until both rated.
    let rate = f.deal_path(d, "ratings");
    f.refused(
        &s,
        &f.bob.agent,
        &rate,
        json!({"score": 0}),
        422,
        "invalid_request",
    )
    .await;
    f.refused(
        &s,
        &f.bob.agent,
        &rate,
        json!({"score": 6}),
        422,
        "invalid_request",
    )
    .await;
    f.refused(
        &s,
        &f.bob.agent,
        &rate,
        json!({"score": 300}),
        422,
        "invalid_request",
    )
    .await;
    f.refused(
        &s,
        &f.carol.agent,
        &rate,
        json!({"score": 1}),
        403,
        "forbidden",
    )
    .await;
    // Bob's principal may rate for him (tests/insight.rs); another principal may not.
    f.refused(
        &s,
        &f.carol.principal,
        &rate,
        json!({"score": 1}),
        403,
        "forbidden",
    )
    .await;
    let r = f
        .act(
            &s,
            &f.bob.agent,
            d,
            "ratings",
            json!({"score": 5, "comment": "As described"}),
            201,
        )
        .await;
    assert_eq!(
        (
            r["rater"].as_i64(),
            r["ratee"].as_i64(),
            r["score"].as_i64()
        ),
        (Some(f.bob.id), Some(f.alice.id), Some(5))
    );
    f.refused(
        &s,
        &f.bob.agent,
        &rate,
        json!({"score": 4}),
        409,
        "invalid_transition",
    )
    .await;
    assert_eq!(
        s.get_ok(&rate, &f.carol.agent).await,
        json!([]),
        "hidden from others"
    );
    assert_eq!(
        s.get_ok(&rate, &f.alice.agent).await,
        json!([]),
        "hidden from the ratee"
    );
    assert_eq!(
        s.get_ok(&rate, &f.bob.agent)
            .await
            .as_array()
            .unwrap()
            .len(),
        1,
        "the rater sees its own"
    );
    let rep = format!("/v1/markets/{m}/participants/{}/reputation", f.alice.id);
    let hidden = s.get_ok(&rep, &f.carol.agent).await;
    assert_eq!(
        (hidden["ratings"].as_i64(), hidden["average_x100"].clone()),
        (Some(0), Value::Null)
    );
    assert_eq!(hidden["completed_deals"], 1);
    f.act(
        &s,
        &f.alice.agent,
        d,
        "ratings",
        json!({"score": 4, "comment": "Paid at once"}),
        201,
    )
    .await;
    let both = s.get_ok(&rate, &f.carol.agent).await;
    assert_eq!(both.as_array().unwrap().len(), 2, "{both}");

    // Reputation, on the participant and on every listing of the owner.
    let alice_rep = s.get_ok(&rep, &f.carol.agent).await;
    assert_eq!(
        alice_rep,
        json!({"participant_id": f.alice.id, "average_x100": 500, "ratings": 1,
               "completed_deals": 1, "cancellations": 0, "disputes_lost": 0,
               // The trust record: one settled sale, handed over at once, no claims inspected.
               "deals_as_seller": 1, "deals_as_buyer": 0, "disputes_against": 0,
               "upheld_not_as_described": 0, "upheld_not_received": 0, "upheld_other": 0,
               "inspected_sales": 0, "accurate_sales": 0, "claim_accuracy_pct": null,
               "median_handover_delay_ms": 0})
    );
    let bob_rep = s
        .get_ok(
            &format!("/v1/markets/{m}/participants/{}/reputation", f.bob.id),
            &f.alice.agent,
        )
        .await;
    assert_eq!(bob_rep["average_x100"], 400);
    let next = s.sell(m, &f.alice, "Blue bike", 6000).await;
    let view = s
        .get_ok(&format!("/v1/markets/{m}/listings/{next}"), &f.carol.agent)
        .await;
    assert_eq!(view["id"], next);
    assert_eq!(view["owner_reputation"], alice_rep);
    assert_refusal(
        &s.get(
            &format!("/v1/markets/{m}/participants/999/reputation"),
            &f.carol.agent,
        )
        .await,
        404,
        "not_found",
    );

    // The parties saw it happen; Carol did not.
    let kinds = |events: Vec<Value>| -> Vec<String> {
        events
            .iter()
            .map(|e| e["kind"].as_str().expect("kind").to_string())
            .collect()
    };
    let bobs = kinds(s.events(m, &f.bob.agent).await);
    for k in ["deal_handed_over", "deal_completed", "deal_rated"] {
        assert!(bobs.iter().any(|x| x == k), "Bob sees {k}: {bobs:?}");
    }
    let carols = kinds(s.events(m, &f.carol.agent).await);
    assert!(!carols.iter().any(|x| x.starts_with("deal_")), "{carols:?}");
    f.verify_ledger(&s).await;
}

#[tokio::test]
async fn a_handed_over_deal_completes_when_the_simulated_window_passes() {
    let s = Server::start().await;
    let start = 1_800_000_000_000i64;
    let window = 2 * 3_600_000;
    let m = s
        .create_market(json!({"name": "Sim", "clock": "simulated", "sim_start_ms": start,
                              "rules": {"confirmation_window_ms": window, "approval_window_ms": window}}))
        .await;
    let f = fx_in(&s, m).await;
    let d = id(&f.deal(&s, "Lamp", 1200).await);
    let after = f
        .act(&s, &f.alice.agent, d, "handover", json!({}), 200)
        .await;
    assert_eq!(after["confirm_deadline"], start + window);
    let advance = format!("/v1/markets/{m}/clock/advance");
    let r = s
        .post(&advance, &s.operator, json!({"by_ms": window - 1}))
        .await;
    assert_status(&r, 200, "advance");
    assert_eq!(r.1["now"], start + window - 1);
    let deal = format!("/v1/markets/{m}/deals/{d}");
    assert_eq!(s.get_ok(&deal, &f.bob.agent).await["status"], "handed_over");
    // Only an operator moves the clock.
    f.refused(
        &s,
        &f.alice.agent,
        &advance,
        json!({"by_ms": 1}),
        403,
        "forbidden",
    )
    .await;
    assert_status(
        &s.post(&advance, &s.operator, json!({"by_ms": 1})).await,
        200,
        "advance",
    );
    let done = s.get_ok(&deal, &f.bob.agent).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["finished_at"], start + window);
    assert_eq!(done["resolution"]["note"], "confirmation_window_elapsed");
    assert_eq!(done["resolution"]["by"], Value::Null);
    assert_eq!(f.balance(&s, &f.alice).await["available"], 1200);
    assert_eq!(f.balance(&s, &f.bob).await["total"], BUDGET - 1200);
    // Too late to dispute or confirm.
    f.refused(
        &s,
        &f.bob.agent,
        &f.deal_path(d, "dispute"),
        json!({"reason": "late"}),
        409,
        "invalid_transition",
    )
    .await;
    f.refused(
        &s,
        &f.bob.agent,
        &f.deal_path(d, "confirm"),
        json!({}),
        409,
        "invalid_transition",
    )
    .await;

    // An approval nobody gives times out the same way: declined, funds back, listing active.
    let r = s
        .put(
            &format!("/v1/markets/{m}/participants/{}/mandate", f.bob.id),
            &f.bob.principal,
            json!({"approval_above": 1000}),
        )
        .await;
    assert_status(&r, 200, "Bob's principal sets the mandate");
    let waiting = f.deal(&s, "Sofa", 2000).await;
    assert_eq!(waiting["status"], "awaiting_approval");
    assert_eq!(waiting["approval_deadline"], start + window + window);
    assert_status(
        &s.post(&advance, &s.operator, json!({"by_ms": window}))
            .await,
        200,
        "advance",
    );
    let gone = s
        .get_ok(
            &format!("/v1/markets/{m}/deals/{}", id(&waiting)),
            &f.bob.agent,
        )
        .await;
    assert_eq!(gone["status"], "declined");
    assert_eq!(gone["resolution"]["note"], "approval_timed_out");
    let listing = gone["listing_id"].as_i64().unwrap();
    assert_eq!(
        s.get_ok(
            &format!("/v1/markets/{m}/listings/{listing}"),
            &f.carol.agent
        )
        .await["status"],
        "active"
    );
    assert_eq!(f.balance(&s, &f.bob).await["total"], BUDGET - 1200);
    f.refused(
        &s,
        &f.bob.principal,
        &f.deal_path(id(&waiting), "approval"),
        json!({"approve": true}),
        409,
        "invalid_transition",
    )
    .await;
    f.verify_ledger(&s).await;
}

#[tokio::test]
async fn the_seller_cancels_before_handover_and_the_listing_returns() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let deal = f.deal(&s, "Chair", 3000).await;
    let d = id(&deal);
    let cancel = f.deal_path(d, "cancel");
    f.refused(&s, &f.carol.agent, &cancel, json!({}), 403, "forbidden")
        .await;
    f.refused(
        &s,
        &f.alice.agent,
        &cancel,
        json!({"reason": "x", "extra": 1}),
        422,
        "invalid_request",
    )
    .await;
    let done = f
        .act(
            &s,
            &f.alice.agent,
            d,
            "cancel",
            json!({"reason": "It broke"}),
            200,
        )
        .await;
    assert_eq!(done["status"], "cancelled");
    assert_eq!(done["resolution"]["to_buyer"], 3000);
    assert_eq!(f.balance(&s, &f.bob).await["available"], BUDGET);
    let listing = deal["listing_id"].as_i64().unwrap();
    let l = s
        .get_ok(
            &format!("/v1/markets/{}/listings/{listing}", f.m),
            &f.carol.agent,
        )
        .await;
    assert_eq!(l["status"], "active");
    // Someone else may buy it now; the cancelled deal stays cancelled.
    let (_, o) = s.bid(f.m, &f.carol, listing, 2800).await;
    assert_eq!(s.accept(f.m, &f.alice, o).await["status"], "agreed");
    f.refused(
        &s,
        &f.alice.agent,
        &f.deal_path(d, "handover"),
        json!({}),
        409,
        "invalid_transition",
    )
    .await;
    let rep = s
        .get_ok(
            &format!("/v1/markets/{}/participants/{}/reputation", f.m, f.alice.id),
            &f.bob.agent,
        )
        .await;
    assert_eq!(rep["cancellations"], 1);
    f.verify_ledger(&s).await;
}

#[tokio::test]
async fn mutual_cancellation_needs_both_sides() {
    let s = Server::start().await;
    let m = s
        .create_market(json!({"name": "Strict", "rules": {"seller_may_cancel": false}}))
        .await;
    let f = fx_in(&s, m).await;
    let d = id(&f.deal(&s, "Desk", 2500).await);
    let asked = f.act(&s, &f.alice.agent, d, "cancel", json!({}), 200).await;
    assert_eq!(asked["status"], "agreed");
    assert_eq!(asked["cancel_requested_by"], f.alice.id);
    f.refused(
        &s,
        &f.alice.agent,
        &f.deal_path(d, "cancel"),
        json!({}),
        409,
        "invalid_transition",
    )
    .await;
    let done = f.act(&s, &f.bob.agent, d, "cancel", json!({}), 200).await;
    assert_eq!(done["status"], "cancelled");
    assert_eq!(done["resolution"]["note"], "cancelled_by_both");
    assert_eq!(f.balance(&s, &f.bob).await["available"], BUDGET);
    f.verify_ledger(&s).await;
}

#[tokio::test]
async fn dispute_evidence_and_an_operator_split() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let d = id(&f.deal(&s, "Camera", 4000).await);
    let dispute = f.deal_path(d, "dispute");
    f.refused(
        &s,
        &f.bob.agent,
        &dispute,
        json!({"reason": "early"}),
        409,
        "invalid_transition",
    )
    .await;
    f.act(
        &s,
        &f.alice.agent,
        d,
        "handover",
        json!({"note": "Tracking 1Z999"}),
        200,
    )
    .await;
    f.refused(
        &s,
        &f.alice.agent,
        &dispute,
        json!({"reason": "no"}),
        403,
        "forbidden",
    )
    .await;
    f.refused(
        &s,
        &f.bob.agent,
        &dispute,
        json!({"reason": "  "}),
        422,
        "invalid_request",
    )
    .await;
    f.refused(
        &s,
        &f.bob.agent,
        &dispute,
        json!({}),
        422,
        "invalid_request",
    )
    .await;
    let evidence = f.deal_path(d, "evidence");
    f.refused(
        &s,
        &f.bob.agent,
        &evidence,
        json!({"body": "early"}),
        409,
        "invalid_transition",
    )
    .await;
    let disputed = f
        .act(
            &s,
            &f.bob.agent,
            d,
            "dispute",
            json!({"reason": "The lens is cracked"}),
            200,
        )
        .await;
    assert_eq!(disputed["status"], "disputed");
    assert_eq!(f.balance(&s, &f.bob).await["held_in_escrow"], 4000);

    // Evidence from both parties and the operator; nobody else.
    let n1 = f
        .act(
            &s,
            &f.bob.agent,
            d,
            "evidence",
            json!({"body": "Photo of the crack"}),
            201,
        )
        .await;
    assert_eq!(
        (n1["kind"].as_str(), n1["author"].as_i64()),
        (Some("evidence"), Some(f.bob.id))
    );
    let n2 = f
        .act(
            &s,
            &f.alice.agent,
            d,
            "evidence",
            json!({"body": "It was fine when packed"}),
            201,
        )
        .await;
    assert_eq!(n2["author"], f.alice.id);
    let n3 = f
        .act(
            &s,
            &s.operator,
            d,
            "evidence",
            json!({"body": "Asked the courier"}),
            201,
        )
        .await;
    assert_eq!(n3["author"], Value::Null);
    f.refused(
        &s,
        &f.carol.agent,
        &evidence,
        json!({"body": "I saw it"}),
        403,
        "forbidden",
    )
    .await;
    f.refused(
        &s,
        &f.bob.principal,
        &evidence,
        json!({"body": "me too"}),
        403,
        "forbidden",
    )
    .await;
    f.refused(
        &s,
        &f.bob.agent,
        &evidence,
        json!({"body": ""}),
        422,
        "invalid_request",
    )
    .await;

    // Only the operator resolves here (no arbiter); a split must stay within the hold.
    let resolve = f.deal_path(d, "resolve");
    let split =
        |n: i64| json!({"ruling": {"outcome": "split", "to_buyer": n}, "note": "shared fault"});
    for who in [
        &f.alice.agent,
        &f.bob.agent,
        &f.carol.agent,
        &f.bob.principal,
    ] {
        f.refused(&s, who, &resolve, split(1500), 403, "forbidden")
            .await;
    }
    f.refused(&s, &s.operator, &resolve, split(4001), 422, "invalid_price")
        .await;
    f.refused(&s, &s.operator, &resolve, split(-1), 422, "invalid_price")
        .await;
    f.refused(
        &s,
        &s.operator,
        &resolve,
        json!({"ruling": {"outcome": "halve"}}),
        422,
        "invalid_request",
    )
    .await;
    let done = f.act(&s, &s.operator, d, "resolve", split(1500), 200).await;
    assert_eq!(done["status"], "partially_refunded");
    assert_eq!(
        done["resolution"],
        json!({"to_buyer": 1500, "to_seller": 2500, "by": null, "note": "dispute_resolved"})
    );
    f.refused(
        &s,
        &s.operator,
        &resolve,
        split(1000),
        409,
        "invalid_transition",
    )
    .await;

    // Exact balances: nothing created, nothing lost.
    let bob = f.balance(&s, &f.bob).await;
    assert_eq!(
        bob,
        json!({"available": BUDGET - 2500, "held_in_escrow": 0, "committed_to_offers": 0, "held": 0, "total": BUDGET - 2500})
    );
    let alice = f.balance(&s, &f.alice).await;
    assert_eq!(alice["total"], 2500);
    let notes = s.get_ok(&f.deal_path(d, "notes"), &f.alice.agent).await["items"].clone();
    let kinds: Vec<&str> = notes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        // Newest first.
        [
            "resolution",
            "evidence",
            "evidence",
            "evidence",
            "dispute",
            "handover"
        ]
    );
    // The partly refunded deal can be rated; the seller lost the dispute.
    f.act(&s, &f.alice.agent, d, "ratings", json!({"score": 2}), 201)
        .await;
    let rep = s
        .get_ok(
            &format!("/v1/markets/{}/participants/{}/reputation", f.m, f.alice.id),
            &f.carol.agent,
        )
        .await;
    assert_eq!(rep["disputes_lost"], 1);
    f.verify_ledger(&s).await;
}

#[tokio::test]
async fn the_markets_arbiter_resolves_through_its_agent_token() {
    let s = Server::start().await;
    // The first participant of a fresh market gets id 1: name it arbiter at creation.
    let m = s
        .create_market(json!({"name": "Arbitrated", "rules": {"arbiter": 1}}))
        .await;
    let judge = s.participant(m, "Judge", 0).await;
    assert_eq!(judge.id, 1);
    let f = fx_in(&s, m).await;
    let d = id(&f.deal(&s, "Guitar", 3000).await);
    f.act(&s, &f.alice.agent, d, "handover", json!({}), 200)
        .await;
    f.act(
        &s,
        &f.bob.agent,
        d,
        "dispute",
        json!({"reason": "Out of tune"}),
        200,
    )
    .await;
    // The arbiter reads the dispute and adds evidence; its principal token is no arbiter.
    let notes = s.get_ok(&f.deal_path(d, "notes"), &judge.agent).await;
    assert_eq!(notes["items"][0]["kind"], "dispute");
    f.act(
        &s,
        &judge.agent,
        d,
        "evidence",
        json!({"body": "Tuned it: fine"}),
        201,
    )
    .await;
    let release = json!({"ruling": {"outcome": "release"}, "note": "It plays"});
    f.refused(
        &s,
        &judge.principal,
        &f.deal_path(d, "resolve"),
        release.clone(),
        403,
        "forbidden",
    )
    .await;
    let done = f.act(&s, &judge.agent, d, "resolve", release, 200).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["resolution"]["by"], judge.id);
    assert_eq!(f.balance(&s, &f.alice).await["available"], 3000);
    f.verify_ledger(&s).await;
}

#[tokio::test]
async fn the_buyers_principal_approves_or_declines() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let m = f.m;
    let mandate = format!("/v1/markets/{m}/participants/{}/mandate", f.bob.id);
    // Only Bob's principal (or an operator) sets his mandate.
    f.refused_put(&s, &f.bob.agent, &mandate, json!({"approval_above": 3000}))
        .await;
    f.refused_put(
        &s,
        &f.carol.principal,
        &mandate,
        json!({"approval_above": 3000}),
    )
    .await;
    assert_status(
        &s.put(&mandate, &f.bob.principal, json!({"approval_above": 3000}))
            .await,
        200,
        "mandate",
    );

    // Bob bids 3500, Alice counters 4000, Bob's agent accepts: the deal waits, the money is held.
    let l = s.sell(m, &f.alice, "Sofa", 4500).await;
    let (thread, _) = s.bid(m, &f.bob, l, 3500).await;
    let counter = s.offer(m, &f.alice, thread, 4000).await;
    let deal = s.accept(m, &f.bob, counter).await;
    let d = id(&deal);
    assert_eq!(deal["status"], "awaiting_approval");
    assert_eq!(deal["approval_deadline"], START_MS + 24 * 3_600_000);
    assert_eq!(f.balance(&s, &f.bob).await["held_in_escrow"], 4000);

    let approval = f.deal_path(d, "approval");
    let yes = json!({"approve": true});
    // Not the agent, not another principal, not the seller's principal, not an operator.
    f.refused(&s, &f.bob.agent, &approval, yes.clone(), 403, "forbidden")
        .await;
    f.refused(
        &s,
        &f.carol.principal,
        &approval,
        yes.clone(),
        403,
        "forbidden",
    )
    .await;
    f.refused(
        &s,
        &f.alice.principal,
        &approval,
        yes.clone(),
        403,
        "forbidden",
    )
    .await;
    f.refused(&s, &s.operator, &approval, yes.clone(), 403, "forbidden")
        .await;
    f.refused(
        &s,
        &f.bob.principal,
        &approval,
        json!({"approve": "yes"}),
        422,
        "invalid_request",
    )
    .await;
    // Nothing moves until it is approved.
    f.refused(
        &s,
        &f.alice.agent,
        &f.deal_path(d, "handover"),
        json!({}),
        409,
        "invalid_transition",
    )
    .await;
    let approved = f
        .act(&s, &f.bob.principal, d, "approval", yes.clone(), 200)
        .await;
    assert_eq!(approved["status"], "agreed");
    assert_eq!(approved["approval_deadline"], Value::Null);
    f.refused(
        &s,
        &f.bob.principal,
        &approval,
        json!({"approve": false}),
        409,
        "invalid_transition",
    )
    .await;
    f.act(&s, &f.alice.agent, d, "handover", json!({}), 200)
        .await;

    // Declined: the hold goes back and the listing is active again.
    let l2 = s.sell(m, &f.alice, "Armchair", 3600).await;
    let (_, bid) = s.bid(m, &f.bob, l2, 3600).await;
    let waiting = s.accept(m, &f.alice, bid).await;
    assert_eq!(waiting["status"], "awaiting_approval");
    assert_eq!(f.balance(&s, &f.bob).await["held_in_escrow"], 4000 + 3600);
    let declined = f
        .act(
            &s,
            &f.bob.principal,
            id(&waiting),
            "approval",
            json!({"approve": false}),
            200,
        )
        .await;
    assert_eq!(declined["status"], "declined");
    assert_eq!(declined["resolution"]["to_buyer"], 3600);
    assert_eq!(f.balance(&s, &f.bob).await["held_in_escrow"], 4000);
    assert_eq!(f.balance(&s, &f.bob).await["total"], BUDGET);
    let relisted = s
        .get_ok(&format!("/v1/markets/{m}/listings/{l2}"), &f.carol.agent)
        .await;
    assert_eq!(relisted["status"], "active");
    f.verify_ledger(&s).await;
}

impl Fx {
    async fn refused_put(&self, s: &Server, who: &str, path: &str, body: Value) {
        let before = s.snapshot(self.m, &self.parties()).await;
        assert_refusal(&s.put(path, who, body).await, 403, "forbidden");
        assert_eq!(s.snapshot(self.m, &self.parties()).await, before);
    }
}

/// A GET returning the raw body and its content type.
async fn get_text(s: &Server, path: &str, token: &str) -> (u16, String, String) {
    let r = s
        .client
        .get(s.url(path))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

#[tokio::test]
async fn settlement_report_as_json_and_csv_for_operators_and_agents() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let m = f.m;
    // A completed deal, a split, a cancelled one and an open one.
    let done = id(&f.deal(&s, "Bike", 3000).await);
    f.act(&s, &f.alice.agent, done, "handover", json!({}), 200)
        .await;
    f.act(&s, &f.bob.agent, done, "confirm", json!({}), 200)
        .await;
    let camera = f.deal(&s, "Camera", 2000).await;
    let split = id(&camera);
    f.act(&s, &f.alice.agent, split, "handover", json!({}), 200)
        .await;
    f.act(
        &s,
        &f.bob.agent,
        split,
        "dispute",
        json!({"reason": "scratched"}),
        200,
    )
    .await;
    f.act(
        &s,
        &s.operator,
        split,
        "resolve",
        json!({"ruling": {"outcome": "split", "to_buyer": 700}}),
        200,
    )
    .await;
    let cancelled = id(&f.deal(&s, "Lamp", 500).await);
    f.act(&s, &f.alice.agent, cancelled, "cancel", json!({}), 200)
        .await;
    let open = id(&f.deal(&s, "Desk", 1000).await);

    let path = format!("/v1/markets/{m}/settlement");
    let all = s.get_ok(&path, &s.operator).await;
    assert_eq!(all["market_id"], m);
    assert_eq!(all["currency"], "USD");
    let deals = all["deals"].as_array().unwrap();
    let ids: Vec<i64> = deals
        .iter()
        .map(|d| d["deal_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [done, split, cancelled, open]);
    let row = |d: i64| deals.iter().find(|x| x["deal_id"] == d).unwrap();
    assert_eq!(
        (
            row(done)["paid_to_seller"].as_i64(),
            row(done)["refunded_to_buyer"].as_i64()
        ),
        (Some(3000), Some(0))
    );
    assert_eq!(
        (
            row(split)["paid_to_seller"].as_i64(),
            row(split)["refunded_to_buyer"].as_i64()
        ),
        (Some(1300), Some(700))
    );
    assert_eq!(row(split)["status"], "partially_refunded");
    assert_eq!(
        (
            row(cancelled)["paid_to_seller"].as_i64(),
            row(cancelled)["refunded_to_buyer"].as_i64()
        ),
        (Some(0), Some(500))
    );
    assert_eq!(row(cancelled)["goods_change_hands"], false);
    assert_eq!(
        (
            row(open)["paid_to_seller"].as_i64(),
            row(open)["status"].as_str()
        ),
        (Some(0), Some("agreed"))
    );
    assert_eq!(row(done)["seller_name"], "Alice");
    assert_eq!(row(done)["buyer_name"], "Bob");

    // Positions reconcile to the ledger: nets sum to zero, cash is each one's ledger balance.
    let positions = all["positions"].as_array().unwrap();
    assert_eq!(positions.len(), 3);
    assert_eq!(
        positions
            .iter()
            .map(|p| p["net"].as_i64().unwrap())
            .sum::<i64>(),
        0
    );
    for (p, party) in positions.iter().zip(f.parties()) {
        assert_eq!(p["participant_id"], party.id);
        let b = f.balance(&s, party).await;
        let ledger_cash =
            b["available"].as_i64().unwrap() + b["committed_to_offers"].as_i64().unwrap();
        assert_eq!(p["cash"], ledger_cash, "{p}");
        assert_eq!(p["held_in_escrow"], b["held_in_escrow"]);
        assert_eq!(
            p["cash"].as_i64().unwrap(),
            p["funded"].as_i64().unwrap() + p["net"].as_i64().unwrap()
                - p["held_in_escrow"].as_i64().unwrap()
        );
    }
    let pos = |id: i64| {
        positions
            .iter()
            .find(|p| p["participant_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(pos(f.alice.id)["net"], 4300);
    assert_eq!(pos(f.bob.id)["net"], -4300);
    assert_eq!(pos(f.bob.id)["held_in_escrow"], 1000);
    assert_eq!(pos(f.carol.id)["net"], 0);
    // Observers read the whole report too.
    assert_eq!(s.get_ok(&path, &s.observer(m).await).await, all);

    // An agent (or principal) sees only its own deals and position.
    for token in [&f.bob.agent, &f.bob.principal] {
        let mine = s.get_ok(&path, token).await;
        assert_eq!(mine["deals"].as_array().unwrap().len(), 4);
        assert_eq!(mine["positions"], json!([pos(f.bob.id)]));
    }
    let carol = s.get_ok(&path, &f.carol.agent).await;
    assert_eq!(carol["deals"], json!([]));
    assert_eq!(carol["positions"], json!([pos(f.carol.id)]));

    // CSV: the handover list and the positions.
    let (status, ct, csv) = get_text(&s, &format!("{path}?format=csv"), &s.operator).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/csv"), "{ct}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "deal_id,listing_id,title,seller_id,seller,buyer_id,buyer,price,status,paid_to_seller,refunded_to_buyer,goods_change_hands"
    );
    assert_eq!(lines.len(), 5);
    assert_eq!(
        lines[2],
        format!(
            "{split},{},Camera,{},Alice,{},Bob,2000,partially_refunded,1300,700,true",
            camera["listing_id"], f.alice.id, f.bob.id
        )
    );
    let (status, ct, csv) = get_text(
        &s,
        &format!("{path}?format=csv&table=positions"),
        &s.operator,
    )
    .await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/csv"), "{ct}");
    assert_eq!(
        csv.lines().next(),
        Some("participant_id,name,funded,received,paid,net,held_in_escrow,cash")
    );
    assert_eq!(csv.lines().count(), 4);
    assert!(
        csv.contains(&format!("{},Bob,{BUDGET},0,4300,-4300,1000,4700", f.bob.id)),
        "{csv}"
    );
    let (_, _, mine) = get_text(
        &s,
        &format!("{path}?format=csv&table=positions"),
        &f.carol.agent,
    )
    .await;
    assert_eq!(mine.lines().count(), 2, "{mine}");
    let (_, _, mine) = get_text(&s, &format!("{path}?format=csv"), &f.carol.agent).await;
    assert_eq!(mine.lines().count(), 1, "only the header: {mine}");
    for bad in ["?format=xml", "?format=csv&table=threads"] {
        assert_refusal(
            &s.get(&format!("{path}{bad}"), &s.operator).await,
            422,
            "invalid_request",
        );
    }
    assert_refusal(
        &s.get("/v1/markets/999/settlement", &s.operator).await,
        404,
        "not_found",
    );
    let other = s.market().await;
    assert_refusal(
        &s.get(&format!("/v1/markets/{other}/settlement"), &f.bob.agent)
            .await,
        403,
        "forbidden",
    );
    f.verify_ledger(&s).await;
}

#[tokio::test]
async fn a_retried_lifecycle_action_replays_its_first_answer() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let d = id(&f.deal(&s, "Kettle", 900).await);
    f.act(&s, &f.alice.agent, d, "handover", json!({}), 200)
        .await;
    let confirm = f.deal_path(d, "confirm");
    let call = || {
        s.call(
            reqwest::Method::POST,
            &confirm,
            Some(&f.bob.agent),
            Some(json!({})),
            Some("confirm-1"),
        )
    };
    let first = call().await;
    assert_status(&first, 200, "confirm");
    assert_eq!(first.1["status"], "completed");
    let before = s.snapshot(f.m, &f.parties()).await;
    assert_eq!(call().await, first, "the replay is the first answer");
    assert_eq!(
        s.snapshot(f.m, &f.parties()).await,
        before,
        "and books nothing twice"
    );
    // A refusal is replayed as a refusal too.
    let dispute = f.deal_path(d, "dispute");
    let late = || {
        s.call(
            reqwest::Method::POST,
            &dispute,
            Some(&f.bob.agent),
            Some(json!({"reason": "x"})),
            Some("dispute-1"),
        )
    };
    let refused = late().await;
    assert_refusal(&refused, 409, "invalid_transition");
    assert_eq!(late().await, refused);
    f.verify_ledger(&s).await;
}

#[tokio::test]
async fn a_frozen_agent_reads_its_deal_but_cannot_act_on_it() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let d = id(&f.deal(&s, "Drill", 1500).await);
    f.act(&s, &f.alice.agent, d, "handover", json!({}), 200)
        .await;
    f.act(
        &s,
        &f.bob.agent,
        d,
        "dispute",
        json!({"reason": "Does not turn"}),
        200,
    )
    .await;
    let freeze = format!("/v1/markets/{}/participants/{}/freeze", f.m, f.bob.id);
    assert_status(
        &s.post(&freeze, &s.operator, json!({"frozen": true})).await,
        200,
        "freeze",
    );
    f.refused(
        &s,
        &f.bob.agent,
        &f.deal_path(d, "evidence"),
        json!({"body": "video"}),
        403,
        "agent_frozen",
    )
    .await;
    assert_eq!(
        s.get_ok(&f.deal_path(d, "notes"), &f.bob.agent).await["items"][0]["kind"],
        "dispute"
    );
    f.act(
        &s,
        &s.operator,
        d,
        "resolve",
        json!({"ruling": {"outcome": "refund"}}),
        200,
    )
    .await;
    f.refused(
        &s,
        &f.bob.agent,
        &f.deal_path(d, "ratings"),
        json!({"score": 1}),
        403,
        "agent_frozen",
    )
    .await;
    assert_eq!(f.balance(&s, &f.bob).await["total"], BUDGET);
}

#[tokio::test]
async fn the_real_clock_sweeper_completes_deals_and_times_out_approvals() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let m = f.m;
    let d = id(&f.deal(&s, "Radio", 800).await);
    f.act(&s, &f.alice.agent, d, "handover", json!({}), 200)
        .await;
    let r = s
        .put(
            &format!("/v1/markets/{m}/participants/{}/mandate", f.bob.id),
            &f.bob.principal,
            json!({"approval_above": 100}),
        )
        .await;
    assert_status(&r, 200, "mandate");
    let waiting = id(&f.deal(&s, "Clock", 600).await);
    // Both windows pass (3 days to confirm, 1 day to approve), before any sweep ran.
    s.advance(3 * 24 * 3_600_000);
    let deal = |id: i64| format!("/v1/markets/{m}/deals/{id}");
    assert_eq!(
        s.get_ok(&deal(d), &f.bob.agent).await["status"],
        "handed_over"
    );
    // Past its window the approval is refused even though the deal still says it waits.
    f.refused(
        &s,
        &f.bob.principal,
        &f.deal_path(waiting, "approval"),
        json!({"approve": true}),
        409,
        "invalid_transition",
    )
    .await;
    f.refused(
        &s,
        &f.bob.agent,
        &f.deal_path(d, "dispute"),
        json!({"reason": "late"}),
        409,
        "invalid_transition",
    )
    .await;
    let sweeper = s.svc.spawn_sweeper(std::time::Duration::from_millis(10));
    let mut tries = 0;
    while s.get_ok(&deal(d), &f.bob.agent).await["status"] != "completed"
        || s.get_ok(&deal(waiting), &f.bob.agent).await["status"] != "declined"
    {
        tries += 1;
        assert!(tries < 500, "the sweeper did not settle the deals");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    sweeper.abort();
    assert_eq!(f.balance(&s, &f.alice).await["available"], 800);
    assert_eq!(f.balance(&s, &f.bob).await["total"], BUDGET - 800);
    f.verify_ledger(&s).await;
}

#[tokio::test]
async fn reading_an_unknown_deal_is_not_found() {
    let s = Server::start().await;
    let f = fx(&s).await;
    for action in ["ratings", "notes"] {
        assert_refusal(
            &s.get(&f.deal_path(999, action), &s.operator).await,
            404,
            "not_found",
        );
        assert_refusal(
            &s.get(&f.deal_path(999, action), &f.bob.agent).await,
            404,
            "not_found",
        );
    }
    for (action, body) in [
        ("confirm", json!({})),
        ("cancel", json!({})),
        ("dispute", json!({"reason": "?"})),
        ("evidence", json!({"body": "?"})),
        ("ratings", json!({"score": 3})),
    ] {
        f.refused(
            &s,
            &f.bob.agent,
            &f.deal_path(999, action),
            body,
            404,
            "not_found",
        )
        .await;
    }
    f.refused(
        &s,
        &s.operator,
        &f.deal_path(999, "resolve"),
        json!({"ruling": {"outcome": "refund"}}),
        404,
        "not_found",
    )
    .await;
    f.refused(
        &s,
        &f.bob.principal,
        &f.deal_path(999, "approval"),
        json!({"approve": true}),
        404,
        "not_found",
    )
    .await;
}
