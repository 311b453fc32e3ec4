//! The token signing key: Ed25519, kept in the database wrapped by the master key so every
//! node signs and verifies with it, published as a JWKS.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{json, Value};

use crate::secrets::sha256_hex;

/// The key that signs access tokens, with its public half.
pub struct SigningKey {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    public_x: String,
}

impl SigningKey {
    /// The key every node shares: kept in the database, wrapped by the master key. The
    /// first node to start makes it, from the key file a data directory of an earlier
    /// version holds (so the tokens it issued stay valid), or afresh.
    pub async fn shared(
        store: &dyn palmlink_store::Store,
        master: &crate::MasterKey,
        clock: &dyn crate::Clock,
        data_dir: &Path,
    ) -> crate::DomainResult<SigningKey> {
        let path = key_path(data_dir);
        let pkcs8 = master
            .signing_key_pkcs8(store, clock, || match std::fs::read(&path) {
                Ok(der) => Ok(zeroize::Zeroizing::new(der)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let doc =
                        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| {
                            crate::DomainError::internal("cannot generate a signing key")
                        })?;
                    Ok(zeroize::Zeroizing::new(doc.as_ref().to_vec()))
                }
                Err(e) => Err(crate::DomainError::internal(format!(
                    "reading {}: {e}",
                    path.display()
                ))),
            })
            .await?;
        SigningKey::from_pkcs8(&pkcs8).ok_or_else(|| {
            crate::DomainError::internal("the stored signing key is not a valid key")
        })
    }

    fn from_pkcs8(der: &[u8]) -> Option<SigningKey> {
        let pair = Ed25519KeyPair::from_pkcs8(der).ok()?;
        let public = pair.public_key().as_ref().to_vec();
        let public_x = URL_SAFE_NO_PAD.encode(&public);
        let kid = sha256_hex(&public)[..16].to_owned();
        let decoding = DecodingKey::from_ed_components(&public_x).ok()?;
        Some(SigningKey {
            kid,
            encoding: EncodingKey::from_ed_der(der),
            decoding,
            public_x,
        })
    }

    /// The JSON Web Key Set publishing the public key.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.public_x,
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }]})
    }
}

/// Where a data directory of an earlier version keeps its signing key (imported into the
/// database by the first node that starts on it).
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("signing-ed25519.pk8")
}
