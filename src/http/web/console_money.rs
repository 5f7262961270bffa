//! The console's "following the money": internal transfers out of an account, several
//! hops deep, and freezing the receiving accounts with a reason, each opening a case.

use axum::Router;

use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
