//! `/mcp`: the market as an MCP server over streamable HTTP. Every request must carry an agent's
//! bearer token (a missing or unknown one is a 401 with the API's error body, another role's a
//! 403); the request is then served through an in-process client bound to that token, so MCP
//! calls pass the same authorisation, rate limit and market rules as the HTTP routes. A response
//! (an MCP SSE stream above all) ends once its token is revoked, and its session with it.
//! Ending a session (`DELETE /mcp`) answers 200, which the official SDKs take as success (rmcp
//! answers 202, which the Python SDK logs as a failed termination).

use crate::extract::{Failure, bearer};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use haggle_mcp::http::{Authenticated, CancellationToken, LocalSessionManager};
use haggle_service::{ApiError, InProcess, Service, hash_token};
use std::sync::Arc;

#[derive(Clone)]
struct Mcp {
    svc: Arc<Service>,
    sessions: Arc<LocalSessionManager>,
}

/// The MCP endpoint behind its bearer-token check.
pub fn service(svc: Arc<Service>, shutdown: CancellationToken) -> Router {
    let sessions = Arc::new(LocalSessionManager::default());
    let mcp = haggle_mcp::http::service_with::<InProcess>(shutdown, sessions.clone());
    Router::new()
        .fallback_service(mcp)
        .layer(middleware::from_fn_with_state(
            Mcp { svc, sessions },
            authenticate,
        ))
}

/// Ends `response`'s body when the token is revoked, closing the request's session too.
fn until_revoked(mcp: Mcp, token: &str, session: Option<String>, response: Response) -> Response {
    let scope = hash_token(token);
    let revoked = async move {
        mcp.svc.clone().until_revoked(scope).await;
        if let Some(id) = session {
            haggle_mcp::http::close_session(&mcp.sessions, &id).await;
        }
    };
    let (parts, body) = response.into_parts();
    let body = Body::from_stream(body.into_data_stream().take_until(revoked));
    Response::from_parts(parts, body)
}

async fn authenticate(State(mcp): State<Mcp>, mut req: Request, next: Next) -> Response {
    let svc = mcp.svc.clone();
    let client = match bearer(req.headers()) {
        Some(token) => InProcess::from_token(svc, token)
            .await
            .map_err(|e| ApiError {
                status: e.status,
                body: e.body,
            }),
        // The service's own refusal of a missing token, word for word.
        None => match svc.authenticate(None).await {
            Err(e) => Err(e),
            Ok(_) => Err(ApiError::new(
                haggle_core::ErrorCode::Unauthorized,
                "missing bearer token",
            )),
        },
    };
    match client {
        Ok(c) => {
            req.extensions_mut().insert(Authenticated(Arc::new(c)));
            let token = bearer(req.headers()).unwrap_or_default().to_string();
            let session = req
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let delete = req.method() == axum::http::Method::DELETE;
            let mut response = next.run(req).await;
            if delete && response.status() == axum::http::StatusCode::ACCEPTED {
                *response.status_mut() = axum::http::StatusCode::OK;
            }
            until_revoked(mcp, &token, session, response)
        }
        Err(e) => Failure(e).into_response(),
    }
}
