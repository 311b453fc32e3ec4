//! The simulated PalmLink scanner, and the demo of the whole loop.
//!
//! [`scanner`] behaves like a physical scanner over HTTP: it pairs with a one-time code,
//! long-polls its challenges and answers each with synthetic captures of a seeded
//! population (`palmlink-fixtures`). [`demo`] runs everything on loopback in one command: a
//! node on its embedded storage, the scanner, a webhook receiver, enrollments,
//! verifications and identifications, each checked and timed.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let args = palmlink_simulator::demo::DemoArgs { json: false, timeout_secs: 30 };
//! palmlink_simulator::demo::run_cli(args).await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod demo;
pub mod scanner;
