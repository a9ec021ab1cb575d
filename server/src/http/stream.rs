//! Server-sent-event responses: the guest renders every frame, step by step;
//! between steps the host waits on the capability (never a sleep loop), and
//! stops as soon as the client goes away.
//!
//! A `run` stream is its process's one consumer: the process is started
//! with its output held ([`OutputHold`]), and the hold moves on as frames
//! are handed to the connection, so the child writes no faster than the
//! client reads and no line is lost. A follow stream holds nothing (see
//! `capability::hold` for why).

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
use sandbox_process::capability::OutputHold;
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
    event_stream(app.runtime.clone(), first, None)
}

/// `POST /processes/run`.
pub(super) async fn run(State(app): State<Arc<AppState>>, body: Body) -> Response {
    let body = match read_body(body, app.config.max_json_body, app.config.body_timeout).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    match app.runtime.run_open_held(&body).await {
        Ok((Ok(step), hold)) => event_stream(app.runtime.clone(), step, hold),
        Ok((Err(reply), _)) => reply_response(reply),
        Err(e) => guest_failure(e),
    }
}

fn event_stream(runtime: Arc<GuestRuntime>, first: StreamStep, hold: Option<OutputHold>) -> Response {
    // One frame batch in flight: a slow client slows the stream, not memory.
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1);
    tokio::spawn(drive(runtime, first, tx, hold));
    let body = Body::from_stream(body_from(rx));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Steps the stream until it is done or its client goes; the hold, if any,
/// goes with it.
async fn drive(
    runtime: Arc<GuestRuntime>,
    mut step: StreamStep,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    mut hold: Option<OutputHold>,
) {
    loop {
        let had_frames = !step.frames.is_empty();
        if had_frames && !send(&tx, Bytes::from(step.frames), &step.position, &mut hold).await {
            return; // the client went away
        }
        if step.done {
            return;
        }
        let position = step.position;
        if let Some(hold) = &hold {
            // Handed to the connection: the child may write as much again.
            hold.advance(position.cursor);
        }
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

/// Hands `frames` to the connection; false if the client has gone. A
/// client that stops reading holds its process up to the run's deadline,
/// not past it: then the hold is let go, and the process reads on until the
/// stream's next step ends it (dropping what the caps must).
async fn send(
    tx: &mpsc::Sender<Result<Bytes, Infallible>>,
    frames: Bytes,
    position: &StreamPosition,
    hold: &mut Option<OutputHold>,
) -> bool {
    let sent = tx.send(Ok(frames));
    let (Some(deadline), Some(_)) = (position.deadline, hold.as_ref()) else {
        return sent.await.is_ok();
    };
    let mut sent = std::pin::pin!(sent);
    let left = Duration::from_millis(deadline.saturating_sub(sandbox_process::now_ms()));
    tokio::select! {
        result = &mut sent => return result.is_ok(),
        () = tokio::time::sleep(left) => *hold = None,
    }
    sent.await.is_ok()
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
pub(super) fn body_from(
    mut rx: mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures_core::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
