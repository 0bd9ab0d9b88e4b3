//! Trading modes (issue 19): the principal sets how its participant trades (`agent`, `propose`,
//! `principal`); in `propose` the agent's offers, counters and acceptances wait as proposals the
//! principal confirms (the step then runs as the agent's command, with its idempotency key) or declines.

use crate::{ApiError, ApiResult, Caller, IdemKey, Reply, Service};
use haggle_core::ErrorCode;
use haggle_core::limits::{MAX_PAGE, MAX_WAITING_PROPOSALS};
use haggle_core::model::{ActedBy, TradingMode};
use haggle_store::proposals::{Proposal, ProposalStatus, ProposedStep};
use haggle_store::{Command, Role};

/// A page of a participant's waiting proposals, oldest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProposalPage {
    pub items: Vec<ProposalView>,
    pub next_cursor: Option<String>,
}

/// A proposal with what its principal needs to decide: the listing and the price.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProposalView {
    pub proposal: Proposal,
    pub listing_id: Option<i64>,
    pub price: Option<i64>,
}

/// The participant whose principal `caller` is in `market`.
fn principal_of(caller: &Caller, market: i64, what: &str) -> ApiResult<i64> {
    match (caller.role, caller.market, caller.participant) {
        (Role::Principal, Some(m), Some(p)) if m == market => Ok(p),
        _ => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("{what} needs the participant's principal token"),
        )),
    }
}

impl Service {
    /// The principal sets how its participant trades; `principal` pauses the agent.
    pub async fn set_trading_mode(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        mode: TradingMode,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let p = principal_of(caller, market, "setting the trading mode")?;
        if p != participant {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the participant's own principal sets its trading mode",
            ));
        }
        let cmd = Command::SetTradingMode { participant, mode };
        Ok(self
            .command_by(caller, market, cmd, ActedBy::Principal, idem)
            .await?
            .0)
    }

    /// In trading mode `propose`, stores an agent's binding step as a proposal (once per
    /// idempotency key) and answers `awaiting_principal`; `Ok(())` lets the command run.
    pub(crate) async fn propose_instead(
        &self,
        caller: &Caller,
        market: i64,
        actor: i64,
        cmd: &Command,
        idem: Option<&IdemKey>,
    ) -> ApiResult<()> {
        let Some(step) = ProposedStep::of(cmd) else {
            return Ok(());
        };
        let Some(person) = self.store.participant(market, actor).await? else {
            return Ok(());
        };
        if person.mandate.trading_mode != TradingMode::Propose {
            return Ok(());
        }
        if let Some(k) = idem {
            // A key that already ran (before the mode changed, or a confirmed proposal) replays.
            if self
                .store
                .stored_response(&caller.scope, &k.key)
                .await?
                .is_some()
            {
                return Ok(());
            }
            if let Some(p) = self
                .store
                .proposal_by_key(market, &caller.scope, &k.key)
                .await?
            {
                return Err(awaiting(&p));
            }
        }
        Err(awaiting(
            &self
                .store_proposal(caller, market, actor, step, idem)
                .await?,
        ))
    }

    /// A new waiting proposal, or the one the agent made of the same step before; refused past
    /// [`MAX_WAITING_PROPOSALS`].
    async fn store_proposal(
        &self,
        caller: &Caller,
        market: i64,
        actor: i64,
        step: ProposedStep,
        idem: Option<&IdemKey>,
    ) -> ApiResult<Proposal> {
        // An agent that asks again (a new key, the same step) is told of the proposal it made.
        let waiting = self
            .store
            .proposals(
                market,
                actor,
                ProposalStatus::Waiting,
                0,
                MAX_WAITING_PROPOSALS,
            )
            .await?;
        let waiting_count = waiting.len();
        if let Some(p) = waiting.into_iter().find(|p| p.step == step) {
            return Ok(p);
        }
        if waiting_count >= MAX_WAITING_PROPOSALS as usize {
            return Err(ApiError::new(
                ErrorCode::TooManyOffers,
                format!(
                    "{MAX_WAITING_PROPOSALS} proposals already wait for your principal: wait \
                     for its decisions"
                ),
            ));
        }
        Ok(self
            .store
            .insert_proposal(&Proposal {
                market_id: market,
                id: 0,
                participant_id: actor,
                step,
                scope: caller.scope.clone(),
                idem_key: idem.map(|k| k.key.clone()),
                request_hash: idem.map(|k| k.request_hash.clone()),
                status: ProposalStatus::Waiting,
                created_at: self.now(),
                decided_at: None,
            })
            .await?)
    }

    /// The participant's waiting proposals, for its principal (or an operator), paged by id.
    pub async fn proposals(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<ProposalPage> {
        Self::require_principal_or_operator(caller, market, participant)?;
        let limit = crate::page_limit(limit)?;
        let after = crate::parse_cursor(cursor)?;
        let items = self
            .store
            .proposals(
                market,
                participant,
                ProposalStatus::Waiting,
                after,
                limit.min(MAX_PAGE),
            )
            .await?;
        let next_cursor = crate::next_cursor(&items, limit, |p| p.id);
        let mut views = Vec::with_capacity(items.len());
        for proposal in items {
            let (listing_id, price) = match proposal.step {
                ProposedStep::Offer { listing, price, .. } => (Some(listing), Some(price)),
                ProposedStep::Counter { thread, price, .. } => (
                    self.store
                        .thread(market, thread)
                        .await?
                        .map(|t| t.thread.listing_id),
                    Some(price),
                ),
                ProposedStep::Accept { offer } => {
                    let o = self.store.offer(market, offer).await?;
                    (o.as_ref().map(|o| o.listing_id), o.map(|o| o.price))
                }
            };
            views.push(ProposalView {
                proposal,
                listing_id,
                price,
            });
        }
        Ok(ProposalPage {
            items: views,
            next_cursor,
        })
    }

    /// The principal confirms a proposal (its step runs as the agent's command would have, with
    /// the agent's idempotency key, so the agent's retry gets its answer) or declines it.
    pub async fn decide_proposal(
        &self,
        caller: &Caller,
        market: i64,
        id: i64,
        confirm: bool,
    ) -> ApiResult {
        let p = principal_of(caller, market, "deciding a proposal")?;
        let prop = self
            .store
            .proposal(market, id)
            .await?
            .filter(|x| x.participant_id == p)
            .ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("proposal {id} not found"))
            })?;
        let to = if confirm {
            ProposalStatus::Confirmed
        } else {
            ProposalStatus::Declined
        };
        let now = self.now();
        if !self
            .store
            .set_proposal_status(market, id, ProposalStatus::Waiting, to, now)
            .await?
        {
            return Err(ApiError::new(
                ErrorCode::InvalidTransition,
                format!("proposal {id} was already decided"),
            ));
        }
        if !confirm {
            return Ok(Reply::json(200, &serde_json::json!({"ok": true})));
        }
        let agent = Caller {
            role: Role::Agent,
            market: Some(market),
            participant: Some(p),
            scope: prop.scope.clone(),
        };
        let idem = prop.idem_key.clone().map(|key| IdemKey {
            key,
            request_hash: prop.request_hash.clone().unwrap_or_default(),
        });
        let cmd = prop.step.command(p);
        match self
            .command_by(&agent, market, cmd, ActedBy::Agent, idem.as_ref())
            .await
        {
            Ok((reply, _)) => Ok(reply),
            Err(e) => {
                // A server fault stored nothing: the proposal waits again. A refusal is the
                // step's answer (stored with the agent's key): the proposal stays confirmed.
                if e.status >= 500 {
                    self.store
                        .set_proposal_status(market, id, to, ProposalStatus::Waiting, now)
                        .await?;
                }
                Err(e)
            }
        }
    }
}

fn awaiting(p: &Proposal) -> ApiError {
    ApiError::new(
        ErrorCode::AwaitingPrincipal,
        format!(
            "your principal confirms each offer, counter and acceptance (trading mode \
             `propose`): this one waits as proposal {} for its decision; retry with the same \
             Idempotency-Key to get its answer once confirmed",
            p.id
        ),
    )
}
