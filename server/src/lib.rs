//! PalmLink: an open palm-biometric identity API over HTTP.
//!
//! Integrators obtain OAuth 2.0 client-credentials tokens, register scanners, and create
//! enrollment, verification (1:1) and identification (1:N) challenges; paired scanners
//! long-poll those challenges and submit palm templates, which the engine stores and matches
//! in one gallery per tenant. Every completed step is written to a durable outbox for
//! webhook delivery.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let server = palmlink_server::start(palmlink_server::Config::new("./palmlink-data")).await?;
//! println!("listening on {}", server.addr());
//! server.stop().await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod admin;
mod app;
mod auth;
pub mod cli;
mod clock;
pub mod config;
pub mod demo;
mod error;
mod extract;
mod galleries;
mod hub;
mod idempotency;
mod metrics;
mod outbox;
mod routes;
pub mod scanner;
mod service;
mod state;
pub mod store;
mod sweeper;
mod webhooks;

pub use app::{open_store, serve, start, RunningServer};
pub use auth::ALL_SCOPES;
pub use config::Config;
pub use webhooks::{RetrySchedule, WebhookSettings};
