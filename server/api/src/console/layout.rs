//! The page shell and navigation, error pages, the answers of change requests, and the
//! headers every console response carries.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use palmlink_domain::{rfc3339, DomainError, OperatorSession};
use palmlink_store::Tenant;

use crate::error::ApiError;

/// The content security policy of every console response: nothing from elsewhere, no
/// inline script or style, no framing, forms only to the console itself.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Middleware: the security headers of every console response.
pub(super) async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The tabs of a tenant's pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Tab {
    /// OAuth clients.
    Clients,
    /// Scanners.
    Devices,
    /// Live challenges.
    Challenges,
    /// Enrolled users.
    Users,
    /// Webhook subscriptions.
    Webhooks,
    /// Matching settings.
    Settings,
    /// The tenant's audit chain.
    Audit,
}

impl Tab {
    const ALL: [Tab; 7] = [
        Tab::Clients,
        Tab::Devices,
        Tab::Challenges,
        Tab::Users,
        Tab::Webhooks,
        Tab::Settings,
        Tab::Audit,
    ];

    fn path(self) -> &'static str {
        match self {
            Tab::Clients => "clients",
            Tab::Devices => "devices",
            Tab::Challenges => "challenges",
            Tab::Users => "users",
            Tab::Webhooks => "webhooks",
            Tab::Settings => "settings",
            Tab::Audit => "audit",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Tab::Clients => "OAuth clients",
            Tab::Devices => "Devices",
            Tab::Challenges => "Challenges",
            Tab::Users => "Users",
            Tab::Webhooks => "Webhooks",
            Tab::Settings => "Matching",
            Tab::Audit => "Audit log",
        }
    }
}

/// The path of a tenant's page, e.g. `/console/tenants/ID/devices`.
pub(super) fn tenant_path(tenant: &Tenant, rest: &str) -> String {
    format!("/console/tenants/{}/{rest}", tenant.id)
}

/// A page of a signed-in operator.
pub(super) struct Page<'a> {
    /// The session (its operator's name, its CSRF token).
    pub session: &'a OperatorSession,
    /// The `<title>` and heading.
    pub title: &'a str,
    /// The tenant and tab shown, if any.
    pub tenant: Option<(&'a Tenant, Tab)>,
    /// Where a reload should go, when this page answers a POST (a secret shown once).
    pub replace_url: Option<String>,
}

impl Page<'_> {
    /// The whole document around `body`.
    pub(super) fn render(&self, body: Markup) -> Markup {
        let nav = self.tenant.map(|(tenant, here)| {
            html! {
                nav.tabs aria-label="Tenant" {
                    @for tab in Tab::ALL {
                        a class=[(tab == here).then_some("here")]
                            href=(tenant_path(tenant, tab.path())) { (tab.label()) }
                    }
                }
            }
        });
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · PalmLink console" }
                    link rel="stylesheet" href="/console/assets/console.css";
                }
                body data-replace-url=[self.replace_url.as_deref()] {
                    header {
                        a.brand href="/console/tenants" { "PalmLink console" }
                        @if let Some((tenant, _)) = self.tenant {
                            a href="/console/tenants" { "Tenants" }
                            span { "›" }
                            span #tenant-name { (tenant.name) }
                        }
                        a #audit-link href="/console/audit" { "Audit log" }
                        form method="post" action="/console/sign-out" {
                            span.who { "Signed in as " (self.session.operator.name) " " }
                            (csrf(self.session))
                            button.quiet type="submit" #sign-out { "Sign out" }
                        }
                    }
                    @if let Some(nav) = nav { (nav) }
                    main {
                        h1 { (self.title) }
                        (body)
                    }
                    script src="/console/assets/console.js" {}
                }
            }
        }
    }
}

/// The hidden field every change form carries.
pub(super) fn csrf(session: &OperatorSession) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.session.csrf_token); }
}

/// The answer of a POST that shows a secret (or a pairing code) once: never stored by the
/// browser (its [`Page::replace_url`] makes a reload ask for the page, not the form again).
pub(super) fn shown_once(markup: Markup) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], markup).into_response()
}

/// 303 to a page (the answer of a change request).
pub(super) fn see_other(path: &str) -> Response {
    match HeaderValue::from_str(path) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => ApiError::internal("redirect target is not a header value").into_response(),
    }
}

/// A time as the console shows it.
pub(super) fn when(micros: i64) -> String {
    rfc3339(micros)
        .get(..19)
        .map(|s| s.replace('T', " "))
        .unwrap_or_default()
}

/// A failure of a console request, answered with an HTML page and the contract's status.
#[derive(Debug)]
pub(crate) struct ConsoleError(pub ApiError);

impl From<DomainError> for ConsoleError {
    fn from(err: DomainError) -> ConsoleError {
        ConsoleError(err.into())
    }
}

impl From<ApiError> for ConsoleError {
    fn from(err: ApiError) -> ConsoleError {
        ConsoleError(err)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let err = self.0;
        let status = err.status();
        let message = match &err {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let fields = match &err {
            ApiError::Validation(fields) => fields.clone(),
            _ => Vec::new(),
        };
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (status.as_u16()) " · PalmLink console" }
                    link rel="stylesheet" href="/console/assets/console.css";
                }
                body {
                    header { a.brand href="/console/tenants" { "PalmLink console" } }
                    main {
                        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                        div.notice.error #error data-code=(err.code()) {
                            p { (message) }
                            @if !fields.is_empty() {
                                ul {
                                    @for f in &fields { li { code { (f.field) } ": " (f.message) } }
                                }
                            }
                        }
                        p { a href="/console/tenants" { "Back to the tenants" } }
                    }
                }
            }
        };
        let mut response = (status, page).into_response();
        if let ApiError::RateLimited(secs) = err {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Result of a console handler.
pub(super) type ConsoleResult<T> = Result<T, ConsoleError>;

/// The page of a list a query asks for (`offset`, `limit`; 100 rows by default).
pub(super) fn page_of(
    query: &std::collections::HashMap<String, String>,
) -> ConsoleResult<palmlink_domain::Page> {
    Ok(palmlink_domain::Page::parse(
        query.get("offset").map(String::as_str),
        Some(query.get("limit").map_or("100", String::as_str)),
    )?)
}

/// Links to the previous and next pages of a list at `path` (which may carry a query).
pub(super) fn pager<T>(path: &str, listing: &palmlink_domain::Listing<T>) -> Markup {
    let page = listing.page;
    let shown = i64::try_from(listing.rows.len()).unwrap_or(0);
    let (path, sep) = match path.contains('?') {
        true => (path, '&'),
        false => (path, '?'),
    };
    html! {
        p.muted.pager {
            (listing.total) " in all"
            @if page.offset > 0 {
                " · " a.previous href=(format!("{path}{sep}offset={}&limit={}", (page.offset - page.limit).max(0), page.limit)) { "previous" }
            }
            @if page.offset + shown < listing.total {
                " · " a.next href=(format!("{path}{sep}offset={}&limit={}", page.offset + page.limit, page.limit)) { "next" }
            }
        }
    }
}
