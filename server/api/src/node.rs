//! A node: the store, the keys, the galleries and the services, the router on a socket, and
//! the background tasks (the galleries following the database, the sweeper, the retention
//! purge, the webhook delivery worker).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use palmlink_domain::{run_retention, run_sweeper, unlock, Domain, Parts, SigningKey, SystemClock};
use palmlink_store::Store;
use palmlink_webhooks::DeliveryWorker;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::Config;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or the listening socket.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The database.
    #[error("{0}")]
    Store(#[from] palmlink_store::StoreError),
    /// The token signing key, or the galleries.
    #[error("{0}")]
    Domain(#[from] palmlink_domain::DomainError),
    /// The master key that seals templates.
    #[error("{0}")]
    Vault(#[from] palmlink_domain::VaultError),
    /// The webhook delivery client.
    #[error("webhook delivery: {0}")]
    Webhooks(String),
}

/// Opens the storage named by the configuration (the embedded SQLite database by default).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    std::fs::create_dir_all(&config.data_dir)?;
    Ok(palmlink_store::open(&config.effective_database_url()).await?)
}

/// The domain's services over the configuration's storage and key material (the master
/// key is checked against the database before anything else), and the sender that tells
/// them the node is stopping. The galleries are not brought up to date here: see
/// [`start`].
pub async fn open_domain(
    config: &Config,
) -> Result<(Arc<Domain>, watch::Sender<bool>), StartError> {
    let store = open_store(config).await?;
    let clock = Arc::new(SystemClock);
    let master_key = unlock(
        &config.effective_master_key_file(),
        store.as_ref(),
        clock.as_ref(),
    )
    .await?;
    let signing_key = SigningKey::shared(
        store.as_ref(),
        &master_key,
        clock.as_ref(),
        &config.data_dir,
    )
    .await?;
    let (stopping, stopping_rx) = watch::channel(false);
    let domain = Domain::new(
        Parts {
            store,
            galleries_dir: config.data_dir.join("galleries"),
            master_key,
            clock,
            signing_key,
            stopping: stopping_rx,
        },
        &config.domain(),
    );
    Ok((Arc::new(domain), stopping))
}

/// A node serving on a background task.
pub struct RunningServer {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    metrics_task: Option<JoinHandle<()>>,
    shutdown: oneshot::Sender<()>,
    stopping: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
    retention: JoinHandle<()>,
    webhook_worker: JoinHandle<()>,
    replicator: JoinHandle<()>,
    signals: JoinHandle<()>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `/metrics` is served on when it has a listener of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops accepting, finishes the requests in flight, and returns.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stopping.send(true);
        let _ = self.shutdown.send(());
        self.sweeper.abort();
        self.retention.abort();
        self.webhook_worker.abort();
        self.replicator.abort();
        self.signals.abort();
        if let Some(task) = &self.metrics_task {
            task.abort();
        }
        let served = self.task.await.map_err(std::io::Error::other)?;
        // The aborted tasks are dropped once awaited: what they held (the galleries and
        // their files' locks among it) is released before this returns.
        for task in [
            self.sweeper,
            self.retention,
            self.webhook_worker,
            self.replicator,
            self.signals,
        ]
        .into_iter()
        .chain(self.metrics_task)
        {
            let _ = task.await;
        }
        served
    }
}

/// The first pause before a failed start-up of the galleries is tried again; each next
/// pause doubles, up to [`START_UP_RETRY_MAX`].
const START_UP_RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest pause between two tries of the galleries' start-up.
const START_UP_RETRY_MAX: Duration = Duration::from_secs(10);

/// Opens storage and key material, binds `config.listen` and serves in the background.
/// The galleries catch up with the database meanwhile (`/readyz` answers 503 until they
/// have; a decision that needs a gallery catches it up first), then follow it.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let (domain, stopping) = open_domain(&config).await?;
    let worker = DeliveryWorker::new(
        domain.store.clone(),
        domain.outbox.clone(),
        config.webhooks.clone(),
        config.allow_http_webhooks,
    )
    .map_err(StartError::Webhooks)?;
    let (router, metrics_router) = crate::app::app_and_metrics(domain.clone(), &config);
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let (metrics_addr, metrics_task) = match config.metrics_listen {
        Some(at) => {
            let metrics_listener = TcpListener::bind(at).await?;
            let bound = metrics_listener.local_addr()?;
            let task = tokio::spawn(async move {
                if let Err(e) = axum::serve(metrics_listener, metrics_router).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            });
            (Some(bound), Some(task))
        }
        None => (None, None),
    };
    let sweeper = tokio::spawn(run_sweeper(
        domain.store.clone(),
        domain.clock.clone(),
        config.sweep_interval,
    ));
    let retention = tokio::spawn(run_retention(
        domain.store.clone(),
        domain.clock.clone(),
        config.retention_interval,
    ));
    let webhook_worker = worker.spawn();
    // Signals from the other nodes wake this one's waiters; polling stays beside them.
    let signals = tokio::spawn(domain.wakeups.clone().listen(domain.galleries.clone()));
    let galleries = domain.galleries.clone();
    let follow_interval = config.follow_interval;
    let replicator = tokio::spawn(async move {
        // Until the galleries have caught up, `/readyz` answers 503; a start-up that fails
        // (the database unreachable, a gallery still locked by a process on its way out) is
        // tried again rather than leaving the node unready for good.
        let mut pause = START_UP_RETRY_FIRST;
        while let Err(e) = galleries.start_up().await {
            tracing::error!(error = %e, retry_in = ?pause, "the galleries could not catch up with the database");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(START_UP_RETRY_MAX);
        }
        galleries.follow(follow_interval).await;
    });
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.await;
        })
        .await
    });
    Ok(RunningServer {
        addr,
        metrics_addr,
        metrics_task,
        shutdown,
        stopping,
        task,
        sweeper,
        retention,
        webhook_worker,
        replicator,
        signals,
    })
}

/// Runs a node until Ctrl-C or SIGTERM. Prints `{"listening": ADDR}` once it accepts.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let server = start(config).await?;
    tracing::info!(addr = %server.addr(), "PalmLink listening");
    let mut listening = serde_json::json!({"listening": server.addr().to_string()});
    if let Some(at) = server.metrics_addr() {
        listening["metrics"] = serde_json::json!(at.to_string());
    }
    println!("{listening}");
    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(server.stop().await?)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
