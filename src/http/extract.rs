//! Extractors: who the client is (address behind trusted proxies, User-Agent, device
//! cookie), the signed-in session, and JSON bodies whose every failure is a clear 4xx.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum_extra::extract::CookieJar;
use ipnet::IpNet;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::{AppState, CONSOLE_COOKIE, DEVICE_COOKIE, SESSION_COOKIE};
use crate::domain::operator::{Operator, Power};
use crate::service::Client;
use crate::store::SessionAuth;

/// The client's address. A peer's `X-Forwarded-For` is believed only when the peer is a
/// configured trusted proxy; then the rightmost address that is not itself a trusted proxy
/// is the client. From anyone else the header is ignored, so it cannot be spoofed.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Result<IpAddr, ApiError> {
    let peer = peer.to_canonical();
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return Ok(peer);
    }
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_forwarded_for",
            "The X-Forwarded-For header from the proxy is malformed.",
        )
    };
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for part in value.to_str().map_err(|_| bad())?.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            hops.push(part.parse::<IpAddr>().map_err(|_| bad())?.to_canonical());
            if hops.len() > 32 {
                return Err(bad());
            }
        }
    }
    Ok(hops
        .iter()
        .rev()
        .find(|ip| !trusted.iter().any(|n| n.contains(*ip)))
        .or(hops.first())
        .copied()
        .unwrap_or(peer))
}

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        let ip = client_ip(peer, &parts.headers, &state.trusted_proxies)?;
        // A User-Agent that is not valid text is treated as absent.
        let ua = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let jar = CookieJar::from_headers(&parts.headers);
        let device_token = jar
            .get(DEVICE_COOKIE)
            .map(|c| c.value().to_owned())
            .filter(|v| v.len() <= 128);
        Ok(Client::new(ip, ua, device_token, &state.geo))
    }
}

/// The signed-in session, or a 401 with the reason.
pub struct Authed(pub SessionAuth);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let token = jar
            .get(SESSION_COOKIE)
            .ok_or_else(ApiError::unauthenticated)?;
        if token.value().len() > 128 {
            return Err(ApiError::unauthenticated());
        }
        let auth = state.sessions.authenticate(token.value()).await?;
        // After an approved recovery, a new second factor comes before anything else.
        if auth.account.recovery_required
            && !crate::domain::support::allowed_during_recovery(
                parts.method.as_str(),
                parts.uri.path(),
            )
        {
            return Err(crate::service::support::recovery_incomplete().into());
        }
        Ok(Self(auth))
    }
}

/// The account a support route acts for: the owner's session, or else support access
/// opened with a mailed code (which works on a frozen account and for an owner whose
/// password an attacker changed). Never more than the support routes.
pub struct SupportAuthed(pub crate::store::Account);

impl FromRequestParts<AppState> for SupportAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let value = |name| {
            jar.get(name)
                .map(|c| c.value().to_owned())
                .filter(|v| !v.is_empty() && v.len() <= 128)
        };
        if let Some(token) = value(SESSION_COOKIE) {
            if let Ok(auth) = state.sessions.authenticate(&token).await {
                return Ok(Self(auth.account));
            }
        }
        let token = value(crate::http::SUPPORT_COOKIE).ok_or_else(ApiError::unauthenticated)?;
        Ok(Self(state.support.support_account(&token).await?))
    }
}

/// The operator behind the console cookie (`rampart_console`), or a 401. The owner's
/// session cookie is never looked at here, nor this one by [`Authed`].
pub struct ConsoleAuthed {
    pub operator: Operator,
    /// The console session's token (to sign out).
    pub token: String,
}

impl FromRequestParts<AppState> for ConsoleAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let token = jar
            .get(CONSOLE_COOKIE)
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .ok_or_else(ApiError::unauthenticated)?;
        let operator = state.operators.authenticate(&token).await?;
        Ok(Self { operator, token })
    }
}

/// Refuses with 403 `role_missing` unless the operator's role has `power`.
pub fn require(operator: &Operator, power: Power) -> Result<(), ApiError> {
    crate::service::console::require(operator, power).map_err(ApiError::from)
}

/// `axum::Json` with every rejection turned into the API's error shape. Every request body
/// of the API is a JSON object: anything else (an array, which serde would otherwise map
/// onto a struct's fields in order) is refused as `invalid_body`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(rejection) => return Err(json_rejection(rejection)),
        };
        let invalid = |why: String| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("The request body does not have the expected fields: {why}"),
            )
        };
        if !value.is_object() {
            return Err(invalid("it must be a JSON object".to_owned()));
        }
        serde_json::from_value(value)
            .map(Self)
            .map_err(|e| invalid(e.to_string()))
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!(
                "The request body does not have the expected fields: {}",
                e.body_text()
            ),
        ),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "The request body is not valid JSON.",
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as JSON with Content-Type: application/json.",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
        other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
    }
}

pub fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "The request body is larger than this server accepts.",
    )
}

/// The TCP peer's address, when the server was started with connect info.
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// The platform behind `Authorization: Bearer <platform token>`; 401 without a live token.
pub struct PlatformAuthed(pub crate::store::withdrawals::PlatformToken);

impl FromRequestParts<AppState> for PlatformAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        Ok(Self(state.withdrawals.authenticate_platform(bearer).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_str(xff).expect("ascii"),
        );
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpNet = "10.0.0.0/8".parse().expect("cidr");
        let peer: IpAddr = "10.1.2.3".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.7".parse().expect("ip");
        let h = headers("1.2.3.4, 203.0.113.5, 10.9.9.9");
        // From a stranger, the header is ignored.
        assert_eq!(client_ip(stranger, &h, &[proxy]).expect("ok"), stranger);
        // From the proxy: rightmost untrusted hop (the client can prepend lies, not append).
        assert_eq!(
            client_ip(peer, &h, &[proxy]).expect("ok").to_string(),
            "203.0.113.5"
        );
        assert_eq!(
            client_ip(peer, &headers("garbage"), &[proxy])
                .expect_err("garbage refused")
                .code,
            "bad_forwarded_for"
        );
        assert_eq!(
            client_ip(peer, &HeaderMap::new(), &[proxy]).expect("ok"),
            peer
        );
    }
}
