//! Runs a whole market of agents in-process: creates the market from a scenario on its own
//! database, registers every participant with its budget and mandate, gives each an agent with
//! its brain, and schedules turns on the market's simulated clock — round-based (a seeded order
//! each round) or event-driven (agents wake on news). Turns of LLM brains run concurrently (as
//! many model calls at once as the brain factory's call slots allow), holding the market in turn
//! through a [`Sequencer`] that records the order, so a replay is exact. Time and randomness are
//! injected: the service runs on a fixed manual clock and the market's clock is simulated.

use crate::external::{self, Outside, Ready, Seat, Served};
use anyhow::{Context, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use haggle_agents::runtime::Agent;
use haggle_agents::sequencer::Sequencer;
use haggle_api::haggle_core::{ClockMode, HOUR_MS, MarketRules, limits};
use haggle_api::{CreateMarket, ParticipantCreated, RegisterParticipant};
use haggle_lab::scenario::Scenario;
use haggle_service::{Caller, Config, InProcess, ManualClock, Role, Service, Store};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Commands per commit of a simulation's SQLite database (group commit): a commit costs page
/// writes to the WAL, and consecutive commands touch the same pages (the market's head, the
/// event log's tail, index pages), so a batch writes them once. The end of every round commits
/// too, so in practice a batch is a round (measured at 10,000 participants: 1,024 commands per
/// commit 87 s, 8,192 73 s, a round 68 s).
const COMMANDS_PER_COMMIT: usize = 65536;

/// 2026-01-05 09:00 UTC: every simulated market starts here, so runs replay exactly.
pub const SIM_START_MS: i64 = 1_767_603_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Rounds,
    Events,
}

pub struct SimConfig {
    pub scenario: Scenario,
    /// Brain names assigned to participants in turn (participant i gets `brains[i % len]`).
    pub brains: Vec<String>,
    pub seed: u64,
    pub max_rounds: u64,
    /// Simulated time per round.
    pub tick_ms: i64,
    pub mode: Mode,
    pub database: String,
    /// Makes each participant's brain (rule brains and language models).
    pub factory: haggle_agents::registry::BrainFactory,
    /// Withhold (not only count) outgoing texts with a private number.
    pub withhold_leaks: bool,
    /// The market's rules ([`market_rules`] unless an experiment's run group changes them).
    pub rules: MarketRules,
    /// Brains see every seller's record as empty (the arm without reputation).
    pub hide_reputation: bool,
    /// Repeated markets: the sessions after the first, in order (empty: one session, as
    /// before). The same participants trade again in the same market, so the record the
    /// market keeps of them (reputation) carries over.
    pub sessions: Vec<Session>,
    /// Whether each later session tops the cash up to the session's budget or carries it over.
    pub session_budget: SessionBudget,
    /// With `external` or `human` brains: how they are served (unused without).
    pub outside: external::OutsideConfig,
    /// Items shipped instead of handed over, their delivery times and losses drawn from the
    /// run's seed (`None`: in person, and nothing more is drawn).
    pub shipping: Option<haggle_lab::shipping::ShippingModel>,
}

pub use haggle_lab::experiment::SessionBudget;

/// One later session of a repeated market.
#[derive(Debug, Clone)]
pub struct Session {
    /// Each participant's profile for the session (its items, wants and budget), in the
    /// scenario's order, under the participant's name.
    pub profiles: Vec<haggle_agents::profile::Profile>,
}

/// What one session of a run was (every run has at least one).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionMark {
    /// 1-based.
    pub session: u32,
    /// The market clock when its first round started (its listings are posted from then on).
    pub started_at: i64,
    pub rounds: u64,
    /// The market's record of its participants when the session started: settled deals and
    /// revealed ratings over all of them (what reputation carried over).
    pub completed_deals_at_start: u64,
    pub ratings_at_start: u64,
    /// Participants whose record showed at least one settled deal when the session started.
    pub participants_with_record: u64,
    /// Agent name → the note it read at the start of the session (LLM brains; empty in the
    /// first session).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub memories: BTreeMap<String, String>,
}

/// Live figures for the progress display.
pub struct Progress {
    pub round: u64,
    pub max_rounds: u64,
    pub sim_ms: i64,
    pub deals: u64,
    pub volume: i64,
    /// Agent turns taken so far, and events in the market's log (its newest seq).
    pub turns: u64,
    pub events: u64,
}

pub struct Member {
    pub name: String,
    pub participant_id: i64,
    pub brain: String,
    pub agent_token: String,
    pub principal_token: String,
}

pub struct SimOutput {
    pub svc: Arc<Service>,
    pub market_id: i64,
    pub operator_token: String,
    pub observer_token: String,
    pub members: Vec<Member>,
    pub agents: Vec<Agent<InProcess>>,
    pub rounds: u64,
    pub sim_ms: i64,
    /// Per agent (participant name), the rounds in which the market applied its action first.
    pub first_movers: BTreeMap<String, u64>,
    /// The most turns that were in flight at once.
    pub peak_turns: usize,
    /// Which price table priced the run's model calls (its source and date).
    pub prices: String,
    /// With misdescribers: their record at the end of each round (else empty).
    pub trust_timeline: Vec<haggle_lab::trust::ReputationPoint>,
    /// Every session of the run, in order (one without repeated markets).
    pub sessions: Vec<SessionMark>,
    /// Per participant driven from outside (`external`, `human`): its turns, how many it ended
    /// and how many timed out, its commands (empty without such participants).
    pub outside: BTreeMap<String, external::OutsideTally>,
}

/// The brain that overstates its items' claims.
pub const MISDESCRIBER: &str = "adversary:misdescriber";

pub fn market_rules() -> MarketRules {
    MarketRules {
        offer_ttl_ms: 24 * HOUR_MS,
        max_offers_per_thread: Some(10),
        confirmation_window_ms: 48 * HOUR_MS,
        ..MarketRules::default()
    }
}

fn api(e: haggle_service::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", e.body.error.code, e.body.error.message)
}

/// Sets up the market and runs it to the end.
pub async fn run(cfg: SimConfig, mut progress: impl FnMut(&Progress)) -> anyhow::Result<SimOutput> {
    check_brains(&cfg)?;
    let mut cfg = cfg;
    let on_ready = cfg.outside.on_ready.take();
    let market = open_market(&cfg).await?;
    let outside = outside_of(&cfg, &market)?;
    let (members, agents) = register(&cfg, &market, outside.as_ref()).await?;
    // Outside participants reach the market over the API while the run goes on (a replay needs
    // no agent: their recorded commands are applied at their turns).
    let served = match &outside {
        Some(o) if cfg.factory.replay.is_none() => {
            let served = Served::start(market.svc.clone(), cfg.outside.listen).await?;
            if let Some(f) = on_ready {
                f(&ready(&served, &market, &members, o.budget()));
            }
            Some(served)
        }
        _ => None,
    };
    let scheduled = schedule(&cfg, &market, &members, agents, &mut progress).await;
    if let Some(s) = served {
        s.stop().await;
    }
    let (agents, rounds, now, run) = scheduled?;
    market.svc.store().flush().await?;
    Ok(SimOutput {
        svc: market.svc,
        market_id: market.id,
        operator_token: market.operator_token,
        observer_token: market.observer_token,
        members,
        agents,
        rounds,
        sim_ms: now - SIM_START_MS,
        first_movers: run.seq.first_movers(),
        peak_turns: run.peak_turns,
        prices: cfg.factory.prices.source.clone(),
        trust_timeline: run.trust_timeline,
        sessions: run.marks,
        outside: outside.map(|o| o.tally()).unwrap_or_default(),
    })
}

/// Unknown names and missing API keys stop the run before the market exists.
fn check_brains(cfg: &SimConfig) -> anyhow::Result<()> {
    if cfg.brains.is_empty() {
        bail!("--brains needs at least one brain");
    }
    for b in cfg.brains.iter().filter(|b| !external::is_outside(b)) {
        cfg.factory
            .check(b)
            .map_err(|e| anyhow::anyhow!("--brains: {e}"))?;
    }
    if let Some(b) = cfg.outside.turn_budget
        && (b.is_zero() || b.as_millis() > u128::from(limits::MAX_TURN_BUDGET_MS))
    {
        bail!(
            "the turn budget must be between 1 ms and {} s, got {} ms",
            limits::MAX_TURN_BUDGET_MS / 1000,
            b.as_millis()
        );
    }
    Ok(())
}

/// The simulation's market on its own service, and its operator's and observer's tokens.
struct SimMarket {
    svc: Arc<Service>,
    operator: Caller,
    id: i64,
    operator_token: String,
    observer_token: String,
}

async fn open_market(cfg: &SimConfig) -> anyhow::Result<SimMarket> {
    // The simulation owns its database: commits are grouped (each command stays atomic), the
    // end of every round commits the rest, and the file is held exclusively until the
    // simulation's store closes (its memory is the file's only writer).
    let store = Store::open_batched(&cfg.database, COMMANDS_PER_COMMIT)
        .await
        .with_context(|| format!("cannot open {}", cfg.database))?;
    let svc = Service::new(
        store,
        Arc::new(ManualClock::new(SIM_START_MS)),
        Config {
            rate_per_sec: 0,
            ..Config::default()
        },
    );
    let operator = Caller {
        role: Role::Operator,
        market: None,
        participant: None,
        scope: "sim".into(),
    };
    let req = CreateMarket {
        name: cfg.scenario.name.clone(),
        currency: cfg.scenario.currency.clone(),
        clock: Some(ClockMode::Simulated),
        sim_start_ms: Some(SIM_START_MS),
        rules: Some(cfg.rules.clone()),
    };
    let market: haggle_api::haggle_core::Market = serde_json::from_str(
        &svc.create_market(&operator, req, None)
            .await
            .map_err(api)?
            .body,
    )?;
    let m = market.id;
    let operator_token = svc
        .create_token(Role::Operator, Some(m), None, "demo operator")
        .await
        .map_err(api)?;
    let observer_token = svc
        .create_token(Role::Observer, Some(m), None, "demo observer")
        .await
        .map_err(api)?;
    Ok(SimMarket {
        svc,
        operator,
        id: m,
        operator_token,
        observer_token,
    })
}

/// With outside participants (`external`, `human`): what their brains share (else `None`).
fn outside_of(cfg: &SimConfig, market: &SimMarket) -> anyhow::Result<Option<Arc<Outside>>> {
    if !cfg.brains.iter().any(|b| external::is_outside(b)) {
        return Ok(None);
    }
    let default_ms = if cfg.brains.iter().any(|b| b == external::HUMAN) {
        limits::DEFAULT_HUMAN_TURN_BUDGET_MS
    } else {
        limits::DEFAULT_TURN_BUDGET_MS
    };
    let budget = cfg
        .outside
        .turn_budget
        .unwrap_or(std::time::Duration::from_millis(default_ms));
    Outside::new(
        market.svc.clone(),
        market.operator.clone(),
        market.id,
        budget,
        cfg.factory.replay.clone(),
        cfg.factory.log(),
    )
    .map(Some)
}

fn ready(
    served: &Served,
    market: &SimMarket,
    members: &[Member],
    budget: std::time::Duration,
) -> Ready {
    Ready {
        url: served.url.clone(),
        market_id: market.id,
        seats: members
            .iter()
            .filter(|x| external::is_outside(&x.brain))
            .map(|x| Seat {
                name: x.name.clone(),
                participant_id: x.participant_id,
                brain: x.brain.clone(),
                agent_token: x.agent_token.clone(),
                principal_token: x.principal_token.clone(),
            })
            .collect(),
        turn_budget: budget,
    }
}

/// The profiles as the run trades them: with misdescribers in the market every item carries
/// claims and its true state (inspected at handover), and theirs overstate some; without,
/// profiles stay as the scenario wrote them.
fn run_profiles(cfg: &SimConfig) -> Vec<haggle_agents::profile::Profile> {
    let mut profiles = cfg.scenario.profiles.clone();
    if has_misdescribers(cfg) {
        for (i, p) in profiles.iter_mut().enumerate() {
            if cfg.brains[i % cfg.brains.len()] == MISDESCRIBER {
                haggle_agents::adversaries::misdescribe_profile(p, cfg.seed.wrapping_add(i as u64));
            } else {
                haggle_agents::adversaries::describe_profile(p);
            }
        }
    }
    profiles
}

fn has_misdescribers(cfg: &SimConfig) -> bool {
    cfg.brains.iter().any(|b| b == MISDESCRIBER)
}

/// Registers every participant with its budget and mandate and gives it an agent with its brain.
async fn register(
    cfg: &SimConfig,
    market: &SimMarket,
    outside: Option<&Arc<Outside>>,
) -> anyhow::Result<(Vec<Member>, Vec<Agent<InProcess>>)> {
    let (svc, m) = (&market.svc, market.id);
    let mut members = Vec::new();
    let mut agents = Vec::new();
    let mut profiles = run_profiles(cfg);
    if let Some(model) = &cfg.shipping {
        haggle_lab::shipping::ship_profiles(&mut profiles, model, cfg.seed);
    }
    for (i, profile) in profiles.iter().enumerate() {
        let brain_name = cfg.brains[i % cfg.brains.len()].clone();
        let reg = RegisterParticipant {
            name: profile.name.clone(),
            budget: profile.budget,
            mandate: Some(profile.mandate()),
        };
        let created: ParticipantCreated = serde_json::from_str(
            &svc.register_participant(&market.operator, m, reg, None)
                .await
                .map_err(api)?
                .body,
        )?;
        let brain = match outside {
            Some(o) if external::is_outside(&brain_name) => {
                o.brain(&brain_name, &profile.name, created.participant.id)
            }
            _ => cfg
                .factory
                .make(
                    &brain_name,
                    cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                    &profile.name,
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        let client = InProcess::from_token(svc.clone(), &created.agent_token)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        agents.push(
            Agent::new(profile.clone(), client, brain)
                .withhold_leaks(cfg.withhold_leaks)
                .hide_reputation(cfg.hide_reputation),
        );
        members.push(Member {
            name: profile.name.clone(),
            participant_id: created.participant.id,
            brain: brain_name,
            agent_token: created.agent_token,
            principal_token: created.principal_token,
        });
    }
    Ok((members, agents))
}

/// What the scheduling of a run produced beside its agents.
struct Scheduled {
    seq: Arc<Sequencer>,
    peak_turns: usize,
    trust_timeline: Vec<haggle_lab::trust::ReputationPoint>,
    marks: Vec<SessionMark>,
}

/// The scheduler's state across sessions and rounds.
struct Scheduler<'a> {
    cfg: &'a SimConfig,
    market: &'a SimMarket,
    members: &'a [Member],
    agents: Vec<Agent<InProcess>>,
    seq: Arc<Sequencer>,
    concurrent: bool,
    rng: rand::rngs::StdRng,
    order: Vec<usize>,
    last_turn: Vec<u64>,
    peak_turns: usize,
    trust: bool,
    trust_timeline: Vec<haggle_lab::trust::ReputationPoint>,
}

/// Runs every session of the market, round by round. Returns the agents, the rounds run in all,
/// the market clock at the end, and what the scheduling recorded.
async fn schedule(
    cfg: &SimConfig,
    market: &SimMarket,
    members: &[Member],
    agents: Vec<Agent<InProcess>>,
    progress: &mut impl FnMut(&Progress),
) -> anyhow::Result<(Vec<Agent<InProcess>>, u64, i64, Scheduled)> {
    // Rule brains keep the sequential order (byte-identical runs for a seed); with an LLM brain
    // in the market, turns run concurrently through the market's sequencer.
    // A replay of a run recorded before turns ran concurrently (no market order in its log)
    // follows that run's sequential order.
    let recorded_sequential = cfg
        .factory
        .replay
        .as_ref()
        .is_some_and(|r| r.market_order().is_empty());
    let concurrent = agents.iter().any(|a| a.brain.concurrent()) && !recorded_sequential;
    let seq = match (&cfg.factory.replay, concurrent) {
        (Some(recording), true) => Sequencer::replaying(recording.clone(), cfg.factory.log()),
        (None, true) => Sequencer::recording(cfg.factory.log()),
        (_, false) => Sequencer::free(),
    };
    let agents: Vec<Agent<InProcess>> = agents
        .into_iter()
        .map(|a| a.sequenced(seq.clone()))
        .collect();
    let mut s = Scheduler {
        cfg,
        market,
        members,
        order: (0..agents.len()).collect(),
        last_turn: vec![0u64; agents.len()],
        agents,
        seq,
        concurrent,
        rng: rand::rngs::StdRng::seed_from_u64(cfg.seed),
        peak_turns: 0,
        trust: has_misdescribers(cfg),
        trust_timeline: Vec::new(),
    };
    let n_sessions = 1 + cfg.sessions.len() as u32;
    let (mut marks, mut total_rounds, mut now) = (Vec::new(), 0u64, SIM_START_MS);
    for session in 1..=n_sessions {
        let (mark, end) = s.session(session, n_sessions, progress).await?;
        total_rounds += mark.rounds;
        now = end;
        marks.push(mark);
    }
    let scheduled = Scheduled {
        seq: s.seq,
        peak_turns: s.peak_turns,
        trust_timeline: s.trust_timeline,
        marks,
    };
    Ok((s.agents, total_rounds, now, scheduled))
}

impl Scheduler<'_> {
    fn m(&self) -> i64 {
        self.market.id
    }

    async fn sim_now(&self) -> anyhow::Result<i64> {
        Ok(self
            .market
            .svc
            .store()
            .market(self.m())
            .await?
            .map_or(SIM_START_MS, |mk| mk.sim_now))
    }

    /// One session: its rounds until the market is quiet or the last round, then the
    /// confirmation windows pass and every agent takes a last turn. Returns the session's mark
    /// and the market clock at its end.
    async fn session(
        &mut self,
        session: u32,
        n_sessions: u32,
        progress: &mut impl FnMut(&Progress),
    ) -> anyhow::Result<(SessionMark, i64)> {
        let (svc, cfg) = (&self.market.svc, self.cfg);
        let mut memories = BTreeMap::new();
        if session > 1 {
            memories = next_session(
                svc,
                &self.market.operator,
                self.m(),
                cfg,
                session,
                self.members,
                &mut self.agents,
                self.trust,
            )
            .await?;
            self.last_turn.iter_mut().for_each(|t| *t = 0);
        }
        let mut mark = session_mark(svc, self.m(), self.members, session).await?;
        mark.memories = memories;
        let (mut idle, mut rounds) = (0, 0);
        let mut done_before: u64 = self.agents.iter().map(|a| a.successful_actions()).sum();
        for round in 0..cfg.max_rounds {
            rounds = round + 1;
            self.round(round, progress).await?;
            let done: u64 = self.agents.iter().map(|a| a.successful_actions()).sum();
            idle = if done == done_before { idle + 1 } else { 0 };
            done_before = done;
            // Quiet for several rounds: nobody can or will act any more (unless parcels are
            // still on their way: their buyers act once they arrive or are overdue).
            if idle >= 4 && !(cfg.shipping.is_some() && in_transit(svc, self.m()).await?) {
                break;
            }
        }
        // Let the confirmation windows pass, so handed-over deals complete, then a last turn each.
        svc.advance_clock(
            &self.market.operator,
            self.m(),
            cfg.rules.confirmation_window_ms,
            None,
        )
        .await
        .map_err(api)?;
        let now = self.sim_now().await?;
        self.turns(now, rounds, Due::Last).await;
        if session == n_sessions {
            self.seq.finish();
        }
        self.after_turns(rounds + 1).await?;
        mark.rounds = rounds;
        Ok((mark, now))
    }

    /// Runs the due turns of one round (`round` counts from 0) in a fresh seeded order.
    async fn turns(&mut self, now: i64, round: u64, due: Due) {
        let turns = Turns {
            order: &self.order,
            seq: &self.seq,
            now,
            round,
            due,
        };
        let peak = if self.concurrent {
            turns
                .concurrent(&mut self.agents, &mut self.last_turn)
                .await
        } else {
            turns
                .sequential(&mut self.agents, &mut self.last_turn)
                .await
        };
        self.peak_turns = self.peak_turns.max(peak);
        self.seq.end_round();
    }

    /// After a round's turns: with misdescribers or shipping, the operator rules on disputes;
    /// misdescribers' record is kept (`point` is the round the record is of).
    async fn after_turns(&mut self, point: u64) -> anyhow::Result<()> {
        let (svc, m) = (&self.market.svc, self.m());
        if self.trust || self.cfg.shipping.is_some() {
            arbitrate(svc, &self.market.operator, m).await?;
        }
        if self.trust {
            record_misdescribers(svc, m, self.members, point, &mut self.trust_timeline).await?;
        }
        Ok(())
    }

    /// One round: every due agent's turn, the operator's work, the clock moves on a tick, the
    /// round commits.
    async fn round(
        &mut self,
        round: u64,
        progress: &mut impl FnMut(&Progress),
    ) -> anyhow::Result<()> {
        let (svc, cfg) = (self.market.svc.clone(), self.cfg);
        let now = self.sim_now().await?;
        self.order.shuffle(&mut self.rng);
        let due = match cfg.mode {
            Mode::Rounds => Due::Always,
            Mode::Events => Due::OnNews,
        };
        self.turns(now, round, due).await;
        self.after_turns(round + 1).await?;
        svc.advance_clock(&self.market.operator, self.m(), cfg.tick_ms, None)
            .await
            .map_err(api)?;
        svc.store().flush().await?;
        // The market grows fast at first: fresh planner statistics keep per-agent reads indexed.
        if round == 0 || round.is_power_of_two() {
            svc.store().analyze().await?;
        }
        let (deals, volume) = deal_totals(&svc, &self.market.operator, self.m()).await?;
        let newest = svc
            .store()
            .recent_events(self.m(), haggle_store::Viewer::All, &[], None, 1)
            .await?;
        progress(&Progress {
            round: round + 1,
            max_rounds: cfg.max_rounds,
            sim_ms: now + cfg.tick_ms - SIM_START_MS,
            deals,
            volume,
            turns: self.agents.iter().map(|a| a.stats.turns).sum(),
            events: newest.first().map_or(0, |e| e.seq.max(0) as u64),
        });
        Ok(())
    }
}

/// The market's record of the participants as the session starts (reputation carried over).
async fn session_mark(
    svc: &Service,
    m: i64,
    members: &[Member],
    session: u32,
) -> anyhow::Result<SessionMark> {
    let started_at = svc
        .store()
        .market(m)
        .await?
        .map_or(SIM_START_MS, |mk| mk.sim_now);
    let mut mark = SessionMark {
        session,
        started_at,
        ..SessionMark::default()
    };
    if session == 1 {
        return Ok(mark);
    }
    for x in members {
        let r = svc
            .store()
            .reputation(m, x.participant_id, SIM_START_MS)
            .await?;
        mark.completed_deals_at_start += u64::from(r.completed_deals);
        mark.ratings_at_start += u64::from(r.ratings);
        mark.participants_with_record += u64::from(r.completed_deals > 0);
    }
    Ok(mark)
}

/// Between two sessions of a repeated market: each agent writes its note on the session that
/// ended; the operator closes the market (live offers expire, open negotiations end, unsold
/// listings expire) and opens it again; each participant's cash is topped up to its budget
/// ([`SessionBudget::Fresh`]) or left as it is (`Carry`), its mandate follows its new items, and
/// its agent takes the new profile and its note. Returns the notes, by agent.
#[allow(clippy::too_many_arguments)]
async fn next_session(
    svc: &Service,
    operator: &Caller,
    m: i64,
    cfg: &SimConfig,
    session: u32,
    members: &[Member],
    agents: &mut [Agent<InProcess>],
    trust: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let ended = session - 1;
    let mut notes = BTreeMap::new();
    if agents.iter().any(|a| a.brain.concurrent()) {
        let outcomes = session_outcomes(svc, m, members, &cfg.scenario.currency).await?;
        // The agents' models write at once (within the factory's call slots); a replay matches
        // each agent's calls in its own order, so the order of replies does not matter.
        let written = futures_util::future::join_all(agents.iter_mut().map(|a| {
            let outcome = outcomes.get(&a.profile.name).cloned().unwrap_or_default();
            async move {
                let note = a.end_session(ended, &outcome).await;
                (a.profile.name.clone(), note)
            }
        }))
        .await;
        notes.extend(written.into_iter().filter_map(|(n, x)| x.map(|x| (n, x))));
    }
    let now = svc
        .store()
        .market(m)
        .await?
        .map_or(SIM_START_MS, |mk| mk.sim_now);
    svc.set_closing_time(operator, m, Some(now), None)
        .await
        .map_err(api)?;
    // A closed market's threads all time out this pass or the next.
    for _ in 0..2 {
        svc.advance_clock(operator, m, cfg.tick_ms, None)
            .await
            .map_err(api)?;
    }
    svc.set_closing_time(operator, m, None, None)
        .await
        .map_err(api)?;
    let later = &cfg.sessions[(session - 2) as usize];
    for (i, (x, a)) in members.iter().zip(agents.iter_mut()).enumerate() {
        let mut profile = later.profiles[i].clone();
        if trust {
            let seed = cfg
                .seed
                .wrapping_add(i as u64)
                .wrapping_add(u64::from(session) << 32);
            if x.brain == MISDESCRIBER {
                haggle_agents::adversaries::misdescribe_profile(&mut profile, seed);
            } else {
                haggle_agents::adversaries::describe_profile(&mut profile);
            }
        }
        if let Some(model) = &cfg.shipping {
            let seed = cfg
                .seed
                .wrapping_add(i as u64)
                .wrapping_add(u64::from(session) << 32);
            haggle_lab::shipping::ship_profiles(std::slice::from_mut(&mut profile), model, seed);
        }
        if cfg.session_budget == SessionBudget::Fresh {
            let b = svc
                .balance(operator, m, x.participant_id)
                .await
                .map_err(api)?;
            let short = profile.budget - b.available;
            if short > 0 {
                svc.fund(
                    operator,
                    m,
                    x.participant_id,
                    haggle_api::Fund { amount: short },
                    None,
                )
                .await
                .map_err(api)?;
            }
        }
        svc.set_mandate(operator, m, x.participant_id, profile.mandate(), None)
            .await
            .map_err(api)?;
        a.next_session(profile, session, notes.get(&x.name).map(String::as_str));
    }
    svc.store().flush().await?;
    Ok(notes)
}

/// Per participant name, a line on its trades in the session that just ended (deals on
/// listings it took part in since the session began) and its record, for its note.
async fn session_outcomes(
    svc: &Service,
    m: i64,
    members: &[Member],
    currency: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let deals = svc.store().deals(m, None, 0, 100_000).await?;
    let mut out = BTreeMap::new();
    for x in members {
        // Every deal so far (earlier sessions too), counted as the market shows it now.
        let (mut sold, mut sold_sum, mut bought, mut spent) = (0u32, 0i64, 0u32, 0i64);
        for d in deals.iter().filter(|d| d.status.is_spent()) {
            if d.seller == x.participant_id {
                sold += 1;
                sold_sum += d.price;
            } else if d.buyer == x.participant_id {
                bought += 1;
                spent += d.price;
            }
        }
        let r = svc
            .store()
            .reputation(m, x.participant_id, SIM_START_MS)
            .await?;
        out.insert(
            x.name.clone(),
            format!(
                "So far in this market you sold {sold} item(s) for {} in all and bought {bought} for {} in all; your record shows {} completed deal(s) and {} rating(s).",
                haggle_lab::report::money(sold_sum, currency),
                haggle_lab::report::money(spent, currency),
                r.completed_deals,
                r.ratings
            ),
        );
    }
    Ok(out)
}

/// The market's operator rules on every open not-as-described dispute: the buyer keeps the item
/// and gets back the value gap between claimed and found ([`haggle_lab::trust::value_gap_refund`];
/// nothing found worse: released); and on every not-received one by the simulated carrier's
/// ground truth: a lost parcel is refunded in full, one that arrived is released. Other disputes
/// are left as before.
async fn arbitrate(svc: &Service, operator: &Caller, m: i64) -> anyhow::Result<()> {
    use haggle_api::haggle_core::lifecycle::Ruling;
    use haggle_api::haggle_core::{DealStatus, DisputeGrounds};
    let open = svc
        .store()
        .deals_in_status(m, DealStatus::Disputed, 0, 10_000)
        .await?;
    for d in open {
        let grounds = d.dispute.as_ref().map(|x| x.grounds);
        if grounds == Some(DisputeGrounds::NotReceived) {
            arbitrate_not_received(svc, operator, m, &d).await?;
            continue;
        }
        if grounds != Some(DisputeGrounds::NotAsDescribed) {
            continue;
        }
        let found = d
            .inspection
            .as_ref()
            .and_then(|i| i.found.clone())
            .unwrap_or_default();
        let to_buyer = haggle_lab::trust::value_gap_refund(d.price, &d.snapshot.claims, &found);
        let req = haggle_api::ResolveDispute {
            ruling: Ruling::Split { to_buyer },
            note: "the claims overstated the item: the value gap goes back to the buyer".into(),
        };
        svc.resolve(operator, m, d.id, req, None)
            .await
            .map_err(api)?;
    }
    Ok(())
}

/// Whether a shipped deal of the market is still on its way (shipped, not yet delivered).
async fn in_transit(svc: &Service, m: i64) -> anyhow::Result<bool> {
    use haggle_api::haggle_core::{DealStatus, ShippingStatus};
    let handed = svc
        .store()
        .deals_in_status(m, DealStatus::HandedOver, 0, 10_000)
        .await?;
    Ok(handed.iter().any(|d| {
        d.shipping
            .as_ref()
            .is_some_and(|s| s.status == ShippingStatus::Shipped)
    }))
}

/// A not-received dispute, ruled on the simulated carrier's ground truth (the listing's
/// `true_transit`): lost, the buyer gets everything back; delivered, the seller is paid.
async fn arbitrate_not_received(
    svc: &Service,
    operator: &Caller,
    m: i64,
    d: &haggle_api::haggle_core::Deal,
) -> anyhow::Result<()> {
    use haggle_api::haggle_core::lifecycle::Ruling;
    let listing = svc.store().listing(m, d.listing_id).await?;
    let lost = listing.and_then(|l| l.true_transit).is_some_and(|t| t.lost);
    let req = haggle_api::ResolveDispute {
        ruling: if lost {
            Ruling::Refund
        } else {
            Ruling::Release
        },
        note: if lost {
            "the carrier lost the parcel: the buyer is refunded".into()
        } else {
            "the carrier delivered the parcel: the seller is paid".into()
        },
    };
    svc.resolve(operator, m, d.id, req, None)
        .await
        .map_err(api)?;
    Ok(())
}

/// Appends each misdescriber's record as the market shows it now.
async fn record_misdescribers(
    svc: &Service,
    m: i64,
    members: &[Member],
    round: u64,
    out: &mut Vec<haggle_lab::trust::ReputationPoint>,
) -> anyhow::Result<()> {
    for x in members.iter().filter(|x| x.brain == MISDESCRIBER) {
        let r = svc
            .store()
            .reputation(m, x.participant_id, SIM_START_MS)
            .await?;
        out.push(haggle_lab::trust::ReputationPoint {
            round,
            participant: x.name.clone(),
            inspected_sales: r.inspected_sales,
            accurate_sales: r.accurate_sales,
            claim_accuracy_pct: r.claim_accuracy_pct,
            upheld_not_as_described: r.upheld_not_as_described,
        });
    }
    Ok(())
}

/// Which agents take a turn in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Every agent (round mode).
    Always,
    /// Agents with news, in their first two rounds, or after six rounds without a turn.
    OnNews,
    /// Every agent, woken (the last turn after the confirmation windows passed).
    Last,
}

/// The turns of one round: who is due, and in which order.
struct Turns<'a> {
    order: &'a [usize],
    seq: &'a Arc<Sequencer>,
    now: i64,
    round: u64,
    due: Due,
}

impl Turns<'_> {
    /// Whether the agent, last on turn in `last`, takes this round's turn (it reads the market).
    async fn is_due(&self, agent: &mut Agent<InProcess>, last: u64) -> bool {
        match self.due {
            Due::Always => true,
            Due::Last => {
                agent.wake();
                true
            }
            Due::OnNews => {
                self.round < 2 || self.round - last >= 6 || {
                    let _hold = agent.enter_market().await;
                    agent.has_news().await
                }
            }
        }
    }

    /// One turn after another in the seeded order (rule brains only: today's exact order).
    async fn sequential(&self, agents: &mut [Agent<InProcess>], last_turn: &mut [u64]) -> usize {
        for &i in self.order {
            if self.is_due(&mut agents[i], last_turn[i]).await {
                agents[i].turn(self.now, self.round).await;
                last_turn[i] = self.round;
            }
        }
        1
    }

    /// Every due turn starts, in the seeded order, and holds the market in turn through the
    /// sequencer (the due check too); how many model calls run at once is the brain factory's
    /// call slots (`SpendGuard`). Returns the most turns in flight.
    async fn concurrent(&self, agents: &mut Vec<Agent<InProcess>>, last_turn: &mut [u64]) -> usize {
        let mut slots: Vec<Option<Agent<InProcess>>> = agents.drain(..).map(Some).collect();
        let mut queue = self.order.iter().copied();
        let mut running = FuturesUnordered::new();
        let mut peak = 0;
        loop {
            for i in queue.by_ref() {
                let Some(mut agent) = slots[i].take() else {
                    continue;
                };
                let last = last_turn[i];
                self.seq.turn_started();
                running.push(async move {
                    let took = self.is_due(&mut agent, last).await;
                    if took {
                        agent.turn(self.now, self.round).await;
                    }
                    (i, agent, took)
                });
                peak = peak.max(running.len());
            }
            let Some((i, agent, took)) = running.next().await else {
                break;
            };
            self.seq.turn_ended();
            if took {
                last_turn[i] = self.round;
            }
            slots[i] = Some(agent);
        }
        agents.extend(slots.into_iter().flatten());
        peak
    }
}

async fn deal_totals(svc: &Service, operator: &Caller, m: i64) -> anyhow::Result<(u64, i64)> {
    let (mut n, mut volume, mut cursor) = (0u64, 0i64, None::<String>);
    loop {
        let page = svc
            .deals(operator, m, cursor.as_deref(), Some(500))
            .await
            .map_err(api)?;
        for d in &page.items {
            n += 1;
            volume += d.price;
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok((n, volume)),
        }
    }
}
