//! The one error type of the HTTP edge: a status, a stable machine-readable code and a
//! sentence for people, rendered as `{"error": {"code", "message"}}`. Internal causes are
//! logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::sessions::retry_after_secs;
use crate::service::ServiceError;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<i64>,
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_email`, `weak_password`, `invalid_credentials`, …
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Sign in first.",
        )
    }
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is nothing at this address.",
        )
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side; nothing was changed. Please try again.",
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use ServiceError as E;
        match e {
            E::Invalid(i) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, i.code, i.message),
            E::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "The email or password is wrong.",
            ),
            E::EmailNotConfirmed => Self::new(
                StatusCode::FORBIDDEN,
                "email_not_confirmed",
                "Confirm your email address first: enter the code we mailed you.",
            ),
            E::TooManyAttempts { retry_after_ms } => {
                let secs = retry_after_secs(retry_after_ms);
                let mut err = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    if retry_after_ms > 0 {
                        format!(
                            "Too many attempts. Try again in {secs} second{}.",
                            if secs == 1 { "" } else { "s" }
                        )
                    } else {
                        "Too many wrong codes. Ask for a new code.".to_owned()
                    },
                );
                if retry_after_ms > 0 {
                    err.retry_after_secs = Some(secs);
                }
                err
            }
            E::InvalidCode { attempts_left } => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_code",
                if attempts_left > 0 {
                    format!(
                        "That code is not right. {attempts_left} {} left.",
                        if attempts_left == 1 { "try" } else { "tries" }
                    )
                } else {
                    "That code is not right.".to_owned()
                },
            ),
            E::CodeExpired => Self::new(
                StatusCode::BAD_REQUEST,
                "code_expired",
                "That code has expired. Ask for a new code.",
            ),
            E::AccountFrozen => Self::new(
                StatusCode::UNAUTHORIZED,
                "account_frozen",
                "This account is frozen for its protection. Contact support to restore access.",
            ),
            E::Unauthenticated => Self::unauthenticated(),
            E::StepUpRequired { action, proof } => Self::new(
                StatusCode::FORBIDDEN,
                "step_up_required",
                match proof {
                    crate::domain::step_up::Proof::SecondFactor => format!(
                        "Confirm it's you first: prove your second factor (POST /api/v1/me/step-up), then retry. ({action})"
                    ),
                    crate::domain::step_up::Proof::PasswordAndMailedCode => format!(
                        "Confirm it's you first: ask for a code by mail (POST /api/v1/me/step-up/email-code), \
                         send your password and that code (POST /api/v1/me/step-up), then retry. ({action})"
                    ),
                },
            ),
            E::ChallengeExpired => Self::new(
                StatusCode::UNAUTHORIZED,
                "challenge_expired",
                "This sign-in attempt has expired or was already used. Sign in again.",
            ),
            E::NotFound(code, message) => Self::new(StatusCode::NOT_FOUND, code, message),
            E::Conflict(code, message) => Self::new(StatusCode::CONFLICT, code, message),
            E::Forbidden(code, message) => Self::new(StatusCode::FORBIDDEN, code, message),
            E::PasskeyFailed(why) => {
                tracing::info!("passkey ceremony refused: {why}");
                Self::new(StatusCode::UNAUTHORIZED, "passkey_failed", "The passkey could not be verified. Try again, or use another method.")
            }
            E::SessionExpired => Self::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "Your session has expired. Sign in again.",
            ),
            E::Store(StoreError::Database(ref db)) if matches!(db, sqlx::Error::PoolTimedOut) => {
                tracing::error!("database pool exhausted: {e}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The service is busy. Try again shortly.",
                )
            }
            E::Store(e) => {
                tracing::error!("storage error: {e:#}");
                Self::internal()
            }
            E::Internal(e) => {
                tracing::error!("internal error: {e:#}");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
