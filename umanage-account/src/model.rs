//! Accounts and their validated parts: [`Username`], [`Email`], [`Role`], [`AccountStatus`].
//!
//! Everything that reaches a store passes through the constructors here, so every backend
//! sees the same normalised strings and the same typed errors.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use umanage_core::UserId;
use unicode_normalization::UnicodeNormalization;

use crate::error::{AccountError, EmailProblem, Result, TextProblem, UsernameProblem};

/// A normalised, validated username.
///
/// [`Username::parse`] trims surrounding whitespace, applies Unicode NFKC (so full-width
/// `Ａｌｉｃｅ` and `Alice` are the same), lower-cases (Unicode `to_lowercase`) and
/// re-applies NFKC. The result must be 3 to 64 characters of letters and digits (any
/// script) and `.`, `_`, `-`, starting and ending with a letter or digit, and must not
/// mix Latin, Greek and Cyrillic letters. Whitespace, controls, invisible format
/// characters (zero-width joiners, bidi overrides), symbols and emoji are rejected.
///
/// The normalised form is what is stored and shown, so it is also the uniqueness key.
///
/// ```
/// use umanage_account::Username;
///
/// let name = Username::parse("  Ａｌｉｃｅ.Smith ").unwrap();
/// assert_eq!(name.as_str(), "alice.smith");
/// assert!(Username::parse("al ice").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// Fewest characters (after normalisation).
    pub const MIN_CHARS: usize = 3;
    /// Most characters (after normalisation).
    pub const MAX_CHARS: usize = 64;
    /// Raw inputs longer than this are rejected before any normalisation work.
    pub const MAX_INPUT_BYTES: usize = 1024;

    /// Normalises and validates `input`.
    ///
    /// # Errors
    ///
    /// [`AccountError::InvalidUsername`] with the [`UsernameProblem`].
    pub fn parse(input: &str) -> Result<Self> {
        normalize_username(input)
            .map(Self)
            .map_err(|reason| AccountError::InvalidUsername { reason })
    }

    /// The normalised username.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a username a store wrote after validating it (not re-checked, so rows stay
    /// readable if the rules tighten later).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn from_stored(name: String) -> Self {
        Self(name)
    }
}

fn normalize_username(input: &str) -> Result<String, UsernameProblem> {
    if input.len() > Username::MAX_INPUT_BYTES {
        return Err(UsernameProblem::TooLong {
            max: Username::MAX_CHARS,
        });
    }
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(UsernameProblem::Empty);
    }
    let lowered = trimmed.nfkc().collect::<String>().to_lowercase();
    let name: String = lowered.nfkc().collect();

    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some(character) = name.chars().find(|&c| !allowed(c)) {
        return Err(UsernameProblem::ForbiddenCharacter { character });
    }
    let edge_ok = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().next_back()) {
        return Err(UsernameProblem::BadEdge);
    }
    let len = name.chars().count();
    if len < Username::MIN_CHARS {
        return Err(UsernameProblem::TooShort {
            min: Username::MIN_CHARS,
        });
    }
    if len > Username::MAX_CHARS {
        return Err(UsernameProblem::TooLong {
            max: Username::MAX_CHARS,
        });
    }
    let mut scripts = name.chars().filter_map(confusable_script);
    if let Some(first) = scripts.next()
        && scripts.any(|s| s != first)
    {
        return Err(UsernameProblem::MixedScripts);
    }
    Ok(name)
}

/// The scripts whose letters are commonly confused with each other.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Greek,
    Cyrillic,
}

fn confusable_script(c: char) -> Option<Script> {
    match c {
        'a'..='z' | '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' => Some(Script::Latin),
        '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' => Some(Script::Greek),
        '\u{0400}'..='\u{052F}'
        | '\u{1C80}'..='\u{1C8F}'
        | '\u{2DE0}'..='\u{2DFF}'
        | '\u{A640}'..='\u{A69F}' => Some(Script::Cyrillic),
        _ => None,
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({:?})", self.0)
    }
}

impl FromStr for Username {
    type Err = AccountError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Username {
    type Error = AccountError;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<Username> for String {
    fn from(u: Username) -> Self {
        u.0
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A validated email address, with its uniqueness key.
///
/// [`Email::parse`]:
///
/// * trims surrounding whitespace; the address must have exactly one `@` (quoted local
///   parts and address literals such as `[192.0.2.1]` are not accepted);
/// * keeps the **local part exactly as typed** (RFC 5321 §2.4 leaves its case to the
///   receiving server), which must be 1-64 octets of RFC 5322 `atext` (letters, digits,
///   ``!#$%&'*+-/=?^_`{|}~``) or non-ASCII characters (RFC 6531), with dots only between
///   other characters; controls, whitespace and invisible format characters are rejected;
/// * **lower-cases the domain**: ASCII domains are ASCII-lower-cased; a domain with
///   non-ASCII characters gets NFKC plus Unicode lower-casing (the mapping step of
///   UTS #46) but is *not* converted to Punycode, so `bücher.example` and
///   `xn--bcher-kva.example` are different addresses here. The domain must have at least
///   two labels of letters, digits and `-` (1-63 octets each, no leading or trailing `-`,
///   not an all-digit top-level label), at most 253 octets;
/// * limits the whole address to 254 octets (RFC 5321 §4.5.3.1).
///
/// The uniqueness [`key`](Self::key) is the whole address lower-cased (local part NFC
/// then Unicode lower-cased). So `Bob@Example.COM` and `bob@example.com` count as the
/// same address for uniqueness, while the stored address keeps `Bob`.
///
/// ```
/// use umanage_account::Email;
///
/// let email = Email::parse(" Bob.Smith@Example.COM ").unwrap();
/// assert_eq!(email.as_str(), "Bob.Smith@example.com");
/// assert_eq!(email.key(), "bob.smith@example.com");
/// assert!(Email::parse("bob@@example.com").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email {
    address: String,
    key: String,
    at: usize,
}

impl Email {
    /// Longest address in octets (RFC 5321 path limit minus the angle brackets).
    pub const MAX_BYTES: usize = 254;
    /// Longest local part in octets (RFC 5321 §4.5.3.1.1).
    pub const MAX_LOCAL_BYTES: usize = 64;
    /// Longest domain in octets.
    pub const MAX_DOMAIN_BYTES: usize = 253;
    /// Raw inputs longer than this are rejected before any normalisation work.
    pub const MAX_INPUT_BYTES: usize = 1024;

    /// Validates and normalises `input`.
    ///
    /// # Errors
    ///
    /// [`AccountError::InvalidEmail`] with the [`EmailProblem`].
    pub fn parse(input: &str) -> Result<Self> {
        parse_email(input).map_err(|reason| AccountError::InvalidEmail { reason })
    }

    /// The address as stored: local part as typed, domain lower-cased.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The uniqueness key: the whole address lower-cased.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The part before `@`, as typed.
    pub fn local_part(&self) -> &str {
        &self.address[..self.at]
    }

    /// The part after `@`, lower-cased.
    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }

    /// Rebuilds an address a store wrote after validating it; `None` without an `@`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn from_stored(address: String, key: String) -> Option<Self> {
        let at = address.find('@')?;
        Some(Self { address, key, at })
    }
}

fn parse_email(input: &str) -> Result<Email, EmailProblem> {
    if input.len() > Email::MAX_INPUT_BYTES {
        return Err(EmailProblem::TooLong {
            max: Email::MAX_BYTES,
        });
    }
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(EmailProblem::Empty);
    }
    let mut parts = trimmed.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(EmailProblem::AtSign);
    };
    if !valid_local_part(local) {
        return Err(EmailProblem::LocalPart);
    }
    let domain = normalize_domain(domain).ok_or(EmailProblem::Domain)?;
    let address = format!("{local}@{domain}");
    if address.len() > Email::MAX_BYTES {
        return Err(EmailProblem::TooLong {
            max: Email::MAX_BYTES,
        });
    }
    let key = format!(
        "{}@{domain}",
        local.nfc().collect::<String>().to_lowercase()
    );
    Ok(Email {
        address,
        key,
        at: local.len(),
    })
}

fn valid_local_part(local: &str) -> bool {
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && !c.is_control() && !c.is_whitespace() && !is_invisible(c))
    };
    !local.is_empty()
        && local.len() <= Email::MAX_LOCAL_BYTES
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext))
}

fn normalize_domain(domain: &str) -> Option<String> {
    let domain = if domain.is_ascii() {
        domain.to_ascii_lowercase()
    } else {
        let lowered = domain.nfkc().collect::<String>().to_lowercase();
        lowered.nfkc().collect()
    };
    if domain.len() > Email::MAX_DOMAIN_BYTES {
        return None;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
    (labels.len() >= 2 && labels.iter().all(label_ok) && tld_ok).then_some(domain)
}

/// Zero-width and bidi-control characters that render as nothing but change meaning.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({:?})", self.address)
    }
}

impl FromStr for Email {
    type Err = AccountError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Email {
    type Error = AccountError;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> Self {
        e.address
    }
}

/// A role name: 1-64 characters of `a-z`, `0-9`, `_`, `-`, `.`, `:`.
///
/// [`Role::new`] trims and ASCII-lower-cases its input, so `Admin` is `admin`.
///
/// ```
/// use umanage_account::Role;
///
/// assert_eq!(Role::new(" Admin ").unwrap(), Role::admin());
/// assert!(Role::new("rm -rf").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Role(String);

impl Role {
    /// The name of the administrator role.
    pub const ADMIN: &'static str = "admin";
    /// Longest role name.
    pub const MAX_CHARS: usize = 64;

    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`AccountError::InvalidRole`] for an empty or too long name or a character outside
    /// the allowed set.
    pub fn new(name: &str) -> Result<Self> {
        let name = name.trim();
        let ok = !name.is_empty()
            && name.len() <= Self::MAX_CHARS
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if ok {
            Ok(Self(name.to_ascii_lowercase()))
        } else {
            Err(AccountError::InvalidRole)
        }
    }

    /// The `admin` role.
    pub fn admin() -> Self {
        Self(Self::ADMIN.to_owned())
    }

    /// The role name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a role name a store wrote after validating it.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn from_stored(name: String) -> Self {
        Self(name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Role {
    type Err = AccountError;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<String> for Role {
    type Error = AccountError;
    fn try_from(s: String) -> Result<Self> {
        Self::new(&s)
    }
}

impl From<Role> for String {
    fn from(r: Role) -> Self {
        r.0
    }
}

/// Whether an account may sign in.
///
/// Serialised with a `state` tag: `{"state":"active"}`,
/// `{"state":"locked","until":"2025-01-01T00:00:00Z","reason":"too many failures"}`,
/// `{"state":"disabled"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AccountStatus {
    /// Normal.
    #[default]
    Active,
    /// Temporarily (until `until`) or indefinitely (`None`) locked.
    Locked {
        /// When the lock ends by itself; `None` = until an admin unlocks.
        until: Option<DateTime<Utc>>,
        /// Why (shown to admins): 1-256 characters, no control characters.
        reason: String,
    },
    /// Switched off by an admin (or the user); never signs in.
    Disabled,
}

impl AccountStatus {
    /// Longest lock reason in characters.
    pub const MAX_REASON_CHARS: usize = 256;

    /// A lock (validated when stored).
    pub fn locked(until: Option<DateTime<Utc>>, reason: impl Into<String>) -> Self {
        Self::Locked {
            until,
            reason: reason.into(),
        }
    }

    /// Whether an account with this status may sign in at `now` (a lock whose `until` has
    /// passed no longer applies).
    pub fn allows_login(&self, now: DateTime<Utc>) -> bool {
        match self {
            Self::Active => true,
            Self::Locked { until, .. } => until.is_some_and(|t| now >= t),
            Self::Disabled => false,
        }
    }

    /// The status with a trimmed, validated lock reason.
    ///
    /// # Errors
    ///
    /// [`AccountError::InvalidLockReason`].
    pub fn normalized(self) -> Result<Self> {
        match self {
            Self::Locked { until, reason } => Ok(Self::Locked {
                until,
                reason: normalize_text(&reason, Self::MAX_REASON_CHARS)
                    .map_err(|reason| AccountError::InvalidLockReason { reason })?,
            }),
            other => Ok(other),
        }
    }
}

/// Trims `text` and checks it is 1..=`max` characters without controls or bidi overrides.
fn normalize_text(text: &str, max: usize) -> Result<String, TextProblem> {
    // A byte bound first, so a huge input costs nothing more than this comparison.
    if text.len() > max * 4 + 64 {
        return Err(TextProblem::TooLong { max });
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(TextProblem::Empty);
    }
    if text.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(TextProblem::ControlCharacter);
    }
    if text.chars().count() > max {
        return Err(TextProblem::TooLong { max });
    }
    Ok(text.to_owned())
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The id (random, assigned by the store).
    pub id: UserId,
    /// The normalised username (unique).
    pub username: Username,
    /// The email address (unique by [`Email::key`]).
    pub email: Email,
    /// A free-form name to show, if given.
    pub display_name: Option<String>,
    /// Roles, such as [`Role::admin`].
    pub roles: BTreeSet<Role>,
    /// Whether the account may sign in.
    pub status: AccountStatus,
    /// When the account was created (see the store type for which clock).
    pub created_at: DateTime<Utc>,
    /// When the account last changed.
    pub updated_at: DateTime<Utc>,
    /// Starts at 1 and grows by one on every change; pass it back as `expected_version`.
    pub version: u64,
}

impl Account {
    /// Whether the account has `role`.
    pub fn has_role(&self, role: &Role) -> bool {
        self.roles.contains(role)
    }
}

/// The input of [`AccountStore::create`](crate::AccountStore::create): raw strings, which
/// the store normalises and validates.
///
/// ```
/// use umanage_account::{NewAccount, Role};
///
/// let new = NewAccount::new("alice", "Alice@Example.com")
///     .display_name("Alice Liddell")
///     .role(Role::admin());
/// assert_eq!(new.roles.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// The username as typed.
    pub username: String,
    /// The email address as typed.
    pub email: String,
    /// A name to show (trimmed; 1-128 characters, no control characters).
    #[serde(default)]
    pub display_name: Option<String>,
    /// Initial roles.
    #[serde(default)]
    pub roles: BTreeSet<Role>,
    /// Initial status.
    #[serde(default)]
    pub status: AccountStatus,
}

impl NewAccount {
    /// Longest display name in characters.
    pub const MAX_DISPLAY_NAME_CHARS: usize = 128;

    /// An active account without roles or display name.
    pub fn new(username: impl Into<String>, email: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            email: email.into(),
            ..Self::default()
        }
    }

    /// Sets the display name.
    #[must_use]
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// Adds a role.
    #[must_use]
    pub fn role(mut self, role: Role) -> Self {
        self.roles.insert(role);
        self
    }

    /// Sets the initial status.
    #[must_use]
    pub fn status(mut self, status: AccountStatus) -> Self {
        self.status = status;
        self
    }

    /// Trims and validates a display name (1-128 characters, no control or bidi-override
    /// characters), as `create` and `update_display_name` do.
    ///
    /// # Errors
    ///
    /// [`AccountError::InvalidDisplayName`].
    pub fn normalize_display_name(name: &str) -> Result<String> {
        normalize_text(name, Self::MAX_DISPLAY_NAME_CHARS)
            .map_err(|reason| AccountError::InvalidDisplayName { reason })
    }

    /// Normalises and validates every field, as the stores do in `create`.
    ///
    /// # Errors
    ///
    /// [`AccountError::InvalidUsername`], [`AccountError::InvalidEmail`],
    /// [`AccountError::InvalidDisplayName`] or [`AccountError::InvalidLockReason`].
    pub fn validate(self) -> Result<ValidNewAccount> {
        let username = Username::parse(&self.username)?;
        let email = Email::parse(&self.email)?;
        let display_name = self
            .display_name
            .as_deref()
            .map(Self::normalize_display_name)
            .transpose()?;
        let status = self.status.normalized()?;
        Ok(ValidNewAccount {
            username,
            email,
            display_name,
            roles: self.roles,
            status,
        })
    }
}

/// A [`NewAccount`] that passed [`NewAccount::validate`]: what a backend inserts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidNewAccount {
    /// The normalised username.
    pub username: Username,
    /// The validated email.
    pub email: Email,
    /// The trimmed display name.
    pub display_name: Option<String>,
    /// Roles.
    pub roles: BTreeSet<Role>,
    /// The status, lock reason trimmed.
    pub status: AccountStatus,
}

impl ValidNewAccount {
    /// The account this becomes, with the given id and creation time, at version 1.
    pub fn into_account(self, id: UserId, now: DateTime<Utc>) -> Account {
        Account {
            id,
            username: self.username,
            email: self.email,
            display_name: self.display_name,
            roles: self.roles,
            status: self.status,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }
}

/// What a login form's "username or email" field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// No `@`: a username.
    Username(Username),
    /// Has an `@`: an email address (usernames cannot contain `@`).
    Email(Email),
}

impl Login {
    /// Normalises `input` the way [`Username::parse`] or [`Email::parse`] does; `None`
    /// when it is neither (no account can match it).
    pub fn parse(input: &str) -> Option<Self> {
        if input.contains('@') {
            Email::parse(input).ok().map(Self::Email)
        } else {
            Username::parse(input).ok().map(Self::Username)
        }
    }
}

/// Where a page of [`AccountStore::list`](crate::AccountStore::list) ends: the next page
/// starts after this id. Its text form (for an HTTP `cursor` parameter) is opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountCursor(pub(crate) UserId);

impl AccountCursor {
    /// The cursor after `id`.
    pub const fn after(id: UserId) -> Self {
        Self(id)
    }

    /// The last id of the previous page.
    pub const fn last_id(&self) -> UserId {
        self.0
    }
}

impl fmt::Display for AccountCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_uuid().simple())
    }
}

impl FromStr for AccountCursor {
    type Err = AccountError;
    fn from_str(s: &str) -> Result<Self> {
        // Exactly the 32 hex digits Display writes, nothing else.
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AccountError::InvalidCursor);
        }
        s.parse::<UserId>()
            .map(Self)
            .map_err(|_| AccountError::InvalidCursor)
    }
}

impl TryFrom<String> for AccountCursor {
    type Error = AccountError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<AccountCursor> for String {
    fn from(c: AccountCursor) -> Self {
        c.to_string()
    }
}

/// One page of accounts, in id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPage {
    /// The accounts.
    pub accounts: Vec<Account>,
    /// Pass to the next `list` call; `None` on the last page.
    pub next_cursor: Option<AccountCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn username_problem(input: &str) -> UsernameProblem {
        match Username::parse(input) {
            Err(AccountError::InvalidUsername { reason }) => reason,
            other => panic!("{input:?}: {other:?}"),
        }
    }

    fn email_problem(input: &str) -> EmailProblem {
        match Email::parse(input) {
            Err(AccountError::InvalidEmail { reason }) => reason,
            other => panic!("{input:?}: {other:?}"),
        }
    }

    #[test]
    fn usernames_normalise() {
        for (input, expected) in [
            ("alice", "alice"),
            ("  Alice  ", "alice"),
            ("ALICE.smith_2-x", "alice.smith_2-x"),
            // Full-width forms (NFKC).
            ("Ａｌｉｃｅ", "alice"),
            // Ligature "ﬁ" (U+FB01) decomposes to "fi".
            ("ﬁona", "fiona"),
            // Decomposed é composes, upper-case Greek lower-cases.
            ("Rene\u{301}e", "renée"),
            ("ΣΟΦΙΑ", "σοφια"),
            ("Дмитрий", "дмитрий"),
            ("山田太郎", "山田太郎"),
            ("abc", "abc"),
            (&"a".repeat(64), &"a".repeat(64)),
        ] {
            assert_eq!(
                Username::parse(input).unwrap().as_str(),
                expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn usernames_reject_with_reasons() {
        use UsernameProblem::*;
        for (input, expected) in [
            ("", Empty),
            ("   \t\n", Empty),
            ("ab", TooShort { min: 3 }),
            (&"a".repeat(65), TooLong { max: 64 }),
            (&"a".repeat(2000), TooLong { max: 64 }),
            ("al ice", ForbiddenCharacter { character: ' ' }),
            ("al\u{0}ice", ForbiddenCharacter { character: '\0' }),
            (
                "al\u{200B}ice",
                ForbiddenCharacter {
                    character: '\u{200B}',
                },
            ),
            (
                "\u{202E}ecila",
                ForbiddenCharacter {
                    character: '\u{202E}',
                },
            ),
            ("bob@example.com", ForbiddenCharacter { character: '@' }),
            ("ali😀ce", ForbiddenCharacter { character: '😀' }),
            (
                "x'; DROP TABLE umanage_accounts; --",
                ForbiddenCharacter { character: '\'' },
            ),
            (".alice", BadEdge),
            ("alice-", BadEdge),
            ("__", BadEdge),
            // Cyrillic "а" (U+0430) inside Latin "admin".
            ("\u{0430}dmin", MixedScripts),
            ("pαypal", MixedScripts),
        ] {
            assert_eq!(username_problem(input), expected, "{input:?}");
        }
    }

    #[test]
    fn emails_normalise_domain_and_keep_local_case() {
        for (input, address, key) in [
            ("bob@example.com", "bob@example.com", "bob@example.com"),
            (" Bob@Example.COM ", "Bob@example.com", "bob@example.com"),
            (
                "O'Neil+tag@Sub.Example.org",
                "O'Neil+tag@sub.example.org",
                "o'neil+tag@sub.example.org",
            ),
            (
                "first.last@example.co.uk",
                "first.last@example.co.uk",
                "first.last@example.co.uk",
            ),
            (
                "Jörg@Bücher.Example",
                "Jörg@bücher.example",
                "jörg@bücher.example",
            ),
            (
                "user@XN--BCHER-KVA.example",
                "user@xn--bcher-kva.example",
                "user@xn--bcher-kva.example",
            ),
            // Full-width domain letters fold under NFKC.
            ("a@ＥＸＡＭＰＬＥ.com", "a@example.com", "a@example.com"),
        ] {
            let email = Email::parse(input).unwrap();
            assert_eq!(email.as_str(), address, "{input:?}");
            assert_eq!(email.key(), key, "{input:?}");
            assert_eq!(
                format!("{}@{}", email.local_part(), email.domain()),
                address
            );
        }
    }

    #[test]
    fn emails_reject_with_reasons() {
        use EmailProblem::*;
        let long_local = format!("{}@example.com", "a".repeat(65));
        let max_local = format!("{}@example.com", "a".repeat(64));
        assert!(Email::parse(&max_local).is_ok());
        let long_total = format!(
            "{}@{}.com",
            "a".repeat(64),
            vec!["b".repeat(60); 4].join(".")
        );
        for (input, expected) in [
            ("", Empty),
            ("  ", Empty),
            ("bob", AtSign),
            ("bob@@example.com", AtSign),
            ("a@b@example.com", AtSign),
            ("@example.com", LocalPart),
            (".bob@example.com", LocalPart),
            ("bob.@example.com", LocalPart),
            ("bo..b@example.com", LocalPart),
            ("bo b@example.com", LocalPart),
            ("bo\u{0}b@example.com", LocalPart),
            ("\"bob\"@example.com", LocalPart),
            ("bob\u{200D}@example.com", LocalPart),
            (&long_local, LocalPart),
            ("bob@", Domain),
            ("bob@localhost", Domain),
            ("bob@example..com", Domain),
            ("bob@-example.com", Domain),
            ("bob@example-.com", Domain),
            ("bob@example.com.", Domain),
            ("bob@[192.0.2.1]", Domain),
            ("bob@192.0.2.1", Domain),
            ("bob@exa mple.com", Domain),
            ("bob@exam_ple.com", Domain),
            ("bob@😀.com", Domain),
            (&long_total, TooLong { max: 254 }),
        ] {
            assert_eq!(email_problem(input), expected, "{input:?}");
        }
        assert_eq!(email_problem(&"a".repeat(1 << 20)), TooLong { max: 254 });
    }

    #[test]
    fn roles_are_validated() {
        assert_eq!(
            Role::new("Support:Tier-1").unwrap().as_str(),
            "support:tier-1"
        );
        for bad in ["", " ", "a b", "ädmin", "x;y", &"r".repeat(65), "a\0"] {
            assert!(
                matches!(Role::new(bad), Err(AccountError::InvalidRole)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn status_rules() {
        let t = DateTime::<Utc>::from_timestamp(1_000, 0).unwrap();
        assert!(AccountStatus::Active.allows_login(t));
        assert!(!AccountStatus::Disabled.allows_login(t));
        assert!(!AccountStatus::locked(None, "x").allows_login(t));
        let until = AccountStatus::locked(Some(t), "x");
        assert!(!until.allows_login(t - chrono::TimeDelta::seconds(1)));
        assert!(until.allows_login(t));
        assert_eq!(
            AccountStatus::locked(None, "  brute force ")
                .normalized()
                .unwrap(),
            AccountStatus::locked(None, "brute force")
        );
        for bad in ["", "  ", "a\0b", "x\u{202E}y"] {
            assert!(matches!(
                AccountStatus::locked(None, bad).normalized(),
                Err(AccountError::InvalidLockReason { .. })
            ));
        }
        let json = serde_json::to_string(&AccountStatus::locked(Some(t), "r")).unwrap();
        assert_eq!(
            json,
            r#"{"state":"locked","until":"1970-01-01T00:16:40Z","reason":"r"}"#
        );
        assert_eq!(
            serde_json::from_str::<AccountStatus>(&json).unwrap(),
            AccountStatus::locked(Some(t), "r")
        );
        assert!(serde_json::from_str::<AccountStatus>(r#"{"state":"gone"}"#).is_err());
    }

    #[test]
    fn serde_revalidates() {
        let email: Email = serde_json::from_str(r#""Bob@EXAMPLE.com""#).unwrap();
        assert_eq!(email.as_str(), "Bob@example.com");
        assert_eq!(
            serde_json::to_string(&email).unwrap(),
            r#""Bob@example.com""#
        );
        assert!(serde_json::from_str::<Email>(r#""nope""#).is_err());
        assert!(serde_json::from_str::<Username>(r#""a b""#).is_err());
        assert!(serde_json::from_str::<Role>(r#""A B""#).is_err());
    }

    #[test]
    fn new_account_validation() {
        let valid = NewAccount::new(" Alice ", "Alice@Example.com")
            .display_name("  Alice L. ")
            .validate()
            .unwrap();
        assert_eq!(valid.username.as_str(), "alice");
        assert_eq!(valid.display_name.as_deref(), Some("Alice L."));
        for (name, expected) in [
            ("", TextProblem::Empty),
            ("a\u{0}", TextProblem::ControlCharacter),
            (&"n".repeat(129), TextProblem::TooLong { max: 128 }),
            (&"n".repeat(1 << 20), TextProblem::TooLong { max: 128 }),
        ] {
            let err = NewAccount::new("alice", "a@example.com")
                .display_name(name)
                .validate()
                .unwrap_err();
            assert!(
                matches!(err, AccountError::InvalidDisplayName { reason } if reason == expected),
                "{err:?}"
            );
        }
    }

    #[test]
    fn login_and_cursor_parsing() {
        assert!(matches!(Login::parse("Alice"), Some(Login::Username(u)) if u.as_str() == "alice"));
        assert!(
            matches!(Login::parse("A@Example.com"), Some(Login::Email(e)) if e.key() == "a@example.com")
        );
        assert_eq!(Login::parse("a b"), None);
        assert_eq!(Login::parse("a@b"), None);
        let cursor = AccountCursor::after(UserId::new());
        assert_eq!(cursor.to_string().parse::<AccountCursor>().unwrap(), cursor);
        for bad in [
            "",
            "x",
            &"g".repeat(32),
            &UserId::new().to_string(),
            "{00000000000000000000000000000000}",
        ] {
            assert!(
                matches!(
                    bad.parse::<AccountCursor>(),
                    Err(AccountError::InvalidCursor)
                ),
                "{bad:?}"
            );
        }
    }
}
