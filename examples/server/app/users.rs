//! Accounts: registration (`POST /v1/users`: the account, then its password, undone if
//! the password cannot be stored) and the current account (`GET /v1/me`), read through
//! a short-lived bounded cache.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use umanage::account::{Account, CreateWithError, NewAccount, Role, create_with};
use umanage::audit::{Outcome, event_types};
use umanage::core::UserId;
use umanage::password::service::ChangeOutcome;
use umanage::password::{NormalizedPassword, UserInfo};

use super::AppState;
use super::auth::{Ctx, authenticate};
use super::edge::audit;
use super::openapi::{
    AccountDoc, BadRequest, Conflict, PayloadTooLarge, RateLimited, Unauthorized, Unavailable,
    Unprocessable, UnsupportedMediaType,
};
use super::password::violation_json;
use super::problem::{Problem, account_err, parse_json, password_err};

/// `POST /v1/users`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    /// Letters, digits, `.`, `_`, `-`; unique case-insensitively after NFKC.
    username: String,
    /// Unique case-insensitively (the domain is lower-cased, the local part kept).
    email: String,
    /// Checked against the password policy.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    description = "Registers an account; the password must pass the policy.",
    request_body(content = RegisterBody, content_type = "application/json"),
    responses(
        (status = 201, description = "created", body = AccountDoc),
        BadRequest, Conflict, PayloadTooLarge, UnsupportedMediaType, Unprocessable, RateLimited, Unavailable,
    )
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let body: RegisterBody = parse_json(&headers, &body)?;
    let mut violations = Vec::new();
    if let Err(e) = NewAccount::new(&body.username, &body.email).validate() {
        violations.push(json!({"code": e.code(), "message": e.to_string()}));
    }
    let pw = match NormalizedPassword::new(body.password.expose_secret()) {
        Ok(pw) => Some(pw),
        Err(e) => {
            violations.push(json!({"code": "too_long", "message": e.to_string()}));
            None
        }
    };
    if let Some(pw) = &pw {
        let report = s.settings.policy.validate(
            pw,
            &UserInfo::new()
                .with_username(&body.username)
                .with_email(&body.email),
        );
        violations.extend(report.violations.iter().map(violation_json));
    }
    let Some(pw) = pw.filter(|_| violations.is_empty()) else {
        audit(
            s,
            event_types::PASSWORD_REJECTED,
            &ctx,
            None,
            Outcome::Failure,
            &[],
        )
        .await;
        return Err(Problem::violations(violations));
    };
    // Account and credential are two stores: `create_with` deletes the account again when
    // the password cannot be stored, and the pair runs in its own task so a client that
    // disconnects cannot cancel it half-way.
    let info = UserInfo::new()
        .with_username(&body.username)
        .with_email(&body.email);
    let new = NewAccount::new(&body.username, &body.email);
    let task_state = state.clone();
    let created = tokio::spawn(async move {
        let s = &task_state.inner;
        create_with(&*s.stores.accounts, new, |account| {
            let passwords = s.passwords.clone();
            async move {
                match passwords.set_password(&account.id, &info, &pw).await {
                    Ok(ChangeOutcome::Changed { .. }) => Ok(()),
                    Ok(ChangeOutcome::PolicyViolation(report)) => Err(Problem::violations(
                        report.violations.iter().map(violation_json).collect(),
                    )),
                    Ok(_) => Err(Problem::internal()),
                    Err(e) => Err(password_err(&e)),
                }
            }
        })
        .await
    })
    .await
    .map_err(|_| Problem::internal())?;
    let account = match created {
        Ok((account, ())) => account,
        Err(CreateWithError::Account(e)) => return Err(account_err(&e)),
        Err(CreateWithError::FollowUp(p)) => return Err(p),
        Err(e) => {
            eprintln!("registration: {e}");
            return Err(Problem::internal());
        }
    };
    audit(
        s,
        event_types::USER_CREATED,
        &ctx,
        Some(account.id),
        Outcome::Success,
        &[],
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(account_json(&account))).into_response())
}

pub(crate) fn account_json(a: &Account) -> Value {
    json!({
        "id": a.id.to_string(),
        "username": a.username.as_str(),
        "email": a.email.as_str(),
        "roles": a.roles.iter().map(Role::as_str).collect::<Vec<_>>(),
        "created_at": a.created_at,
    })
}

#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "users",
    description = "The authenticated account.",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "the account", body = AccountDoc),
        Unauthorized, RateLimited, Unavailable,
    )
)]
pub(crate) async fn me(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let s = &state.inner;
    let (session, _) = authenticate(s, &headers, &ctx).await?;
    let ttl = chrono::Duration::from_std(s.settings.account_cache_ttl).unwrap_or_default();
    let now = s.clock.now();
    if let Some(account) = s.accounts_seen.get(session.user_id, now, ttl) {
        return Ok(axum::Json(account_json(&account)).into_response());
    }
    let account = (*s.stores.accounts)
        .get(session.user_id)
        .await
        .map_err(|e| account_err(&e))?
        .ok_or_else(Problem::unauthorized)?;
    if !ttl.is_zero() {
        s.accounts_seen.put(&account, now);
    }
    Ok(axum::Json(account_json(&account)).into_response())
}

/// A short-lived copy of recently read accounts, so a hot `GET /v1/me` does not read the
/// account store on every request. Bounded: when full it starts over.
/// When an account was read, and the account.
pub(crate) type Seen = (chrono::DateTime<chrono::Utc>, Arc<Account>);

#[derive(Default)]
pub(crate) struct AccountCache {
    entries: std::sync::Mutex<std::collections::HashMap<UserId, Seen>>,
}

impl AccountCache {
    const MAX_ENTRIES: usize = 10_000;

    pub(crate) fn get(
        &self,
        id: UserId,
        now: chrono::DateTime<chrono::Utc>,
        ttl: chrono::Duration,
    ) -> Option<Arc<Account>> {
        if ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries
            .get(&id)
            .filter(|(at, _)| now - *at < ttl)
            .map(|(_, a)| Arc::clone(a))
    }

    pub(crate) fn put(&self, account: &Account, now: chrono::DateTime<chrono::Utc>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(account.id, (now, Arc::new(account.clone())));
        }
    }
}
