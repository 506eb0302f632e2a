//! `/`: a page to try the service in a browser (plain HTML and JavaScript, no build step).

use axum::response::Html;

/// The page, compiled into the binary.
const PAGE: &str = include_str!("page.html");

/// `GET /`.
#[utoipa::path(get, path = "/", tag = "pages",
    responses((status = 200, description = "A page to watch a task and chat about an item", content_type = "text/html", body = String)))]
pub async fn index() -> Html<&'static str> {
    Html(PAGE)
}
