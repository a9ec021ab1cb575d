//! What the handlers take from a request: the process reference as sent,
//! and a body read within its size and time limits. One home for both, so
//! the plain routes and the streaming ones share them without depending on
//! each other.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::OriginalUri;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::error_response;

/// The `{ref}` segment exactly as sent (still percent-encoded): the guest
/// decides what is a valid reference, so `%34%32` is not quietly `42`.
pub(super) fn process_ref(uri: &OriginalUri) -> &str {
    uri.path().split('/').nth(4).unwrap_or("")
}

/// Reads at most `limit` bytes of body within `timeout`; `Err` is the 413
/// or 408 to send.
pub(super) async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, Response> {
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "LIMIT_EXCEEDED",
            &format!("request body larger than {limit} bytes (or cut off)"),
        )
    };
    // A declared Content-Length over the limit is refused before reading.
    if usize::try_from(axum::body::HttpBody::size_hint(&body).lower()).map_or(true, |n| n > limit) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(read) => read.map_err(|_| too_large()),
        Err(_) => {
            // The rest of the body may still come: the connection can't
            // carry another request.
            let mut response = error_response(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                &format!("the request body did not arrive within {timeout:?} (see --body-timeout)"),
            );
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(response)
        }
    }
}
