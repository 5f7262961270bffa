//! The HTTP edge: the JSON API under `/api/v1` (with its OpenAPI document), the
//! server-rendered pages, `/healthz`, `/metrics`, and the middleware every answer passes
//! through (security headers, body limit, panic catching, request metrics and logs).

pub mod api;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod web;

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use axum_extra::extract::cookie::{Cookie, SameSite};
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::service::Services;
use error::ApiError;

pub const SESSION_COOKIE: &str = "rampart_session";
pub const DEVICE_COOKIE: &str = "rampart_device";
pub const CSRF_COOKIE: &str = "rampart_csrf";
/// The pending sign-in challenge between the password page and the second-factor page.
pub const CHALLENGE_COOKIE: &str = "rampart_challenge";
/// The operator console's session: its own cookie, never the owner's.
pub const CONSOLE_COOKIE: &str = "rampart_console";
/// Support access: an owner who proved the mailbox but cannot sign in (1 hour, support
/// routes only).
pub const SUPPORT_COOKIE: &str = "rampart_support";

/// Scripts, styles and requests only to our own origin (the one script is the WebAuthn
/// glue; no inline code anywhere), forms only to ourselves, never
/// framed.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
     img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub struct Inner {
    pub services: Services,
    pub trusted_proxies: Vec<IpNet>,
    pub cookie_secure: bool,
    /// `/dev/mailbox` exists only when mail is not sent through SMTP.
    pub mailbox_enabled: bool,
    pub metrics: Option<PrometheusHandle>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Handlers reach the services as `state.accounts`, `state.sessions`, ….
impl Deref for Inner {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.services
    }
}

impl AppState {
    /// A cookie with the attributes every Rampart cookie has.
    pub fn cookie(
        &self,
        name: &'static str,
        value: String,
        max_age: time::Duration,
    ) -> Cookie<'static> {
        Cookie::build((name, value))
            .http_only(true)
            .secure(self.cookie_secure)
            .same_site(SameSite::Lax)
            .path("/")
            .max_age(max_age)
            .build()
    }

    pub fn expired_cookie(&self, name: &'static str) -> Cookie<'static> {
        self.cookie(name, String::new(), time::Duration::ZERO)
    }

    pub fn session_cookie(&self, token: String) -> Cookie<'static> {
        self.cookie(
            SESSION_COOKIE,
            token,
            time::Duration::hours(self.rules.session_absolute_hours),
        )
    }

    pub fn device_cookie(&self, token: String) -> Cookie<'static> {
        self.cookie(DEVICE_COOKIE, token, time::Duration::days(400))
    }

    /// The console session cookie: `SameSite=Strict` (an operator's session never rides
    /// along from another site, not even on a top-level link), `Secure` when configured or
    /// when `public_url` is https, for the console's 8 hours at most. `Path=/`: both the
    /// `/console` pages and `/api/v1/console/` read it.
    pub fn console_cookie(&self, token: String, max_age: time::Duration) -> Cookie<'static> {
        let https = self
            .composer
            .public_url
            .to_ascii_lowercase()
            .starts_with("https://");
        Cookie::build((CONSOLE_COOKIE, token))
            .http_only(true)
            .secure(self.cookie_secure || https)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(max_age)
            .build()
    }

    /// Support access (`SameSite=Strict`, an hour, support routes only).
    pub fn support_cookie(&self, token: String, max_age: time::Duration) -> Cookie<'static> {
        let mut c = self.console_cookie(token, max_age);
        c.set_name(SUPPORT_COOKIE);
        c
    }

    pub fn expired_console_cookie(&self) -> Cookie<'static> {
        self.console_cookie(String::new(), time::Duration::ZERO)
    }
}

pub fn router(state: AppState, body_limit: usize) -> Router {
    let headers = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Nothing leaves for other sites; our own requests keep their origin, so that
        // browsers send `Origin` on our forms (under `no-referrer` they send `null`).
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    let origin = Arc::new(SameOrigin::from_public_url(&state.composer.public_url));
    let hsts = state
        .composer
        .public_url
        .to_ascii_lowercase()
        .starts_with("https://");
    let mut app = Router::new()
        .merge(api::routes())
        .merge(web::routes(state.mailbox_enabled))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            origin,
            same_origin_guard,
        ))
        .layer(axum::middleware::from_fn(track_metrics))
        .layer(axum::middleware::map_response(too_large_as_json))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal().into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(request_span));
    for (name, value) in headers {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if hsts {
        // Served over https: browsers must never again try plain http for this host.
        app = app.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        ));
    }
    app
}

/// Sent on every answer when `public_url` is https: one year, subdomains included.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// What a state-changing browser request must show to come from our own pages.
pub struct SameOrigin {
    /// `public_url`'s origin (`scheme://host[:port]`, default port left out), as browsers
    /// send it in `Origin`.
    origin: String,
}

impl SameOrigin {
    pub fn from_public_url(public_url: &str) -> Self {
        let origin = url::Url::parse(public_url).map_or_else(
            |_| public_url.trim_end_matches('/').to_ascii_lowercase(),
            |u| u.origin().ascii_serialization(),
        );
        Self { origin }
    }

    /// A browser's request from another site: `Origin` (when sent) is not ours, or
    /// `Sec-Fetch-Site` (when sent) is neither `same-origin` nor `none` (typed or
    /// bookmarked). Clients that send neither header (not browsers) pass.
    pub fn is_cross_origin(&self, headers: &axum::http::HeaderMap) -> bool {
        let foreign_origin = headers.get(header::ORIGIN).is_some_and(|o| {
            !o.to_str()
                .is_ok_and(|o| o.trim_end_matches('/').eq_ignore_ascii_case(&self.origin))
        });
        let foreign_fetch = headers.get("sec-fetch-site").is_some_and(|v| {
            !matches!(
                v.to_str().map(|v| v.trim().to_ascii_lowercase()).as_deref(),
                Ok("same-origin" | "none")
            )
        });
        foreign_origin || foreign_fetch
    }
}

/// Whether the request carries a (non-empty) session cookie: the owner's or the
/// console's (an operator's requests act as someone too).
fn has_session_cookie(headers: &axum::http::HeaderMap) -> bool {
    let jar = axum_extra::extract::CookieJar::from_headers(headers);
    [SESSION_COOKIE, CONSOLE_COOKIE, SUPPORT_COOKIE]
        .iter()
        .any(|name| jar.get(name).is_some_and(|c| !c.value().is_empty()))
}

/// The one API body that is not JSON: a file of recovery evidence, posted raw with its own
/// type to `/api/v1/support/recoveries/{id}/evidence` (the handler checks its bytes too).
fn evidence_upload(path: &str, content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "image/jpeg" | "image/png" | "application/pdf"
    ) && path
        .strip_prefix("/api/v1/support/recoveries/")
        .and_then(|rest| rest.strip_suffix("/evidence"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// `application/json` or `application/…+json`, parameters allowed.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Guards every state-changing request (POST, PUT, PATCH, DELETE) except the gateway's
/// `/authz` (signed by API keys, forwarded by the gateway):
/// - when the session cookie comes along (the request acts as someone), a request from
///   another origin (`Origin`, `Sec-Fetch-Site`) is refused with 403 `cross_origin_request`,
///   as JSON under `/api/` and as a page elsewhere. `SameSite=Lax` stops other sites, not
///   other origins of the same site (a sibling subdomain); this does;
/// - under `/api/`, a body or a `Content-Type` that is not JSON is refused with 415
///   `unsupported_media_type`, so a form (`text/plain`, `application/x-www-form-urlencoded`,
///   `multipart/form-data`) cannot reach the API even where the endpoint reads no body
///   (freeze).
async fn same_origin_guard(
    State(same): State<Arc<SameOrigin>>,
    req: Request,
    next: Next,
) -> Response {
    use axum::http::Method;
    let state_changing = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let path = req.uri().path();
    if !state_changing || path == "/authz" || path.starts_with("/authz/") {
        return next.run(req).await;
    }
    let api = path.starts_with("/api/");
    let headers = req.headers();
    if has_session_cookie(headers) && same.is_cross_origin(headers) {
        tracing::warn!(path, "refused a signed-in request from another origin");
        if api {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin_request",
                "This request came from another site, so it was not carried out.",
            )
            .into_response();
        }
        let (home, home_label) = if path.starts_with("/console") {
            ("/console", "Go to the console")
        } else {
            ("/security", "Go to the Security Center")
        };
        return web::message(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form was sent from another site, so it was not carried out. If you meant to do this, open Rampart yourself and try again there.",
            home,
            home_label,
        );
    }
    if api {
        let content_type = headers.get(header::CONTENT_TYPE);
        let has_body = headers.contains_key(header::TRANSFER_ENCODING)
            || headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|l| l.to_str().map_or(true, |l| l.trim() != "0"));
        let json = content_type.is_some_and(|t| t.to_str().is_ok_and(is_json));
        let upload =
            content_type.is_some_and(|t| t.to_str().is_ok_and(|t| evidence_upload(path, t)));
        if (content_type.is_some() || has_body) && !json && !upload {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with Content-Type: application/json.",
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.audit_events(i64::MAX, 1).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!("health check: database unreachable: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

async fn metrics_page(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::not_found().into_response(),
    }
}

async fn fallback() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This address does not accept that method.",
    )
}

/// The body-limit refusal of axum's own extractors is plain text; every error of ours is
/// `{"error": {code, message}}`, so a 413 that is not JSON yet is made so here.
async fn too_large_as_json(response: Response) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json);
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || json {
        return response;
    }
    extract::body_too_large().into_response()
}

/// The span of a request's log lines names its route pattern (`/confirm-device/{token}`),
/// never the raw URI: the links in mails carry single-use tokens in their paths.
fn request_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::debug_span!("request", method = %req.method(), route, version = ?req.version())
}

/// Counts requests and their latency per route (the route pattern, never the raw path, so
/// the label set stays small).
async fn track_metrics(req: Request, next: Next) -> Response {
    let stopwatch = crate::clock::Stopwatch::start();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("rampart_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("rampart_http_request_duration_seconds", "method" => method, "route" => route)
        .record(stopwatch.elapsed().as_secs_f64());
    response
}
