//! The HTTP routes: each translates a request into one service call. No market rule lives here.

use crate::AppState;
use crate::extract::{Auth, Json, Mutation, Path, Query, Result, ok};
use axum::extract::State;
use haggle_api::*;
use haggle_core::Mandate;
use haggle_service::{Command, NewOffer};
use serde::Deserialize;

type S = State<AppState>;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1..=500 (default 50); others are refused.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThreadParams {
    /// Only the threads on this listing.
    pub listing: Option<i64>,
    /// Only threads in this state (`open`, `agreed`, `broken`, `timed_out`, `void`).
    #[param(value_type = Option<haggle_core::model::ThreadStatus>)]
    pub state: Option<String>,
    /// Alias of `state` (its older name), accepted alone, not together with `state`.
    #[param(value_type = Option<haggle_core::model::ThreadStatus>)]
    pub status: Option<String>,
    /// Only threads where it is (`true`) or is not (`false`) the caller's move; needs a
    /// participant's token.
    #[param(value_type = Option<bool>)]
    pub your_move: Option<String>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1..=500 (default 50); others are refused.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Return events with a sequence number greater than this (default 0).
    #[serde(default)]
    pub after: i64,
    /// At most this many events, 1..=1000 (default 100); others are refused.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only the events naming the caller's participant (agent and principal tokens).
    #[serde(default)]
    pub mine: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MarketTokenParams {
    /// For agent and principal tokens: the participant the token speaks for.
    pub participant: Option<i64>,
}

#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema, Default)]
pub struct Empty {}

#[utoipa::path(get, path = "/v1/me", responses((status = 200, body = Me)), security(("bearer" = [])))]
pub async fn me(Auth(c): Auth) -> Json {
    ok(&Me {
        role: c.role.as_str().into(),
        market_id: c.market,
        participant_id: c.participant,
    })
}

#[utoipa::path(get, path = "/v1/markets", params(PageParams), responses((status = 200, body = MarketList)), security(("bearer" = [])))]
pub async fn markets(State(s): S, Auth(c): Auth, Query(p): Query<PageParams>) -> Result<Json> {
    Ok(ok(&s.svc.markets(&c, p.cursor.as_deref(), p.limit).await?))
}

#[utoipa::path(post, path = "/v1/markets", request_body = CreateMarket, responses((status = 201, body = haggle_core::Market)), security(("bearer" = [])))]
pub async fn create_market(State(s): S, Auth(c): Auth, m: Mutation<CreateMarket>) -> Result<Json> {
    Ok(Json(
        s.svc.create_market(&c, m.body, m.idem.as_ref()).await?,
    ))
}

#[utoipa::path(get, path = "/v1/markets/{market}", params(("market" = i64, Path)), responses((status = 200, body = haggle_core::Market)), security(("bearer" = [])))]
pub async fn market(State(s): S, Auth(c): Auth, Path(m): Path<i64>) -> Result<Json> {
    Ok(ok(&s.svc.market(&c, m).await?))
}

#[utoipa::path(post, path = "/v1/markets/{market}/tokens", params(("market" = i64, Path), MarketTokenParams), request_body = CreateToken, responses((status = 201, body = TokenCreated)), security(("bearer" = [])))]
pub async fn create_token(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(q): Query<MarketTokenParams>,
    b: Mutation<CreateToken>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .create_market_token(&c, m, b.body, q.participant)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/markets/{market}/participants", params(("market" = i64, Path), PageParams), responses((status = 200, body = ParticipantList)), security(("bearer" = [])))]
pub async fn participants(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(p): Query<PageParams>,
) -> Result<Json> {
    Ok(ok(&s
        .svc
        .participants(&c, m, p.cursor.as_deref(), p.limit)
        .await?))
}

#[utoipa::path(post, path = "/v1/markets/{market}/participants", params(("market" = i64, Path)), request_body = RegisterParticipant, responses((status = 201, body = ParticipantCreated)), security(("bearer" = [])))]
pub async fn register_participant(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    b: Mutation<RegisterParticipant>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .register_participant(&c, m, b.body, b.idem.as_ref())
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/markets/{market}/participants/{participant}", params(("market" = i64, Path), ("participant" = i64, Path)), responses((status = 200, body = haggle_core::Participant)), security(("bearer" = [])))]
pub async fn participant(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
) -> Result<Json> {
    Ok(ok(&s.svc.participant(&c, m, p).await?))
}

#[utoipa::path(get, path = "/v1/markets/{market}/participants/{participant}/balance", params(("market" = i64, Path), ("participant" = i64, Path)), responses((status = 200, body = Balance)), security(("bearer" = [])))]
pub async fn balance(State(s): S, Auth(c): Auth, Path((m, p)): Path<(i64, i64)>) -> Result<Json> {
    Ok(ok(&s.svc.balance(&c, m, p).await?))
}

#[utoipa::path(get, path = "/v1/markets/{market}/participants/{participant}/mandate", params(("market" = i64, Path), ("participant" = i64, Path)), responses((status = 200, body = Mandate)), security(("bearer" = [])))]
pub async fn mandate(State(s): S, Auth(c): Auth, Path((m, p)): Path<(i64, i64)>) -> Result<Json> {
    Ok(ok(&s.svc.mandate(&c, m, p).await?))
}

#[utoipa::path(put, path = "/v1/markets/{market}/participants/{participant}/mandate", params(("market" = i64, Path), ("participant" = i64, Path)), request_body = Mandate, responses((status = 200, body = Done)), security(("bearer" = [])))]
pub async fn set_mandate(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
    b: Mutation<Mandate>,
) -> Result<Json> {
    Ok(Json(
        s.svc.set_mandate(&c, m, p, b.body, b.idem.as_ref()).await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/participants/{participant}/fund", params(("market" = i64, Path), ("participant" = i64, Path)), request_body = Fund, responses((status = 200, body = Done)), security(("bearer" = [])))]
pub async fn fund(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
    b: Mutation<Fund>,
) -> Result<Json> {
    Ok(Json(s.svc.fund(&c, m, p, b.body, b.idem.as_ref()).await?))
}

#[utoipa::path(post, path = "/v1/markets/{market}/participants/{participant}/freeze", params(("market" = i64, Path), ("participant" = i64, Path)), request_body = Freeze, responses((status = 200, body = Done)), security(("bearer" = [])))]
pub async fn freeze(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
    b: Mutation<Freeze>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .freeze(&c, m, p, b.body.frozen, b.idem.as_ref())
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/participants/{participant}/pause", params(("market" = i64, Path), ("participant" = i64, Path)), request_body = Pause, responses((status = 200, body = Done)), security(("bearer" = [])))]
pub async fn pause(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
    b: Mutation<Pause>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .pause(&c, m, p, b.body.paused, b.idem.as_ref())
            .await?,
    ))
}

#[utoipa::path(put, path = "/v1/markets/{market}/participants/{participant}/trading_mode", params(("market" = i64, Path), ("participant" = i64, Path)), request_body = haggle_api::SetTradingMode, responses((status = 200, body = Done)), security(("bearer" = [])))]
/// The participant's principal sets how it trades: `agent`, `propose` or `principal`.
pub async fn set_trading_mode(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
    b: Mutation<haggle_api::SetTradingMode>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .set_trading_mode(&c, m, p, b.body.mode, b.idem.as_ref())
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/markets/{market}/listings", params(("market" = i64, Path), ListingQuery), responses((status = 200, body = ListingPage)), security(("bearer" = [])))]
pub async fn search(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(q): Query<ListingQuery>,
) -> Result<Json> {
    Ok(ok(&s.svc.search(&c, m, &q).await?))
}

#[utoipa::path(post, path = "/v1/markets/{market}/listings", params(("market" = i64, Path)), request_body = haggle_core::negotiation::NewListing, responses((status = 201, body = haggle_core::Listing)), security(("bearer" = [])))]
pub async fn create_listing(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    b: Mutation<NewListing>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .trade(
                &c,
                m,
                |actor| Command::CreateListing {
                    actor,
                    listing: b.body,
                },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/markets/{market}/listings/{listing}", params(("market" = i64, Path), ("listing" = i64, Path)), responses((status = 200, body = ListingView)), security(("bearer" = [])))]
pub async fn listing(State(s): S, Auth(c): Auth, Path((m, l)): Path<(i64, i64)>) -> Result<Json> {
    Ok(ok(&s.svc.listing_view(&c, m, l).await?))
}

#[utoipa::path(post, path = "/v1/markets/{market}/listings/{listing}/withdraw", params(("market" = i64, Path), ("listing" = i64, Path)), responses((status = 200, body = Done)), security(("bearer" = [])))]
pub async fn withdraw_listing(
    State(s): S,
    Auth(c): Auth,
    Path((m, l)): Path<(i64, i64)>,
    b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .trade(
                &c,
                m,
                |actor| Command::WithdrawListing { actor, listing: l },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/listings/{listing}/threads", params(("market" = i64, Path), ("listing" = i64, Path)), request_body = OpenThread, responses((status = 201, body = ThreadOpened)), security(("bearer" = [])))]
pub async fn open_thread(
    State(s): S,
    Auth(c): Auth,
    Path((m, l)): Path<(i64, i64)>,
    b: Mutation<OpenThread>,
) -> Result<Json> {
    let OpenThread {
        message,
        price,
        expires_in_ms,
    } = b.body;
    let offer = price.map(|price| NewOffer {
        price,
        expires_in_ms,
    });
    Ok(Json(
        s.svc
            .trade(
                &c,
                m,
                |actor| Command::OpenThread {
                    actor,
                    listing: l,
                    message,
                    offer,
                },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/markets/{market}/threads", params(("market" = i64, Path), ThreadParams), responses((status = 200, body = ThreadList)), security(("bearer" = [])))]
/// The caller's threads, each with its summary: open ones first, then ended ones, each by newest
/// activity first (a thread with activity while a reader pages moves to the top of the next poll
/// and is never listed twice).
pub async fn threads(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(q): Query<ThreadParams>,
) -> Result<Json> {
    let filter = ThreadFilter::parse(
        q.state.as_deref(),
        q.status.as_deref(),
        q.your_move.as_deref(),
    )
    .map_err(crate::extract::bad_request)?;
    Ok(ok(&s
        .svc
        .threads(&c, m, q.listing, filter, q.cursor.as_deref(), q.limit)
        .await?))
}

#[utoipa::path(get, path = "/v1/markets/{market}/threads/{thread}", params(("market" = i64, Path), ("thread" = i64, Path)), responses((status = 200, body = ThreadView)), security(("bearer" = [])))]
pub async fn thread(State(s): S, Auth(c): Auth, Path((m, t)): Path<(i64, i64)>) -> Result<Json> {
    Ok(ok(&s.svc.thread(&c, m, t).await?))
}

#[utoipa::path(get, path = "/v1/markets/{market}/threads/{thread}/messages", params(("market" = i64, Path), ("thread" = i64, Path), PageParams), responses((status = 200, body = MessagePage)), security(("bearer" = [])))]
/// A thread's messages, newest first, a page at a time (a thread read holds only the newest).
pub async fn thread_messages(
    State(s): S,
    Auth(c): Auth,
    Path((m, t)): Path<(i64, i64)>,
    Query(q): Query<PageParams>,
) -> Result<Json> {
    Ok(ok(&s
        .svc
        .thread_messages(&c, m, t, q.cursor.as_deref(), q.limit)
        .await?))
}

#[utoipa::path(post, path = "/v1/markets/{market}/threads/{thread}/messages", params(("market" = i64, Path), ("thread" = i64, Path)), request_body = PostMessage, responses((status = 201, body = haggle_core::Message)), security(("bearer" = [])))]
pub async fn post_message(
    State(s): S,
    Auth(c): Auth,
    Path((m, t)): Path<(i64, i64)>,
    b: Mutation<PostMessage>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .trade(
                &c,
                m,
                |actor| Command::PostMessage {
                    actor,
                    thread: t,
                    body: b.body.body,
                },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/threads/{thread}/offers", params(("market" = i64, Path), ("thread" = i64, Path)), request_body = MakeOffer, responses((status = 201, body = haggle_core::Offer)), security(("bearer" = [])))]
pub async fn make_offer(
    State(s): S,
    Auth(c): Auth,
    Path((m, t)): Path<(i64, i64)>,
    b: Mutation<MakeOffer>,
) -> Result<Json> {
    let offer = NewOffer {
        price: b.body.price,
        expires_in_ms: b.body.expires_in_ms,
    };
    Ok(Json(
        s.svc
            .trade(
                &c,
                m,
                |actor| Command::MakeOffer {
                    actor,
                    thread: t,
                    offer,
                },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/threads/{thread}/walk-away", params(("market" = i64, Path), ("thread" = i64, Path)), responses((status = 200, body = Done)), security(("bearer" = [])))]
pub async fn walk_away(
    State(s): S,
    Auth(c): Auth,
    Path((m, t)): Path<(i64, i64)>,
    b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .trade(
                &c,
                m,
                |actor| Command::WalkAway { actor, thread: t },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/offers/{offer}/accept", params(("market" = i64, Path), ("offer" = i64, Path)), responses((status = 201, body = haggle_core::Deal)), security(("bearer" = [])))]
pub async fn accept(
    State(s): S,
    Auth(c): Auth,
    Path((m, o)): Path<(i64, i64)>,
    b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .trade(
                &c,
                m,
                |actor| Command::AcceptOffer { actor, offer: o },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/offers/{offer}/reject", params(("market" = i64, Path), ("offer" = i64, Path)), responses((status = 200, body = Done)), security(("bearer" = [])))]
pub async fn reject(
    State(s): S,
    Auth(c): Auth,
    Path((m, o)): Path<(i64, i64)>,
    b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .trade(
                &c,
                m,
                |actor| Command::RejectOffer { actor, offer: o },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/offers/{offer}/withdraw", params(("market" = i64, Path), ("offer" = i64, Path)), responses((status = 200, body = Done)), security(("bearer" = [])))]
pub async fn withdraw_offer(
    State(s): S,
    Auth(c): Auth,
    Path((m, o)): Path<(i64, i64)>,
    b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .trade(
                &c,
                m,
                |actor| Command::WithdrawOffer { actor, offer: o },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/markets/{market}/deals", params(("market" = i64, Path), PageParams), responses((status = 200, body = DealList)), security(("bearer" = [])))]
pub async fn deals(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(p): Query<PageParams>,
) -> Result<Json> {
    Ok(ok(&s
        .svc
        .deals(&c, m, p.cursor.as_deref(), p.limit)
        .await?))
}

#[utoipa::path(get, path = "/v1/markets/{market}/deals/{deal}", params(("market" = i64, Path), ("deal" = i64, Path)), responses((status = 200, body = haggle_core::Deal)), security(("bearer" = [])))]
pub async fn deal(State(s): S, Auth(c): Auth, Path((m, d)): Path<(i64, i64)>) -> Result<Json> {
    Ok(ok(&s.svc.deal(&c, m, d).await?))
}

#[utoipa::path(get, path = "/v1/markets/{market}/events", params(("market" = i64, Path), EventParams), responses((status = 200, body = EventPage)), security(("bearer" = [])))]
pub async fn events(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(q): Query<EventParams>,
) -> Result<Json> {
    Ok(ok(&s
        .svc
        .events_for(&c, m, q.after, q.limit, q.mine)
        .await?))
}

/// A participant driven from outside a simulation ends its open turn (its agent or principal
/// token); an old, future or already ended turn is refused with `not_your_turn`.
#[utoipa::path(post, path = "/v1/markets/{market}/turns/{turn}/end", params(("market" = i64, Path), ("turn" = u64, Path)), responses((status = 200, body = TurnEnded)), security(("bearer" = [])))]
pub async fn end_turn(
    State(s): S,
    Auth(c): Auth,
    Path((m, turn)): Path<(i64, u64)>,
    _b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(s.svc.end_turn(&c, m, turn).await?))
}

#[utoipa::path(post, path = "/v1/markets/{market}/clock/advance", params(("market" = i64, Path)), request_body = AdvanceClock, responses((status = 200, body = ClockReading)), security(("bearer" = [])))]
pub async fn advance_clock(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    b: Mutation<AdvanceClock>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .advance_clock(&c, m, b.body.by_ms, b.idem.as_ref())
            .await?,
    ))
}

#[utoipa::path(put, path = "/v1/markets/{market}/closes_at", params(("market" = i64, Path)), request_body = SetClosingTime, responses((status = 200, body = haggle_core::Market)), security(("bearer" = [])))]
pub async fn set_closing_time(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    b: Mutation<SetClosingTime>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .set_closing_time(&c, m, b.body.closes_at, b.idem.as_ref())
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/markets/{market}/ledger/verify", params(("market" = i64, Path)), responses((status = 200, body = Verification)), security(("bearer" = [])))]
pub async fn verify(State(s): S, Auth(c): Auth, Path(m): Path<i64>) -> Result<Json> {
    Ok(ok(&s.svc.verify(&c, m).await?))
}
