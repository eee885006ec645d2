//! Liveness (`/healthz`), readiness (`/readyz`: every backend pinged within the timeout)
//! and the problem+json 404 for unknown routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::openapi::{HealthDoc, RateLimited, ReadyDoc, Unavailable};
use super::problem::Problem;

pub(crate) async fn not_found() -> Problem {
    Problem::for_status(StatusCode::NOT_FOUND)
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    description = "The process is up.",
    responses(
        (status = 200, description = "up", body = HealthDoc),
        RateLimited,
    )
)]
pub(crate) async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    description = "Every backend answers (Redis PING, Postgres SELECT 1) within the readiness timeout.",
    responses(
        (status = 200, description = "ready", body = ReadyDoc),
        RateLimited, Unavailable,
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let s = &state.inner;
    let timeout = s.settings.readiness_timeout;
    let mut checks = serde_json::Map::new();
    let mut ok = true;
    for probe in &s.stores.probes {
        let up = match probe.check(timeout).await {
            Ok(()) => true,
            Err(e) => {
                eprintln!("readyz: {} is down: {e}", probe.name());
                false
            }
        };
        ok &= up;
        checks.insert(probe.name().into(), json!(if up { "up" } else { "down" }));
    }
    if ok {
        axum::Json(json!({"ready": true, "checks": checks})).into_response()
    } else {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "Not ready",
            "a backend did not answer in time",
        )
        .with("checks", Value::Object(checks))
        .into_response()
    }
}
