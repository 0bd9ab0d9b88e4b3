//! The Operate page's chat channel form: an operator sets the market's channel (URL and kinds)
//! and stops it; the page shows the URL shortened only, since it is the channel's secret.

mod support;

use support::*;

const HOOK: &str = "https://hooks.example.org/services/T0/B0/abcdefSECRETx7Qa";

#[tokio::test]
async fn an_operator_sets_and_stops_the_chat_channel_from_the_operate_page() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let operate = format!("/m/{m}/operate");
    let page = s.page(&operate, Some(&s.operator)).await;
    assert!(page.body.contains("No chat channel"), "{}", page.body);
    let csrf = page.hidden("csrf");
    let action = format!("/m/{m}/operate/channel");
    let set = s
        .form(
            &action,
            &s.operator,
            &[
                ("csrf", &csrf),
                ("idem", "channel-form-1"),
                ("url", HOOK),
                ("kinds", "listing_posted, deal_created"),
                ("action", "set"),
            ],
        )
        .await;
    assert_eq!(set.status, 303, "{}", set.body);
    assert_eq!(
        set.location.as_deref(),
        Some(format!("{operate}#channel").as_str())
    );
    let page = s.page(&operate, Some(&s.operator)).await;
    assert!(
        page.body
            .contains("Posting listing_posted, deal_created to https://hooks.example.org/…x7Qa"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("SECRET"),
        "the URL is never shown whole"
    );

    let stop = s
        .form(
            &action,
            &s.operator,
            &[
                ("csrf", &csrf),
                ("idem", "channel-form-2"),
                ("action", "remove"),
            ],
        )
        .await;
    assert_eq!(stop.status, 303, "{}", stop.body);
    let page = s.page(&operate, Some(&s.operator)).await;
    assert!(page.body.contains("No chat channel"));
}
