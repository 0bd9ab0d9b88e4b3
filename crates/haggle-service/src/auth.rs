//! Credentials and roles: bearer tokens are random secrets stored only as SHA-256 hashes; a token
//! names a role and, for agents and principals, the participant it speaks for.

use haggle_core::ErrorCode;
use haggle_store::{Role, TokenRecord};
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret, shown once to its owner.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::StdRng::from_os_rng().fill_bytes(&mut bytes);
    format!("hgl_{}", hex::encode(bytes))
}

/// Who is calling, as established from the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// The market the token is bound to; `None` for a global operator.
    pub market: Option<i64>,
    pub participant: Option<i64>,
    /// The token's hash: the scope of its idempotency keys and rate limit.
    pub scope: String,
}

impl Caller {
    pub fn from_record(t: &TokenRecord) -> Caller {
        Caller {
            role: t.role,
            market: t.market_id,
            participant: t.participant_id,
            scope: t.hash.clone(),
        }
    }

    pub fn is_operator_of(&self, market: i64) -> bool {
        self.role == Role::Operator && self.market.is_none_or(|m| m == market)
    }

    /// May this caller read anything in `market` at all?
    pub fn in_market(&self, market: i64) -> bool {
        self.market.is_none_or(|m| m == market)
            && (self.role == Role::Operator || self.market.is_some())
    }

    /// The participant an agent token trades for in `market`.
    pub fn agent_for(&self, market: i64) -> Result<i64, (ErrorCode, String)> {
        match (self.role, self.market, self.participant) {
            (Role::Agent, Some(m), Some(p)) if m == market => Ok(p),
            (Role::Agent, _, _) => Err((
                ErrorCode::Forbidden,
                format!("this agent token is not for market {market}"),
            )),
            (role, _, _) => Err((
                ErrorCode::Forbidden,
                format!(
                    "trading needs an agent token; this is a {} token",
                    role.as_str()
                ),
            )),
        }
    }

    /// The participant a principal token trades for by hand in `market` (its own).
    pub fn principal_for(&self, market: i64) -> Result<i64, (ErrorCode, String)> {
        match (self.role, self.market, self.participant) {
            (Role::Principal, Some(m), Some(p)) if m == market => Ok(p),
            (role, _, _) => Err((
                ErrorCode::Forbidden,
                format!(
                    "trading by hand needs the participant's principal token for market \
                     {market}; this is a {} token",
                    role.as_str()
                ),
            )),
        }
    }

    /// May this caller read `participant`'s private data (balance, mandate, threads, deals)?
    pub fn may_read_participant(&self, market: i64, participant: i64) -> bool {
        match self.role {
            Role::Operator => self.is_operator_of(market),
            Role::Observer => self.market == Some(market),
            Role::Agent | Role::Principal => {
                self.market == Some(market) && self.participant == Some(participant)
            }
        }
    }
}
