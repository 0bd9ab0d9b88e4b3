//! Reads for people watching and running a market (the web interface, and the JSON API beside
//! it): the newest events first, the market summary, disputes waiting for a ruling, and the
//! principals' survey. Same roles and visibility as every other read.

use crate::parse_cursor;
use crate::{ApiError, ApiResult, Caller, IdemKey, Reply, Role, Service, next_cursor, page_limit};
use haggle_api::{AnswerSurvey, DealList, MarketSummary, SurveyAnswer, SurveyAnswerList};
use haggle_core::limits::{MAX_EVENTS, MAX_PAGE};
use haggle_core::{DealStatus, ErrorCode, Event, MAX_AMOUNT};

/// Event kinds a feed may ask for at once (more is refused).
const MAX_KINDS: usize = 32;

fn wire(a: haggle_store::survey::SurveyAnswer) -> SurveyAnswer {
    SurveyAnswer {
        market_id: a.market_id,
        participant_id: a.participant_id,
        fairness: a.fairness,
        satisfaction: a.satisfaction,
        would_pay: a.would_pay,
        comment: a.comment,
        answered_at: a.answered_at,
    }
}

impl Service {
    /// The newest events the caller may read, newest first: before `before` (a sequence number;
    /// all when absent), only of `kinds` when not empty. What a feed shows when it opens.
    pub async fn recent_events(
        &self,
        caller: &Caller,
        market: i64,
        kinds: &[&str],
        before: Option<i64>,
        limit: Option<u32>,
    ) -> ApiResult<Vec<Event>> {
        let viewer = self.viewer(caller, market).await?;
        self.market_or_404(market).await?;
        if kinds.len() > MAX_KINDS {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("at most {MAX_KINDS} event kinds at once"),
            ));
        }
        Ok(self
            .store
            .recent_events(
                market,
                viewer,
                kinds,
                before,
                limit.unwrap_or(50).clamp(1, MAX_EVENTS),
            )
            .await?)
    }

    /// One participant's own news (its threads, deals and money), newest first: what its agent
    /// did and what happened to it. Readers of that participant only.
    pub async fn recent_activity(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> ApiResult<Vec<Event>> {
        Self::require_reader_of(caller, market, participant)?;
        self.market_or_404(market).await?;
        Ok(self
            .store
            .recent_events(
                market,
                haggle_store::Viewer::Own(participant),
                &[],
                before,
                limit.unwrap_or(50).clamp(1, MAX_EVENTS),
            )
            .await?)
    }

    /// The deal an agreed thread struck, for a reader of the thread (None while it has none):
    /// found among its buyer's deals (an index read, bounded by that buyer's deals).
    pub async fn deal_of_thread(
        &self,
        caller: &Caller,
        market: i64,
        thread: i64,
    ) -> ApiResult<Option<haggle_core::Deal>> {
        let view = self.thread(caller, market, thread).await?;
        let Some(accepted) = view
            .detail
            .offers
            .iter()
            .find(|o| o.state == haggle_core::OfferState::Accepted)
        else {
            return Ok(None);
        };
        let mut after = 0;
        loop {
            let page = self
                .store
                .deals(market, Some(accepted.buyer), after, 500)
                .await?;
            if let Some(d) = page.iter().find(|d| d.offer_id == accepted.id) {
                return Ok(Some(d.clone()));
            }
            match page.last() {
                Some(d) if page.len() == 500 => after = d.id,
                _ => return Ok(None),
            }
        }
    }

    /// Deals, prices and participants at a glance. Every sale's price is public already, so every
    /// reader of the market may see the aggregates.
    pub async fn summary(&self, caller: &Caller, market: i64) -> ApiResult<MarketSummary> {
        let m = self.market(caller, market).await?;
        let mut participants = 0u64;
        let mut after = 0;
        loop {
            let page = self.store.participants(market, after, MAX_PAGE).await?;
            participants += page.len() as u64;
            match page.last() {
                Some(p) if page.len() == MAX_PAGE as usize => after = p.id,
                _ => break,
            }
        }
        let (mut prices, mut open, mut completed, mut disputed) = (Vec::new(), 0, 0, 0);
        let mut after = 0;
        loop {
            let page = self.store.deals(market, None, after, MAX_PAGE).await?;
            for d in &page {
                if d.status.hold_is_open() {
                    open += 1;
                }
                match d.status {
                    DealStatus::Completed => completed += 1,
                    DealStatus::Disputed => disputed += 1,
                    _ => {}
                }
                // The report's definition of a trade, so both show the same figures.
                if haggle_core::figures::counts_as_trade(d.status) {
                    prices.push(d.price);
                }
            }
            match page.last() {
                Some(d) if page.len() == 500 => after = d.id,
                _ => break,
            }
        }
        let median_price = haggle_core::figures::median(&prices);
        let now = m.now(self.now());
        Ok(MarketSummary {
            market_id: m.id,
            name: m.name.clone(),
            currency: m.currency.clone(),
            clock_mode: m.clock_mode,
            now,
            participants,
            deals: prices.len() as u64,
            volume: prices.iter().sum(),
            median_price,
            open_deals: open,
            completed_deals: completed,
            disputed_deals: disputed,
            closes_at: m.rules.closes_at,
            time_left_ms: m.time_left(now),
            closed: m.is_closed(now),
        })
    }

    /// Disputed deals waiting for a ruling: for the market's operators and its arbiter.
    pub async fn disputes(
        &self,
        caller: &Caller,
        market: i64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<DealList> {
        if !caller.is_operator_of(market) && !self.is_arbiter(caller, market).await? {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "disputes are for the market's operators and arbiter",
            ));
        }
        self.market_or_404(market).await?;
        let limit = page_limit(limit)?;
        let items = self
            .store
            .deals_in_status(market, DealStatus::Disputed, parse_cursor(cursor)?, limit)
            .await?;
        Ok(DealList {
            next_cursor: next_cursor(&items, limit, |d| d.id),
            items,
        })
    }

    /// The participant's principal answers the survey (answering again replaces the answer).
    pub async fn answer_survey(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        req: AnswerSurvey,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let principal = caller.role == Role::Principal
            && caller.market == Some(market)
            && caller.participant == Some(participant);
        if !principal {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the participant's principal answers its survey",
            ));
        }
        let invalid = |m: &str| ApiError::new(ErrorCode::InvalidRequest, m);
        if !(1..=7).contains(&req.fairness) {
            return Err(invalid("fairness must be 1 to 7"));
        }
        if !(1..=7).contains(&req.satisfaction) {
            return Err(invalid("satisfaction must be 1 to 7"));
        }
        if !(0..=MAX_AMOUNT).contains(&req.would_pay) {
            return Err(invalid("would_pay must be between 0 and 10^12 minor units"));
        }
        if req.comment.chars().count() > 2000 {
            return Err(invalid("comment must be at most 2000 characters"));
        }
        let run = async {
            self.market_or_404(market).await?;
            let answer = haggle_store::survey::SurveyAnswer {
                market_id: market,
                participant_id: participant,
                fairness: req.fairness,
                satisfaction: req.satisfaction,
                would_pay: req.would_pay,
                comment: req.comment.trim().to_string(),
                answered_at: self.now(),
            };
            self.store.put_survey_answer(&answer).await?;
            Ok(Reply::json(200, &wire(answer)))
        };
        self.once_per_key(caller, idem, run, |r| r.body.clone())
            .await
    }

    /// One participant's answer (its agent and principal, operators, observers); `None` before
    /// it answered.
    pub async fn survey_answer(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
    ) -> ApiResult<Option<SurveyAnswer>> {
        Self::require_reader_of(caller, market, participant)?;
        Ok(self
            .store
            .survey_answer(market, participant)
            .await?
            .map(wire))
    }

    /// Every answer of a market, by participant (operators and observers: research data).
    pub async fn survey_answers(
        &self,
        caller: &Caller,
        market: i64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<SurveyAnswerList> {
        let reader = match caller.role {
            Role::Operator => caller.is_operator_of(market),
            Role::Observer => caller.market == Some(market),
            Role::Agent | Role::Principal => false,
        };
        if !reader {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the survey's answers are for the market's operators and observers",
            ));
        }
        self.market_or_404(market).await?;
        let limit = page_limit(limit)?;
        let items: Vec<SurveyAnswer> = self
            .store
            .survey_answers(market, parse_cursor(cursor)?, limit)
            .await?
            .into_iter()
            .map(wire)
            .collect();
        Ok(SurveyAnswerList {
            next_cursor: next_cursor(&items, limit, |a| a.participant_id),
            items,
        })
    }

    /// A rating of the counterparty after a finished deal, by the participant's agent or its
    /// principal (the person who met the counterparty).
    pub async fn rate(
        &self,
        caller: &Caller,
        market: i64,
        deal: i64,
        score: u8,
        comment: String,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let actor = match (caller.role, caller.market, caller.participant) {
            (Role::Principal, Some(m), Some(p)) if m == market => p,
            _ => caller.agent_for(market)?,
        };
        let cmd = haggle_store::Command::Rate {
            actor,
            deal,
            score,
            comment,
        };
        Ok(self.command(caller, market, cmd, idem).await?.0)
    }
}
