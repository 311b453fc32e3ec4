//! A PostgreSQL schema of its own per test, when `PALMLINK_TEST_DATABASE_URL` names a
//! database: the nodes under test create it as they open, and it is dropped with this value.

/// The variable naming the test database.
pub const DATABASE_URL_VAR: &str = "PALMLINK_TEST_DATABASE_URL";

/// A schema in the test database, dropped (with everything in it) when this value is.
pub struct Schema {
    base: String,
    name: String,
}

impl Schema {
    /// `None` when no test database is named.
    pub fn new() -> Option<Schema> {
        let base = std::env::var(DATABASE_URL_VAR).ok()?;
        let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
        Some(Schema { base, name })
    }

    /// The database URL that puts every table in this schema (its connections named
    /// after it, so that they can be ended before the schema is dropped).
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}schema={name}&application_name={name}",
            self.base,
            name = self.name
        )
    }
}

impl Schema {
    /// Runs `sql` (statements separated by `;`) in the schema, outside any node.
    pub async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(&self.base, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("SET search_path TO {}; {sql}", self.name))
            .await
            .expect("statements run");
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop has no runtime to wait on: a thread of its own drops the schema.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&base, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                // A node dropped without being stopped may hold a transaction open on a
                // runtime that no longer runs: its connections go first.
                client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                        &[&name],
                    )
                    .await?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop schema {}", self.name);
        }
    }
}
