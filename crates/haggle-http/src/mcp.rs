//! `/mcp`: the market as an MCP server over streamable HTTP. Every request must carry an agent's
//! bearer token (a missing or unknown one is a 401 with the API's error body, another role's a
//! 403); the request is then served through an in-process client bound to that token, so MCP
//! calls pass the same authorisation, rate limit and market rules as the HTTP routes.

use crate::extract::{Failure, bearer};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use haggle_mcp::http::{Authenticated, CancellationToken};
use haggle_service::{ApiError, InProcess, Service};
use std::sync::Arc;

/// The MCP endpoint behind its bearer-token check.
pub fn service(svc: Arc<Service>, shutdown: CancellationToken) -> Router {
    Router::new()
        .fallback_service(haggle_mcp::http::service::<InProcess>(shutdown))
        .layer(middleware::from_fn_with_state(svc, authenticate))
}

async fn authenticate(State(svc): State<Arc<Service>>, mut req: Request, next: Next) -> Response {
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
            next.run(req).await
        }
        Err(e) => Failure(e).into_response(),
    }
}
