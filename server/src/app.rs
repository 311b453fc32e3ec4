//! Assembly of the service: storage, keys, galleries, router, background tasks.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::caller::{limit_by_address, require_token};
use crate::auth::keys::SigningKey;
use crate::auth::token::TokenService;
use crate::config::Config;
use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::galleries::{self, Galleries};
use crate::hub::DeviceHub;
use crate::idempotency::idempotency;
use crate::metrics::Metrics;
use crate::routes::{challenges, devices, ops, scanner, settings, tokens, users, webhooks};
use crate::state::{rate_limiter, AppState};
use crate::store::{SqliteStore, Store};

/// Declares the two credentials: OAuth access tokens and scanner credentials.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("Access token from POST /v1/auth/token; the scopes are listed per operation."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "scanner",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The device_secret returned by POST /v1/device/pair."))
                    .build(),
            ),
        );
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(modifiers(&SecuritySchemes), info(
    title = "PalmLink API",
    version = "1",
    description = "Open palm-biometric identity API: devices, enrollment, 1:1 verification, 1:N identification."
))]
struct ApiDoc;

/// Opens the storage named by the configuration (the embedded SQLite database by default).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir)?;
    let url = config.effective_database_url();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(&url).await?))
    } else {
        anyhow::bail!(
            "unsupported database URL `{url}`: this build stores data in SQLite (sqlite://PATH)"
        )
    }
}

async fn not_found() -> Response {
    ApiError::NotFound("route").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

async fn count_status(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let response = next.run(req).await;
    state.metrics.record_status(response.status().as_u16());
    response
}

/// The HTTP application over a prepared state.
pub(crate) fn router(state: AppState) -> Router {
    let api = OpenApiRouter::new()
        .routes(routes!(devices::register, devices::list))
        .routes(routes!(devices::get, devices::revoke))
        .routes(routes!(devices::pairing_code))
        .routes(routes!(challenges::enroll))
        .routes(routes!(challenges::enroll_both))
        .routes(routes!(challenges::verify))
        .routes(routes!(challenges::identify))
        .routes(routes!(challenges::list))
        .routes(routes!(challenges::get))
        .routes(routes!(users::list))
        .routes(routes!(users::get, users::delete))
        .routes(routes!(settings::get, settings::put))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::delivery))
        .routes(routes!(webhooks::retry))
        .routes(routes!(webhooks::recover))
        .routes(routes!(webhooks::test))
        .route_layer(from_fn_with_state(state.clone(), idempotency))
        .route_layer(from_fn_with_state(state.clone(), require_token));
    let credentials = OpenApiRouter::new()
        .routes(routes!(tokens::token))
        .routes(routes!(scanner::pair))
        .route_layer(from_fn_with_state(state.clone(), limit_by_address));
    let public = OpenApiRouter::new()
        .routes(routes!(tokens::jwks))
        .routes(routes!(scanner::poll))
        .routes(routes!(scanner::capture))
        .routes(routes!(scanner::cancel))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics));
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api)
        .merge(credentials)
        .merge(public)
        .split_for_parts();
    let spec = Arc::new(openapi.to_pretty_json().unwrap_or_else(|_| "{}".to_owned()));
    router
        .route(
            "/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        spec.as_str().to_owned(),
                    )
                }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(state.clone(), count_status))
        .layer(from_fn_with_state(
            state.clone(),
            crate::webhooks::wake_on_write,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// A server running on a background task.
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    stopping: tokio::sync::watch::Sender<bool>,
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
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stopping.send(true);
        let _ = self.shutdown.send(());
        self.sweeper.abort();
        self.webhook_worker.abort();
        self.task.await??;
        Ok(())
    }
}

/// Opens storage, reconciles galleries with the database, binds `config.listen` and serves
/// in the background.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    let store = open_store(&config).await?;
    let key = SigningKey::load_or_create(&config.data_dir)?;
    let galleries = Arc::new(Galleries::new(config.data_dir.join("galleries")));
    galleries::reconcile(store.as_ref(), &galleries).await?;
    let webhooks = crate::webhooks::open(&config).await?;
    let (stopping, shutdown_rx) = tokio::sync::watch::channel(false);
    let state = AppState::new(crate::state::Parts {
        store: store.clone(),
        tokens: Arc::new(TokenService::new(
            key,
            config.issuer.clone(),
            config.token_ttl.as_secs() as i64,
        )),
        galleries,
        hub: Arc::new(DeviceHub::default()),
        limiter: Arc::new(rate_limiter(
            config.rate_limit_per_second,
            config.rate_limit_burst,
        )),
        ip_limiter: Arc::new(rate_limiter(
            config.public_rate_limit_per_second,
            config.public_rate_limit_burst,
        )),
        metrics: Arc::new(Metrics::default()),
        config: Arc::new(config.clone()),
        webhooks: webhooks.clone(),
        shutdown: shutdown_rx,
    });
    let app = router(state);
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let sweeper = tokio::spawn(crate::sweeper::run(store, config.sweep_interval));
    let webhook_worker = webhooks.spawn();
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
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

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let server = start(config).await?;
    tracing::info!(addr = %server.addr(), "PalmLink listening");
    println!(
        "{}",
        serde_json::json!({"listening": server.addr().to_string()})
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.stop().await
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
