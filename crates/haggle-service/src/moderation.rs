//! Market policy and moderation for operators (spec, trust.md: Market policy): set and read the
//! policy, the moderation queue, approving and removing listings, suspending and reinstating
//! participants. The rules themselves are in the core; this checks who may ask.

use crate::{ApiError, ApiResult, Caller, IdemKey, Service, page_limit, parse_cursor};
use haggle_api::HeldListingPage;
use haggle_core::ErrorCode;
use haggle_core::policy::MarketPolicy;
use haggle_store::{Command, Role};

impl Service {
    /// Runs `cmd` on `market` for an operator of it; anyone else is refused.
    async fn operator_command(
        &self,
        caller: &Caller,
        market: i64,
        cmd: Command,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        Self::require_operator(caller, Some(market))?;
        Ok(self.command(caller, market, cmd, idem).await?.0)
    }

    /// The market's policy (anyone in the market may read it: it is part of the market's rules).
    pub async fn policy(&self, caller: &Caller, market: i64) -> ApiResult<MarketPolicy> {
        Ok(self.market(caller, market).await?.rules.policy)
    }

    /// Replaces the market's policy (operators); answers with the market.
    pub async fn set_policy(
        &self,
        caller: &Caller,
        market: i64,
        policy: MarketPolicy,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        self.operator_command(caller, market, Command::SetPolicy { policy }, idem)
            .await
    }

    /// The moderation queue: held listings, oldest first, with the rules that held them and why.
    pub async fn held_listings(
        &self,
        caller: &Caller,
        market: i64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<HeldListingPage> {
        Self::require_operator(caller, Some(market))?;
        self.market_or_404(market).await?;
        let limit = page_limit(limit)?;
        let items = self
            .store
            .held_listings(market, parse_cursor(cursor)?, limit)
            .await?;
        let next_cursor = (items.len() as u32 == limit)
            .then(|| items.last().map(|h| h.listing.id.to_string()))
            .flatten();
        Ok(HeldListingPage { items, next_cursor })
    }

    /// Approves a held listing (operators): it goes on the market.
    pub async fn approve_listing(
        &self,
        caller: &Caller,
        market: i64,
        listing: i64,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        self.operator_command(caller, market, Command::ApproveListing { listing }, idem)
            .await
    }

    /// Removes a held or active listing (operators): its live offers void, its threads end.
    pub async fn remove_listing(
        &self,
        caller: &Caller,
        market: i64,
        listing: i64,
        reason: String,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        self.operator_command(
            caller,
            market,
            Command::RemoveListing { listing, reason },
            idem,
        )
        .await
    }

    /// Suspends a participant (operators): its agent tokens are refused from now on.
    pub async fn suspend(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        reason: String,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        self.operator_command(
            caller,
            market,
            Command::Suspend {
                participant,
                reason,
            },
            idem,
        )
        .await
    }

    /// Lifts a participant's suspension (operators).
    pub async fn reinstate(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        self.operator_command(caller, market, Command::Reinstate { participant }, idem)
            .await
    }

    /// Forgets the token checks of participants these events suspend or reinstate: their
    /// tokens are read again at once on this process (other replicas within `TOKEN_RECHECK`).
    pub(crate) fn forget_moderated_tokens(&self, events: &[haggle_core::Event]) {
        use haggle_core::EventBody;
        for e in events {
            match &e.body {
                EventBody::ParticipantSuspended(s) => self
                    .token_checks
                    .forget_participant(e.market_id, s.participant_id),
                EventBody::ParticipantReinstated(r) => self
                    .token_checks
                    .forget_participant(e.market_id, r.participant_id),
                _ => {}
            }
        }
    }

    /// Refuses an agent token whose participant an operator suspended (its principal's token
    /// still reads, so the principal sees why).
    pub(crate) async fn refuse_suspended(&self, caller: &Caller) -> ApiResult<()> {
        let (Role::Agent, Some(m), Some(p)) = (caller.role, caller.market, caller.participant)
        else {
            return Ok(());
        };
        match self.store.participant(m, p).await? {
            Some(haggle_core::Participant {
                suspension: Some(s),
                ..
            }) => Err(ApiError::new(
                ErrorCode::ParticipantSuspended,
                format!(
                    "participant {p} is suspended by an operator ({}): its agent tokens are \
                     refused; deals it agreed still settle",
                    s.reason
                ),
            )),
            _ => Ok(()),
        }
    }

    /// May `caller` see `listing` although it is held or removed? Its owner and operators may.
    pub(crate) fn sees_moderated(caller: &Caller, market: i64, l: &haggle_core::Listing) -> bool {
        use haggle_core::ListingStatus::{Held, Removed};
        !matches!(l.status, Held | Removed)
            || caller.is_operator_of(market)
            || (caller.market == Some(market) && caller.participant == Some(l.owner))
    }
}
