//! Token revocation over HTTP: one service call. An operator of the market revokes any of its
//! tokens, a principal its own agent's; the token's live streams and MCP sessions end within seconds.

use crate::AppState;
use crate::extract::{Auth, Json, Mutation, Path, Result};
use crate::routes::Empty;
use axum::extract::State;
use haggle_api::{ErrorBody, TokenInfo};

/// Revokes a token of the market, named by its id (`token_id` when it was created: the hex
/// SHA-256 of the secret). Revoking twice answers with the first revocation.
#[utoipa::path(post, path = "/v1/markets/{market}/tokens/{token_id}/revoke", params(("market" = i64, Path), ("token_id" = String, Path, description = "64 lowercase hex characters: the SHA-256 of the token")), responses((status = 200, body = TokenInfo), (status = 401, body = ErrorBody, description = "missing, unknown or revoked bearer token"), (status = 403, body = ErrorBody, description = "not an operator of the market, nor the principal of the token's agent"), (status = 404, body = ErrorBody, description = "no such token in this market"), (status = 422, body = ErrorBody, description = "malformed token id, or an Idempotency-Key reused with another request")), security(("bearer" = [])))]
pub async fn revoke_token(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path((m, token)): Path<(i64, String)>,
    b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(
        s.svc.revoke_token(&c, m, &token, b.idem.as_ref()).await?,
    ))
}
