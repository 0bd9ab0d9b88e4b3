//! The market contract (`haggle_api::MarketClient`) served in-process: the same service methods,
//! authorisation and rules as HTTP, without a socket — for fast simulations.

use crate::{ApiError, Caller, Command, NewOffer, Reply, Service};
use haggle_api::client::ClientResult;
use haggle_api::haggle_core::lifecycle::Reputation;
use haggle_api::haggle_core::{
    Deal, Listing, Mandate, Market, Message, Offer, Participant, Rating,
};
use haggle_api::*;
use std::sync::Arc;

/// A client bound to one market and one caller (an agent token's identity).
pub struct InProcess {
    svc: Arc<Service>,
    caller: Caller,
    market: i64,
    participant: i64,
}

impl InProcess {
    /// Acts as `caller` (it should be an agent of `participant` in `market`).
    pub fn new(svc: Arc<Service>, caller: Caller, market: i64, participant: i64) -> InProcess {
        InProcess {
            svc,
            caller,
            market,
            participant,
        }
    }

    /// Authenticates a bearer token and binds the client to its market and participant.
    pub async fn from_token(svc: Arc<Service>, token: &str) -> ClientResult<InProcess> {
        let caller = svc.authenticate(Some(token)).await.map_err(err)?;
        let (Some(m), Some(p)) = (caller.market, caller.participant) else {
            return Err(ClientError {
                status: 403,
                body: ErrorBody::new(
                    ErrorCode::Forbidden,
                    "an in-process agent client needs an agent token",
                ),
            });
        };
        Ok(InProcess::new(svc, caller, m, p))
    }
}

fn err(e: ApiError) -> ClientError {
    ClientError {
        status: e.status,
        body: e.body,
    }
}

fn parse<T: serde::de::DeserializeOwned>(r: Result<Reply, ApiError>) -> ClientResult<T> {
    let r = r.map_err(err)?;
    serde_json::from_str(&r.body)
        .map_err(|e| ClientError::transport(format!("unexpected reply: {e}")))
}

impl MarketClient for InProcess {
    fn market_id(&self) -> i64 {
        self.market
    }
    fn participant_id(&self) -> i64 {
        self.participant
    }
    async fn market(&self) -> ClientResult<Market> {
        self.svc
            .market(&self.caller, self.market)
            .await
            .map_err(err)
    }
    async fn participant(&self) -> ClientResult<Participant> {
        self.svc
            .participant(&self.caller, self.market, self.participant)
            .await
            .map_err(err)
    }
    async fn search(&self, q: &ListingQuery) -> ClientResult<ListingPage> {
        self.svc
            .search(&self.caller, self.market, q)
            .await
            .map_err(err)
    }
    async fn listing(&self, id: i64) -> ClientResult<ListingView> {
        self.svc
            .listing_view(&self.caller, self.market, id)
            .await
            .map_err(err)
    }
    async fn create_listing(&self, l: &NewListing) -> ClientResult<Listing> {
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::CreateListing {
                        actor,
                        listing: l.clone(),
                    },
                    None,
                )
                .await,
        )
    }
    async fn withdraw_listing(&self, id: i64) -> ClientResult<Done> {
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::WithdrawListing { actor, listing: id },
                    None,
                )
                .await,
        )
    }
    async fn open_thread(&self, listing: i64, req: &OpenThread) -> ClientResult<ThreadOpened> {
        let offer = req.price.map(|price| NewOffer {
            price,
            expires_in_ms: req.expires_in_ms,
        });
        let message = req.message.clone();
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::OpenThread {
                        actor,
                        listing,
                        message,
                        offer,
                    },
                    None,
                )
                .await,
        )
    }
    async fn threads(&self, cursor: Option<&str>) -> ClientResult<ThreadList> {
        self.svc
            .threads(&self.caller, self.market, None, cursor, Some(500))
            .await
            .map_err(err)
    }
    async fn thread(&self, id: i64) -> ClientResult<ThreadView> {
        self.svc
            .thread(&self.caller, self.market, id)
            .await
            .map_err(err)
    }
    async fn post_message(&self, thread: i64, body: &str) -> ClientResult<Message> {
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::PostMessage {
                        actor,
                        thread,
                        body: body.to_string(),
                    },
                    None,
                )
                .await,
        )
    }
    async fn make_offer(&self, thread: i64, req: &MakeOffer) -> ClientResult<Offer> {
        let offer = NewOffer {
            price: req.price,
            expires_in_ms: req.expires_in_ms,
        };
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::MakeOffer {
                        actor,
                        thread,
                        offer,
                    },
                    None,
                )
                .await,
        )
    }
    async fn accept(&self, offer: i64) -> ClientResult<Deal> {
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::AcceptOffer { actor, offer },
                    None,
                )
                .await,
        )
    }
    async fn reject(&self, offer: i64) -> ClientResult<Done> {
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::RejectOffer { actor, offer },
                    None,
                )
                .await,
        )
    }
    async fn withdraw_offer(&self, offer: i64) -> ClientResult<Done> {
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::WithdrawOffer { actor, offer },
                    None,
                )
                .await,
        )
    }
    async fn walk_away(&self, thread: i64) -> ClientResult<Done> {
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::WalkAway { actor, thread },
                    None,
                )
                .await,
        )
    }
    async fn deals(&self, cursor: Option<&str>) -> ClientResult<DealList> {
        self.svc
            .deals(&self.caller, self.market, cursor, Some(500))
            .await
            .map_err(err)
    }
    async fn hand_over(&self, deal: i64, note: Option<&str>) -> ClientResult<Deal> {
        let note = note.map(str::to_string);
        parse(
            self.svc
                .deal_action(
                    &self.caller,
                    self.market,
                    |actor| Command::HandOver { actor, deal, note },
                    None,
                )
                .await,
        )
    }
    async fn confirm_receipt(&self, deal: i64) -> ClientResult<Deal> {
        parse(
            self.svc
                .deal_action(
                    &self.caller,
                    self.market,
                    |actor| Command::ConfirmReceipt { actor, deal },
                    None,
                )
                .await,
        )
    }
    async fn cancel_deal(&self, deal: i64, reason: Option<&str>) -> ClientResult<Deal> {
        let reason = reason.map(str::to_string);
        parse(
            self.svc
                .deal_action(
                    &self.caller,
                    self.market,
                    |actor| Command::CancelDeal {
                        actor,
                        deal,
                        reason,
                    },
                    None,
                )
                .await,
        )
    }
    async fn open_dispute(&self, deal: i64, req: &OpenDispute) -> ClientResult<Deal> {
        parse(
            self.svc
                .deal_action(
                    &self.caller,
                    self.market,
                    |actor| Command::Dispute {
                        actor,
                        deal,
                        reason: req.reason.clone(),
                        grounds: haggle_core::Dispute {
                            grounds: req.grounds,
                            claims: req.claims.clone(),
                        },
                    },
                    None,
                )
                .await,
        )
    }
    async fn rate(&self, deal: i64, score: u8, comment: &str) -> ClientResult<Rating> {
        parse(
            self.svc
                .deal_action(
                    &self.caller,
                    self.market,
                    |actor| Command::Rate {
                        actor,
                        deal,
                        score,
                        comment: comment.to_string(),
                    },
                    None,
                )
                .await,
        )
    }
    async fn reputation(&self, participant: i64) -> ClientResult<Reputation> {
        self.svc
            .reputation(&self.caller, self.market, participant)
            .await
            .map_err(err)
    }
    async fn balance(&self) -> ClientResult<Balance> {
        self.svc
            .balance(&self.caller, self.market, self.participant)
            .await
            .map_err(err)
    }
    async fn mandate(&self) -> ClientResult<Mandate> {
        self.svc
            .mandate(&self.caller, self.market, self.participant)
            .await
            .map_err(err)
    }
    async fn events(&self, after: i64, limit: u32, mine: bool) -> ClientResult<EventPage> {
        self.svc
            .events_for(&self.caller, self.market, after, Some(limit), mine)
            .await
            .map_err(err)
    }
}
