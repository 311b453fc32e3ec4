//! Access tokens: EdDSA-signed JWTs with the RFC 9068 claims plus `tenant`.

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::SigningKey;
use crate::error::ApiError;

/// The audience of every access token.
pub(crate) const AUDIENCE: &str = "palmlink-api";
/// The `typ` header of access tokens (RFC 9068).
pub(crate) const TOKEN_TYPE: &str = "at+jwt";

/// Claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub tenant: String,
}

/// Issues and checks access tokens.
pub(crate) struct TokenService {
    key: SigningKey,
    issuer: String,
    ttl_secs: i64,
}

/// A verified token's identity.
#[derive(Clone, Debug)]
pub(crate) struct VerifiedToken {
    pub client_id: Uuid,
    pub tenant_id: Uuid,
    pub scopes: Vec<String>,
}

impl TokenService {
    pub(crate) fn new(key: SigningKey, issuer: String, ttl_secs: i64) -> TokenService {
        TokenService {
            key,
            issuer,
            ttl_secs,
        }
    }

    pub(crate) fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    pub(crate) fn jwks(&self) -> serde_json::Value {
        self.key.jwks()
    }

    /// Signs a token for a client of a tenant with the given scopes.
    pub(crate) fn issue(
        &self,
        client_id: Uuid,
        tenant_id: Uuid,
        scope: &str,
    ) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: client_id.to_string(),
            aud: AUDIENCE.to_owned(),
            exp: now + self.ttl_secs,
            iat: now,
            jti: Uuid::new_v4().to_string(),
            client_id: client_id.to_string(),
            scope: scope.to_owned(),
            tenant: tenant_id.to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key.kid.clone());
        header.typ = Some(TOKEN_TYPE.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key.encoding).map_err(ApiError::internal)
    }

    /// Checks signature, algorithm, type, issuer, audience and expiry (no leeway).
    pub(crate) fn verify(&self, token: &str) -> Result<VerifiedToken, ApiError> {
        let invalid = || ApiError::Unauthorized("invalid or expired access token".to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::EdDSA
            || header.typ.as_deref() != Some(TOKEN_TYPE)
            || header.kid.as_deref() != Some(self.key.kid.as_str())
        {
            return Err(invalid());
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.key.decoding, &validation)
            .map_err(|_| invalid())?;
        let claims = data.claims;
        let client_id = Uuid::parse_str(&claims.client_id).map_err(|_| invalid())?;
        let tenant_id = Uuid::parse_str(&claims.tenant).map_err(|_| invalid())?;
        if claims.sub != claims.client_id {
            return Err(invalid());
        }
        Ok(VerifiedToken {
            client_id,
            tenant_id,
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
        })
    }
}
