//! The token signing key: Ed25519, generated at first start and kept in the data directory
//! (`keys/signing-ed25519.pk8`, mode 0600), published as a JWKS.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{json, Value};

use crate::secrets::sha256_hex;

/// Why key material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file does not hold a usable key.
    #[error("key file {path} does not hold a valid key")]
    Invalid {
        /// The file.
        path: PathBuf,
    },
    /// The system could not generate a key.
    #[error("cannot generate a key")]
    Generate,
}

/// The key that signs access tokens, with its public half.
pub struct SigningKey {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    public_x: String,
}

impl SigningKey {
    /// Loads the key from `data_dir`, generating and saving it first if there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<SigningKey, KeyError> {
        let path = key_path(data_dir);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let der = match std::fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create(&path).map_err(|e| match e {
                    CreateError::Io(source) => io(source),
                    CreateError::Generate => KeyError::Generate,
                })?
            }
            Err(e) => return Err(io(e)),
        };
        SigningKey::from_pkcs8(&der).ok_or(KeyError::Invalid { path })
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

/// Where the signing key lives in a data directory.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("signing-ed25519.pk8")
}

enum CreateError {
    Io(std::io::Error),
    Generate,
}

impl From<std::io::Error> for CreateError {
    fn from(e: std::io::Error) -> CreateError {
        CreateError::Io(e)
    }
}

fn create(path: &Path) -> Result<Vec<u8>, CreateError> {
    use std::io::Write as _;
    let doc =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| CreateError::Generate)?;
    let dir = path.parent().unwrap_or(Path::new("."));
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
        Err(e) => Err(CreateError::Io(e)),
    }
}
