//! Access tokens: the client-credentials grant, and EdDSA-signed JWTs with the RFC 9068
//! claims plus `tenant`, checked on every request together with the client behind them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, Header, Validation};
use palmlink_store::{Scope, Store};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::{Clock, SECOND};
use crate::keys::SigningKey;
use crate::secrets::{constant_time_eq, sha256_hex};
use crate::{DomainError, DomainResult, GrantErrorKind};

/// The audience of every access token.
pub const AUDIENCE: &str = "palmlink-api";
/// The `typ` header of access tokens (RFC 9068).
pub const TOKEN_TYPE: &str = "at+jwt";

/// How many verified tokens are remembered, so that a token used again is not verified again.
const VERIFIED_CACHE: usize = 4096;

/// Claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    jti: String,
    client_id: String,
    scope: String,
    tenant: String,
}

/// An authenticated integrator: an OAuth client of a tenant, with its token's scopes.
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    /// The tenant everything it does belongs to.
    pub tenant_id: Uuid,
    /// The OAuth client.
    pub client_id: Uuid,
    /// The scopes of its token.
    pub scopes: Vec<Scope>,
    /// The operator acting through the console, when it is one (then `client_id` is nil).
    pub operator_id: Option<Uuid>,
}

impl Caller {
    /// An operator acting in `tenant` through the console, with every scope.
    pub fn operator(tenant_id: Uuid, operator_id: Uuid) -> Caller {
        Caller {
            tenant_id,
            client_id: Uuid::nil(),
            scopes: Scope::ALL.to_vec(),
            operator_id: Some(operator_id),
        }
    }

    /// Ok when the token carries `scope`, else 403.
    pub fn require(&self, scope: Scope) -> DomainResult<()> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(DomainError::MissingScope(scope))
        }
    }

    /// Whether the token carries `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A client-credentials token request, as the client sent it (from a JSON or form body and,
/// optionally, HTTP Basic).
#[derive(Clone, Debug, Default)]
pub struct GrantRequest {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// `client_id` from the body.
    pub client_id: Option<String>,
    /// `client_secret` from the body.
    pub client_secret: Option<String>,
    /// `scope`: a space-separated subset of the client's scopes.
    pub scope: Option<String>,
    /// Client id and secret from `Authorization: Basic`.
    pub basic: Option<(String, String)>,
}

/// An issued access token.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// The signed JWT.
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: i64,
    /// The granted scopes, space separated.
    pub scope: String,
}

/// Parses a space-separated scope list; repeated scopes count once. `Err` names the first
/// unknown scope.
pub fn parse_scopes(raw: &str) -> Result<Vec<Scope>, String> {
    let mut out: Vec<Scope> = Vec::new();
    for s in raw.split_whitespace() {
        let scope: Scope = s.parse().map_err(|_| format!("unknown scope `{s}`"))?;
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out)
}

/// The scopes as the contract writes them: space separated.
pub fn scope_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Issues access tokens for client credentials and authenticates the tokens presented.
pub struct Tokens {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    key: SigningKey,
    issuer: String,
    ttl_secs: i64,
    /// Tokens that passed verification, with their expiry (unix seconds). The key is the
    /// whole token, so a changed byte is a different token, checked in full.
    verified: Mutex<HashMap<String, (Caller, i64)>>,
}

fn grant_error(kind: GrantErrorKind, message: impl Into<String>, basic: bool) -> DomainError {
    DomainError::Grant {
        kind,
        message: message.into(),
        basic,
    }
}

fn invalid_token() -> DomainError {
    DomainError::Unauthenticated("invalid or expired access token".to_owned())
}

impl Tokens {
    /// Tokens signed with `key`, naming `issuer`, valid for `ttl_secs`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        key: SigningKey,
        issuer: String,
        ttl_secs: i64,
    ) -> Tokens {
        Tokens {
            store,
            clock,
            key,
            issuer,
            ttl_secs,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The JSON Web Key Set that verifies the tokens.
    pub fn jwks(&self) -> serde_json::Value {
        self.key.jwks()
    }

    /// The client-credentials grant (RFC 6749 §4.4): checks the client's secret (the current
    /// one or the previous one during a rotation) and the requested scopes, and signs a
    /// token.
    pub async fn grant(&self, req: GrantRequest) -> DomainResult<Grant> {
        let invalid_request = |m: &str| grant_error(GrantErrorKind::InvalidRequest, m, false);
        match req.grant_type.as_deref() {
            None | Some("") => return Err(invalid_request("grant_type is required")),
            Some("client_credentials") => {}
            Some(_) => {
                return Err(grant_error(
                    GrantErrorKind::UnsupportedGrantType,
                    "only client_credentials is supported",
                    false,
                ))
            }
        }
        let basic = req.basic.is_some();
        let (client_id, secret) = match req.basic {
            Some(creds) => {
                if req.client_secret.is_some() {
                    return Err(invalid_request(
                        "use one client authentication method, not two",
                    ));
                }
                creds
            }
            None => {
                let id = req
                    .client_id
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| invalid_request("client_id is required"))?;
                let secret = req
                    .client_secret
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| invalid_request("client_secret is required"))?;
                (id, secret)
            }
        };
        let invalid_client = || {
            grant_error(
                GrantErrorKind::InvalidClient,
                "invalid client_id or client_secret",
                basic,
            )
        };
        let client_id = Uuid::parse_str(&client_id).map_err(|_| invalid_client())?;
        let client = self
            .store
            .get_client(client_id)
            .await?
            .ok_or_else(invalid_client)?;
        let presented = sha256_hex(secret.as_bytes());
        let current = constant_time_eq(presented.as_bytes(), client.secret_hash.as_bytes());
        let old = client
            .old_secret_hash
            .as_ref()
            .is_some_and(|h| constant_time_eq(presented.as_bytes(), h.as_bytes()));
        if !(current | old) {
            return Err(invalid_client());
        }
        let scopes = match req
            .scope
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => client.scopes.clone(),
            Some(requested) => {
                let invalid_scope = |m: String| grant_error(GrantErrorKind::InvalidScope, m, false);
                let wanted = parse_scopes(requested).map_err(invalid_scope)?;
                if let Some(extra) = wanted.iter().find(|s| !client.scopes.contains(s)) {
                    return Err(invalid_scope(format!(
                        "the client is not granted `{extra}`"
                    )));
                }
                wanted
            }
        };
        let scope = scope_text(&scopes);
        let access_token = self.issue(client.id, client.tenant_id, &scope)?;
        Ok(Grant {
            access_token,
            expires_in: self.ttl_secs,
            scope,
        })
    }

    /// Signs a token for a client of a tenant with the given scopes.
    fn issue(&self, client_id: Uuid, tenant_id: Uuid, scope: &str) -> DomainResult<String> {
        let now = self.clock.now() / SECOND;
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
        jsonwebtoken::encode(&header, &claims, &self.key.encoding).map_err(DomainError::internal)
    }

    /// The caller a bearer token stands for: its signature, algorithm, type, issuer,
    /// audience and expiry (no leeway) hold, and its client still exists in its tenant
    /// (deleting a client ends its tokens at once).
    pub async fn authenticate(&self, token: &str) -> DomainResult<Caller> {
        let caller = self.verify(token)?;
        match self.store.get_client(caller.client_id).await? {
            Some(c) if c.tenant_id == caller.tenant_id => Ok(caller),
            _ => Err(DomainError::Unauthenticated(
                "the client of this token no longer exists".to_owned(),
            )),
        }
    }

    /// Checks a token's signature and claims. A token seen before has only its expiry
    /// checked again.
    fn verify(&self, token: &str) -> DomainResult<Caller> {
        let now = self.clock.now() / SECOND;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((identity, exp)) = verified.get(token) {
            if *exp >= now {
                return Ok(identity.clone());
            }
            verified.remove(token);
            return Err(invalid_token());
        }
        drop(verified);
        let (identity, exp) = self.verify_signed(token, now)?;
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

    /// The full check of [`Tokens::verify`]; returns the identity and the expiry.
    fn verify_signed(&self, token: &str, now: i64) -> DomainResult<(Caller, i64)> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid_token())?;
        if header.alg != Algorithm::EdDSA
            || header.typ.as_deref() != Some(TOKEN_TYPE)
            || header.kid.as_deref() != Some(self.key.kid.as_str())
        {
            return Err(invalid_token());
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        // Expiry is judged below against the service's clock.
        validation.validate_exp = false;
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.key.decoding, &validation)
            .map_err(|_| invalid_token())?;
        let claims = data.claims;
        if claims.exp < now || claims.sub != claims.client_id {
            return Err(invalid_token());
        }
        let client_id = Uuid::parse_str(&claims.client_id).map_err(|_| invalid_token())?;
        let tenant_id = Uuid::parse_str(&claims.tenant).map_err(|_| invalid_token())?;
        let scopes = parse_scopes(&claims.scope).map_err(|_| invalid_token())?;
        let identity = Caller {
            tenant_id,
            client_id,
            scopes,
            operator_id: None,
        };
        Ok((identity, claims.exp))
    }
}

#[cfg(test)]
mod tests;
