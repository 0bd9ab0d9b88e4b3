//! Settings of LLM brains shared by `demo`, `agent run` and `interview`: limits, sampling,
//! timeouts and retries, the price table, and whether leaks are withheld. Keys and base URLs come
//! from the environment (`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`, `ANTHROPIC_BASE_URL`,
//! `OPENAI_BASE_URL`); every brain named is checked before anything runs.

use anyhow::Context;
use haggle_agents::llm::limits::ModelLimits;
use haggle_agents::llm::{CallLog, CallPolicy, PriceTable};
use haggle_agents::llm_brain::{LlmSettings, LlmStats};
use haggle_agents::registry::{BrainFactory, BrainSpec, LlmEnv};
use haggle_agents::spend::SpendGuard;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct LlmArgs {
    /// Output tokens per model call.
    #[arg(long, default_value_t = 1024)]
    pub llm_max_tokens: u32,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.7)]
    pub llm_temperature: f32,
    /// Tool calls per agent turn.
    #[arg(long, default_value_t = 8)]
    pub llm_tool_calls: u32,
    /// Malformed replies shown back to the model per turn before the turn ends.
    #[arg(long, default_value_t = 2)]
    pub llm_retries: u32,
    /// Tokens (input, output, cached) per agent over the run.
    #[arg(long, default_value_t = 2_000_000)]
    pub llm_token_budget: u64,
    /// Size of a turn's observation, in tokens.
    #[arg(long, default_value_t = 3_000)]
    pub llm_observation_tokens: usize,
    /// How OpenAI-compatible requests name the output limit (default: by the model, switching to
    /// max_completion_tokens once a server refuses max_tokens).
    #[arg(long, value_parser = ["max_tokens", "max_completion_tokens"])]
    pub llm_tokens_param: Option<String>,
    /// Whether OpenAI-compatible requests send strict schemas (function `strict: true`, JSON
    /// mode's strict `json_schema` first); default: for OpenAI's own API only.
    #[arg(long, value_parser = ["on", "off"])]
    pub llm_strict_schemas: Option<String>,
    /// Anthropic extended thinking: off, adaptive, or a budget of thinking tokens (1024 to
    /// 128000) added to each call's output limit; temperature is then left out.
    #[arg(long, default_value = "off", value_parser = haggle_agents::llm::Thinking::parse)]
    pub llm_thinking: haggle_agents::llm::Thinking,
    /// Per-attempt timeout of a model call, in seconds.
    #[arg(long, default_value_t = 120)]
    pub llm_timeout_s: u64,
    /// Attempts per model call (429, 5xx, overloaded and timeouts are retried).
    #[arg(long, default_value_t = 4)]
    pub llm_attempts: u32,
    /// Only these tools of the catalogue, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub llm_tools: Vec<String>,
    /// A TOML price table (µUSD per million tokens) overriding the built-in one.
    #[arg(long)]
    pub prices: Option<std::path::PathBuf>,
    /// Withhold outgoing texts that contain a private number (they are always counted).
    #[arg(long)]
    pub withhold_leaks: bool,
    /// Model calls in flight at once in one market: the turns of LLM agents run concurrently,
    /// each holding the market only while it reads and acts (1 = one call after another).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub llm_concurrency: u32,
    /// A provider's limit: calls at once to one model (over all its agents).
    #[arg(long)]
    pub llm_model_concurrency: Option<usize>,
    /// A provider's limit: tokens a minute to one model (input and output, estimated before a
    /// call and corrected by its usage).
    #[arg(long)]
    pub llm_tokens_per_minute: Option<u64>,
}

impl LlmArgs {
    /// A brain factory for a market in `currency`, logging model calls to `log`.
    pub fn factory(&self, log: Arc<CallLog>, currency: &str) -> anyhow::Result<BrainFactory> {
        let mut f = BrainFactory::new(LlmEnv::from_env(), log, currency);
        f.settings = LlmSettings {
            max_tokens: self.llm_max_tokens,
            temperature: Some(self.llm_temperature),
            max_tool_calls_per_turn: self.llm_tool_calls.max(1),
            max_malformed_retries: self.llm_retries,
            token_budget: self.llm_token_budget,
            observation_tokens: self.llm_observation_tokens.max(200),
            tools: None,
        };
        if !self.llm_tools.is_empty() {
            for t in &self.llm_tools {
                if haggle_agents::tools::find(t).is_none() {
                    let known: Vec<&str> = haggle_agents::tools::catalogue()
                        .iter()
                        .map(|t| t.name)
                        .collect();
                    anyhow::bail!(
                        "--llm-tools: unknown tool '{t}' (tools: {})",
                        known.join(", ")
                    );
                }
            }
            f.settings.tools = Some(self.llm_tools.clone());
        }
        f.spend = Some(Arc::new(SpendGuard::new(
            self.llm_concurrency as usize,
            None,
            0,
        )));
        f.limits = ModelLimits {
            concurrency: self.llm_model_concurrency.map(|n| n.max(1)),
            tokens_per_minute: self.llm_tokens_per_minute.map(|n| n.max(1)),
        };
        f.policy = CallPolicy {
            timeout: Duration::from_secs(self.llm_timeout_s.max(1)),
            max_attempts: self.llm_attempts.max(1),
            completion_tokens: self
                .llm_tokens_param
                .as_deref()
                .map(|p| p == "max_completion_tokens"),
            strict_schemas: self.llm_strict_schemas.as_deref().map(|s| s == "on"),
            thinking: self.llm_thinking,
            ..CallPolicy::default()
        };
        f.prices = price_table(self.prices.as_deref())?;
        Ok(f)
    }
}

/// The price table in use: the built-in list prices, and `file` over them.
pub fn price_table(file: Option<&std::path::Path>) -> anyhow::Result<PriceTable> {
    let Some(path) = file else {
        return Ok(PriceTable::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read price table {}", path.display()))?;
    PriceTable::default()
        .with_file(&text, &path.display().to_string())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// `haggle prices`: the table's source and date, then each model's prices in USD per million
/// tokens.
pub fn price_listing(t: &PriceTable) -> String {
    use std::fmt::Write as _;
    let usd = |micro: i64| format!("{}.{:03}", micro / 1_000_000, (micro % 1_000_000) / 1_000);
    let mut out = format!(
        "price table: {}
USD per million tokens
",
        t.source
    );
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>11} {:>12}",
        "model (prefix)", "input", "output", "cache read", "cache write"
    );
    for (model, p) in &t.models {
        let _ = writeln!(
            out,
            "{model:<24} {:>8} {:>8} {:>11} {:>12}",
            usd(p.input),
            usd(p.output),
            usd(p.cache_read),
            usd(p.cache_write)
        );
    }
    out.push_str(
        "A model matches its longest listed prefix; one on a local (loopback) server costs \
         nothing; one not listed has an unknown cost (a run with a spend maximum refuses it).\n",
    );
    out
}

/// Whether any of `brains` is a language model.
pub fn any_llm(brains: &[String]) -> bool {
    brains.iter().any(|b| {
        !matches!(
            BrainSpec::parse(b),
            Ok(BrainSpec::Rule(_) | BrainSpec::Outside(_)) | Err(_)
        )
    })
}

/// The call log of a run: `llm_calls.jsonl` in `dir` when a model takes part, else nowhere.
pub fn call_log(dir: &Path, brains: &[String]) -> anyhow::Result<Arc<CallLog>> {
    // Participants driven from outside record their turns there too (for the replay).
    let outside = brains
        .iter()
        .any(|b| matches!(BrainSpec::parse(b), Ok(BrainSpec::Outside(_))));
    if !any_llm(brains) && !outside {
        return Ok(Arc::new(CallLog::discard()));
    }
    let path = dir.join("llm_calls.jsonl");
    Ok(Arc::new(CallLog::create(&path).with_context(|| {
        format!("cannot create {}", path.display())
    })?))
}

/// µUSD as dollars with six decimals.
pub fn usd(micro: i64) -> String {
    format!("${}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

/// One line about an LLM agent's run.
pub fn describe(s: &LlmStats) -> String {
    format!(
        "{} turns, {} calls ({} failed), tokens in {} / out {} / cache read {} / cache write {}, cost {}{}, malformed replies {} in {} turns ({} turns ended by them), tool calls {} ({} refused)",
        s.turns,
        s.calls,
        s.failed_calls,
        s.usage.input_tokens,
        s.usage.output_tokens,
        s.usage.cache_read_tokens,
        s.usage.cache_write_tokens,
        usd(s.cost_micro_usd),
        if s.calls_without_price > 0 {
            format!(" (+{} calls of unknown price)", s.calls_without_price)
        } else {
            String::new()
        },
        s.malformed_outputs,
        s.malformed_turns,
        s.turns_ended_malformed,
        s.tool_calls,
        s.tool_errors,
    )
}
