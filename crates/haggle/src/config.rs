//! Where settings come from: flags, then environment (clap), then an optional TOML file, then
//! defaults.

use anyhow::Context;
use haggle_core::model::MarketRules;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub rate_limit: Option<u32>,
}

pub const DEFAULT_DATABASE: &str = "sqlite://haggle.db";

/// Reads the config file named, or `./haggle.toml` when it exists.
pub fn load(path: Option<&Path>) -> anyhow::Result<File> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None if Path::new("haggle.toml").exists() => "haggle.toml".into(),
        None => return Ok(File::default()),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

pub fn database_url(cfg: &File, flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| cfg.database.clone())
        .unwrap_or_else(|| DEFAULT_DATABASE.into())
}

pub fn read_rules(path: &Path) -> anyhow::Result<MarketRules> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read rules file {}", path.display()))?;
    let rules: MarketRules = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text)
            .with_context(|| format!("invalid rules in {}", path.display()))?
    } else {
        toml::from_str(&text).with_context(|| format!("invalid rules in {}", path.display()))?
    };
    rules
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid rules in {}: {}", path.display(), e.message))?;
    Ok(rules)
}
