//! Brains by config name (spec: agents.md, Brains): `rule:*` strategies and `adversary:*`
//! testers. LLM and human brains are made elsewhere.

use crate::adversaries;
use crate::brain::Brain;
use crate::rules::RuleBrain;

/// The rule-based brains, by config name.
pub const RULE_BRAINS: &[&str] = &[
    "rule:boulware",
    "rule:linear",
    "rule:conceder",
    "rule:tit-for-tat",
    "rule:tit-for-tat-pure",
    "rule:micro",
    "rule:split-difference",
    "rule:taker",
];

/// The adversaries, by config name.
pub const ADVERSARY_BRAINS: &[&str] = &[
    "adversary:lowballer",
    "adversary:never-ships",
    "adversary:injector",
    "adversary:spammer",
];

/// A brain name this crate does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown brain '{name}' (known: {})", known())]
pub struct UnknownBrain {
    pub name: String,
}

fn known() -> String {
    RULE_BRAINS
        .iter()
        .chain(ADVERSARY_BRAINS)
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes the brain named `name`, seeded with `seed` (same seed → same decisions).
pub fn brain_from_name(name: &str, seed: u64) -> Result<Box<dyn Brain>, UnknownBrain> {
    let brain: RuleBrain = match name.trim() {
        "rule:boulware" => RuleBrain::boulware(seed),
        "rule:linear" => RuleBrain::linear(seed),
        "rule:conceder" => RuleBrain::conceder(seed),
        "rule:tit-for-tat" => RuleBrain::tit_for_tat(seed),
        "rule:tit-for-tat-pure" => RuleBrain::tit_for_tat_pure(seed),
        "rule:micro" => RuleBrain::micro(seed),
        "rule:split-difference" => RuleBrain::split_difference(seed),
        "rule:taker" => RuleBrain::taker(seed),
        "adversary:lowballer" => adversaries::lowballer(seed),
        "adversary:never-ships" => adversaries::never_ships(seed),
        "adversary:injector" => adversaries::injector(seed),
        "adversary:spammer" => adversaries::spammer(seed),
        _ => {
            return Err(UnknownBrain {
                name: name.to_string(),
            });
        }
    };
    Ok(Box::new(brain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_makes_a_brain_of_that_name() {
        for name in RULE_BRAINS.iter().chain(ADVERSARY_BRAINS) {
            let b = brain_from_name(name, 7).unwrap();
            assert_eq!(b.name(), *name);
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        let e = brain_from_name("rule:psychic", 0).err().unwrap();
        assert_eq!(e.name, "rule:psychic");
        let text = e.to_string();
        assert!(
            text.contains("rule:psychic")
                && text.contains("rule:boulware")
                && text.contains("adversary:spammer")
        );
        assert!(brain_from_name("anthropic:claude", 0).is_err());
    }
}
