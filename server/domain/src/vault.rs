//! Templates at rest: sealed with AES-256-GCM under a data key of their tenant, the data keys
//! wrapped by the master key (a 32-byte file), so the database alone never yields a
//! template and deleting a tenant's wrapped key makes every copy of its templates, backups
//! included, unreadable.
//!
//! - The master key file holds exactly 32 random bytes, created with mode 0600 at first
//!   start. The database keeps a check value sealed under it: a node started with another
//!   key refuses to start before it touches anything.
//! - A sealed template is `version (1) | nonce (12) | ciphertext | tag (16)`; its associated
//!   data binds the tenant, the user and the feature id, so a sealed template moved to
//!   another row does not open.
//! - Key bytes held here are zeroed when dropped (the AEAD keys of aws-lc-rs zero their own).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use palmlink_engine::{Layout, Template};
use palmlink_store::{SealedTemplate, Store};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::secrets::random_bytes;
use crate::{DomainError, DomainResult};

#[cfg(not(target_endian = "little"))]
compile_error!("sealed templates hold the f32 values' little-endian bytes as laid out in memory");

/// Length of every key: AES-256.
const KEY_LEN: usize = 32;
/// The format version of sealed values.
const VERSION: u8 = 1;
/// What the keyring's check value seals.
const CHECK_PLAINTEXT: &[u8] = b"palmlink keyring check v1";
/// Associated data of the check value.
const CHECK_AAD: &[u8] = b"palmlink keyring";
/// Prefix of the associated data of a wrapped tenant key (the tenant id follows).
const TENANT_KEY_AAD: &[u8] = b"palmlink tenant key v1";
/// Associated data of the wrapped token signing key.
const SIGNING_KEY_AAD: &[u8] = b"palmlink signing key v1";
/// Prefix of the associated data of a sealed template (tenant, user and feature follow).
const TEMPLATE_AAD: &[u8] = b"palmlink template v1";

/// Why key material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key file could not be read or written.
    #[error("master key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The master key file does not hold exactly 32 bytes.
    #[error("master key file {path} must hold exactly 32 bytes (it holds {len})")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// How many it holds.
        len: usize,
    },
    /// The database's templates are sealed under a master key and the file is missing.
    #[error(
        "master key file {path} is missing, and this database holds data sealed under a \
         master key: start with the key file it was written with (--master-key-file)"
    )]
    Missing {
        /// The file expected.
        path: PathBuf,
    },
    /// The database could not be asked whether it holds sealed data.
    #[error("reading the keyring: {0}")]
    Store(String),
    /// The master key is not the one the database was written with.
    #[error(
        "the master key in {path} does not match this database: start with the key file it \
         was written with (--master-key-file)"
    )]
    WrongKey {
        /// The file.
        path: PathBuf,
    },
}

/// The master key: wraps the tenants' data keys.
pub struct MasterKey {
    key: LessSafeKey,
    path: PathBuf,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The default master key file of a data directory.
pub fn default_master_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("master.key")
}

impl MasterKey {
    /// Loads the master key from `path`; when the file does not exist, creates it (32
    /// random bytes, mode 0600) if `may_create`, else fails with [`VaultError::Missing`].
    pub fn load(path: &Path, may_create: bool) -> Result<MasterKey, VaultError> {
        let io = |source| VaultError::Io {
            path: path.to_owned(),
            source,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => {
                Zeroizing::new(create_key_file(path).map_err(io)?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VaultError::Missing {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(io(e)),
        };
        let key = aes_key(&bytes).ok_or(VaultError::Malformed {
            path: path.to_owned(),
            len: bytes.len(),
        })?;
        Ok(MasterKey {
            key,
            path: path.to_owned(),
        })
    }

    /// Checks this key against the database's check value, setting one if the database
    /// has none yet.
    pub async fn verify(&self, store: &dyn Store, clock: &dyn Clock) -> DomainResult<()> {
        let check = match store.keyring().await? {
            Some(check) => check,
            None => {
                let check = seal(&self.key, CHECK_PLAINTEXT, CHECK_AAD)?;
                store.init_keyring(&check, clock.now()).await?
            }
        };
        match open(&self.key, &check, CHECK_AAD) {
            Some(plain) if plain.as_slice() == CHECK_PLAINTEXT => Ok(()),
            _ => Err(DomainError::Unavailable(
                VaultError::WrongKey {
                    path: self.path.clone(),
                }
                .to_string(),
            )),
        }
    }
}

/// The master key of `store`'s data: loaded from `path`, created there only when the
/// database holds nothing sealed yet (no check value, no tenant key, no sealed template),
/// and checked against the database's check value (set now if it has none).
pub async fn unlock(
    path: &Path,
    store: &dyn Store,
    clock: &dyn Clock,
) -> Result<MasterKey, VaultError> {
    let sealed_already = store
        .keyring()
        .await
        .map_err(|e| VaultError::Store(e.to_string()))?
        .is_some()
        || store
            .holds_sealed_data()
            .await
            .map_err(|e| VaultError::Store(e.to_string()))?;
    let master = MasterKey::load(path, !sealed_already)?;
    master.verify(store, clock).await.map_err(|e| match e {
        DomainError::Unavailable(_) => VaultError::WrongKey {
            path: path.to_owned(),
        },
        other => VaultError::Store(other.to_string()),
    })?;
    Ok(master)
}

impl MasterKey {
    /// The token signing key (PKCS#8) the database holds, or, when it holds none, `fresh`
    /// stored wrapped (the first node's key wins; every node gets it).
    pub async fn signing_key_pkcs8(
        &self,
        store: &dyn Store,
        clock: &dyn Clock,
        fresh: impl FnOnce() -> DomainResult<Zeroizing<Vec<u8>>>,
    ) -> DomainResult<Zeroizing<Vec<u8>>> {
        let wrapped = match store.signing_key().await? {
            Some(wrapped) => wrapped,
            None => {
                let wrapped = seal(&self.key, &fresh()?, SIGNING_KEY_AAD)?;
                store.init_signing_key(&wrapped, clock.now()).await?
            }
        };
        open(&self.key, &wrapped, SIGNING_KEY_AAD)
            .ok_or_else(|| DomainError::internal("the token signing key does not open"))
    }
}

/// Creates a key file with 32 random bytes, readable by its owner only; if another process
/// created one meanwhile, that one is kept and returned.
fn create_key_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let key = Zeroizing::new(random_bytes(KEY_LEN));
    let tmp = dir.join(format!(".master.key.{}.tmp", Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(&key)?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => {
            std::fs::File::open(dir)?.sync_all()?;
            Ok(key.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path),
        Err(e) => Err(e),
    }
}

fn aes_key(bytes: &[u8]) -> Option<LessSafeKey> {
    if bytes.len() != KEY_LEN {
        return None;
    }
    UnboundKey::new(&AES_256_GCM, bytes)
        .ok()
        .map(LessSafeKey::new)
}

/// `version | nonce | ciphertext | tag` of `plain` under `key`.
fn seal(key: &LessSafeKey, plain: &[u8], aad: &[u8]) -> DomainResult<Vec<u8>> {
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes(NONCE_LEN)
        .try_into()
        .map_err(|_| DomainError::internal("nonce of the wrong length"))?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + plain.len() + 16);
    out.push(VERSION);
    out.extend_from_slice(&nonce_bytes);
    let mut body = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce_bytes),
        Aad::from(aad),
        &mut body,
    )
    .map_err(|_| DomainError::internal("sealing failed"))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// The plain bytes of a sealed value, or `None` when it does not open (another key,
/// other associated data, altered bytes, another version).
fn open(key: &LessSafeKey, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (&version, rest) = sealed.split_first()?;
    if version != VERSION || rest.len() < NONCE_LEN {
        return None;
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut body = Zeroizing::new(body.to_vec());
    let plain_len = key
        .open_in_place(nonce, Aad::from(aad), &mut body)
        .ok()?
        .len();
    body.truncate(plain_len);
    Some(body)
}

fn tenant_aad(tenant: Uuid) -> Vec<u8> {
    [TENANT_KEY_AAD, tenant.as_bytes()].concat()
}

fn template_aad(tenant: Uuid, user: Uuid, feature: Uuid) -> Vec<u8> {
    [
        TEMPLATE_AAD,
        tenant.as_bytes(),
        user.as_bytes(),
        feature.as_bytes(),
    ]
    .concat()
}

/// A template that failed to open: altered, moved to another row, or under a key that is
/// gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the sealed template of feature {feature_id} does not open")]
pub struct Unreadable {
    /// The feature whose template it is.
    pub feature_id: Uuid,
}

/// Opens the sealed templates of one tenant (see [`Vault::opener`]).
pub(crate) struct TemplateOpener {
    tenant: Uuid,
    key: Arc<LessSafeKey>,
}

impl TemplateOpener {
    /// The tenant whose templates it opens.
    pub(crate) fn tenant(&self) -> Uuid {
        self.tenant
    }

    /// The template sealed in `sealed` for `feature` of `user`; `Err` when these bytes do not
    /// open as that template (altered, or another row's).
    pub(crate) fn open(
        &self,
        user: Uuid,
        feature: Uuid,
        sealed: &[u8],
    ) -> Result<Template, Unreadable> {
        let unreadable = Unreadable {
            feature_id: feature,
        };
        let plain =
            open(&self.key, sealed, &template_aad(self.tenant, user, feature)).ok_or(unreadable)?;
        Template::from_le_bytes(Layout::DEFAULT, &plain).map_err(|_| unreadable)
    }
}

/// Seals and opens the tenants' templates, unwrapping each tenant's data key once.
pub struct Vault {
    master: MasterKey,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keys: Mutex<HashMap<Uuid, Arc<LessSafeKey>>>,
}

impl Vault {
    /// A vault over the store's wrapped keys, under `master`.
    pub fn new(master: MasterKey, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Vault {
        Vault {
            master,
            store,
            clock,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's data key, created (and wrapped into the store) on first use.
    async fn tenant_key(&self, tenant: Uuid) -> DomainResult<Arc<LessSafeKey>> {
        if let Some(key) = self.lock().get(&tenant) {
            return Ok(key.clone());
        }
        let aad = tenant_aad(tenant);
        let wrapped = match self.store.tenant_key(tenant).await? {
            Some(wrapped) => wrapped,
            None => {
                let fresh = Zeroizing::new(random_bytes(KEY_LEN));
                let wrapped = seal(&self.master.key, &fresh, &aad)?;
                self.store
                    .init_tenant_key(tenant, &wrapped, self.clock.now())
                    .await?
            }
        };
        let bytes = open(&self.master.key, &wrapped, &aad).ok_or_else(|| {
            DomainError::internal(format!("the data key of tenant {tenant} does not open"))
        })?;
        let key = Arc::new(
            aes_key(&bytes).ok_or_else(|| DomainError::internal("a data key of the wrong size"))?,
        );
        self.lock().insert(tenant, key.clone());
        Ok(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<LessSafeKey>>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seals `template` of `feature` of `user` of `tenant`.
    pub async fn seal_template(
        &self,
        tenant: Uuid,
        user: Uuid,
        feature: Uuid,
        template: &Template,
    ) -> DomainResult<SealedTemplate> {
        let key = self.tenant_key(tenant).await?;
        // The platforms served are little-endian: the f32 values' bytes are their LE bytes.
        let plain: &[u8] = bytemuck::cast_slice(template.as_slice());
        Ok(SealedTemplate {
            sealed: seal(&key, plain, &template_aad(tenant, user, feature))?,
        })
    }

    /// Opens the sealed template of `feature` of `user` of `tenant`. `Ok(Err(_))` when these
    /// bytes do not open as that template (altered, or another row's).
    pub async fn open_template(
        &self,
        tenant: Uuid,
        user: Uuid,
        feature: Uuid,
        sealed: &[u8],
    ) -> DomainResult<Result<Template, Unreadable>> {
        Ok(self.opener(tenant).await?.open(user, feature, sealed))
    }

    /// What opens the tenant's templates without a trip to the vault each: for opening many
    /// at once, on other threads.
    pub(crate) async fn opener(&self, tenant: Uuid) -> DomainResult<TemplateOpener> {
        Ok(TemplateOpener {
            tenant,
            key: self.tenant_key(tenant).await?,
        })
    }

    /// Forgets the tenant's data key held in memory (the tenant was deleted).
    pub fn forget(&self, tenant: Uuid) {
        self.lock().remove(&tenant);
    }
}

#[cfg(test)]
mod tests;
