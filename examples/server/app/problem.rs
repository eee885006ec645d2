//! Errors as RFC 9457 `application/problem+json` bodies with a stable `code`: the
//! [`Problem`] type, the mapping of SDK errors onto it (a backend that is down is a 503,
//! never a 500 with details) and the strict JSON body parser every route uses.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use umanage::account::AccountError;
use umanage::password::PasswordError;

/// An error response: `application/problem+json` with a stable `code`.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    extra: BTreeMap<&'static str, Value>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            extra: BTreeMap::new(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn with(mut self, key: &'static str, value: Value) -> Self {
        self.extra.insert(key, value);
        self
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            "a valid session is required",
        )
    }

    pub(crate) fn bad_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Invalid credentials",
            "the login or the password is wrong",
        )
    }

    pub(crate) fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            "the admin role is required",
        )
    }

    pub(crate) fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "a backend did not answer; retry later",
        )
    }

    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed",
        )
    }

    pub(crate) fn violations(violations: Vec<Value>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Validation failed",
            "the request breaks one or more rules",
        )
        .with("violations", Value::Array(violations))
    }

    pub(crate) fn for_status(status: StatusCode) -> Self {
        let (code, title) = match status.as_u16() {
            404 => ("not_found", "Not found"),
            405 => ("method_not_allowed", "Method not allowed"),
            413 => ("body_too_large", "Request body too large"),
            415 => ("unsupported_media_type", "Unsupported media type"),
            429 => ("rate_limited", "Too many requests"),
            s if s >= 500 => ("internal", "Internal error"),
            _ => ("bad_request", "Bad request"),
        };
        Self::new(status, code, title, title.to_ascii_lowercase())
    }

    pub(crate) fn body(&self) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "type".into(),
            json!(format!("urn:umanage:problem:{}", self.code)),
        );
        obj.insert("title".into(), json!(self.title));
        obj.insert("status".into(), json!(self.status.as_u16()));
        obj.insert("code".into(), json!(self.code));
        obj.insert("detail".into(), json!(self.detail));
        for (k, v) in &self.extra {
            obj.insert((*k).into(), v.clone());
        }
        Value::Object(obj).to_string()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut res = Response::new(Body::from(self.body()));
        *res.status_mut() = self.status;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (k, v) in self.headers {
            res.headers_mut().insert(k, v);
        }
        res
    }
}

pub(crate) fn backend(err: &dyn std::fmt::Display, unavailable: bool) -> Problem {
    eprintln!("backend error: {err}");
    if unavailable {
        Problem::unavailable()
    } else {
        Problem::internal()
    }
}

pub(crate) fn account_err(err: &AccountError) -> Problem {
    match err {
        AccountError::Backend(b) => backend(b, b.is_unavailable() || b.is_timeout()),
        e if e.is_invalid_input() => {
            Problem::violations(vec![json!({"code": e.code(), "message": e.to_string()})])
        }
        e => {
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let title = if status == StatusCode::CONFLICT {
                "Conflict"
            } else {
                "Bad request"
            };
            Problem::new(status, e.code(), title, e.to_string())
        }
    }
}

pub(crate) fn session_err(err: &umanage::session::Error) -> Problem {
    backend(err, err.is_unavailable())
}

pub(crate) fn password_err(err: &PasswordError) -> Problem {
    match err {
        PasswordError::Busy { .. } => {
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "Busy",
                "password hashing is saturated; retry later",
            )
            .with("retry_after", json!(1));
            p.headers
                .push((header::RETRY_AFTER, HeaderValue::from_static("1")));
            p
        }
        PasswordError::TooLarge { max_bytes } => Problem::violations(vec![
            json!({"code": "too_long", "message": format!("the password is longer than {max_bytes} bytes")}),
        ]),
        PasswordError::Backend(b) => backend(b, b.is_unavailable() || b.is_timeout()),
        e => backend(e, false),
    }
}

/// Parses a JSON body strictly: UTF-8, an object, the exact fields.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Problem> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            v == "application/json" || v.ends_with("+json")
        });
    if !json_type {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "send Content-Type: application/json",
        ));
    }
    if std::str::from_utf8(body).is_err() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            "Bad request",
            "the body is not valid UTF-8",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let (status, code) = match e.classify() {
            serde_json::error::Category::Data => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields")
            }
            _ => (StatusCode::BAD_REQUEST, "malformed_json"),
        };
        Problem::new(status, code, "Bad request", e.to_string())
    })
}
