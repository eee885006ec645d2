//! Password policy: configuration, presets and validation.
//!
//! A [`PasswordPolicy`] is built through [`PasswordPolicyBuilder`] (or deserialised, which goes
//! through the same checks), so it can never hold contradictory settings. Two presets:
//!
//! | | [`nist()`](PasswordPolicy::nist) | [`nist_with_mfa()`](PasswordPolicy::nist_with_mfa) | [`enterprise()`](PasswordPolicy::enterprise) |
//! | --- | --- | --- | --- |
//! | length (code points, after NFKC) | 15–128 | 8–128 | 12–128 |
//! | upper / lower / digit / special minimums | none | none | 2 / 2 / 2 / 2 |
//! | common-password blocklist | yes | yes | yes |
//! | user-info check | yes | yes | yes |
//! | sequences (`abcde`, `54321`, `qwert`) | runs of 5+ | runs of 5+ | runs of 4+ |
//! | same character in a row | at most 4 | at most 4 | at most 3 |
//! | zxcvbn minimum score | — | — | 3 |
//! | history (previous passwords refused) | 0 | 0 | 5 |
//! | expiry / minimum age | none / none | none / none | 90 days / 1 day |
//!
//! The NIST presets follow NIST SP 800-63B rev 4 section 3.1.1.2: no composition rules, no
//! periodic expiry, at least 15 code points (8 when the password is one factor of MFA), a
//! maximum of at least 64, and a blocklist of common, expected or compromised values. Their
//! [`Compliance`] setting makes `build()` refuse any change that would break those rules.
//!
//! ```
//! use umanage_password::normalize::NormalizedPassword;
//! use umanage_password::policy::{PasswordPolicy, UserInfo, ViolationCode};
//!
//! let policy = PasswordPolicy::enterprise();
//! let user = UserInfo::new().with_username("alice.smith").with_email("alice@example.com");
//! let report = policy.validate(&NormalizedPassword::new("alicesmith2024").unwrap(), &user);
//! assert!(report.has(ViolationCode::ContainsUserInfo));
//! assert!(report.has(ViolationCode::TooFewUppercase));
//! for v in &report.violations {
//!     println!("{}: {} {:?}", v.code, v.message, v.params);
//! }
//! ```

mod checks;
mod report;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::dictionary::{self, HostWords, MIN_SUBSTRING_WORD_CHARS, WordMatch};
use crate::normalize::{MAX_PASSWORD_BYTES, NormalizedPassword};
use crate::strength::{self, StrengthEstimate};

pub use report::{ValidationReport, Violation, ViolationCode};

/// Default maximum length of every preset, in code points.
pub const DEFAULT_MAX_LENGTH: u32 = 128;
/// The largest `max_length` accepted: input over [`MAX_PASSWORD_BYTES`] bytes is refused
/// before any check, so a longer maximum could never be reached.
pub const MAX_MAX_LENGTH: u32 = MAX_PASSWORD_BYTES as u32;
/// NIST SP 800-63B rev 4: minimum length of a single-factor password.
pub const NIST_MIN_LENGTH: u32 = 15;
/// NIST SP 800-63B rev 4: minimum length of a password used with a second factor.
pub const NIST_MFA_MIN_LENGTH: u32 = 8;
/// NIST SP 800-63B rev 4: verifiers allow at least this maximum length.
pub const NIST_MIN_MAX_LENGTH: u32 = 64;
/// Default shortest sequential run that is refused.
pub const DEFAULT_SEQUENCE_MIN_RUN: u32 = 5;
/// The smallest `sequence_min_run` accepted (a run of 2 is any pair such as `ab`).
pub const MIN_SEQUENCE_RUN: u32 = 3;
/// The largest `history_count` accepted.
pub const MAX_HISTORY_COUNT: u32 = 100;
/// The most host words a policy may carry.
pub const MAX_PROHIBITED_WORDS: usize = 100_000;
/// Default `user_info_max_similarity` (as Ory Kratos: more than half the password in common).
pub const DEFAULT_MAX_SIMILARITY: f64 = 0.5;
/// A password within this Levenshtein distance of an identifier is "similar" (Ory Kratos' value).
pub const MIN_IDENTIFIER_DISTANCE: usize = 5;
/// User-info pieces shorter than this (in letters and digits) are not checked.
pub const MIN_USER_INFO_CHARS: usize = 3;

/// A standard the policy must keep to; `build()` refuses settings that break it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compliance {
    /// No constraint beyond consistency.
    #[default]
    None,
    /// NIST SP 800-63B rev 4, password as the only factor.
    Nist,
    /// NIST SP 800-63B rev 4, password as one factor of multi-factor authentication.
    NistWithMfa,
}

impl fmt::Display for Compliance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "no standard",
            Self::Nist => "NIST SP 800-63B rev 4",
            Self::NistWithMfa => "NIST SP 800-63B rev 4 (with MFA)",
        })
    }
}

/// Why a policy cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A setting is outside its range.
    #[error("{field} must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// `min_length` is above `max_length`.
    #[error("min_length ({min}) is greater than max_length ({max})")]
    MinAboveMax {
        /// `min_length`.
        min: u32,
        /// `max_length`.
        max: u32,
    },
    /// The class minimums add up to more than `max_length` allows.
    #[error("the character-class minimums need {required} characters but max_length is {max}")]
    ClassesExceedMax {
        /// Sum of the class minimums.
        required: u64,
        /// `max_length`.
        max: u32,
    },
    /// Two settings contradict each other.
    #[error("{0}")]
    Contradiction(&'static str),
    /// The selected [`Compliance`] forbids a setting.
    #[error("not allowed by {compliance}: {reason}")]
    NonCompliant {
        /// The standard.
        compliance: Compliance,
        /// What it forbids.
        reason: &'static str,
    },
    /// A prohibited word is unusable.
    #[error("prohibited word #{index}: {reason}")]
    InvalidWord {
        /// Its position in `prohibited_words`.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The settings of a [`PasswordPolicy`], with setters and a validating [`build`](Self::build).
///
/// This is also the serde form of a policy (`#[serde(deny_unknown_fields)]`; a missing field
/// takes the [`Default`] value, which is the NIST preset without its compliance lock). Lengths
/// count code points of the NFKC-normalised password.
///
/// ```
/// use umanage_password::policy::PasswordPolicy;
///
/// let policy: PasswordPolicy = serde_json::from_str(
///     r#"{ "min_length": 10, "min_digits": 1, "history_count": 3, "expiry_days": 180 }"#,
/// ).unwrap();
/// assert_eq!(policy.min_length(), 10);
/// assert!(serde_json::from_str::<PasswordPolicy>(r#"{ "min_lenght": 10 }"#).is_err());
/// assert!(serde_json::from_str::<PasswordPolicy>(r#"{ "min_length": 200 }"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicyBuilder {
    compliance: Compliance,
    min_length: u32,
    max_length: u32,
    min_uppercase: u32,
    min_lowercase: u32,
    min_digits: u32,
    min_special: u32,
    prohibit_common: bool,
    prohibited_words: Vec<String>,
    prohibited_word_match: WordMatch,
    prohibit_user_info: bool,
    user_info_max_similarity: f64,
    prohibit_sequences: bool,
    sequence_min_run: u32,
    max_repeated: Option<u32>,
    min_score: Option<u8>,
    history_count: u32,
    expiry_days: Option<u32>,
    min_age_days: Option<u32>,
}

impl Default for PasswordPolicyBuilder {
    fn default() -> Self {
        Self {
            compliance: Compliance::None,
            min_length: NIST_MIN_LENGTH,
            max_length: DEFAULT_MAX_LENGTH,
            min_uppercase: 0,
            min_lowercase: 0,
            min_digits: 0,
            min_special: 0,
            prohibit_common: true,
            prohibited_words: Vec::new(),
            prohibited_word_match: WordMatch::Exact,
            prohibit_user_info: true,
            user_info_max_similarity: DEFAULT_MAX_SIMILARITY,
            prohibit_sequences: true,
            sequence_min_run: DEFAULT_SEQUENCE_MIN_RUN,
            max_repeated: Some(4),
            min_score: None,
            history_count: 0,
            expiry_days: None,
            min_age_days: None,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }
        )*
    };
}

impl PasswordPolicyBuilder {
    setters! {
        /// The standard to keep to (default [`Compliance::None`]).
        compliance: Compliance;
        /// Minimum length in code points (at least 1).
        min_length: u32;
        /// Maximum length in code points (at most [`MAX_MAX_LENGTH`]).
        max_length: u32;
        /// Required upper-case letters.
        min_uppercase: u32;
        /// Required lower-case letters.
        min_lowercase: u32;
        /// Required digits.
        min_digits: u32;
        /// Required special characters (anything that is neither a letter nor a digit).
        min_special: u32;
        /// Refuse passwords on the bundled common-password list.
        prohibit_common: bool;
        /// How host words match.
        prohibited_word_match: WordMatch;
        /// Refuse passwords containing or resembling the user's information.
        prohibit_user_info: bool;
        /// Refuse sequential runs (`abcd`, `4321`, `qwer`).
        prohibit_sequences: bool;
        /// Shortest refused run (at least [`MIN_SEQUENCE_RUN`]).
        sequence_min_run: u32;
        /// Most times one character may repeat in a row (`None`: unlimited; at least 1).
        max_repeated: Option<u32>;
        /// Minimum zxcvbn score, 0-4 (`None`: no minimum).
        min_score: Option<u8>;
        /// Previous passwords that may not be reused (0: no history).
        history_count: u32;
        /// Days after which the password expires (`None`: never; at least 1).
        expiry_days: Option<u32>;
        /// Days before a password may be changed again (`None`: any time; at least 1).
        min_age_days: Option<u32>;
    }

    /// Host-supplied prohibited words (product or company names...), matched per
    /// [`prohibited_word_match`](Self::prohibited_word_match).
    #[must_use]
    pub fn prohibited_words<I, S>(mut self, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.prohibited_words = words.into_iter().map(Into::into).collect();
        self
    }

    /// Similarity threshold in `(0, 1]`: the longest run shared with an identifier, divided
    /// by the password length, above which the password is "similar".
    #[must_use]
    pub fn user_info_max_similarity(mut self, value: f64) -> Self {
        self.user_info_max_similarity = value;
        self
    }

    /// Checks the settings and builds the policy.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] for any out-of-range value or contradiction: `min_length` 0 or above
    /// `max_length`, `max_length` above [`MAX_MAX_LENGTH`], class minimums that do not fit in
    /// `max_length`, `min_score` above 4, `sequence_min_run` below 3, zero `max_repeated`,
    /// `expiry_days` or `min_age_days`, a minimum age not shorter than the expiry, a
    /// `history_count` above [`MAX_HISTORY_COUNT`], a similarity threshold outside `(0, 1]`,
    /// an empty (or, in substring mode, too short) prohibited word, and settings that the
    /// chosen [`Compliance`] forbids.
    pub fn build(self) -> Result<PasswordPolicy, PolicyError> {
        let range = |field: &'static str, value: u64, min: u64, max: u64| {
            if value < min || value > max {
                Err(PolicyError::OutOfRange {
                    field,
                    value,
                    min,
                    max,
                })
            } else {
                Ok(())
            }
        };
        range(
            "max_length",
            self.max_length.into(),
            1,
            MAX_MAX_LENGTH.into(),
        )?;
        range(
            "min_length",
            self.min_length.into(),
            1,
            MAX_MAX_LENGTH.into(),
        )?;
        if self.min_length > self.max_length {
            return Err(PolicyError::MinAboveMax {
                min: self.min_length,
                max: self.max_length,
            });
        }
        let required = u64::from(self.min_uppercase)
            + u64::from(self.min_lowercase)
            + u64::from(self.min_digits)
            + u64::from(self.min_special);
        if required > u64::from(self.max_length) {
            return Err(PolicyError::ClassesExceedMax {
                required,
                max: self.max_length,
            });
        }
        if let Some(score) = self.min_score {
            range("min_score", score.into(), 0, 4)?;
        }
        range(
            "sequence_min_run",
            self.sequence_min_run.into(),
            MIN_SEQUENCE_RUN.into(),
            MAX_MAX_LENGTH.into(),
        )?;
        if let Some(n) = self.max_repeated {
            range("max_repeated", n.into(), 1, MAX_MAX_LENGTH.into())?;
        }
        range(
            "history_count",
            self.history_count.into(),
            0,
            MAX_HISTORY_COUNT.into(),
        )?;
        if let Some(days) = self.expiry_days {
            range("expiry_days", days.into(), 1, 36_500)?;
        }
        if let Some(days) = self.min_age_days {
            range("min_age_days", days.into(), 1, 36_500)?;
        }
        if let (Some(min_age), Some(expiry)) = (self.min_age_days, self.expiry_days)
            && min_age >= expiry
        {
            return Err(PolicyError::Contradiction(
                "min_age_days must be shorter than expiry_days, or a user could be forced to change a password they may not change",
            ));
        }
        if !(self.user_info_max_similarity > 0.0 && self.user_info_max_similarity <= 1.0) {
            return Err(PolicyError::Contradiction(
                "user_info_max_similarity must be in (0, 1]",
            ));
        }
        if self.prohibited_words.len() > MAX_PROHIBITED_WORDS {
            return Err(PolicyError::OutOfRange {
                field: "prohibited_words",
                value: self.prohibited_words.len() as u64,
                min: 0,
                max: MAX_PROHIBITED_WORDS as u64,
            });
        }
        for (index, word) in self.prohibited_words.iter().enumerate() {
            let folded = dictionary::fold(word);
            if folded.is_empty() {
                return Err(PolicyError::InvalidWord {
                    index,
                    reason: "empty",
                });
            }
            if self.prohibited_word_match == WordMatch::Substring
                && folded.chars().count() < MIN_SUBSTRING_WORD_CHARS
            {
                return Err(PolicyError::InvalidWord {
                    index,
                    reason: "shorter than 3 characters, which would block too much in substring mode",
                });
            }
        }
        self.check_compliance()?;
        let host_words = HostWords::new(&self.prohibited_words, self.prohibited_word_match);
        Ok(PasswordPolicy {
            spec: self,
            host_words,
        })
    }

    fn check_compliance(&self) -> Result<(), PolicyError> {
        let min = match self.compliance {
            Compliance::None => return Ok(()),
            Compliance::Nist => NIST_MIN_LENGTH,
            Compliance::NistWithMfa => NIST_MFA_MIN_LENGTH,
        };
        let fail = |reason| {
            Err(PolicyError::NonCompliant {
                compliance: self.compliance,
                reason,
            })
        };
        if self.min_length < min {
            return fail("min_length is below the minimum length (15, or 8 with MFA)");
        }
        if self.max_length < NIST_MIN_MAX_LENGTH {
            return fail("max_length must be at least 64");
        }
        if self.min_uppercase + self.min_lowercase + self.min_digits + self.min_special > 0 {
            return fail("composition rules (character-class minimums) must not be imposed");
        }
        if self.expiry_days.is_some() {
            return fail("passwords must not expire periodically");
        }
        if !self.prohibit_common {
            return fail("passwords must be compared against a blocklist of common values");
        }
        Ok(())
    }
}

/// A validated password policy. Build one with [`PasswordPolicy::builder`], a preset, or serde
/// (which runs the same checks as [`PasswordPolicyBuilder::build`]).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PasswordPolicyBuilder", into = "PasswordPolicyBuilder")]
pub struct PasswordPolicy {
    spec: PasswordPolicyBuilder,
    host_words: HostWords,
}

impl TryFrom<PasswordPolicyBuilder> for PasswordPolicy {
    type Error = PolicyError;

    fn try_from(builder: PasswordPolicyBuilder) -> Result<Self, Self::Error> {
        builder.build()
    }
}

impl From<PasswordPolicy> for PasswordPolicyBuilder {
    fn from(policy: PasswordPolicy) -> Self {
        policy.spec
    }
}

impl fmt::Debug for PasswordPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordPolicy")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Default for PasswordPolicy {
    /// The [`nist()`](Self::nist) preset.
    fn default() -> Self {
        Self::nist()
    }
}

/// Presets are built from constants known to pass `build()`; their construction is covered by
/// unit tests, so this never fails at run time.
fn preset(builder: PasswordPolicyBuilder) -> PasswordPolicy {
    let host_words = HostWords::new(&builder.prohibited_words, builder.prohibited_word_match);
    debug_assert!(builder.clone().build().is_ok());
    PasswordPolicy {
        spec: builder,
        host_words,
    }
}

impl PasswordPolicy {
    /// A builder starting from the defaults (the NIST values without the compliance lock).
    pub fn builder() -> PasswordPolicyBuilder {
        PasswordPolicyBuilder::default()
    }

    /// NIST SP 800-63B rev 4, password as the only factor: 15–128 code points, no
    /// composition rules, no expiry, blocklist and user-info checks on.
    pub fn nist() -> Self {
        preset(PasswordPolicyBuilder {
            compliance: Compliance::Nist,
            ..PasswordPolicyBuilder::default()
        })
    }

    /// As [`nist()`](Self::nist) for a password used with a second factor: minimum 8.
    pub fn nist_with_mfa() -> Self {
        preset(PasswordPolicyBuilder {
            compliance: Compliance::NistWithMfa,
            min_length: NIST_MFA_MIN_LENGTH,
            ..PasswordPolicyBuilder::default()
        })
    }

    /// A classic enterprise policy: 12–128 code points, two of each character class,
    /// zxcvbn score at least 3, sequences of 4+ and more than 3 repeats refused, last 5
    /// passwords refused, 90-day expiry, 1-day minimum age.
    pub fn enterprise() -> Self {
        preset(PasswordPolicyBuilder {
            compliance: Compliance::None,
            min_length: 12,
            max_length: DEFAULT_MAX_LENGTH,
            min_uppercase: 2,
            min_lowercase: 2,
            min_digits: 2,
            min_special: 2,
            sequence_min_run: 4,
            max_repeated: Some(3),
            min_score: Some(3),
            history_count: 5,
            expiry_days: Some(90),
            min_age_days: Some(1),
            ..PasswordPolicyBuilder::default()
        })
    }

    /// The settings, as a builder to derive a new policy from.
    pub fn to_builder(&self) -> PasswordPolicyBuilder {
        self.spec.clone()
    }

    /// The standard the policy keeps to.
    pub fn compliance(&self) -> Compliance {
        self.spec.compliance
    }
    /// Minimum length in code points.
    pub fn min_length(&self) -> u32 {
        self.spec.min_length
    }
    /// Maximum length in code points.
    pub fn max_length(&self) -> u32 {
        self.spec.max_length
    }
    /// Required upper-case letters.
    pub fn min_uppercase(&self) -> u32 {
        self.spec.min_uppercase
    }
    /// Required lower-case letters.
    pub fn min_lowercase(&self) -> u32 {
        self.spec.min_lowercase
    }
    /// Required digits.
    pub fn min_digits(&self) -> u32 {
        self.spec.min_digits
    }
    /// Required special characters.
    pub fn min_special(&self) -> u32 {
        self.spec.min_special
    }
    /// Whether the common-password list is checked.
    pub fn prohibit_common(&self) -> bool {
        self.spec.prohibit_common
    }
    /// The host words (folded).
    pub fn host_words(&self) -> &HostWords {
        &self.host_words
    }
    /// Whether user information is checked.
    pub fn prohibit_user_info(&self) -> bool {
        self.spec.prohibit_user_info
    }
    /// The similarity threshold.
    pub fn user_info_max_similarity(&self) -> f64 {
        self.spec.user_info_max_similarity
    }
    /// Whether sequential runs are refused.
    pub fn prohibit_sequences(&self) -> bool {
        self.spec.prohibit_sequences
    }
    /// Shortest refused sequential run.
    pub fn sequence_min_run(&self) -> u32 {
        self.spec.sequence_min_run
    }
    /// Most repeats of one character in a row.
    pub fn max_repeated(&self) -> Option<u32> {
        self.spec.max_repeated
    }
    /// Minimum zxcvbn score.
    pub fn min_score(&self) -> Option<u8> {
        self.spec.min_score
    }
    /// Number of previous passwords that may not be reused.
    pub fn history_count(&self) -> u32 {
        self.spec.history_count
    }
    /// Days until a password expires.
    pub fn expiry_days(&self) -> Option<u32> {
        self.spec.expiry_days
    }
    /// Days before a password may be changed again.
    pub fn min_age_days(&self) -> Option<u32> {
        self.spec.min_age_days
    }
    /// [`expiry_days`](Self::expiry_days) as a duration.
    pub fn expiry(&self) -> Option<chrono::Duration> {
        self.spec
            .expiry_days
            .map(|d| chrono::Duration::days(d.into()))
    }
    /// [`min_age_days`](Self::min_age_days) as a duration.
    pub fn min_age(&self) -> Option<chrono::Duration> {
        self.spec
            .min_age_days
            .map(|d| chrono::Duration::days(d.into()))
    }

    /// Checks every rule and returns **all** violations, with the zxcvbn estimate (fed the
    /// user's information) and the entropy figure. The strength estimate has a bounded cost
    /// (see [`strength`]); the rest is linear in the length.
    pub fn validate(&self, password: &NormalizedPassword, user: &UserInfo) -> ValidationReport {
        let inputs = user.strength_inputs();
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let estimate = strength::estimate(password, &inputs);
        self.report(password, user, Some(estimate))
    }

    /// As [`validate`](Self::validate) without the strength meter: the `min_score` rule is
    /// skipped and [`ValidationReport::strength`] is `None`. For instant feedback while
    /// typing; run [`validate`](Self::validate) before accepting a password.
    pub fn validate_rules(
        &self,
        password: &NormalizedPassword,
        user: &UserInfo,
    ) -> ValidationReport {
        self.report(password, user, None)
    }

    fn report(
        &self,
        password: &NormalizedPassword,
        user: &UserInfo,
        strength: Option<StrengthEstimate>,
    ) -> ValidationReport {
        let text = password.expose();
        let chars = password.char_count();
        let spec = &self.spec;
        let mut v = Vec::new();

        if chars < spec.min_length as usize {
            v.push(Violation::new(
                ViolationCode::TooShort,
                [("min", json!(spec.min_length)), ("actual", json!(chars))],
                format!(
                    "The password must be at least {} characters long.",
                    spec.min_length
                ),
            ));
        }
        if chars > spec.max_length as usize {
            v.push(Violation::new(
                ViolationCode::TooLong,
                [("max", json!(spec.max_length)), ("actual", json!(chars))],
                format!(
                    "The password must be at most {} characters long.",
                    spec.max_length
                ),
            ));
        }

        let classes = checks::classes(text);
        for (code, min, actual, what) in [
            (
                ViolationCode::TooFewUppercase,
                spec.min_uppercase,
                classes.upper,
                "upper-case letter",
            ),
            (
                ViolationCode::TooFewLowercase,
                spec.min_lowercase,
                classes.lower,
                "lower-case letter",
            ),
            (
                ViolationCode::TooFewDigits,
                spec.min_digits,
                classes.digits,
                "digit",
            ),
            (
                ViolationCode::TooFewSpecial,
                spec.min_special,
                classes.special,
                "special character",
            ),
        ] {
            if actual < min as usize {
                let plural = if min == 1 { "" } else { "s" };
                v.push(Violation::new(
                    code,
                    [("min", json!(min)), ("actual", json!(actual))],
                    format!("The password must contain at least {min} {what}{plural}."),
                ));
            }
        }

        let needs_fold = spec.prohibit_common || !self.host_words.is_empty();
        if needs_fold {
            let folded = dictionary::fold(text);
            let variants = dictionary::l33t_variants(&folded);
            if spec.prohibit_common && dictionary::is_common(&folded, &variants) {
                v.push(Violation::new(
                    ViolationCode::CommonPassword,
                    [],
                    "This password is too common.".to_owned(),
                ));
            }
            if !self.host_words.is_empty() && self.host_words.matches(&folded, &variants) {
                let mode = match self.host_words.mode() {
                    WordMatch::Exact => "exact",
                    WordMatch::Substring => "substring",
                };
                v.push(Violation::new(
                    ViolationCode::ProhibitedWord,
                    [("mode", json!(mode))],
                    "The password is or contains a word that is not allowed here.".to_owned(),
                ));
            }
        }

        if spec.prohibit_user_info {
            self.check_user_info(text, user, &mut v);
        }

        if spec.prohibit_sequences {
            let run = checks::longest_sequence(text);
            if run >= spec.sequence_min_run as usize {
                let max_run = spec.sequence_min_run - 1;
                v.push(Violation::new(
                    ViolationCode::SequentialCharacters,
                    [("max_run", json!(max_run)), ("actual", json!(run))],
                    format!(
                        "The password must not contain sequences (such as abcd, 4321 or qwer) longer than {max_run} characters."
                    ),
                ));
            }
        }
        if let Some(max) = spec.max_repeated {
            let run = checks::longest_repeat(text);
            if run > max as usize {
                v.push(Violation::new(
                    ViolationCode::RepeatedCharacters,
                    [("max", json!(max)), ("actual", json!(run))],
                    format!(
                        "The password must not repeat the same character more than {max} times in a row."
                    ),
                ));
            }
        }
        if let (Some(min), Some(estimate)) = (spec.min_score, strength.as_ref())
            && estimate.score < min
        {
            v.push(Violation::new(
                ViolationCode::TooWeak,
                [("min_score", json!(min)), ("score", json!(estimate.score))],
                format!(
                    "The password is too easy to guess (strength {} of 4, at least {min} needed).",
                    estimate.score
                ),
            ));
        }

        ValidationReport {
            violations: v,
            strength,
            entropy_bits: checks::search_space_bits(text, chars),
            char_count: chars,
        }
    }

    fn check_user_info(&self, text: &str, user: &UserInfo, out: &mut Vec<Violation>) {
        let pw = checks::alnum_fold(text);
        let unleeted = dictionary::l33t_variants(&dictionary::fold(text))
            .into_iter()
            .map(|v| checks::alnum_fold(&v))
            .collect::<Vec<_>>();
        let forms: Vec<&str> = std::iter::once(pw.as_str())
            .chain(unleeted.iter().map(String::as_str))
            .collect();
        let pw_chars: Vec<Vec<char>> = forms.iter().map(|f| f.chars().collect()).collect();
        let mut contains: Vec<UserInfoField> = Vec::new();
        let mut similar: Vec<UserInfoField> = Vec::new();
        for piece in user.pieces() {
            if contains.contains(&piece.field) {
                continue;
            }
            if forms.iter().any(|f| f.contains(piece.text.as_str())) {
                contains.push(piece.field);
                continue;
            }
            if !piece.whole || similar.contains(&piece.field) {
                continue;
            }
            let token: Vec<char> = piece.text.chars().collect();
            let max_similarity = self.spec.user_info_max_similarity;
            let is_similar = pw_chars.iter().any(|p| {
                if p.is_empty() {
                    return false;
                }
                // the shared run is at most the shorter length: skip the table when even a
                // full match could not pass the threshold
                let bound = p.len().min(token.len());
                let lcs_similar = bound >= MIN_USER_INFO_CHARS
                    && bound as f64 / p.len() as f64 > max_similarity
                    && {
                        let lcs = checks::longest_common_substring(p, &token);
                        lcs >= MIN_USER_INFO_CHARS && lcs as f64 / p.len() as f64 > max_similarity
                    };
                lcs_similar || checks::levenshtein_below(p, &token, MIN_IDENTIFIER_DISTANCE)
            });
            if is_similar {
                similar.push(piece.field);
            }
        }
        for field in contains {
            out.push(Violation::new(
                ViolationCode::ContainsUserInfo,
                [("field", json!(field.as_str()))],
                format!("The password must not contain your {}.", field.describe()),
            ));
        }
        for field in similar {
            out.push(Violation::new(
                ViolationCode::SimilarToUserInfo,
                [("field", json!(field.as_str()))],
                format!("The password is too similar to your {}.", field.describe()),
            ));
        }
    }
}

/// Which piece of user information a violation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UserInfoField {
    /// [`UserInfo::username`].
    Username,
    /// The local part of [`UserInfo::email`].
    Email,
    /// A label of the email domain.
    EmailDomain,
    /// [`UserInfo::display_name`].
    DisplayName,
    /// One of [`UserInfo::other`].
    Other,
}

impl UserInfoField {
    /// The stable name used in violation params.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Email => "email",
            Self::EmailDomain => "email_domain",
            Self::DisplayName => "display_name",
            Self::Other => "other",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Email => "email address",
            Self::EmailDomain => "email domain",
            Self::DisplayName => "name",
            Self::Other => "personal information",
        }
    }
}

/// What the policy knows about the account, for the user-info checks and as zxcvbn inputs.
///
/// Checked pieces (compared on lower-cased letters and digits, pieces under 3 skipped):
/// the username; the email local part; each email domain label except the top-level one; the
/// display name; each word (4+ letters) of the username, local part and display name; and
/// every `other` value. A password that *contains* a piece fails with
/// [`ContainsUserInfo`](ViolationCode::ContainsUserInfo). A password that shares a run of
/// more than [`user_info_max_similarity`](PasswordPolicyBuilder::user_info_max_similarity)
/// of its length with a whole value, or is within [`MIN_IDENTIFIER_DISTANCE`] edits of it,
/// fails with [`SimilarToUserInfo`](ViolationCode::SimilarToUserInfo) (Ory Kratos' rule).
/// Both are also checked with l33t substitutions undone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserInfo {
    /// The login name.
    pub username: Option<String>,
    /// The email address.
    pub email: Option<String>,
    /// The person's name.
    pub display_name: Option<String>,
    /// Anything else the password should not contain (an account id, a city...).
    pub other: Vec<String>,
}

struct Piece {
    field: UserInfoField,
    text: String,
    /// A whole value (similarity is checked), not a word of one.
    whole: bool,
}

impl UserInfo {
    /// No information.
    pub fn new() -> Self {
        Self::default()
    }

    /// With a username.
    #[must_use]
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// With an email address.
    #[must_use]
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// With a display name.
    #[must_use]
    pub fn with_display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// With one more value.
    #[must_use]
    pub fn with_other(mut self, value: impl Into<String>) -> Self {
        self.other.push(value.into());
        self
    }

    fn pieces(&self) -> Vec<Piece> {
        use unicode_normalization::UnicodeNormalization;
        let mut out = Vec::new();
        let mut push = |field, raw: &str, whole| {
            let raw: String = raw.chars().take(checks::SIMILARITY_MAX_CHARS).collect();
            // ASCII is already in NFKC
            let text = if raw.is_ascii() {
                checks::alnum_fold(&raw)
            } else {
                checks::alnum_fold(&raw.nfkc().collect::<String>())
            };
            if text.chars().count() >= MIN_USER_INFO_CHARS {
                out.push(Piece { field, text, whole });
            }
        };
        let words = |s: &str| -> Vec<String> {
            s.split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.chars().count() >= 4)
                .map(str::to_owned)
                .collect()
        };
        if let Some(name) = &self.username {
            push(UserInfoField::Username, name, true);
            for w in words(name) {
                push(UserInfoField::Username, &w, false);
            }
        }
        if let Some(email) = &self.email {
            let (local, domain) = email.rsplit_once('@').unwrap_or((email.as_str(), ""));
            push(UserInfoField::Email, local, true);
            for w in words(local) {
                push(UserInfoField::Email, &w, false);
            }
            let labels: Vec<&str> = domain.split('.').collect();
            if labels.len() > 1 {
                for label in &labels[..labels.len() - 1] {
                    push(UserInfoField::EmailDomain, label, false);
                }
            }
        }
        if let Some(name) = &self.display_name {
            push(UserInfoField::DisplayName, name, true);
            for w in words(name) {
                push(UserInfoField::DisplayName, &w, false);
            }
        }
        for value in self.other.iter().take(16) {
            push(UserInfoField::Other, value, true);
        }
        out
    }

    /// The values given to zxcvbn as user inputs.
    fn strength_inputs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for value in [&self.username, &self.display_name].into_iter().flatten() {
            out.push(value.to_lowercase());
        }
        if let Some(email) = &self.email {
            out.push(email.to_lowercase());
            if let Some((local, _)) = email.rsplit_once('@') {
                out.push(local.to_lowercase());
            }
        }
        out.extend(self.other.iter().take(8).map(|s| s.to_lowercase()));
        out
    }
}
