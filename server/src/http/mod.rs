//! The HTTP transport: accepts and bounds connections, refuses cross-site
//! and unauthenticated requests, routes each request of the sandbox process
//! API to the guest's exported function, and moves bytes. What a request
//! means and what the reply says is the guest's business.

mod auth;
mod body;
mod connection;
mod listener;
mod origin;
mod pages;
mod routes;
mod stream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;

pub use self::connection::Deadlines;
pub use self::listener::{ConnectionLimits, serve};
pub use self::origin::{CrossSite, parse_host, parse_origin};
use sandbox_process::{GuestRuntime, Reply};

/// How the server treats requests.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The bearer token every request must carry; `None` serves anyone who
    /// can connect (the command line allows that on loopback only).
    pub token: Option<String>,
    /// The largest JSON request body, in bytes (413 past it).
    pub max_json_body: usize,
    /// The largest body of one stdin write, in bytes (413 past it).
    pub max_stdin_body: usize,
    /// How long a request's body may take to arrive, from when the server
    /// starts reading it (408 past it).
    pub body_timeout: Duration,
    /// The `Origin`s (and, without a token, the `Host`s) let in.
    pub cross_site: CrossSite,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            token: None,
            max_json_body: 1 << 20,
            max_stdin_body: 8 << 20,
            body_timeout: Duration::from_secs(30),
            cross_site: CrossSite::default(),
        }
    }
}

/// What every handler shares.
struct AppState {
    runtime: Arc<GuestRuntime>,
    config: HttpConfig,
}

/// The router of the whole API, ready for [`serve`].
pub fn router(runtime: Arc<GuestRuntime>, config: HttpConfig) -> Router {
    let layered = with_auth_and_logging(routes::routes(), &config);
    let state = Arc::new(AppState { runtime, config });
    layered.with_state(state)
}

/// The layers around every route: the cross-site checks and bearer-token
/// authentication (when `config.token` is set) in one layer, inside one
/// log line per request. For a program that serves routes of its own
/// beside (or instead of) [`router`]'s under the same rules; the
/// benchmark's native baseline server is this very stack minus the guest.
pub fn with_auth_and_logging<S: Clone + Send + Sync + 'static>(routes: Router<S>, config: &HttpConfig) -> Router<S> {
    let admission = auth::Admission { token: config.token.clone(), cross_site: config.cross_site.clone() };
    routes
        .layer(middleware::from_fn_with_state(Arc::new(admission), auth::admit))
        .layer(middleware::from_fn(log_request))
}

/// One log line per request: method, path, status, duration. Headers (and
/// so the token) are never logged.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path = %path,
        status = response.status().as_u16(),
        duration_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// A JSON response with the API's status and body.
fn reply_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if reply.body.is_empty() {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        return response;
    }
    json_response(status, reply.body)
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The API's error body for what the transport itself refuses.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": message, "code": code }).to_string();
    json_response(status, body)
}

/// A guest call that trapped, ran out of time or memory: this request fails,
/// the server goes on.
fn guest_failure(error: wasmtime::Error) -> Response {
    tracing::error!("guest failure: {error:#}");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "the request failed inside the guest")
}
