//! Output replies (`GET .../stdout|stderr|output`) sent in pages: the guest
//! renders each page of the JSON body from one bounded read, the host sends
//! it and asks for the next once the connection took it. So a reply of any
//! size (64 MiB of output a stream, with the spill files) never sits whole
//! in the guest's memory or the server's: one page is in flight at a time.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tokio::sync::mpsc;

use super::body::process_ref;
use super::stream::body_from;
use super::{AppState, guest_failure, reply_response};
use sandbox_process::types::OutputSelector;
use sandbox_process::{GuestRuntime, OutputPage};

/// `GET /processes/{ref}/{stdout,stderr,output}`.
pub(super) async fn output(State(app): State<Arc<AppState>>, uri: OriginalUri, selector: OutputSelector) -> Response {
    let first = match app.runtime.output_open(process_ref(&uri), selector).await {
        Ok(Ok(page)) => page,
        Ok(Err(reply)) => return reply_response(reply),
        Err(e) => return guest_failure(e),
    };
    if first.done {
        // One page: the whole body, with its length.
        return reply_response(sandbox_process::Reply { status: 200, body: first.text });
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1);
    tokio::spawn(send_pages(app.runtime.clone(), first, tx));
    let mut response = Response::new(Body::from_stream(body_from(rx)));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Sends every page, asking the guest for the next one only once the last
/// one was taken; stops when the client goes. A guest call that fails ends
/// the body where it is: the JSON left open tells the client.
async fn send_pages(runtime: Arc<GuestRuntime>, mut page: OutputPage, tx: mpsc::Sender<Result<Bytes, Infallible>>) {
    loop {
        let (done, position) = (page.done, page.position);
        if !page.text.is_empty() && tx.send(Ok(Bytes::from(page.text))).await.is_err() {
            return;
        }
        if done {
            return;
        }
        page = match runtime.output_next(position).await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(pid = position.pid, "output page failed: {e:#}");
                return;
            }
        };
    }
}
