//! Runs a whole market of agents in-process: creates the market from a scenario on its own
//! database, registers every participant with its budget and mandate, gives each an agent with
//! its brain, and schedules turns on the market's simulated clock — round-based (a seeded order
//! each round) or event-driven (agents wake on news). Turns of LLM brains run concurrently (as
//! many model calls at once as the brain factory's call slots allow), holding the market in turn
//! through a [`Sequencer`] that records the order, so a replay is exact. Time and randomness are
//! injected: the service runs on a fixed manual clock and the market's clock is simulated.

use anyhow::{Context, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use haggle_agents::runtime::Agent;
use haggle_agents::sequencer::Sequencer;
use haggle_api::haggle_core::{ClockMode, HOUR_MS, MarketRules};
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
}

/// Live figures for the progress display.
pub struct Progress {
    pub round: u64,
    pub max_rounds: u64,
    pub sim_ms: i64,
    pub deals: u64,
    pub volume: i64,
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
    if cfg.brains.is_empty() {
        bail!("--brains needs at least one brain");
    }
    // Unknown names and missing API keys stop the run before the market exists.
    for b in &cfg.brains {
        cfg.factory
            .check(b)
            .map_err(|e| anyhow::anyhow!("--brains: {e}"))?;
    }
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
    let mut members = Vec::new();
    let mut agents = Vec::new();
    // With misdescribers in the market every item carries claims and its true state (inspected
    // at handover), and theirs overstate some; without, profiles stay as the scenario wrote them.
    let trust = cfg.brains.iter().any(|b| b == MISDESCRIBER);
    let mut profiles = cfg.scenario.profiles.clone();
    if trust {
        for (i, p) in profiles.iter_mut().enumerate() {
            if cfg.brains[i % cfg.brains.len()] == MISDESCRIBER {
                haggle_agents::adversaries::misdescribe_profile(p, cfg.seed.wrapping_add(i as u64));
            } else {
                haggle_agents::adversaries::describe_profile(p);
            }
        }
    }
    for (i, profile) in profiles.iter().enumerate() {
        let brain_name = cfg.brains[i % cfg.brains.len()].clone();
        let mandate = profile.mandate();
        let reg = RegisterParticipant {
            name: profile.name.clone(),
            budget: profile.budget,
            mandate: Some(mandate),
        };
        let created: ParticipantCreated = serde_json::from_str(
            &svc.register_participant(&operator, m, reg, None)
                .await
                .map_err(api)?
                .body,
        )?;
        let brain = cfg
            .factory
            .make(
                &brain_name,
                cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                &profile.name,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
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
    let mut agents: Vec<Agent<InProcess>> = agents
        .into_iter()
        .map(|a| a.sequenced(seq.clone()))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..agents.len()).collect();
    let mut last_turn = vec![0u64; agents.len()];
    let (mut idle, mut rounds, mut peak_turns) = (0, 0, 0);
    let mut done_before = 0u64;
    let mut trust_timeline = Vec::new();
    let due = match cfg.mode {
        Mode::Rounds => Due::Always,
        Mode::Events => Due::OnNews,
    };
    for round in 0..cfg.max_rounds {
        rounds = round + 1;
        let now = svc
            .store()
            .market(m)
            .await?
            .map_or(SIM_START_MS, |mk| mk.sim_now);
        order.shuffle(&mut rng);
        let round_turns = Turns {
            order: &order,
            seq: &seq,
            now,
            round,
            due,
        };
        let peak = if concurrent {
            round_turns.concurrent(&mut agents, &mut last_turn).await
        } else {
            round_turns.sequential(&mut agents, &mut last_turn).await
        };
        peak_turns = peak_turns.max(peak);
        seq.end_round();
        if trust {
            arbitrate(&svc, &operator, m).await?;
            record_misdescribers(&svc, m, &members, round + 1, &mut trust_timeline).await?;
        }
        svc.advance_clock(&operator, m, cfg.tick_ms, None)
            .await
            .map_err(api)?;
        svc.store().flush().await?;
        // The market grows fast at first: fresh planner statistics keep per-agent reads indexed.
        if round == 0 || round.is_power_of_two() {
            svc.store().analyze().await?;
        }
        let done: u64 = agents.iter().map(|a| a.successful_actions()).sum();
        idle = if done == done_before { idle + 1 } else { 0 };
        done_before = done;
        let (deals, volume) = deal_totals(&svc, &operator, m).await?;
        progress(&Progress {
            round: rounds,
            max_rounds: cfg.max_rounds,
            sim_ms: now + cfg.tick_ms - SIM_START_MS,
            deals,
            volume,
        });
        // Quiet for several rounds: nobody can or will act any more.
        if idle >= 4 {
            break;
        }
    }
    // Let the confirmation windows pass, so handed-over deals complete, then a last turn each.
    svc.advance_clock(&operator, m, cfg.rules.confirmation_window_ms, None)
        .await
        .map_err(api)?;
    let now = svc
        .store()
        .market(m)
        .await?
        .map_or(SIM_START_MS, |mk| mk.sim_now);
    let last = Turns {
        order: &order,
        seq: &seq,
        now,
        round: rounds,
        due: Due::Last,
    };
    let peak = if concurrent {
        last.concurrent(&mut agents, &mut last_turn).await
    } else {
        last.sequential(&mut agents, &mut last_turn).await
    };
    peak_turns = peak_turns.max(peak);
    seq.end_round();
    seq.finish();
    if trust {
        arbitrate(&svc, &operator, m).await?;
        record_misdescribers(&svc, m, &members, rounds + 1, &mut trust_timeline).await?;
    }
    svc.store().flush().await?;
    let sim_ms = now - SIM_START_MS;
    Ok(SimOutput {
        svc,
        market_id: m,
        operator_token,
        observer_token,
        members,
        agents,
        rounds,
        sim_ms,
        first_movers: seq.first_movers(),
        peak_turns,
        prices: cfg.factory.prices.source.clone(),
        trust_timeline,
    })
}

/// The market's operator rules on every open not-as-described dispute: the buyer keeps the item
/// and gets back the value gap between claimed and found ([`haggle_lab::trust::value_gap_refund`];
/// nothing found worse: released). Other disputes are left as before.
async fn arbitrate(svc: &Service, operator: &Caller, m: i64) -> anyhow::Result<()> {
    use haggle_api::haggle_core::lifecycle::Ruling;
    use haggle_api::haggle_core::{DealStatus, DisputeGrounds};
    let open = svc
        .store()
        .deals_in_status(m, DealStatus::Disputed, 0, 10_000)
        .await?;
    for d in open {
        if d.dispute.as_ref().map(|x| x.grounds) != Some(DisputeGrounds::NotAsDescribed) {
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
