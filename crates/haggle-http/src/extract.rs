//! Request plumbing shared by every route: the bearer token, the JSON body with its idempotency
//! key and request hash, query strings, and turning replies and refusals into responses.

use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use haggle_core::ErrorCode;
use haggle_core::negotiation::is_refused_char;
use haggle_service::{ApiError, Caller, IdemKey, Reply};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// Wraps the service's error so it can be a response: the spec's error body with its status.
pub struct Failure(pub ApiError);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure(e)
    }
}

/// How long a client refused with `rate_limited` waits: the per-token bucket refills at least one
/// request a second (`Config::rate_per_sec` is a whole number ≥ 1 when limits are on).
pub const RETRY_AFTER_S: &str = "1";

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = json_response(
            status,
            serde_json::to_string(&self.0.body).expect("error body serialises"),
        );
        if self.0.code() == ErrorCode::RateLimited {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
        }
        r
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A successful reply from the service (already JSON).
pub struct Json(pub Reply);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        json_response(
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::OK),
            self.0.body,
        )
    }
}

/// Any serialisable value as a 200 JSON response.
pub fn ok<T: serde::Serialize>(v: &T) -> Json {
    Json(Reply::json(200, v))
}

pub type Result<T> = std::result::Result<T, Failure>;

pub fn bad_request(message: impl Into<String>) -> Failure {
    Failure(ApiError::new(ErrorCode::InvalidRequest, message))
}

/// The authenticated caller.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Auth> {
        Ok(Auth(state.svc.authenticate(bearer(&parts.headers)).await?))
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// A mutating request's JSON body (an empty body reads as `{}`), with its `Idempotency-Key` and
/// the hash of method, path and body that a replay must match.
pub struct Mutation<T> {
    pub body: T,
    pub idem: Option<IdemKey>,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Mutation<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &AppState) -> Result<Mutation<T>> {
        let key = match req.headers().get("idempotency-key") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| bad_request("Idempotency-Key must be visible ASCII"))?
                    .to_string(),
            ),
        };
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let json_type = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| bad_request(format!("could not read the body: {e}")))?;
        let text = match bytes.iter().position(|b| !b.is_ascii_whitespace()) {
            None => &b"{}"[..],
            Some(_) if !json_type => {
                return Err(bad_request(
                    "a request body must be JSON: send Content-Type: application/json",
                ));
            }
            Some(first) if bytes[first] != b'{' => {
                return Err(bad_request("the request body must be a JSON object"));
            }
            Some(_) => &bytes[..],
        };
        if let Some(c) = json_control_char(text) {
            return Err(control_char_refusal("the request body", c));
        }
        let body = serde_json::from_slice(text)
            .map_err(|e| bad_request(format!("invalid JSON body: {e}")))?;
        let idem = key.map(|key| {
            let mut h = Sha256::new();
            for part in [method.as_bytes(), b" ", path.as_bytes(), b"\n", &bytes[..]] {
                h.update(part);
            }
            IdemKey {
                key,
                request_hash: hex::encode(h.finalize()),
            }
        });
        Ok(Mutation { body, idem })
    }
}

/// A query string, refused with `invalid_request` (not axum's plain-text 400) when malformed.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Query<T>> {
        if let Some(c) = parts.uri.query().and_then(query_control_char) {
            return Err(control_char_refusal("the query string", c));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// Path parameters, refused with `invalid_request` when they are not numbers.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Path<T>> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// Whether the request says its body is JSON (`application/json` or a `+json` type).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .is_some_and(|t| t == "application/json" || t.ends_with("+json"))
}

fn control_char_refusal(place: &str, c: char) -> Failure {
    bad_request(format!(
        "{place} holds the control character U+{:04X}; text fields take no control characters \
         other than tab and line breaks",
        c as u32
    ))
}

/// The first refused character a JSON text would decode to: in `\\uXXXX` escapes, or raw (DEL and
/// C1 controls may stand raw inside JSON strings; raw C0 controls are invalid JSON anyway).
fn json_control_char(text: &[u8]) -> Option<char> {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\\' if text.get(i + 1) == Some(&b'u') => {
                let hex = text.get(i + 2..i + 6)?;
                let unit = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u32::from_str_radix(h, 16).ok());
                if let Some(c) = unit
                    .and_then(char::from_u32)
                    .filter(|c| is_refused_char(*c))
                {
                    return Some(c);
                }
                i += 6;
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    std::str::from_utf8(text)
        .ok()?
        .chars()
        .find(|c| is_refused_char(*c) && !c.is_ascii_whitespace())
}

/// The first refused character of a query string once percent-decoded (`%00`, `%7F`, `%C2%85`...).
fn query_control_char(query: &str) -> Option<char> {
    let bytes = query.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                decoded.push(b);
                i += 3;
            }
            (b, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded)
        .chars()
        .find(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::{json_control_char, query_control_char};

    #[test]
    fn control_characters_are_found_in_json_escapes_and_raw() {
        assert_eq!(json_control_char(br#"{"t": "a\u0000b"}"#), Some('\0'));
        assert_eq!(json_control_char(br#"{"t": "a\u001Bb"}"#), Some('\u{1b}'));
        assert_eq!(
            json_control_char("{\"t\": \"a\u{7f}\"}".as_bytes()),
            Some('\u{7f}')
        );
        assert_eq!(
            json_control_char("{\"t\": \"\u{85}\"}".as_bytes()),
            Some('\u{85}')
        );
        // Line breaks and tabs are text; an escaped backslash before `u0000` is not an escape.
        assert_eq!(json_control_char(br#"{"t": "a\nb\tc\u000a"}"#), None);
        assert_eq!(json_control_char(br#"{"t": "a\\u0000"}"#), None);
        assert_eq!(json_control_char(b"{\n\t\"t\": 1\r\n}"), None);
    }

    #[test]
    fn control_characters_are_found_in_query_strings() {
        assert_eq!(query_control_char("q=a%00b"), Some('\0'));
        assert_eq!(query_control_char("q=a%0ab"), Some('\n'));
        assert_eq!(query_control_char("q=%C2%85"), Some('\u{85}'));
        assert_eq!(query_control_char("q=bike+red&limit=5"), None);
        assert_eq!(query_control_char("q=100%25"), None);
    }
}
