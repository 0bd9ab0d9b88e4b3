//! Token revocation: who may revoke which token, and the watch that ends a revoked token's live
//! streams and MCP sessions within seconds, on this server and on replicas sharing its database.

use crate::{ApiError, ApiResult, Caller, IdemKey, Reply, Role, Service};
use haggle_api::TokenInfo;
use haggle_core::ErrorCode;
use haggle_store::TokenRecord;
use std::sync::Arc;
use std::time::Duration;

/// How often a live stream re-reads its token: a revocation through another replica ends the
/// stream within this (one through this process wakes it at once).
pub const TOKEN_RECHECK: Duration = Duration::from_secs(1);

/// A stored token as the API shows it (never the secret, which is not stored).
pub fn token_info(t: &TokenRecord) -> TokenInfo {
    TokenInfo {
        token_id: t.hash.clone(),
        role: t.role.as_str().into(),
        market_id: t.market_id,
        participant_id: t.participant_id,
        label: t.label.clone(),
        created_at: t.created_at,
        revoked_at: t.revoked_at,
    }
}

fn is_token_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Service {
    /// Revokes a token of `market`, named by its id (the hex SHA-256 of its secret): an operator
    /// of the market may revoke any of the market's tokens, a principal only its own
    /// participant's agent tokens. Tokens are not market state: no market lock, no event.
    /// Revoking twice answers with the first revocation.
    pub async fn revoke_token(
        &self,
        caller: &Caller,
        market: i64,
        token_id: &str,
        idem: Option<&IdemKey>,
    ) -> ApiResult {
        let principal = caller.role == Role::Principal && caller.market == Some(market);
        if !principal && !caller.is_operator_of(market) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "revoking a token needs an operator token of this market, or a principal's token for its own agent's tokens",
            ));
        }
        let run = async {
            if !is_token_id(token_id) {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "a token id is the 64 lowercase hex characters of the SHA-256 of the token",
                ));
            }
            let not_found = || {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("token {token_id} not found in market {market}"),
                )
            };
            let t = self
                .store
                .token(token_id)
                .await?
                .filter(|t| t.market_id == Some(market))
                .ok_or_else(not_found)?;
            if principal && !(t.role == Role::Agent && t.participant_id == caller.participant) {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "a principal may revoke only its own participant's agent tokens",
                ));
            }
            let t = self
                .store
                .revoke_token(token_id, self.now())
                .await?
                .ok_or_else(not_found)?;
            self.token_checks.forget(&t.hash);
            let _ = self.revocations.send(t.hash.clone());
            Ok(Reply::json(200, &token_info(&t)))
        };
        self.once_per_key(caller, idem, run, |r| r.body.clone())
            .await
    }

    /// Resolves when the token whose hash is `scope` is revoked or gone. Live streams (SSE, the
    /// web's live feed, MCP) end with it: woken at once by revocations through this process,
    /// re-reading the token every [`TOKEN_RECHECK`] for revocations through other replicas.
    pub async fn until_revoked(self: Arc<Self>, scope: String) {
        let mut revoked = self.revocations.subscribe();
        loop {
            // The stream's request was just authenticated: wait before the first re-read.
            let _ = tokio::time::timeout(TOKEN_RECHECK, revoked.recv()).await;
            match self.store.token(&scope).await {
                Ok(Some(t)) if t.revoked_at.is_none() => {}
                Ok(_) => return,
                // The store is unreachable: the stream's own reads fail and end it.
                Err(e) => tracing::debug!(error = %e, "re-reading a token failed"),
            }
        }
    }
}
