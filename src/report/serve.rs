//! `turnbench report --serve`: the report over HTTP, read-only. The input is read on
//! every request, so a ConfigMap updated under a running pod shows at the next load.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub fn router(input: PathBuf) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/results.json", get(results))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Arc::new(input))
}

fn unavailable(e: String) -> Response {
    tracing::warn!("cannot serve the report: {e}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("report not available: {e}\n"),
    )
        .into_response()
}

async fn page(State(input): State<Arc<PathBuf>>) -> Response {
    match super::render_file(&input) {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn results(State(input): State<Arc<PathBuf>>) -> Response {
    match crate::state::results::Saved::load(&input) {
        Ok(saved) => {
            let json = super::RunReport::from_saved(saved)
                .results_json()
                .to_string();
            ([(header::CONTENT_TYPE, "application/json")], json).into_response()
        }
        Err(e) => unavailable(e),
    }
}
