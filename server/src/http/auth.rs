//! Who gets in: cross-site requests are refused (403), then the bearer
//! token is checked (401), compared in constant time. Both before routing,
//! before the body is read, before the guest runs.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error_response;
use super::origin::{CrossSite, Refusal};

/// What the admission layer checks.
pub(super) struct Admission {
    pub(super) token: Option<String>,
    pub(super) cross_site: CrossSite,
}

/// Refuses a cross-site request (403), then a request without
/// `Authorization: Bearer <token>` when a token is configured (401). Every
/// route, `/health` included, is behind it: a health probe that reveals the
/// server exists is still an answer.
pub(super) async fn admit(State(admission): State<Arc<Admission>>, request: Request, next: Next) -> Response {
    match admission.cross_site.check(request.headers()) {
        Ok(()) => {}
        Err(Refusal::Origin) => {
            return error_response(
                StatusCode::FORBIDDEN,
                "FORBIDDEN_ORIGIN",
                "cross-site request refused: this Origin is not allowed (see --allow-origin)",
            );
        }
        Err(Refusal::Host) => {
            return error_response(
                StatusCode::FORBIDDEN,
                "FORBIDDEN_HOST",
                "request refused: a server without a token answers only its own address and \
                 localhost in the Host header (see --allow-host)",
            );
        }
    }
    let Some(expected) = admission.token.as_deref() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => next.run(request).await,
        Some(_) => error_response(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "wrong bearer token"),
        None => error_response(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "missing `Authorization: Bearer <token>`"),
    }
}

/// Compares without an early exit, so the time taken does not tell how many
/// leading bytes of a guess were right (only the length can leak).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
