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
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "invalid config file {}: {}",
            path.display(),
            toml_error(&text, &e)
        )
    })
}

/// A TOML error on one line: where it is and what is wrong (its own message draws the line).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
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
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "invalid rules in {}: {}",
                path.display(),
                toml_error(&text, &e)
            )
        })?
    };
    rules
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid rules in {}: {}", path.display(), e.message))?;
    Ok(rules)
}
