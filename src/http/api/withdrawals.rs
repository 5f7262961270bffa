//! stub

use axum::Router;
use utoipa::OpenApi;

use crate::http::AppState;

#[derive(OpenApi)]
#[openapi()]
pub struct WithdrawalsDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
}
