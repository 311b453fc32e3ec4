//! The behaviour every backend of the store shares, run against each backend the build has.
//!
//! Each case is an `async fn(&dyn Store)` in a module per aggregate; [`suite!`] runs every
//! case against every backend, each on a fresh database:
//!
//! - `sqlite`: a database file in a temporary directory.
//!
//! - `accounts`: tenants and OAuth clients with their two secret slots.
//! - `devices`: one-time pairing, hardware ids, credentials, revocation.
//! - `challenges`: filters, expiry, completion once, revocation failing pending ones.
//! - `users`: users, palms and enrollment commits, erasure.
//! - `records`: the outbox, idempotency keys and matching settings.
//! - `webhooks`: subscriptions, fan-out once, leases, attempts, requeue.

mod accounts;
mod challenges;
mod devices;
mod records;
mod support;
mod users;
mod webhooks;

/// One test per case and backend.
macro_rules! suite {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = crate::support::Sqlite::new().await;
                    crate::$module::$case(backend.store.as_ref()).await;
                }
            )*
        }
    };
}

suite![
    accounts::tenants_are_listed_and_found,
    accounts::client_secrets_rotate_through_two_slots,
    devices::pairing_is_one_time_and_hardware_ids_unique,
    devices::revocation_ends_the_credential_and_fails_pending_challenges,
    challenges::lists_filter_and_count,
    challenges::a_challenge_completes_once,
    challenges::expiry_ends_only_late_pending_challenges,
    users::users_are_ensured_once_per_tenant,
    users::an_enrollment_commits_palms_result_and_event_together,
    users::a_palm_is_enrolled_once_per_user,
    users::erasure_deletes_the_user_and_returns_its_palms,
    records::the_outbox_keeps_events_in_order,
    records::idempotency_keys_replay_refuse_and_expire,
    records::settings_are_per_tenant,
    webhooks::subscriptions_are_unique_per_tenant,
    webhooks::fan_out_delivers_each_event_once_to_whoever_wanted_it,
    webhooks::a_leased_delivery_is_not_claimed_twice,
    webhooks::an_attempt_recorded_twice_counts_once,
    webhooks::failed_deliveries_are_requeued,
];
