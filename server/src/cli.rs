//! The `palmlink` command line: `serve` and the operator commands. Every option can also be
//! given as a `PALMLINK_*` environment variable. Operator commands print one JSON object.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use palmlink_api::Config;
use palmlink_domain::{
    remove_gallery, scope_text, DomainResult, ImportOptions, OperatorActor, Operators, Sessions,
    SystemClock,
};
use palmlink_engine::IndexPolicy;

use crate::bulk;
use crate::explain::explain;
use palmlink_simulator::{demo, scanner};
use palmlink_webhooks::{parse_duration, RetrySchedule};
use serde_json::{json, Value};
use uuid::Uuid;

/// PalmLink: open palm-biometric identity API.
#[derive(Debug, Parser)]
#[command(name = "palmlink", version, about)]
pub struct Cli {
    /// Storage options shared by every command.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the data lives.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Data directory: database, signing key and galleries.
    #[arg(
        long,
        env = "PALMLINK_DATA_DIR",
        default_value = "./palmlink-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Database URL (default: the embedded SQLite database in the data directory).
    #[arg(long, env = "PALMLINK_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// The master key file that seals templates (default: DATA_DIR/master.key, created at
    /// first start). Nodes that share a database share its content.
    #[arg(long, env = "PALMLINK_MASTER_KEY_FILE", global = true)]
    pub master_key_file: Option<PathBuf>,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the HTTP service.
    Serve(ServeArgs),
    /// Manages tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manages OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manages the operators who sign in to the console (`/console`).
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Checks or rebuilds this node's galleries against the database.
    #[command(subcommand)]
    Gallery(GalleryCommand),
    /// Checks the audit log's hash chains.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Runs a simulated scanner: pairs, long-polls challenges, answers with synthetic palms.
    Scanner(scanner::ScannerArgs),
    /// Runs the whole loop on loopback: service, scanner, webhook receiver, enrollments,
    /// verifications and an identification.
    Demo(demo::DemoArgs),
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PALMLINK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve `/metrics` on this address instead of the API's port.
    #[arg(long, env = "PALMLINK_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log lines as `text` or `json` (one JSON object per line, with the request id).
    #[arg(long, env = "PALMLINK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Allow plain-http and private-address webhook endpoints (local development).
    #[arg(long, env = "PALMLINK_ALLOW_HTTP_WEBHOOKS")]
    pub allow_http_webhooks: bool,
    /// `iss` claim of access tokens.
    #[arg(long, env = "PALMLINK_ISSUER", default_value = "palmlink")]
    pub issuer: String,
    /// Sustained requests per second per OAuth client.
    #[arg(long, env = "PALMLINK_RATE_LIMIT_PER_SECOND", default_value_t = 50)]
    pub rate_limit_per_second: u32,
    /// Request burst per OAuth client.
    #[arg(long, env = "PALMLINK_RATE_LIMIT_BURST", default_value_t = 200)]
    pub rate_limit_burst: u32,
    /// Sustained token and pairing requests per second per client address.
    #[arg(
        long,
        env = "PALMLINK_PUBLIC_RATE_LIMIT_PER_SECOND",
        default_value_t = 20
    )]
    pub public_rate_limit_per_second: u32,
    /// Token and pairing request burst per client address.
    #[arg(long, env = "PALMLINK_PUBLIC_RATE_LIMIT_BURST", default_value_t = 100)]
    pub public_rate_limit_burst: u32,
    /// Delays between webhook retries, e.g. `5s,5m,30m,2h,5h,10h,10h` (units ms, s, m, h, d).
    #[arg(long, env = "PALMLINK_WEBHOOK_RETRY_SCHEDULE")]
    pub webhook_retry_schedule: Option<RetrySchedule>,
    /// Time a webhook receiver has to answer, e.g. `10s`.
    #[arg(long, env = "PALMLINK_WEBHOOK_TIMEOUT", value_parser = parse_duration)]
    pub webhook_timeout: Option<std::time::Duration>,
    /// Live templates from which a tenant's gallery builds and uses a graph index (default:
    /// the engine's choice).
    #[arg(long, env = "PALMLINK_GRAPH_MIN_ROWS")]
    pub graph_min_rows: Option<usize>,
    /// Neighbours per point of the graph indexes (`M`, 4 to 64; default: the engine's, 16),
    /// for the next build: 24 suits galleries of millions of templates.
    #[arg(long, env = "PALMLINK_GRAPH_M", value_parser = clap::value_parser!(u16).range(4..=64))]
    pub graph_m: Option<u16>,
    /// Candidates a graph build explores per insertion (`efConstruction`, 8 to 4096; default:
    /// the engine's, 100), for the next build.
    #[arg(
        long,
        env = "PALMLINK_GRAPH_EF_CONSTRUCTION",
        value_parser = clap::value_parser!(u16).range(8..=4096)
    )]
    pub graph_ef_construction: Option<u16>,
    /// Candidates a graph search explores (`ef`, 1 to 8192; default: the engine's, 128): more
    /// finds more mates in a large gallery, at the cost of time.
    #[arg(long, env = "PALMLINK_GRAPH_EF", value_parser = clap::value_parser!(u16).range(1..=8192))]
    pub graph_ef: Option<u16>,
}

impl ServeArgs {
    /// `policy` with the graph options given on the command line.
    pub fn index_policy(&self, policy: IndexPolicy) -> IndexPolicy {
        let mut policy = policy;
        if let Some(rows) = self.graph_min_rows {
            policy.build_min_rows = rows;
            policy.auto_ann_min_rows = rows;
        }
        let params = &mut policy.params;
        if let Some(m) = self.graph_m {
            params.max_connections = m.into();
        }
        if let Some(ef) = self.graph_ef_construction {
            params.ef_construction = ef.into();
        }
        if let Some(ef) = self.graph_ef {
            params.ef_search = ef.into();
        }
        policy
    }
}

/// `tenant ...`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Creates a tenant; prints `{"tenant_id": ...}`.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// Deletes a tenant: its data key first (crypto-shredding), then its rows and this
    /// node's galleries of it (other nodes remove theirs when they find it gone).
    Delete {
        /// The tenant.
        #[arg(long)]
        tenant: Uuid,
    },
}

/// `operator ...`.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Creates an operator; prints `{"operator_id", "name", "password"}` (the password only
    /// once: drawn at random unless `--password-stdin` gives it).
    Create {
        /// Sign-in name.
        #[arg(long)]
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `gallery ...`.
#[derive(Debug, Subcommand)]
pub enum GalleryCommand {
    /// Compares each tenant's gallery with the database; prints one JSON object per tenant
    /// and exits 1 if any differ. Works while the node runs.
    Check {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<Uuid>,
    },
    /// Builds each tenant's gallery afresh from the database (with the node stopped).
    Rebuild {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<Uuid>,
    },
    /// Writes every enrolled palm of a tenant, templates in plain, to a new file (mode
    /// 0600) in the gallery file format (docs/bulk.md); prints a JSON summary.
    Export {
        /// The tenant.
        #[arg(long)]
        tenant: Uuid,
        /// The file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Imports a gallery file into a tenant: checked whole first, then written in batches,
    /// each in one transaction; palms the tenant holds already are skipped. Prints a JSON
    /// summary; exits 1 when the file is refused.
    Import {
        /// The tenant.
        #[arg(long)]
        tenant: Uuid,
        /// The file to read.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Import the valid records of a file that has invalid ones (listed in the summary)
        /// instead of refusing it.
        #[arg(long)]
        skip_invalid: bool,
        /// Records written per transaction (1-10000).
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
    },
}

/// `audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recomputes each tenant's audit chain; prints `{"tenant_id", "entries", "ok"}` per
    /// tenant and exits 1 naming the first sequence whose hash does not hold.
    Verify {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<Uuid>,
    },
}

/// `client ...`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Creates a client; prints `{"client_id": ..., "client_secret": ...}` (the secret only once).
    Create {
        /// Owning tenant.
        #[arg(long)]
        tenant: Uuid,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Space-separated scopes (default: all).
        #[arg(long)]
        scopes: Option<String>,
    },
    /// Issues a new secret; the old one works until `revoke-old-secret`.
    Rotate {
        /// The client.
        #[arg(long)]
        client: Uuid,
    },
    /// Stops the previous secret from working.
    RevokeOldSecret {
        /// The client.
        #[arg(long)]
        client: Uuid,
    },
    /// Deletes the client; its tokens stop working at once.
    Delete {
        /// The client.
        #[arg(long)]
        client: Uuid,
    },
}

impl StorageArgs {
    /// A configuration for these storage options.
    pub fn config(&self) -> Config {
        let mut config = Config::new(self.data_dir.clone());
        config.database_url = self.database_url.clone();
        config.master_key_file = self.master_key_file.clone();
        config
    }
}

impl Cli {
    /// The log format asked for (`serve --log-format`; text for the other commands).
    pub fn log_format(&self) -> LogFormat {
        match &self.command {
            Command::Serve(args) => args.log_format,
            _ => LogFormat::Text,
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = cli.storage.config();
    let output = match cli.command {
        Command::Serve(args) => {
            config.index_policy = args.index_policy(config.index_policy);
            config.listen = args.listen;
            config.metrics_listen = args.metrics_listen;
            config.allow_http_webhooks = args.allow_http_webhooks;
            config.issuer = args.issuer;
            config.rate_limit_per_second = args.rate_limit_per_second;
            config.rate_limit_burst = args.rate_limit_burst;
            config.public_rate_limit_per_second = args.public_rate_limit_per_second;
            config.public_rate_limit_burst = args.public_rate_limit_burst;
            if let Some(schedule) = args.webhook_retry_schedule {
                config.webhooks.schedule = schedule;
            }
            if let Some(timeout) = args.webhook_timeout {
                config.webhooks.timeout = timeout;
            }
            return Ok(palmlink_api::serve(config).await?);
        }
        Command::Scanner(args) => return scanner::run_cli(args).await,
        Command::Demo(args) => return demo::run_cli(args).await,
        Command::Tenant(command) => operate(&config, Operation::Tenant(command)).await?,
        Command::Client(command) => operate(&config, Operation::Client(command)).await?,
        Command::Operator(OperatorCommand::Create {
            name,
            password_stdin,
        }) => create_operator(&config, &name, password_stdin).await?,
        Command::Gallery(GalleryCommand::Check { tenant }) => {
            return galleries(&config, false, tenant).await
        }
        Command::Gallery(GalleryCommand::Rebuild { tenant }) => {
            return galleries(&config, true, tenant).await
        }
        Command::Gallery(GalleryCommand::Export { tenant, out }) => {
            return bulk::export(&config, tenant, &out).await
        }
        Command::Gallery(GalleryCommand::Import {
            tenant,
            input,
            skip_invalid,
            batch_size,
        }) => {
            let options = ImportOptions {
                skip_invalid,
                batch_size,
            };
            return bulk::import(&config, tenant, &input, options).await;
        }
        Command::Audit(AuditCommand::Verify { tenant }) => {
            return verify_audit(&config, tenant).await
        }
    };
    println!("{output}");
    Ok(())
}

/// An operator command.
enum Operation {
    Tenant(TenantCommand),
    Client(ClientCommand),
}

/// Runs an operator command on the configuration's storage; returns what it prints.
async fn operate(config: &Config, operation: Operation) -> anyhow::Result<Value> {
    let store = palmlink_api::open_store(config).await?;
    let operators = Operators::new(store, Arc::new(SystemClock));
    operation_output(&operators, config.data_dir.join("galleries"), operation)
        .await
        .map_err(explain)
}

async fn operation_output(
    operators: &Operators,
    galleries_dir: PathBuf,
    operation: Operation,
) -> DomainResult<Value> {
    Ok(match operation {
        Operation::Tenant(TenantCommand::Create { name }) => {
            let tenant = operators
                .create_tenant(OperatorActor::CommandLine, &name)
                .await?;
            json!({"tenant_id": tenant.id, "name": tenant.name})
        }
        Operation::Tenant(TenantCommand::Delete { tenant }) => {
            operators
                .delete_tenant(OperatorActor::CommandLine, tenant)
                .await?;
            remove_gallery(&galleries_dir, tenant)?;
            json!({"tenant_id": tenant, "deleted": true})
        }
        Operation::Client(ClientCommand::Create {
            tenant,
            name,
            scopes,
        }) => {
            let made = operators
                .create_client(OperatorActor::CommandLine, tenant, &name, scopes.as_deref())
                .await?;
            json!({
                "client_id": made.client.id,
                "client_secret": made.secret,
                "tenant_id": tenant,
                "scopes": scope_text(&made.client.scopes),
            })
        }
        Operation::Client(ClientCommand::Rotate { client }) => {
            let secret = operators
                .rotate_client(OperatorActor::CommandLine, client)
                .await?;
            json!({"client_id": client, "client_secret": secret})
        }
        Operation::Client(ClientCommand::RevokeOldSecret { client }) => {
            operators
                .revoke_old_secret(OperatorActor::CommandLine, client)
                .await?;
            json!({"client_id": client, "old_secret_revoked": true})
        }
        Operation::Client(ClientCommand::Delete { client }) => {
            operators
                .delete_client(OperatorActor::CommandLine, client)
                .await?;
            json!({"client_id": client, "deleted": true})
        }
    })
}

/// `operator create`: the operator and its password, printed once.
async fn create_operator(
    config: &Config,
    name: &str,
    password_stdin: bool,
) -> anyhow::Result<Value> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        None
    };
    let store = palmlink_api::open_store(config).await?;
    let made = Sessions::new(store, Arc::new(SystemClock))
        .create_operator(OperatorActor::CommandLine, name, password)
        .await
        .map_err(explain)?;
    Ok(json!({
        "operator_id": made.operator.id,
        "name": made.operator.name,
        "password": made.password,
    }))
}

/// `gallery check` (or `gallery rebuild` when `rebuild`): one JSON object per tenant on
/// stdout.
async fn galleries(config: &Config, rebuild: bool, only: Option<Uuid>) -> anyhow::Result<()> {
    let (domain, _stopping) = palmlink_api::open_domain(config).await?;
    let tenants = match only {
        Some(tenant) => vec![tenant],
        None => domain.store.list_tenant_ids().await?,
    };
    let mut all_agree = true;
    for tenant in tenants {
        let check = if rebuild {
            // Taking the gallery first fails while a node serves it.
            domain.galleries.get(tenant).await?;
            domain.galleries.rebuild(tenant).await?;
            domain.galleries.check(tenant).await
        } else {
            domain.galleries.check(tenant).await
        }
        .map_err(explain)?;
        all_agree &= check.agrees();
        println!(
            "{}",
            json!({
                "tenant_id": check.tenant_id,
                "database_templates": check.database_templates,
                "gallery_templates": check.gallery_templates,
                "missing": check.missing.len(),
                "extra": check.extra.len(),
                "last_sequence": check.last_sequence,
                "log_head": check.log_head,
            })
        );
    }
    if !all_agree {
        anyhow::bail!("a gallery differs from the database");
    }
    Ok(())
}

/// `audit verify`: one JSON object per tenant on stdout; an error naming the first broken
/// sequence of each chain that does not hold.
async fn verify_audit(config: &Config, tenant: Option<Uuid>) -> anyhow::Result<()> {
    let store = palmlink_api::open_store(config).await?;
    let checks = palmlink_domain::Audit::new(store)
        .verify(tenant)
        .await
        .map_err(explain)?;
    let mut broken = Vec::new();
    for (tenant, check) in checks {
        let mut line = json!({
            "tenant_id": tenant,
            "entries": check.entries,
            "ok": check.first_bad.is_none(),
        });
        if let Some(sequence) = check.first_bad {
            line["first_bad_sequence"] = json!(sequence);
            broken.push(format!("tenant {tenant}: sequence {sequence}"));
        }
        println!("{line}");
    }
    if !broken.is_empty() {
        anyhow::bail!("the audit chain does not hold at {}", broken.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let line = ["palmlink", "serve"].iter().chain(args);
        match Cli::try_parse_from(line)?.command {
            Command::Serve(args) => Ok(args),
            other => panic!("not serve: {other:?}"),
        }
    }

    /// The graph options reach the galleries' index policy; those not given keep the
    /// engine's defaults.
    #[test]
    fn graph_options_set_the_index_policy() {
        let engine = IndexPolicy::default();
        let args = serve_args(&["--graph-m", "24", "--graph-ef", "256"]).unwrap();
        let policy = args.index_policy(engine);
        assert_eq!(policy.params.max_connections, 24);
        assert_eq!(policy.params.ef_search, 256);
        assert_eq!(policy.params.ef_construction, engine.params.ef_construction);
        assert_eq!(policy.build_min_rows, engine.build_min_rows);
        let args = serve_args(&["--graph-ef-construction", "200", "--graph-min-rows", "16"]);
        let policy = args.unwrap().index_policy(engine);
        assert_eq!(policy.params.ef_construction, 200);
        assert_eq!((policy.build_min_rows, policy.auto_ann_min_rows), (16, 16));
        assert_eq!(policy.params.max_connections, engine.params.max_connections);
        assert_eq!(serve_args(&[]).unwrap().index_policy(engine), engine);
    }

    /// Values the graph cannot take are refused with the option named.
    #[test]
    fn graph_options_out_of_range_are_refused() {
        for (option, value) in [
            ("--graph-m", "3"),
            ("--graph-m", "65"),
            ("--graph-ef", "0"),
            ("--graph-ef-construction", "5000"),
        ] {
            let err = serve_args(&[option, value]).unwrap_err().to_string();
            assert!(err.contains(option), "{option} {value}: {err}");
        }
    }
}
