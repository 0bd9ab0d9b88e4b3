//! Listing search over HTTP: words, category, side, price range, order and cursor pages.

mod support;

use serde_json::{Value, json};
use support::*;

struct Catalogue {
    s: Server,
    m: i64,
    bob: Party,
    /// Listing ids by title.
    ids: Vec<(&'static str, i64)>,
}

impl Catalogue {
    fn id(&self, title: &str) -> i64 {
        self.ids.iter().find(|(t, _)| *t == title).unwrap().1
    }

    fn ids_of(&self, titles: &[&str]) -> Vec<i64> {
        titles.iter().map(|t| self.id(t)).collect()
    }

    async fn search(&self, query: &str) -> Value {
        self.s
            .get_ok(
                &format!("/v1/markets/{}/listings{query}", self.m),
                &self.bob.agent,
            )
            .await
    }

    async fn found(&self, query: &str) -> Vec<i64> {
        ids(&self.search(query).await["items"])
    }

    /// Follows `next_cursor` with pages of `limit`; returns the ids page by page.
    async fn pages(&self, query: &str, limit: u32) -> Vec<Vec<i64>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("?limit={limit}{query}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let page = self.search(&q).await;
            let items = ids(&page["items"]);
            assert!(items.len() <= limit as usize);
            out.push(items);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }
}

/// Alice sells five things and wants one; a sold and a withdrawn listing are not active.
async fn catalogue() -> Catalogue {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 10_000), ("Bob", 10_000)]).await;
    let (alice, bob) = (p[0].clone(), p[1].clone());
    let items: [(&str, &str, &str, &str, i64); 8] = [
        (
            "sell",
            "Red road bike",
            "54 cm frame, new tyres",
            "Bikes",
            5000,
        ),
        (
            "sell",
            "Blue mountain bike",
            "Suspension fork",
            "bikes",
            8000,
        ),
        (
            "sell",
            "Kids bike helmet",
            "Barely used",
            "accessories",
            1500,
        ),
        (
            "buy",
            "Wanted: road bike",
            "Up to 40 dollars",
            "bikes",
            4000,
        ),
        ("sell", "Oak desk", "Solid wood, 120 cm", "furniture", 12000),
        ("sell", "Desk lamp", "Road-tested LED", "furniture", 1500),
        ("sell", "Sold road bike", "gone", "bikes", 3000),
        ("sell", "Withdrawn road bike", "gone", "bikes", 3500),
    ];
    let mut ids = Vec::new();
    for (side, title, description, category, price) in items {
        let r = s
            .post(
                &format!("/v1/markets/{m}/listings"),
                &alice.agent,
                json!({"side": side, "title": title, "description": description,
                       "category": category, "price": price}),
            )
            .await;
        assert_status(&r, 201, title);
        ids.push((title, r.1["id"].as_i64().unwrap()));
    }
    let c = Catalogue { s, m, bob, ids };
    let (_, offer) = c.s.bid(m, &c.bob, c.id("Sold road bike"), 3000).await;
    c.s.accept(m, &alice, offer).await;
    let r =
        c.s.post(
            &format!(
                "/v1/markets/{m}/listings/{}/withdraw",
                c.id("Withdrawn road bike")
            ),
            &alice.agent,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "withdraw");
    c
}

#[tokio::test]
async fn search_matches_every_word_in_title_description_or_category() {
    let c = catalogue().await;
    // Only active listings; with words the most relevant first (here every title has "bike":
    // a tie, so newest first).
    assert_eq!(
        c.found("?q=bike").await,
        c.ids_of(&[
            "Wanted: road bike",
            "Kids bike helmet",
            "Blue mountain bike",
            "Red road bike"
        ])
    );
    // Every word must appear, case-insensitively, in any of the fields.
    assert_eq!(
        c.found("?q=ROAD%20bike").await,
        c.ids_of(&["Wanted: road bike", "Red road bike"])
    );
    assert_eq!(
        c.found("?q=road&sort=newest").await,
        c.ids_of(&["Desk lamp", "Wanted: road bike", "Red road bike"])
    );
    assert_eq!(c.found("?q=tyres").await, c.ids_of(&["Red road bike"]));
    assert_eq!(
        c.found("?q=furniture%20wood").await,
        c.ids_of(&["Oak desk"])
    );
    assert_eq!(c.found("?q=bike%20desk").await, Vec::<i64>::new());
    // A query of punctuation only names no word: it finds nothing.
    assert_eq!(c.found("?q=%25").await, Vec::<i64>::new());
    assert_eq!(c.found("?q=_").await, Vec::<i64>::new());
}

#[tokio::test]
async fn search_matches_whole_words_or_a_starred_prefix() {
    let c = catalogue().await;
    // "tyres" is not the word "tyre", nor "bike" the word "bik"; a `*` asks for the beginning.
    assert_eq!(c.found("?q=tyre").await, Vec::<i64>::new());
    assert_eq!(c.found("?q=tyre*").await, c.ids_of(&["Red road bike"]));
    assert_eq!(c.found("?q=bik").await, Vec::<i64>::new());
    assert_eq!(c.found("?q=bik%2A").await, c.found("?q=bike").await);
    // Punctuation separates words: "Road-tested" has the word "tested".
    assert_eq!(c.found("?q=tested").await, c.ids_of(&["Desk lamp"]));
    assert_eq!(c.found("?q=oad").await, Vec::<i64>::new());
}

#[tokio::test]
async fn a_search_with_words_ranks_by_relevance_unless_an_order_is_asked() {
    let c = catalogue().await;
    // "road" is in two titles (2 points each, the newer first) and one description (1 point).
    let ranked = c.ids_of(&["Wanted: road bike", "Red road bike", "Desk lamp"]);
    assert_eq!(c.found("?q=road").await, ranked);
    assert_eq!(c.found("?q=road&sort=relevance").await, ranked);
    assert_eq!(
        c.found("?q=road&sort=newest").await,
        c.ids_of(&["Desk lamp", "Wanted: road bike", "Red road bike"])
    );
    assert_eq!(
        c.found("?q=road&sort=cheapest").await,
        c.ids_of(&["Desk lamp", "Wanted: road bike", "Red road bike"])
    );
    // A wanted ad has no precedence: selling only, the ranking is the same without it.
    assert_eq!(
        c.found("?q=road&side=sell").await,
        c.ids_of(&["Red road bike", "Desk lamp"])
    );
    // The ranking pages with its cursor (score and id).
    let pages = c.pages("&q=road", 1).await;
    assert_eq!(pages.concat(), ranked);
    assert_eq!(pages.len(), 3);
    // Without words there is nothing to rank: newest first.
    assert_eq!(
        c.found("?sort=relevance&category=furniture").await,
        c.ids_of(&["Desk lamp", "Oak desk"])
    );
}

#[tokio::test]
async fn search_filters_by_category_side_and_price() {
    let c = catalogue().await;
    // Categories are stored lower-case; the filter matches any case.
    assert_eq!(
        c.found("?category=BIKES").await,
        c.ids_of(&["Wanted: road bike", "Blue mountain bike", "Red road bike"])
    );
    assert_eq!(c.found("?side=buy").await, c.ids_of(&["Wanted: road bike"]));
    assert_eq!(
        c.found("?side=sell&category=bikes").await,
        c.ids_of(&["Blue mountain bike", "Red road bike"])
    );
    assert_eq!(
        c.found("?min_price=1500&max_price=5000").await,
        c.ids_of(&[
            "Desk lamp",
            "Wanted: road bike",
            "Kids bike helmet",
            "Red road bike"
        ])
    );
    assert_eq!(c.found("?min_price=8001").await, c.ids_of(&["Oak desk"]));
    assert_eq!(c.found("?max_price=1499").await, Vec::<i64>::new());
    assert_eq!(
        c.found("?q=bike&max_price=6000&side=sell").await,
        c.ids_of(&["Kids bike helmet", "Red road bike"])
    );
    // Other statuses on request.
    assert_eq!(c.found("?status=sold").await, c.ids_of(&["Sold road bike"]));
    assert_eq!(
        c.found("?status=withdrawn").await,
        c.ids_of(&["Withdrawn road bike"])
    );
}

#[tokio::test]
async fn search_sorts_cheapest_first_with_ties_by_id() {
    let c = catalogue().await;
    assert_eq!(
        c.found("?sort=cheapest").await,
        c.ids_of(&[
            "Kids bike helmet",
            "Desk lamp",
            "Wanted: road bike",
            "Red road bike",
            "Blue mountain bike",
            "Oak desk",
        ])
    );
    let prices: Vec<i64> = c.search("?sort=cheapest&category=bikes").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["price"].as_i64().unwrap())
        .collect();
    assert_eq!(prices, [4000, 5000, 8000]);
}

#[tokio::test]
async fn search_pages_with_the_cursor_in_either_order() {
    let c = catalogue().await;
    for (sort, limit) in [
        ("", 2),
        ("&sort=cheapest", 2),
        ("&sort=cheapest", 4),
        ("", 1),
    ] {
        let whole = c.found(&format!("?limit=500{sort}")).await;
        assert_eq!(whole.len(), 6);
        let pages = c.pages(sort, limit).await;
        assert_eq!(
            pages.concat(),
            whole,
            "pages of {limit} with '{sort}' are the whole list in order, each once"
        );
        assert_eq!(pages.len(), whole.len().div_ceil(limit as usize));
        assert!(pages.iter().all(|p| !p.is_empty()));
    }
    // The cursor of a cheapest page resumes after a price tie correctly.
    let pages = c.pages("&sort=cheapest", 1).await;
    assert_eq!(
        pages.concat()[..2],
        c.ids_of(&["Kids bike helmet", "Desk lamp"])[..]
    );
    // Filters hold across pages.
    let pages = c.pages("&q=bike", 1).await;
    assert_eq!(pages.concat().len(), 4);
}
