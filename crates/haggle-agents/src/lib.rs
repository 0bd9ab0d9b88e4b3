//! Haggle's agents: what a principal wants (the [`profile`]), how its agent decides (the
//! [`brain`]s), and the runtime that turns decisions into market actions through the market
//! contract (`haggle_api::MarketClient`) — never through anything the market keeps private.

pub mod adversaries;
pub mod brain;
pub mod leaks;
pub mod llm;
pub mod llm_brain;
pub mod profile;
pub mod prompt;
pub mod registry;
pub mod rules;
pub mod runtime;
pub mod sequencer;
pub mod spend;
pub mod tools;
