//! The pages' charts are SVG in the HTML itself (no script, nothing fetched from elsewhere) and
//! draw what the market holds: deals over time, volume, prices against the asking price and
//! deals by category on the market page; available cash over time on My agent.

mod support;

use haggle_core::{Account, EventBody};
use support::*;

/// The page's charts section.
fn charts(body: &str) -> &str {
    let start = body.find(r#"id="charts""#).expect("a charts section");
    let end = body[start..].find("</section>").expect("its end") + start;
    &body[start..end]
}

#[tokio::test]
async fn the_market_page_charts_its_deals_without_javascript() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 10_000).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    s.deal(m, &alice, &bob, "Bike", 4_000).await;
    s.deal(m, &alice, &bob, "Lamp", 2_500).await;

    let page = s.page(&format!("/m/{m}"), Some(&s.operator)).await;
    assert_eq!(page.status, 200);
    let c = charts(&page.body);
    assert_eq!(c.matches("<svg").count(), 4, "four charts");
    assert!(!c.contains("<script") && !c.contains(" src=") && !c.contains("href="));
    assert!(
        c.contains(r#"data-series="Deals over time""#),
        "the cumulative line"
    );
    assert_eq!(c.matches(r#"class="dot""#).count(), 2, "one dot per deal");
    assert!(c.contains(": “Bike” for $40.00 (asked $40.00)"), "{c}");
    // Both deals fall in the first hour: one volume bar of $65.00, one category bar of 2.
    assert!(c.contains("hour 1: 2 deals, $65.00"), "{c}");
    assert!(c.contains(r#"data-series="misc""#) && c.contains("misc: 2 deals, $65.00"));
}

#[tokio::test]
async fn a_market_without_deals_says_so_in_each_chart() {
    let s = Server::start().await;
    let m = s.market("Quiet market").await;
    let page = s.page(&format!("/m/{m}"), Some(&s.operator)).await;
    let c = charts(&page.body);
    assert_eq!(c.matches(": no deals</text>").count(), 4, "{c}");
}

#[tokio::test]
async fn my_agent_charts_available_cash_from_its_ledger() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 10_000).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    s.deal(m, &alice, &bob, "Bike", 4_000).await;

    let page = s
        .page(&format!("/m/{m}/p/{}", bob.id), Some(&bob.principal))
        .await;
    assert_eq!(page.status, 200);
    let start = page.body.find(r#"data-testid="chart-balance""#).unwrap();
    let chart = &page.body[start..start + page.body[start..].find("</figure>").unwrap()];
    assert!(
        chart.contains(r#"data-series="Available cash over time""#),
        "{chart}"
    );
    // One step per transfer in or out of Bob's cash (his funding, the deal's hold).
    let moves = s
        .svc
        .store()
        .events(m, haggle_service::Viewer::All, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            matches!(&e.body, EventBody::TransferBooked(t)
            if t.debit == Account::Available(bob.id) || t.credit == Account::Available(bob.id))
        })
        .count();
    assert!(moves >= 2, "{moves}");
    let path = &chart[chart.find(" d=\"").unwrap()..];
    let path = &path[..path[4..].find('"').unwrap() + 4];
    assert_eq!(path.matches(" L").count(), 2 * moves, "{path}");
}
