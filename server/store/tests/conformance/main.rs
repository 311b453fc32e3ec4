//! The behaviour every backend of the store shares, run against each backend the build has.
//!
//! Each case is an `async fn` in a module per aggregate; [`suite!`] runs every case against
//! every backend, each on a fresh database:
//!
//! - `sqlite`: a database file in a temporary directory.
//! - `postgres`: a schema of its own (dropped at the end) in the database that
//!   `PALMLINK_TEST_DATABASE_URL` names (`postgres://USER@HOST:PORT/DB`); each test passes
//!   with a line saying it was skipped when the variable is not set.
//!
//! Cases of one store (`async fn(&dyn Store)`):
//!
//! - `accounts`: tenants and OAuth clients with their two secret slots.
//! - `devices`: one-time pairing, hardware ids, credentials, revocation.
//! - `challenges`: filters, expiry, completion once, revocation failing pending ones.
//! - `users`: users, palms and enrollment commits, erasure.
//! - `records`: the outbox, idempotency keys and matching settings.
//! - `templates`: keys, sealed templates, the template log, deleting a tenant.
//! - `retention`: finished work purged past its tenant's period, the rest kept.
//! - `webhooks`: subscriptions, fan-out once, leases, attempts, requeue.
//! - `operators`: the console's operators, sessions and sign-in gate.
//!
//! Cases of two stores on one database (`async fn(Arc<dyn Store>, Arc<dyn Store>)`; on
//! PostgreSQL two pools, as two nodes have):
//!
//! - `concurrency`: the "Concurrency" contracts with many tasks at once, and signals.
//! - `retention`: purges at once on both stores delete and count each row once.
//!
//! What only one backend does is in `particular` (leases released at start on SQLite and
//! left to other nodes on PostgreSQL, migrations of nodes starting together, signals per
//! schema and after the listener reconnects, URLs); the SQLite backend's query plans and
//! upgrades are tested in its module.

mod accounts;
mod audit;
mod challenges;
mod concurrency;
mod devices;
mod operators;
mod particular;
mod records;
mod retention;
mod support;
mod templates;
mod users;
mod webhooks;

/// One test per case and backend.
macro_rules! suite {
    (
        one: [$($module:ident :: $case:ident),* $(,)?],
        two: [$($module2:ident :: $case2:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = crate::support::Sqlite::new().await;
                    crate::$module::$case(backend.store.as_ref()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case2() {
                    let backend = crate::support::Sqlite::new().await;
                    let other = backend.another().await;
                    crate::$module2::$case2(backend.store.clone(), other).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(backend) = crate::support::Postgres::new().await else {
                        return;
                    };
                    crate::$module::$case(backend.store.as_ref()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case2() {
                    let Some(backend) = crate::support::Postgres::new().await else {
                        return;
                    };
                    let other = backend.another().await;
                    crate::$module2::$case2(backend.store.clone(), other).await;
                }
            )*
        }
    };
}

suite! {
    one: [
        accounts::tenants_are_listed_and_found,
        accounts::client_secrets_rotate_through_two_slots,
        audit::each_tenant_has_one_chain_with_filters_and_pages,
        audit::each_audited_change_writes_its_entry_and_a_refused_one_none,
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
        retention::old_finished_work_goes_and_the_rest_stays,
        templates::keys_are_set_once,
        templates::the_log_orders_enrollments_and_erasures,
        templates::sealed_templates_are_read_by_feature_and_by_page,
        templates::deleting_a_tenant_leaves_none_of_its_rows,
        templates::an_import_batch_commits_whole_or_not_at_all,
        webhooks::subscriptions_are_unique_per_tenant,
        webhooks::fan_out_delivers_each_event_once_to_whoever_wanted_it,
        webhooks::a_leased_delivery_is_not_claimed_twice,
        webhooks::an_attempt_recorded_twice_counts_once,
        webhooks::failed_deliveries_are_requeued,
        operators::operator_names_are_unique,
        operators::sessions_expire_and_end,
        operators::the_sign_in_gate_counts_a_window_per_name,
    ],
    two: [
        audit::concurrent_appends_keep_one_chain_per_tenant,
        audit::entries_of_racing_changes_are_chained_once,
        concurrency::a_challenge_completes_once_among_many_captures,
        concurrency::one_hardware_id_pairs_one_device,
        concurrency::one_idempotency_key_starts_one_request,
        concurrency::one_user_per_external_id,
        concurrency::workers_fan_each_event_out_once,
        concurrency::claimers_lease_disjoint_deliveries,
        concurrency::an_erasure_and_an_enrollment_at_once_leave_no_orphan,
        concurrency::concurrent_writers_draw_the_log_without_gaps,
        concurrency::signals_reach_every_store_of_the_database,
        concurrency::a_sign_in_gate_lets_its_limit_through_among_many,
        retention::purges_at_once_delete_each_row_once,
    ],
}
