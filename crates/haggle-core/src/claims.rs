//! What a seller claims about an item (spec trust.md, Claims and inspection), what the buyer found
//! at inspection, and the grounds of a dispute. Pure data and the one comparison that decides
//! which claims an inspection contradicts.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// At most this many `included` parts and free claims each, so a listing stays readable.
pub const MAX_CLAIM_ENTRIES: usize = 20;
/// The names of the structured claims; a free claim may not reuse them.
pub const CONDITION: &str = "condition";
pub const WORKING: &str = "working";
pub const INCLUDED: &str = "included";

macro_rules! claim_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(self) -> &'static str { match self { $($name::$variant => $s),* } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some($name::$variant),)* _ => None } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

claim_enum!(
    /// An item's condition, best first (the order matters: a worse true condition contradicts).
    Condition { New => "new", LikeNew => "like_new", Good => "good", Fair => "fair", ForParts => "for_parts" }
);
claim_enum!(
    /// Whether the item works.
    Working { Yes => "yes", No => "no", Unknown => "unknown" }
);
claim_enum!(
    /// Why a buyer disputes a deal: the item is not as its claims said, it never arrived, or else.
    DisputeGrounds { NotAsDescribed => "not_as_described", NotReceived => "not_received", Other => "other" }
);
claim_enum!(
    /// Who inspected: the simulation (the item's true state) or the buyer's principal.
    InspectionSource { Simulation => "simulation", Principal => "principal" }
);

/// A listing's claims, each the seller's claim (or, as a scenario's `true_state`, the ground truth).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    // Inline: agents' tool schemas are self-contained (no references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub condition: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub working: Option<Working>,
    /// Parts that come with the item ("charger", "box").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included: Vec<String>,
    /// Free `key: value` claims ("battery": "90%").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl Claims {
    pub fn is_empty(&self) -> bool {
        self.condition.is_none()
            && self.working.is_none()
            && self.included.is_empty()
            && self.details.is_empty()
    }

    /// The names of the claims made: `condition`, `working`, `included` and each free key.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.condition.is_some() {
            out.push(CONDITION.to_string());
        }
        if self.working.is_some() {
            out.push(WORKING.to_string());
        }
        if !self.included.is_empty() {
            out.push(INCLUDED.to_string());
        }
        out.extend(self.details.keys().cloned());
        out
    }

    /// Checks sizes and names (the text itself is checked like any listing text by the caller).
    pub fn validate(&self, field: &str) -> crate::error::Result<()> {
        use crate::error::DomainError as E;
        if self.included.len() > MAX_CLAIM_ENTRIES || self.details.len() > MAX_CLAIM_ENTRIES {
            return Err(E::invalid_request(format!(
                "{field}: at most {MAX_CLAIM_ENTRIES} included parts and {MAX_CLAIM_ENTRIES} free claims"
            )));
        }
        for k in self.details.keys() {
            if [CONDITION, WORKING, INCLUDED].contains(&k.trim()) {
                return Err(E::invalid_request(format!(
                    "{field}.details: `{k}` is a structured claim; set it as {field}.{k}"
                )));
            }
        }
        Ok(())
    }

    /// The claims of `self` (the seller's) that `found` contradicts. A claim the inspection says
    /// nothing about is not contradicted; a seller who understated (claimed `fair`, found `good`)
    /// is not either: only a buyer who got less than claimed has a grievance.
    pub fn contradicted_by(&self, found: &Claims) -> Vec<String> {
        let mut out = Vec::new();
        if let (Some(claimed), Some(real)) = (self.condition, found.condition)
            && real > claimed
        {
            out.push(CONDITION.to_string());
        }
        if let (Some(Working::Yes), Some(real)) = (self.working, found.working)
            && real != Working::Yes
        {
            out.push(WORKING.to_string());
        }
        if !self.included.is_empty()
            && self
                .included
                .iter()
                .any(|part| !found.included.iter().any(|f| f.eq_ignore_ascii_case(part)))
        {
            out.push(INCLUDED.to_string());
        }
        for (k, v) in &self.details {
            if found
                .details
                .get(k)
                .is_some_and(|real| !real.eq_ignore_ascii_case(v))
            {
                out.push(k.clone());
            }
        }
        out
    }
}

/// What the buyer found at handover: the item's true state (simulation) or its principal's answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    pub source: InspectionSource,
    /// The item as found (the true state in a simulation; absent when a principal only answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<Claims>,
    /// The seller's claims the inspection contradicts; empty: the item is as described.
    pub mismatched: Vec<String>,
    pub at: crate::model::Timestamp,
}

impl Inspection {
    pub fn matched(&self) -> bool {
        self.mismatched.is_empty()
    }
}

/// A dispute's grounds and, for `not_as_described`, the claims it names.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    pub grounds: DisputeGrounds,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(condition: Condition, working: Working, included: &[&str]) -> Claims {
        Claims {
            condition: Some(condition),
            working: Some(working),
            included: included.iter().map(|s| s.to_string()).collect(),
            details: BTreeMap::new(),
        }
    }

    #[test]
    fn a_worse_true_condition_contradicts_a_better_one_does_not() {
        let said = claims(Condition::LikeNew, Working::Unknown, &[]);
        assert_eq!(
            said.contradicted_by(&claims(Condition::Fair, Working::No, &[])),
            vec!["condition"]
        );
        assert!(
            said.contradicted_by(&claims(Condition::New, Working::No, &[]))
                .is_empty()
        );
    }

    #[test]
    fn working_yes_is_contradicted_by_no_or_unknown_and_unknown_by_nothing() {
        let yes = claims(Condition::Good, Working::Yes, &[]);
        assert_eq!(
            yes.contradicted_by(&claims(Condition::Good, Working::No, &[])),
            vec!["working"]
        );
        let unknown = claims(Condition::Good, Working::Unknown, &[]);
        assert!(
            unknown
                .contradicted_by(&claims(Condition::Good, Working::No, &[]))
                .is_empty()
        );
    }

    #[test]
    fn a_missing_part_or_a_different_free_claim_contradicts() {
        let mut said = claims(Condition::Good, Working::Yes, &["charger", "box"]);
        said.details.insert("battery".into(), "90%".into());
        let mut found = claims(Condition::Good, Working::Yes, &["Charger"]);
        found.details.insert("battery".into(), "60%".into());
        assert_eq!(said.contradicted_by(&found), vec!["included", "battery"]);
    }

    #[test]
    fn claims_the_inspection_says_nothing_about_are_not_contradicted() {
        let said = claims(Condition::New, Working::Yes, &[]);
        assert!(said.contradicted_by(&Claims::default()).is_empty());
    }

    #[test]
    fn a_free_claim_may_not_reuse_a_structured_name() {
        let mut c = Claims::default();
        c.details.insert("condition".into(), "mint".into());
        assert!(c.validate("claims").is_err());
    }
}
