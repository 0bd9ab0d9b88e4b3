//! Market policy and moderation (spec, trust.md: Market policy): what may be listed and how fast,
//! checked in the core so every transport meets it; operators' moderation of held listings,
//! removal of listings, and suspension and reinstatement of participants.

use crate::error::{DomainError as E, Result};
use crate::event::{
    EventBody, ListingOnly, ListingPosted, ListingRemoved, ListingWithdrawn, OfferVoided,
    ParticipantOnly, ParticipantSuspended, PolicyChanged, ThreadClosed, Visibility,
};
use crate::model::*;
use crate::negotiation::{NewListing, Scene, check_plain_text, void_others};
use crate::plan::{Change, Plan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bounds on a policy's size, so a policy is checked in bounded time.
pub const MAX_POLICY_CATEGORIES: usize = 200;
pub const MAX_POLICY_TERMS: usize = 500;
pub const MAX_TERM: usize = 100;
/// Longest reason an operator gives for a removal or suspension.
pub const MAX_REASON: usize = 2000;
/// The most listings, threads and offers one suspension ends (the store loads at most this many
/// of each; see ARCHITECTURE.md, Decisions).
pub const MAX_SUSPENSION_SWEEP: usize = crate::limits::SUSPENSION_ROWS;

string_enum!(
    /// A rule of the market policy; a refusal or hold names it.
    PolicyRule {
        ProhibitedCategories => "prohibited_categories",
        ProhibitedTerms => "prohibited_terms",
        PriceBounds => "price_bounds",
        MaxListingsPerDay => "max_listings_per_day",
        MaxOffersPerHour => "max_offers_per_hour",
    }
);

string_enum!(
    /// What a broken rule does to a listing: `refuse` it (`policy_violation`) or `hold` it for an
    /// operator's review.
    PolicyAction { Refuse => "refuse", Hold => "hold" }
);

// `string_enum!` derives no `Default`, so it is written out.
#[allow(clippy::derivable_impls)]
impl Default for PolicyAction {
    fn default() -> Self {
        PolicyAction::Refuse
    }
}

/// A category's price range, in minor units, both ends included.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceBounds {
    pub min: Option<Money>,
    pub max: Option<Money>,
}

/// The action of each listing rule (`refuse` unless set). `max_offers_per_hour` always refuses:
/// an offer cannot wait for review.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyActions {
    pub prohibited_categories: PolicyAction,
    pub prohibited_terms: PolicyAction,
    pub price_bounds: PolicyAction,
    pub max_listings_per_day: PolicyAction,
}

impl PolicyActions {
    fn is_default(&self) -> bool {
        *self == PolicyActions::default()
    }
    fn of(&self, rule: PolicyRule) -> PolicyAction {
        match rule {
            PolicyRule::ProhibitedCategories => self.prohibited_categories,
            PolicyRule::ProhibitedTerms => self.prohibited_terms,
            PolicyRule::PriceBounds => self.price_bounds,
            PolicyRule::MaxListingsPerDay => self.max_listings_per_day,
            PolicyRule::MaxOffersPerHour => PolicyAction::Refuse,
        }
    }
}

/// A market's policy, set by its operators (each change an event `policy_changed`). Empty by
/// default: a market without a policy behaves exactly as before it existed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketPolicy {
    /// Categories nothing may be listed in (lower-cased, as listings' categories are).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prohibited_categories: Vec<String>,
    /// Words or phrases no listing may contain: whole words, case-insensitive, matched against
    /// the listing's title and description (see [`screened_texts`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prohibited_terms: Vec<String>,
    /// Price range per category.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub price_bounds: BTreeMap<String, PriceBounds>,
    /// Listings one participant may create per day of the market's clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_listings_per_day: Option<u32>,
    /// Offers one participant may make per hour of the market's clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_offers_per_hour: Option<u32>,
    #[serde(skip_serializing_if = "PolicyActions::is_default")]
    pub actions: PolicyActions,
}

impl MarketPolicy {
    pub fn is_empty(&self) -> bool {
        *self == MarketPolicy::default()
    }

    /// Refuses an oversized or malformed policy with `invalid_request`, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.prohibited_categories.len() > MAX_POLICY_CATEGORIES {
            return Err(E::invalid_request(format!(
                "policy.prohibited_categories holds at most {MAX_POLICY_CATEGORIES} categories"
            )));
        }
        if self.price_bounds.len() > MAX_POLICY_CATEGORIES {
            return Err(E::invalid_request(format!(
                "policy.price_bounds holds at most {MAX_POLICY_CATEGORIES} categories"
            )));
        }
        if self.prohibited_terms.len() > MAX_POLICY_TERMS {
            return Err(E::invalid_request(format!(
                "policy.prohibited_terms holds at most {MAX_POLICY_TERMS} terms"
            )));
        }
        let categories = self
            .prohibited_categories
            .iter()
            .map(|c| ("policy.prohibited_categories", c))
            .chain(self.price_bounds.keys().map(|c| ("policy.price_bounds", c)));
        for (field, c) in categories {
            check_plain_text(field, c)?;
            if c.trim().is_empty() || c.chars().count() > MAX_TERM {
                return Err(E::invalid_request(format!(
                    "{field}: a category must be 1 to {MAX_TERM} characters"
                )));
            }
        }
        for t in &self.prohibited_terms {
            check_plain_text("policy.prohibited_terms", t)?;
            if words(t).is_empty() || t.chars().count() > MAX_TERM {
                return Err(E::invalid_request(format!(
                    "policy.prohibited_terms: '{t}' must hold a word and at most {MAX_TERM} characters"
                )));
            }
        }
        for (c, b) in &self.price_bounds {
            for (end, v) in [("min", b.min), ("max", b.max)] {
                if let Some(v) = v
                    && !(1..=MAX_AMOUNT).contains(&v)
                {
                    return Err(E::invalid_request(format!(
                        "policy.price_bounds.{c}.{end} must be between 1 and {MAX_AMOUNT}, got {v}"
                    )));
                }
            }
            if let (Some(lo), Some(hi)) = (b.min, b.max)
                && lo > hi
            {
                return Err(E::invalid_request(format!(
                    "policy.price_bounds.{c}: min {lo} is above max {hi}"
                )));
            }
        }
        for (field, v) in [
            ("max_listings_per_day", self.max_listings_per_day),
            ("max_offers_per_hour", self.max_offers_per_hour),
        ] {
            if v == Some(0) {
                return Err(E::invalid_request(format!(
                    "policy.{field} must be at least 1 (leave it out for no limit)"
                )));
            }
        }
        Ok(())
    }

    /// The policy as it is kept: categories trimmed and lower-cased like listings' categories,
    /// terms trimmed, duplicates dropped.
    pub fn normalised(mut self) -> MarketPolicy {
        let norm = |c: &String| c.trim().to_lowercase();
        self.prohibited_categories = self.prohibited_categories.iter().map(norm).collect();
        self.prohibited_categories.sort();
        self.prohibited_categories.dedup();
        self.prohibited_terms = self
            .prohibited_terms
            .iter()
            .map(|t| t.trim().to_string())
            .collect();
        self.prohibited_terms.dedup();
        self.price_bounds = self
            .price_bounds
            .iter()
            .map(|(c, b)| (norm(c), *b))
            .collect();
        self
    }
}

/// The words of a text for term matching: maximal runs of letters and digits, lower-cased. A
/// term matches a text when its words occur there consecutively, so matching is whole-word
/// ("art" does not match "party") and case-insensitive.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The first of `terms` found in `text` as whole words, if any.
pub fn prohibited_term<'a>(terms: &'a [String], text: &str) -> Option<&'a str> {
    let hay = words(text);
    terms.iter().map(String::as_str).find(|t| {
        let needle = words(t);
        !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle.as_slice())
    })
}

/// The texts of a listing that `prohibited_terms` are matched against, by field name: title,
/// description and the seller's claims (included parts, free claims' names and values).
pub fn screened_texts(listing: &NewListing) -> Vec<(&'static str, &str)> {
    let mut texts = vec![
        ("title", listing.title.as_str()),
        ("description", listing.description.as_str()),
    ];
    // The seller's claims are the seller's words too (spec: matched against claims).
    let c = &listing.claims;
    texts.extend(c.included.iter().map(|t| ("claims", t.as_str())));
    for (k, v) in &c.details {
        texts.push(("claims", k.as_str()));
        texts.push(("claims", v.as_str()));
    }
    texts
}

/// A row of the moderation queue: a held listing, the rules that held it and why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldListing {
    pub listing: Listing,
    pub rules: Vec<PolicyRule>,
    pub reason: String,
    pub held_at: Timestamp,
}

/// A listing some `hold` rules sent to review (and no `refuse` rule refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub rules: Vec<PolicyRule>,
    pub reason: String,
}

/// Checks a new listing against the policy: `Err(policy_violation)` naming the first refusing
/// rule it breaks, `Ok(Some(hold))` when only holding rules are broken, `Ok(None)` when it
/// passes. `recent_listings` is what its owner created in the last day of the market's clock.
pub fn screen_listing(
    policy: &MarketPolicy,
    listing: &NewListing,
    recent_listings: u32,
) -> Result<Option<Hold>> {
    if policy.is_empty() {
        return Ok(None);
    }
    let category = listing.category.trim().to_lowercase();
    let mut broken: Vec<(PolicyRule, String)> = Vec::new();
    if policy.prohibited_categories.contains(&category) {
        broken.push((
            PolicyRule::ProhibitedCategories,
            format!("category '{category}' is prohibited in this market"),
        ));
    }
    for (field, text) in screened_texts(listing) {
        if let Some(t) = prohibited_term(&policy.prohibited_terms, text) {
            broken.push((
                PolicyRule::ProhibitedTerms,
                format!("the {field} contains the prohibited term '{t}'"),
            ));
            break;
        }
    }
    if let Some(b) = policy.price_bounds.get(&category) {
        if let Some(lo) = b.min.filter(|lo| listing.price < *lo) {
            broken.push((
                PolicyRule::PriceBounds,
                format!(
                    "price {} is below the minimum {lo} for category '{category}'",
                    listing.price
                ),
            ));
        } else if let Some(hi) = b.max.filter(|hi| listing.price > *hi) {
            broken.push((
                PolicyRule::PriceBounds,
                format!(
                    "price {} is above the maximum {hi} for category '{category}'",
                    listing.price
                ),
            ));
        }
    }
    if let Some(n) = policy.max_listings_per_day
        && recent_listings >= n
    {
        broken.push((
            PolicyRule::MaxListingsPerDay,
            format!(
                "you created {recent_listings} listings in the last day; the market allows {n}"
            ),
        ));
    }
    if let Some((rule, why)) = broken
        .iter()
        .find(|(r, _)| policy.actions.of(*r) == PolicyAction::Refuse)
    {
        return Err(violation(*rule, why));
    }
    if broken.is_empty() {
        return Ok(None);
    }
    Ok(Some(Hold {
        rules: broken.iter().map(|(r, _)| *r).collect(),
        reason: broken
            .iter()
            .map(|(r, why)| format!("{r}: {why}"))
            .collect::<Vec<_>>()
            .join("; "),
    }))
}

fn violation(rule: PolicyRule, why: &str) -> E {
    E::policy_violation(format!("policy rule {rule}: {why}"))
}

/// Refuses an offer past the policy's `max_offers_per_hour` (`recent_offers`: the actor's offers
/// in the last hour of the market's clock).
pub fn check_offer_rate(policy: &MarketPolicy, recent_offers: u32) -> Result<()> {
    match policy.max_offers_per_hour {
        Some(n) if recent_offers >= n => Err(violation(
            PolicyRule::MaxOffersPerHour,
            &format!("you made {recent_offers} offers in the last hour; the market allows {n}"),
        )),
        _ => Ok(()),
    }
}

fn operator_only(s: &Scene, what: &str) -> Result<()> {
    if s.actor.is_some() {
        return Err(E::forbidden(format!("only an operator {what}")));
    }
    Ok(())
}

fn check_reason(reason: &str) -> Result<()> {
    check_plain_text("reason", reason)?;
    if reason.trim().is_empty() || reason.chars().count() > MAX_REASON {
        return Err(E::invalid_request(format!(
            "reason must be 1 to {MAX_REASON} characters"
        )));
    }
    Ok(())
}

/// An operator replaces the market's policy. It applies to what is listed and offered from now
/// on; listings already on the market stay.
pub fn set_policy(s: &mut Scene, plan: &mut Plan, policy: MarketPolicy) -> Result<()> {
    operator_only(s, "sets the market policy")?;
    policy.validate()?;
    let policy = policy.normalised();
    let mut rules = s.market.rules.clone();
    rules.policy = policy.clone();
    plan.change(Change::SetMarketRules(rules.clone()));
    plan.event(
        None,
        Visibility::Public,
        EventBody::PolicyChanged(PolicyChanged {
            policy: policy.clone(),
        }),
    );
    s.market.rules = rules;
    Ok(())
}

fn listing(s: &Scene) -> Result<&Listing> {
    s.listing
        .as_ref()
        .ok_or_else(|| E::not_found("listing not found"))
}

/// An operator approves a held listing: it goes on the market (`listing_posted`, public).
pub fn approve_listing(s: &mut Scene, plan: &mut Plan) -> Result<Listing> {
    operator_only(s, "approves a held listing")?;
    let l = listing(s)?;
    if l.status != ListingStatus::Held {
        return Err(E::invalid_transition(format!(
            "listing {} is {}: only a held listing can be approved",
            l.id, l.status
        )));
    }
    s.open_market()?;
    let mut l = l.clone();
    l.status = ListingStatus::Active;
    plan.change(Change::SetListingStatus {
        listing: l.id,
        status: ListingStatus::Active,
    });
    plan.event(
        None,
        Visibility::Parties(vec![l.owner]),
        EventBody::ListingApproved(ListingOnly { listing_id: l.id }),
    );
    plan.event(
        Some(l.owner),
        Visibility::Public,
        EventBody::ListingPosted(ListingPosted { listing: l.clone() }),
    );
    s.listing = Some(l.clone());
    Ok(l)
}

/// An operator removes a held or active listing: its live offers void and its threads end.
pub fn remove_listing(s: &mut Scene, plan: &mut Plan, reason: &str) -> Result<()> {
    operator_only(s, "removes a listing")?;
    check_reason(reason)?;
    let l = listing(s)?;
    if !matches!(l.status, ListingStatus::Held | ListingStatus::Active) {
        return Err(E::invalid_transition(format!(
            "listing {} is {}: only a held or active listing can be removed",
            l.id, l.status
        )));
    }
    // A held listing was never public; its removal is told to its owner (operators see all).
    let visibility = if l.status == ListingStatus::Held {
        Visibility::Parties(vec![l.owner])
    } else {
        Visibility::Public
    };
    let (id, owner) = (l.id, l.owner);
    void_others(s, plan, None, VoidReason::ListingRemoved);
    plan.change(Change::SetListingStatus {
        listing: id,
        status: ListingStatus::Removed,
    });
    plan.event(
        None,
        visibility,
        EventBody::ListingRemoved(ListingRemoved {
            listing_id: id,
            owner,
            reason: reason.trim().to_string(),
        }),
    );
    if let Some(l) = s.listing.as_mut() {
        l.status = ListingStatus::Removed;
    }
    Ok(())
}

/// An operator suspends a participant: its active and held listings are withdrawn, the live
/// offers it is party to void, its open threads end. Deals it agreed still settle.
pub fn suspend(s: &mut Scene, plan: &mut Plan, who: &Participant, reason: &str) -> Result<()> {
    operator_only(s, "suspends a participant")?;
    check_reason(reason)?;
    if who.suspension.is_some() {
        return Err(E::invalid_transition(format!(
            "participant {} is already suspended",
            who.id
        )));
    }
    let why = VoidReason::ParticipantSuspended;
    for o in &s.party_live_offers {
        plan.change(Change::SetOfferState {
            offer: o.id,
            state: OfferState::Void,
            reason: Some(why),
        });
        plan.event(
            None,
            Visibility::Parties(vec![o.buyer, o.seller]),
            EventBody::OfferVoided(OfferVoided {
                offer_id: o.id,
                thread_id: o.thread_id,
                reason: why,
            }),
        );
    }
    for t in &s.party_open_threads {
        plan.change(Change::UpdateThread {
            thread: t.id,
            status: ThreadStatus::Void,
            offers_made: t.offers_made,
            last_offer_by: t.last_offer_by,
        });
        plan.event(
            None,
            s.thread_visibility(t),
            EventBody::ThreadClosed(ThreadClosed {
                thread_id: t.id,
                status: ThreadStatus::Void,
                reason: why.as_str().to_string(),
            }),
        );
    }
    for l in s
        .party_listings
        .iter()
        .filter(|l| matches!(l.status, ListingStatus::Active | ListingStatus::Held))
    {
        plan.change(Change::SetListingStatus {
            listing: l.id,
            status: ListingStatus::Withdrawn,
        });
        let visibility = if l.status == ListingStatus::Held {
            Visibility::Parties(vec![l.owner])
        } else {
            Visibility::Public
        };
        plan.event(
            None,
            visibility,
            EventBody::ListingWithdrawn(ListingWithdrawn {
                listing_id: l.id,
                reason: Some(why),
            }),
        );
    }
    let suspension = Suspension {
        reason: reason.trim().to_string(),
        at: s.now,
    };
    plan.change(Change::SetSuspension {
        participant: who.id,
        suspension: Some(suspension.clone()),
    });
    plan.event(
        None,
        Visibility::Parties(vec![who.id]),
        EventBody::ParticipantSuspended(ParticipantSuspended {
            participant_id: who.id,
            reason: suspension.reason.clone(),
        }),
    );
    Ok(())
}

/// An operator lifts a suspension. What the suspension ended stays ended.
pub fn reinstate(s: &mut Scene, plan: &mut Plan, who: &Participant) -> Result<()> {
    operator_only(s, "reinstates a participant")?;
    if who.suspension.is_none() {
        return Err(E::invalid_transition(format!(
            "participant {} is not suspended",
            who.id
        )));
    }
    plan.change(Change::SetSuspension {
        participant: who.id,
        suspension: None,
    });
    plan.event(
        None,
        Visibility::Parties(vec![who.id]),
        EventBody::ParticipantReinstated(ParticipantOnly {
            participant_id: who.id,
        }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_match_whole_words_case_insensitively() {
        let terms = vec!["art".to_string(), "fake rolex".to_string()];
        assert_eq!(prohibited_term(&terms, "A party hat"), None);
        assert_eq!(prohibited_term(&terms, "Modern ART print"), Some("art"));
        assert_eq!(
            prohibited_term(&terms, "FAKE  Rolex, mint"),
            Some("fake rolex")
        );
        assert_eq!(prohibited_term(&terms, "fake watch, rolex style"), None);
    }
}
