//! The web interface without a browser: signing in and out, what each role may open (an agent
//! token never opens another participant's page), forms with CSRF protection and idempotency
//! keys going through the service's commands, the live feed's stream, and reports served safely.

mod support;

use serde_json::json;
use support::*;

struct Fx {
    m: i64,
    alice: Party,
    bob: Party,
    carol: Party,
}

async fn fx(s: &Server) -> Fx {
    let m = s.market("Office market").await;
    Fx {
        m,
        alice: s.participant(m, "Alice", 10_000).await,
        bob: s.participant(m, "Bob", 10_000).await,
        carol: s.participant(m, "Carol", 10_000).await,
    }
}

#[tokio::test]
async fn a_visitor_without_a_session_is_sent_to_sign_in() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let home = s.page("/", None).await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("href=\"/signin\""));
    let p = s.page(&format!("/m/{}", f.m), None).await;
    assert_eq!(p.status, 303);
    assert_eq!(
        p.location.as_deref(),
        Some(format!("/signin?next=/m/{}", f.m).as_str())
    );
    let bogus = s
        .page(&format!("/m/{}", f.m), Some("hgl_not_a_token"))
        .await;
    assert_eq!(bogus.status, 303, "an unknown token is no session");
}

#[tokio::test]
async fn signing_in_sets_a_strict_httponly_cookie_and_signing_out_clears_it() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let bad = s
        .client
        .post(s.url("/signin"))
        .form(&[("token", "hgl_wrong"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    assert!(bad.headers().get("set-cookie").is_none());
    let next = format!("/m/{}", f.m);
    let ok = s
        .client
        .post(s.url("/signin"))
        .form(&[
            ("token", f.alice.principal.as_str()),
            ("next", next.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 303);
    assert_eq!(ok.headers()["location"], next.as_str());
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with(&format!("haggle_session={};", f.alice.principal)));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    // Only paths on this server are places to return to.
    let away = s
        .client
        .post(s.url("/signin"))
        .form(&[
            ("token", f.alice.principal.as_str()),
            ("next", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(away.headers()["location"], "/");
    // A sign-in form posted from another site is refused (login CSRF).
    let cross = s
        .client
        .post(s.url("/signin"))
        .header("Origin", "http://evil.example")
        .form(&[("token", f.alice.principal.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);
    let home = s.page("/", Some(&f.alice.principal)).await;
    assert!(home.body.contains("principal of Alice"));
    let csrf = home.hidden("csrf");
    let out = s
        .form("/signout", &f.alice.principal, &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status, 303);
    let cleared = out.headers["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("haggle_session=;") && cleared.contains("Max-Age=0"));
}

/// Issue 15: `next=/%09/evil.example` answered `Location: /\t/evil.example`, which browsers read
/// as `//evil.example`, and a `next` with a line break answered 500.
#[tokio::test]
async fn sign_in_returns_only_to_plain_paths_on_this_server() {
    let s = Server::start().await;
    let f = fx(&s).await;
    for next in [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\nSet-Cookie: x=1",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "//evil.example",
        "/ /evil.example",
    ] {
        let r = s
            .client
            .post(s.url("/signin"))
            .form(&[("token", f.alice.principal.as_str()), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "{next:?}");
        assert_eq!(r.headers()["location"], "/", "{next:?}");
    }
    // The same through the sign-in page's query string, percent-encoded.
    let page = s.page("/signin?next=/%09/evil.example", None).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("evil.example"), "{}", page.body);
    let plain = format!("/m/{}?tab=deals", f.m);
    let r = s
        .client
        .post(s.url("/signin"))
        .form(&[
            ("token", f.alice.principal.as_str()),
            ("next", plain.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], plain.as_str());
}

/// Issue 15: behind a TLS proxy the session cookie had no `Secure` flag.
#[tokio::test]
async fn the_session_cookie_is_secure_when_served_over_https() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let sign_in = |proto: Option<&'static str>| {
        let mut req = s.client.post(s.url("/signin"));
        if let Some(p) = proto {
            req = req.header("X-Forwarded-Proto", p);
        }
        req.form(&[("token", f.alice.principal.as_str()), ("next", "/")])
            .send()
    };
    let cookie = |r: &reqwest::Response| r.headers()["set-cookie"].to_str().unwrap().to_string();
    let plain = sign_in(None).await.unwrap();
    assert!(!cookie(&plain).contains("Secure"), "plain HTTP on loopback");
    let proxied = sign_in(Some("https")).await.unwrap();
    assert!(
        cookie(&proxied).contains("; Secure"),
        "{}",
        cookie(&proxied)
    );
    let home = s.page("/", Some(&f.alice.principal)).await;
    let out = s
        .client
        .post(s.url("/signout"))
        .header("Cookie", format!("haggle_session={}", f.alice.principal))
        .header("Origin", &s.base)
        .header("X-Forwarded-Proto", "https")
        .form(&[("csrf", home.hidden("csrf"))])
        .send()
        .await
        .unwrap();
    assert!(cookie(&out).contains("; Secure") && cookie(&out).contains("Max-Age=0"));
}

#[tokio::test]
async fn each_role_opens_only_the_pages_it_may() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let other = s.market("Another market").await;
    let observer = s.observer(f.m).await;
    let deal = s.deal(f.m, &f.alice, &f.bob, "Desk lamp", 2_500).await["id"]
        .as_i64()
        .unwrap();
    let m = f.m;
    let page = |p: &str| p.replace("{m}", &m.to_string());
    let alice_page = page(&format!("/m/{{m}}/p/{}", f.alice.id));
    let bob_page = page(&format!("/m/{{m}}/p/{}", f.bob.id));
    let deal_page = page(&format!("/m/{{m}}/deals/{deal}"));
    let open_to_all = [
        page("/m/{m}"),
        page("/m/{m}/listings"),
        page("/m/{m}/deals"),
        page("/m/{m}/participants"),
    ];
    let cases: Vec<(&str, &str, Vec<&str>, Vec<&str>)> = vec![
        // (who, token, may open, may not open)
        (
            "Alice's agent",
            &f.alice.agent,
            vec![&alice_page, &deal_page],
            vec![&bob_page, "/m/{m}/operate", "/operator", "/reports/"],
        ),
        (
            "Alice's principal",
            &f.alice.principal,
            vec![&alice_page, &deal_page],
            vec![&bob_page, "/m/{m}/operate", "/operator"],
        ),
        (
            "Carol's agent",
            &f.carol.agent,
            vec![],
            vec![&alice_page, &bob_page, &deal_page, "/m/{m}/operate"],
        ),
        (
            "Carol's principal",
            &f.carol.principal,
            vec![],
            vec![&alice_page, &deal_page],
        ),
        (
            "the observer",
            &observer,
            vec![&alice_page, &bob_page, &deal_page, "/reports/"],
            vec!["/m/{m}/operate", "/operator"],
        ),
        (
            "the operator",
            &s.operator,
            vec![
                &alice_page,
                &bob_page,
                &deal_page,
                "/m/{m}/operate",
                "/operator",
                "/reports/",
            ],
            vec![],
        ),
    ];
    for (who, token, allowed, denied) in cases {
        for path in open_to_all.iter().map(String::as_str).chain(allowed) {
            let p = s.page(&page(path), Some(token)).await;
            assert_eq!(p.status, 200, "{who} opens {path}: {}", p.body);
        }
        for path in denied {
            let p = s.page(&page(path), Some(token)).await;
            assert_eq!(p.status, 403, "{who} must not open {path}");
            assert!(
                p.body.contains("forbidden"),
                "{who} {path}: the refusal says why"
            );
        }
        // A token of one market opens nothing of another.
        if token != s.operator {
            let p = s.page(&format!("/m/{other}"), Some(token)).await;
            assert_eq!(p.status, 403, "{who} in another market");
        }
    }
}

#[tokio::test]
async fn the_feed_shows_each_viewer_only_what_it_may_see() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let l = s.sell(f.m, &f.alice, "Espresso machine", 9_000).await;
    let o = s.bid(f.m, &f.bob, l, 7_777).await;
    let feed = format!("/m/{}", f.m);
    let bob = s.page(&feed, Some(&f.bob.principal)).await;
    assert!(
        bob.body
            .contains("Alice listed “Espresso machine” for $90.00")
    );
    assert!(bob.body.contains("Bob offered $77.77"), "its own offer");
    let carol = s.page(&feed, Some(&f.carol.agent)).await;
    assert!(carol.body.contains("Espresso machine"), "public listing");
    assert!(
        !carol.body.contains("77.77"),
        "a private offer stays private"
    );
    s.accept(f.m, &f.alice, o).await;
    let carol = s
        .page(&format!("{feed}?show=deals"), Some(&f.carol.agent))
        .await;
    assert!(
        carol.body.contains("Sold: “Espresso machine” for $77.77"),
        "sales are public"
    );
    assert!(
        !carol.body.contains("Deal: Bob buys"),
        "the deal itself is the parties'"
    );
    assert!(carol.body.contains("data-testid=\"deal-count\">1<"));
    let listing = s
        .page(&format!("/m/{}/listings/{l}", f.m), Some(&f.carol.agent))
        .await;
    assert!(listing.body.contains("No negotiation of yours"));
    assert!(!listing.body.contains("Would you take this?"));
    let op = s
        .page(&format!("/m/{}/listings/{l}", f.m), Some(&s.operator))
        .await;
    assert!(
        op.body.contains("Would you take this?"),
        "operators read every thread"
    );
}

#[tokio::test]
async fn forms_need_this_sessions_csrf_token_and_this_origin() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let path = format!("/m/{}/p/{}/pause", f.m, f.alice.id);
    let page = s
        .page(
            &format!("/m/{}/p/{}", f.m, f.alice.id),
            Some(&f.alice.principal),
        )
        .await;
    let csrf = page.hidden("csrf");
    let paused = || async {
        s.svc
            .store()
            .participant(f.m, f.alice.id)
            .await
            .unwrap()
            .unwrap()
            .mandate
            .paused
    };
    let missing = s
        .form(&path, &f.alice.principal, &[("paused", "true")])
        .await;
    assert_eq!(missing.status, 403);
    // Bob's session has another CSRF token.
    let bobs = s
        .page(
            &format!("/m/{}/p/{}", f.m, f.bob.id),
            Some(&f.bob.principal),
        )
        .await
        .hidden("csrf");
    let wrong = s
        .form(
            &path,
            &f.alice.principal,
            &[("csrf", &bobs), ("paused", "true")],
        )
        .await;
    assert_eq!(wrong.status, 403);
    let cross = s
        .client
        .post(s.url(&path))
        .header("Cookie", format!("haggle_session={}", f.alice.principal))
        .header("Origin", "http://evil.example")
        .form(&[("csrf", csrf.as_str()), ("paused", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);
    assert!(!paused().await, "no refused form changed anything");
    let ok = s
        .form(
            &path,
            &f.alice.principal,
            &[("csrf", &csrf), ("paused", "true")],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert!(paused().await);
    // Alice's agent may read her page but not act as her principal.
    let agent_csrf = s
        .page(
            &format!("/m/{}/p/{}", f.m, f.alice.id),
            Some(&f.alice.agent),
        )
        .await
        .hidden("csrf");
    let agent = s
        .form(
            &path,
            &f.alice.agent,
            &[("csrf", &agent_csrf), ("paused", "false")],
        )
        .await;
    assert_eq!(agent.status, 403);
    assert!(paused().await);
}

#[tokio::test]
async fn a_principals_approval_is_recorded_as_the_principals_not_its_agents() {
    let s = Server::start().await;
    let f = fx(&s).await;
    s.put(
        &format!("/v1/markets/{}/participants/{}/mandate", f.m, f.bob.id),
        &f.bob.principal,
        json!({"approval_above": 1000}),
    )
    .await;
    let d = s.deal(f.m, &f.alice, &f.bob, "Bike", 4_000).await["id"]
        .as_i64()
        .unwrap();
    let page = s
        .page(
            &format!("/m/{}/p/{}", f.m, f.bob.id),
            Some(&f.bob.principal),
        )
        .await;
    let fields = [
        ("csrf", page.hidden("csrf")),
        ("idem", page.hidden("idem")),
        ("decision", "approve".to_string()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let action = format!("/m/{}/deals/{d}/approval", f.m);
    assert_eq!(s.form(&action, &f.bob.principal, &fields).await.status, 303);
    let events = s
        .svc
        .store()
        .events(f.m, haggle_service::Viewer::All, 0, 1000)
        .await
        .unwrap();
    let approved = events
        .iter()
        .find(|e| e.kind() == "deal_approved")
        .expect("a deal_approved event");
    assert_eq!(approved.by.as_str(), "principal");
}

#[tokio::test]
async fn a_principal_approves_a_deal_once_even_when_the_form_is_sent_twice() {
    let s = Server::start().await;
    let f = fx(&s).await;
    s.put(
        &format!("/v1/markets/{}/participants/{}/mandate", f.m, f.bob.id),
        &f.bob.principal,
        json!({"approval_above": 1000}),
    )
    .await;
    let deal = s.deal(f.m, &f.alice, &f.bob, "Bike", 4_000).await;
    assert_eq!(deal["status"], "awaiting_approval");
    let d = deal["id"].as_i64().unwrap();
    let me = format!("/m/{}/p/{}", f.m, f.bob.id);
    let page = s.page(&me, Some(&f.bob.principal)).await;
    assert!(page.body.contains("Buy “Bike” from Alice for $40.00"));
    let csrf = page.hidden("csrf");
    let key = page.hidden("idem");
    let action = format!("/m/{}/deals/{d}/approval", f.m);
    let fields = [
        ("csrf", csrf.as_str()),
        ("idem", key.as_str()),
        ("decision", "approve"),
    ];
    let first = s.form(&action, &f.bob.principal, &fields).await;
    assert_eq!(first.status, 303, "{}", first.body);
    assert_eq!(
        first.location.as_deref(),
        Some(format!("{me}?done=approved").as_str())
    );
    let again = s.form(&action, &f.bob.principal, &fields).await;
    assert_eq!(
        again.status, 303,
        "a resubmitted form replays the first answer"
    );
    let approved = s.svc.store().deal(f.m, d).await.unwrap().unwrap();
    assert_eq!(approved.status.as_str(), "agreed");
    let events = s
        .svc
        .store()
        .events(f.m, haggle_service::Viewer::All, 0, 1000)
        .await
        .unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind() == "deal_approved")
            .count(),
        1
    );
    let after = s
        .page(&format!("{me}?done=approved"), Some(&f.bob.principal))
        .await;
    assert!(after.body.contains("Deal approved."));
    assert!(
        !after.body.contains("id=\"approval-"),
        "nothing waits any more"
    );
    // The seller's principal cannot decide the buyer's approval.
    let other = s.deal(f.m, &f.carol, &f.bob, "Kettle", 2_000).await["id"]
        .as_i64()
        .unwrap();
    let alice_csrf = s
        .page(
            &format!("/m/{}/p/{}", f.m, f.alice.id),
            Some(&f.alice.principal),
        )
        .await
        .hidden("csrf");
    let refused = s
        .form(
            &format!("/m/{}/deals/{other}/approval", f.m),
            &f.alice.principal,
            &[("csrf", &alice_csrf), ("decision", "approve")],
        )
        .await;
    assert_eq!(refused.status, 403);
}

#[tokio::test]
async fn a_principal_edits_the_mandate_rates_and_answers_the_survey() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let d = s.deal(f.m, &f.alice, &f.bob, "Chair", 1_500).await["id"]
        .as_i64()
        .unwrap();
    for (path, who) in [("handover", &f.alice), ("confirm", &f.bob)] {
        s.post(
            &format!("/v1/markets/{}/deals/{d}/{path}", f.m),
            &who.agent,
            json!({}),
        )
        .await;
    }
    let me = format!("/m/{}/p/{}", f.m, f.bob.id);
    let page = s.page(&me, Some(&f.bob.principal)).await;
    assert!(
        page.body.contains("“Chair” (bought) with Alice"),
        "a deal to rate"
    );
    let csrf = page.hidden("csrf");
    let r = s
        .form(
            &format!("/m/{}/p/{}/mandate", f.m, f.bob.id),
            &f.bob.principal,
            &[
                ("csrf", &csrf),
                ("idem", "k1"),
                ("spend_cap", "50"),
                ("per_deal_cap", "20.5"),
                ("approval_above", ""),
                ("categories", "bikes, books"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let mandate = s
        .svc
        .store()
        .participant(f.m, f.bob.id)
        .await
        .unwrap()
        .unwrap()
        .mandate;
    assert_eq!(
        (
            mandate.spend_cap,
            mandate.per_deal_cap,
            mandate.approval_above
        ),
        (Some(5_000), Some(2_050), None)
    );
    assert_eq!(
        mandate.categories,
        Some(vec!["bikes".to_string(), "books".to_string()])
    );
    let bad = s
        .form(
            &format!("/m/{}/p/{}/mandate", f.m, f.bob.id),
            &f.bob.principal,
            &[("csrf", &csrf), ("spend_cap", "lots")],
        )
        .await;
    assert_eq!(bad.status, 422, "a bad amount is a clear refusal");
    assert!(bad.body.contains("spending cap"));
    let r = s
        .form(
            &format!("/m/{}/deals/{d}/rate", f.m),
            &f.bob.principal,
            &[
                ("csrf", &csrf),
                ("idem", "k2"),
                ("score", "4"),
                ("comment", "friendly"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let ratings = s.svc.store().deal_ratings(f.m, d, START_MS).await.unwrap();
    assert_eq!(ratings.len(), 1);
    assert_eq!((ratings[0].0.rater, ratings[0].0.score), (f.bob.id, 4));
    let r = s
        .form(
            &format!("/m/{}/p/{}/survey", f.m, f.bob.id),
            &f.bob.principal,
            &[
                ("csrf", &csrf),
                ("idem", "k3"),
                ("fairness", "6"),
                ("satisfaction", "5"),
                ("would_pay", "2.50"),
                ("comment", "nice"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let a = s
        .svc
        .store()
        .survey_answer(f.m, f.bob.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.fairness, a.satisfaction, a.would_pay), (6, 5, 250));
    let after = s.page(&me, Some(&f.bob.principal)).await;
    assert!(
        !after.body.contains("“Chair” (bought) with Alice"),
        "rated once"
    );
    assert!(after.body.contains("You answered on"));
    let op = s
        .page(&format!("/m/{}/operate", f.m), Some(&s.operator))
        .await;
    assert!(
        op.body.contains("<td>Bob</td><td class=\"num\">6</td>"),
        "operators see the answers"
    );
}

#[tokio::test]
async fn an_operator_resolves_a_dispute_with_the_evidence_in_view() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let d = s.disputed(f.m, &f.alice, &f.bob, "Monitor", 6_000).await;
    let op = s
        .page(&format!("/m/{}/operate", f.m), Some(&s.operator))
        .await;
    assert!(op.body.contains(&format!("Deal #{d}: Monitor")));
    assert!(
        op.body
            .contains("every ledger and hash-chain invariant holds")
    );
    let deal = s
        .page(&format!("/m/{}/deals/{d}", f.m), Some(&s.operator))
        .await;
    assert!(
        deal.body.contains("the screen is cracked"),
        "the evidence is on the page"
    );
    assert!(deal.body.contains("id=\"resolve-form\""));
    let csrf = deal.hidden("csrf");
    // The parties see the deal but get no ruling form.
    let bob = s
        .page(&format!("/m/{}/deals/{d}", f.m), Some(&f.bob.principal))
        .await;
    assert!(!bob.body.contains("resolve-form"));
    let r = s
        .form(
            &format!("/m/{}/deals/{d}/resolve", f.m),
            &s.operator,
            &[
                ("csrf", &csrf),
                ("idem", "r1"),
                ("outcome", "split"),
                ("to_buyer", "100.00"),
                ("note", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "more than the price is refused: {}", r.body);
    assert!(r.body.contains("invalid_price"), "with the service's code");
    let r = s
        .form(
            &format!("/m/{}/deals/{d}/resolve", f.m),
            &s.operator,
            &[
                ("csrf", &csrf),
                ("idem", "r2"),
                ("outcome", "split"),
                ("to_buyer", "20"),
                ("note", "half broken"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let done = s.svc.store().deal(f.m, d).await.unwrap().unwrap();
    assert_eq!(done.status.as_str(), "partially_refunded");
    assert_eq!(done.resolution.unwrap().to_buyer, 2_000);
    let bob_csrf = bob.hidden("csrf");
    let r = s
        .form(
            &format!("/m/{}/deals/{d}/resolve", f.m),
            &f.bob.principal,
            &[("csrf", &bob_csrf), ("outcome", "refund")],
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn the_operator_registers_funds_and_exports_the_settlement() {
    let s = Server::start().await;
    let f = fx(&s).await;
    s.deal(f.m, &f.alice, &f.bob, "Lamp", 1_000).await;
    let op = s
        .page(&format!("/m/{}/operate", f.m), Some(&s.operator))
        .await;
    let csrf = op.hidden("csrf");
    let r = s
        .form(
            &format!("/m/{}/operate/participants", f.m),
            &s.operator,
            &[
                ("csrf", &csrf),
                ("idem", "reg1"),
                ("name", "Dana"),
                ("budget", "25"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Dana joined"));
    let start = r.body.find("class=\"secret\">").unwrap() + "class=\"secret\">".len();
    let token = &r.body[start..start + 52];
    assert!(token.starts_with("hgl_"), "{token}");
    let dana = s.page("/", Some(token)).await;
    assert!(
        dana.body.contains("agent of Dana"),
        "the shown token signs in"
    );
    let r = s
        .form(
            &format!("/m/{}/operate/fund", f.m),
            &s.operator,
            &[
                ("csrf", &csrf),
                ("idem", "f1"),
                ("participant", &f.carol.id.to_string()),
                ("amount", "5.00"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let b = s
        .svc
        .store()
        .balance(f.m, f.carol.id, START_MS)
        .await
        .unwrap();
    assert_eq!(b.available, 10_500);
    let csv = s
        .page(
            &format!("/m/{}/settlement.csv?table=deals", f.m),
            Some(&s.operator),
        )
        .await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(csv.body.starts_with("deal_id,listing_id,title"));
    assert!(csv.body.contains(",Lamp,"));
    let mine = s
        .page(
            &format!("/m/{}/settlement.csv?table=deals", f.m),
            Some(&f.carol.principal),
        )
        .await;
    assert!(
        !mine.body.contains("Lamp"),
        "a participant exports only its own deals"
    );
}

#[tokio::test]
async fn the_live_stream_sends_rendered_entries_as_they_happen() {
    use futures_util::StreamExt;
    let s = Server::start().await;
    let f = fx(&s).await;
    let l = s.sell(f.m, &f.alice, "Guitar", 9_500).await;
    let page = s.page(&format!("/m/{}", f.m), Some(&f.carol.agent)).await;
    let live = page
        .body
        .split("sse-connect=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let resp = s
        .client
        .get(s.url(&live))
        .header("Cookie", format!("haggle_session={}", f.carol.agent))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let o = s.bid(f.m, &f.bob, l, 9_000).await;
    s.accept(f.m, &f.alice, o).await;
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(seen.contains("Sold: “Guitar”") && seen.contains("event: summary")) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("the sale arrives within 10 s")
            .expect("stream open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: entry"));
    assert!(
        !seen.contains("offered"),
        "Carol's stream carries no private offer: {seen}"
    );
    assert!(
        seen.contains("<li class=\"deals\""),
        "entries arrive rendered: {seen}"
    );
}

#[tokio::test]
async fn reports_are_served_to_researchers_from_inside_their_folder_only() {
    let dir = temp_dir("reports");
    std::fs::create_dir_all(dir.join("run-1")).unwrap();
    std::fs::write(dir.join("run-1/report.html"), "<h1>Run 1</h1>").unwrap();
    std::fs::write(dir.join("run-1/deals.csv"), "a,b\n").unwrap();
    let outside = dir.parent().unwrap().join(format!(
        "{}-secret.txt",
        dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&outside, "secret").unwrap();
    let s = Server::with_reports(Some(dir.clone())).await;
    let f = fx(&s).await;
    let observer = s.observer(f.m).await;
    let index = s.page("/reports/", Some(&observer)).await;
    assert_eq!(index.status, 200);
    assert!(index.body.contains("href=\"/reports/run-1/report.html\""));
    let r = s.page("/reports/run-1/report.html", Some(&observer)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "<h1>Run 1</h1>");
    assert!(
        r.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    let dir_page = s.page("/reports/run-1/", Some(&s.operator)).await;
    assert_eq!(dir_page.body, "<h1>Run 1</h1>");
    let name = outside.file_name().unwrap().to_string_lossy().to_string();
    for bad in [
        format!("/reports/../{name}"),
        format!("/reports/..%2F{name}"),
        format!("/reports/run-1/..%2F..%2F{name}"),
        "/reports/%2Fetc%2Fpasswd".to_string(),
        "/reports/run-1/.hidden".to_string(),
    ] {
        let p = s.page(&bad, Some(&s.operator)).await;
        assert!(
            p.status == 404
                || p.status == 400
                || (p.status == 303 && p.location.as_deref() != Some("")),
            "{bad}: {}",
            p.status
        );
        assert_ne!(p.body, "secret", "{bad} leaked the file");
    }
    let agent = s
        .page("/reports/run-1/report.html", Some(&f.alice.agent))
        .await;
    assert_eq!(agent.status, 403, "reports hold private prices");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&outside);
}

/// Issue 15: `haggle serve --reports haggle-demo` served `tokens.json` and the database to any
/// observer, who then signed in as operator. Only report artefacts are served now.
#[tokio::test]
async fn report_folders_never_serve_tokens_databases_or_private_files() {
    let dir = temp_dir("report-secrets");
    std::fs::create_dir_all(dir.join("private")).unwrap();
    std::fs::write(dir.join("report.html"), "<h1>Demo</h1>").unwrap();
    std::fs::write(dir.join("results.json"), "{\"deals\": 3}").unwrap();
    let token = format!("hgl_{}", "0f".repeat(24));
    let secret = format!("{{\"operator\": \"{token}\"}}");
    for name in [
        "tokens.json",
        "haggle.db",
        "haggle.db-wal",
        "haggle.db-shm",
        "private/tokens.json",
        "private/haggle.db",
    ] {
        std::fs::write(dir.join(name), &secret).unwrap();
    }
    // A secret under an allowed name is still never served.
    std::fs::write(dir.join("leaked.json"), &secret).unwrap();
    let s = Server::with_reports(Some(dir.clone())).await;
    let f = fx(&s).await;
    let observer = s.observer(f.m).await;
    let index = s.page("/reports/", Some(&observer)).await;
    assert_eq!(index.status, 200);
    assert!(index.body.contains("results.json"), "{}", index.body);
    for hidden in ["tokens.json", "haggle.db", "private"] {
        assert!(!index.body.contains(hidden), "the index lists {hidden}");
    }
    assert_eq!(
        s.page("/reports/results.json", Some(&observer))
            .await
            .status,
        200
    );
    for path in [
        "/reports/tokens.json",
        "/reports/haggle.db",
        "/reports/haggle.db-wal",
        "/reports/haggle.db-shm",
        "/reports/private/tokens.json",
        "/reports/private/haggle.db",
        "/reports/private/",
        "/reports/leaked.json",
    ] {
        let p = s.page(path, Some(&observer)).await;
        assert!(p.status == 404 || p.status == 403, "{path}: {}", p.status);
        assert!(!p.body.contains(&token), "{path} served a token");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn pages_carry_a_strict_content_security_policy_and_the_vendored_scripts_are_served() {
    let s = Server::start().await;
    let home = s.page("/", None).await;
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    for (path, starts) in [
        ("/static/htmx.min.js", "var htmx"),
        ("/static/sse.min.js", "(function(){"),
        ("/static/haggle.css", "/* Haggle"),
    ] {
        let p = s.page(path, None).await;
        assert_eq!(p.status, 200, "{path}");
        assert!(p.body.starts_with(starts), "{path}");
    }
    assert!(home.body.contains("<script src=\"/static/htmx.min.js\""));
    assert!(
        !home.body.contains("http://") && !home.body.contains("https://"),
        "no external resource"
    );
    // The JSON API beside the pages is untouched.
    let api = s.page("/v1/nothing", None).await;
    assert_eq!(api.status, 404);
    assert!(api.body.contains("\"code\":\"not_found\""));
}

#[tokio::test]
async fn a_seller_principal_sets_a_lowest_sale_and_approves_a_sale_below_it() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let me = format!("/m/{}/p/{}", f.m, f.alice.id);
    let page = s.page(&me, Some(&f.alice.principal)).await;
    let csrf = page.hidden("csrf");
    let r = s
        .form(
            &format!("/m/{}/p/{}/mandate", f.m, f.alice.id),
            &f.alice.principal,
            &[
                ("csrf", &csrf),
                ("idem", "k1"),
                ("min_sale", "50"),
                ("below_min", "ask"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let mandate = s
        .svc
        .store()
        .participant(f.m, f.alice.id)
        .await
        .unwrap()
        .unwrap()
        .mandate;
    assert_eq!(
        (mandate.min_sale, mandate.below_min),
        (Some(5_000), haggle_core::BelowMin::Ask)
    );
    // Alice's agent sells below her lowest sale: the deal waits for her principal.
    let deal = s.deal(f.m, &f.alice, &f.bob, "Bike", 4_000).await;
    assert_eq!(
        (&deal["status"], &deal["approval_from"]),
        (&json!("awaiting_approval"), &json!("seller"))
    );
    let page = s.page(&me, Some(&f.alice.principal)).await;
    assert!(
        page.body
            .contains("Sell “Bike” to Bob for $40.00, below your lowest price"),
        "the seller's principal is asked"
    );
    let bobs = s
        .page(
            &format!("/m/{}/p/{}", f.m, f.bob.id),
            Some(&f.bob.principal),
        )
        .await;
    assert!(
        bobs.body.contains("waiting for the seller"),
        "the buyer's principal sees whom the deal waits for: {}",
        bobs.body
    );
    let d = deal["id"].as_i64().unwrap();
    let r = s
        .form(
            &format!("/m/{}/deals/{d}/approval", f.m),
            &f.alice.principal,
            &[("csrf", &csrf), ("idem", "k2"), ("decision", "approve")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let approved = s.svc.store().deal(f.m, d).await.unwrap().unwrap();
    assert_eq!(approved.status.as_str(), "agreed");
}

#[tokio::test]
async fn the_buyers_principal_reports_a_mismatch_against_the_claims_on_the_deal_page() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let l = s
        .post(
            &format!("/v1/markets/{}/listings", f.m),
            &f.alice.agent,
            json!({"side": "sell", "title": "Phone", "category": "misc", "price": 3_000,
                   "claims": {"condition": "like_new", "working": "yes"}}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let listing = s
        .page(&format!("/m/{}/listings/{l}", f.m), Some(&f.bob.agent))
        .await;
    assert!(
        listing.body.contains("The seller&#x27;s claims")
            || listing.body.contains("The seller's claims")
    );
    assert!(
        listing.body.contains("condition: like new"),
        "{}",
        listing.body
    );
    let o = s.bid(f.m, &f.bob, l, 3_000).await;
    let d = s.accept(f.m, &f.alice, o).await["id"].as_i64().unwrap();
    s.post(
        &format!("/v1/markets/{}/deals/{d}/handover", f.m),
        &f.alice.agent,
        json!({}),
    )
    .await;
    let path = format!("/m/{}/deals/{d}", f.m);
    // The seller's principal sees the claims but has nothing to inspect.
    let seller_view = s.page(&path, Some(&f.alice.principal)).await;
    assert!(seller_view.body.contains("working: yes"));
    assert!(!seller_view.body.contains("Inspect the item"));
    let page = s.page(&path, Some(&f.bob.principal)).await;
    assert!(page.body.contains("Inspect the item"), "{}", page.body);
    let (csrf, key) = (page.hidden("csrf"), page.hidden("idem"));
    let sent = s
        .form(
            &format!("{path}/inspection"),
            &f.bob.principal,
            &[("csrf", &csrf), ("idem", &key), ("mismatch:condition", "1")],
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert_eq!(
        sent.location.as_deref(),
        Some(format!("/m/{}/p/{}?done=mismatch", f.m, f.bob.id).as_str())
    );
    let deal = s.svc.store().deal(f.m, d).await.unwrap().unwrap();
    assert_eq!(
        deal.inspection.unwrap().mismatched,
        vec!["condition".to_string()]
    );
    let after = s.page(&path, Some(&f.bob.principal)).await;
    assert!(
        after.body.contains("not as described (condition)"),
        "{}",
        after.body
    );
    assert!(!after.body.contains("Inspect the item"));
}

/// A page's text with the apostrophe unescaped, and the number of its feed lines (`<li>`
/// entries) that contain `text`.
fn unescaped(body: &str) -> String {
    body.replace("&#x27;", "'").replace("&#39;", "'")
}

fn lines_with(body: &str, text: &str) -> usize {
    body.split("<li").filter(|l| l.contains(text)).count()
}

/// The id of the only thread `who` is party to.
async fn only_thread(s: &Server, m: i64, who: &Party) -> i64 {
    let list = s
        .api(
            reqwest::Method::GET,
            &format!("/v1/markets/{m}/threads"),
            &who.agent,
            json!(null),
        )
        .await;
    list["items"][0]["id"].as_i64().expect("a thread")
}

#[tokio::test]
async fn the_feed_tells_a_counter_in_one_line_naming_both_sides() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let l = s.sell(f.m, &f.alice, "Lamp", 2_000).await;
    s.bid(f.m, &f.bob, l, 1_208).await;
    let thread = only_thread(&s, f.m, &f.bob).await;
    s.post(
        &format!("/v1/markets/{}/threads/{thread}/offers", f.m),
        &f.alice.agent,
        json!({"price": 1_604}),
    )
    .await;
    let feed = s
        .page(&format!("/m/{}", f.m), Some(&f.alice.principal))
        .await;
    let body = unescaped(&feed.body);
    assert_eq!(lines_with(&body, "countered"), 1, "one line: {body}");
    assert!(
        body.contains("Alice countered Bob's $12.08 with $16.04 for “Lamp”"),
        "{body}"
    );
    assert!(body.contains("Bob offered $12.08 for “Lamp”"), "{body}");
}

#[tokio::test]
async fn a_walk_away_reads_as_ended_without_a_deal_not_broken() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let l = s.sell(f.m, &f.alice, "Kettle", 2_000).await;
    s.bid(f.m, &f.bob, l, 1_500).await;
    let thread = only_thread(&s, f.m, &f.bob).await;
    s.post(
        &format!("/v1/markets/{}/threads/{thread}/walk-away", f.m),
        &f.bob.agent,
        json!({}),
    )
    .await;
    let feed = s
        .page(&format!("/m/{}?show=offers", f.m), Some(&f.alice.principal))
        .await;
    assert!(
        feed.body
            .contains("Bob walked away: the negotiation for “Kettle” ended without a deal"),
        "{}",
        feed.body
    );
    assert!(!feed.body.contains("broken"), "{}", feed.body);
}

#[tokio::test]
async fn a_mandate_change_is_told_as_the_principals() {
    let s = Server::start().await;
    let f = fx(&s).await;
    s.put(
        &format!("/v1/markets/{}/participants/{}/mandate", f.m, f.bob.id),
        &f.bob.principal,
        json!({"approval_above": 1000}),
    )
    .await;
    let me = s
        .page(
            &format!("/m/{}/p/{}", f.m, f.bob.id),
            Some(&f.bob.principal),
        )
        .await;
    let body = unescaped(&me.body);
    assert!(
        body.contains("Bob's principal changed the mandate"),
        "{body}"
    );
    assert!(!body.contains("mandate changed"), "{body}");
}

#[tokio::test]
async fn every_page_links_the_favicon_and_it_is_served() {
    let s = Server::start().await;
    let home = s.page("/", None).await;
    assert!(
        home.body
            .contains("<link rel=\"icon\" href=\"/static/favicon.svg\""),
        "{}",
        home.body
    );
    for path in ["/static/favicon.svg", "/favicon.ico"] {
        let p = s.page(path, None).await;
        assert_eq!(p.status, 200, "{path}");
        assert_eq!(p.headers["content-type"], "image/svg+xml", "{path}");
        assert!(p.body.starts_with("<svg"), "{path}");
    }
}

#[tokio::test]
async fn an_error_page_says_who_is_signed_in() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let other = s.market("Other market").await;
    let refused = s.page(&format!("/m/{other}"), Some(&f.bob.principal)).await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("Signed in as principal of Bob"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("action=\"/signout\""));
    let missing = s
        .page(&format!("/m/{}/no-such-page", f.m), Some(&f.carol.agent))
        .await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("Signed in as agent of Carol"),
        "{}",
        missing.body
    );
    let anonymous = s.page(&format!("/m/{}/no-such-page", f.m), None).await;
    assert!(!anonymous.body.contains("Signed in as"));
}

#[tokio::test]
async fn a_listings_agreed_thread_links_its_deal_and_the_others_ended_without_one() {
    let s = Server::start().await;
    let f = fx(&s).await;
    let l = s.sell(f.m, &f.alice, "Bench", 3_000).await;
    let won = s.bid(f.m, &f.bob, l, 3_000).await;
    s.bid(f.m, &f.carol, l, 2_500).await;
    let deal = s.accept(f.m, &f.alice, won).await["id"].as_i64().unwrap();
    let page = s
        .page(&format!("/m/{}/listings/{l}", f.m), Some(&s.operator))
        .await;
    assert!(
        page.body.contains(&format!(
            "<a href=\"/m/{}/deals/{deal}\">Deal {deal}</a>",
            f.m
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains("ended without a deal"), "{}", page.body);
    assert!(!page.body.contains(">void<") && !page.body.contains(">broken<"));
}

#[tokio::test]
async fn the_operators_market_list_is_paged() {
    let s = Server::start().await;
    for i in 0..101 {
        s.market(&format!("Market {i:03}")).await;
    }
    let first = s.page("/operator", Some(&s.operator)).await;
    assert_eq!(first.status, 200);
    assert!(
        first.body.contains("Market 099"),
        "the first page holds 100"
    );
    assert!(!first.body.contains("Market 100"));
    let more = first
        .body
        .split("href=\"/operator?cursor=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to more markets");
    let second = s
        .page(&format!("/operator?cursor={more}"), Some(&s.operator))
        .await;
    assert!(second.body.contains("Market 100"), "{}", second.body);
    assert!(!second.body.contains("More markets"));
    let home = s.page("/", Some(&s.operator)).await;
    assert!(
        home.body.contains("href=\"/?cursor="),
        "the home page pages too"
    );
}
