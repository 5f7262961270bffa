//! stub

use axum::Router;
use utoipa::OpenApi;

use crate::http::AppState;

#[derive(OpenApi)]
#[openapi()]
pub struct PlatformDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
}
