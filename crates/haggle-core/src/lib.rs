//! Haggle's domain core: the market rules of `shared/spec/market.md` as plain data and pure functions.
//! No IO, no async, no clock reads: every command takes the market state it needs (a [`Scene`]) and
//! the current time, and returns a [`Plan`] of changes and events that an adapter persists atomically.

pub mod claims;
pub mod error;
pub mod event;
pub mod figures;
pub mod ledger;
pub mod lifecycle;
pub mod limits;
pub mod model;
pub mod negotiation;
pub mod payment;
pub mod plan;
pub mod policy;
pub mod settlement;
pub mod shipping;
pub mod summary;
pub mod views;

pub use claims::{
    Claims, Condition, Dispute, DisputeGrounds, Inspection, InspectionSource, Working,
};
pub use error::{DomainError, ErrorCode};
pub use event::{Event, EventBody, EventDraft, GENESIS_HASH, Visibility};
pub use ledger::{Account, Transfer, TransferKind};
pub use model::*;
pub use negotiation::Scene;
pub use plan::{Change, Plan};
pub use shipping::{Fulfilment, Shipping, ShippingStatus};
pub use summary::{LiveOffer, ThreadSummary};
pub use views::*;
