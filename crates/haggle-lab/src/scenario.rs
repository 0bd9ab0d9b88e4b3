//! Scenarios: the participants' profiles plus the ground truth the agents never see (spec:
//! experiments.md, Scenario). The ground truth lives in the profiles themselves: each item's
//! `floor_price` is its seller's reservation price, and each want's `max_price` is its buyer's
//! valuation of *any* item whose `item_type` equals the want's.
//!
//! A scenario is read from and written to TOML or JSON (the whole [`Scenario`], profiles
//! included) and read from a CSV form meant for hand-written scenarios (see [CSV form](#csv-form)).
//! [`Scenario::from_path`] picks the format by the file's extension. Every error names the file,
//! the line when there is one, and the field or column:
//! `scenario.csv line 7, column price: not an integer (got '12.5')`. Every profile is validated
//! with [`Profile::validate`]; its error is prefixed with the participant
//! (`participant 'Ada', sell[0].floor_price: ...`).
//!
//! # CSV form
//!
//! One row per item for sale, per want, or per item type already owned. The first non-comment
//! row is the header; columns are matched by name (any order, case-insensitive). Only
//! `participant`, `kind` and `item_type` are required columns.
//!
//! | column | `sell` row | `want` row | `owns` row |
//! |---|---|---|---|
//! | `participant` | seller's name | buyer's name | owner's name |
//! | `budget` | the participant's budget (minor units); may be blank on all but one of its rows | same | same |
//! | `kind` | `sell` | `want` | `owns` |
//! | `id` | item id (blank: `<participant>-item-<n>`) | want id (blank: `<participant>-want-<n>`) | — |
//! | `item_type` | kind of thing, e.g. `road bike` | the kind of thing wanted | the kind owned |
//! | `title` | listing title (blank: the item type) | used as description when `description` is blank | — |
//! | `description` | listing description | want description | — |
//! | `category` | category (required) | category (required) | — |
//! | `condition` | `new`, `like new`, `good`, ... | — | — |
//! | `price` | asking price (minor units) | — (put the maximum in `limit`) | — |
//! | `limit` | floor price: the lowest acceptable (private) | maximum price = valuation (private) | — |
//! | `quantity` | — | how many (default 1) | — |
//! | `priority` | — | 1 = most wanted (default 1) | — |
//! | `keywords` | — | search words, separated by `;` | — |
//!
//! Money is integer minor units (cents): `1250` is $12.50. A cell marked — must be blank.
//! Fields may be quoted (`"Bike, red"`, `""` for a quote). Blank lines are skipped; lines starting
//! with `#` are comments, except the directives `# name: ...`, `# seed: ...`, `# currency: ...`,
//! `# budget_default: ...` and `# truncate_long_text: true`, which set the scenario's fields (the name defaults to the file
//! name, the currency to USD, the default budget — used for participants without a budget — to 0).
//! A participant's profile keeps the order of its rows; participants keep the order in which they
//! first appear. The CSV form has no style, autonomy or item attributes: [`Scenario::to_csv`]
//! drops them (use TOML or JSON to keep everything).

use haggle_agents::profile::{Profile, SellItem, Want};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// Upper bound on any price or budget (the market's `MAX_AMOUNT`).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// Participants' profiles plus ground truth (in the profiles: floors and valuations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// The seed it was generated from (0 for a hand-written scenario).
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Budget (minor units) of participants whose row does not give one (CSV form).
    #[serde(default)]
    pub budget_default: i64,
    /// Reference ("blue book") price per item type in minor units, when known: the generator
    /// fills it; reports plot prices against it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reference_prices: BTreeMap<String, i64>,
    /// Cut titles and descriptions longer than the market takes (with a warning each) instead
    /// of refusing the scenario. Real ads run long; by default a long one is an error naming it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncate_long_text: bool,
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// Repeated markets (an experiment's `sessions = K`): the lists of the sessions after the
    /// first, in order; `profiles` above are the first session's. A session's profiles name
    /// participants of the scenario (a participant it leaves out has nothing to sell or want in
    /// that session) and give their new items, wants and budget. Without them, every session
    /// repeats `profiles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionLists>,
    /// What loading cut (`truncate_long_text`), one line per field, for the caller to print.
    #[serde(skip)]
    pub truncated: Vec<String>,
}

fn default_currency() -> String {
    "USD".into()
}

/// One later session's lists (see [`Scenario::sessions`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLists {
    #[serde(default)]
    pub profiles: Vec<Profile>,
}

/// The most sessions a repeated market runs (a bound, like every count).
pub const MAX_SESSIONS: u32 = 100;

/// A profile's item and want ids with the prefix of session `k` (`s2-item-01-3`).
fn session_ids(mut p: Profile, k: u32) -> Profile {
    for i in &mut p.sell {
        i.item_id = format!("s{k}-{}", i.item_id);
    }
    for w in &mut p.want {
        w.want_id = format!("s{k}-{}", w.want_id);
    }
    p
}

/// A scenario file that cannot be used: the file, the line (when known), the field or column,
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub file: String,
    pub line: Option<usize>,
    /// A field path (`profiles[2].sell[0].floor_price`), a CSV column (`column price`), or a
    /// participant-prefixed profile field (`participant 'Ada', want[1].max_price`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
            if !self.field.is_empty() {
                write!(f, ", {}", self.field)?;
            }
        } else if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

fn serr(
    file: &str,
    line: Option<usize>,
    field: impl Into<String>,
    message: impl Into<String>,
) -> ScenarioError {
    ScenarioError {
        file: file.into(),
        line,
        field: field.into(),
        message: message.into(),
    }
}

/// The scenario file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
    Csv,
}

impl Format {
    /// By extension: `.toml`, `.json`, `.csv` (case-insensitive).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// A problem found by [`Scenario::validate`], located within the scenario rather than a file.
struct Problem {
    /// Index of the profile concerned, if any.
    profile: Option<usize>,
    /// Field path relative to that profile (`sell[0].floor_price`) or to the scenario.
    field: String,
    message: String,
    /// The participant prefix (`participant 'Ada'`), when the problem is inside a profile.
    prefix: Option<String>,
}

impl Problem {
    fn display_field(&self) -> String {
        match &self.prefix {
            Some(p) if self.field.is_empty() => p.clone(),
            Some(p) => format!("{p}, {}", self.field),
            None => self.field.clone(),
        }
    }
}

impl Scenario {
    /// Reads a scenario file; the format comes from the extension (`.toml`, `.json`, `.csv`).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let format = Format::from_path(path).ok_or_else(|| {
            serr(
                &file,
                None,
                "",
                "unknown scenario format: use a .toml, .json or .csv file",
            )
        })?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| serr(&file, None, "", format!("cannot read: {e}")))?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("scenario");
        match format {
            Format::Toml => Scenario::from_toml_str(&text, &file),
            Format::Json => Scenario::from_json_str(&text, &file),
            Format::Csv => Scenario::from_csv_str(&text, &file, stem),
        }
    }

    /// Writes the scenario; the format comes from the extension.
    pub fn write_path(&self, path: impl AsRef<Path>) -> Result<(), ScenarioError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let format = Format::from_path(path).ok_or_else(|| {
            serr(
                &file,
                None,
                "",
                "unknown scenario format: use a .toml, .json or .csv file",
            )
        })?;
        let text = match format {
            Format::Toml => self.to_toml().map_err(|e| ScenarioError {
                file: file.clone(),
                ..e
            })?,
            Format::Json => self.to_json(),
            Format::Csv => self.to_csv(),
        };
        std::fs::write(path, text).map_err(|e| serr(&file, None, "", format!("cannot write: {e}")))
    }

    /// Parses TOML; `file` names the source in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start));
            let mut field = match line {
                Some(l) => toml_path_at_line(text, l),
                None => String::new(),
            };
            let message = e.message().trim().to_string();
            if let Some(missing) = backticked(&message, "missing field `") {
                field = join_path(&field, &missing);
            }
            serr(file, line, field, message)
        })?;
        let scenario = scenario.truncated_if_asked();
        scenario.validate_located(file, |p| toml_line_of_path(text, p))?;
        Ok(scenario)
    }

    /// Parses JSON; `file` names the source in errors.
    pub fn from_json_str(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = serde_json::from_str(text).map_err(|e| {
            let line = (e.line() > 0).then_some(e.line());
            let mut field = if e.line() > 0 {
                json_path_at(text, e.line(), e.column())
            } else {
                String::new()
            };
            let full = e.to_string();
            // serde_json appends " at line L column C"; the location is reported separately.
            let message = match full.rfind(" at line ") {
                Some(i) => full[..i].to_string(),
                None => full,
            };
            if let Some(missing) = backticked(&message, "missing field `") {
                field = join_path(&field, &missing);
            }
            serr(file, line, field, message)
        })?;
        let scenario = scenario.truncated_if_asked();
        scenario.validate_located(file, |p| json_line_of_path(text, p))?;
        Ok(scenario)
    }

    /// Pretty JSON with a trailing newline; byte-identical for equal scenarios.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a scenario serialises");
        s.push('\n');
        s
    }

    /// TOML. Fails only for a seed above `i64::MAX` (TOML integers are 64-bit signed).
    pub fn to_toml(&self) -> Result<String, ScenarioError> {
        toml::to_string(self).map_err(|e| serr("scenario", None, "", e.to_string()))
    }

    /// With `truncate_long_text`, every profile's texts cut to the market's limits, and what
    /// was cut kept in `truncated` (`participant 'Ada', sell[0].description: cut ...`).
    fn truncated_if_asked(mut self) -> Scenario {
        if self.truncate_long_text {
            for p in &mut self.profiles {
                let who = format!("participant '{}'", p.name);
                let cut = p.truncate_long_texts();
                self.truncated
                    .extend(cut.into_iter().map(|c| format!("{who}, {c}")));
            }
            for (k, session) in self.sessions.iter_mut().enumerate() {
                for p in &mut session.profiles {
                    let who = format!("session {}, participant '{}'", k + 2, p.name);
                    let cut = p.truncate_long_texts();
                    self.truncated
                        .extend(cut.into_iter().map(|c| format!("{who}, {c}")));
                }
            }
        }
        self
    }

    /// Checks the whole scenario: its own fields, each profile ([`Profile::validate`]), unique
    /// participant names, item ids unique across the scenario, item types present, one currency.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        self.validate_located("scenario", |_| None)
    }

    fn validate_located(
        &self,
        file: &str,
        locate: impl Fn(&str) -> Option<usize>,
    ) -> Result<(), ScenarioError> {
        match self.problem() {
            None => Ok(()),
            Some(p) => {
                let path = match p.profile {
                    Some(i) if p.field.is_empty() => format!("profiles[{i}]"),
                    Some(i) => format!("profiles[{i}].{}", p.field),
                    None => p.field.clone(),
                };
                Err(serr(file, locate(&path), p.display_field(), p.message))
            }
        }
    }

    /// The first problem of the scenario: its own fields, then each profile, then each later
    /// session's list.
    fn problem(&self) -> Option<Problem> {
        if let Some(p) = self.fields_problem() {
            return Some(p);
        }
        let mut names = BTreeSet::new();
        let mut item_ids: BTreeMap<&str, &str> = BTreeMap::new();
        for (i, p) in self.profiles.iter().enumerate() {
            if let Some(problem) = self.profile_problem(i, p, &mut names, &mut item_ids) {
                return Some(problem);
            }
        }
        if self.sessions.len() >= MAX_SESSIONS as usize {
            return top_problem(
                "sessions",
                format!(
                    "at most {} later sessions (got {})",
                    MAX_SESSIONS - 1,
                    self.sessions.len()
                ),
            );
        }
        self.sessions
            .iter()
            .enumerate()
            .find_map(|(k, session)| self.session_problem(k, session, &names))
    }

    /// The scenario's own fields: name, currency, default budget, reference prices, at least
    /// one participant.
    fn fields_problem(&self) -> Option<Problem> {
        if self.name.trim().is_empty() {
            return top_problem("name", "must not be empty".into());
        }
        if self.currency.trim().is_empty() {
            return top_problem("currency", "must not be empty".into());
        }
        if !(0..=MAX_AMOUNT).contains(&self.budget_default) {
            return top_problem(
                "budget_default",
                "must be between 0 and 10^12 minor units".into(),
            );
        }
        for (t, &price) in &self.reference_prices {
            if !(1..=MAX_AMOUNT).contains(&price) {
                return top_problem(
                    &format!("reference_prices.{t}"),
                    "must be between 1 and 10^12 minor units".into(),
                );
            }
        }
        if self.profiles.is_empty() {
            return top_problem(
                "profiles",
                "a scenario needs at least one participant".into(),
            );
        }
        None
    }

    /// The `i`th profile: valid, a new name, the scenario's currency, item types given and item
    /// ids unique across the scenario (`names` and `item_ids` collect what came before).
    fn profile_problem<'a>(
        &self,
        i: usize,
        p: &'a Profile,
        names: &mut BTreeSet<&'a str>,
        item_ids: &mut BTreeMap<&'a str, &'a str>,
    ) -> Option<Problem> {
        let inside = |field: String, message: String| {
            Some(Problem {
                profile: Some(i),
                field,
                message,
                prefix: Some(format!("participant '{}'", p.name)),
            })
        };
        if let Err(e) = p.validate() {
            return inside(e.field, e.message);
        }
        if !names.insert(p.name.as_str()) {
            return inside(
                "name".into(),
                "another participant has the same name".into(),
            );
        }
        if p.currency != self.currency {
            return inside(
                "currency".into(),
                format!(
                    "is {} but the scenario's currency is {}",
                    p.currency, self.currency
                ),
            );
        }
        for (j, s) in p.sell.iter().enumerate() {
            if s.item_type.trim().is_empty() {
                return inside(format!("sell[{j}].item_type"), "must not be empty".into());
            }
            if let Some(other) = item_ids.insert(&s.item_id, &p.name) {
                return inside(
                    format!("sell[{j}].item_id"),
                    format!(
                        "'{}' is also an item of '{other}': item ids must be unique",
                        s.item_id
                    ),
                );
            }
        }
        for (j, w) in p.want.iter().enumerate() {
            if w.item_type.trim().is_empty() {
                return inside(format!("want[{j}].item_type"), "must not be empty".into());
            }
        }
        None
    }

    /// The `k`th later session's list: valid profiles of the scenario's participants, each
    /// once, in its currency, item ids unique within the session.
    fn session_problem(
        &self,
        k: usize,
        session: &SessionLists,
        names: &BTreeSet<&str>,
    ) -> Option<Problem> {
        let mut seen = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for (j, p) in session.profiles.iter().enumerate() {
            let at = |f: &str| format!("sessions[{k}].profiles[{j}]{f}");
            if let Err(e) = p.validate() {
                return top_problem(&at(&format!(".{}", e.field)), e.message);
            }
            if !names.contains(p.name.as_str()) {
                return top_problem(
                    &at(".name"),
                    format!(
                        "'{}' is not a participant of the scenario (the same participants trade in every session)",
                        p.name
                    ),
                );
            }
            if !seen.insert(p.name.as_str()) {
                return top_problem(&at(".name"), format!("'{}' is listed twice", p.name));
            }
            if p.currency != self.currency {
                return top_problem(
                    &at(".currency"),
                    format!(
                        "is {} but the scenario's currency is {}",
                        p.currency, self.currency
                    ),
                );
            }
            for (i, it) in p.sell.iter().enumerate() {
                if !ids.insert(it.item_id.as_str()) {
                    return top_problem(
                        &at(&format!(".sell[{i}].item_id")),
                        format!("'{}' is listed twice in this session", it.item_id),
                    );
                }
            }
        }
        None
    }

    /// The lists of each of `count` sessions (1-based order), under the scenario's participant
    /// names: the first session is `profiles`; a later one is the scenario's own list for it
    /// (`sessions`), or `profiles` again without one. Item and want ids of session k ≥ 2 get the
    /// prefix `s<k>-`, so they stay unique in the one market all sessions share.
    pub fn session_lists(&self, count: u32) -> Result<Vec<Vec<Profile>>, String> {
        if !(1..=MAX_SESSIONS).contains(&count) {
            return Err(format!(
                "must be between 1 and {MAX_SESSIONS} (got {count})"
            ));
        }
        if !self.sessions.is_empty() && self.sessions.len() + 1 < count as usize {
            return Err(format!(
                "the scenario lists {} session(s) (its first and {} in `sessions`), fewer than {count}",
                self.sessions.len() + 1,
                self.sessions.len()
            ));
        }
        let mut out = vec![self.profiles.clone()];
        for k in 2..=count {
            let lists = match self.sessions.get(k as usize - 2) {
                Some(s) => self
                    .profiles
                    .iter()
                    .map(|base| {
                        s.profiles
                            .iter()
                            .find(|p| p.name == base.name)
                            .cloned()
                            .unwrap_or_else(|| Profile {
                                sell: Vec::new(),
                                want: Vec::new(),
                                ..base.clone()
                            })
                    })
                    .collect(),
                None => self.profiles.clone(),
            };
            out.push(lists.into_iter().map(|p| session_ids(p, k)).collect());
        }
        Ok(out)
    }

    /// The scenario of one session: this one's name, currency and reference prices with the
    /// session's profiles (what the session's metrics and efficiency are measured against).
    pub fn with_profiles(&self, profiles: Vec<Profile>) -> Scenario {
        Scenario {
            profiles,
            sessions: Vec::new(),
            truncated: Vec::new(),
            ..self.clone()
        }
    }

    /// The total number of items for sale.
    pub fn item_count(&self) -> usize {
        self.profiles.iter().map(|p| p.sell.len()).sum()
    }

    /// The total number of wants (not counting quantities).
    pub fn want_count(&self) -> usize {
        self.profiles.iter().map(|p| p.want.len()).sum()
    }

    /// The profile of a participant by name.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// An item for sale by id, with its seller's profile.
    pub fn item(&self, item_id: &str) -> Option<(&Profile, &SellItem)> {
        self.profiles
            .iter()
            .find_map(|p| p.sell.iter().find(|s| s.item_id == item_id).map(|s| (p, s)))
    }
}

// ---------------------------------------------------------------------------------------------
// CSV

const CSV_COLUMNS: &[&str] = &[
    "participant",
    "budget",
    "kind",
    "id",
    "item_type",
    "title",
    "description",
    "category",
    "condition",
    "price",
    "limit",
    "quantity",
    "priority",
    "keywords",
];

/// One CSV record: its first line and its fields.
struct Record {
    line: usize,
    fields: Vec<String>,
}

/// A problem of the scenario's own fields (no profile).
fn top_problem(field: &str, message: String) -> Option<Problem> {
    Some(Problem {
        profile: None,
        field: field.into(),
        message,
        prefix: None,
    })
}

/// A participant as its first CSV row makes it (budget and currency set once all rows are read).
fn new_csv_profile(name: &str, currency: &str) -> Profile {
    Profile {
        version: haggle_agents::profile::PROFILE_VERSION,
        name: name.to_string(),
        budget: 0,
        currency: currency.to_string(),
        sell: Vec::new(),
        want: Vec::new(),
        owns: Vec::new(),
        style: Default::default(),
        autonomy: Default::default(),
    }
}

/// The header's columns by name: each known (see `CSV_COLUMNS`), none twice, the required
/// ones present.
fn csv_columns(
    header: &Record,
    file: &str,
) -> Result<BTreeMap<&'static str, usize>, ScenarioError> {
    let mut columns: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (i, name) in header.fields.iter().enumerate() {
        let key = name.trim().to_ascii_lowercase();
        let Some(&known) = CSV_COLUMNS.iter().find(|c| **c == key) else {
            return Err(serr(
                file,
                Some(header.line),
                format!("column {}", name.trim()),
                format!("unknown column (known: {})", CSV_COLUMNS.join(", ")),
            ));
        };
        if columns.insert(known, i).is_some() {
            return Err(serr(
                file,
                Some(header.line),
                format!("column {known}"),
                "appears twice",
            ));
        }
    }
    for required in ["participant", "kind", "item_type"] {
        if !columns.contains_key(required) {
            return Err(serr(
                file,
                Some(header.line),
                format!("column {required}"),
                "missing from the header",
            ));
        }
    }
    Ok(columns)
}

/// One data row of the CSV form, its cells read by column name.
struct CsvRow<'a> {
    file: &'a str,
    line: usize,
    fields: &'a [String],
    columns: &'a BTreeMap<&'static str, usize>,
}

impl CsvRow<'_> {
    /// The cell, trimmed ("" when the column is absent or the row short).
    fn cell(&self, c: &str) -> String {
        self.columns
            .get(c)
            .and_then(|&i| self.fields.get(i))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    fn fail(&self, c: &str, m: String) -> ScenarioError {
        serr(self.file, Some(self.line), format!("column {c}"), m)
    }

    /// An integer cell (`None` when blank).
    fn int(&self, c: &str) -> Result<Option<i64>, ScenarioError> {
        let v = self.cell(c);
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<i64>()
            .map(Some)
            .map_err(|_| self.fail(c, format!("not an integer (got '{v}')")))
    }

    fn must_be_blank(&self, c: &str, kind: &str, hint: &str) -> Result<(), ScenarioError> {
        if self.cell(c).is_empty() {
            Ok(())
        } else {
            Err(self.fail(c, format!("must be blank on a {kind} row{hint}")))
        }
    }

    /// A `sell` row: the item (`n`th of the participant's, for a default id).
    fn sell_item(
        &self,
        name: &str,
        item_type: String,
        n: usize,
    ) -> Result<SellItem, ScenarioError> {
        for c in ["quantity", "priority", "keywords"] {
            self.must_be_blank(c, "sell", "")?;
        }
        let asking = self
            .int("price")?
            .ok_or_else(|| self.fail("price", "the asking price is required".into()))?;
        let floor = self.int("limit")?.ok_or_else(|| {
            self.fail(
                "limit",
                "the floor price (lowest acceptable) is required".into(),
            )
        })?;
        let mut id = self.cell("id");
        if id.is_empty() {
            id = format!("{}-item-{n}", slug(name));
        }
        let mut title = self.cell("title");
        if title.is_empty() {
            title = item_type.clone();
        }
        Ok(SellItem {
            item_id: id,
            item_type,
            title,
            description: self.cell("description"),
            category: self.cell("category"),
            condition: self.cell("condition"),
            asking_price: asking,
            floor_price: floor,
            attributes: BTreeMap::new(),
            claims: Default::default(),
            true_state: None,
            shipping_price: None,
            true_transit: None,
        })
    }

    /// A `want` row: the want (`n`th of the participant's, for a default id).
    fn want(&self, name: &str, item_type: String, n: usize) -> Result<Want, ScenarioError> {
        self.must_be_blank("price", "want", " (put the maximum price in limit)")?;
        self.must_be_blank("condition", "want", "")?;
        let max = self.int("limit")?.ok_or_else(|| {
            self.fail("limit", "the maximum price (valuation) is required".into())
        })?;
        let quantity = match self.int("quantity")? {
            None => 1,
            Some(q) => u32::try_from(q)
                .map_err(|_| self.fail("quantity", format!("must be 1 to 100 (got {q})")))?,
        };
        let priority = match self.int("priority")? {
            None => 1,
            Some(q) => u32::try_from(q)
                .map_err(|_| self.fail("priority", format!("must be positive (got {q})")))?,
        };
        let mut id = self.cell("id");
        if id.is_empty() {
            id = format!("{}-want-{n}", slug(name));
        }
        let mut description = self.cell("description");
        if description.is_empty() {
            description = self.cell("title");
        }
        if description.is_empty() {
            description = item_type.clone();
        }
        let keywords = self
            .cell("keywords")
            .split(';')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect();
        Ok(Want {
            want_id: id,
            item_type,
            description,
            category: self.cell("category"),
            keywords,
            max_price: max,
            priority,
            quantity,
        })
    }
}

/// Where a profile's entries came from in the CSV (to locate validation errors).
#[derive(Default)]
struct Origin {
    first_line: usize,
    budget_line: Option<usize>,
    sell_lines: Vec<usize>,
    want_lines: Vec<usize>,
}

impl Scenario {
    /// Parses the CSV form (see the module documentation). `file` names the source in errors;
    /// `default_name` is the scenario's name unless a `# name:` directive gives one.
    pub fn from_csv_str(
        text: &str,
        file: &str,
        default_name: &str,
    ) -> Result<Scenario, ScenarioError> {
        let mut scenario = Scenario {
            name: default_name.to_string(),
            seed: 0,
            currency: default_currency(),
            budget_default: 0,
            reference_prices: BTreeMap::new(),
            truncate_long_text: false,
            truncated: Vec::new(),
            sessions: Vec::new(),
            profiles: Vec::new(),
        };
        let (records, directives) = parse_csv(text, file)?;
        scenario.apply_csv_directives(directives, file)?;
        let mut records = records.into_iter();
        let header = records.next().ok_or_else(|| {
            serr(
                file,
                None,
                "",
                "no header row (participant,kind,item_type,...)",
            )
        })?;
        let columns = csv_columns(&header, file)?;
        let mut origins: Vec<Origin> = Vec::new();
        let mut budgets: Vec<Option<i64>> = Vec::new();
        for rec in records {
            if rec.fields.len() > header.fields.len() {
                return Err(serr(
                    file,
                    Some(rec.line),
                    "",
                    format!(
                        "{} fields but the header has {} columns",
                        rec.fields.len(),
                        header.fields.len()
                    ),
                ));
            }
            let row = CsvRow {
                file,
                line: rec.line,
                fields: &rec.fields,
                columns: &columns,
            };
            scenario.add_csv_row(&row, &mut origins, &mut budgets)?;
        }
        for (p, b) in scenario.profiles.iter_mut().zip(&budgets) {
            p.budget = b.unwrap_or(scenario.budget_default);
            p.currency = scenario.currency.clone();
        }
        let scenario = scenario.truncated_if_asked();
        if let Some(problem) = scenario.problem() {
            let (line, column) = match problem.profile {
                Some(i) => csv_location(&origins[i], &problem.field),
                None => (None, problem.field.clone()),
            };
            let field = match &problem.prefix {
                Some(p) => format!("{p}, {column}"),
                None => column,
            };
            return Err(serr(file, line, field, problem.message));
        }
        Ok(scenario)
    }

    /// The `# key: value` directives of the CSV form: name, currency, seed,
    /// truncate_long_text, budget_default (others are ignored).
    fn apply_csv_directives(
        &mut self,
        directives: Vec<Directive>,
        file: &str,
    ) -> Result<(), ScenarioError> {
        for (line, key, value) in directives {
            let col = format!("directive {key}");
            let bad = |what: &str| {
                serr(
                    file,
                    Some(line),
                    col.clone(),
                    format!("{what} (got '{value}')"),
                )
            };
            match key.as_str() {
                "name" => self.name = value.clone(),
                "currency" => self.currency = value.clone(),
                "seed" => self.seed = value.parse().map_err(|_| bad("not a whole number"))?,
                "truncate_long_text" => {
                    self.truncate_long_text = value.parse().map_err(|_| bad("true or false"))?
                }
                "budget_default" => {
                    self.budget_default = value.parse().map_err(|_| bad("not an integer"))?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The index of the row's participant (added at its first row, with where it came from),
    /// its budget taken from the row when given (the same on every row that gives one).
    fn csv_participant(
        &mut self,
        row: &CsvRow,
        name: &str,
        origins: &mut Vec<Origin>,
        budgets: &mut Vec<Option<i64>>,
    ) -> Result<usize, ScenarioError> {
        let line = row.line;
        let budget = row.int("budget")?;
        let idx = match self.profiles.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                self.profiles.push(new_csv_profile(name, &self.currency));
                origins.push(Origin {
                    first_line: line,
                    ..Origin::default()
                });
                budgets.push(None);
                self.profiles.len() - 1
            }
        };
        if let Some(b) = budget {
            match budgets[idx] {
                Some(prev) if prev != b => {
                    return Err(row.fail(
                        "budget",
                        format!(
                            "{b} conflicts with {name}'s budget {prev} on line {}",
                            origins[idx].budget_line.unwrap_or(0)
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    budgets[idx] = Some(b);
                    origins[idx].budget_line = Some(line);
                }
            }
        }
        Ok(idx)
    }

    /// One CSV row: its participant and budget ([`Scenario::csv_participant`]) and its sell,
    /// want or owns entry.
    fn add_csv_row(
        &mut self,
        row: &CsvRow,
        origins: &mut Vec<Origin>,
        budgets: &mut Vec<Option<i64>>,
    ) -> Result<(), ScenarioError> {
        let line = row.line;
        let name = row.cell("participant");
        if name.is_empty() {
            return Err(row.fail("participant", "must not be empty".into()));
        }
        let kind = row.cell("kind").to_ascii_lowercase();
        let item_type = row.cell("item_type");
        if item_type.is_empty() {
            return Err(row.fail("item_type", "must not be empty".into()));
        }
        let idx = self.csv_participant(row, &name, origins, budgets)?;
        let profile = &mut self.profiles[idx];
        let origin = &mut origins[idx];
        match kind.as_str() {
            "sell" => {
                let item = row.sell_item(&name, item_type, profile.sell.len() + 1)?;
                profile.sell.push(item);
                origin.sell_lines.push(line);
            }
            "want" => {
                let want = row.want(&name, item_type, profile.want.len() + 1)?;
                profile.want.push(want);
                origin.want_lines.push(line);
            }
            "owns" => {
                for c in [
                    "id",
                    "title",
                    "description",
                    "category",
                    "condition",
                    "price",
                    "limit",
                    "quantity",
                    "priority",
                    "keywords",
                ] {
                    row.must_be_blank(c, "owns", "")?;
                }
                if !profile.owns.contains(&item_type) {
                    profile.owns.push(item_type);
                }
            }
            "" => return Err(row.fail("kind", "must be sell, want or owns".into())),
            other => {
                return Err(row.fail(
                    "kind",
                    format!("must be sell, want or owns (got '{other}')"),
                ));
            }
        }
        Ok(())
    }

    /// The CSV form (see the module documentation). Style, autonomy, item attributes and
    /// reference prices are not part of it.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("# name: {}\n", self.name.replace('\n', " ")));
        out.push_str(&format!("# seed: {}\n", self.seed));
        out.push_str(&format!("# currency: {}\n", self.currency));
        out.push_str(&format!("# budget_default: {}\n", self.budget_default));
        out.push_str(&CSV_COLUMNS.join(","));
        out.push('\n');
        for p in &self.profiles {
            let budget = p.budget.to_string();
            let mut first = true;
            let mut row = |cells: [&str; 14]| {
                let mut cells: Vec<&str> = cells.to_vec();
                if first {
                    cells[1] = &budget;
                    first = false;
                }
                out.push_str(
                    &cells
                        .iter()
                        .map(|c| csv_quote(c))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                out.push('\n');
            };
            for s in &p.sell {
                let (price, limit) = (s.asking_price.to_string(), s.floor_price.to_string());
                row([
                    &p.name,
                    "",
                    "sell",
                    &s.item_id,
                    &s.item_type,
                    &s.title,
                    &s.description,
                    &s.category,
                    &s.condition,
                    &price,
                    &limit,
                    "",
                    "",
                    "",
                ]);
            }
            for w in &p.want {
                let (limit, q, pr) = (
                    w.max_price.to_string(),
                    w.quantity.to_string(),
                    w.priority.to_string(),
                );
                let kw = w.keywords.join(";");
                row([
                    &p.name,
                    "",
                    "want",
                    &w.want_id,
                    &w.item_type,
                    "",
                    &w.description,
                    &w.category,
                    "",
                    "",
                    &limit,
                    &q,
                    &pr,
                    &kw,
                ]);
            }
            for o in &p.owns {
                row([
                    &p.name, "", "owns", "", o, "", "", "", "", "", "", "", "", "",
                ]);
            }
            if p.sell.is_empty() && p.want.is_empty() && p.owns.is_empty() {
                // A participant with nothing to trade still needs a row to exist; there is no
                // row kind for that, so it is written as a comment and lost on reading.
                out.push_str(&format!("# participant without rows: {}\n", p.name));
            }
        }
        out
    }
}

/// Maps a profile field (`sell[2].floor_price`) to the CSV line and column it came from.
fn csv_location(origin: &Origin, field: &str) -> (Option<usize>, String) {
    let column_of = |name: &str, sell: bool| -> &'static str {
        match name {
            "item_id" | "want_id" => "id",
            "item_type" => "item_type",
            "title" => "title",
            "description" => "description",
            "category" => "category",
            "condition" => "condition",
            "asking_price" => "price",
            "floor_price" | "max_price" => "limit",
            "quantity" => "quantity",
            "priority" => "priority",
            "keywords" => "keywords",
            _ if sell => "price",
            _ => "limit",
        }
    };
    let indexed = |prefix: &str| -> Option<(usize, &str)> {
        let rest = field.strip_prefix(prefix)?;
        let close = rest.find(']')?;
        let i = rest[..close].parse().ok()?;
        Some((i, rest[close + 1..].trim_start_matches('.')))
    };
    if let Some((i, name)) = indexed("sell[") {
        return (
            origin.sell_lines.get(i).copied(),
            format!("column {}", column_of(name, true)),
        );
    }
    if let Some((i, name)) = indexed("want[") {
        return (
            origin.want_lines.get(i).copied(),
            format!("column {}", column_of(name, false)),
        );
    }
    match field {
        "budget" => (
            origin.budget_line.or(Some(origin.first_line)),
            "column budget".into(),
        ),
        "name" => (Some(origin.first_line), "column participant".into()),
        _ => (Some(origin.first_line), field.to_string()),
    }
}

fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() {
            s.extend(c.to_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    while s.ends_with('-') {
        s.pop();
    }
    if s.is_empty() {
        "participant".into()
    } else {
        s
    }
}

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(['#', ' ']) || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

type Directive = (usize, String, String);

/// RFC 4180-style records with the line each starts on; comment lines yield directives.
fn parse_csv(text: &str, file: &str) -> Result<(Vec<Record>, Vec<Directive>), ScenarioError> {
    let mut records = Vec::new();
    let mut directives = Vec::new();
    let chars: Vec<char> = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .chars()
        .collect();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        // At the start of a physical line: comments and blank lines.
        let end = chars[i..]
            .iter()
            .position(|&c| c == '\n')
            .map_or(chars.len(), |p| i + p);
        let raw: String = chars[i..end].iter().collect();
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            if let Some((k, v)) = trimmed.strip_prefix('#').and_then(|r| r.split_once(':')) {
                let key = k.trim().to_ascii_lowercase();
                if [
                    "name",
                    "seed",
                    "currency",
                    "budget_default",
                    "truncate_long_text",
                ]
                .contains(&key.as_str())
                {
                    directives.push((line, key, v.trim().to_string()));
                }
            }
            i = end + 1;
            line += 1;
            continue;
        }
        let start_line = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        loop {
            if i >= chars.len() {
                if quoted {
                    return Err(serr(
                        file,
                        Some(start_line),
                        "",
                        "unterminated quoted field",
                    ));
                }
                fields.push(std::mem::take(&mut field));
                break;
            }
            let c = chars[i];
            if quoted {
                if c == '"' {
                    if chars.get(i + 1) == Some(&'"') {
                        field.push('"');
                        i += 2;
                        continue;
                    }
                    quoted = false;
                    i += 1;
                    // Only spaces may separate a closing quote from the next comma.
                    while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                        i += 1;
                    }
                    if i < chars.len() && !matches!(chars[i], ',' | '\n' | '\r') {
                        return Err(serr(
                            file,
                            Some(line),
                            format!("field {}", fields.len() + 1),
                            "text after a closing quote",
                        ));
                    }
                    continue;
                }
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
                i += 1;
                continue;
            }
            match c {
                '"' if field.trim().is_empty() => {
                    field.clear();
                    quoted = true;
                    i += 1;
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    i += 1;
                }
                '\r' if chars.get(i + 1) == Some(&'\n') => i += 1,
                '\n' => {
                    fields.push(std::mem::take(&mut field));
                    i += 1;
                    line += 1;
                    break;
                }
                _ => {
                    field.push(c);
                    i += 1;
                }
            }
        }
        records.push(Record {
            line: start_line,
            fields,
        });
    }
    Ok((records, directives))
}

// ---------------------------------------------------------------------------------------------
// Locating errors in TOML and JSON text

fn line_of_offset(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The text between `prefix` and the next backtick, e.g. the field of "missing field `x`".
fn backticked(message: &str, prefix: &str) -> Option<String> {
    let start = message.find(prefix)? + prefix.len();
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

fn join_path(base: &str, key: &str) -> String {
    if base.is_empty() || base.ends_with(&format!(".{key}")) || base == key {
        if base.is_empty() {
            key.to_string()
        } else {
            base.to_string()
        }
    } else {
        format!("{base}.{key}")
    }
}

/// For each line of a TOML document, the field path it defines (`profiles[1].sell[0].title`),
/// following `[table]` and `[[array]]` headers. Good enough for locating errors: keys on
/// continuation lines of multi-line values inherit the previous key's path.
fn toml_line_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut table = String::new();
    // Current index of each array of tables, by its resolved path.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut last = String::new();
    let mut in_multiline_string = false;
    for raw in text.lines() {
        let line = raw.trim();
        if in_multiline_string {
            if line.matches("\"\"\"").count() % 2 == 1 || line.matches("'''").count() % 2 == 1 {
                in_multiline_string = false;
            }
            out.push(last.clone());
            continue;
        }
        if let Some(h) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let (parent, leaf) = resolve_header(h, &counts);
            let key = join_dotted(&parent, &leaf);
            let next = counts.get(&key).map_or(0, |i| i + 1);
            // A new element resets the indices of arrays nested in the old one.
            let nested = format!("{key}[");
            counts.retain(|k, _| !k.starts_with(&nested));
            counts.insert(key.clone(), next);
            table = format!("{key}[{next}]");
            last = table.clone();
        } else if let Some(h) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            let (parent, leaf) = resolve_header(h, &counts);
            table = join_dotted(&parent, &leaf);
            last = table.clone();
        } else if let Some((k, v)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            let key = k
                .trim()
                .split('.')
                .map(unquote)
                .collect::<Vec<_>>()
                .join(".");
            last = join_dotted(&table, &key);
            let v = v.trim();
            if (v.starts_with("\"\"\"") && v.matches("\"\"\"").count() == 1)
                || (v.starts_with("'''") && v.matches("'''").count() == 1)
            {
                in_multiline_string = true;
            }
        }
        out.push(last.clone());
    }
    out
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s)
        .to_string()
}

fn join_dotted(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

/// Resolves a header's dotted segments against the current array indices:
/// `profiles.sell` with `profiles` at index 1 becomes (`profiles[1]`, `sell`).
fn resolve_header(h: &str, counts: &BTreeMap<String, usize>) -> (String, String) {
    let segs: Vec<String> = h.split('.').map(unquote).collect();
    let mut path = String::new();
    for seg in &segs[..segs.len().saturating_sub(1)] {
        path = join_dotted(&path, seg);
        if let Some(i) = counts.get(&path) {
            path = format!("{path}[{i}]");
        }
    }
    (path, segs.last().cloned().unwrap_or_default())
}

fn toml_path_at_line(text: &str, line: usize) -> String {
    toml_line_paths(text)
        .get(line.saturating_sub(1))
        .cloned()
        .unwrap_or_default()
}

fn toml_line_of_path(text: &str, path: &str) -> Option<usize> {
    locate_path(
        toml_line_paths(text)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i + 1, p)),
        path,
    )
}

/// The first line whose path is `path`, else the first line of its longest present prefix.
fn locate_path(entries: impl Iterator<Item = (usize, String)>, path: &str) -> Option<usize> {
    let entries: Vec<(usize, String)> = entries.collect();
    let mut target = path.to_string();
    loop {
        if let Some((l, _)) = entries.iter().find(|(_, p)| *p == target) {
            return Some(*l);
        }
        let cut = target.rfind(['.', '['])?;
        target.truncate(cut);
        if target.is_empty() {
            return None;
        }
    }
}

/// Every key, value start and container end of a JSON document with its (line, column) and
/// path, in document order.
fn json_positions(text: &str) -> Vec<(usize, usize, String)> {
    enum Frame {
        Object {
            key: Option<String>,
            expect_key: bool,
        },
        Array {
            index: usize,
        },
    }
    fn path(stack: &[Frame]) -> String {
        let mut s = String::new();
        for f in stack {
            match f {
                Frame::Object { key: Some(k), .. } => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Frame::Object { key: None, .. } => {}
                Frame::Array { index } => s.push_str(&format!("[{index}]")),
            }
        }
        s
    }
    let mut out = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut col) = (0, 1, 1);
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize, c: char| {
        *i += 1;
        if c == '\n' {
            *line += 1;
            *col = 1;
        } else {
            *col += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                let (l0, c0) = (line, col);
                let mut s = String::new();
                advance(&mut i, &mut line, &mut col, c);
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        advance(&mut i, &mut line, &mut col, '\\');
                    }
                    if i < chars.len() {
                        let ch = chars[i];
                        s.push(ch);
                        advance(&mut i, &mut line, &mut col, ch);
                    }
                }
                if i < chars.len() {
                    advance(&mut i, &mut line, &mut col, '"');
                }
                if let Some(Frame::Object {
                    key,
                    expect_key: expect @ true,
                }) = stack.last_mut()
                {
                    *key = Some(s);
                    *expect = false;
                }
                out.push((l0, c0, path(&stack)));
            }
            '{' | '[' => {
                out.push((line, col, path(&stack)));
                stack.push(if c == '{' {
                    Frame::Object {
                        key: None,
                        expect_key: true,
                    }
                } else {
                    Frame::Array { index: 0 }
                });
                advance(&mut i, &mut line, &mut col, c);
            }
            '}' | ']' => {
                // The container itself ends here: report its own path.
                stack.pop();
                out.push((line, col, path(&stack)));
                advance(&mut i, &mut line, &mut col, c);
            }
            ',' => {
                match stack.last_mut() {
                    Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                    Some(Frame::Array { index }) => *index += 1,
                    None => {}
                }
                advance(&mut i, &mut line, &mut col, c);
            }
            c if c.is_whitespace() || c == ':' => advance(&mut i, &mut line, &mut col, c),
            _ => {
                out.push((line, col, path(&stack)));
                while i < chars.len()
                    && !matches!(chars[i], ',' | '}' | ']' | '"')
                    && !chars[i].is_whitespace()
                {
                    let ch = chars[i];
                    advance(&mut i, &mut line, &mut col, ch);
                }
            }
        }
    }
    out
}

fn json_path_at(text: &str, line: usize, column: usize) -> String {
    json_positions(text)
        .into_iter()
        .take_while(|(l, c, _)| (*l, *c) <= (line, column))
        .last()
        .map(|(_, _, p)| p)
        .unwrap_or_default()
}

fn json_line_of_path(text: &str, path: &str) -> Option<usize> {
    locate_path(
        json_positions(text).into_iter().map(|(l, _, p)| (l, p)),
        path,
    )
}
