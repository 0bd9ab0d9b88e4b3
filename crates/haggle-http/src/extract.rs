//! Request plumbing shared by every route: the bearer token, the JSON body with its idempotency
//! key and request hash, query strings, and turning replies and refusals into responses.

use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use haggle_core::ErrorCode;
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

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(
            status,
            serde_json::to_string(&self.0.body).expect("error body serialises"),
        )
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
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| bad_request(format!("could not read the body: {e}")))?;
        let text = if bytes.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
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
