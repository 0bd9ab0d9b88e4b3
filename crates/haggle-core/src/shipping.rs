//! Shipping beside handover (spec trust.md, Shipping): how a listing's goods change hands
//! (`fulfilment`), a shipped deal's record (its shipping price, deadline, carrier, tracking and
//! status) and the seller's `ship` command. The shipping price is part of the deal's price.

use crate::error::{DomainError as E, Result};
use crate::model::{DAY_MS, Deal, DealStatus, MAX_AMOUNT, Money, Timestamp, string_enum};
use serde::{Deserialize, Serialize};

/// Longest carrier name and tracking reference the seller may record.
pub const MAX_CARRIER: usize = 100;
pub const MAX_TRACKING: usize = 200;
/// How long a seller has to ship after the agreement unless the market sets `shipping_window_ms`.
pub const DEFAULT_SHIPPING_WINDOW_MS: i64 = 3 * DAY_MS;

/// How a listing's goods change hands: in person (the handover, the default) or shipped, the
/// buyer paying `shipping_price` on top of the agreed price.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Fulfilment {
    #[default]
    InPerson,
    Shipping {
        /// Minor units the buyer pays for shipping, added to the agreed price (0 = free).
        shipping_price: Money,
    },
}

impl Fulfilment {
    pub fn is_in_person(&self) -> bool {
        *self == Fulfilment::InPerson
    }

    /// What shipping adds to the agreed price: 0 in person.
    pub fn shipping_price(&self) -> Money {
        match self {
            Fulfilment::InPerson => 0,
            Fulfilment::Shipping { shipping_price } => *shipping_price,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let p = self.shipping_price();
        if !(0..=MAX_AMOUNT).contains(&p) {
            return Err(E::invalid_price(format!(
                "fulfilment.shipping.shipping_price must be between 0 and {MAX_AMOUNT} minor units, got {p}"
            )));
        }
        Ok(())
    }
}

string_enum!(
    /// Where a shipped deal's goods are: not yet shipped, shipped (carrier and tracking recorded),
    /// delivered (the buyer confirmed, or the confirmation window passed).
    ShippingStatus { NotShipped => "not_shipped", Shipped => "shipped", Delivered => "delivered" }
);

/// A shipped deal's shipping record (absent on in-person deals).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipping {
    /// The part of the deal's price that is shipping.
    pub shipping_price: Money,
    pub status: ShippingStatus,
    /// The seller ships before this (the agreement plus the market's shipping window); after it
    /// the buyer may cancel alone, as after a missed handover.
    pub ship_by: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
}

impl Shipping {
    /// The record of a deal agreed at `now` on a listing shipped for `shipping_price`.
    pub fn agreed(shipping_price: Money, now: Timestamp, window_ms: i64) -> Shipping {
        Shipping {
            shipping_price,
            status: ShippingStatus::NotShipped,
            ship_by: crate::model::later(now, window_ms),
            carrier: None,
            tracking: None,
            shipped_at: None,
            delivered_at: None,
        }
    }
}

/// A simulated shipment's ground truth (a scenario's, drawn from its seeded distributions):
/// how long the carrier takes, or that the parcel is lost. Never shown: the market reads it
/// when the seller ships, and its carrier then reports the delivery (the sweep).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transit {
    /// From shipping to delivery, in ms of the market's clock.
    pub delivery_ms: i64,
    /// The parcel never arrives.
    #[serde(default)]
    pub lost: bool,
}

impl Transit {
    pub fn validate(&self) -> Result<()> {
        if !(0..=crate::model::MAX_DURATION_MS).contains(&self.delivery_ms) {
            return Err(E::invalid_request(format!(
                "true_transit.delivery_ms must be between 0 and {} ms, got {}",
                crate::model::MAX_DURATION_MS,
                self.delivery_ms
            )));
        }
        Ok(())
    }
}

/// `d` as delivered at `now`, when it was shipped (an in-person deal is returned unchanged).
pub fn delivered(d: &Deal, now: Timestamp) -> Deal {
    let mut next = d.clone();
    if let Some(s) = next
        .shipping
        .as_mut()
        .filter(|s| s.status == ShippingStatus::Shipped)
    {
        s.status = ShippingStatus::Delivered;
        s.delivered_at = Some(now);
    }
    next
}

/// Whether a simulated carrier delivers `d` by `now`: shipped, its hidden arrival reached.
pub fn arrived(d: &Deal, now: Timestamp) -> bool {
    d.status == DealStatus::HandedOver
        && d.arrives_at.is_some_and(|at| at <= now)
        && d.shipping
            .as_ref()
            .is_some_and(|s| s.status == ShippingStatus::Shipped)
}

/// Whether the seller of a shipped, agreed deal has missed its shipping deadline at `now`.
pub fn missed_shipping(d: &Deal, now: Timestamp) -> bool {
    d.status == DealStatus::Agreed
        && d.shipping
            .as_ref()
            .is_some_and(|s| s.status == ShippingStatus::NotShipped && s.ship_by <= now)
}
