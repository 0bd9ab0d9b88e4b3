//! `--estimate`: what a run with LLM brains will take, printed before anything runs and without
//! calling a model — calls, tokens, cost (from the price table) and wall time at the chosen
//! concurrency and a stated latency per call. An upper bound: every LLM agent is counted on
//! every round (quiet turns are skipped in practice) and no prompt caching is assumed.

use crate::llm_args::usd;
use haggle_agents::llm::Usage;
use haggle_agents::registry::BrainFactory;
use haggle_lab::scenario::Scenario;

/// Output tokens assumed per call (a few tool calls, or a short note).
const OUTPUT_TOKENS_PER_CALL: u64 = 150;

/// What the estimate assumes beyond the run's own settings.
#[derive(clap::Args, Clone, Debug)]
pub struct EstimateArgs {
    /// Print the expected calls, tokens, cost and wall time of the LLM brains, then exit
    /// without calling a model.
    #[arg(long)]
    pub estimate: bool,
    /// Seconds a model call takes, for the estimate.
    #[arg(long, default_value_t = 5.0)]
    pub estimate_latency_s: f64,
    /// Model calls per agent turn, for the estimate (a turn acts, then ends with a note).
    #[arg(long, default_value_t = 3)]
    pub estimate_calls_per_turn: u64,
}

/// Prints the estimate for `markets`, each the brain of every participant of the scenario (in
/// its order); `concurrency` calls at once over all of them.
pub fn print(
    a: &EstimateArgs,
    scenario: &Scenario,
    markets: &[Vec<String>],
    factory: &BrainFactory,
    rounds: u64,
    concurrency: usize,
) {
    let tools: usize = haggle_agents::tools::catalogue()
        .iter()
        .filter(|t| {
            factory
                .settings
                .tools
                .as_ref()
                .is_none_or(|only| only.iter().any(|n| n == t.name))
        })
        .map(|t| t.name.len() + t.description.len() + t.model_input_schema().to_string().len())
        .sum();
    let mut by_brain: std::collections::BTreeMap<&str, (u64, Usage)> = Default::default();
    let mut agents = 0u64;
    for (p, brain) in markets.iter().flat_map(|m| scenario.profiles.iter().zip(m)) {
        if !crate::llm_args::any_llm(std::slice::from_ref(brain)) {
            continue;
        }
        agents += 1;
        let brain = brain.as_str();
        let system = haggle_agents::prompt::render_system_prompt(p, &scenario.currency).len();
        let input = ((system + tools) / 4) as u64 + factory.settings.observation_tokens as u64;
        let calls = rounds * a.estimate_calls_per_turn.max(1);
        let e = by_brain.entry(brain).or_default();
        e.0 += calls;
        e.1.input_tokens += calls * input;
        e.1.output_tokens += calls * OUTPUT_TOKENS_PER_CALL;
    }
    let in_markets = match markets.len() {
        1 => String::new(),
        n => format!(" in {n} markets"),
    };
    println!(
        "estimate (no model was called): {agents} LLM agents{in_markets}, at most {rounds} rounds, {} calls a turn, {} s a call, {concurrency} calls at once",
        a.estimate_calls_per_turn, a.estimate_latency_s
    );
    let mut calls_all = 0;
    for (brain, (calls, usage)) in &by_brain {
        calls_all += calls;
        let cost = match factory.price_of(brain) {
            Some(p) => usd(p.cost(usage)),
            None => "unknown (no price for this model in the table)".into(),
        };
        println!(
            "{brain}: {calls} calls, {} input tokens, {} output tokens, cost {cost}",
            usage.input_tokens, usage.output_tokens
        );
    }
    let parallel = concurrency.max(1).min(agents.max(1) as usize) as f64;
    // Turns of one agent run one after another: a round lasts at least one turn's calls.
    let floor = rounds as f64 * a.estimate_calls_per_turn as f64 * a.estimate_latency_s;
    let wall = (calls_all as f64 * a.estimate_latency_s / parallel).max(floor);
    let serial = calls_all as f64 * a.estimate_latency_s;
    println!(
        "wall time: about {} at {concurrency} calls at once (one call after another: {})",
        duration(wall),
        duration(serial)
    );
}

fn duration(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}
