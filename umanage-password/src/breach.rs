//! Breach detection: is this password in a corpus of breached passwords?
//!
//! [`BreachChecker`] is a small dyn-compatible async trait with two implementations:
//!
//! - [`OfflineIndex`]: a compact local index built from a file in Have I Been Pwned's
//!   `SHA1:COUNT` format (see [`offline`]), so hosts need no network;
//! - `HibpClient` (feature `hibp`): the Pwned Passwords k-anonymity range API (see `hibp`).
//!
//! Both compare the SHA-1 of the [normalised](crate::normalize) password. A check that cannot
//! be done (network down, timeout, unreadable index) is not an error but a
//! [`BreachStatus::Unavailable`] value carrying the configured [`FailurePolicy`], so the
//! caller sees explicitly whether the password is accepted or refused in that case.
//!
//! [`PasswordPolicy::validate_with_breach`] adds the result to a validation report.

pub mod offline;

#[cfg(feature = "hibp")]
pub mod hibp;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha1::{Digest, Sha1};

use crate::normalize::NormalizedPassword;
use crate::policy::{PasswordPolicy, UserInfo, ValidationReport, Violation, ViolationCode};

#[cfg(feature = "hibp")]
pub use hibp::{HibpClient, HibpConfig};
pub use offline::{BuildOptions, BuildStats, OfflineIndex};

/// What to do with a password when the breach check cannot be done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Accept the password (availability first; Ory Kratos' default).
    #[default]
    FailOpen,
    /// Refuse the password (security first).
    FailClosed,
}

/// Why a breach check could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UnavailableReason {
    /// No answer within the timeout.
    Timeout,
    /// The service could not be reached.
    Connect,
    /// The service answered with a non-success HTTP status.
    HttpStatus(u16),
    /// The answer was not in the expected format, or too large.
    InvalidResponse,
    /// The local index could not be read.
    Io,
}

impl UnavailableReason {
    /// A short stable name (`timeout`, `connect`, `http_status`, `invalid_response`, `io`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::HttpStatus(_) => "http_status",
            Self::InvalidResponse => "invalid_response",
            Self::Io => "io",
        }
    }
}

/// The outcome of a breach check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum BreachStatus {
    /// The password is in the corpus, seen `count` times.
    Breached {
        /// How often it was seen.
        count: u64,
    },
    /// The password is not in the corpus.
    NotFound,
    /// The check could not be done; `policy` says what the caller should do.
    Unavailable {
        /// The configured failure policy.
        policy: FailurePolicy,
        /// What went wrong.
        reason: UnavailableReason,
    },
}

impl BreachStatus {
    /// Whether the password must be refused: breached, or unavailable under
    /// [`FailurePolicy::FailClosed`].
    pub fn rejects(&self) -> bool {
        match self {
            Self::Breached { .. } => true,
            Self::NotFound => false,
            Self::Unavailable { policy, .. } => *policy == FailurePolicy::FailClosed,
        }
    }
}

/// Checks passwords against a breach corpus.
///
/// Implementations never fail: a check that cannot be done is
/// [`BreachStatus::Unavailable`] with the implementation's [`FailurePolicy`].
#[async_trait]
pub trait BreachChecker: Send + Sync + fmt::Debug {
    /// Looks `password` up.
    async fn check(&self, password: &NormalizedPassword) -> BreachStatus;
}

#[async_trait]
impl<T: BreachChecker + ?Sized> BreachChecker for Arc<T> {
    async fn check(&self, password: &NormalizedPassword) -> BreachStatus {
        (**self).check(password).await
    }
}

#[async_trait]
impl<T: BreachChecker + ?Sized> BreachChecker for Box<T> {
    async fn check(&self, password: &NormalizedPassword) -> BreachStatus {
        (**self).check(password).await
    }
}

/// The SHA-1 digest of the normalised password's UTF-8 bytes (what HIBP indexes).
pub fn sha1_digest(password: &NormalizedPassword) -> [u8; 20] {
    Sha1::digest(password.expose().as_bytes()).into()
}

/// [`sha1_digest`] as 40 upper-case hex digits (HIBP's form).
pub fn sha1_hex(password: &NormalizedPassword) -> String {
    hex::encode_upper(sha1_digest(password))
}

impl PasswordPolicy {
    /// As [`validate`](Self::validate), plus a breach check: adds
    /// [`Breached`](ViolationCode::Breached) (params: `count`) or, when the check could not
    /// be done and the checker fails closed,
    /// [`BreachCheckUnavailable`](ViolationCode::BreachCheckUnavailable) (params: `reason`).
    /// Returns the breach status too, so a fail-open outage can be logged.
    #[tracing::instrument(name = "password.validate_with_breach", skip_all)]
    pub async fn validate_with_breach(
        &self,
        password: &NormalizedPassword,
        user: &UserInfo,
        checker: &dyn BreachChecker,
    ) -> (ValidationReport, BreachStatus) {
        let mut report = self.validate(password, user);
        let status = checker.check(password).await;
        match status {
            BreachStatus::Breached { count } => report.violations.push(Violation::new(
                ViolationCode::Breached,
                [("count", json!(count))],
                "This password has appeared in a data breach and must not be used.".to_owned(),
            )),
            BreachStatus::Unavailable {
                policy: FailurePolicy::FailClosed,
                reason,
            } => report.violations.push(Violation::new(
                ViolationCode::BreachCheckUnavailable,
                [("reason", json!(reason.as_str()))],
                "The password could not be checked against known breaches; please try again later."
                    .to_owned(),
            )),
            BreachStatus::NotFound | BreachStatus::Unavailable { .. } => {}
        }
        (report, status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_the_hibp_example() {
        // The Pwned Passwords API documentation's example: SHA-1("P@ssw0rd") starts 21BD1.
        let p = NormalizedPassword::new("P@ssw0rd").unwrap();
        assert_eq!(&sha1_hex(&p)[..5], "21BD1");
        // RFC 3174 test vector "abc"
        let abc = NormalizedPassword::new("abc").unwrap();
        assert_eq!(sha1_hex(&abc), "A9993E364706816ABA3E25717850C26C9CD0D89D");
    }

    #[test]
    fn rejection_follows_the_policy() {
        assert!(BreachStatus::Breached { count: 1 }.rejects());
        assert!(!BreachStatus::NotFound.rejects());
        let open = BreachStatus::Unavailable {
            policy: FailurePolicy::FailOpen,
            reason: UnavailableReason::Timeout,
        };
        let closed = BreachStatus::Unavailable {
            policy: FailurePolicy::FailClosed,
            reason: UnavailableReason::Timeout,
        };
        assert!(!open.rejects());
        assert!(closed.rejects());
    }
}
