//! What every page shares: the navigation bar's data, rendering a template into a response, and
//! refusals rendered as pages (the service's own code and message, with its HTTP status).

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use haggle_core::ErrorCode;
use haggle_service::ApiError;

/// The navigation bar: where we are and who is signed in.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    pub title: String,
    pub market: Option<MarketNav>,
    pub who: Option<Who>,
    /// Which top-level link is the current page (`feed`, `listings`, `deals`, `people`, `me`,
    /// `operate`, `reports`, `home`).
    pub current: &'static str,
}

#[derive(Debug, Clone)]
pub struct MarketNav {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Who {
    /// "operator", "observer", "agent of Alice", "principal of Alice".
    pub label: String,
    pub csrf: String,
    /// The participant an agent or principal token speaks for (its own page).
    pub participant: Option<i64>,
    /// May operate the market in the nav (a global operator or one of this market).
    pub operates: bool,
    /// May browse reports (operators and observers).
    pub researcher: bool,
}

impl Nav {
    pub fn is(&self, link: &str) -> &'static str {
        if self.current == link {
            "page"
        } else {
            "false"
        }
    }
}

/// A refusal or failure shown as a page.
#[derive(Debug)]
pub enum Failure {
    /// Not signed in (or the token was revoked): go to the sign-in form, then back to `next`.
    SignIn {
        next: String,
    },
    Api(ApiError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::Api(e)
    }
}

impl From<(ErrorCode, String)> for Failure {
    fn from(e: (ErrorCode, String)) -> Failure {
        Failure::Api(e.into())
    }
}

pub type PageResult<T = Response> = Result<T, Failure>;

pub fn bad_request(message: impl Into<String>) -> Failure {
    Failure::Api(ApiError::new(ErrorCode::InvalidRequest, message))
}

pub fn forbidden(message: impl Into<String>) -> Failure {
    Failure::Api(ApiError::new(ErrorCode::Forbidden, message))
}

#[derive(Template, Clone)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Nav,
    status: u16,
    code: String,
    message: String,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::SignIn { next } => Redirect::to(&format!(
                "/signin?next={}",
                crate::format::url_encode(&next)
            ))
            .into_response(),
            Failure::Api(e) => {
                let status =
                    StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let page = ErrorPage {
                    nav: Nav {
                        title: "Refused".into(),
                        ..Nav::default()
                    },
                    status: e.status,
                    code: e.body.error.code.to_string(),
                    message: e.body.error.message.clone(),
                };
                let mut r = (status, render(&page)).into_response();
                r.extensions_mut().insert(ErrorShown(page));
                r
            }
        }
    }
}

/// An error page as rendered without a session, kept on its response for
/// [`with_the_signed_in_visitor`].
#[derive(Clone)]
struct ErrorShown(ErrorPage);

/// Error pages say who is signed in, as every other page does: a refusal is rendered where no
/// session is at hand (an extractor, a `?`), so this layer renders it again with the visitor's
/// nav when the request's cookie signs someone in.
pub async fn with_the_signed_in_visitor(
    axum::extract::State(web): axum::extract::State<crate::Web>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = req.headers().clone();
    let r = next.run(req).await;
    let Some(ErrorShown(mut page)) = r.extensions().get::<ErrorShown>().cloned() else {
        return r;
    };
    let Some(signed) = crate::session::signed_from(&web, &headers).await else {
        return r;
    };
    let name = match (signed.caller.market, signed.caller.participant) {
        (Some(m), Some(p)) => web
            .svc
            .participant(&signed.caller, m, p)
            .await
            .ok()
            .map(|p| p.name),
        _ => None,
    };
    page.nav.who = Some(signed.who(name.as_deref()));
    (r.status(), render(&page)).into_response()
}

/// Renders a page; a template that fails to render is a bug, reported as a 500 page.
pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            let mut r = (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: a page failed to render",
            )
                .into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
    }
}

/// An unknown page under a market.
pub async fn not_found() -> Failure {
    Failure::Api(ApiError::new(ErrorCode::NotFound, "no such page"))
}

/// Path parameters; a malformed one is a 400 page, not axum's plain text.
pub struct Ids<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Ids<T>
{
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> PageResult<Ids<T>> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Ids(p.0))
            .map_err(|e| bad_request(format!("invalid address: {}", e.body_text())))
    }
}

/// A query string; a malformed one is a 400 page.
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> PageResult<Params<T>> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| bad_request(format!("invalid query: {}", e.body_text())))
    }
}

/// A submitted form; a malformed one is a 400 page.
pub struct Form<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Form<T> {
    type Rejection = Failure;

    async fn from_request(req: axum::extract::Request, state: &S) -> PageResult<Form<T>> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|f| Form(f.0))
            .map_err(|e| bad_request(format!("invalid form: {}", e.body_text())))
    }
}

/// A market page's shared context: the market (read with the visitor's rights) and its nav bar.
pub struct Ctx {
    pub market: haggle_core::Market,
    pub nav: Nav,
}

pub async fn ctx(
    svc: &haggle_service::Service,
    s: &crate::session::Signed,
    market: i64,
    title: impl Into<String>,
    current: &'static str,
) -> PageResult<Ctx> {
    let m = svc.market(&s.caller, market).await?;
    let name = match s.caller.participant {
        Some(p) => svc
            .participant(&s.caller, market, p)
            .await
            .ok()
            .map(|p| p.name),
        None => None,
    };
    Ok(Ctx {
        nav: Nav {
            title: format!("{} · {}", title.into(), m.name),
            market: Some(MarketNav {
                id: m.id,
                name: m.name.clone(),
            }),
            who: Some(s.who(name.as_deref())),
            current,
        },
        market: m,
    })
}
