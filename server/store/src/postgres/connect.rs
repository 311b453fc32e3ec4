//! What a `postgres://` URL asks for: the connection settings, the schema and TLS.
//!
//! The URL and the parameters read here are described at [`PostgresStore::open`]. No error
//! or log line repeats the URL: it may carry a password.
//!
//! [`PostgresStore::open`]: super::PostgresStore::open

use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{StoreError, StoreResult};

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The name the service's connections show in `pg_stat_activity`, unless the URL names one.
const APPLICATION_NAME: &str = "palmlink";

/// How connections are secured.
#[derive(Clone)]
pub(super) enum Tls {
    /// Plain TCP (or a Unix socket).
    Off,
    /// TLS with the server's certificate verified.
    Verified(MakeRustlsConnect),
}

/// The parsed URL.
pub(super) struct Target {
    /// Connection settings (the schema already in `search_path`).
    pub config: tokio_postgres::Config,
    /// The schema of `schema=NAME`, to create if missing.
    pub schema: Option<String>,
    /// How connections are secured.
    pub tls: Tls,
}

fn invalid(what: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("invalid PostgreSQL URL: {what}"))
}

/// Reads `url` (see the module docs).
pub(super) fn parse(url: &str) -> StoreResult<Target> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut schema = None;
    let mut verified = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "schema" => schema = Some(schema_name(value)?),
            "sslmode" => match value {
                "disable" | "prefer" => kept.push(pair.to_owned()),
                "require" | "verify-ca" | "verify-full" => {
                    verified = true;
                    kept.push("sslmode=require".to_owned());
                }
                other => return Err(invalid(format_args!("unsupported sslmode `{other}`"))),
            },
            _ => kept.push(pair.to_owned()),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = rest.parse().map_err(invalid)?;
    if let Some(schema) = &schema {
        let options = match config.get_options() {
            Some(given) => format!("{given} -c search_path={schema}"),
            None => format!("-c search_path={schema}"),
        };
        config.options(options);
    }
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let tls = if verified {
        debug_assert_eq!(config.get_ssl_mode(), SslMode::Require);
        Tls::Verified(verified_tls()?)
    } else {
        Tls::Off
    };
    Ok(Target {
        config,
        schema,
        tls,
    })
}

/// A schema name safe to put in `search_path` and SQL unquoted (see the module docs).
fn schema_name(name: &str) -> StoreResult<String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(invalid(
            "a schema name is lower-case letters, digits and `_`, at most 63 bytes, \
             not starting with a digit",
        ))
    }
}

/// A TLS connector that verifies the server against the system's trust store.
fn verified_tls() -> StoreResult<MakeRustlsConnect> {
    use rustls_platform_verifier::ConfigVerifierExt as _;
    let config = rustls::ClientConfig::with_platform_verifier()
        .map_err(|err| StoreError::Database(format!("TLS set-up: {err}")))?;
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        parse(url).unwrap_or_else(|err| panic!("{url}: {err}"))
    }

    #[test]
    fn the_schema_parameter_sets_the_search_path() {
        let t = target("postgres://u:secret@db.example:5433/app?schema=node_a");
        assert_eq!(t.schema.as_deref(), Some("node_a"));
        assert_eq!(t.config.get_options(), Some("-c search_path=node_a"));
        assert_eq!(t.config.get_dbname(), Some("app"));
        assert_eq!(t.config.get_ports(), [5433]);
        assert_eq!(t.config.get_application_name(), Some("palmlink"));
        assert!(matches!(t.tls, Tls::Off));
        let both = target("postgresql://u@h/d?options=-c%20statement_timeout%3D5000&schema=s1");
        assert_eq!(
            both.config.get_options(),
            Some("-c statement_timeout=5000 -c search_path=s1")
        );
    }

    #[test]
    fn bad_schemas_and_modes_are_refused_without_the_password() {
        for url in [
            "postgres://u:hunter2@h/d?schema=Upper",
            "postgres://u:hunter2@h/d?schema=a;drop",
            "postgres://u:hunter2@h/d?schema=",
            "postgres://u:hunter2@h/d?sslmode=allow",
            "postgres://u:hunter2@h/d?sslrootcert=/x.pem",
            "postgres://u:hunter2@h:port/d",
        ] {
            let err = parse(url).err().unwrap_or_else(|| panic!("{url} accepted"));
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn tls_modes_that_require_it_verify() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let t = target(&format!("postgres://u@h/d?sslmode={mode}"));
            assert!(matches!(t.tls, Tls::Verified(_)), "{mode}");
            assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        }
        for mode in ["disable", "prefer"] {
            let t = target(&format!("postgres://u@h/d?sslmode={mode}"));
            assert!(matches!(t.tls, Tls::Off), "{mode}");
        }
    }
}
