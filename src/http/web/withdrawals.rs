//! The Security Center's withdrawal pages and the one-click cancel link of a held
//! withdrawal.

use axum::Router;

use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
