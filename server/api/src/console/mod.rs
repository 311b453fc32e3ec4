//! The operator console: server-rendered pages at `/console`, served from the binary.
//!
//! Operators sign in with a name and password (`palmlink operator create`) and act across
//! tenants. Every page calls the same domain functions as the API, as an operator of the
//! tenant it shows ([`palmlink_domain::Caller::operator`]); nothing here decides anything
//! the domain does not. Pages are [maud] templates, which escape every value they show; the
//! stylesheet and the one script are embedded ([`assets`]); the content security policy
//! allows nothing from elsewhere and no inline script.
//!
//! - `session`: the session cookie, the CSRF check on every change, sign-in and sign-out.
//! - `layout`: the page shell, navigation, errors, and the answers of change requests.
//! - `tenants`: tenants and OAuth clients (secrets shown once).
//! - `devices`: scanners, pairing codes, revocation.
//! - `challenges`: the live challenge list (a page and the JSON it polls).
//! - `users`: enrolled users and erasure behind a confirmation.
//! - `webhooks`: subscriptions, deliveries, retry, recover, test.
//! - `settings`: matching thresholds and policy beside the accuracy report's DET curve.
//! - `audit`: the audit log of every chain or one, filtered, with the chains' check.
//!
//! Every change is audited with the signed-in operator as its actor (`{"type":
//! "operator", "id": <operator id>}`), written by the domain in the change's transaction;
//! sign-ins go to the operators' own chain.

mod assets;
mod audit;
mod challenges;
mod devices;
mod layout;
mod session;
mod settings;
mod tenants;
mod users;
mod webhooks;

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// The console's routes (everything under `/console`).
pub(crate) fn router(state: AppState) -> Router<AppState> {
    let signed = Router::new()
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/tenants", get(tenants::list).post(tenants::create))
        .route("/console/tenants/{tenant}", get(tenants::show))
        .route(
            "/console/tenants/{tenant}/clients",
            get(tenants::clients).post(tenants::create_client),
        )
        .route(
            "/console/tenants/{tenant}/clients/{client}/rotate",
            post(tenants::rotate_client),
        )
        .route(
            "/console/tenants/{tenant}/clients/{client}/revoke-old-secret",
            post(tenants::revoke_old_secret),
        )
        .route(
            "/console/tenants/{tenant}/clients/{client}/delete",
            post(tenants::delete_client),
        )
        .route(
            "/console/tenants/{tenant}/devices",
            get(devices::list).post(devices::register),
        )
        .route(
            "/console/tenants/{tenant}/devices/{device}/pairing-code",
            post(devices::pairing_code),
        )
        .route(
            "/console/tenants/{tenant}/devices/{device}/revoke",
            post(devices::revoke),
        )
        .route(
            "/console/tenants/{tenant}/challenges",
            get(challenges::page),
        )
        .route(
            "/console/tenants/{tenant}/challenges.json",
            get(challenges::live),
        )
        .route("/console/tenants/{tenant}/users", get(users::list))
        .route(
            "/console/tenants/{tenant}/users/erase",
            get(users::confirm).post(users::erase),
        )
        .route(
            "/console/tenants/{tenant}/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/console/tenants/{tenant}/webhooks/{webhook}",
            get(webhooks::show),
        )
        .route(
            "/console/tenants/{tenant}/webhooks/{webhook}/test",
            post(webhooks::test),
        )
        .route(
            "/console/tenants/{tenant}/webhooks/{webhook}/recover",
            post(webhooks::recover),
        )
        .route(
            "/console/tenants/{tenant}/webhooks/{webhook}/enable",
            post(webhooks::enable),
        )
        .route(
            "/console/tenants/{tenant}/webhooks/{webhook}/delete",
            post(webhooks::delete),
        )
        .route(
            "/console/tenants/{tenant}/webhooks/{webhook}/deliveries/{delivery}/retry",
            post(webhooks::retry),
        )
        .route(
            "/console/tenants/{tenant}/settings",
            get(settings::show).post(settings::update),
        )
        .route("/console/tenants/{tenant}/audit", get(audit::tenant))
        .route("/console/audit", get(audit::across))
        .route_layer(from_fn_with_state(state.clone(), session::require_session));
    Router::new()
        .route("/console", get(session::entry))
        .route("/console/", get(session::entry))
        .route(
            "/console/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/console/assets/console.css", get(assets::css))
        .route("/console/assets/console.js", get(assets::js))
        .merge(signed)
        .layer(from_fn_with_state(state, layout::security_headers))
}
