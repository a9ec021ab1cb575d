//! Server-sent-event responses: the guest renders every frame, step by step;
//! between steps the host waits on the capability (never a sleep loop), and
//! stops as soon as the client goes away.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tokio::sync::mpsc;

use super::body::{process_ref, read_body};
use super::{AppState, guest_failure, reply_response};
use sandbox_process::types::OutputSelector;
use sandbox_process::{GuestRuntime, StreamPosition, StreamStep};

/// The longest a stream waits for output before asking the guest again (it
/// also bounds how late a run's deadline is noticed).
const MAX_WAIT: Duration = Duration::from_millis(1000);

/// `GET /processes/{ref}/{stdout,stderr,output}/follow`.
pub(super) async fn follow(State(app): State<Arc<AppState>>, uri: OriginalUri, selector: OutputSelector) -> Response {
    let position = match app.runtime.follow_open(process_ref(&uri), selector).await {
        Ok(Ok(position)) => position,
        Ok(Err(reply)) => return reply_response(reply),
        Err(e) => return guest_failure(e),
    };
    let first = StreamStep { frames: String::new(), position, done: false };
    event_stream(app.runtime.clone(), first)
}

/// `POST /processes/run`.
pub(super) async fn run(State(app): State<Arc<AppState>>, body: Body) -> Response {
    let body = match read_body(body, app.config.max_json_body, app.config.body_timeout).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    match app.runtime.run_open(&body).await {
        Ok(Ok(step)) => event_stream(app.runtime.clone(), step),
        Ok(Err(reply)) => reply_response(reply),
        Err(e) => guest_failure(e),
    }
}

fn event_stream(runtime: Arc<GuestRuntime>, first: StreamStep) -> Response {
    // One frame batch in flight: a slow client slows the stream, not memory.
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1);
    tokio::spawn(drive(runtime, first, tx));
    let body = Body::from_stream(tokio_stream_from(rx));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn drive(runtime: Arc<GuestRuntime>, mut step: StreamStep, tx: mpsc::Sender<Result<Bytes, Infallible>>) {
    loop {
        let had_frames = !step.frames.is_empty();
        if had_frames && tx.send(Ok(Bytes::from(step.frames))).await.is_err() {
            return; // the client went away
        }
        if step.done {
            return;
        }
        let position = step.position;
        if !had_frames {
            tokio::select! {
                _ = tx.closed() => return,
                _ = wait_for_output(&runtime, &position) => {}
            }
        }
        step = match runtime.stream_next(position, 0).await {
            Ok(step) => step,
            Err(e) => {
                // Ending the body without its final frame tells the client
                // the stream failed; the details go to the log.
                tracing::error!(pid = position.pid, "stream step failed: {e:#}");
                return;
            }
        };
    }
}

/// Waits until the process has output after the cursor, ends, or a run's
/// deadline comes; whichever is first, bounded by [`MAX_WAIT`].
async fn wait_for_output(runtime: &GuestRuntime, position: &StreamPosition) {
    let mut wait = MAX_WAIT;
    if let (Some(deadline), false) = (position.deadline, position.timed_out) {
        let now = sandbox_process::now_ms();
        wait = wait.min(Duration::from_millis(deadline.saturating_sub(now)));
    }
    let _ = runtime.processes().read_output(position.pid, position.selector, position.cursor, 1, wait).await;
}

/// Adapts the receiver to the `Stream` that `Body::from_stream` takes.
fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures_core::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
