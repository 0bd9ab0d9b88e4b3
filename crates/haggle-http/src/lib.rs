//! Haggle's HTTP JSON API: the routes of the spec over the service, bearer auth, idempotency keys,
//! the error body, a live SSE feed, the OpenAPI 3.1 document generated from the route code, and
//! the MCP endpoint at `/mcp`.

pub mod apidoc;
pub mod deals;
pub mod extract;
pub mod insight;
pub mod mcp;
pub mod moderation;
pub mod payments;
pub mod routes;
pub mod sse;
pub mod tokens;
pub mod webhooks;

use apidoc::{ErrorResponses, IdempotencyKey, Security};
use axum::Router;
use axum::routing::{get, post, put};
use haggle_service::Service;
use std::sync::Arc;
use utoipa::OpenApi;

#[derive(Clone)]
pub struct AppState {
    pub svc: Arc<Service>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Haggle", description = "A classified-ads marketplace where AI agents buy and sell. Money is in minor units (integers)."),
    paths(
        routes::me, routes::markets, routes::create_market, routes::market, routes::create_token,
        tokens::revoke_token,
        routes::participants, routes::register_participant, routes::participant, routes::balance,
        routes::mandate, routes::set_mandate, routes::fund, routes::freeze, routes::pause, routes::set_trading_mode, routes::search,
        routes::create_listing, routes::listing, routes::withdraw_listing, routes::open_thread,
        routes::threads, routes::thread, routes::thread_messages, routes::post_message, routes::make_offer, routes::walk_away,
        routes::accept, routes::reject, routes::withdraw_offer, routes::deals, routes::deal,
        routes::events, sse::stream_events, routes::end_turn, routes::advance_clock, routes::set_closing_time, routes::verify,
        deals::hand_over, deals::ship, deals::confirm, deals::cancel, deals::dispute, deals::evidence, deals::resolve, deals::inspection,
        deals::approval, deals::rate, deals::ratings, deals::notes, deals::reputation, deals::settlement,
        webhooks::create_webhook, webhooks::webhooks, webhooks::deactivate_webhook,
        webhooks::webhook_deliveries, webhooks::channel, webhooks::set_channel,
        webhooks::remove_channel,
        insight::summary, insight::disputes, insight::survey_answers, insight::survey_answer,
        insight::answer_survey,
        moderation::policy, moderation::set_policy, moderation::moderation, moderation::approve,
        moderation::remove, moderation::suspend, moderation::reinstate,
        payments::attach_payment_method, payments::reconcile, payments::sync, payments::retry,
    ),
    components(schemas(haggle_api::ErrorBody)),
    modifiers(&Security, &IdempotencyKey, &ErrorResponses)
)]
pub struct ApiDoc;

/// The OpenAPI document served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> extract::Json {
    extract::ok(&openapi())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found() -> extract::Failure {
    extract::Failure(haggle_service::ApiError::new(
        haggle_core::ErrorCode::NotFound,
        "no such route; see /openapi.json",
    ))
}

/// A known path with a method it does not serve: still the spec's error body (axum's default
/// 405 has an empty body).
async fn method_not_allowed(method: axum::http::Method) -> extract::Failure {
    extract::Failure(haggle_service::ApiError {
        status: 405,
        body: haggle_api::ErrorBody::new(
            haggle_core::ErrorCode::InvalidRequest,
            format!("method {method} is not allowed on this path; see /openapi.json"),
        ),
    })
}

/// The API and the MCP endpoint (`/mcp`), whose sessions live until the process ends.
pub fn router(svc: Arc<Service>) -> Router {
    app(svc, CancellationToken::new())
}

pub use haggle_mcp::http::CancellationToken;

/// The API, and the MCP endpoint whose sessions and streams end when `mcp_shutdown` is cancelled.
pub fn app(svc: Arc<Service>, mcp_shutdown: CancellationToken) -> Router {
    use routes::*;
    let m = "/v1/markets/{market}";
    let p = "/v1/markets/{market}/participants/{participant}";
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/me", get(me))
        .route("/v1/markets", get(markets).post(create_market))
        .route(m, get(market))
        .route(&format!("{m}/tokens"), post(create_token))
        .route(
            &format!("{m}/tokens/{{token_id}}/revoke"),
            post(tokens::revoke_token),
        )
        .route(
            &format!("{m}/participants"),
            get(participants).post(register_participant),
        )
        .route(p, get(participant))
        .route(&format!("{p}/balance"), get(balance))
        .route(&format!("{p}/mandate"), get(mandate).put(set_mandate))
        .route(&format!("{p}/fund"), post(fund))
        .route(&format!("{p}/freeze"), post(freeze))
        .route(&format!("{p}/pause"), post(pause))
        .route(&format!("{p}/trading_mode"), put(set_trading_mode))
        .route(&format!("{m}/listings"), get(search).post(create_listing))
        .route(&format!("{m}/listings/{{listing}}"), get(listing))
        .route(
            &format!("{m}/listings/{{listing}}/withdraw"),
            post(withdraw_listing),
        )
        .route(
            &format!("{m}/listings/{{listing}}/threads"),
            post(open_thread),
        )
        .route(&format!("{m}/threads"), get(threads))
        .route(&format!("{m}/threads/{{thread}}"), get(thread))
        .route(
            &format!("{m}/threads/{{thread}}/messages"),
            get(thread_messages).post(post_message),
        )
        .route(&format!("{m}/threads/{{thread}}/offers"), post(make_offer))
        .route(
            &format!("{m}/threads/{{thread}}/walk-away"),
            post(walk_away),
        )
        .route(&format!("{m}/offers/{{offer}}/accept"), post(accept))
        .route(&format!("{m}/offers/{{offer}}/reject"), post(reject))
        .route(
            &format!("{m}/offers/{{offer}}/withdraw"),
            post(withdraw_offer),
        )
        .route(&format!("{m}/deals"), get(deals))
        .route(&format!("{m}/deals/{{deal}}"), get(deal))
        .route(
            &format!("{m}/deals/{{deal}}/handover"),
            post(deals::hand_over),
        )
        .route(&format!("{m}/deals/{{deal}}/ship"), post(deals::ship))
        .route(&format!("{m}/deals/{{deal}}/confirm"), post(deals::confirm))
        .route(&format!("{m}/deals/{{deal}}/cancel"), post(deals::cancel))
        .route(&format!("{m}/deals/{{deal}}/dispute"), post(deals::dispute))
        .route(
            &format!("{m}/deals/{{deal}}/evidence"),
            post(deals::evidence),
        )
        .route(&format!("{m}/deals/{{deal}}/resolve"), post(deals::resolve))
        .route(
            &format!("{m}/deals/{{deal}}/approval"),
            post(deals::approval),
        )
        .route(
            &format!("{m}/deals/{{deal}}/inspection"),
            post(deals::inspection),
        )
        .route(
            &format!("{m}/deals/{{deal}}/ratings"),
            get(deals::ratings).post(deals::rate),
        )
        .route(&format!("{m}/deals/{{deal}}/notes"), get(deals::notes))
        .route(&format!("{p}/reputation"), get(deals::reputation))
        .route(&format!("{m}/settlement"), get(deals::settlement))
        .route(&format!("{m}/summary"), get(insight::summary))
        .route(&format!("{m}/disputes"), get(insight::disputes))
        .route(&format!("{m}/survey"), get(insight::survey_answers))
        .route(
            &format!("{p}/survey"),
            get(insight::survey_answer).put(insight::answer_survey),
        )
        .route(&format!("{m}/events"), get(events))
        .route(&format!("{m}/events/stream"), get(sse::stream_events))
        .route(&format!("{m}/turns/{{turn}}/end"), post(end_turn))
        .route(&format!("{m}/clock/advance"), post(advance_clock))
        .route(&format!("{m}/closes_at"), put(set_closing_time))
        .route(&format!("{m}/ledger/verify"), get(verify))
        .route(
            &format!("{m}/policy"),
            get(moderation::policy).put(moderation::set_policy),
        )
        .route(&format!("{m}/moderation"), get(moderation::moderation))
        .route(
            &format!("{m}/listings/{{listing}}/approve"),
            post(moderation::approve),
        )
        .route(
            &format!("{m}/listings/{{listing}}/remove"),
            post(moderation::remove),
        )
        .route(&format!("{p}/suspend"), post(moderation::suspend))
        .route(&format!("{p}/reinstate"), post(moderation::reinstate))
        .route(
            &format!("{m}/webhooks"),
            get(webhooks::webhooks).post(webhooks::create_webhook),
        )
        .route(
            &format!("{m}/webhooks/{{webhook}}/deactivate"),
            post(webhooks::deactivate_webhook),
        )
        .route(
            &format!("{m}/webhooks/{{webhook}}/deliveries"),
            get(webhooks::webhook_deliveries),
        )
        .route(
            &format!("{m}/channel"),
            get(webhooks::channel).put(webhooks::set_channel),
        )
        .route(
            &format!("{m}/channel/remove"),
            post(webhooks::remove_channel),
        )
        .route(
            &format!("{p}/payment_method"),
            put(payments::attach_payment_method),
        )
        .route(&format!("{m}/payments/reconcile"), get(payments::reconcile))
        .route(&format!("{m}/payments/sync"), post(payments::sync))
        .route(
            &format!("{m}/deals/{{deal}}/payment/retry"),
            post(payments::retry),
        )
        .route(
            "/v1/payments/stripe/webhook",
            post(payments::stripe_webhook),
        )
        .nest_service("/mcp", mcp::service(svc.clone(), mcp_shutdown))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024))
        .with_state(AppState { svc })
}

/// Serves the API on `listener` until the future `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    svc: Arc<Service>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mcp_shutdown = CancellationToken::new();
    serve_app(
        listener,
        app(svc, mcp_shutdown.clone()),
        mcp_shutdown,
        shutdown,
    )
    .await
}

/// Serves `app` (the API's [`app`], possibly merged with other interfaces' routes, e.g. the web
/// pages) on `listener` until `shutdown` completes, then cancels `mcp_shutdown`: open MCP
/// streams would otherwise hold the graceful shutdown until their clients leave.
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    mcp_shutdown: CancellationToken,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            mcp_shutdown.cancel();
        })
        .await
}
