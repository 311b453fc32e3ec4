//! Console sessions: the cookie, sign-in and sign-out, and the middleware that admits a
//! request only with a live session and a change only with that session's CSRF token.
//!
//! The cookie is `HttpOnly`, `SameSite=Strict`, scoped to `/console`, expires with the
//! session, and is `Secure` when the request came over https (a TLS-terminating proxy
//! says so with `X-Forwarded-Proto: https` or `Forwarded: proto=https`). The console reads
//! no `Authorization` header, and the API reads no cookie: neither credential opens the
//! other side.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, DOCTYPE};
use palmlink_domain::{constant_time_eq, DomainError, OperatorSession, SECOND, SESSION_TTL};
use serde::Deserialize;

use super::layout::{see_other, ConsoleError, ConsoleResult};
use crate::error::ApiError;
use crate::state::AppState;

/// Name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "palmlink_console";
/// Largest change request body the CSRF check reads.
const FORM_LIMIT: usize = 64 * 1024;
/// Header a script may carry the CSRF token in instead of the form.
const CSRF_HEADER: &str = "x-csrf-token";

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

/// Whether the request came over https (as a TLS-terminating proxy reports it).
fn over_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ','])
                .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
        });
    forwarded_proto || forwarded
}

/// The `Set-Cookie` value of a session cookie (an empty value and `Max-Age=0` clear it).
fn cookie(value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/console; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("palmlink_console=; Max-Age=0"))
}

/// The signed-in operator of a request (put there by [`require_session`]).
pub(super) struct Signed(pub OperatorSession);

impl<S: Send + Sync> FromRequestParts<S> for Signed {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<OperatorSession>()
            .cloned()
            .map(Signed)
            .ok_or_else(|| ConsoleError(ApiError::Unauthorized("not signed in".to_owned())))
    }
}

/// The cookie value of the request's session (put there by [`require_session`]).
#[derive(Clone)]
struct SessionToken(String);

/// Middleware of every page behind the sign-in: a live session, and on every change
/// request that session's CSRF token (form field `csrf` or header `X-CSRF-Token`).
/// Without a session, a page redirects to the sign-in and anything else answers 401; a
/// change without the right token answers 403.
pub(super) async fn require_session(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let reading = req.method() == Method::GET || req.method() == Method::HEAD;
    let session = match session_cookie(req.headers()) {
        Some(token) => state
            .domain
            .sessions
            .authenticate(&token)
            .await
            .map(|s| (s, token)),
        None => Err(DomainError::Unauthenticated("not signed in".to_owned())),
    };
    let (session, token) = match session {
        Ok(found) => found,
        Err(DomainError::Unauthenticated(_)) if reading && !req.uri().path().ends_with(".json") => {
            return see_other("/console/sign-in");
        }
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let (mut parts, body) = req.into_parts();
    let body = if reading {
        body
    } else {
        let bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
            Ok(bytes) => bytes,
            Err(_) => return ConsoleError(ApiError::PayloadTooLarge).into_response(),
        };
        let presented = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                form_urlencoded::parse(&bytes)
                    .find(|(k, _)| k == "csrf")
                    .map(|(_, v)| v.into_owned())
            });
        let expected = session.session.csrf_token.as_bytes();
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), expected)) {
            return ConsoleError(ApiError::Forbidden(
                "the request lacks this session's CSRF token".to_owned(),
            ))
            .into_response();
        }
        Body::from(bytes)
    };
    parts.extensions.insert(session);
    parts.extensions.insert(SessionToken(token));
    next.run(Request::from_parts(parts, body)).await
}

/// `GET /console`: the tenants when signed in, else the sign-in.
pub(super) async fn entry(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session_cookie(&headers) {
        Some(token) if state.domain.sessions.authenticate(&token).await.is_ok() => {
            see_other("/console/tenants")
        }
        _ => see_other("/console/sign-in"),
    }
}

/// The sign-in page, with a message after a failed attempt.
fn sign_in_form(status: StatusCode, error: Option<&str>, name: &str) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · PalmLink console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                header { span.brand { "PalmLink console" } }
                main.signin {
                    h1 { "Operator sign-in" }
                    @if let Some(error) = error { div.notice.error #error { (error) } }
                    form.card method="post" action="/console/sign-in" {
                        label { "Name" input type="text" name="name" #name value=(name)
                            autocomplete="username" required autofocus; }
                        label { "Password" input type="password" name="password" #password
                            autocomplete="current-password" required; }
                        button type="submit" #sign-in { "Sign in" }
                    }
                    p.muted { "Operators are created with " code { "palmlink operator create" } "." }
                }
            }
        }
    };
    (status, page).into_response()
}

/// `GET /console/sign-in`.
pub(super) async fn sign_in_page() -> Response {
    sign_in_form(StatusCode::OK, None, "")
}

/// The sign-in form.
#[derive(Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// Whether a request's `Origin`, when it has one, is this host (a sign-in posted from
/// another site is refused: login CSRF).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority == host)
}

/// `POST /console/sign-in`: a session cookie and the tenants; 401 with the form again for a
/// wrong name or password; 429 once five sign-ins for the name failed within a minute.
pub(super) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> ConsoleResult<Response> {
    if !same_origin(&headers) {
        return Err(ConsoleError(ApiError::Forbidden(
            "sign-in from another origin".to_owned(),
        )));
    }
    match state
        .domain
        .sessions
        .sign_in(&form.name, &form.password)
        .await
    {
        Ok(signed) => {
            let mut response = see_other("/console/tenants");
            response.headers_mut().insert(
                header::SET_COOKIE,
                cookie(&signed.token, SESSION_TTL / SECOND, over_https(&headers)),
            );
            Ok(response)
        }
        Err(DomainError::Unauthenticated(message)) => Ok(sign_in_form(
            StatusCode::UNAUTHORIZED,
            Some(&message),
            &form.name,
        )),
        Err(DomainError::Throttled { retry_after_secs }) => {
            let mut response = sign_in_form(
                StatusCode::TOO_MANY_REQUESTS,
                Some(&format!(
                    "Too many failed sign-ins for this name: try again in {retry_after_secs} s."
                )),
                &form.name,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Ok(response)
        }
        Err(other) => Err(other.into()),
    }
}

/// `POST /console/sign-out`: ends the session and clears the cookie.
pub(super) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Request,
) -> ConsoleResult<Response> {
    if let Some(SessionToken(token)) = req.extensions().get::<SessionToken>() {
        state.domain.sessions.sign_out(token).await?;
    }
    let mut response = see_other("/console/sign-in");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0, over_https(&headers)));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; palmlink_console=pos_x; b=2"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("pos_x"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("palmlink_consoles=y"),
        );
        assert_eq!(session_cookie(&headers), None);
    }

    #[test]
    fn the_cookie_is_secure_only_over_https() {
        let plain = cookie("v", 60, false);
        let plain = plain.to_str().unwrap();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        let mut headers = HeaderMap::new();
        assert!(!over_https(&headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_https(&headers));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=1.2.3.4;proto=https"),
        );
        assert!(over_https(&headers));
        assert!(cookie("v", 60, true)
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
    }

    #[test]
    fn a_sign_in_from_another_origin_is_told_apart() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.test"),
        );
        assert!(!same_origin(&headers));
    }
}
