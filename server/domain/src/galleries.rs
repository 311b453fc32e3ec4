//! The tenants' engine galleries, one per tenant under `<data>/galleries/<tenant_uuid>/`, as
//! replicas of the database: each follows its tenant's template log and records, with its
//! rows, the last sequence it applied.
//!
//! - A write that changes templates (an enrollment, an erasure) commits to the database
//!   first, then applies its own entries here at once when the gallery is exactly one
//!   step behind; otherwise it catches up from the log.
//! - [`Galleries::catch_up`] applies a tenant's log from the gallery's sequence on: batches
//!   of entries read with their sealed templates in one ordered query (the next batch read
//!   while one is applied), each run of inserts opened in parallel and written in one
//!   commit that records its last sequence, erasures as they come. Applying is idempotent,
//!   so a crash anywhere only repeats work.
//! - A gallery with nothing applied while the log has entries (a new node, a directory
//!   deleted by hand) is rebuilt from the templates the database holds instead.
//! - A decision waits, boundedly, until the gallery has applied everything acknowledged
//!   before its challenge was created ([`Galleries::ensure`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palmlink_engine::{
    Gallery, GalleryError, IndexPolicy, Layout, PalmSide, RecordIds, RowId, Template,
};
use palmlink_store::{LogOp, LoggedTemplate, PalmType, Store};
use rayon::prelude::*;
use uuid::Uuid;

use crate::vault::{TemplateOpener, Vault};
use crate::{DomainError, DomainResult};

/// Log entries read per step of a catch-up.
const LOG_BATCH: i64 = 4096;
/// Templates read per page of a rebuild.
const REBUILD_PAGE: i64 = 4096;
/// How long opening a gallery waits for its directory's lock, held elsewhere, before it
/// answers 503. A handle just closed can keep the lock for a moment: a child process forked
/// meanwhile (by anything in the process) holds the file until it executes its program.
const LOCKED_WAIT: Duration = Duration::from_secs(2);
/// The pause between two tries of a gallery whose lock is held.
const LOCKED_RETRY: Duration = Duration::from_millis(10);

/// One template to add to a gallery.
pub(crate) struct NewRow {
    /// Its ids.
    pub ids: RecordIds,
    /// The template.
    pub template: Template,
}

/// The engine's palm side of a palm type.
pub fn palm_side(palm: PalmType) -> PalmSide {
    match palm {
        PalmType::Left => PalmSide::Left,
        PalmType::Right => PalmSide::Right,
    }
}

/// The palm type of an engine palm side.
pub fn palm_type(side: PalmSide) -> PalmType {
    match side {
        PalmSide::Left => PalmType::Left,
        PalmSide::Right => PalmType::Right,
    }
}

/// How a gallery compares with the database (`palmlink gallery check`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GalleryCheck {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Templates the database holds.
    pub database_templates: usize,
    /// Live rows of the gallery.
    pub gallery_templates: usize,
    /// Features in the database and not in the gallery.
    pub missing: Vec<Uuid>,
    /// Features in the gallery and not in the database.
    pub extra: Vec<Uuid>,
    /// The last log sequence the gallery applied.
    pub last_sequence: u64,
    /// The tenant's log head.
    pub log_head: u64,
}

impl GalleryCheck {
    /// Whether the gallery holds exactly the database's templates.
    pub fn agrees(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty()
    }
}

/// The galleries of every tenant on this node.
pub struct Galleries {
    root: PathBuf,
    policy: IndexPolicy,
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    /// The open galleries. Held only to look up, insert or remove: never while a gallery
    /// opens, which takes seconds at millions of rows.
    open: Arc<Mutex<HashMap<Uuid, Arc<Gallery>>>>,
    /// One at a time per tenant: opening its gallery, replacing it, removing it.
    openers: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// One writer at a time per tenant: applying the log, a write's own entries, a rebuild.
    writers: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// Sealed templates that did not open (altered, or moved): reported, skipped.
    unreadable: Mutex<HashSet<Uuid>>,
    /// Set once [`Galleries::start_up`] has brought every gallery up to date.
    ready: AtomicBool,
}

fn engine(err: GalleryError) -> DomainError {
    DomainError::internal(err)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Galleries {
    /// Galleries under `root` (`<data>/galleries`) with graph indexes as `policy` says,
    /// following the logs of `store`, with templates opened by `vault`.
    pub fn new(
        root: PathBuf,
        policy: IndexPolicy,
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
    ) -> Galleries {
        Galleries {
            root,
            policy,
            store,
            vault,
            open: Arc::default(),
            openers: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
            unreadable: Mutex::new(HashSet::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// Whether every gallery has caught up with the database since this node started.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn dir(&self, tenant: Uuid) -> PathBuf {
        self.root.join(tenant.to_string())
    }

    /// The tenant's gallery, opened or created on first use (on a blocking thread, one
    /// opener per tenant, while other tenants' galleries serve). While another handle
    /// holds its directory (another process, or one just closed), it waits for it at most
    /// [`LOCKED_WAIT`], then answers 503.
    pub async fn get(&self, tenant: Uuid) -> DomainResult<Arc<Gallery>> {
        if let Some(g) = self.already_open(tenant) {
            return Ok(g);
        }
        let opener = self.opener(tenant);
        let mut waited = Duration::ZERO;
        loop {
            let one = opener.clone().lock_owned().await;
            if let Some(g) = self.already_open(tenant) {
                return Ok(g);
            }
            let (dir, policy, open) = (self.dir(tenant), self.policy, self.open.clone());
            // The attempt holds the tenant's opener and puts the gallery in the map itself:
            // a caller that goes away meanwhile (a request cancelled) leaves an open that
            // still ends in the map, not one that is thrown away and made again.
            let attempt = run_blocking(move || {
                let _one = one;
                let gallery =
                    Arc::new(Gallery::open_or_create_with(&dir, Layout::DEFAULT, policy)?);
                lock(&open).insert(tenant, gallery.clone());
                Ok(gallery)
            });
            match attempt.await? {
                Ok(gallery) => return Ok(gallery),
                Err(GalleryError::Locked { .. }) if waited < LOCKED_WAIT => {
                    tokio::time::sleep(LOCKED_RETRY).await;
                    waited += LOCKED_RETRY;
                }
                Err(GalleryError::Locked { .. }) => {
                    return Err(DomainError::Unavailable(
                        "the tenant's gallery is held by another process; try again".to_owned(),
                    ))
                }
                Err(e) => return Err(engine(e)),
            }
        }
    }

    /// The tenant's gallery if this node has it open.
    fn already_open(&self, tenant: Uuid) -> Option<Arc<Gallery>> {
        lock(&self.open).get(&tenant).cloned()
    }

    fn opener(&self, tenant: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.openers).entry(tenant).or_default().clone()
    }

    fn writer(&self, tenant: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.writers).entry(tenant).or_default().clone()
    }

    /// Live templates over the loaded galleries.
    pub fn live_total(&self) -> usize {
        lock(&self.open).values().map(|g| g.live_count()).sum()
    }

    /// Features whose sealed template did not open since this node started.
    pub fn unreadable(&self) -> Vec<Uuid> {
        lock(&self.unreadable).iter().copied().collect()
    }

    /// Tenants that have a gallery directory on disk.
    fn tenants_on_disk(&self) -> Vec<Uuid> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()))
            .collect()
    }

    /// Adds the rows a write has just committed as log entries `head - n + 1 ..= head`
    /// (`n` rows). When the gallery has applied everything before them, they are written as
    /// they are; otherwise the gallery catches up from the log, which holds them too.
    pub(crate) async fn apply_inserts(
        &self,
        tenant: Uuid,
        rows: Vec<NewRow>,
        head: u64,
    ) -> DomainResult<()> {
        let writer = self.writer(tenant);
        let _one = writer.lock().await;
        let gallery = self.get(tenant).await?;
        if gallery.applied_sequence() + rows.len() as u64 == head {
            return run_blocking(move || {
                let batch: Vec<(RecordIds, &Template)> =
                    rows.iter().map(|r| (r.ids, &r.template)).collect();
                gallery.insert_batch_logged(&batch, head).map(drop)
            })
            .await?
            .map_err(engine);
        }
        self.catch_up_locked(tenant).await.map(drop)
    }

    /// Erases the rows of `features`, committed as the last `features.len()` entries of the
    /// log up to `head`; as [`Galleries::apply_inserts`] otherwise.
    pub(crate) async fn apply_erasures(
        &self,
        tenant: Uuid,
        features: Vec<Uuid>,
        head: u64,
    ) -> DomainResult<()> {
        let writer = self.writer(tenant);
        let _one = writer.lock().await;
        let gallery = self.get(tenant).await?;
        if gallery.applied_sequence() + features.len() as u64 == head {
            return run_blocking(move || {
                let rows: Vec<RowId> = features
                    .iter()
                    .filter_map(|f| gallery.row_of(f.as_u128()))
                    .collect();
                gallery.delete_logged(&rows, head).map(drop)
            })
            .await?
            .map_err(engine);
        }
        self.catch_up_locked(tenant).await.map(drop)
    }

    /// Applies the tenant's log up to its head; returns the sequence applied.
    pub async fn catch_up(&self, tenant: Uuid) -> DomainResult<u64> {
        let writer = self.writer(tenant);
        let _one = writer.lock().await;
        self.catch_up_locked(tenant).await
    }

    /// Catches up the tenant's gallery if this node has it open (a node opens a gallery
    /// when it first needs it, and catches it up then).
    pub async fn catch_up_if_open(&self, tenant: Uuid) -> DomainResult<()> {
        if self.already_open(tenant).is_some() {
            self.catch_up(tenant).await?;
        }
        Ok(())
    }

    /// Waits, at most `wait`, until the tenant's gallery has applied the log up to
    /// `position`; 503 when it cannot.
    pub async fn ensure(&self, tenant: Uuid, position: u64, wait: Duration) -> DomainResult<()> {
        let gallery = self.get(tenant).await?;
        if gallery.applied_sequence() >= position {
            return Ok(());
        }
        match tokio::time::timeout(wait, self.catch_up(tenant)).await {
            Ok(Ok(applied)) if applied >= position => Ok(()),
            Ok(Err(e)) => Err(e),
            _ => Err(DomainError::Unavailable(
                "this node's gallery has not caught up with the enrollments and erasures \
                 acknowledged before the challenge; try again"
                    .to_owned(),
            )),
        }
    }

    async fn catch_up_locked(&self, tenant: Uuid) -> DomainResult<u64> {
        let gallery = self.get(tenant).await?;
        let head = self.store.log_head(tenant).await?;
        if gallery.applied_sequence() == 0 && head > 0 && gallery.live_count() == 0 {
            return self.rebuild_locked(tenant).await;
        }
        self.follow_log(tenant, &gallery).await
    }

    /// Applies the tenant's log after the gallery's sequence until none is left: each batch
    /// read in one ordered query (the entries with their sealed templates), the next one
    /// read while the gallery applies it. Returns the sequence applied.
    async fn follow_log(&self, tenant: Uuid, gallery: &Arc<Gallery>) -> DomainResult<u64> {
        let read = |after: u64| self.store.log_templates_after(tenant, after, LOG_BATCH);
        let mut batch = read(gallery.applied_sequence()).await?;
        if batch.is_empty() {
            return Ok(gallery.applied_sequence());
        }
        let opener = Arc::new(self.vault.opener(tenant).await?);
        while let Some(last) = batch.last().map(|e| e.entry.sequence) {
            let (applied, next) = tokio::join!(
                self.apply(gallery, &opener, std::mem::take(&mut batch)),
                read(last)
            );
            applied?;
            debug_assert_eq!(gallery.applied_sequence(), last);
            batch = next?;
        }
        Ok(gallery.applied_sequence())
    }

    /// Applies `entries` (in order, following the gallery's sequence): each run of inserts
    /// opened in parallel and written in one batch, erasures one by one.
    async fn apply(
        &self,
        gallery: &Arc<Gallery>,
        opener: &Arc<TemplateOpener>,
        entries: Vec<LoggedTemplate>,
    ) -> DomainResult<()> {
        let mut entries = entries.into_iter().peekable();
        while let Some(first) = entries.next() {
            let op = first.entry.op;
            let mut run = vec![first];
            while let Some(e) = entries.next_if(|e| e.entry.op == op) {
                run.push(e);
            }
            let sequence = run[run.len() - 1].entry.sequence;
            let g = gallery.clone();
            match op {
                LogOp::Insert => {
                    let o = opener.clone();
                    let unreadable = run_blocking(move || {
                        let sealed = run.iter().filter_map(|e| {
                            let s = e.sealed.as_deref()?;
                            Some((e.entry.user_id, e.entry.feature_id, e.entry.palm_type, s))
                        });
                        let (rows, unreadable) = open_all(&o, sealed.collect());
                        let batch: Vec<(RecordIds, &Template)> =
                            rows.iter().map(|r| (r.ids, &r.template)).collect();
                        g.insert_batch_logged(&batch, sequence).map(|_| unreadable)
                    })
                    .await?
                    .map_err(engine)?;
                    self.report_unreadable(opener.tenant(), unreadable);
                }
                LogOp::Erase => {
                    let run: Vec<(Uuid, u64)> = run
                        .iter()
                        .map(|e| (e.entry.feature_id, e.entry.sequence))
                        .collect();
                    run_blocking(move || {
                        for (feature, sequence) in run {
                            match g.row_of(feature.as_u128()) {
                                Some(row) => g.delete_logged(&[row], sequence).map(drop)?,
                                None => g.advance_sequence(sequence)?,
                            }
                        }
                        Ok::<(), GalleryError>(())
                    })
                    .await?
                    .map_err(engine)?;
                }
            }
        }
        Ok(())
    }

    /// Logs and remembers features whose sealed template did not open.
    fn report_unreadable(&self, tenant: Uuid, features: Vec<Uuid>) {
        for feature_id in features {
            tracing::error!(%tenant, %feature_id, "a sealed template does not open: left out of the gallery");
            lock(&self.unreadable).insert(feature_id);
        }
    }

    /// Builds the tenant's gallery afresh from the templates the database holds, in a
    /// directory beside it, and puts it in place; then applies what the log added
    /// meanwhile. Returns the sequence applied.
    pub async fn rebuild(&self, tenant: Uuid) -> DomainResult<u64> {
        let writer = self.writer(tenant);
        let _one = writer.lock().await;
        self.rebuild_locked(tenant).await
    }

    async fn rebuild_locked(&self, tenant: Uuid) -> DomainResult<u64> {
        // The head first: every template committed up to it is in the pages read after,
        // and whatever comes later is in the log after it (applying it twice is harmless).
        let head = self.store.log_head(tenant).await?;
        let fresh_dir = self
            .root
            .join(format!(".{tenant}.rebuild-{}", Uuid::new_v4().simple()));
        let fresh = Arc::new(Gallery::create(&fresh_dir, Layout::DEFAULT).map_err(engine)?);
        let opener = Arc::new(self.vault.opener(tenant).await?);
        let mut after = None;
        loop {
            let page = self
                .store
                .templates_page(tenant, after, REBUILD_PAGE)
                .await?;
            let Some(last) = page.last().map(|t| t.palm.feature_id) else {
                break;
            };
            after = Some(last);
            let g = fresh.clone();
            let opener = opener.clone();
            let unreadable = run_blocking(move || {
                let sealed = page.iter().map(|t| {
                    let p = &t.palm;
                    (p.user_id, p.feature_id, p.palm_type, t.sealed.as_slice())
                });
                let (rows, unreadable) = open_all(&opener, sealed.collect());
                let batch: Vec<(RecordIds, &Template)> =
                    rows.iter().map(|r| (r.ids, &r.template)).collect();
                g.insert_batch_logged(&batch, head).map(|_| unreadable)
            })
            .await?
            .map_err(engine)?;
            self.report_unreadable(tenant, unreadable);
        }
        fresh.advance_sequence(head).map_err(engine)?;
        drop(fresh);
        self.replace(tenant, &fresh_dir).await?;
        self.catch_up_inner_after_rebuild(tenant).await
    }

    /// Catches up a gallery that was just rebuilt (no second rebuild).
    async fn catch_up_inner_after_rebuild(&self, tenant: Uuid) -> DomainResult<u64> {
        let gallery = self.get(tenant).await?;
        self.follow_log(tenant, &gallery).await
    }

    /// Puts the gallery built in `fresh_dir` in the tenant's place, to be opened by the
    /// next [`Galleries::get`]. Searches still running on the old one finish on its
    /// mappings.
    async fn replace(&self, tenant: Uuid, fresh_dir: &Path) -> DomainResult<()> {
        let opener = self.opener(tenant);
        let _one = opener.lock().await;
        let dir = self.dir(tenant);
        let io = |e: std::io::Error| DomainError::internal(format!("replacing a gallery: {e}"));
        let mut open = lock(&self.open);
        let old = open.remove(&tenant);
        let trash = self
            .root
            .join(format!(".{tenant}.old-{}", Uuid::new_v4().simple()));
        if dir.exists() {
            std::fs::rename(&dir, &trash).map_err(io)?;
        }
        std::fs::rename(fresh_dir, &dir).map_err(io)?;
        drop(old);
        drop(open);
        if trash.exists() {
            std::fs::remove_dir_all(&trash).map_err(io)?;
        }
        Ok(())
    }

    /// Closes and removes a tenant's gallery (the tenant was deleted).
    pub async fn drop_tenant(&self, tenant: Uuid) -> DomainResult<()> {
        let opener = self.opener(tenant);
        let _one = opener.lock().await;
        lock(&self.open).remove(&tenant);
        remove_gallery(&self.root, tenant)
    }

    /// Compares a tenant's gallery with the database, reading the gallery's files without
    /// its lock (the node serving it may be running).
    pub async fn check(&self, tenant: Uuid) -> DomainResult<GalleryCheck> {
        let head = self.store.log_head(tenant).await?;
        let in_db: HashSet<Uuid> = self
            .store
            .all_palms(tenant)
            .await?
            .into_iter()
            .map(|p| p.feature_id)
            .collect();
        let dir = self.dir(tenant);
        let (live, last_sequence) = if dir.exists() {
            let seen = Gallery::inspect(&dir).map_err(engine)?;
            let live: HashSet<Uuid> = seen
                .live
                .iter()
                .map(|(_, ids)| Uuid::from_u128(ids.feature_id))
                .collect();
            (live, seen.applied_sequence)
        } else {
            (HashSet::new(), 0)
        };
        let mut missing: Vec<Uuid> = in_db.difference(&live).copied().collect();
        let mut extra: Vec<Uuid> = live.difference(&in_db).copied().collect();
        missing.sort();
        extra.sort();
        Ok(GalleryCheck {
            tenant_id: tenant,
            database_templates: in_db.len(),
            gallery_templates: live.len(),
            missing,
            extra,
            last_sequence,
            log_head: head,
        })
    }

    /// Brings every gallery of this node into agreement with the database before the node
    /// serves, with its quantised copy derived: moves the templates of palms written before
    /// templates lived in the database into it (from this node's galleries), applies every
    /// tenant's log, and removes the galleries of tenants that no longer exist.
    pub async fn start_up(&self) -> DomainResult<()> {
        // The directories first, the tenants after (as in `follow_once`): a gallery created
        // for a tenant made while the list was read is not taken for a deleted tenant's.
        let on_disk = self.tenants_on_disk();
        let tenants: HashSet<Uuid> = self.store.list_tenant_ids().await?.into_iter().collect();
        for gone in on_disk {
            if !tenants.contains(&gone) {
                tracing::warn!(tenant = %gone, "removing the gallery of a deleted tenant");
                self.drop_tenant(gone).await?;
            }
        }
        for tenant in tenants {
            self.seal_legacy(tenant).await?;
            let applied = self.catch_up(tenant).await?;
            // Ready means fast as well as current: the scans read the quantised copy,
            // derived in the background after open (a second or two at 1M rows).
            let gallery = self.get(tenant).await?;
            run_blocking(move || gallery.wait_for_quantised_copy()).await?;
            tracing::debug!(%tenant, applied, "gallery caught up");
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Follows the database for as long as the node runs: every `interval`, each open
    /// gallery whose tenant's log has moved on catches up (what other nodes wrote), and the
    /// galleries of tenants deleted meanwhile are removed.
    pub async fn follow(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.follow_once().await {
                tracing::warn!(error = %e, "following the template log failed; trying again");
            }
        }
    }

    async fn follow_once(&self) -> DomainResult<()> {
        // The open galleries first, the tenants after: a tenant missing from a list read
        // after its gallery was open is deleted. The other order would take a tenant
        // created while the list was read, its gallery opened meanwhile, for a deleted one.
        let open: Vec<(Uuid, u64)> = lock(&self.open)
            .iter()
            .map(|(t, g)| (*t, g.applied_sequence()))
            .collect();
        let tenants: HashSet<Uuid> = self.store.list_tenant_ids().await?.into_iter().collect();
        for (tenant, applied) in open {
            if !tenants.contains(&tenant) {
                tracing::warn!(%tenant, "the tenant was deleted: removing its gallery");
                self.drop_tenant(tenant).await?;
            } else if self.store.log_head(tenant).await? > applied {
                self.catch_up(tenant).await?;
            }
        }
        Ok(())
    }

    /// Seals into the database the templates of palms enrolled before templates lived
    /// there, read from this node's gallery (where they were enrolled), and erases gallery
    /// rows no palm refers to (a crash of those versions between the two writes).
    async fn seal_legacy(&self, tenant: Uuid) -> DomainResult<()> {
        let waiting = self.store.unsealed_palms(tenant).await?;
        if waiting.is_empty() {
            return Ok(());
        }
        let gallery = self.get(tenant).await?;
        let mut sealed = Vec::with_capacity(waiting.len());
        for w in &waiting {
            let p = &w.palm;
            let found = w
                .row
                .and_then(|r| u64::try_from(r).ok())
                .and_then(|r| gallery.get(RowId(r)).ok().flatten())
                .filter(|(ids, _)| ids.feature_id == p.feature_id.as_u128());
            match found {
                Some((_, template)) => sealed.push((
                    p.feature_id,
                    self.vault
                        .seal_template(tenant, p.user_id, p.feature_id, &template)
                        .await?,
                )),
                None => tracing::error!(
                    %tenant, feature_id = %p.feature_id,
                    "ENROLLMENT WITHOUT TEMPLATE: neither the database nor this node's gallery holds it"
                ),
            }
        }
        let known: HashSet<u128> = self
            .store
            .all_palms(tenant)
            .await?
            .iter()
            .map(|p| p.feature_id.as_u128())
            .collect();
        for (row, ids) in gallery.live_records() {
            if !known.contains(&ids.feature_id) {
                gallery.delete(row).map_err(engine)?;
                tracing::warn!(%tenant, row = row.0, "erased a gallery row no enrollment refers to");
            }
        }
        let moved = sealed.len();
        self.store
            .seal_palms(tenant, &sealed, chrono::Utc::now().timestamp_micros())
            .await?;
        tracing::info!(%tenant, moved, "templates moved into the database, sealed");
        Ok(())
    }
}

/// Removes a tenant's gallery directory under `root` (`<data>/galleries`), if there is one.
pub fn remove_gallery(root: &Path, tenant: Uuid) -> DomainResult<()> {
    match std::fs::remove_dir_all(root.join(tenant.to_string())) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DomainError::internal(format!("removing a gallery: {e}"))),
    }
}

/// Opens sealed templates (user, feature, palm, bytes) into rows, in parallel: the rows in
/// the order given, and the features whose template did not open.
fn open_all(
    opener: &TemplateOpener,
    sealed: Vec<(Uuid, Uuid, PalmType, &[u8])>,
) -> (Vec<NewRow>, Vec<Uuid>) {
    let opened: Vec<Result<NewRow, Uuid>> = sealed
        .into_par_iter()
        .map(|(user, feature, palm, bytes)| {
            let template = opener
                .open(user, feature, bytes)
                .map_err(|e| e.feature_id)?;
            Ok(NewRow {
                ids: RecordIds {
                    feature_id: feature.as_u128(),
                    user_key: user.as_u128(),
                    palm: palm_side(palm),
                },
                template,
            })
        })
        .collect();
    let mut rows = Vec::with_capacity(opened.len());
    let mut unreadable = Vec::new();
    for o in opened {
        match o {
            Ok(row) => rows.push(row),
            Err(feature) => unreadable.push(feature),
        }
    }
    (rows, unreadable)
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> DomainResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(DomainError::internal)
}
