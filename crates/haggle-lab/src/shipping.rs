//! Shipping in simulations (spec trust.md, Shipping): an experiment's shipping model — every item
//! shipped at one shipping price, each parcel's delivery time and loss drawn from seeded
//! distributions — written into the scenario's items as their hidden `true_transit`. Off unless
//! an experiment's run group sets it, so no other run draws a number more.

use haggle_agents::profile::Profile;
use haggle_api::haggle_core::shipping::Transit;
use haggle_api::haggle_core::{MAX_AMOUNT, MAX_DURATION_MS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How a run's items are shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingModel {
    /// What the buyer of each item pays for shipping, in minor units (0 = free).
    pub shipping_price: i64,
    /// Each parcel's delivery time is drawn uniformly from this range (ms of the market clock).
    pub delivery_min_ms: i64,
    pub delivery_max_ms: i64,
    /// Parcels lost, per mille (each parcel drawn on its own).
    #[serde(default)]
    pub loss_per_mille: u32,
}

impl ShippingModel {
    /// Checks the model as an experiment file states it (the message names the field).
    pub fn validate(&self) -> Result<(), String> {
        if !(0..=MAX_AMOUNT).contains(&self.shipping_price) {
            return Err(format!(
                "shipping_price must be between 0 and {MAX_AMOUNT}, got {}",
                self.shipping_price
            ));
        }
        if !(0..=MAX_DURATION_MS).contains(&self.delivery_min_ms)
            || !(self.delivery_min_ms..=MAX_DURATION_MS).contains(&self.delivery_max_ms)
        {
            return Err(format!(
                "delivery_min_ms ≤ delivery_max_ms, both between 0 and {MAX_DURATION_MS}, got {} and {}",
                self.delivery_min_ms, self.delivery_max_ms
            ));
        }
        if self.loss_per_mille > 1000 {
            return Err(format!(
                "loss_per_mille must be at most 1000, got {}",
                self.loss_per_mille
            ));
        }
        Ok(())
    }
}

/// Ships every item of `profiles` under `model`: its shipping price, and a delivery time and a
/// loss drawn from one `StdRng` seeded with `seed`, item by item in the profiles' order.
pub fn ship_profiles(profiles: &mut [Profile], model: &ShippingModel, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for item in profiles.iter_mut().flat_map(|p| p.sell.iter_mut()) {
        let delivery_ms = rng.random_range(model.delivery_min_ms..=model.delivery_max_ms);
        let lost = rng.random_range(0..1000) < model.loss_per_mille;
        item.shipping_price = Some(model.shipping_price);
        item.true_transit = Some(Transit { delivery_ms, lost });
    }
}
