//! What [`validate`](crate::policy::PasswordPolicy::validate) returns.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::strength::StrengthEstimate;

/// A stable, machine-readable violation code. Serialised in `snake_case` (`"too_short"`);
/// [`ViolationCode::as_str`] gives the same text. Codes are never renamed; new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ViolationCode {
    /// Fewer code points than `min` (params: `min`, `actual`).
    TooShort,
    /// More code points than `max` (params: `max`, `actual`).
    TooLong,
    /// Fewer upper-case letters than `min` (params: `min`, `actual`).
    TooFewUppercase,
    /// Fewer lower-case letters than `min` (params: `min`, `actual`).
    TooFewLowercase,
    /// Fewer digits than `min` (params: `min`, `actual`).
    TooFewDigits,
    /// Fewer special characters than `min` (params: `min`, `actual`).
    TooFewSpecial,
    /// On the common-password list (no params).
    CommonPassword,
    /// A host-supplied prohibited word (params: `mode`: `exact` or `substring`).
    ProhibitedWord,
    /// Contains a piece of the user's information (params: `field`).
    ContainsUserInfo,
    /// Too similar to the user's information (params: `field`).
    SimilarToUserInfo,
    /// A sequential run such as `abcd`, `4321` or `qwer` (params: `max_run`, `actual`).
    SequentialCharacters,
    /// The same character repeated too often in a row (params: `max`, `actual`).
    RepeatedCharacters,
    /// zxcvbn score below the minimum (params: `min_score`, `score`).
    TooWeak,
    /// Found in a breach corpus (params: `count`, the number of times it was seen).
    Breached,
    /// The breach check could not be done and the policy fails closed (params: `reason`).
    BreachCheckUnavailable,
}

impl ViolationCode {
    /// The stable code text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
            Self::TooFewUppercase => "too_few_uppercase",
            Self::TooFewLowercase => "too_few_lowercase",
            Self::TooFewDigits => "too_few_digits",
            Self::TooFewSpecial => "too_few_special",
            Self::CommonPassword => "common_password",
            Self::ProhibitedWord => "prohibited_word",
            Self::ContainsUserInfo => "contains_user_info",
            Self::SimilarToUserInfo => "similar_to_user_info",
            Self::SequentialCharacters => "sequential_characters",
            Self::RepeatedCharacters => "repeated_characters",
            Self::TooWeak => "too_weak",
            Self::Breached => "breached",
            Self::BreachCheckUnavailable => "breach_check_unavailable",
        }
    }
}

impl fmt::Display for ViolationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule: a stable code, its parameters (for translated messages) and an English
/// message. Never contains the password or any part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// What rule is broken.
    pub code: ViolationCode,
    /// Its parameters, e.g. `{"min": 12, "actual": 8}`.
    pub params: BTreeMap<String, Value>,
    /// An English sentence for hosts that do not translate.
    pub message: String,
}

impl Violation {
    pub(crate) fn new<const N: usize>(
        code: ViolationCode,
        params: [(&str, Value); N],
        message: String,
    ) -> Self {
        Self {
            code,
            params: params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            message,
        }
    }

    /// A numeric parameter.
    pub fn param_u64(&self, name: &str) -> Option<u64> {
        self.params.get(name).and_then(Value::as_u64)
    }

    /// A text parameter.
    pub fn param_str(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Value::as_str)
    }
}

/// The result of validating a password: **every** violation, plus strength figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// All broken rules, in a fixed order (length, classes, blocklists, user info, patterns,
    /// strength, breach).
    pub violations: Vec<Violation>,
    /// The zxcvbn estimate (`None` from [`validate_rules`](crate::policy::PasswordPolicy::validate_rules)).
    pub strength: Option<StrengthEstimate>,
    /// Search-space entropy in bits: `length × log2(pool)`, where the pool adds 26 when a
    /// lower-case ASCII letter occurs, 26 for upper case, 10 for digits, 33 for ASCII
    /// symbols and space, and 100 once for any non-ASCII character. It is an upper bound
    /// (what brute force over that alphabet would need) and ignores patterns; the
    /// realistic figure is `strength.guesses_log10 × log2(10)`.
    pub entropy_bits: f64,
    /// Length in code points of the normalised password.
    pub char_count: usize,
}

impl ValidationReport {
    /// Whether no rule is broken.
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }

    /// The codes of the violations, in order.
    pub fn codes(&self) -> Vec<ViolationCode> {
        self.violations.iter().map(|v| v.code).collect()
    }

    /// Whether `code` is among the violations.
    pub fn has(&self, code: ViolationCode) -> bool {
        self.violations.iter().any(|v| v.code == code)
    }

    /// The first violation with `code`.
    pub fn get(&self, code: ViolationCode) -> Option<&Violation> {
        self.violations.iter().find(|v| v.code == code)
    }
}
