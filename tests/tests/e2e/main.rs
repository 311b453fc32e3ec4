//! End-to-end tests of PalmLink over real HTTP on loopback sockets: one test binary.
//!
//! - `support`: a node per test on a loopback port (on a PostgreSQL schema of its own when
//!   `PALMLINK_TEST_DATABASE_URL` is set, on embedded SQLite otherwise), an HTTP client, synthetic palm templates
//!   and a scriptable webhook receiver with an independent Standard Webhooks verifier.
//! - `audit`: the hash-chained audit log, its listing, `audit verify`, SIGKILL mid-burst.
//! - `bulk`: `gallery export` and `import` through the binary: users moved to a fresh
//!   deployment verify with the same scores, an import idempotent and killed at random
//!   points, truncated and corrupted files refused naming the record, tenants kept apart.
//! - `tokens`: OAuth client credentials, JWT checks, scopes, rotation, client deletion.
//! - `devices`: registration, pagination, pairing codes, revocation.
//! - `scanner`: long polling, capture validation, double capture, cancellation, expiry.
//! - `matching`: enrollment, 1:1 verification scores, 1:N identification, outbox events.
//! - `users`: listing, look-up, erasure, matching settings.
//! - `isolation`: a second tenant sees nothing of the first.
//! - `http`: error shapes, body limit, idempotency keys, rate limits, request ids, ops.
//! - `integrators`: the OpenAPI document through a standard validator, a generated client
//!   and schemathesis.
//! - `observability`: JSON logs with request ids, and the Prometheus metrics on their own
//!   listener.
//! - `crash`: SIGKILL after acknowledged enrollments, restart, every one still verifies.
//! - `templates`: templates sealed in the database and galleries that follow it: SIGKILL
//!   during enrollments and erasures, a gallery rebuilt, the master key's checks, and no
//!   copy of an erased template left in any file.
//! - `trust`: minimum quality and liveness, the duplicate-identity check, `challenge.failed`.
//! - `nodes`: two `palmlink serve` processes on one PostgreSQL database: a scanner paired
//!   on one and woken by a challenge made on the other, erasure seen by both, each webhook
//!   attempt made by one node, SIGKILL of one node mid-burst.
//! - `webhooks`: subscriptions, signed deliveries, retries, and SIGKILL during a burst.
//! - `demo`: `palmlink demo` and `palmlink scanner` as child processes.
//! - `console`: the operator console over HTTP: sessions, CSRF, sign-in throttling, the
//!   wall between its cookie and API tokens, `palmlink operator create`.
//! - `console_browser`: the console in headless chromium through chromedriver (skipped
//!   when they are not installed).

mod audit;
mod bulk;
mod console;
mod console_browser;
mod crash;
mod demo;
mod devices;
mod http;
mod integrators;
mod isolation;
mod matching;
mod nodes;
mod observability;
mod scanner;
mod support;
mod templates;
mod tokens;
mod trust;
mod users;
mod webhooks;
