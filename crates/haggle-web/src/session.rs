//! Signing in: a form posts a token (operator, principal, observer or agent), which is kept in an
//! HttpOnly, SameSite=Strict cookie and authenticated on every request exactly like a bearer
//! token. Mutating forms carry a per-session CSRF token (derived from the session's token, so
//! nothing is stored) and must come from this origin.

use crate::Web;
use crate::page::{Failure, Nav, PageResult, Who, render};
use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::{HeaderMap, HeaderValue, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use haggle_core::ErrorCode;
use haggle_service::{ApiError, Caller, IdemKey, Role};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const COOKIE: &str = "haggle_session";

/// The session's token from the `Cookie` header.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of a session: a hash of its secret, so a page of another origin (which cannot
/// read the HttpOnly cookie) cannot know it.
fn csrf_for(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"haggle-web-csrf\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// A signed-in visitor: the caller its token establishes, and its CSRF token.
pub struct Signed {
    pub caller: Caller,
    pub csrf: String,
}

impl FromRequestParts<Web> for Signed {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> PageResult<Signed> {
        let next = parts
            .uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string());
        let Some(token) = cookie_token(&parts.headers) else {
            return Err(Failure::SignIn { next });
        };
        match web.svc.authenticate(Some(&token)).await {
            Ok(caller) => Ok(Signed {
                caller,
                csrf: csrf_for(&token),
            }),
            Err(e) if e.code() == ErrorCode::Unauthorized => Err(Failure::SignIn { next }),
            Err(e) => Err(e.into()),
        }
    }
}

/// The visitor a request's session cookie signs in, if any (for pages rendered outside a
/// handler: the error page).
pub async fn signed_from(web: &Web, headers: &HeaderMap) -> Option<Signed> {
    let token = cookie_token(headers)?;
    let caller = web.svc.authenticate(Some(&token)).await.ok()?;
    Some(Signed {
        caller,
        csrf: csrf_for(&token),
    })
}

/// The visitor if signed in (pages that also serve signed-out visitors).
pub struct MaybeSigned(pub Option<Signed>);

impl FromRequestParts<Web> for MaybeSigned {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> PageResult<MaybeSigned> {
        match Signed::from_request_parts(parts, web).await {
            Ok(s) => Ok(MaybeSigned(Some(s))),
            Err(Failure::SignIn { .. }) => Ok(MaybeSigned(None)),
            Err(e) => Err(e),
        }
    }
}

/// The request's headers, to check where a form came from.
pub struct FormOrigin(pub HeaderMap);

impl<S: Send + Sync> FromRequestParts<S> for FormOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<FormOrigin, Self::Rejection> {
        Ok(FormOrigin(parts.headers.clone()))
    }
}

/// A form must come from a page of this server: a browser names the origin of a cross-site post
/// (`Origin`, `Sec-Fetch-Site`), which must be this host.
fn same_origin(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

fn csrf_refusal() -> Failure {
    Failure::Api(ApiError::new(
        ErrorCode::Forbidden,
        "this form did not come from this server's page (reload the page and try again)",
    ))
}

impl Signed {
    /// Checks a mutating form: same origin and this session's CSRF token.
    pub fn check(&self, origin: &FormOrigin, csrf: &str) -> PageResult<()> {
        if !same_origin(&origin.0) || csrf != self.csrf {
            return Err(csrf_refusal());
        }
        Ok(())
    }

    /// The navigation bar for this visitor; `participant_name` labels agents and principals.
    pub fn who(&self, participant_name: Option<&str>) -> Who {
        let c = &self.caller;
        let label = match (c.role, participant_name) {
            (Role::Agent, Some(n)) => format!("agent of {n}"),
            (Role::Principal, Some(n)) => format!("principal of {n}"),
            (role, _) => role.as_str().to_string(),
        };
        Who {
            label,
            csrf: self.csrf.clone(),
            participant: c.participant,
            operates: c.role == Role::Operator,
            researcher: matches!(c.role, Role::Operator | Role::Observer),
        }
    }
}

/// The idempotency key a form carries (a fresh random key in each rendered form), with the hash
/// of what was submitted: resubmitting the same form replays the first answer.
pub fn idem_key(
    key: &str,
    path: &str,
    form: &impl serde::Serialize,
) -> PageResult<Option<IdemKey>> {
    if key.is_empty() {
        return Ok(None);
    }
    if key.len() > 200 {
        return Err(crate::page::bad_request("the form's key is too long"));
    }
    let mut h = Sha256::new();
    h.update(b"POST ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(serde_json::to_vec(form).expect("forms serialise"));
    Ok(Some(IdemKey {
        key: format!("web:{key}"),
        request_hash: hex::encode(h.finalize()),
    }))
}

/// A fresh idempotency key for a form being rendered.
pub fn new_form_key() -> String {
    haggle_service::new_secret()
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    nav: Nav,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextParam {
    #[serde(default)]
    next: String,
}

/// Only a plain path on this server is a place to return to: it starts with one `/` and holds
/// only visible ASCII. Browsers drop tabs and line breaks from URLs and read `\\` as `/`, so
/// `/\t/evil.example` or `/\\evil.example` would become `//evil.example`, another site; a line
/// break would not even fit a `Location` header.
pub fn safe_next(next: &str) -> String {
    let plain = next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if plain && next.starts_with('/') && !next.starts_with("//") {
        next.to_string()
    } else {
        "/".to_string()
    }
}

pub async fn signin_page(axum::extract::Query(q): axum::extract::Query<NextParam>) -> Response {
    render(&SignInPage {
        nav: Nav {
            title: "Sign in".into(),
            ..Nav::default()
        },
        next: safe_next(&q.next),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct SignInForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// Whether this request reached us over HTTPS: the server's public URL says so, or the TLS proxy
/// in front of it does (`X-Forwarded-Proto: https`). A client faking the header only makes its own
/// cookie `Secure`.
fn over_https(web: &Web, headers: &HeaderMap) -> bool {
    web.https
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn session_cookie(value: &str, max_age: Option<i64>, secure: bool) -> HeaderValue {
    let age = max_age.map_or(String::new(), |s| format!("; Max-Age={s}"));
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"
    ))
    .expect("cookie is visible ASCII")
}

pub async fn sign_in(
    State(web): State<Web>,
    origin: FormOrigin,
    headers: HeaderMap,
    axum::Form(f): axum::Form<SignInForm>,
) -> Response {
    let next = safe_next(&f.next);
    let refused = |message: &str, status| {
        let page = SignInPage {
            nav: Nav {
                title: "Sign in".into(),
                ..Nav::default()
            },
            next: next.clone(),
            error: Some(message.to_string()),
        };
        (status, render(&page)).into_response()
    };
    if !same_origin(&origin.0) {
        return refused(
            "this form did not come from this server",
            axum::http::StatusCode::FORBIDDEN,
        );
    }
    let token = f.token.trim();
    // A token is visible ASCII (it goes into a cookie); anything else is not one of ours.
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
        return refused(
            "that is not a Haggle token",
            axum::http::StatusCode::UNAUTHORIZED,
        );
    }
    match web.svc.authenticate(Some(token)).await {
        Ok(_) => {
            let mut r = Redirect::to(&next).into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(token, None, over_https(&web, &headers)),
            );
            r
        }
        Err(e) => refused(
            &e.body.error.message,
            axum::http::StatusCode::from_u16(e.status)
                .unwrap_or(axum::http::StatusCode::UNAUTHORIZED),
        ),
    }
}

#[derive(Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(
    State(web): State<Web>,
    signed: MaybeSigned,
    origin: FormOrigin,
    headers: HeaderMap,
    axum::Form(f): axum::Form<SignOutForm>,
) -> PageResult {
    if let Some(s) = &signed.0 {
        s.check(&origin, &f.csrf)?;
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", Some(0), over_https(&web, &headers)),
    );
    Ok(r)
}

/// Refuses a caller that is not an operator of `market`, with the service's words.
pub fn operator_of(s: &Signed, market: i64) -> PageResult<()> {
    if s.caller.is_operator_of(market) {
        Ok(())
    } else {
        Err(Failure::Api(ApiError::new(
            ErrorCode::Forbidden,
            "this page needs an operator token",
        )))
    }
}
