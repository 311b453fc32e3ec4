//! The token signing key: Ed25519, generated at first start and kept in the data directory
//! (`keys/signing-ed25519.pk8`, mode 0600), published as a JWKS.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{json, Value};

use super::secrets::sha256_hex;

/// The key that signs access tokens, with its public half.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    public_x: String,
}

impl SigningKey {
    /// Loads the key from `data_dir`, generating and saving it first if there is none.
    pub(crate) fn load_or_create(data_dir: &Path) -> anyhow::Result<SigningKey> {
        let path = key_path(data_dir);
        let der = match std::fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path)?,
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot read signing key {}: {e}",
                    path.display()
                ))
            }
        };
        SigningKey::from_pkcs8(&der)
    }

    fn from_pkcs8(der: &[u8]) -> anyhow::Result<SigningKey> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|e| anyhow::anyhow!("invalid signing key: {e}"))?;
        let public = pair.public_key().as_ref().to_vec();
        let public_x = URL_SAFE_NO_PAD.encode(&public);
        let kid = sha256_hex(&public)[..16].to_owned();
        let decoding = DecodingKey::from_ed_components(&public_x)?;
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_ed_der(der),
            decoding,
            public_x,
        })
    }

    /// The JSON Web Key Set publishing the public key.
    pub(crate) fn jwks(&self) -> Value {
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

/// Where the signing key lives in a data directory.
pub(crate) fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("signing-ed25519.pk8")
}

fn create(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("cannot generate a signing key"))?;
    let dir = path
        .parent()
        .ok_or_else(|| anyhow::anyhow!("bad key path"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".signing-ed25519.pk8.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(doc.as_ref())?;
    file.sync_all()?;
    drop(file);
    // Another process may have created the key meanwhile: keep whichever landed first.
    match std::fs::hard_link(&tmp, path) {
        Ok(()) => {
            std::fs::remove_file(&tmp)?;
            Ok(doc.as_ref().to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp)?;
            Ok(std::fs::read(path)?)
        }
        Err(e) => Err(e.into()),
    }
}
