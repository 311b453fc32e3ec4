//! `gallery export` and `gallery import`: a tenant's enrolled users to and from a gallery
//! file (format in `docs/bulk.md`), with a progress bar showing rate and time left when
//! standard error is a terminal, and a JSON summary on standard output either way.

use std::io::{BufWriter, IsTerminal as _};
use std::path::Path;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use palmlink_api::Config;
use palmlink_domain::{ImportOptions, Progress, Unit};
use serde_json::json;
use uuid::Uuid;

use crate::explain::explain;

/// Write buffer of an export.
const WRITE_BUFFER: usize = 1 << 20;

/// A progress bar on standard error, drawn only on a terminal.
struct Bar {
    visible: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bar {
    fn new() -> Bar {
        Bar {
            visible: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }

    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            f(bar);
        }
    }
}

impl Progress for Bar {
    fn begin(&self, phase: &'static str, total: u64, unit: Unit) {
        if !self.visible {
            return;
        }
        let template = match (unit, total > 0) {
            (Unit::Bytes, true) => {
                "{msg:>9} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left"
            }
            (Unit::Records, true) => {
                "{msg:>9} [{bar:32}] {human_pos}/{human_len} records, {per_sec}, {eta} left"
            }
            (_, false) => "{msg:>9} {spinner} {human_pos} records, {per_sec}",
        };
        let bar = if total > 0 {
            ProgressBar::new(total)
        } else {
            ProgressBar::new_spinner()
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(phase);
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    fn advance(&self, n: u64) {
        self.with(|bar| bar.inc(n));
    }

    fn end(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish();
        }
    }
}

/// Creates `path` for writing, readable by its owner only; refuses to replace a file.
fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{} exists: choose another file", path.display())
        } else {
            anyhow::anyhow!("creating {}: {e}", path.display())
        }
    })
}

/// `gallery export`: every palm of the tenant into `out` (mode 0600, templates in plain).
pub async fn export(config: &Config, tenant: Uuid, out: &Path) -> anyhow::Result<()> {
    let (domain, _stopping) = palmlink_api::open_domain(config).await?;
    let file = create_private(out)?;
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
    let written = domain.bulk.export(tenant, &mut writer, &Bar::new()).await;
    let summary = match written {
        Ok(summary) => summary,
        Err(e) => {
            drop(writer);
            let _ = std::fs::remove_file(out);
            return Err(explain(e));
        }
    };
    writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing {}: {}", out.display(), e.error()))?
        .sync_all()?;
    println!(
        "{}",
        json!({
            "tenant_id": summary.tenant_id,
            "records": summary.records,
            "users": summary.users,
            "out": out,
        })
    );
    Ok(())
}

/// `gallery import`: the file `input` into the tenant; the summary on stdout, and an error
/// when the file was refused.
pub async fn import(
    config: &Config,
    tenant: Uuid,
    input: &Path,
    options: ImportOptions,
) -> anyhow::Result<()> {
    let (domain, _stopping) = palmlink_api::open_domain(config).await?;
    let summary = domain
        .bulk
        .import(tenant, input, &options, Arc::new(Bar::new()))
        .await
        .map_err(explain)?;
    println!("{}", serde_json::to_string(&summary)?);
    if let Some(why) = summary.refused {
        anyhow::bail!("{}: {why}", input.display());
    }
    Ok(())
}
