//! A simulation's listings in memory, for search: every listing as the table holds it, shelved
//! by (category, side, status) in both orders a search returns, and by owner. Only a store that is its database's sole writer keeps shelves (a batched SQLite
//! store, `Store::open_batched`): it fills a market's shelves from the table on the first search
//! and then applies each committed change, so a search walks memory instead of an index whose
//! entries carry the text. Pure data: no SQL, no clock.

#[cfg(test)]
use haggle_core::model::Side;
use haggle_core::model::{Listing, ListingStatus};
use haggle_core::plan::Change;
use haggle_core::views::ListingSort;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a search asks, in the shelves' terms (words as `row::search_words` gives them). It names a category and
/// a side (one shelf), or an owner (their listings on any shelf).
pub struct ShelfQuery<'a> {
    pub category: Option<&'a str>,
    pub side: Option<&'a str>,
    pub status: &'a str,
    pub words: &'a [String],
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub owner: Option<i64>,
    pub sort: ListingSort,
    /// Past this listing (price and id for cheapest first, id for newest first, score and id
    /// for the most relevant first).
    pub after: Option<(i64, i64)>,
    /// Ids to return at most.
    pub take: usize,
}

struct Item {
    owner: i64,
    text: Box<str>,
}

/// Searches whose matches a shelf keeps at most. A market's agents ask the same few searches
/// again and again (each buyer its wants' words, every turn), and a search that finds fewer
/// listings than its page walked every candidate of its rarest word, which grows with the
/// market (~220 per search at 30,000 participants, a third of the time at 100,000). Each kept
/// search is checked against every listing the shelf gains, so the number is bounded.
const KEPT_SEARCHES: usize = 256;

/// A search's words, found by their stems, and every listing of the shelf that has them all.
struct Kept {
    finders: Vec<memchr::memmem::Finder<'static>>,
    found: BTreeSet<(i64, i64)>,
}

/// Each word's searcher, built once (a word, or a starred prefix, is found only where its stem is:
/// the stems pick the candidates, `has_word` decides).
fn finders_of(words: &[String]) -> Vec<memchr::memmem::Finder<'static>> {
    words
        .iter()
        .map(|w| memchr::memmem::Finder::new(w.trim_end_matches('*').as_bytes()).into_owned())
        .collect()
}

#[derive(Default)]
struct Shelf {
    cheapest: BTreeMap<(i64, i64), Item>,
    /// id → price, for newest first.
    newest: BTreeMap<i64, i64>,
    /// Each whitespace-separated word of the texts → its listings, cheapest first. A search word
    /// has no whitespace, so a text contains it exactly when one of its words does: a keyword
    /// search reads the listings of the words containing its rarest keyword, not the shelf.
    postings: HashMap<Box<str>, BTreeSet<(i64, i64)>>,
    /// Search word → the words of `postings` that contain it; a new word joins the lists of the
    /// search words it contains (clearing them instead made every search after a listing with
    /// a new word walk the whole vocabulary, which grows with the market).
    expansions: HashMap<String, Vec<Box<str>>>,
    /// Searches' words → their matches, cheapest first; followed by every insert and remove.
    kept: HashMap<Box<[String]>, Kept>,
}

/// Whether `text` has every search word (`finders` find their stems, in the same order).
fn has_every_word(text: &str, finders: &[memchr::memmem::Finder<'_>], words: &[String]) -> bool {
    finders
        .iter()
        .zip(words)
        .all(|(f, w)| crate::row::has_word_by(text, f, w.ends_with('*')))
}

/// A text's distinct words.
fn words_of(text: &str) -> BTreeSet<&str> {
    text.split_whitespace().collect()
}

impl Shelf {
    fn insert(&mut self, price: i64, id: i64, item: Item) {
        for (words, k) in &mut self.kept {
            if has_every_word(&item.text, &k.finders, words) {
                k.found.insert((price, id));
            }
        }
        for w in words_of(&item.text) {
            let listings = self.postings.entry(w.into()).or_insert_with(|| {
                for (search, terms) in &mut self.expansions {
                    if w.contains(search.as_str()) {
                        terms.push(w.into());
                    }
                }
                BTreeSet::new()
            });
            listings.insert((price, id));
        }
        self.newest.insert(id, price);
        self.cheapest.insert((price, id), item);
    }

    fn remove(&mut self, price: i64, id: i64) -> Option<Item> {
        self.newest.remove(&id);
        let item = self.cheapest.remove(&(price, id))?;
        for k in self.kept.values_mut() {
            k.found.remove(&(price, id));
        }
        for w in words_of(&item.text) {
            if let Some(listings) = self.postings.get_mut(w) {
                listings.remove(&(price, id));
            }
        }
        Some(item)
    }

    /// Whether the matches of `words` are kept (now, if there is room): every listing among
    /// the postings of its rarest word's terms that has all the words.
    fn keep_search(&mut self, words: &[String]) -> bool {
        if self.kept.contains_key(words) {
            return true;
        }
        if self.kept.len() >= KEPT_SEARCHES {
            return false;
        }
        let finders = finders_of(words);
        let stems: Vec<&str> = words.iter().map(|w| w.trim_end_matches('*')).collect();
        let terms = self.rarest_terms(&stems, &finders);
        let mut found = BTreeSet::new();
        for listings in terms.iter().filter_map(|t| self.postings.get(t)) {
            for &(price, id) in listings {
                if self
                    .cheapest
                    .get(&(price, id))
                    .is_some_and(|item| has_every_word(&item.text, &finders, words))
                {
                    found.insert((price, id));
                }
            }
        }
        self.kept.insert(words.into(), Kept { finders, found });
        true
    }

    /// A kept search's page: its matches in the order asked, within its price bounds, owner and
    /// cursor, at most `q.take`.
    fn kept_page(&self, q: &ShelfQuery<'_>) -> Vec<i64> {
        let found = &self.kept[q.words].found;
        let fits = |price: i64, id: i64| {
            (price, id, {
                q.min_price.is_none_or(|m| price >= m)
                    && q.max_price.is_none_or(|m| price <= m)
                    && q.owner.is_none_or(|o| {
                        self.cheapest
                            .get(&(price, id))
                            .is_some_and(|item| item.owner == o)
                    })
            })
        };
        match q.sort {
            ListingSort::Cheapest => page_of(
                found
                    .range((cheapest_from(q), std::ops::Bound::Unbounded))
                    .map(|&(price, id)| fits(price, id)),
                q,
            ),
            ListingSort::Newest | ListingSort::Relevance => page_of(
                newest_below(found.iter().copied(), q)
                    .into_iter()
                    .map(|(price, id)| fits(price, id)),
                q,
            ),
        }
    }

    /// The words of `postings` containing the rarest search word: a listing matches every word
    /// only if it is in one of their postings.
    fn rarest_terms(
        &mut self,
        words: &[&str],
        finders: &[memchr::memmem::Finder<'_>],
    ) -> Vec<Box<str>> {
        let Shelf {
            postings,
            expansions,
            ..
        } = self;
        for (w, f) in words.iter().zip(finders) {
            if !expansions.contains_key(*w) {
                let terms = postings
                    .keys()
                    .filter(|t| f.find(t.as_bytes()).is_some())
                    .cloned()
                    .collect();
                expansions.insert(w.to_string(), terms);
            }
        }
        let size = |terms: &Vec<Box<str>>| -> usize {
            terms
                .iter()
                .map(|t| postings.get(t).map_or(0, BTreeSet::len))
                .sum()
        };
        words
            .iter()
            .map(|w| &expansions[*w])
            .min_by_key(|terms| size(terms))
            .cloned()
            .unwrap_or_default()
    }
}

/// A page of candidates `(price, id, matches)` taken in the order given: at most `q.take` ids
/// that match; cheapest first, the walk stops at the first price past `q.max_price`.
fn page_of(candidates: impl IntoIterator<Item = (i64, i64, bool)>, q: &ShelfQuery<'_>) -> Vec<i64> {
    let by_price = q.sort == ListingSort::Cheapest;
    let mut out = Vec::new();
    for (price, id, matches) in candidates {
        if out.len() == q.take || (by_price && q.max_price.is_some_and(|m| price > m)) {
            break;
        }
        if matches {
            out.push(id);
        }
    }
    out
}

/// Where a cheapest-first walk starts: past the cursor, or at the lowest price asked.
fn cheapest_from(q: &ShelfQuery<'_>) -> std::ops::Bound<(i64, i64)> {
    match q.after {
        Some(after) => std::ops::Bound::Excluded(after),
        None => std::ops::Bound::Included((q.min_price.unwrap_or(i64::MIN), i64::MIN)),
    }
}

/// The `(price, id)` pairs below the cursor's id, newest first, each once.
fn newest_below(pairs: impl Iterator<Item = (i64, i64)>, q: &ShelfQuery<'_>) -> Vec<(i64, i64)> {
    let below = q.after.map_or(i64::MAX, |(_, id)| id);
    let mut found: Vec<(i64, i64)> = pairs.filter(|&(_, id)| id < below).collect();
    found.sort_unstable_by_key(|&(_, id)| std::cmp::Reverse(id));
    found.dedup();
    found
}

type ShelfKey = (String, String, String);

/// One market's shelves, and where each listing is.
#[derive(Default)]
pub struct MarketShelves {
    shelves: HashMap<ShelfKey, Shelf>,
    /// Answers every keyword search by walking postings, keeping no search's matches (the
    /// tests compare the two ways).
    walk_only: bool,
    at: HashMap<i64, (ShelfKey, i64)>,
    /// Each listing as its row reads, so a search needs no SQL at all.
    rows: HashMap<i64, Listing>,
    owned: HashMap<i64, BTreeSet<i64>>,
}

/// A listing as the shelves keep it.
struct Shelved {
    id: i64,
    category: String,
    side: String,
    status: String,
    price: i64,
    owner: i64,
    text: String,
}

impl MarketShelves {
    /// Shelves a listing as its row reads (`text` is its `search_text` column).
    pub fn add(&mut self, l: Listing, text: String) {
        self.insert(Shelved {
            id: l.id,
            category: l.category.clone(),
            side: l.side.as_str().to_string(),
            status: l.status.as_str().to_string(),
            price: l.price,
            owner: l.owner,
            text,
        });
        self.owned.entry(l.owner).or_default().insert(l.id);
        self.rows.insert(l.id, l);
    }

    /// Whether [`MarketShelves::apply`] does anything with this change. Exhaustive on purpose: a
    /// new kind of change must be placed here (and in `apply`) or the build fails.
    pub fn follows(change: &Change) -> bool {
        match change {
            Change::InsertListing(_)
            | Change::SetListingStatus { .. }
            | Change::SetListingFirstOffer { .. } => true,
            // A hold's row is the moderation queue's; the listing's `held` status arrives as a
            // `SetListingStatus`.
            Change::InsertHold { .. }
            | Change::SetMarketRules(_)
            | Change::InsertParticipant(_)
            | Change::SetMandate { .. }
            | Change::SetSuspension { .. }
            | Change::InsertThread(_)
            | Change::UpdateThread { .. }
            | Change::InsertMessage(_)
            | Change::InsertOffer(_)
            | Change::SetOfferState { .. }
            | Change::InsertDeal(_)
            | Change::SetDealStatus { .. }
            | Change::UpdateDeal(_)
            | Change::InsertDealNote(_)
            | Change::InsertRating(_)
            | Change::Transfer(_) => false,
        }
    }

    /// Applies one committed change of market `market` as the listings table took it. False
    /// when it names a listing not here: the caller reads the market again.
    pub fn apply(&mut self, market: i64, change: &Change) -> bool {
        match change {
            Change::InsertListing(l) => {
                let text = crate::row::search_text(&l.title, &l.description, &l.category);
                self.add(
                    Listing {
                        market_id: market,
                        ..l.clone()
                    },
                    text,
                );
                true
            }
            Change::SetListingStatus { listing, status } => self.set_status(*listing, *status),
            // The table keeps the first offer's time only.
            Change::SetListingFirstOffer { listing, at } => match self.rows.get_mut(listing) {
                Some(l) => {
                    l.first_offer_at.get_or_insert(*at);
                    true
                }
                None => false,
            },
            _ => {
                debug_assert!(!MarketShelves::follows(change));
                true
            }
        }
    }

    pub fn row(&self, id: i64) -> Option<&Listing> {
        self.rows.get(&id)
    }

    /// The rows of `ids`, in that order; `None` if one is not here.
    pub fn rows(&self, ids: &[i64]) -> Option<Vec<Listing>> {
        ids.iter().map(|id| self.rows.get(id).cloned()).collect()
    }

    fn insert(&mut self, l: Shelved) {
        self.remove(l.id);
        let key = (l.category, l.side, l.status);
        let item = Item {
            owner: l.owner,
            text: l.text.into(),
        };
        self.shelves
            .entry(key.clone())
            .or_default()
            .insert(l.price, l.id, item);
        self.at.insert(l.id, (key, l.price));
    }

    fn remove(&mut self, id: i64) -> Option<(ShelfKey, i64, Item)> {
        let (key, price) = self.at.remove(&id)?;
        let item = self.shelves.get_mut(&key)?.remove(price, id)?;
        Some((key, price, item))
    }

    /// Moves a listing to its new status's shelf; a listing not shelved is left alone (the
    /// caller reloads the market instead).
    fn set_status(&mut self, id: i64, status: ListingStatus) -> bool {
        let Some(((category, side, _), price, item)) = self.remove(id) else {
            return false;
        };
        if let Some(l) = self.rows.get_mut(&id) {
            l.status = status;
        }
        self.insert(Shelved {
            id,
            category,
            side,
            status: status.as_str().to_string(),
            price,
            owner: item.owner,
            text: item.text.into(),
        });
        true
    }

    /// The ids a search returns, in its order, at most `q.take`.
    pub fn search(&mut self, q: &ShelfQuery<'_>) -> Vec<i64> {
        if q.sort == ListingSort::Relevance {
            return self.search_ranked(q);
        }
        let (Some(category), Some(side)) = (q.category, q.side) else {
            return self.search_owned(q);
        };
        let key = (category.to_string(), side.to_string(), q.status.to_string());
        let Some(shelf) = self.shelves.get_mut(&key) else {
            return Vec::new();
        };
        if !q.words.is_empty() && !self.walk_only && shelf.keep_search(q.words) {
            return shelf.kept_page(q);
        }
        // Each word's searcher is built once per search, not once per listing it is tried on.
        let finders = finders_of(q.words);
        let keep = |price: i64, item: &Item| {
            q.min_price.is_none_or(|m| price >= m)
                && q.max_price.is_none_or(|m| price <= m)
                && q.owner.is_none_or(|o| item.owner == o)
                && has_every_word(&item.text, &finders, q.words)
        };
        if q.words.is_empty() {
            return match q.sort {
                ListingSort::Cheapest => page_of(
                    shelf
                        .cheapest
                        .range((cheapest_from(q), std::ops::Bound::Unbounded))
                        .map(|(&(price, id), item)| (price, id, keep(price, item))),
                    q,
                ),
                ListingSort::Newest | ListingSort::Relevance => {
                    let below = q.after.map_or(i64::MAX, |(_, id)| id);
                    page_of(
                        shelf.newest.range(..below).rev().map(|(&id, &price)| {
                            let item = shelf.cheapest.get(&(price, id));
                            (price, id, item.is_some_and(|item| keep(price, item)))
                        }),
                        q,
                    )
                }
            };
        }
        let stems: Vec<&str> = q.words.iter().map(|w| w.trim_end_matches('*')).collect();
        let terms = shelf.rarest_terms(&stems, &finders);
        let shelf = &*shelf;
        let postings: Vec<&BTreeSet<(i64, i64)>> =
            terms.iter().filter_map(|t| shelf.postings.get(t)).collect();
        let matches = |price: i64, id: i64| {
            let item = shelf.cheapest.get(&(price, id));
            (price, id, item.is_some_and(|item| keep(price, item)))
        };
        match q.sort {
            ListingSort::Cheapest => {
                // The postings merged in price order, read only as far as the page needs.
                let from = cheapest_from(q);
                let mut walks: Vec<_> = postings
                    .iter()
                    .map(|p| p.range((from, std::ops::Bound::Unbounded)).copied())
                    .collect();
                let mut next = std::collections::BinaryHeap::new();
                for (i, walk) in walks.iter_mut().enumerate() {
                    if let Some(first) = walk.next() {
                        next.push(std::cmp::Reverse((first, i)));
                    }
                }
                let mut last = None;
                let merged = std::iter::from_fn(move || {
                    loop {
                        let std::cmp::Reverse((listing, i)) = next.pop()?;
                        if let Some(following) = walks[i].next() {
                            next.push(std::cmp::Reverse((following, i)));
                        }
                        if last != Some(listing) {
                            last = Some(listing);
                            return Some(listing);
                        }
                    }
                });
                page_of(merged.map(|(price, id)| matches(price, id)), q)
            }
            ListingSort::Newest | ListingSort::Relevance => {
                let all = postings.iter().flat_map(|p| p.iter().copied());
                page_of(
                    newest_below(all, q)
                        .into_iter()
                        .map(|(price, id)| matches(price, id)),
                    q,
                )
            }
        }
    }

    /// The most relevant first (`search::relevance`, then newest): every listing the search
    /// finds is scored, as the databases do.
    fn search_ranked(&mut self, q: &ShelfQuery<'_>) -> Vec<i64> {
        let found = self.search(&ShelfQuery {
            sort: ListingSort::Newest,
            after: None,
            take: usize::MAX,
            ..*q
        });
        let mut ranked: Vec<(i64, i64)> = found
            .into_iter()
            .filter_map(|id| {
                let l = self.rows.get(&id)?;
                Some((
                    crate::search::relevance(&l.title, &l.description, q.words),
                    id,
                ))
            })
            .filter(|&ranked| q.after.is_none_or(|after| ranked < after))
            .collect();
        ranked.sort_unstable_by_key(|&ranked| std::cmp::Reverse(ranked));
        ranked.into_iter().take(q.take).map(|(_, id)| id).collect()
    }

    /// An owner's listings a search returns, on any shelf its category and side allow.
    fn search_owned(&self, q: &ShelfQuery<'_>) -> Vec<i64> {
        let Some(ids) = q.owner.and_then(|o| self.owned.get(&o)) else {
            return Vec::new();
        };
        let mut found: Vec<(i64, i64)> = ids
            .iter()
            .filter_map(|&id| {
                let (key, price) = self.at.get(&id)?;
                let item = self.shelves.get(key)?.cheapest.get(&(*price, id))?;
                let fits = q.category.is_none_or(|c| key.0 == c)
                    && q.side.is_none_or(|s| key.1 == s)
                    && key.2 == q.status
                    && q.min_price.is_none_or(|m| *price >= m)
                    && q.max_price.is_none_or(|m| *price <= m)
                    && q.words.iter().all(|w| crate::row::has_word(&item.text, w));
                fits.then_some((*price, id))
            })
            .collect();
        match q.sort {
            ListingSort::Cheapest => {
                found.sort_unstable();
                found.retain(|&p| q.after.is_none_or(|after| p > after));
            }
            ListingSort::Newest | ListingSort::Relevance => {
                found.sort_unstable_by_key(|&(_, id)| std::cmp::Reverse(id));
                found.retain(|&(_, id)| q.after.is_none_or(|(_, after)| id < after));
            }
        }
        found.into_iter().take(q.take).map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shelved(id: i64, price: i64, owner: i64, text: &str) -> Shelved {
        Shelved {
            id,
            category: "bikes".into(),
            side: "sell".into(),
            status: "active".into(),
            price,
            owner,
            text: text.into(),
        }
    }

    fn query<'a>(words: &'a [String], sort: ListingSort) -> ShelfQuery<'a> {
        ShelfQuery {
            category: Some("bikes"),
            side: Some("sell"),
            status: "active",
            words,
            min_price: None,
            max_price: None,
            owner: None,
            sort,
            after: None,
            take: 10,
        }
    }

    fn shop() -> MarketShelves {
        let mut m = MarketShelves::default();
        m.insert(shelved(1, 300, 7, "red road bike"));
        m.insert(shelved(2, 100, 8, "blue bike"));
        m.insert(shelved(3, 300, 7, "motorbike helmet"));
        m.insert(shelved(4, 200, 8, "red scooter"));
        m
    }

    #[test]
    fn cheapest_first_with_ties_by_id_and_every_word() {
        let mut m = shop();
        assert_eq!(
            m.search(&query(&[], ListingSort::Cheapest)),
            vec![2, 4, 1, 3]
        );
        // A motorbike is not a bike: words match whole.
        let words = vec!["bike".to_string()];
        assert_eq!(m.search(&query(&words, ListingSort::Cheapest)), vec![2, 1]);
        let words = vec!["motor*".to_string()];
        assert_eq!(m.search(&query(&words, ListingSort::Cheapest)), vec![3]);
        let words = vec!["red".to_string(), "bike".to_string()];
        assert_eq!(m.search(&query(&words, ListingSort::Cheapest)), vec![1]);
    }

    #[test]
    fn newest_first_and_cursors_continue_past_the_last() {
        let mut m = shop();
        assert_eq!(m.search(&query(&[], ListingSort::Newest)), vec![4, 3, 2, 1]);
        let q = ShelfQuery {
            after: Some((200, 4)),
            ..query(&[], ListingSort::Cheapest)
        };
        assert_eq!(m.search(&q), vec![1, 3]);
        let q = ShelfQuery {
            after: Some((0, 3)),
            ..query(&[], ListingSort::Newest)
        };
        assert_eq!(m.search(&q), vec![2, 1]);
    }

    #[test]
    fn price_owner_and_take_bound_the_walk() {
        let mut m = shop();
        let q = ShelfQuery {
            min_price: Some(150),
            max_price: Some(300),
            owner: Some(7),
            ..query(&[], ListingSort::Cheapest)
        };
        assert_eq!(m.search(&q), vec![1, 3]);
        let q = ShelfQuery {
            take: 1,
            ..query(&[], ListingSort::Newest)
        };
        assert_eq!(m.search(&q), vec![4]);
    }

    #[test]
    fn a_word_first_seen_later_is_found_and_a_moved_listing_is_not() {
        let mut m = shop();
        let words = vec!["cycle".to_string()];
        assert!(m.search(&query(&words, ListingSort::Cheapest)).is_empty());
        m.insert(shelved(5, 50, 9, "unicycle, cycle"));
        assert_eq!(m.search(&query(&words, ListingSort::Newest)), vec![5]);
        let words = vec!["red".to_string()];
        assert!(m.set_status(1, ListingStatus::Withdrawn));
        assert_eq!(m.search(&query(&words, ListingSort::Newest)), vec![4]);
        let q = ShelfQuery {
            after: Some((100, 2)),
            ..query(&words, ListingSort::Cheapest)
        };
        assert_eq!(m.search(&q), vec![4]);
    }

    #[test]
    fn a_status_change_moves_the_listing_to_its_shelf() {
        let mut m = shop();
        assert!(m.set_status(2, ListingStatus::Sold));
        assert!(!m.set_status(99, ListingStatus::Sold), "not shelved");
        assert_eq!(m.search(&query(&[], ListingSort::Cheapest)), vec![4, 1, 3]);
        let q = ShelfQuery {
            status: "sold",
            ..query(&[], ListingSort::Cheapest)
        };
        assert_eq!(m.search(&q), vec![2]);
    }

    /// One step of a shelf's life: a listing arrives (its words from a small vocabulary, so
    /// searches find some), a listing's status changes, or a search is asked.
    #[derive(Debug, Clone)]
    enum Step {
        Insert {
            id: i64,
            price: i64,
            owner: i64,
            words: Vec<usize>,
        },
        Status {
            id: i64,
            sold: bool,
        },
        Search {
            words: Vec<usize>,
            min: Option<i64>,
            max: Option<i64>,
            owner: Option<i64>,
            newest: bool,
            after: Option<(i64, i64)>,
            take: usize,
        },
    }

    const VOCABULARY: [&str; 6] = ["red", "road", "bike", "bikes", "motorbike", "helmet"];
    const SEARCH_WORDS: [&str; 5] = ["red", "bike", "bike*", "road", "motor*"];

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let id = 1..40i64;
        let price = 0..6i64;
        prop_oneof![
            3 => (id.clone(), price.clone(), 1..4i64, proptest::collection::vec(0..VOCABULARY.len(), 1..4))
                .prop_map(|(id, price, owner, words)| Step::Insert { id, price: price * 100, owner, words }),
            1 => (id.clone(), any::<bool>()).prop_map(|(id, sold)| Step::Status { id, sold }),
            3 => (
                proptest::collection::vec(0..SEARCH_WORDS.len(), 1..3),
                proptest::option::of(price.clone()),
                proptest::option::of(price.clone()),
                proptest::option::weighted(0.2, 1..4i64),
                any::<bool>(),
                proptest::option::of((price, id)),
                1..6usize,
            )
                .prop_map(|(words, min, max, owner, newest, after, take)| Step::Search {
                    words,
                    min: min.map(|p| p * 100),
                    max: max.map(|p| p * 100),
                    owner,
                    newest,
                    after: after.map(|(p, id)| if newest { (0, id) } else { (p * 100, id) }),
                    take,
                }),
        ]
    }

    proptest::proptest! {
        /// A kept search answers as walking the postings does, whatever listings came and went
        /// since it was first asked.
        #[test]
        fn kept_searches_answer_as_the_walk_does(steps in proptest::collection::vec(step(), 1..80)) {
            let mut kept = MarketShelves::default();
            let mut walk = MarketShelves { walk_only: true, ..MarketShelves::default() };
            for s in steps {
                match s {
                    Step::Insert { id, price, owner, words } => {
                        let text: Vec<&str> = words.iter().map(|&w| VOCABULARY[w]).collect();
                        for m in [&mut kept, &mut walk] {
                            m.insert(shelved(id, price, owner, &text.join(" ")));
                        }
                    }
                    Step::Status { id, sold } => {
                        let status = if sold { ListingStatus::Sold } else { ListingStatus::Active };
                        proptest::prop_assert_eq!(kept.set_status(id, status), walk.set_status(id, status));
                    }
                    Step::Search { words, min, max, owner, newest, after, take } => {
                        let words: Vec<String> = words.iter().map(|&w| SEARCH_WORDS[w].to_string()).collect();
                        let q = ShelfQuery {
                            min_price: min,
                            max_price: max,
                            owner,
                            after,
                            take,
                            ..query(&words, if newest { ListingSort::Newest } else { ListingSort::Cheapest })
                        };
                        proptest::prop_assert_eq!(kept.search(&q), walk.search(&q), "{:?}", words);
                    }
                }
            }
        }
    }

    #[test]
    fn a_search_is_kept_once_asked_and_follows_new_and_moved_listings() {
        let mut m = shop();
        let words = vec!["red".to_string()];
        assert_eq!(m.search(&query(&words, ListingSort::Cheapest)), vec![4, 1]);
        let key = (
            "bikes".to_string(),
            "sell".to_string(),
            "active".to_string(),
        );
        assert!(m.shelves[&key].kept.contains_key(&words[..]), "kept");
        m.insert(shelved(5, 50, 9, "red tandem"));
        assert!(m.set_status(4, ListingStatus::Sold));
        assert_eq!(m.search(&query(&words, ListingSort::Cheapest)), vec![5, 1]);
        assert_eq!(m.search(&query(&words, ListingSort::Newest)), vec![5, 1]);
    }

    fn listing(
        id: i64,
        owner: i64,
        category: &str,
        side: Side,
        price: i64,
        title: &str,
    ) -> Listing {
        Listing {
            id,
            market_id: 1,
            owner,
            side,
            title: title.into(),
            description: String::new(),
            category: category.into(),
            condition: "used".into(),
            price,
            attributes: BTreeMap::new(),
            status: ListingStatus::Active,
            created_at: 0,
            first_offer_at: None,
            claims: Default::default(),
            true_state: None,
            fulfilment: Default::default(),
            true_transit: None,
        }
    }

    fn owners_shop() -> MarketShelves {
        let mut m = MarketShelves::default();
        for l in [
            listing(1, 7, "bikes", Side::Sell, 300, "red bike"),
            listing(2, 7, "books", Side::Buy, 100, "wanted: atlas"),
            listing(3, 8, "bikes", Side::Sell, 50, "blue bike"),
            listing(4, 7, "bikes", Side::Sell, 100, "old bike"),
        ] {
            let text = crate::row::search_text(&l.title, &l.description, &l.category);
            m.add(l, text);
        }
        m
    }

    fn by_owner<'a>(words: &'a [String], sort: ListingSort) -> ShelfQuery<'a> {
        ShelfQuery {
            category: None,
            side: None,
            owner: Some(7),
            ..query(words, sort)
        }
    }

    #[test]
    fn an_owners_listings_are_found_on_every_shelf_in_either_order() {
        let mut m = owners_shop();
        assert_eq!(
            m.search(&by_owner(&[], ListingSort::Cheapest)),
            vec![2, 4, 1]
        );
        assert_eq!(m.search(&by_owner(&[], ListingSort::Newest)), vec![4, 2, 1]);
        let after = ShelfQuery {
            after: Some((100, 2)),
            take: 1,
            ..by_owner(&[], ListingSort::Cheapest)
        };
        assert_eq!(m.search(&after), vec![4]);
        let bike = vec!["bike".to_string()];
        assert_eq!(
            m.search(&by_owner(&bike, ListingSort::Cheapest)),
            vec![4, 1]
        );
        let books = ShelfQuery {
            category: Some("books"),
            ..by_owner(&[], ListingSort::Cheapest)
        };
        assert_eq!(m.search(&books), vec![2]);
        assert!(m.set_status(4, ListingStatus::Sold));
        assert_eq!(m.search(&by_owner(&[], ListingSort::Cheapest)), vec![2, 1]);
    }

    #[test]
    fn rows_follow_status_and_only_the_first_offer() {
        let mut m = owners_shop();
        assert!(m.set_status(1, ListingStatus::Withdrawn));
        assert!(m.apply(1, &Change::SetListingFirstOffer { listing: 1, at: 10 }));
        assert!(m.apply(1, &Change::SetListingFirstOffer { listing: 1, at: 20 }));
        let row = &m.rows(&[1]).expect("kept")[0];
        assert_eq!(
            (row.status, row.first_offer_at),
            (ListingStatus::Withdrawn, Some(10))
        );
        assert!(!m.apply(
            1,
            &Change::SetListingFirstOffer {
                listing: 99,
                at: 10
            }
        ));
        assert!(m.rows(&[1, 99]).is_none(), "a missing row is not skipped");
    }
}
