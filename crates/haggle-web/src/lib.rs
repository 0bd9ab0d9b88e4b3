//! Haggle's web interface: server-rendered pages (askama) over the same service calls, roles and
//! idempotency as the JSON API, live from the market's event stream (htmx and its SSE extension,
//! vendored and served here). Pages read fully without JavaScript; only live updates need it.

mod channel;
mod charts;
mod feed;
mod format;
mod market;
mod moderation;
mod operator;
mod page;
mod payments;
mod principal;
mod reports;
mod session;
mod trade;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use haggle_service::Service;
use std::path::PathBuf;
use std::sync::Arc;

/// How the web interface is mounted.
#[derive(Debug, Clone, Default)]
pub struct WebOptions {
    /// A folder of experiment and demo reports (each a folder with `report.html` and its files),
    /// browsable at `/reports/` by operators and observers. `None`: no reports.
    pub reports: Option<PathBuf>,
    /// The address people reach the server at (`haggle serve --public-url`). An `https://` one
    /// marks the session cookie `Secure` (as does `X-Forwarded-Proto: https` from a TLS proxy).
    pub public_url: Option<String>,
}

#[derive(Clone)]
pub(crate) struct Web {
    pub svc: Arc<Service>,
    pub reports: Option<Arc<PathBuf>>,
    /// The server is reached over HTTPS whatever the request says (`public_url` is `https://`).
    pub https: bool,
}

const HTMX: &[u8] = include_bytes!("../static/htmx.min.js");
const SSE: &[u8] = include_bytes!("../static/sse.min.js");
const CSS: &[u8] = include_bytes!("../static/haggle.css");
const FAVICON: &[u8] = include_bytes!("../static/favicon.svg");

fn asset(body: &'static [u8], content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// Pages may load scripts and styles from this server only; nothing may frame them.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// The web interface's routes: `/`, `/signin`, `/signout`, `/static/...`, `/favicon.ico`, `/m/{market}/...`,
/// `/operator` and `/reports/...`. It leaves `/v1/...`, `/openapi.json`, `/healthz` and `/mcp`
/// to the other interfaces, and has no fallback, so it merges with the JSON API's router.
pub fn router(svc: Arc<Service>, opts: WebOptions) -> Router {
    let web = Web {
        svc,
        reports: opts.reports.map(Arc::new),
        https: opts
            .public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://")),
    };
    let m = "/m/{market}";
    Router::new()
        .route("/", get(market::home))
        .route("/signin", get(session::signin_page).post(session::sign_in))
        .route("/signout", post(session::sign_out))
        .route(
            "/static/htmx.min.js",
            get(|| async { asset(HTMX, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/static/sse.min.js",
            get(|| async { asset(SSE, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/static/haggle.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        // Pages link the icon; browsers that ask for /favicon.ico on their own get it too.
        .route(
            "/static/favicon.svg",
            get(|| async { asset(FAVICON, "image/svg+xml") }),
        )
        .route(
            "/favicon.ico",
            get(|| async { asset(FAVICON, "image/svg+xml") }),
        )
        .route(m, get(feed::market_page))
        .route(&format!("{m}/live"), get(feed::live))
        .route(
            &format!("{m}/listings"),
            get(market::listings).post(trade::post_listing),
        )
        .route(&format!("{m}/listings/{{listing}}"), get(market::listing))
        .route(&format!("{m}/deals"), get(market::deals))
        .route(&format!("{m}/deals/{{deal}}"), get(market::deal))
        .route(&format!("{m}/participants"), get(market::participants))
        .route(&format!("{m}/p/{{participant}}"), get(principal::page))
        .route(
            &format!("{m}/p/{{participant}}/mandate"),
            post(principal::set_mandate),
        )
        .route(
            &format!("{m}/p/{{participant}}/pause"),
            post(principal::pause),
        )
        .route(
            &format!("{m}/p/{{participant}}/turns/{{turn}}/end"),
            post(principal::end_turn),
        )
        .route(
            &format!("{m}/p/{{participant}}/survey"),
            post(principal::survey),
        )
        .route(
            &format!("{m}/deals/{{deal}}/approval"),
            post(principal::approval),
        )
        .route(&format!("{m}/deals/{{deal}}/rate"), post(principal::rate))
        .route(
            &format!("{m}/deals/{{deal}}/inspection"),
            post(principal::inspection),
        )
        .route(
            &format!("{m}/p/{{participant}}/trading_mode"),
            post(trade::set_mode),
        )
        .route(
            &format!("{m}/proposals/{{proposal}}/{{decision}}"),
            post(trade::decide),
        )
        .route(
            &format!("{m}/listings/{{listing}}/withdraw"),
            post(trade::withdraw_listing),
        )
        .route(
            &format!("{m}/listings/{{listing}}/offer"),
            post(trade::make_offer),
        )
        .route(
            &format!("{m}/threads/{{thread}}/{{action}}"),
            post(trade::thread_action),
        )
        .route(
            &format!("{m}/offers/{{offer}}/{{action}}"),
            post(trade::offer_action),
        )
        .route(
            &format!("{m}/deals/{{deal}}/{{step}}"),
            post(trade::deal_step),
        )
        .route(&format!("{m}/operate"), get(operator::market_page))
        .route(
            &format!("{m}/operate/participants"),
            post(operator::register),
        )
        .route(&format!("{m}/operate/tokens"), post(operator::token))
        .route(&format!("{m}/operate/revoke"), post(operator::revoke))
        .route(&format!("{m}/operate/fund"), post(operator::fund))
        .route(&format!("{m}/operate/channel"), post(channel::set))
        .route(
            &format!("{m}/operate/closes_at"),
            post(operator::closing_time),
        )
        .route(&format!("{m}/operate/moderation"), get(moderation::page))
        .route(&format!("{m}/operate/payments"), get(payments::page))
        .route(&format!("{m}/operate/payments/sync"), post(payments::sync))
        .route(
            &format!("{m}/p/{{participant}}/payment_method"),
            post(payments::attach),
        )
        .route(&format!("{m}/operate/policy"), post(moderation::set_policy))
        .route(&format!("{m}/operate/remove"), post(moderation::remove))
        .route(
            &format!("{m}/operate/listings/{{listing}}/approve"),
            post(moderation::approve),
        )
        .route(
            &format!("{m}/operate/participants/{{participant}}/suspend"),
            post(moderation::suspend),
        )
        .route(
            &format!("{m}/operate/participants/{{participant}}/reinstate"),
            post(moderation::reinstate),
        )
        .route(
            &format!("{m}/deals/{{deal}}/resolve"),
            post(operator::resolve),
        )
        .route(
            &format!("{m}/deals/{{deal}}/evidence"),
            post(operator::evidence),
        )
        .route(
            &format!("{m}/settlement.csv"),
            get(operator::settlement_csv),
        )
        .route("/operator", get(operator::markets_page))
        .route("/operator/markets", post(operator::create_market))
        .route("/reports", get(reports::index))
        .route("/reports/", get(reports::index))
        .route("/reports/{*path}", get(reports::file))
        .route(&format!("{m}/{{*rest}}"), get(page::not_found))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            page::with_the_signed_in_visitor,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}
