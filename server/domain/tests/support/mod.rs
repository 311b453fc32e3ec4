//! What the domain's integration tests share: nodes of the domain on one real store (SQLite
//! in a temporary directory) with real galleries, a clock moved by hand, and captures of
//! the synthetic population of `palmlink-fixtures`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use palmlink_domain::{
    Caller, CaptureItem, CaptureSubmission, Clock, Domain, DomainConfig, GrantRequest,
    OperatorActor, PairDevice, Parts, RegisterDevice, SigningKey, TemplateBody, SECOND,
};
use palmlink_fixtures::{PalmSide, Population};
use palmlink_store::{Device, PalmType, Store};
use tokio::sync::watch;

/// A clock that stands still until moved.
pub struct ManualClock(pub AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct World {
    pub domain: Domain,
    pub clock: Arc<ManualClock>,
    pub population: Population,
    pub store: Arc<dyn Store>,
    pub dir: PathBuf,
    _stopping: watch::Sender<bool>,
    _temp: Arc<tempfile::TempDir>,
}

/// A node of the domain on a fresh database.
pub async fn world() -> World {
    let temp = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}", temp.path().join("palmlink.db").display());
    let store = palmlink_store::open(&url).await.unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(1_800_000_000 * SECOND)));
    node(store, clock, temp, "node-a").await
}

/// A node named `name` (its own galleries and keys directory) on `store`.
async fn node(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    temp: Arc<tempfile::TempDir>,
    name: &str,
) -> World {
    let dir = temp.path().join(name);
    // Nodes share the database and the master key file's content.
    let master_key = palmlink_domain::unlock(
        &temp.path().join("master.key"),
        store.as_ref(),
        clock.as_ref(),
    )
    .await
    .unwrap();
    let signing_key = SigningKey::shared(store.as_ref(), &master_key, clock.as_ref(), &dir)
        .await
        .unwrap();
    let (stopping, stopping_rx) = watch::channel(false);
    let parts = Parts {
        store: store.clone(),
        galleries_dir: dir.join("galleries"),
        master_key,
        clock: clock.clone(),
        signing_key,
        stopping: stopping_rx,
    };
    World {
        domain: Domain::new(parts, &DomainConfig::default()),
        clock,
        population: Population::with_seed(42, 100),
        store,
        dir,
        _stopping: stopping,
        _temp: temp,
    }
}

impl World {
    /// Another node on the same database, with galleries of its own.
    pub async fn another_node(&self, name: &str) -> World {
        node(
            self.store.clone(),
            self.clock.clone(),
            self._temp.clone(),
            name,
        )
        .await
    }
}

impl World {
    /// A tenant, a client with every scope, and the caller its token stands for.
    pub async fn caller(&self) -> Caller {
        let tenant = self
            .domain
            .operators
            .create_tenant(OperatorActor::CommandLine, "t")
            .await
            .unwrap();
        let client = self
            .domain
            .operators
            .create_client(OperatorActor::CommandLine, tenant.id, "app", None)
            .await
            .unwrap();
        let grant = self
            .domain
            .tokens
            .grant(GrantRequest {
                grant_type: Some("client_credentials".into()),
                client_id: Some(client.client.id.to_string()),
                client_secret: Some(client.secret),
                ..GrantRequest::default()
            })
            .await
            .unwrap();
        self.domain
            .tokens
            .authenticate(&grant.access_token)
            .await
            .unwrap()
    }

    /// A device of the caller's tenant, paired as `hardware_id`.
    pub async fn scanner(&self, caller: &Caller, hardware_id: &str) -> Device {
        let registered = self
            .domain
            .devices
            .register(
                caller,
                RegisterDevice {
                    device_name: "Front desk".into(),
                    location: "Lobby".into(),
                },
            )
            .await
            .unwrap();
        let paired = self
            .domain
            .devices
            .pair(PairDevice {
                // Typed as a person would: lower case, with a separator.
                pairing_code: format!(
                    "{}-{}",
                    &registered.pairing_code[..5].to_lowercase(),
                    &registered.pairing_code[5..]
                ),
                hardware_id: hardware_id.into(),
            })
            .await
            .unwrap();
        self.domain
            .devices
            .authenticate_scanner(&paired.device_secret)
            .await
            .unwrap()
    }

    /// The captures of `identity`'s palm: its enrollment capture, or probe capture `take`.
    pub fn captures(&self, identity: u64, palm: PalmSide, take: Option<u64>) -> CaptureSubmission {
        let capture = match take {
            None => self.population.enrollment(identity, palm),
            Some(i) => self.population.capture(identity, palm, i),
        };
        CaptureSubmission {
            vendor: Some("mock".into()),
            captures: vec![CaptureItem {
                palm_type: match palm {
                    PalmSide::Left => PalmType::Left,
                    PalmSide::Right => PalmType::Right,
                },
                template: TemplateBody {
                    format: "f32".into(),
                    blocks: Some(capture.to_blocks()),
                    data: None,
                },
                quality: Some(f64::from(capture.quality)),
                liveness: Some(0.99),
            }],
        }
    }
}
