//! What readers see: plain data assembled from stored state (balances, pages, thread details,
//! search filters, verification reports). No rules live here.

use crate::model::{ListingStatus, Message, Offer, Side, Thread};
use serde::{Deserialize, Serialize};

/// A participant's money as the spec shows it: available, held (escrow plus live offers), total.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Cash not held in escrow and not committed to live offers.
    pub available: i64,
    pub held_in_escrow: i64,
    pub committed_to_offers: i64,
    /// `held_in_escrow + committed_to_offers`.
    pub held: i64,
    /// `available + held`.
    pub total: i64,
}

impl From<crate::model::Funds> for Balance {
    fn from(f: crate::model::Funds) -> Balance {
        Balance {
            available: f.cash - f.committed,
            held_in_escrow: f.held,
            committed_to_offers: f.committed,
            held: f.held + f.committed,
            total: f.cash + f.held,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The result of verifying one market's ledger and event chain.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub market_id: i64,
    pub transfers: usize,
    pub events: usize,
    pub breaches: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.breaches.is_empty()
    }
}

/// A thread with its messages and offers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadDetail {
    pub thread: Thread,
    pub messages: Vec<Message>,
    pub offers: Vec<Offer>,
}

/// Filters and order of a listing search.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListingQuery {
    /// Words that must all appear, whole, in the title, description or category
    /// (case-insensitive): `table` does not find "comfortable". A word is a run of letters and
    /// digits (any ASCII character else separates words); `tab*` finds words beginning with
    /// `tab`. At most 16 words count.
    pub q: Option<String>,
    pub category: Option<String>,
    pub side: Option<Side>,
    /// Minor units; negative is refused.
    #[cfg_attr(feature = "openapi", param(minimum = 0))]
    pub min_price: Option<i64>,
    /// Minor units; negative is refused.
    #[cfg_attr(feature = "openapi", param(minimum = 0))]
    pub max_price: Option<i64>,
    /// Defaults to `active`.
    pub status: Option<ListingStatus>,
    pub owner: Option<i64>,
    /// `relevance` (the default when `q` is given), `newest` (the default otherwise) or
    /// `cheapest`. See [`ListingSort::Relevance`].
    #[cfg_attr(feature = "openapi", param(inline))]
    pub sort: Option<ListingSort>,
    /// Page size, 1..=500 (default 50); others are refused.
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 500))]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 500))]
    pub limit: Option<u32>,
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
}

impl ListingQuery {
    /// The order the search returns: `sort` when given, else relevance when `q` has any text,
    /// else newest first.
    pub fn order(&self) -> ListingSort {
        self.sort
            .unwrap_or(if self.q.as_deref().is_some_and(|q| !q.trim().is_empty()) {
                ListingSort::Relevance
            } else {
                ListingSort::Newest
            })
    }
}

/// The order of a listing search.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingSort {
    /// Highest id (most recently posted) first.
    #[default]
    Newest,
    /// Lowest price first, then lowest id.
    Cheapest,
    /// Highest score first, then newest: each query word scores 2 when it matches a word of
    /// the title and 1 when it matches a word of the description (matched as `q` matches;
    /// the category scores nothing). Every store ranks alike.
    Relevance,
}
