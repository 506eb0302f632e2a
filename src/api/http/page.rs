//! `/`: a page to try the service in a browser (plain HTML and JavaScript, no build step).

use axum::response::Html;

/// The page, compiled into the binary.
const PAGE: &str = include_str!("page.html");

/// `GET /`.
pub async fn index() -> Html<&'static str> {
    Html(PAGE)
}
