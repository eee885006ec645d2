//! The one error type of this crate.

use umanage_core::{BackendError, UserId};

/// Why a username was rejected (see the crate docs for the rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsernameProblem {
    /// Nothing left after trimming.
    #[error("username is empty")]
    Empty,
    /// Fewer characters than [`Username::MIN_CHARS`](crate::Username::MIN_CHARS).
    #[error("username is shorter than {min} characters")]
    TooShort {
        /// The minimum.
        min: usize,
    },
    /// More characters than [`Username::MAX_CHARS`](crate::Username::MAX_CHARS) (or a raw
    /// input longer than [`Username::MAX_INPUT_BYTES`](crate::Username::MAX_INPUT_BYTES)).
    #[error("username is longer than {max} characters")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// A character outside letters, digits, `.`, `_` and `-` (whitespace, controls,
    /// invisible format characters, symbols, emoji...).
    #[error("username contains the character {character:?}, which is not allowed")]
    ForbiddenCharacter {
        /// The offending character (after normalisation).
        character: char,
    },
    /// Starts or ends with `.`, `_` or `-`.
    #[error("username must start and end with a letter or digit")]
    BadEdge,
    /// Mixes Latin, Greek and Cyrillic letters (the usual homograph trick, e.g. a Cyrillic
    /// `а` in `аdmin`).
    #[error("username mixes Latin, Greek or Cyrillic letters")]
    MixedScripts,
}

/// Why an email address was rejected (see the crate docs for the rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmailProblem {
    /// Nothing left after trimming.
    #[error("email is empty")]
    Empty,
    /// Longer than [`Email::MAX_BYTES`](crate::Email::MAX_BYTES) octets.
    #[error("email is longer than {max} octets")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// Not exactly one `@`.
    #[error("email must contain exactly one '@'")]
    AtSign,
    /// The local part (before `@`) is empty, longer than
    /// [`Email::MAX_LOCAL_BYTES`](crate::Email::MAX_LOCAL_BYTES) octets, has a character
    /// that is not allowed unquoted, or a leading, trailing or doubled dot.
    #[error("the part before '@' is not a valid unquoted local part")]
    LocalPart,
    /// The domain is not a dotted host name of letters, digits and hyphens (labels of
    /// 1-63 octets, no leading or trailing hyphen, at most 253 octets).
    #[error("the part after '@' is not a valid domain name")]
    Domain,
}

/// Why a free-text field (display name, lock reason) was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextProblem {
    /// Nothing left after trimming.
    #[error("text is empty")]
    Empty,
    /// More characters than allowed.
    #[error("text is longer than {max} characters")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// A control character (including NUL, which Postgres cannot store) or an invisible
    /// bidirectional override.
    #[error("text contains a control or bidi-override character")]
    ControlCharacter,
}

/// Errors of the account store.
///
/// Invalid input and conflicts are typed variants a server maps to 422 / 409 / 404; only
/// [`AccountError::Backend`] is an infrastructure failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The username fails the rules.
    #[error("invalid username: {reason}")]
    InvalidUsername {
        /// What is wrong.
        reason: UsernameProblem,
    },
    /// The email address fails the rules.
    #[error("invalid email: {reason}")]
    InvalidEmail {
        /// What is wrong.
        reason: EmailProblem,
    },
    /// A role name fails the rules of [`Role`](crate::Role).
    #[error("invalid role name: must be 1-64 of a-z, 0-9, '_', '-', '.', ':'")]
    InvalidRole,
    /// The display name fails the rules.
    #[error("invalid display name: {reason}")]
    InvalidDisplayName {
        /// What is wrong.
        reason: TextProblem,
    },
    /// The reason of a lock fails the rules.
    #[error("invalid lock reason: {reason}")]
    InvalidLockReason {
        /// What is wrong.
        reason: TextProblem,
    },
    /// A page cursor that this crate did not produce.
    #[error("invalid page cursor")]
    InvalidCursor,
    /// Another account has this username (compared after normalisation).
    #[error("username is already taken")]
    UsernameTaken,
    /// Another account has this email address (compared case-insensitively).
    #[error("email is already taken")]
    EmailTaken,
    /// No account has this id.
    #[error("account {id} not found")]
    NotFound {
        /// The id looked for.
        id: UserId,
    },
    /// The account changed since it was read: reload it and retry.
    #[error("account {id} is at version {actual}, not the expected {expected}")]
    VersionConflict {
        /// The account.
        id: UserId,
        /// The version the caller based its change on.
        expected: u64,
        /// The version stored now.
        actual: u64,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl AccountError {
    /// Whether this is a uniqueness conflict ([`UsernameTaken`](Self::UsernameTaken) or
    /// [`EmailTaken`](Self::EmailTaken)), which an HTTP API answers with 409.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::UsernameTaken | Self::EmailTaken)
    }

    /// A stable, machine-readable code for this error, for API responses (an RFC 9457
    /// problem's `code`, a violation's `code`). Codes never change meaning; new variants get
    /// new codes.
    ///
    /// | variant | code | HTTP |
    /// | --- | --- | --- |
    /// | `InvalidUsername` | `invalid_username` | 422 |
    /// | `InvalidEmail` | `invalid_email` | 422 |
    /// | `InvalidRole` | `invalid_role` | 422 |
    /// | `InvalidDisplayName` | `invalid_display_name` | 422 |
    /// | `InvalidLockReason` | `invalid_lock_reason` | 422 |
    /// | `InvalidCursor` | `invalid_cursor` | 400 |
    /// | `UsernameTaken` | `username_taken` | 409 |
    /// | `EmailTaken` | `email_taken` | 409 |
    /// | `NotFound` | `account_not_found` | 404 |
    /// | `VersionConflict` | `version_conflict` | 409 |
    /// | `Backend` | `backend_unavailable` | 503 |
    ///
    /// ```
    /// use umanage_account::{AccountError, NewAccount};
    ///
    /// let err = NewAccount::new("a b", "x@example.com").validate().unwrap_err();
    /// assert_eq!(err.code(), "invalid_username");
    /// assert_eq!(err.http_status(), 422);
    /// assert_eq!(AccountError::EmailTaken.code(), "email_taken");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUsername { .. } => "invalid_username",
            Self::InvalidEmail { .. } => "invalid_email",
            Self::InvalidRole => "invalid_role",
            Self::InvalidDisplayName { .. } => "invalid_display_name",
            Self::InvalidLockReason { .. } => "invalid_lock_reason",
            Self::InvalidCursor => "invalid_cursor",
            Self::UsernameTaken => "username_taken",
            Self::EmailTaken => "email_taken",
            Self::NotFound { .. } => "account_not_found",
            Self::VersionConflict { .. } => "version_conflict",
            Self::Backend(_) => "backend_unavailable",
        }
    }

    /// The HTTP status an API answers this error with (see the table on
    /// [`code`](Self::code)).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidCursor => 400,
            Self::NotFound { .. } => 404,
            Self::UsernameTaken | Self::EmailTaken | Self::VersionConflict { .. } => 409,
            Self::Backend(_) => 503,
            _ => 422,
        }
    }

    /// Whether this is invalid input (an HTTP API answers with 422).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidUsername { .. }
                | Self::InvalidEmail { .. }
                | Self::InvalidRole
                | Self::InvalidDisplayName { .. }
                | Self::InvalidLockReason { .. }
                | Self::InvalidCursor
        )
    }
}

/// The error of [`create_with`](crate::create_with): the account could not be created, or
/// the follow-up step failed (and the account was removed again, or could not be).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateWithError<E> {
    /// `create` failed; nothing was written.
    #[error(transparent)]
    Account(AccountError),
    /// The follow-up failed and the account was deleted again: nothing remains.
    #[error("the step after creating the account failed; the account was removed")]
    FollowUp(E),
    /// The follow-up failed and deleting the account failed too: the account exists without
    /// what the follow-up should have written. The host should log `account` and retry
    /// the delete.
    #[error("the step after creating account {account} failed and removing it failed: {cleanup}")]
    Cleanup {
        /// The account that remains.
        account: UserId,
        /// Why the follow-up failed.
        error: E,
        /// Why the delete failed.
        cleanup: AccountError,
    },
}

/// Result alias of this crate.
pub type Result<T, E = AccountError> = std::result::Result<T, E>;
