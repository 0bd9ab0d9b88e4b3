//! Trading by hand: principals trade for their own participants through the web forms, in a
//! real headless Chromium (as `browser.rs`) and as a browser without JavaScript submits forms.
//! The market's rules, mandate and idempotency apply as to agents, and the events and the feed
//! say the principal acted. Without Chromium the browser tests print a loud NOT RUN line.

mod support;

#[path = "support/browser.rs"]
mod browser;

use browser::{Browser, find_browser};
use serde_json::{Value, json};
use support::*;

/// Browser tests take turns (each starts its own Chromium).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn browser() -> Option<Browser> {
    match find_browser() {
        Ok((chromium, driver)) => Some(Browser::start(&chromium, &driver).await),
        Err(why) => {
            haggle_testkit::not_run("BROWSER TESTS", &why);
            None
        }
    }
}

/// The listing id at the end of a page's URL (`/m/1/listings/7?done=1`).
fn trailing_id(url: &str, after: &str) -> i64 {
    let rest = &url[url.find(after).unwrap_or_else(|| panic!("{after} in {url}")) + after.len()..];
    rest.split(['?', '/'])
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("an id after {after} in {url}"))
}

async fn verify(s: &Server, m: i64) -> Value {
    s.api(
        reqwest::Method::GET,
        &format!("/v1/markets/{m}/ledger/verify"),
        &s.operator,
        Value::Null,
    )
    .await
}

async fn available(s: &Server, m: i64, p: i64) -> i64 {
    s.svc
        .store()
        .balance(m, p, START_MS)
        .await
        .unwrap()
        .available
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_trade_by_hand_from_listing_to_confirmed_handover() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    // Alice posts a listing from her page.
    b.sign_in(&s.base, &alice.principal).await;
    b.goto(&format!("{}/m/{m}/p/{}", s.base, alice.id)).await;
    b.type_into("#tr-title", "Bookshelf").await;
    b.type_into("#tr-category", "furniture").await;
    b.type_into("#tr-price", "60.00").await;
    b.click("#post-listing button[type=submit]").await;
    b.wait_for_text("main", "Done.", 10).await;
    let l = trailing_id(&b.url().await, "/listings/");
    // Bob makes an offer on it.
    b.sign_in(&s.base, &bob.principal).await;
    b.goto(&format!("{}/m/{m}/listings/{l}", s.base)).await;
    b.type_into("#offer-price", "50.00").await;
    b.type_into("#offer-text", "Would you take fifty?").await;
    b.click("#offer-form button[type=submit]").await;
    b.wait_for_text("main", "offers $50.00", 10).await;
    // Alice counters.
    b.sign_in(&s.base, &alice.principal).await;
    b.goto(&format!("{}/m/{m}/listings/{l}", s.base)).await;
    b.wait_for_text("main", "Their offer: $50.00", 5).await;
    b.type_into("form[id^=counter-] input[name=price]", "55.00")
        .await;
    b.click("form[id^=counter-] button[type=submit]").await;
    b.wait_for_text("main", "offers $55.00", 10).await;
    // Bob accepts the counter: the deal's page opens.
    b.sign_in(&s.base, &bob.principal).await;
    b.goto(&format!("{}/m/{m}/listings/{l}", s.base)).await;
    b.wait_for_text("main", "Their offer: $55.00", 5).await;
    b.screenshot("by-hand-counter").await;
    b.click("form[id^=accept-] button[type=submit]").await;
    b.wait_for_text("main", "Deal #", 10).await;
    let d = trailing_id(&b.url().await, "/deals/");
    // Alice hands it over; Bob confirms.
    b.sign_in(&s.base, &alice.principal).await;
    b.goto(&format!("{}/m/{m}/deals/{d}", s.base)).await;
    b.type_into("#handover-note", "left with reception").await;
    b.click("#hand-over-form button[type=submit]").await;
    b.wait_for_text("main", "left with reception", 10).await;
    b.sign_in(&s.base, &bob.principal).await;
    b.goto(&format!("{}/m/{m}/deals/{d}", s.base)).await;
    b.click("#confirm-form button[type=submit]").await;
    b.wait_for_text("main", "completed", 10).await;
    b.screenshot("by-hand-completed").await;
    let deal = s.svc.store().deal(m, d).await.unwrap().unwrap();
    assert_eq!(deal.status.as_str(), "completed");
    assert_eq!(deal.price, 5_500);
    assert_eq!(available(&s, m, alice.id).await, 5_500);
    assert_eq!(available(&s, m, bob.id).await, 4_500);
    let v = verify(&s, m).await;
    assert_eq!(v["breaches"], json!([]), "{v}");
    // The feed says the principals did it.
    b.goto(&format!("{}/m/{m}", s.base)).await;
    b.wait_for_text("#feed", "Alice's principal listed “Bookshelf”", 5)
        .await;
    b.quit().await;
}
