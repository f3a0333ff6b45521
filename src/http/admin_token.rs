//! A minimal admin-token guard for the campaign endpoints: `Authorization: Bearer <token>`
//! compared in constant time with `WXNOTIFY_ADMIN_TOKEN`. No token configured: the endpoints
//! are not mounted at all. (The admin console's shared extractor with roles replaces this at
//! merge time.)

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// The configured admin token.
#[derive(Clone)]
pub struct AdminToken(pub SecretString);

impl AdminToken {
    /// Whether `given` is the token. Both are hashed first so the comparison takes the same
    /// time whatever the lengths, then compared in constant time.
    pub fn matches(&self, given: &str) -> bool {
        let want = Sha1::digest(self.0.expose_secret().as_bytes());
        let got = Sha1::digest(given.as_bytes());
        want.ct_eq(&got).into()
    }
}

/// Middleware: 401 unless the request carries the admin token as a bearer token.
pub async fn require(State(token): State<AdminToken>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if token.matches(g) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({"error": "a valid admin bearer token is required"})),
        )
            .into_response(),
    }
}
