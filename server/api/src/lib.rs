//! PalmLink's HTTP API, and the node that serves it.
//!
//! [`app`] is the router over the domain's services (and the operator console at
//! `/console`, `console/`): each route parses its request, calls
//! one domain function and shapes the response; every failure becomes the contract's error
//! body through one exhaustive mapping of the domain's errors (`error.rs`). [`start`] opens a node (storage, key material,
//! galleries, the sweeper and the webhook delivery worker) and serves it on a socket.
//!
//! ```no_run
//! # async fn run() -> Result<(), palmlink_api::StartError> {
//! let server = palmlink_api::start(palmlink_api::Config::new("./palmlink-data")).await?;
//! println!("listening on {}", server.addr());
//! Ok(server.stop().await?)
//! # }
//! ```
#![forbid(unsafe_code)]

mod app;
mod auth;
mod config;
mod console;
mod error;
mod extract;
mod idempotency;
mod metrics;
mod node;
mod routes;
mod schemas;
mod state;
mod views;

pub use app::app;
pub use config::Config;
pub use node::{open_domain, open_store, serve, start, RunningServer, StartError};
