//! Participants driven from outside a simulation (issue 24): the `external` brain (any process,
//! over the HTTP API or MCP) and the `human` brain (a person at the web UI). The simulation serves
//! the API on a port over its own service and simulated clock; on such a participant's turn the
//! scheduler posts `turn_started` on its feed and waits (real time, up to the turn budget) until
//! it ends the turn; its commands are recorded (`turn` records of the call log), and a replay
//! applies them again at the same turn without the participant's process.

use haggle_agents::brain::{Action, BoxFuture, Brain, View};
use haggle_agents::llm::CallLog;
use haggle_agents::llm::log::Record;
use haggle_agents::llm::replay::Recording;
use haggle_agents::profile::Profile;
use haggle_api::TurnEnd;
use haggle_api::haggle_core::ActedBy;
use haggle_service::turns::Turns;
use haggle_service::{Caller, Command, Service, TurnMark};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A participant driven by any process over the HTTP API or MCP.
pub const EXTERNAL: &str = "external";
/// A person taking a participant's place through the web UI (its principal's page).
pub const HUMAN: &str = "human";

/// Whether the brain named `name` is driven from outside the simulation.
pub fn is_outside(name: &str) -> bool {
    name == EXTERNAL || name == HUMAN
}

/// How a simulation with outside participants serves them.
pub struct OutsideConfig {
    /// Real (wall-clock) time one outside turn may take; `None`: the default of the brain
    /// (`DEFAULT_TURN_BUDGET_MS`, or `DEFAULT_HUMAN_TURN_BUDGET_MS` with a `human`).
    pub turn_budget: Option<Duration>,
    /// Where the API listens (port 0: a free port).
    pub listen: std::net::SocketAddr,
    /// Called once, before the first round, with where and how to reach the market (start the
    /// agents' processes here). Not called by a replay, which needs no agent.
    pub on_ready: Option<OnReady>,
}

impl Default for OutsideConfig {
    fn default() -> OutsideConfig {
        OutsideConfig {
            turn_budget: None,
            listen: ([127, 0, 0, 1], 0).into(),
            on_ready: None,
        }
    }
}

/// Where the market of a simulation with outside participants is served, and their tokens.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The API's base URL (`{url}/v1/...`, `{url}/mcp`, the web pages at `{url}/`).
    pub url: String,
    pub market_id: i64,
    pub seats: Vec<Seat>,
    /// Real time each turn may take.
    pub turn_budget: Duration,
}

/// One outside participant.
#[derive(Debug, Clone)]
pub struct Seat {
    pub name: String,
    pub participant_id: i64,
    /// `external` or `human`.
    pub brain: String,
    pub agent_token: String,
    pub principal_token: String,
}

/// What a person or a program needs to take its seat: the address, the market, each seat's
/// tokens and how long a turn waits.
pub fn invitation(r: &Ready) -> String {
    let mut out = format!(
        "haggle: the market waits for {} participant(s) driven from outside at {} (market {}; each turn waits up to {} ms)\n",
        r.seats.len(),
        r.url,
        r.market_id,
        r.turn_budget.as_millis()
    );
    for s in &r.seats {
        let how = match s.brain.as_str() {
            HUMAN => format!(
                "sign in at {}/signin with the principal token {}; trade and end each turn on your page",
                r.url, s.principal_token
            ),
            _ => format!(
                "agent token {} (HTTP {}/v1/markets/{}/..., MCP {}/mcp); wait for turn_started on the feed, then POST .../turns/{{turn}}/end",
                s.agent_token, r.url, r.market_id, r.url
            ),
        };
        out.push_str(&format!(
            "  {} (participant {}, {}): {how}\n",
            s.name, s.participant_id, s.brain
        ));
    }
    out
}

pub use haggle_lab::metrics::OutsideTurns as OutsideTally;

/// The outside participants' settings of a market that invites them (`haggle demo`, each run of
/// an experiment): once it is served, the [`invitation`] goes to stderr, headed by `label` (a
/// run's id) when given.
pub fn inviting(
    settings: &haggle_lab::experiment::OutsideSettings,
    label: Option<String>,
) -> OutsideConfig {
    OutsideConfig {
        turn_budget: settings.turn_budget_ms.map(Duration::from_millis),
        listen: settings.listen,
        on_ready: Some(Box::new(move |r: &Ready| match label {
            Some(l) => eprint!("{l}: {}", invitation(r)),
            None => eprint!("{}", invitation(r)),
        })),
    }
}

/// Called once with where and how to reach a served simulation.
pub type OnReady = Box<dyn FnOnce(&Ready) + Send>;

/// What a simulation shares with its outside participants' brains.
pub struct Outside {
    svc: Arc<Service>,
    operator: Caller,
    market: i64,
    budget: Duration,
    /// Live run: the service's turns; replay: the recording the commands come from.
    turns: Arc<Turns>,
    replay: Option<Arc<Recording>>,
    log: Arc<CallLog>,
    tally: Mutex<BTreeMap<String, OutsideTally>>,
}

impl Outside {
    /// `brains` are the run's brain names (one per participant, in order).
    pub fn new(
        svc: Arc<Service>,
        operator: Caller,
        market: i64,
        budget: Duration,
        replay: Option<Arc<Recording>>,
        log: Arc<CallLog>,
    ) -> anyhow::Result<Arc<Outside>> {
        let turns = Turns::new(market, []);
        if replay.is_none() && svc.attach_turns(turns.clone()).is_err() {
            anyhow::bail!("the simulation's service already has turns");
        }
        Ok(Arc::new(Outside {
            svc,
            operator,
            market,
            budget,
            turns,
            replay,
            log,
            tally: Mutex::new(BTreeMap::new()),
        }))
    }

    /// The brain of the outside participant `participant` (named `agent`).
    pub fn brain(self: &Arc<Self>, kind: &str, agent: &str, participant: i64) -> Box<dyn Brain> {
        self.turns.add(participant);
        self.tally_mut(|t| {
            t.entry(agent.to_string()).or_default();
        });
        Box::new(OutsideBrain {
            kind: kind.to_string(),
            agent: agent.to_string(),
            participant,
            turn: 0,
            outside: self.clone(),
        })
    }

    /// Real time each turn may take.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    fn tally_mut<T>(&self, f: impl FnOnce(&mut BTreeMap<String, OutsideTally>) -> T) -> T {
        f(&mut self.tally.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Per outside participant, its turns so far.
    pub fn tally(&self) -> BTreeMap<String, OutsideTally> {
        self.tally_mut(|t| t.clone())
    }

    async fn mark(&self, participant: i64, turn: u64, mark: TurnMark) {
        let r = self
            .svc
            .mark_turn(&self.operator, self.market, participant, turn, mark)
            .await;
        if let Err(e) = r {
            tracing::warn!(participant, turn, error = %e.body.error.message, "cannot mark the turn");
        }
    }

    /// One turn of an outside participant: announce it, wait for its end (or apply the recorded
    /// commands), note a timeout, record it. Returns the commands the market applied.
    async fn turn(&self, agent: &str, participant: i64, turn: u64, round: u64) -> u64 {
        let mut budget_ms = self.budget.as_millis() as u64;
        let mut refusals = BTreeMap::new();
        let (commands, end) = match &self.replay {
            None => {
                self.turns.open(participant, turn);
                let started = TurnMark::Started { round, budget_ms };
                self.mark(participant, turn, started).await;
                let end = self.turns.wait(participant, self.budget).await;
                let commands = self.turns.close(participant).await;
                refusals = self.turns.take_refusals(participant);
                (commands, end)
            }
            Some(rec) => {
                let recorded = rec.outside_turn(agent, turn);
                budget_ms = recorded.budget_ms;
                let started = TurnMark::Started { round, budget_ms };
                self.mark(participant, turn, started).await;
                let mut commands = Vec::new();
                for c in recorded.commands {
                    match from_record(c) {
                        Ok((cmd, by)) => {
                            // A refusal in the run is the same refusal here: no state change.
                            let applied = self
                                .svc
                                .apply_recorded(&self.operator, self.market, cmd.clone(), by)
                                .await;
                            if let Err(e) = applied {
                                *refusals
                                    .entry(e.body.error.code.as_str().to_string())
                                    .or_default() += 1;
                            }
                            commands.push((cmd, by));
                        }
                        Err(e) => rec.diverged(format!(
                            "agent {agent}: turn {turn}: a recorded command does not parse: {e}"
                        )),
                    }
                }
                (commands, recorded.end)
            }
        };
        if end == TurnEnd::TimedOut {
            self.mark(participant, turn, TurnMark::TimedOut).await;
        }
        self.log.write(&Record::Turn {
            agent: agent.to_string(),
            turn,
            round,
            budget_ms,
            commands: commands.iter().map(|(c, by)| to_record(c, *by)).collect(),
            end,
        });
        let n = commands.len() as u64;
        self.tally_mut(|t| {
            let x = t.entry(agent.to_string()).or_default();
            x.turns += 1;
            x.commands += n;
            for (code, k) in refusals {
                *x.refusals.entry(code).or_default() += k;
            }
            match end {
                TurnEnd::Ended => x.ended += 1,
                TurnEnd::TimedOut => x.timed_out += 1,
            }
        });
        n
    }
}

/// A command as the call log's `turn` record holds it: the store command, with `"acted_by":
/// "principal"` when a person made it by hand (an agent's is the command alone, as before).
fn to_record(cmd: &Command, by: ActedBy) -> serde_json::Value {
    let mut v = serde_json::to_value(cmd).unwrap_or_default();
    if let (ActedBy::Principal, Some(o)) = (by, v.as_object_mut()) {
        o.insert("acted_by".into(), serde_json::json!(by.as_str()));
    }
    v
}

/// The command of a `turn` record and who made it (see [`to_record`]).
fn from_record(mut v: serde_json::Value) -> Result<(Command, ActedBy), String> {
    let by = match v.as_object_mut().and_then(|o| o.remove("acted_by")) {
        Some(b) => b
            .as_str()
            .and_then(ActedBy::parse)
            .ok_or_else(|| format!("unknown acted_by {b}"))?,
        None => ActedBy::Agent,
    };
    let cmd = serde_json::from_value::<Command>(v).map_err(|e| e.to_string())?;
    Ok((cmd, by))
}

/// The brain of a participant driven from outside: its turns are [`Outside::turn`].
struct OutsideBrain {
    kind: String,
    agent: String,
    participant: i64,
    turn: u64,
    outside: Arc<Outside>,
}

impl Brain for OutsideBrain {
    fn name(&self) -> String {
        self.kind.clone()
    }

    fn decide<'a>(&'a mut self, _: &'a Profile, _: &'a View) -> BoxFuture<'a, Vec<Action>> {
        // Never asked: the runtime runs `outside_turn` instead.
        Box::pin(async { Vec::new() })
    }

    fn outside_turn(&mut self, round: u64) -> Option<BoxFuture<'_, u64>> {
        self.turn += 1;
        let turn = self.turn;
        Some(Box::pin(async move {
            self.outside
                .turn(&self.agent, self.participant, turn, round)
                .await
        }))
    }
}

/// The API (and the web pages) served over the simulation's service while it runs.
pub struct Served {
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// Serves on `listen` (port 0: a free one).
    pub async fn start(svc: Arc<Service>, listen: std::net::SocketAddr) -> anyhow::Result<Served> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let mcp_shutdown = haggle_http::CancellationToken::new();
        let app = haggle_http::app(svc.clone(), mcp_shutdown.clone()).merge(haggle_web::router(
            svc,
            haggle_web::WebOptions {
                reports: None,
                public_url: None,
            },
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(haggle_http::serve_app(
            listener,
            app,
            mcp_shutdown,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Served { url, stop, task })
    }

    /// Stops serving; a client still connected after a second is cut off.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

#[cfg(test)]
#[path = "external_tests.rs"]
mod tests;
