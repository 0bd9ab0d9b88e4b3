//! The streamable HTTP transport: a tower service to mount under `/mcp`. Authentication is the
//! mounting server's job: a layer in front of this service checks the bearer token on every
//! request and puts the client it built for that token into the request as [`Authenticated`].

use crate::HaggleMcp;
use haggle_api::MarketClient;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;

pub use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
pub use tokio_util::sync::CancellationToken;

/// The market client authenticated for one HTTP request (a request extension).
pub struct Authenticated<C>(pub Arc<C>);

impl<C> Clone for Authenticated<C> {
    fn clone(&self) -> Self {
        Authenticated(self.0.clone())
    }
}

/// Request bodies above this are refused (the HTTP API's own limit).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The MCP endpoint as a tower service. Each MCP session (or each request, for clients on the
/// stateless protocol) gets its own [`HaggleMcp`], which acts through the [`Authenticated`]
/// client of each request. Cancelling `shutdown` ends every open session and stream, so the
/// server's graceful shutdown is not held up by idle MCP clients.
pub fn service<C: MarketClient + 'static>(
    shutdown: CancellationToken,
) -> StreamableHttpService<HaggleMcp<C>, LocalSessionManager> {
    service_with(shutdown, Arc::default())
}

/// [`service`] over the given sessions, so the mounting server can end one ([`close_session`]).
pub fn service_with<C: MarketClient + 'static>(
    shutdown: CancellationToken,
    sessions: Arc<LocalSessionManager>,
) -> StreamableHttpService<HaggleMcp<C>, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .with_max_request_body_bytes(MAX_BODY_BYTES)
        // The Host check guards servers that trust ambient browser credentials against DNS
        // rebinding; every request here must carry a bearer token a browser never adds, and
        // the server may be reached under any name it is deployed with.
        .disable_allowed_hosts();
    StreamableHttpService::new(|| Ok(HaggleMcp::per_request()), sessions, config)
}

/// Ends the session with this id (its streams close); an unknown id is no error.
pub async fn close_session(sessions: &LocalSessionManager, id: &str) {
    if let Err(e) = sessions.close_session(&id.into()).await {
        tracing::debug!(session = id, error = %e, "closing an MCP session failed");
    }
}
