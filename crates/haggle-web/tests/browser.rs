//! The web interface in a real browser: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver`) against a real server on a random port. The feed updates live when a deal
//! happens (no reload), a principal approves a deal, an operator resolves a dispute, and
//! screenshots of the main pages are saved to `target/web-screenshots/`.
//!
//! Without Chromium and chromedriver these tests print a loud NOT RUN line (and fail under
//! `CI`, whose `.ci/run` installs them). One browser at a time: the machine has two cores.

mod support;

#[path = "support/browser.rs"]
mod browser;

use browser::{Browser, find_browser};
use serde_json::json;
use support::*;

/// Browser tests take turns (each starts its own Chromium).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A started browser, or `None` (after saying so loudly) when there is none on this machine.
async fn browser() -> Option<Browser> {
    match find_browser() {
        Ok((chromium, driver)) => Some(Browser::start(&chromium, &driver).await),
        Err(why) => {
            haggle_testkit::not_run("BROWSER TESTS", &why);
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_updates_live_when_a_deal_happens() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let s = Server::start().await;
    // A market that closes in a week, so the summary (and the screenshot) shows the time left.
    let week = 7 * 24 * 3_600_000;
    let m = s
        .post(
            "/v1/markets",
            &s.operator,
            json!({"name": "Office market", "currency": "USD", "rules": {"closes_at": START_MS + week}}),
        )
        .await["id"]
        .as_i64()
        .expect("market id");
    let alice = s.participant(m, "Alice", 10_000).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    let observer = s.observer(m).await;
    s.sell(m, &alice, "Snowboard", 8_000).await;
    b.sign_in(&s.base, &observer).await;
    b.goto(&format!("{}/m/{m}", s.base)).await;
    b.wait_for_text("#feed", "Alice listed “Snowboard”", 5)
        .await;
    assert_eq!(b.text("[data-testid=deal-count]").await, "0");
    // A marker on the page: it survives only if the page is never reloaded.
    b.script("window.haggleMarker = 'still here'; return null;")
        .await;
    // Trade through the API: the page continues from the newest event it showed, so nothing is
    // missed even if the EventSource opens after these writes.
    let l = s.sell(m, &alice, "Road bike", 6_000).await;
    let opened = s
        .post(
            &format!("/v1/markets/{m}/listings/{l}/threads"),
            &bob.agent,
            json!({"price": 5_500}),
        )
        .await;
    let thread = opened["thread"]["id"].as_i64().unwrap();
    let counter = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            &alice.agent,
            json!({"price": 5_800}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    s.accept(m, &bob, counter).await;
    let feed = b
        .wait_for_text("#feed", "Sold: “Road bike” for $58.00", 15)
        .await;
    assert!(
        feed.contains("Alice countered Bob's $55.00 with $58.00 for “Road bike”"),
        "{feed}"
    );
    assert!(feed.contains("Deal: Bob buys “Road bike” from Alice for $58.00"));
    let first = b.text("#feed li:first-child").await;
    assert!(
        first.contains("Road bike"),
        "new entries go on top: {first}"
    );
    b.wait_for_text("[data-testid=deal-count]", "1", 10).await;
    b.wait_for_text("[data-testid=time-left]", "7 d", 5).await;
    assert_eq!(
        b.script("return window.haggleMarker || null;").await,
        json!("still here"),
        "the page updated without a reload"
    );
    b.screenshot("feed").await;
    b.resize(390, 844).await;
    b.screenshot("feed-phone").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_approves_a_deal() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    s.put(
        &format!("/v1/markets/{m}/participants/{}/mandate", bob.id),
        &bob.principal,
        json!({"approval_above": 2_000}),
    )
    .await;
    let deal = s.deal(m, &alice, &bob, "Standing desk", 7_500).await;
    assert_eq!(deal["status"], "awaiting_approval");
    let d = deal["id"].as_i64().unwrap();
    b.sign_in(&s.base, &bob.principal).await;
    b.click(&format!("main a[href='/m/{m}/p/{}']", bob.id))
        .await;
    b.wait_for_text(
        "#approvals-h + *",
        "Buy “Standing desk” from Alice for $75.00",
        5,
    )
    .await;
    b.screenshot("principal").await;
    b.click(&format!("#approval-{d} button[value=approve]"))
        .await;
    b.wait_for_text("main", "Deal approved.", 10).await;
    let approved = s.svc.store().deal(m, d).await.unwrap().unwrap();
    assert_eq!(approved.status.as_str(), "agreed");
    let todo = b.text("#todo-h + *").await;
    assert!(
        todo.contains("Collect “Standing desk” from Alice"),
        "{todo}"
    );
    b.screenshot("principal-approved").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resolves_a_dispute() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    let d = s.disputed(m, &alice, &bob, "Camera", 4_000).await;
    s.post(
        &format!("/v1/markets/{m}/deals/{d}/evidence"),
        &alice.agent,
        json!({"body": "it worked when I handed it over"}),
    )
    .await;
    b.sign_in(&s.base, &s.operator).await;
    b.goto(&format!("{}/m/{m}/operate", s.base)).await;
    b.wait_for_text("main", "every ledger and hash-chain invariant holds", 5)
        .await;
    b.screenshot("operator").await;
    b.click(&format!("a[href='/m/{m}/deals/{d}']")).await;
    let notes = b.wait_for_text("main", "the screen is cracked", 5).await;
    assert!(notes.contains("it worked when I handed it over"));
    b.click("#resolve-form input[value=refund]").await;
    b.type_into("#note", "no proof it worked").await;
    b.screenshot("dispute").await;
    b.click("#resolve-form button[type=submit]").await;
    b.wait_for_text("main", "Closed:", 10).await;
    let done = s.svc.store().deal(m, d).await.unwrap().unwrap();
    assert_eq!(done.status.as_str(), "refunded");
    assert_eq!(
        s.svc
            .store()
            .balance(m, bob.id, START_MS)
            .await
            .unwrap()
            .available,
        10_000
    );
    b.screenshot("dispute-resolved").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_the_main_pages() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let reports = temp_dir("shot-reports");
    std::fs::create_dir_all(reports.join("demo")).unwrap();
    std::fs::write(reports.join("demo/report.html"), "<h1>Demo report</h1>").unwrap();
    let s = Server::with_reports(Some(reports.clone())).await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 10_000).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    let carol = s.participant(m, "Carol", 10_000).await;
    let l = s.sell(m, &alice, "Espresso machine", 9_000).await;
    s.bid(m, &bob, l, 7_000).await;
    s.deal(m, &carol, &bob, "Bookshelf", 2_500).await;
    s.deal(m, &alice, &carol, "Desk lamp", 1_200).await;
    b.goto(&format!("{}/signin", s.base)).await;
    b.screenshot("signin").await;
    b.sign_in(&s.base, &s.operator).await;
    for (name, path, expect) in [
        ("home", "/".to_string(), "Office market"),
        ("listings", format!("/m/{m}/listings"), "Espresso machine"),
        (
            "listing",
            format!("/m/{m}/listings/{l}"),
            "Would you take this?",
        ),
        ("deals", format!("/m/{m}/deals"), "Bookshelf"),
        ("participants", format!("/m/{m}/participants"), "Carol"),
        ("reports", "/reports/".to_string(), "demo"),
    ] {
        b.goto(&format!("{}{path}", s.base)).await;
        b.wait_for_text("main", expect, 5).await;
        let shot = b.screenshot(name).await;
        assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "{name}");
    }
    // Keyboard users reach the content first.
    b.goto(&format!("{}/m/{m}", s.base)).await;
    let skip = b
        .script("const a = document.querySelector('a.skip'); a.focus(); return document.activeElement === a;")
        .await;
    assert_eq!(skip, json!(true));
    let _ = std::fs::remove_dir_all(&reports);
    b.quit().await;
}
