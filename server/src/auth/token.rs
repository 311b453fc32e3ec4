//! Access tokens: EdDSA-signed JWTs with the RFC 9068 claims plus `tenant`.

use std::collections::HashMap;
use std::sync::Mutex;

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

/// How many verified tokens are remembered, so that a token used again is not verified again.
const VERIFIED_CACHE: usize = 4096;

/// Issues and checks access tokens.
pub(crate) struct TokenService {
    key: SigningKey,
    issuer: String,
    ttl_secs: i64,
    /// Tokens that passed [`TokenService::verify`], with their expiry (unix seconds). The key is
    /// the whole token, so a changed byte is a different token, checked in full.
    verified: Mutex<HashMap<String, (VerifiedToken, i64)>>,
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
            verified: Mutex::new(HashMap::new()),
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

    /// Checks signature, algorithm, type, issuer, audience and expiry (no leeway). A token
    /// seen before has only its expiry checked again.
    pub(crate) fn verify(&self, token: &str) -> Result<VerifiedToken, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((identity, exp)) = verified.get(token) {
            if *exp >= now {
                return Ok(identity.clone());
            }
            verified.remove(token);
            return Err(ApiError::Unauthorized(
                "invalid or expired access token".to_owned(),
            ));
        }
        drop(verified);
        let (identity, exp) = self.verify_signed(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CACHE {
            verified.retain(|_, (_, exp)| *exp >= now);
            if verified.len() >= VERIFIED_CACHE {
                verified.clear();
            }
        }
        verified.insert(token.to_owned(), (identity.clone(), exp));
        Ok(identity)
    }

    /// The full check of [`TokenService::verify`]; returns the identity and the expiry.
    fn verify_signed(&self, token: &str) -> Result<(VerifiedToken, i64), ApiError> {
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
        let identity = VerifiedToken {
            client_id,
            tenant_id,
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
        };
        Ok((identity, claims.exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(dir: &tempfile::TempDir, ttl_secs: i64) -> TokenService {
        let key = SigningKey::load_or_create(dir.path()).unwrap();
        TokenService::new(key, "https://issuer.test".to_owned(), ttl_secs)
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_changed_one_is_checked_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = service(&dir, 1);
        let (client, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        let token = tokens.issue(client, tenant, "verify enroll").unwrap();
        let first = tokens.verify(&token).unwrap();
        let again = tokens.verify(&token).unwrap();
        assert_eq!((first.client_id, first.tenant_id), (client, tenant));
        assert_eq!((again.client_id, again.scopes), (client, first.scopes));
        // One changed byte of the signature is another token: refused, not looked up.
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(tokens.verify(&tampered).is_err());
        // Expiry has no leeway, remembered or not.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(
            tokens.verify(&token).is_err(),
            "an expired token was accepted"
        );
    }
}
