//! Passwords: `PUT /v1/me/password` (policy, history, minimum age; my other sessions
//! are revoked) and the strength meter `POST /v1/password/strength`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use umanage::audit::{Outcome, event_types};
use umanage::password::service::ChangeOutcome;
use umanage::password::{NormalizedPassword, UserInfo, Violation};

use super::AppState;
use super::auth::{Ctx, authenticate};
use super::edge::audit;
use super::openapi::{
    BadRequest, Conflict, PayloadTooLarge, RateLimited, StrengthDoc, Unauthorized, Unavailable,
    Unprocessable, UnsupportedMediaType,
};
use super::problem::{Problem, account_err, parse_json, password_err, session_err};

pub(crate) fn violation_json(v: &Violation) -> Value {
    json!({"code": v.code.as_str(), "message": v.message, "params": v.params})
}

/// `PUT /v1/me/password`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePasswordBody {
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    new_password: SecretString,
}

#[utoipa::path(
    put,
    path = "/v1/me/password",
    tag = "users",
    description = "Changes my password (policy, history, minimum age); my other sessions are revoked.",
    request_body(content = ChangePasswordBody, content_type = "application/json"),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "changed"),
        BadRequest, Unauthorized, Conflict, PayloadTooLarge, UnsupportedMediaType, Unprocessable, RateLimited, Unavailable,
    )
)]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let (session, _) = authenticate(s, &headers, &ctx).await?;
    let body: ChangePasswordBody = parse_json(&headers, &body)?;
    let ctx = ctx
        .with_user_id(session.user_id)
        .with_session_id(session.id.to_string());
    let account = (*s.stores.accounts)
        .get(session.user_id)
        .await
        .map_err(|e| account_err(&e))?
        .ok_or_else(Problem::unauthorized)?;
    let info = UserInfo::new()
        .with_username(account.username.as_str())
        .with_email(account.email.as_str());
    let (Ok(current), Ok(new)) = (
        NormalizedPassword::new(body.current_password.expose_secret()),
        NormalizedPassword::new(body.new_password.expose_secret()),
    ) else {
        return Err(Problem::violations(vec![json!({
            "code": "too_long",
            "message": "a password is longer than the largest accepted",
        })]));
    };
    let outcome = s
        .passwords
        .change_password(&account.id, &info, &current, &new)
        .await
        .map_err(|e| password_err(&e))?;
    let violations: Vec<Value> = match outcome {
        ChangeOutcome::Changed { .. } => Vec::new(),
        ChangeOutcome::WrongCurrentPassword | ChangeOutcome::NoCredential => {
            audit(
                s,
                event_types::PASSWORD_CHANGED,
                &ctx,
                Some(account.id),
                Outcome::Failure,
                &[("reason", "wrong_current_password")],
            )
            .await;
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
                "the current password is wrong",
            ));
        }
        ChangeOutcome::PolicyViolation(report) => {
            report.violations.iter().map(violation_json).collect()
        }
        ChangeOutcome::ReusedPassword => {
            let depth = s.settings.policy.history_count();
            vec![json!({
                "code": "password_reused",
                "message": format!("the password is one of the last {depth} passwords"),
                "params": {"history": depth},
            })]
        }
        ChangeOutcome::TooSoon { allowed_at } => vec![json!({
            "code": "password_too_recent",
            "message": "the password was changed too recently",
            "params": {"allowed_at": allowed_at},
        })],
        ChangeOutcome::Conflict => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                "the password was changed at the same time; retry",
            ));
        }
    };
    if !violations.is_empty() {
        audit(
            s,
            event_types::PASSWORD_REJECTED,
            &ctx,
            Some(account.id),
            Outcome::Failure,
            &[],
        )
        .await;
        return Err(Problem::violations(violations));
    }
    let revoked = s
        .sessions
        .revoke_others(&session)
        .await
        .map_err(|e| session_err(&e))?;
    audit(
        s,
        event_types::PASSWORD_CHANGED,
        &ctx,
        Some(account.id),
        Outcome::Success,
        &[("sessions_revoked", &revoked.to_string())],
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/password/strength`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StrengthBody {
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/password/strength",
    tag = "users",
    description = "Strength estimate and policy violations of a candidate password, for a live meter.",
    request_body(content = StrengthBody, content_type = "application/json"),
    responses(
        (status = 200, description = "the estimate", body = StrengthDoc),
        BadRequest, PayloadTooLarge, UnsupportedMediaType, Unprocessable, RateLimited,
    )
)]
pub(crate) async fn strength(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let body: StrengthBody = parse_json(&headers, &body)?;
    let pw =
        NormalizedPassword::new(body.password.expose_secret()).map_err(|e| password_err(&e))?;
    let mut info = UserInfo::new();
    let mut inputs: Vec<&str> = Vec::new();
    if let Some(u) = &body.username {
        info = info.with_username(u);
        inputs.push(u);
    }
    if let Some(e) = &body.email {
        info = info.with_email(e);
        inputs.push(e);
    }
    let report = s.settings.policy.validate(&pw, &info);
    let estimate = report
        .strength
        .clone()
        .unwrap_or_else(|| umanage::password::strength::estimate(&pw, &inputs));
    Ok(axum::Json(json!({
        "score": estimate.score,
        "guesses_log10": estimate.guesses_log10,
        "feedback": estimate.feedback,
        "violations": report.violations.iter().map(violation_json).collect::<Vec<_>>(),
    }))
    .into_response())
}
