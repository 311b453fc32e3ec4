//! Webhook subscriptions and delivery, with real receivers on 127.0.0.1.
//!
//! - `subscriptions`: validation (400), conflicts (409), scope, pagination, update, delete,
//!   the endpoint guard, secret rotation.
//! - `delivery`: every event type with the contract's headers and signature, retries with
//!   the same `event_id`, 410, timeouts, redirects, manual retry and recovery, test pings.
//! - `crash`: SIGKILL of the `palmlink` process during a burst; nothing is lost.

mod crash;
mod delivery;
pub(crate) mod subscriptions;
