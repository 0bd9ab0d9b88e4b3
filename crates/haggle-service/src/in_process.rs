//! The market contract (`haggle_api::MarketClient`) served in-process: the same service methods,
//! authorisation and rules as HTTP, without a socket — for fast simulations and `/mcp`.

use crate::{ApiError, Caller, Command, IdemKey, NewOffer, Reply, Service};
use haggle_api::client::ClientResult;
use haggle_api::haggle_core::lifecycle::Reputation;
use haggle_api::haggle_core::limits::MAX_PAGE;
use haggle_api::haggle_core::{
    Deal, Listing, Mandate, Market, Message, Offer, Participant, Rating,
};
use haggle_api::*;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A client bound to one market and one caller (an agent token's identity).
pub struct InProcess {
    svc: Arc<Service>,
    caller: Caller,
    market: i64,
    participant: i64,
    /// The idempotency key of every mutating call (`with_idempotency_key`); none by default, as
    /// an in-process caller sees every answer.
    key: Option<String>,
}

impl InProcess {
    /// Acts as `caller` (it should be an agent of `participant` in `market`).
    pub fn new(svc: Arc<Service>, caller: Caller, market: i64, participant: i64) -> InProcess {
        InProcess {
            svc,
            caller,
            market,
            participant,
            key: None,
        }
    }

    /// The key for one mutation, hashed with what it asks (`what` and its arguments), so the key
    /// reused for another request is `idempotency_conflict`, as over HTTP.
    fn idem(&self, what: &str, args: &impl std::fmt::Debug) -> Option<IdemKey> {
        let key = self.key.clone()?;
        let hash = Sha256::digest(format!("{what} {args:?}").as_bytes());
        Some(IdemKey {
            key,
            request_hash: hex::encode(hash),
        })
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
    fn with_idempotency_key(&self, key: &str) -> InProcess {
        InProcess {
            svc: self.svc.clone(),
            caller: self.caller.clone(),
            market: self.market,
            participant: self.participant,
            key: Some(key.to_string()),
        }
    }
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
        let idem = self.idem("create_listing", l);
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::CreateListing {
                        actor,
                        listing: l.clone(),
                    },
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn withdraw_listing(&self, id: i64) -> ClientResult<Done> {
        let idem = self.idem("withdraw_listing", &id);
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::WithdrawListing { actor, listing: id },
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn open_thread(&self, listing: i64, req: &OpenThread) -> ClientResult<ThreadOpened> {
        let idem = self.idem(
            "open_thread",
            &(listing, req.price, req.expires_in_ms, &req.message),
        );
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
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn threads(
        &self,
        filter: haggle_api::ThreadFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> ClientResult<ThreadList> {
        self.svc
            .threads(&self.caller, self.market, None, filter, cursor, Some(limit))
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
        let idem = self.idem("post_message", &(thread, body));
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
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn make_offer(&self, thread: i64, req: &MakeOffer) -> ClientResult<Offer> {
        let idem = self.idem("make_offer", &(thread, req.price, req.expires_in_ms));
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
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn accept(&self, offer: i64) -> ClientResult<Deal> {
        let idem = self.idem("accept", &offer);
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::AcceptOffer { actor, offer },
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn reject(&self, offer: i64) -> ClientResult<Done> {
        let idem = self.idem("reject", &offer);
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::RejectOffer { actor, offer },
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn withdraw_offer(&self, offer: i64) -> ClientResult<Done> {
        let idem = self.idem("withdraw_offer", &offer);
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::WithdrawOffer { actor, offer },
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn end_turn(&self, turn: u64) -> ClientResult<TurnEnded> {
        parse(self.svc.end_turn(&self.caller, self.market, turn).await)
    }
    async fn walk_away(&self, thread: i64) -> ClientResult<Done> {
        let idem = self.idem("walk_away", &thread);
        parse(
            self.svc
                .trade(
                    &self.caller,
                    self.market,
                    |actor| Command::WalkAway { actor, thread },
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn deals(&self, cursor: Option<&str>) -> ClientResult<DealList> {
        self.svc
            .deals(&self.caller, self.market, cursor, Some(MAX_PAGE))
            .await
            .map_err(err)
    }
    async fn hand_over(&self, deal: i64, note: Option<&str>) -> ClientResult<Deal> {
        let idem = self.idem("hand_over", &(deal, note));
        let note = note.map(str::to_string);
        parse(
            self.svc
                .deal_action(
                    &self.caller,
                    self.market,
                    |actor| Command::HandOver { actor, deal, note },
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn ship(&self, deal: i64, carrier: &str, tracking: &str) -> ClientResult<Deal> {
        let idem = self.idem("ship", &(deal, carrier, tracking));
        let (carrier, tracking) = (carrier.to_string(), tracking.to_string());
        parse(
            self.svc
                .deal_action(
                    &self.caller,
                    self.market,
                    |actor| Command::Ship {
                        actor,
                        deal,
                        carrier,
                        tracking,
                    },
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn confirm_receipt(&self, deal: i64) -> ClientResult<Deal> {
        let idem = self.idem("confirm_receipt", &deal);
        parse(
            self.svc
                .deal_action(
                    &self.caller,
                    self.market,
                    |actor| Command::ConfirmReceipt { actor, deal },
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn cancel_deal(&self, deal: i64, reason: Option<&str>) -> ClientResult<Deal> {
        let idem = self.idem("cancel_deal", &(deal, reason));
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
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn open_dispute(&self, deal: i64, req: &OpenDispute) -> ClientResult<Deal> {
        let idem = self.idem("open_dispute", &(deal, req));
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
                    idem.as_ref(),
                )
                .await,
        )
    }
    async fn rate(&self, deal: i64, score: u8, comment: &str) -> ClientResult<Rating> {
        let idem = self.idem("rate", &(deal, score, comment));
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
                    idem.as_ref(),
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
