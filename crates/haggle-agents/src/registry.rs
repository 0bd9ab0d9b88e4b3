//! Brains by config name (spec: agents.md, Brains): `rule:*` strategies, `adversary:*` testers,
//! and language models — `anthropic:<model>`, `openai:<model>@<base-url>` (function calling) and
//! `openai-json:<model>@<base-url>` (schema-constrained JSON, for small local models). A
//! [`BrainFactory`] makes any of them; [`brain_from_name`] the ones that need no model.

use crate::adversaries;
use crate::brain::Brain;
use crate::llm::anthropic::{self, Anthropic};
use crate::llm::limits::{Limited, ModelLimits};
use crate::llm::openai::{self, OpenAi, OutputMode};
use crate::llm::replay::{RecordedModel, Recording, ReplayWire};
use crate::llm::{CallLog, CallPolicy, ChatError, ChatModel, Price, PriceTable, is_loopback};
use crate::llm_brain::{LlmBrain, LlmSettings};
use crate::rules::RuleBrain;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
    "adversary:reckless-seller",
    "adversary:misdescriber",
    "adversary:gullible",
];

/// The language-model brains, by the form of their names.
pub const LLM_BRAINS: &[&str] = &[
    "anthropic:<model>",
    "openai:<model>@<base-url>",
    "openai-json:<model>@<base-url>",
];

/// Brains driven from outside the process: `external` (any program, over the market's HTTP API
/// or MCP) and `human` (a person at the web UI). A simulation makes them itself (it serves the
/// market and waits for their turns); this registry only knows their names.
pub const OUTSIDE_BRAINS: &[&str] = &["external", "human"];

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
        .chain(LLM_BRAINS)
        .chain(OUTSIDE_BRAINS)
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a brain name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrainSpec {
    /// A rule brain or an adversary (`rule:*`, `adversary:*`).
    Rule(String),
    /// A participant driven from outside ([`OUTSIDE_BRAINS`]).
    Outside(String),
    Anthropic {
        model: String,
        base_url: Option<String>,
    },
    OpenAi {
        model: String,
        base_url: Option<String>,
        mode: OutputMode,
    },
}

impl BrainSpec {
    pub fn parse(name: &str) -> Result<BrainSpec, UnknownBrain> {
        let name = name.trim();
        let unknown = || UnknownBrain {
            name: name.to_string(),
        };
        if RULE_BRAINS.contains(&name) || ADVERSARY_BRAINS.contains(&name) {
            return Ok(BrainSpec::Rule(name.to_string()));
        }
        if OUTSIDE_BRAINS.contains(&name) {
            return Ok(BrainSpec::Outside(name.to_string()));
        }
        let (provider, rest) = name.split_once(':').ok_or_else(unknown)?;
        let (model, base_url) = match rest.split_once('@') {
            Some((m, url)) if !url.trim().is_empty() => (m.trim(), Some(url.trim().to_string())),
            Some(_) => return Err(unknown()),
            None => (rest.trim(), None),
        };
        if model.is_empty() {
            return Err(unknown());
        }
        let model = model.to_string();
        match provider {
            "anthropic" => Ok(BrainSpec::Anthropic { model, base_url }),
            "openai" => Ok(BrainSpec::OpenAi {
                model,
                base_url,
                mode: OutputMode::Tools,
            }),
            "openai-json" => Ok(BrainSpec::OpenAi {
                model,
                base_url,
                mode: OutputMode::Json,
            }),
            _ => Err(unknown()),
        }
    }
}

/// A brain that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrainError {
    #[error(transparent)]
    Unknown(#[from] UnknownBrain),
    #[error("brain '{name}': {error}")]
    Model { name: String, error: ChatError },
    #[error(
        "brain '{name}' is driven from outside: only a simulation, which serves the market, makes it"
    )]
    Outside { name: String },
}

/// Keys and base URLs from the environment (read once, at the binary's edge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LlmEnv {
    pub anthropic_key: Option<String>,
    pub anthropic_base_url: Option<String>,
    pub openai_key: Option<String>,
    pub openai_base_url: Option<String>,
}

impl LlmEnv {
    /// `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`, `OPENAI_API_KEY`, `OPENAI_BASE_URL`.
    pub fn from_env() -> LlmEnv {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        LlmEnv {
            anthropic_key: var(anthropic::KEY_VAR),
            anthropic_base_url: var(anthropic::BASE_URL_VAR),
            openai_key: var(openai::KEY_VAR),
            openai_base_url: var(openai::BASE_URL_VAR),
        }
    }
}

/// A model client and its price (`None`: not in the price table).
pub type PricedModel = (Arc<dyn ChatModel>, Option<Price>);

/// Makes brains by name for one run: model clients are shared between agents of the same brain,
/// LLM brains share the run's call log and price table.
pub struct BrainFactory {
    env: LlmEnv,
    pub settings: LlmSettings,
    pub policy: CallPolicy,
    pub prices: PriceTable,
    /// An experiment's shared call slots and spend maximum (LLM brains take a permit per call).
    pub spend: Option<Arc<crate::spend::SpendGuard>>,
    /// Replaying a recorded run: LLM brains are answered from this recording, not a provider.
    pub replay: Option<Arc<Recording>>,
    /// Each model's own limits (calls at once, tokens a minute), over all agents of its brain.
    pub limits: ModelLimits,
    log: Arc<CallLog>,
    currency: String,
    models: Mutex<BTreeMap<String, PricedModel>>,
    wires: Mutex<BTreeMap<String, Arc<ReplayWire>>>,
}

impl BrainFactory {
    /// A factory for a market trading in `currency`, logging model calls to `log`.
    pub fn new(env: LlmEnv, log: Arc<CallLog>, currency: &str) -> BrainFactory {
        BrainFactory {
            env,
            settings: LlmSettings::default(),
            policy: CallPolicy::default(),
            prices: PriceTable::default(),
            spend: None,
            replay: None,
            limits: ModelLimits::default(),
            log,
            currency: currency.to_string(),
            models: Mutex::new(BTreeMap::new()),
            wires: Mutex::new(BTreeMap::new()),
        }
    }

    /// The run's call log (LLM calls, and the order in which agents took the market).
    pub fn log(&self) -> Arc<CallLog> {
        self.log.clone()
    }

    /// What a call of the brain `name` costs (`None`: a rule brain, or no price in the table).
    pub fn price_of(&self, name: &str) -> Option<Price> {
        BrainSpec::parse(name).ok().and_then(|s| self.price(&s))
    }

    /// What a call of `spec` costs: a model on this machine nothing, elsewhere the table's price.
    fn price(&self, spec: &BrainSpec) -> Option<Price> {
        let (model, base) = match spec {
            BrainSpec::Rule(_) | BrainSpec::Outside(_) => return None,
            BrainSpec::Anthropic { model, base_url } => (
                model,
                base_url
                    .clone()
                    .or_else(|| self.env.anthropic_base_url.clone())
                    .unwrap_or_else(|| anthropic::DEFAULT_BASE_URL.to_string()),
            ),
            BrainSpec::OpenAi {
                model, base_url, ..
            } => (
                model,
                base_url
                    .clone()
                    .or_else(|| self.env.openai_base_url.clone())
                    .unwrap_or_else(|| openai::DEFAULT_BASE_URL.to_string()),
            ),
        };
        if is_loopback(&base) {
            Some(Price {
                input: 0,
                output: 0,
                cache_read: 0,
                cache_write: 0,
            })
        } else {
            self.prices.price(model)
        }
    }

    /// The recorded model answering `agent`'s calls of the brain `name` (replay); `None` for
    /// rule brains. Agents of one brain share its wire state, as they shared its client.
    fn recorded(
        &self,
        recording: &Arc<Recording>,
        name: &str,
        agent: &str,
    ) -> Result<Option<PricedModel>, BrainError> {
        let spec = BrainSpec::parse(name)?;
        let key = name.trim().to_string();
        let made = || match &spec {
            BrainSpec::Rule(_) | BrainSpec::Outside(_) => None,
            BrainSpec::Anthropic { model, .. } => Some(ReplayWire::anthropic(model)),
            BrainSpec::OpenAi { model, mode, .. } => Some(ReplayWire::openai(model, *mode)),
        };
        let wire = match self.wires.lock() {
            Ok(mut w) => match w.get(&key) {
                Some(x) => x.clone(),
                None => {
                    let Some(x) = made() else { return Ok(None) };
                    let x = Arc::new(x);
                    w.insert(key.clone(), x.clone());
                    x
                }
            },
            Err(_) => match made() {
                Some(x) => Arc::new(x),
                None => return Ok(None),
            },
        };
        let model = RecordedModel::new(recording.clone(), agent, &key, wire);
        Ok(Some((Arc::new(model), self.price(&spec))))
    }

    /// The model client for an LLM brain name (made once), with its price; `None` for rule brains.
    pub fn model(&self, name: &str) -> Result<Option<PricedModel>, BrainError> {
        let spec = BrainSpec::parse(name)?;
        let key = name.trim().to_string();
        if let Some(m) = self.models.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(Some(m));
        }
        let model_error = |error| BrainError::Model {
            name: key.clone(),
            error,
        };
        let price = self.price(&spec);
        let made: PricedModel = match spec {
            BrainSpec::Rule(_) | BrainSpec::Outside(_) => return Ok(None),
            BrainSpec::Anthropic { model, base_url } => {
                let base = base_url.or_else(|| self.env.anthropic_base_url.clone());
                let m = Anthropic::new(
                    &model,
                    self.env.anthropic_key.clone(),
                    base,
                    self.policy.clone(),
                )
                .map_err(model_error)?;
                (Arc::new(m), price)
            }
            BrainSpec::OpenAi {
                model,
                base_url,
                mode,
            } => {
                let base = base_url
                    .or_else(|| self.env.openai_base_url.clone())
                    .unwrap_or_else(|| openai::DEFAULT_BASE_URL.to_string());
                let m = OpenAi::new(
                    &model,
                    self.env.openai_key.clone(),
                    Some(base),
                    mode,
                    self.policy.clone(),
                )
                .map_err(model_error)?;
                (Arc::new(m), price)
            }
        };
        let made: PricedModel = if self.limits.is_none() {
            made
        } else {
            (Arc::new(Limited::new(made.0, self.limits)), made.1)
        };
        if let Ok(mut m) = self.models.lock() {
            m.insert(key, made.clone());
        }
        Ok(Some(made))
    }

    /// Whether `name` can be made (known, and its key is set unless replaying): checked before a
    /// run starts.
    pub fn check(&self, name: &str) -> Result<(), BrainError> {
        if self.replay.is_some() {
            return BrainSpec::parse(name).map(|_| ()).map_err(Into::into);
        }
        self.model(name).map(|_| ())
    }

    /// The brain `name` for the agent `agent` (its label in the call log), seeded with `seed`.
    pub fn make(&self, name: &str, seed: u64, agent: &str) -> Result<Box<dyn Brain>, BrainError> {
        if let Ok(BrainSpec::Outside(name)) = BrainSpec::parse(name) {
            return Err(BrainError::Outside { name });
        }
        let model = match &self.replay {
            Some(recording) => self.recorded(recording, name, agent)?,
            None => self.model(name)?,
        };
        let Some((model, price)) = model else {
            return Ok(brain_from_name(name, seed)?);
        };
        let brain = LlmBrain::new(
            name.trim(),
            agent,
            model,
            self.settings.clone(),
            price,
            self.log.clone(),
            &self.currency,
            Some(seed),
        );
        // A replay admits calls as the run's guard did; a live run asks the experiment's guard.
        Ok(Box::new(match &self.replay {
            Some(recording) => brain.with_recorded_refusals(recording.clone()),
            None => brain.with_spend_guard(self.spend.clone()),
        }))
    }
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
        "adversary:reckless-seller" => return Ok(Box::new(adversaries::reckless_seller(seed))),
        "adversary:misdescriber" => adversaries::misdescriber(seed),
        "adversary:gullible" => return Ok(Box::new(adversaries::gullible(seed))),
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

    #[test]
    fn llm_brain_names_say_provider_model_and_server() {
        assert_eq!(
            BrainSpec::parse("anthropic:claude-sonnet-4-5").unwrap(),
            BrainSpec::Anthropic {
                model: "claude-sonnet-4-5".into(),
                base_url: None
            }
        );
        assert_eq!(
            BrainSpec::parse("openai:gemma-3-270m@http://127.0.0.1:8088/v1").unwrap(),
            BrainSpec::OpenAi {
                model: "gemma-3-270m".into(),
                base_url: Some("http://127.0.0.1:8088/v1".into()),
                mode: OutputMode::Tools
            }
        );
        assert_eq!(
            BrainSpec::parse(" openai-json:gemma@http://localhost:1/v1 ").unwrap(),
            BrainSpec::OpenAi {
                model: "gemma".into(),
                base_url: Some("http://localhost:1/v1".into()),
                mode: OutputMode::Json
            }
        );
        assert_eq!(
            BrainSpec::parse("rule:micro").unwrap(),
            BrainSpec::Rule("rule:micro".into())
        );
        for bad in [
            "openai:",
            "openai:@http://x",
            "anthropic:x@",
            "gemini:pro",
            "rule:nope",
        ] {
            assert!(BrainSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_key_is_reported_before_any_brain_is_made() {
        let f = BrainFactory::new(LlmEnv::default(), Arc::new(CallLog::discard()), "USD");
        let e = f.check("anthropic:claude-haiku-4-5").unwrap_err();
        assert!(
            e.to_string().contains("ANTHROPIC_API_KEY is not set"),
            "{e}"
        );
        let e = f.check("openai:gpt-4o-mini").unwrap_err();
        assert!(e.to_string().contains("OPENAI_API_KEY is not set"), "{e}");
        assert!(f.check("openai-json:gemma@http://127.0.0.1:9/v1").is_ok());
        assert!(f.check("rule:linear").is_ok());
        let with_keys = BrainFactory::new(
            LlmEnv {
                anthropic_key: Some("k".into()),
                ..LlmEnv::default()
            },
            Arc::new(CallLog::discard()),
            "USD",
        );
        let b = with_keys
            .make("anthropic:claude-haiku-4-5", 1, "Ada")
            .unwrap();
        assert_eq!(b.name(), "anthropic:claude-haiku-4-5");
        assert!(b.llm_stats().is_some());
        assert!(
            with_keys
                .make("rule:linear", 1, "Bo")
                .unwrap()
                .llm_stats()
                .is_none()
        );
    }
}
