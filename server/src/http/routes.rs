//! Which guest function serves which method and path.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use super::body::{process_ref, read_body};
use super::pages;
use super::stream::{follow, run};
use super::{AppState, error_response, guest_failure, reply_response};
use sandbox_process::types::OutputSelector;

type App = State<Arc<AppState>>;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/info", get(info))
        .route("/api/v1/processes", get(list).post(start))
        .route("/api/v1/processes/run", post(run))
        .route("/api/v1/processes/{ref}", get(get_one).delete(kill))
        .route("/api/v1/processes/{ref}/signal", post(signal))
        .route("/api/v1/processes/{ref}/stdin", post(write_stdin))
        .route("/api/v1/processes/{ref}/stdin/close", post(close_stdin))
        .route("/api/v1/processes/{ref}/stdout", get(stdout))
        .route("/api/v1/processes/{ref}/stderr", get(stderr))
        .route("/api/v1/processes/{ref}/output", get(output))
        .route("/api/v1/processes/{ref}/stdout/follow", get(follow_stdout))
        .route("/api/v1/processes/{ref}/stderr/follow", get(follow_stderr))
        .route("/api/v1/processes/{ref}/output/follow", get(follow_output))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// Turns a guest call's outcome into the response.
macro_rules! answer {
    ($call:expr) => {
        match $call.await {
            Ok(reply) => reply_response(reply),
            Err(e) => guest_failure(e),
        }
    };
}

async fn health(State(app): App) -> Response {
    answer!(app.runtime.health())
}

async fn info(State(app): App) -> Response {
    answer!(app.runtime.info())
}

async fn list(State(app): App) -> Response {
    answer!(app.runtime.list())
}

async fn start(State(app): App, body: Body) -> Response {
    match read_body(body, app.config.max_json_body, app.config.body_timeout).await {
        Ok(body) => answer!(app.runtime.start(&body)),
        Err(response) => response,
    }
}

async fn get_one(State(app): App, uri: OriginalUri) -> Response {
    answer!(app.runtime.get(process_ref(&uri)))
}

async fn kill(State(app): App, uri: OriginalUri) -> Response {
    answer!(app.runtime.kill(process_ref(&uri)))
}

async fn signal(State(app): App, uri: OriginalUri, body: Body) -> Response {
    match read_body(body, app.config.max_json_body, app.config.body_timeout).await {
        Ok(body) => answer!(app.runtime.signal(process_ref(&uri), &body)),
        Err(response) => response,
    }
}

async fn write_stdin(State(app): App, uri: OriginalUri, body: Body) -> Response {
    match read_body(body, app.config.max_stdin_body, app.config.body_timeout).await {
        Ok(body) => answer!(app.runtime.write_stdin(process_ref(&uri), &body)),
        Err(response) => response,
    }
}

async fn close_stdin(State(app): App, uri: OriginalUri) -> Response {
    answer!(app.runtime.close_stdin(process_ref(&uri)))
}

async fn stdout(state: App, uri: OriginalUri) -> Response {
    pages::output(state, uri, OutputSelector::Stdout).await
}

async fn stderr(state: App, uri: OriginalUri) -> Response {
    pages::output(state, uri, OutputSelector::Stderr).await
}

async fn output(state: App, uri: OriginalUri) -> Response {
    pages::output(state, uri, OutputSelector::Merged).await
}

async fn follow_stdout(state: App, uri: OriginalUri) -> Response {
    follow(state, uri, OutputSelector::Stdout).await
}

async fn follow_stderr(state: App, uri: OriginalUri) -> Response {
    follow(state, uri, OutputSelector::Stderr).await
}

async fn follow_output(state: App, uri: OriginalUri) -> Response {
    follow(state, uri, OutputSelector::Merged).await
}

async fn not_found(uri: OriginalUri) -> Response {
    error_response(StatusCode::NOT_FOUND, "NOT_FOUND", &format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "method not allowed on this path")
}
