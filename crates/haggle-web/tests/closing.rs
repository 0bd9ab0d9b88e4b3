//! A market's closing time on the web pages: the summary's time left and then "Closed", the
//! live stream's summary when the clock moves, and the operator's form that sets the closing time.

mod support;

use serde_json::json;
use support::*;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A simulated market closing 2 days 4 hours after it starts, with a seller and a listing.
async fn closing_market(s: &Server) -> (i64, Party) {
    let m = s
        .post(
            "/v1/markets",
            &s.operator,
            json!({"name": "Closing market", "clock": "simulated", "sim_start_ms": START_MS,
                   "rules": {"closes_at": START_MS + 2 * DAY_MS + 4 * HOUR_MS}}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let seller = s.participant(m, "Alice", 0).await;
    s.sell(m, &seller, "Guitar", 9_500).await;
    (m, seller)
}

async fn advance(s: &Server, m: i64, by_ms: i64) {
    s.post(
        &format!("/v1/markets/{m}/clock/advance"),
        &s.operator,
        json!({"by_ms": by_ms}),
    )
    .await;
}

/// The text of the summary's time-left cell.
fn time_left(body: &str) -> String {
    let start = body
        .find("data-testid=\"time-left\">")
        .expect("the summary has a time-left cell")
        + "data-testid=\"time-left\">".len();
    let end = body[start..].find("</dd>").unwrap() + start;
    body[start..end].to_string()
}

#[tokio::test]
async fn the_summary_shows_time_left_and_then_closed() {
    let s = Server::start().await;
    let (m, seller) = closing_market(&s).await;
    let page = s.page(&format!("/m/{m}"), Some(&seller.agent)).await;
    assert_eq!(page.status, 200);
    let left = time_left(&page.body);
    assert!(left.starts_with("2 d 4 h"), "{left}");
    assert!(left.contains("until 2023-11-17 02:13 UTC"), "{left}");
    advance(&s, m, 2 * DAY_MS).await;
    let left = time_left(&s.page(&format!("/m/{m}"), Some(&seller.agent)).await.body);
    assert!(left.starts_with("4 h 0 min"), "{left}");
    advance(&s, m, 4 * HOUR_MS).await;
    let page = s.page(&format!("/m/{m}"), Some(&seller.agent)).await;
    let left = time_left(&page.body);
    assert!(left.contains("closed</span>"), "{left}");
    assert!(left.contains("Closed at 2023-11-17 02:13 UTC"), "{left}");
    assert!(
        page.body
            .contains("“Guitar” expired: the market has closed"),
        "the feed tells the listing expired"
    );
}

#[tokio::test]
async fn an_open_ended_market_says_it_has_no_closing_time() {
    let s = Server::start().await;
    let m = s.market("Open market").await;
    let page = s.page(&format!("/m/{m}"), Some(&s.operator)).await;
    assert_eq!(time_left(&page.body), "No closing time");
}

#[tokio::test]
async fn the_live_stream_sends_the_summary_again_when_the_clock_moves() {
    use futures_util::StreamExt;
    let s = Server::start().await;
    let (m, seller) = closing_market(&s).await;
    let page = s.page(&format!("/m/{m}"), Some(&seller.agent)).await;
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
        .header("Cookie", format!("haggle_session={}", seller.agent))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    advance(&s, m, 3 * DAY_MS).await;
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains("Closed at 2023-11-17 02:13 UTC") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("the closed summary arrives within 10 s")
            .expect("stream open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: summary"), "{seen}");
}

#[tokio::test]
async fn the_operator_sets_the_closing_time_with_a_form_sent_once() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let path = format!("/m/{m}/operate");
    let op = s.page(&path, Some(&s.operator)).await;
    assert!(
        op.body
            .contains("No closing time: the market is open-ended.")
    );
    let csrf = op.hidden("csrf");
    let form = [
        ("csrf", csrf.as_str()),
        ("idem", "close-1"),
        ("closes_at", "+7d"),
    ];
    let r = s
        .form(&format!("{path}/closes_at"), &s.operator, &form)
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    // The same form sent again replays the first answer and moves nothing.
    s.clock.advance(HOUR_MS);
    let r = s
        .form(&format!("{path}/closes_at"), &s.operator, &form)
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let market = s.svc.store().market(m).await.unwrap().unwrap();
    assert_eq!(market.rules.closes_at, Some(START_MS + 7 * DAY_MS));
    let op = s.page(&path, Some(&s.operator)).await;
    assert!(
        op.body
            .contains("Closes at 2023-11-21 22:13 UTC (6 d 23 h left)."),
        "{}",
        op.body
    );
    assert!(op.body.contains("value=\"2023-11-21 22:13\""));
    // A typed UTC time works too; nonsense is refused with the reason.
    let r = s
        .form(
            &format!("{path}/closes_at"),
            &s.operator,
            &[
                ("csrf", &csrf),
                ("idem", "close-2"),
                ("closes_at", "2023-12-01 09:30"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let market = s.svc.store().market(m).await.unwrap().unwrap();
    assert_eq!(
        market.rules.closes_at,
        haggle_core::model::parse_utc("2023-12-01 09:30")
    );
    let r = s
        .form(
            &format!("{path}/closes_at"),
            &s.operator,
            &[
                ("csrf", &csrf),
                ("idem", "close-3"),
                ("closes_at", "next week"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("is not a time"), "{}", r.body);
    // A principal's session cannot set it.
    let theirs = s
        .page(&format!("/m/{m}/p/{}", alice.id), Some(&alice.principal))
        .await;
    let r = s
        .form(
            &format!("{path}/closes_at"),
            &alice.principal,
            &[
                ("csrf", &theirs.hidden("csrf")),
                ("idem", "close-4"),
                ("closes_at", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
}
