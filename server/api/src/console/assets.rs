//! The stylesheet and the script, compiled into the binary.

use axum::http::header;
use axum::response::IntoResponse;

/// The console's stylesheet.
const CSS: &str = include_str!("assets/console.css");
/// The console's one script.
const JS: &str = include_str!("assets/console.js");

/// `GET /console/assets/console.css`.
pub(super) async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
}

/// `GET /console/assets/console.js`.
pub(super) async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
}
