//! `haggle interview` (spec: agents.md, Intake interview): a terminal conversation that sets up a
//! participant's profile — what to sell (asking and lowest prices), what to buy (maximum prices),
//! what the person already owns, how the agent should bargain — then shows the profile and writes
//! it after confirmation, with the transcript beside it. An LLM asks the questions (any brain
//! model: `anthropic:…`, `openai:…`, `openai-json:…`); `--form` asks the same by plain prompts.
//! Input and output are any `BufRead`/`Write`, so the whole conversation is testable.

use anyhow::{Context, bail};
use haggle_agents::llm::{CallLog, ChatMessage, ChatModel, ChatRequest, ToolResult, ToolSpec};
use haggle_agents::profile::{Autonomy, Profile, SellItem, Style, Want};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the interviewer's instructions, stored in the transcript.
pub const INTERVIEW_TEMPLATE_VERSION: &str = "haggle-interview-v1";

#[derive(clap::Args)]
pub struct InterviewArgs {
    /// Where to write the profile (TOML); the transcript goes beside it (`NAME.transcript.md`).
    #[arg(long, default_value = "profile.toml")]
    out: PathBuf,
    /// The interviewer, e.g. `anthropic:claude-sonnet-4-5` or `openai:gpt-4o-mini`.
    #[arg(long, conflicts_with = "form")]
    brain: Option<String>,
    /// Fill the profile by plain prompts, without a language model.
    #[arg(long)]
    form: bool,
    /// Interviewer turns before it must propose the profile.
    #[arg(long, default_value_t = 40)]
    max_turns: u32,
    #[command(flatten)]
    llm: crate::llm_args::LlmArgs,
}

/// The conversation as it happened, for the file beside the profile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transcript {
    pub lines: Vec<(String, String)>,
}

impl Transcript {
    fn say(&mut self, who: &str, text: &str) {
        self.lines.push((who.to_string(), text.trim().to_string()));
    }

    pub fn markdown(&self, how: &str) -> String {
        let mut s = format!("# Haggle intake interview\n\n{how}\n\n");
        for (who, text) in &self.lines {
            s.push_str(&format!("**{who}:** {}\n\n", text.replace('\n', "\n> ")));
        }
        s
    }
}

/// Where the person types and reads.
pub struct Terminal<'a> {
    pub input: &'a mut dyn BufRead,
    pub output: &'a mut dyn Write,
    pub transcript: Transcript,
    /// The answers come from a pipe or a file, not typed: nothing echoes them, so each prompt
    /// ends its own line instead of waiting on it.
    pub piped: bool,
}

impl Terminal<'_> {
    /// Writes a prompt: on the line the person types on, or on its own line when piped.
    fn prompt(&mut self, text: &str) -> anyhow::Result<()> {
        if self.piped {
            writeln!(self.output, "{text}")?;
        } else {
            write!(self.output, "{text} ")?;
        }
        self.output.flush()?;
        Ok(())
    }

    fn show(&mut self, text: &str) -> anyhow::Result<()> {
        writeln!(self.output, "{text}")?;
        self.output.flush()?;
        Ok(())
    }

    /// Asks and reads one line (trimmed); the end of input is an error.
    fn ask(&mut self, question: &str) -> anyhow::Result<String> {
        self.prompt(question)?;
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            bail!("the input ended before the profile was confirmed; nothing was written");
        }
        let line = line.trim().to_string();
        self.transcript.say("form", question);
        self.transcript.say("you", &line);
        Ok(line)
    }

    /// Asks until `parse` accepts the answer (an empty answer takes `default` when given).
    fn ask_parsed<T>(
        &mut self,
        question: &str,
        default: Option<&str>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> anyhow::Result<T> {
        for _ in 0..5 {
            let q = match default {
                Some(d) if !d.is_empty() => format!("{question} [{d}]"),
                _ => question.to_string(),
            };
            let mut a = self.ask(&q)?;
            if a.is_empty()
                && let Some(d) = default
            {
                a = d.to_string();
            }
            match parse(&a) {
                Ok(v) => return Ok(v),
                Err(e) => self.show(&format!("  {e}"))?,
            }
        }
        bail!("no valid answer to '{question}' after 5 tries")
    }

    fn yes(&mut self, question: &str, default: bool) -> anyhow::Result<bool> {
        self.ask_parsed(question, Some(if default { "y" } else { "n" }), |a| match a
            .to_ascii_lowercase()
            .as_str()
        {
            "y" | "yes" => Ok(true),
            "n" | "no" => Ok(false),
            _ => Err("answer y or n".into()),
        })
    }
}

/// An amount typed by a person (`45`, `45.5`, `45.50`, `$45`, `1,045.50`, `45,50`) in minor units
/// of a two-decimal currency.
pub fn parse_money(text: &str) -> Result<i64, String> {
    let t: String = text
        .trim()
        .trim_start_matches(['$', '€', '£'])
        .trim_end_matches(|c: char| c.is_ascii_alphabetic() || c.is_whitespace())
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let bad = || format!("'{}' is not an amount like 45 or 45.50", text.trim());
    if t.is_empty()
        || !t
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
    {
        return Err(bad());
    }
    // The last separator followed by one or two digits is the decimal point.
    let (major, minor) = match t.rfind(['.', ',']) {
        Some(i) if t.len() - i - 1 <= 2 && t.len() - i > 1 => (&t[..i], &t[i + 1..]),
        _ => (t.as_str(), ""),
    };
    let major: String = major.chars().filter(char::is_ascii_digit).collect();
    let major: i64 = if major.is_empty() {
        0
    } else {
        major.parse().map_err(|_| bad())?
    };
    let cents: i64 = match minor.len() {
        0 => 0,
        1 => minor.parse::<i64>().map_err(|_| bad())? * 10,
        _ => minor.parse().map_err(|_| bad())?,
    };
    major
        .checked_mul(100)
        .and_then(|m| m.checked_add(cents))
        .filter(|v| *v <= 1_000_000_000_000)
        .ok_or_else(bad)
}

fn money_parser(min: i64) -> impl Fn(&str) -> Result<i64, String> {
    move |a| {
        let v = parse_money(a)?;
        if v < min {
            return Err(format!("must be at least {}.{:02}", min / 100, min % 100));
        }
        Ok(v)
    }
}

fn non_empty(a: &str) -> Result<String, String> {
    if a.trim().is_empty() {
        Err("please type something".into())
    } else {
        Ok(a.trim().to_string())
    }
}

fn number(lo: u32, hi: u32) -> impl Fn(&str) -> Result<u32, String> {
    move |a| {
        a.parse::<u32>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("a whole number from {lo} to {hi}"))
    }
}

/// A stable id from a title: lower-case words joined by dashes, made unique among `taken`.
fn slug(prefix: &str, title: &str, taken: &[String]) -> String {
    let words: Vec<String> = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(5)
        .map(str::to_lowercase)
        .collect();
    let base = format!("{prefix}{}", words.join("-"));
    let base = if base == prefix {
        format!("{prefix}item")
    } else {
        base
    };
    let mut id = base.clone();
    let mut n = 2;
    while taken.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

fn list(a: &str) -> Vec<String> {
    a.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The profile by plain prompts.
pub fn form(t: &mut Terminal) -> anyhow::Result<Profile> {
    t.show("Let's set up your trading agent. Amounts are in your currency, e.g. 45 or 45.50.")?;
    let name = t.ask_parsed("Your name?", None, non_empty)?;
    let currency = t.ask_parsed("Currency?", Some("USD"), |a| {
        let c = a.trim().to_ascii_uppercase();
        if c.len() == 3 && c.chars().all(|x| x.is_ascii_alphabetic()) {
            Ok(c)
        } else {
            Err("a three-letter code such as USD or EUR".into())
        }
    })?;
    let budget = t.ask_parsed(
        "How much may your agent spend in all (your budget)?",
        None,
        money_parser(0),
    )?;
    let mut sell: Vec<SellItem> = Vec::new();
    while t.yes(
        if sell.is_empty() {
            "Do you want to sell something?"
        } else {
            "Another item to sell?"
        },
        false,
    )? {
        let item = ask_sell_item(t, &sell)?;
        sell.push(item);
    }
    let mut want: Vec<Want> = Vec::new();
    while t.yes(
        if want.is_empty() {
            "Do you want to buy something?"
        } else {
            "Anything else to buy?"
        },
        false,
    )? {
        let w = ask_want(t, &want)?;
        want.push(w);
    }
    let (owns, style, autonomy) = ask_style(t)?;
    let p = Profile {
        version: haggle_agents::profile::PROFILE_VERSION,
        name,
        budget,
        currency,
        sell,
        want,
        owns,
        style,
        autonomy,
    };
    p.validate()
        .map_err(|e| anyhow::anyhow!("the profile is not valid: {e}"))?;
    Ok(p)
}

/// One item to sell, by plain prompts (`sell`: the items so far, whose ids it must not take).
fn ask_sell_item(t: &mut Terminal, sell: &[SellItem]) -> anyhow::Result<SellItem> {
    let title = t.ask_parsed("  Title of the listing?", None, non_empty)?;
    let item_type = t.ask_parsed(
        "  What kind of thing is it (e.g. road bike)?",
        None,
        non_empty,
    )?;
    let category = t.ask_parsed("  Category (e.g. bikes, books, kitchen)?", None, non_empty)?;
    let condition = t.ask_parsed("  Condition?", Some("good"), |a| Ok(a.to_string()))?;
    let description = t.ask("  A short description?")?;
    let asking_price = t.ask_parsed("  Asking price?", None, money_parser(1))?;
    let floor_price = t.ask_parsed(
        "  Lowest price you would accept (kept private)?",
        None,
        move |a| {
            let v = money_parser(1)(a)?;
            if v > asking_price {
                Err("must not be above the asking price".into())
            } else {
                Ok(v)
            }
        },
    )?;
    let taken: Vec<String> = sell.iter().map(|i| i.item_id.clone()).collect();
    Ok(SellItem {
        item_id: slug("", &title, &taken),
        item_type,
        title,
        description,
        category,
        condition,
        asking_price,
        floor_price,
        attributes: Default::default(),
        claims: Default::default(),
        true_state: None,
        shipping_price: None,
        true_transit: None,
    })
}

/// One thing to buy, by plain prompts (`want`: the wants so far, whose ids it must not take).
fn ask_want(t: &mut Terminal, want: &[Want]) -> anyhow::Result<Want> {
    let description = t.ask_parsed("  What are you looking for?", None, non_empty)?;
    let item_type = t.ask_parsed(
        "  What kind of thing is it (e.g. road bike)?",
        None,
        non_empty,
    )?;
    let category = t.ask_parsed("  Category?", None, non_empty)?;
    let keywords = list(&t.ask("  Words a matching listing would contain (comma-separated)?")?);
    let max_price = t.ask_parsed(
        "  The most you would pay (kept private)?",
        None,
        money_parser(1),
    )?;
    let priority = t.ask_parsed("  Priority (1 = most wanted)?", Some("1"), number(1, 100))?;
    let quantity = t.ask_parsed("  How many?", Some("1"), number(1, 100))?;
    let taken: Vec<String> = want.iter().map(|w| w.want_id.clone()).collect();
    Ok(Want {
        want_id: slug("want-", &item_type, &taken),
        item_type,
        description,
        category,
        keywords,
        max_price,
        priority,
        quantity,
    })
}

/// What the agent must not buy again, how it bargains, and when it asks first, by plain prompts.
fn ask_style(t: &mut Terminal) -> anyhow::Result<(Vec<String>, Style, Autonomy)> {
    let owns = list(
        &t.ask("What do you already own that your agent must not buy again (comma-separated)?")?,
    );
    let persona = t.ask("How should your agent bargain and talk (e.g. polite, hard bargainer)?")?;
    let patience = t.ask_parsed(
        "How many turns may it spend on one negotiation?",
        Some("12"),
        number(1, 1000),
    )?;
    let may_reveal_limits = t.yes(
        "May it reveal your lowest and highest prices and your budget?",
        false,
    )?;
    let approval_above = t.ask_parsed(
        "Ask you before deals above this amount (empty: never ask)?",
        Some(""),
        |a| {
            if a.trim().is_empty() {
                Ok(None)
            } else {
                money_parser(1)(a).map(Some)
            }
        },
    )?;
    Ok((
        owns,
        Style {
            persona,
            patience,
            may_reveal_limits,
        },
        Autonomy {
            approval_above,
            per_deal_cap: None,
        },
    ))
}

/// The interviewer's instructions.
pub fn interviewer_prompt() -> String {
    format!(
        "# Haggle intake interviewer (template {INTERVIEW_TEMPLATE_VERSION})\n\n\
         You interview a person to set up their trading agent in Haggle, a classified-ads market where \
         AI agents buy and sell for people. In a short, friendly conversation (5 to 10 minutes), ask one \
         question at a time about:\n\
         1. their name and the currency (default USD), and how much the agent may spend in all (budget);\n\
         2. each thing to sell: a listing title, what kind of thing it is, a category, its condition, a \
         short description, the asking price and the lowest price they would accept;\n\
         3. each thing to buy: what it is, what kind of thing, a category, words a matching listing would \
         contain, the most they would pay, its priority (1 = most wanted) and how many;\n\
         4. what they already own, so the agent never buys a duplicate;\n\
         5. how the agent should bargain and talk (persona), how many turns it may spend on one \
         negotiation (patience, default 12), whether it may reveal their limits, and above which amount \
         a deal needs their approval (or never).\n\n\
         People say prices in money (\"45\", \"$45.50\"); the profile stores minor units (cents): 45 → \
         4500, 45.50 → 4550. The lowest price must not exceed the asking price. Ids are short \
         lower-case words joined by dashes, unique (e.g. `red-bike`, `want-kettle`).\n\
         When you know enough, call `propose_profile` with the whole profile. The person then sees it \
         and confirms or asks for changes. Never invent prices the person did not give."
    )
}

/// The JSON Schema of a profile, for the `propose_profile` tool.
pub fn profile_schema() -> Value {
    let s = |max: u64| json!({"type": "string", "maxLength": max});
    let money = json!({"type": "integer", "minimum": 0, "maximum": 1_000_000_000_000_i64});
    json!({
        "type": "object",
        "properties": {
            "name": s(100),
            "budget": money,
            "currency": {"type": "string", "maxLength": 3},
            "sell": {"type": "array", "maxItems": 50, "items": {
                "type": "object",
                "properties": {
                    "item_id": s(60), "item_type": s(60), "title": s(120), "description": s(400),
                    "category": s(60), "condition": s(40), "asking_price": money, "floor_price": money,
                },
                "required": ["item_id", "item_type", "title", "category", "asking_price", "floor_price"],
                "additionalProperties": false,
            }},
            "want": {"type": "array", "maxItems": 50, "items": {
                "type": "object",
                "properties": {
                    "want_id": s(60), "item_type": s(60), "description": s(400), "category": s(60),
                    "keywords": {"type": "array", "maxItems": 8, "items": s(40)},
                    "max_price": money,
                    "priority": {"type": "integer", "minimum": 1, "maximum": 100},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 100},
                },
                "required": ["want_id", "item_type", "description", "category", "max_price"],
                "additionalProperties": false,
            }},
            "owns": {"type": "array", "maxItems": 50, "items": s(100)},
            "style": {
                "type": "object",
                "properties": {
                    "persona": s(300),
                    "patience": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "may_reveal_limits": {"type": "boolean"},
                },
                "additionalProperties": false,
            },
            "autonomy": {
                "type": "object",
                "properties": {"approval_above": money, "per_deal_cap": money},
                "additionalProperties": false,
            },
        },
        "required": ["name", "budget", "sell", "want"],
        "additionalProperties": false,
    })
}

fn propose_tool() -> ToolSpec {
    ToolSpec {
        name: "propose_profile".into(),
        description:
            "Propose the complete profile (amounts in minor units). The person sees it and \
                      confirms it or asks for changes."
                .into(),
        input_schema: profile_schema(),
    }
}

/// A proposed profile, validated (errors name the field, for the model to fix).
fn read_profile(args: &Value) -> Result<Profile, String> {
    let p: Profile = serde_json::from_value(args.clone()).map_err(|e| e.to_string())?;
    p.validate().map_err(|e| e.to_string())?;
    Ok(p)
}

/// What the person decided about a shown profile.
enum Decision {
    Accept,
    Change(String),
    Quit,
}

fn decide(t: &mut Terminal, p: &Profile, out: &Path) -> anyhow::Result<Decision> {
    t.show(&format!(
        "\nYour profile:\n\n{}",
        toml::to_string_pretty(p).context("cannot show the profile")?
    ))?;
    let a = t.ask_parsed(
        &format!(
            "Write it to {}? (y = yes, n = change something, q = quit without writing)",
            out.display()
        ),
        None,
        |a| match a.to_ascii_lowercase().as_str() {
            "y" | "yes" => Ok('y'),
            "n" | "no" => Ok('n'),
            "q" | "quit" => Ok('q'),
            _ => Err("answer y, n or q".into()),
        },
    )?;
    Ok(match a {
        'y' => Decision::Accept,
        'q' => Decision::Quit,
        _ => Decision::Change(t.ask("What should change?")?),
    })
}

/// The LLM interview: the model asks, the person answers, until a proposed profile is accepted
/// (`Some`) or the person quits (`None`).
pub async fn conversation(
    model: &dyn ChatModel,
    t: &mut Terminal<'_>,
    out: &Path,
    max_turns: u32,
    max_tokens: u32,
) -> anyhow::Result<Option<Profile>> {
    let mut messages = vec![ChatMessage::User {
        text:
            "(The person has joined the interview. Greet them briefly and ask your first question.)"
                .into(),
    }];
    for _ in 0..max_turns {
        let req = ChatRequest {
            system: interviewer_prompt(),
            messages: messages.clone(),
            tools: vec![propose_tool()],
            max_tokens,
            temperature: Some(0.3),
            seed: None,
        };
        let (result, _) = model.chat(&req).await;
        let reply = result.map_err(|e| anyhow::anyhow!("the interviewer failed: {e}"))?;
        if let Some(e) = &reply.format_error {
            messages.push(ChatMessage::Assistant {
                text: reply.text.clone(),
                tool_calls: Vec::new(),
                thinking: reply.thinking.clone(),
            });
            messages.push(ChatMessage::User {
                text: format!("(Your reply could not be read: {e}. Answer again.)"),
            });
            continue;
        }
        if !reply.text.trim().is_empty() {
            t.show(&format!("\ninterviewer: {}", reply.text.trim()))?;
            t.transcript.say("interviewer", &reply.text);
        }
        messages.push(ChatMessage::Assistant {
            text: reply.text.clone(),
            tool_calls: reply.tool_calls.clone(),
            thinking: reply.thinking.clone(),
        });
        let Some(call) = reply.tool_calls.first() else {
            let answer = read_answer(t)?;
            t.transcript.say("you", &answer);
            messages.push(ChatMessage::User { text: answer });
            continue;
        };
        // Every call in the reply gets an answer; only the first proposal is considered.
        let mut results = ignored(&reply.tool_calls[1..]);
        let (content, is_error) = match weigh_proposal(t, call, out)? {
            Weighed::Answer(content, is_error) => (content, is_error),
            Weighed::Done(profile) => return Ok(profile),
        };
        results.insert(
            0,
            ToolResult {
                call_id: call.id.clone(),
                name: call.name.clone(),
                content,
                is_error,
            },
        );
        messages.push(ChatMessage::ToolResults {
            results,
            note: None,
        });
    }
    bail!("the interviewer did not propose an accepted profile within {max_turns} turns")
}

/// The answers to the calls after the first of a reply: only one proposal is weighed at a time.
fn ignored(calls: &[haggle_agents::llm::ToolCall]) -> Vec<ToolResult> {
    calls
        .iter()
        .map(|c| ToolResult {
            call_id: c.id.clone(),
            name: c.name.clone(),
            content: "ignored: propose one profile at a time".into(),
            is_error: true,
        })
        .collect()
}

/// The person's answer: one line of input (its end before a confirmed profile ends the interview).
fn read_answer(t: &mut Terminal) -> anyhow::Result<String> {
    t.prompt("you:")?;
    let mut line = String::new();
    if t.input.read_line(&mut line)? == 0 {
        bail!("the input ended before the profile was confirmed; nothing was written");
    }
    Ok(line.trim().to_string())
}

/// What the interview makes of the interviewer's first tool call.
enum Weighed {
    /// The tool's answer to the interviewer (and whether it is an error).
    Answer(String, bool),
    /// The interview is over: the accepted profile, or none when the person quit.
    Done(Option<Profile>),
}

/// Reads a proposed profile and, when it is valid, asks the person about it.
fn weigh_proposal(
    t: &mut Terminal,
    call: &haggle_agents::llm::ToolCall,
    out: &Path,
) -> anyhow::Result<Weighed> {
    let proposed = match (&call.malformed, call.name.as_str()) {
        (Some(m), _) => Err(m.clone()),
        (None, "propose_profile") => read_profile(&call.arguments),
        (None, other) => Err(format!("unknown tool `{other}`; use propose_profile")),
    };
    Ok(match proposed {
        Err(e) => {
            t.transcript.say("interviewer (invalid profile)", &e);
            Weighed::Answer(
                format!("The profile is not valid: {e}. Fix it or ask the person."),
                true,
            )
        }
        Ok(p) => {
            t.transcript.say(
                "interviewer (proposed profile)",
                &toml::to_string_pretty(&p).unwrap_or_default(),
            );
            match decide(t, &p, out)? {
                Decision::Accept => Weighed::Done(Some(p)),
                Decision::Quit => Weighed::Done(None),
                Decision::Change(what) => {
                    Weighed::Answer(format!("The person wants changes: {what}"), false)
                }
            }
        }
    })
}

/// The transcript file beside a profile: `alice.toml` → `alice.transcript.md`.
pub fn transcript_path(profile: &Path) -> PathBuf {
    profile.with_extension("transcript.md")
}

/// Writes the profile (TOML) and the transcript beside it.
pub fn write_profile(
    p: &Profile,
    out: &Path,
    transcript: &Transcript,
    how: &str,
) -> anyhow::Result<()> {
    let text = toml::to_string_pretty(p).context("cannot encode the profile")?;
    std::fs::write(out, &text).with_context(|| format!("cannot write {}", out.display()))?;
    let tp = transcript_path(out);
    std::fs::write(&tp, transcript.markdown(how))
        .with_context(|| format!("cannot write {}", tp.display()))?;
    Ok(())
}

/// The whole command on any terminal.
pub async fn interview(
    args: &InterviewArgs,
    model: Option<Arc<dyn ChatModel>>,
    t: &mut Terminal<'_>,
) -> anyhow::Result<bool> {
    let (profile, how) = match &model {
        None => {
            let p = form(t)?;
            let how = "Filled by `haggle interview --form`.".to_string();
            loop {
                match decide(t, &p, &args.out)? {
                    Decision::Accept => break (Some(p), how),
                    Decision::Quit => break (None, how),
                    Decision::Change(_) => {
                        t.show("Start again to change it (or edit the file after writing it).")?;
                    }
                }
            }
        }
        Some(m) => {
            let how = format!(
                "Interviewer `{}:{}`, instructions {INTERVIEW_TEMPLATE_VERSION}.",
                m.provider(),
                m.model()
            );
            let p = conversation(
                m.as_ref(),
                t,
                &args.out,
                args.max_turns,
                args.llm.llm_max_tokens,
            )
            .await?;
            (p, how)
        }
    };
    match profile {
        Some(p) => {
            write_profile(&p, &args.out, &t.transcript, &how)?;
            t.show(&format!(
                "Wrote {} and {}.",
                args.out.display(),
                transcript_path(&args.out).display()
            ))?;
            Ok(true)
        }
        None => {
            t.show("Nothing written.")?;
            Ok(false)
        }
    }
}

/// `haggle interview` on the process's terminal.
pub async fn run(args: InterviewArgs) -> anyhow::Result<()> {
    let model = match (&args.brain, args.form) {
        (None, false) => {
            bail!("choose an interviewer with --brain MODEL, or --form for plain prompts")
        }
        (None, true) => None,
        (Some(b), _) => {
            let f = args.llm.factory(Arc::new(CallLog::discard()), "USD")?;
            match f.model(b).map_err(|e| anyhow::anyhow!("--brain: {e}"))? {
                Some((m, _)) => Some(m),
                None => bail!("--brain must be a language model (anthropic:…, openai:…), not {b}"),
            }
        }
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut output = std::io::stdout();
    let piped = {
        use std::io::IsTerminal;
        !stdin.is_terminal()
    };
    let mut t = Terminal {
        input: &mut input,
        output: &mut output,
        transcript: Transcript::default(),
        piped,
    };
    interview(&args, model, &mut t).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use haggle_agents::brain::BoxFuture;
    use haggle_agents::llm::{ChatError, ChatResponse, Exchange, StopReason, ToolCall, Usage};
    use std::sync::Mutex;

    #[test]
    fn money_is_read_as_minor_units() {
        for (text, v) in [
            ("45", 4500),
            ("45.5", 4550),
            ("45.50", 4550),
            ("$45", 4500),
            ("45,50", 4550),
            ("1,045.50", 104_550),
            ("1,045", 104_500),
            (" 12 USD ", 1200),
            ("0.99", 99),
        ] {
            assert_eq!(parse_money(text), Ok(v), "{text}");
        }
        for bad in ["", "abc", "4-5", "1e9", "99999999999999"] {
            assert!(parse_money(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_slugs_unique_among_their_kind() {
        assert_eq!(slug("", "Red road bike!", &[]), "red-road-bike");
        assert_eq!(
            slug("", "Red road bike", &["red-road-bike".into()]),
            "red-road-bike-2"
        );
        assert_eq!(slug("want-", "kettle", &[]), "want-kettle");
        assert_eq!(slug("", "!!!", &[]), "item");
    }

    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn scratch(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("haggle-interview-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }

    fn args(out: &Path, form: bool) -> InterviewArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: InterviewArgs,
        }
        let out = out.display().to_string();
        let mut argv = vec!["x", "--out", out.as_str()];
        if form {
            argv.push("--form");
        }
        Cli::parse_from(argv).a
    }

    const FORM_ANSWERS: &str = "Ada\n\n100\ny\nRed road bike\nroad bike\nbikes\n\n54 cm, new tyres\n60\n70\n45.50\ny\nDesk lamp\ndesk lamp\nhome\n\n\n20\n15\nn\ny\nA kettle\nkettle\nkitchen\nkettle, electric\n25\n\n\nn\ntoaster, kettle\nhard but polite\n\n\n80\ny\n";

    #[tokio::test]
    async fn the_form_fills_the_profile_and_writes_it_with_the_transcript_after_confirmation() {
        let dir = scratch("form");
        let out = dir.0.join("ada.toml");
        let mut input = std::io::Cursor::new(FORM_ANSWERS.as_bytes());
        let mut output = Vec::new();
        let mut t = Terminal {
            input: &mut input,
            output: &mut output,
            transcript: Transcript::default(),
            piped: false,
        };
        assert!(interview(&args(&out, true), None, &mut t).await.unwrap());
        let shown = String::from_utf8(output).unwrap();
        assert!(
            shown.contains("must not be above the asking price"),
            "a lowest price above the ask is asked again: {shown}"
        );
        let p = Profile::from_toml(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(
            (p.name.as_str(), p.currency.as_str(), p.budget),
            ("Ada", "USD", 10_000)
        );
        assert_eq!(p.sell.len(), 2);
        let bike = &p.sell[0];
        assert_eq!(
            (
                bike.item_id.as_str(),
                bike.asking_price,
                bike.floor_price,
                bike.condition.as_str()
            ),
            ("red-road-bike", 6_000, 4_550, "good")
        );
        assert_eq!(
            (p.sell[1].asking_price, p.sell[1].floor_price),
            (2_000, 1_500)
        );
        assert_eq!(p.want.len(), 1);
        let w = &p.want[0];
        assert_eq!(
            (w.want_id.as_str(), w.max_price, w.priority, w.quantity),
            ("want-kettle", 2_500, 1, 1)
        );
        assert_eq!(w.keywords, vec!["kettle", "electric"]);
        assert_eq!(p.owns, vec!["toaster", "kettle"]);
        assert_eq!(p.style.persona, "hard but polite");
        assert_eq!((p.style.patience, p.style.may_reveal_limits), (12, false));
        assert_eq!(p.autonomy.approval_above, Some(8_000));
        let transcript = std::fs::read_to_string(dir.0.join("ada.transcript.md")).unwrap();
        assert!(transcript.contains("**you:** 45.50") && transcript.contains("--form"));
    }

    #[tokio::test]
    async fn piped_answers_get_each_prompt_on_its_own_line() {
        let dir = scratch("piped");
        let out = dir.0.join("ada.toml");
        let mut input = std::io::Cursor::new(FORM_ANSWERS.as_bytes());
        let mut output = Vec::new();
        let mut t = Terminal {
            input: &mut input,
            output: &mut output,
            transcript: Transcript::default(),
            piped: true,
        };
        assert!(interview(&args(&out, true), None, &mut t).await.unwrap());
        let shown = String::from_utf8(output).unwrap();
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines.contains(&"Your name?"), "{shown}");
        assert!(lines.contains(&"Currency? [USD]"), "{shown}");
        assert!(
            !shown.contains("? Currency?"),
            "no two prompts on one line: {shown}"
        );
    }

    #[tokio::test]
    async fn nothing_is_written_without_confirmation() {
        let dir = scratch("quit");
        let out = dir.0.join("p.toml");
        let answers = FORM_ANSWERS.trim_end().trim_end_matches('y').to_string() + "q\n";
        let mut input = std::io::Cursor::new(answers.into_bytes());
        let mut output = Vec::new();
        let mut t = Terminal {
            input: &mut input,
            output: &mut output,
            transcript: Transcript::default(),
            piped: false,
        };
        assert!(!interview(&args(&out, true), None, &mut t).await.unwrap());
        assert!(!out.exists());
        // Input that ends early is an error, and writes nothing either.
        let mut input = std::io::Cursor::new(b"Ada\nUSD\n".to_vec());
        let mut output = Vec::new();
        let mut t = Terminal {
            input: &mut input,
            output: &mut output,
            transcript: Transcript::default(),
            piped: false,
        };
        let e = interview(&args(&out, true), None, &mut t)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("nothing was written"), "{e}");
        assert!(!out.exists());
    }

    /// An interviewer that asks two questions, proposes an invalid profile, then a valid one,
    /// then (after the person asks for a change) the changed one.
    struct Interviewer {
        requests: Mutex<Vec<ChatRequest>>,
    }

    impl ChatModel for Interviewer {
        fn provider(&self) -> &'static str {
            "scripted"
        }
        fn model(&self) -> &str {
            "interviewer"
        }
        fn chat<'a>(
            &'a self,
            req: &'a ChatRequest,
        ) -> BoxFuture<'a, (Result<ChatResponse, ChatError>, Exchange)> {
            Box::pin(async move {
                let n = {
                    let mut r = self.requests.lock().unwrap();
                    r.push(req.clone());
                    r.len()
                };
                let profile = |floor: i64| {
                    json!({"name": "Ada", "budget": 10000, "currency": "USD",
                       "sell": [{"item_id": "bike", "item_type": "road bike", "title": "Red road bike",
                                 "category": "bikes", "asking_price": 6000, "floor_price": floor}],
                       "want": [], "owns": ["kettle"], "style": {"persona": "polite"}})
                };
                let call = |args: Value| ToolCall {
                    id: format!("c{n}"),
                    name: "propose_profile".into(),
                    arguments: args,
                    malformed: None,
                };
                let (text, calls) = match n {
                    1 => (
                        "Hi! What's your name, and what would you like to sell?",
                        vec![],
                    ),
                    2 => ("What is the lowest price you'd take for the bike?", vec![]),
                    3 => ("", vec![call(profile(7000))]),
                    4 => ("", vec![call(profile(4500))]),
                    _ => ("", vec![call(profile(4000))]),
                };
                let resp = ChatResponse {
                    text: text.into(),
                    stop: if calls.is_empty() {
                        StopReason::EndTurn
                    } else {
                        StopReason::ToolUse
                    },
                    tool_calls: calls,
                    usage: Usage::default(),
                    format_error: None,
                    thinking: Vec::new(),
                };
                let ex = Exchange {
                    provider: "scripted".into(),
                    model: "interviewer".into(),
                    url: String::new(),
                    request: Value::Null,
                    response: None,
                    status: None,
                    attempts: 1,
                    latency_ms: 0,
                    earlier: Vec::new(),
                };
                (Ok(resp), ex)
            })
        }
    }

    #[tokio::test]
    async fn an_llm_interviewer_asks_fixes_an_invalid_profile_and_writes_the_confirmed_one() {
        let dir = scratch("llm");
        let out = dir.0.join("ada.toml");
        let model = Arc::new(Interviewer {
            requests: Mutex::new(Vec::new()),
        });
        let mut input = std::io::Cursor::new(
            b"I'm Ada, selling my red road bike for 60\n45\nn\nmake the lowest 40\ny\n".to_vec(),
        );
        let mut output = Vec::new();
        let mut t = Terminal {
            input: &mut input,
            output: &mut output,
            transcript: Transcript::default(),
            piped: false,
        };
        let mut a = args(&out, false);
        a.brain = Some("scripted".into());
        assert!(interview(&a, Some(model.clone()), &mut t).await.unwrap());
        let p = Profile::from_toml(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(
            p.sell[0].floor_price, 4_000,
            "the changed profile was written"
        );
        let reqs = model.requests.lock().unwrap();
        assert!(reqs[0].system.contains(INTERVIEW_TEMPLATE_VERSION));
        assert_eq!(reqs[0].tools[0].name, "propose_profile");
        let ChatMessage::ToolResults { results, .. } = reqs[3].messages.last().unwrap() else {
            panic!("the invalid profile's error goes back to the model");
        };
        assert!(results[0].is_error && results[0].content.contains("sell[0].asking_price"));
        let ChatMessage::ToolResults { results, .. } = reqs[4].messages.last().unwrap() else {
            panic!("the change request goes back to the model");
        };
        assert_eq!(
            results[0].content,
            "The person wants changes: make the lowest 40"
        );
        let shown = String::from_utf8(output).unwrap();
        assert!(shown.contains("interviewer: Hi! What's your name"));
        assert!(
            shown.contains("floor_price = 4500"),
            "the profile is shown before writing"
        );
        let transcript = std::fs::read_to_string(transcript_path(&out)).unwrap();
        assert!(transcript.contains("**you:** I'm Ada, selling my red road bike for 60"));
        assert!(transcript.contains("Interviewer `scripted:interviewer`"));
    }

    #[test]
    fn the_profile_schema_accepts_what_the_profile_reads() {
        let p = json!({"name": "Ada", "budget": 1, "sell": [], "want": [
            {"want_id": "w", "item_type": "t", "description": "d", "category": "c", "max_price": 5}]});
        haggle_agents::tools::check_against(&profile_schema(), &p).unwrap();
        assert!(read_profile(&p).is_ok());
        assert!(
            read_profile(&json!({"name": "Ada", "budget": 1, "sell": [], "want": [], "x": 1}))
                .is_err()
        );
    }
}
