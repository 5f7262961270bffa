//! The console API of "following the money": the transfer graph out of an account and
//! freezing the receiving accounts, each opening a linked case.

use axum::Router;
use utoipa::OpenApi;

use crate::http::AppState;

#[derive(OpenApi)]
#[openapi()]
pub struct ConsoleMoneyDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
}
