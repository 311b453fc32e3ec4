//! A node: the store, the key, the galleries and the services, the router on a socket, and
//! the background tasks (the sweeper and the webhook delivery worker).

use std::net::SocketAddr;
use std::sync::Arc;

use palmlink_domain::{reconcile, run_sweeper, Domain, Galleries, Parts, SigningKey, SystemClock};
use palmlink_store::Store;
use palmlink_webhooks::DeliveryWorker;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::app::app;
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
    /// The token signing key.
    #[error("{0}")]
    Key(#[from] palmlink_domain::KeyError),
    /// Bringing the galleries into agreement with the database.
    #[error("{0}")]
    Domain(#[from] palmlink_domain::DomainError),
    /// The webhook delivery client.
    #[error("webhook delivery: {0}")]
    Webhooks(String),
}

/// Opens the storage named by the configuration (the embedded SQLite database by default).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    std::fs::create_dir_all(&config.data_dir)?;
    Ok(palmlink_store::open(&config.effective_database_url()).await?)
}

/// The domain's services over the configuration's storage and key material, and the sender
/// that tells them the node is stopping.
pub async fn open_domain(
    config: &Config,
) -> Result<(Arc<Domain>, watch::Sender<bool>), StartError> {
    let store = open_store(config).await?;
    let signing_key = SigningKey::load_or_create(&config.data_dir)?;
    let galleries = Arc::new(Galleries::new(config.data_dir.join("galleries")));
    reconcile(store.as_ref(), &galleries).await?;
    let (stopping, stopping_rx) = watch::channel(false);
    let domain = Domain::new(
        Parts {
            store,
            galleries,
            clock: Arc::new(SystemClock),
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
    shutdown: oneshot::Sender<()>,
    stopping: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
    webhook_worker: JoinHandle<()>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, finishes the requests in flight, and returns.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stopping.send(true);
        let _ = self.shutdown.send(());
        self.sweeper.abort();
        self.webhook_worker.abort();
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Opens storage, reconciles galleries with the database, binds `config.listen` and serves
/// in the background.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let (domain, stopping) = open_domain(&config).await?;
    let worker = DeliveryWorker::new(
        domain.store.clone(),
        domain.outbox.clone(),
        config.webhooks.clone(),
        config.allow_http_webhooks,
    )
    .map_err(StartError::Webhooks)?;
    let router = app(domain.clone(), &config);
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let sweeper = tokio::spawn(run_sweeper(
        domain.store.clone(),
        domain.clock.clone(),
        config.sweep_interval,
    ));
    let webhook_worker = worker.spawn();
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
        shutdown,
        stopping,
        task,
        sweeper,
        webhook_worker,
    })
}

/// Runs a node until Ctrl-C or SIGTERM. Prints `{"listening": ADDR}` once it accepts.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let server = start(config).await?;
    tracing::info!(addr = %server.addr(), "PalmLink listening");
    println!(
        "{}",
        serde_json::json!({"listening": server.addr().to_string()})
    );
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
