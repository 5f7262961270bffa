//! API keys over HTTP: management under `/api/v1/me/api-keys`, and the gateway hook
//! `/authz` that a reverse proxy calls for every request (nginx `auth_request`: the original
//! request in `X-Original-Method` / `X-Original-URI`; Envoy's HTTP external authorization:
//! `/authz/<original path>` with the original headers and, optionally, the body).

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::domain::api_key::Refusal;
use crate::http::error::{ApiError, ErrorBody, ErrorDetail};
use crate::http::extract::{client_ip, ApiJson, Authed, Peer};
use crate::http::{AppState, SESSION_COOKIE};
use crate::service::api_keys::{Access, AuthzError, GatewayRequest, Identity, NewKey};
use crate::service::Client;
use crate::store::ApiKeyRecord;

#[derive(OpenApi)]
#[openapi(
    paths(create_key, list_keys, update_key, delete_key, delete_all_keys, authz),
    components(schemas(
        CreateKeyRequest,
        CreatedKey,
        KeyView,
        KeysResponse,
        UpdateKeyRequest,
        Deleted
    ))
)]
pub struct KeysDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/me/api-keys",
            get(list_keys).post(create_key).delete(delete_all_keys),
        )
        .route(
            "/api/v1/me/api-keys/{api_key}",
            delete(delete_key).patch(update_key),
        )
        .route("/authz", any(authz))
        .route("/authz/{*path}", any(authz_envoy))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// Up to 64 characters (longer labels are cut); at least one that is not a space or a
    /// control character.
    #[schema(
        pattern = "[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        example = "trading bot"
    )]
    label: String,
    /// `hmac` (Rampart generates the secret), `ed25519` or `rsa` (send `public_key`).
    #[serde(rename = "type")]
    #[schema(pattern = "^(hmac|ed25519|rsa)$", example = "hmac")]
    key_type: String,
    /// PEM (`-----BEGIN PUBLIC KEY-----`) for Ed25519 and RSA 2048/4096 keys.
    public_key: Option<String>,
    /// At least one of `read`, `spot_trade`, `margin`, `futures`, `withdraw`,
    /// `internal_transfer`.
    #[schema(value_type = Vec<PermissionName>, min_items = 1)]
    permissions: Vec<String>,
    /// Up to 30 addresses or CIDRs; required for withdraw and trading permissions.
    #[serde(default)]
    #[schema(max_items = 30)]
    ip_allowlist: Vec<String>,
}

/// One permission of an API key.
#[derive(ToSchema)]
#[schema(as = PermissionName)]
#[allow(dead_code)]
#[allow(non_camel_case_types)]
pub enum PermissionName {
    read,
    spot_trade,
    margin,
    futures,
    withdraw,
    internal_transfer,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    api_key: String,
    label: String,
    #[serde(rename = "type")]
    key_type: String,
    permissions: Vec<String>,
    ip_allowlist: Vec<String>,
    created_at: i64,
    created_ip: String,
    created_device: String,
    /// Created from a device that is not one of the owner's usual ones.
    created_from_unusual_device: bool,
    last_used_at: Option<i64>,
    last_used_ip: Option<String>,
    expires_at: Option<i64>,
}

impl From<ApiKeyRecord> for KeyView {
    fn from(k: ApiKeyRecord) -> Self {
        Self {
            permissions: k
                .access
                .permissions_csv()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            ip_allowlist: k
                .access
                .allowlist_csv()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            api_key: k.api_key,
            label: k.label,
            key_type: k
                .key_type
                .map_or("unknown", crate::domain::api_key::KeyType::as_str)
                .to_owned(),
            created_at: k.created_at,
            created_ip: k.created_ip,
            created_device: k.created_device,
            created_from_unusual_device: k.created_unusual,
            last_used_at: k.last_used_at,
            last_used_ip: k.last_used_ip,
            expires_at: k.expires_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    api_key: String,
    /// HMAC keys only, shown this once: `rmps_` + 48 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    key: KeyView,
}

/// Creates an API key (step-up required).
#[utoipa::path(post, path = "/api/v1/me/api-keys", request_body = CreateKeyRequest, responses(
    (status = 201, body = CreatedKey),
    (status = 403, body = ErrorBody, description = "step_up_required"),
    (status = 422, body = ErrorBody, description = "invalid_permission, allowlist_required, invalid_allowlist, invalid_public_key, invalid_key_type"),
))]
async fn create_key(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let new = NewKey {
        label: req.label,
        key_type: req.key_type,
        public_key: req.public_key,
        permissions: req.permissions,
        ip_allowlist: req.ip_allowlist,
    };
    let (record, secret) = s.api_keys.create_api_key(&auth, new, &client).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            api_key: record.api_key.clone(),
            secret,
            key: record.into(),
        }),
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct KeysResponse {
    api_keys: Vec<KeyView>,
}

/// Every live key of the account.
#[utoipa::path(get, path = "/api/v1/me/api-keys", responses((status = 200, body = KeysResponse)))]
async fn list_keys(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<KeysResponse>, ApiError> {
    let keys = s.api_keys.list_api_keys(&auth).await?;
    Ok(Json(KeysResponse {
        api_keys: keys.into_iter().map(KeyView::from).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    /// The new permissions (at least one); absent: unchanged.
    #[schema(value_type = Option<Vec<PermissionName>>, min_items = 1)]
    permissions: Option<Vec<String>>,
    /// The new allowlist, up to 30 addresses or CIDRs; absent: unchanged.
    #[schema(max_items = 30)]
    ip_allowlist: Option<Vec<String>>,
}

/// Edits permissions and allowlist; widening needs step-up and is announced by mail.
#[utoipa::path(patch, path = "/api/v1/me/api-keys/{api_key}", request_body = UpdateKeyRequest, params(("api_key" = String, Path, description = "The API key itself (its public part).")), responses(
    (status = 200, body = KeyView),
    (status = 403, body = ErrorBody, description = "step_up_required (adding permissions or addresses)"),
    (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody, description = "invalid_permission, allowlist_required, invalid_allowlist"),
))]
async fn update_key(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<UpdateKeyRequest>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(
        s.api_keys
            .update_api_key(&auth, &key, req.permissions, req.ip_allowlist, &client)
            .await?
            .into(),
    ))
}

/// Deletes one key (step-up required); it is refused on the very next request.
#[utoipa::path(delete, path = "/api/v1/me/api-keys/{api_key}", params(("api_key" = String, Path, description = "The API key itself (its public part).")), responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody, description = "step_up_required"), (status = 404, body = ErrorBody)))]
async fn delete_key(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.api_keys.delete_api_key(&auth, &key, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    deleted: u64,
}

/// Deletes every key of the account at once (step-up required).
#[utoipa::path(delete, path = "/api/v1/me/api-keys", responses((status = 200, body = Deleted), (status = 403, body = ErrorBody, description = "step_up_required")))]
async fn delete_all_keys(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
) -> Result<Json<Deleted>, ApiError> {
    Ok(Json(Deleted {
        deleted: s.api_keys.delete_all_api_keys(&auth, &client).await?,
    }))
}

// ---- the gateway hook ------------------------------------------------------------------

/// How a refusal is written, by who asked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// nginx's `auth_request`, which only understands 2xx, 401 and 403.
    AuthRequest,
    /// Envoy: Rampart's `{"error": …}` with its own statuses, passed to the client.
    Rampart,
    /// A proxy that passes Rampart's answer on to exchange clients (nginx with njs) and
    /// asked with `X-Rampart-Refusal-Shape: exchange`: the exchange's `{"code","msg"}`
    /// and statuses, exactly as the gateway listener answers.
    Exchange,
}

fn refusal(r: &Refusal, shape: Shape) -> Response {
    if shape == Shape::Exchange {
        return crate::http::gateway::refused(r);
    }
    let nginx = shape == Shape::AuthRequest;
    let mut status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    // nginx's auth_request treats anything but 2xx/401/403 as its own failure (a 500):
    // malformed requests are refused as 401 there and unknown routes as 403, with the
    // same code.
    if nginx && status == StatusCode::BAD_REQUEST {
        status = StatusCode::UNAUTHORIZED;
    }
    if nginx && status == StatusCode::NOT_FOUND {
        status = StatusCode::FORBIDDEN;
    }
    let body = ErrorBody {
        error: ErrorDetail {
            code: r.code().to_owned(),
            message: r.message(),
        },
    };
    let mut resp = (status, Json(body)).into_response();
    // For proxies that replace the body of a refused auth subrequest (nginx).
    resp.headers_mut().insert(
        HeaderName::from_static("x-rampart-error"),
        HeaderValue::from_static(r.code()),
    );
    if let Refusal::WithdrawalsLocked { until } = r {
        resp.headers_mut().insert(
            HeaderName::from_static(LOCKED_UNTIL),
            HeaderValue::from(*until),
        );
    }
    resp
}

/// Sent with every decision while a withdrawal lock is in force: when it ends (Unix ms), so
/// the platform's own backend can honour it too.
const LOCKED_UNTIL: &str = "x-rampart-withdrawals-locked-until";

fn allowed(id: Identity) -> Response {
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-rampart-uid", id.uid),
        ("x-rampart-key", id.api_key),
        ("x-rampart-permissions", id.permissions),
        ("x-rampart-auth", id.via.to_owned()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    if let Some(until) = id.withdrawals_locked_until {
        h.insert(
            HeaderName::from_static(LOCKED_UNTIL),
            HeaderValue::from(until),
        );
    }
    resp
}

/// A public route: allowed, with no identity (`X-Rampart-Auth: public`).
fn public() -> Response {
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(
        HeaderName::from_static("x-rampart-auth"),
        HeaderValue::from_static("public"),
    );
    resp
}

/// The caller's address: the proxy's `X-Forwarded-For` when the proxy is trusted.
fn source_ip(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<IpAddr, ApiError> {
    let peer = peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| p.ip());
    client_ip(peer, headers, &state.trusted_proxies)
}

/// The request the proxy asks about.
struct Original<'a> {
    shape: Shape,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    body: &'a [u8],
}

async fn decide(
    state: &AppState,
    jar: &CookieJar,
    headers: &HeaderMap,
    ip: IpAddr,
    original: Original<'_>,
) -> Response {
    let api_key = headers
        .get("x-mbx-apikey")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let Original {
        shape,
        method,
        path,
        query,
        body,
    } = original;
    let decision = match (api_key, jar.get(SESSION_COOKIE)) {
        (None, Some(cookie)) => state
            .gateway
            .authorize_session(cookie.value(), method, path)
            .await
            .map(Access::Key),
        _ => {
            let Ok(body) = std::str::from_utf8(body) else {
                return refusal(&Refusal::BadParameter("body", "is not valid UTF-8"), shape);
            };
            if let Some(r) = crate::http::gateway::ambiguous_headers(headers, !body.is_empty()) {
                return refusal(&r, shape);
            }
            let request = GatewayRequest {
                api_key,
                method,
                path,
                query,
                body,
                ip,
            };
            state.gateway.authorize(&request).await
        }
    };
    match decision {
        Ok(Access::Key(id)) => allowed(id),
        Ok(Access::Public) => public(),
        Err(AuthzError::Refused(r)) => {
            metrics::counter!("rampart_authz_refused_total", "code" => r.code()).increment(1);
            refusal(&r, shape)
        }
        Err(AuthzError::Failed(e)) => ApiError::from(e).into_response(),
    }
}

/// The gateway hook (nginx `auth_request` style). Answers 200 with `X-Rampart-Uid`,
/// `X-Rampart-Key`, `X-Rampart-Permissions` (none on a public route, `X-Rampart-Auth:
/// public`), or 400/401/403/404 with the reason. Any method:
/// the gateway may forward the original one.
#[utoipa::path(method(get, post, put, patch, delete, head, options, trace), path = "/authz", params(
    ("X-Original-Method" = Option<String>, Header, description = "the original request's method"),
    ("X-Original-URI" = Option<String>, Header, description = "the original path and query string"),
    ("X-MBX-APIKEY" = Option<String>, Header, description = "the API key"),
    ("X-Rampart-Refusal-Shape" = Option<String>, Header, description = "`exchange`: refusals in the exchange's {code, msg} shape and statuses, for proxies that pass them to clients (nginx with njs)"),
), responses(
    (status = 200, description = "allowed; identity in X-Rampart-* headers"),
    (status = 400, body = ErrorBody, description = "bad_parameter (a malformed signed parameter), bad_forwarded_for"),
    (status = 401, body = ErrorBody, description = "unknown_key, bad_signature, timestamp_outside_window, key_expired, account_frozen"),
    (status = 403, body = ErrorBody, description = "ip_not_allowed, permission_missing, withdrawals_locked, key_unusable; unknown_route when asked by nginx"),
    (status = 404, body = ErrorBody, description = "unknown_route: no rule of the route table covers this request (403 to nginx)"),
))]
async fn authz(
    State(state): State<AppState>,
    Peer(peer): Peer,
    jar: CookieJar,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = match source_ip(&state, peer, &headers) {
        Ok(ip) => ip,
        Err(e) => return e.into_response(),
    };
    let original_method = headers
        .get("x-original-method")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(method.as_str())
        .to_owned();
    // The original URI exactly as the client sent it (nginx's `$request_uri`), split by
    // hand: a URI parser would refuse or rewrite exactly the odd paths that must be seen
    // and refused as they are.
    let (path, query) = match headers.get("x-original-uri").map(|v| v.to_str()) {
        Some(Ok(raw)) => raw.split_once('?').unwrap_or((raw, "")),
        Some(Err(_)) => ("\u{0}", ""),
        None => ("/", uri.query().unwrap_or("")),
    };
    let exchange_shape = headers
        .get("x-rampart-refusal-shape")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"exchange"));
    let original = Original {
        shape: if exchange_shape {
            Shape::Exchange
        } else {
            Shape::AuthRequest
        },
        method: &original_method,
        path,
        query,
        body: &body,
    };
    decide(&state, &jar, &headers, ip, original).await
}

/// Envoy's HTTP external authorization: the check request is the original path under
/// `/authz/`, with the original method, headers and (when configured) body.
#[allow(clippy::too_many_arguments)] // an axum handler: one argument per extractor
async fn authz_envoy(
    State(state): State<AppState>,
    Peer(peer): Peer,
    jar: CookieJar,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = match source_ip(&state, peer, &headers) {
        Ok(ip) => ip,
        Err(e) => return e.into_response(),
    };
    // The raw path as sent, not the router's percent-decoded capture: what is checked is
    // what the upstream will receive.
    let path = uri.path().strip_prefix("/authz").unwrap_or("/");
    let original = Original {
        shape: Shape::Rampart,
        method: method.as_str(),
        path,
        query: uri.query().unwrap_or(""),
        body: &body,
    };
    decide(&state, &jar, &headers, ip, original).await
}
