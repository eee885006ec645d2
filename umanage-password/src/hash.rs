//! Password hashing: Argon2id by default, verification of Argon2 and bcrypt hashes, and
//! rehash-on-login.
//!
//! * New hashes are **Argon2id** (RFC 9106) at the parameters of [`HasherConfig`] (default
//!   t=3, m=64 MiB, p=4, 32-byte output, 16-byte random salt), written as PHC strings:
//!   `$argon2id$v=19$m=65536,t=3,p=4$<salt>$<digest>`.
//! * [`PasswordHasher::verify`] also accepts `argon2i`, `argon2d` (versions 0x10 and 0x13)
//!   and bcrypt (`$2a$`, `$2b$`, `$2y$`), so hosts can migrate users from older systems.
//! * [`PasswordHasher::needs_rehash`] is `true` when a stored hash differs from the
//!   configuration (algorithm, version, parameters, output length, pepper key), and
//!   [`PasswordHasher::verify_and_upgrade`] returns the new hash on a successful login.
//!
//! # Stored hashes are untrusted
//!
//! Before any hashing, a stored hash is parsed strictly and its costs are checked against
//! [`VerifyLimits`]: a hash asking for m=4 GiB or t=2^32-1 gets
//! [`PasswordError::HashParamOutOfRange`], never an allocation abort or a hang, and
//! anything malformed gets [`PasswordError::MalformedHash`].
//!
//! # bcrypt
//!
//! bcrypt only reads 72 bytes, and C implementations stop at the first NUL byte. So that
//! neither can make two different passwords equal, checking a password against a bcrypt
//! hash fails with [`PasswordError::BcryptPasswordTooLong`] over 72 bytes and with
//! [`PasswordError::BcryptNulByte`] when it contains NUL. (This crate never creates bcrypt
//! hashes.) Argon2 has neither limit.
//!
//! The password hashed is always the [`NormalizedPassword`] (NFKC), so the same typed
//! password verifies whatever its Unicode encoding.

mod phc;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{PasswordError, Result};
use crate::normalize::NormalizedPassword;
use crate::pepper::{PepperId, PepperSet};
use phc::{Parsed, ParsedArgon2, VERSION_10, VERSION_13};

/// A password hashing algorithm this crate can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Algorithm {
    /// Argon2id (RFC 9106), the default and the only one used for new hashes.
    Argon2id,
    /// Argon2i (verify only).
    Argon2i,
    /// Argon2d (verify only).
    Argon2d,
    /// bcrypt `$2a$` / `$2b$` / `$2y$` (verify only).
    Bcrypt,
}

impl Algorithm {
    fn argon2(self) -> Option<argon2::Algorithm> {
        match self {
            Self::Argon2id => Some(argon2::Algorithm::Argon2id),
            Self::Argon2i => Some(argon2::Algorithm::Argon2i),
            Self::Argon2d => Some(argon2::Algorithm::Argon2d),
            Self::Bcrypt => None,
        }
    }

    fn phc_id(self) -> &'static str {
        match self {
            Self::Argon2id => "argon2id",
            Self::Argon2i => "argon2i",
            Self::Argon2d => "argon2d",
            Self::Bcrypt => "2b",
        }
    }
}

/// A password hash as stored: a PHC string (Argon2) or a modular crypt string (bcrypt).
///
/// Not a secret in the way a password is, but an offline-attack target: `Debug` shows only
/// the algorithm and parameters, never the salt or digest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HashedPassword(String);

impl HashedPassword {
    /// Wraps a stored hash (for example a database column). It is not checked here: every
    /// verification parses it as untrusted input.
    pub fn new(stored: impl Into<String>) -> Self {
        Self(stored.into())
    }

    /// The stored text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for HashedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `$argon2id$v=19$m=..,t=..,p=..` (up to the salt) or `$2b$12` for bcrypt; anything
        // else (a legacy plaintext or MD5 column, a typo) shows only its length.
        match debug_prefix(&self.0) {
            Some(visible) => {
                let visible: String = visible.chars().take(80).collect();
                write!(f, "HashedPassword({visible}$…)")
            }
            None => write!(f, "HashedPassword(<unrecognised, {} bytes>)", self.0.len()),
        }
    }
}

/// The algorithm and parameter fields of a stored hash of a known kind, `None` otherwise.
fn debug_prefix(stored: &str) -> Option<String> {
    let mut fields = stored.split('$');
    if fields.next() != Some("") {
        return None;
    }
    let id = fields.next()?;
    match id {
        "2a" | "2b" | "2y" | "2x" => {
            let cost = fields.next()?;
            (cost.len() == 2 && cost.bytes().all(|c| c.is_ascii_digit()))
                .then(|| format!("${id}${cost}"))
        }
        "argon2id" | "argon2i" | "argon2d" => {
            let mut out = format!("${id}");
            let mut next = fields.next();
            // the version field is optional (Argon2 1.0 hashes have none)
            if let Some(v) = next.filter(|v| v.starts_with("v=")) {
                out.push('$');
                out.push_str(v);
                next = fields.next();
            }
            if let Some(params) = next.filter(|p| p.contains('=')) {
                out.push('$');
                out.push_str(params);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Caps on what a *stored* hash may ask for, checked before hashing.
///
/// The defaults leave room above [`HasherConfig`]'s defaults for hosts that raise costs
/// later, while keeping a hostile hash to at most 256 MiB and a bounded number of passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawVerifyLimits", into = "RawVerifyLimits")]
#[allow(clippy::struct_field_names)] // `max_*` are the serde field names
pub struct VerifyLimits {
    max_m_cost_kib: u32,
    max_t_cost: u32,
    max_p_cost: u32,
    max_bcrypt_cost: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(clippy::struct_field_names)]
struct RawVerifyLimits {
    #[serde(default = "VerifyLimits::default_max_m")]
    max_m_cost_kib: u32,
    #[serde(default = "VerifyLimits::default_max_t")]
    max_t_cost: u32,
    #[serde(default = "VerifyLimits::default_max_p")]
    max_p_cost: u32,
    #[serde(default = "VerifyLimits::default_max_bcrypt")]
    max_bcrypt_cost: u32,
}

impl TryFrom<RawVerifyLimits> for VerifyLimits {
    type Error = PasswordError;
    fn try_from(r: RawVerifyLimits) -> Result<Self> {
        Self::new(
            r.max_m_cost_kib,
            r.max_t_cost,
            r.max_p_cost,
            r.max_bcrypt_cost,
        )
    }
}

impl From<VerifyLimits> for RawVerifyLimits {
    fn from(l: VerifyLimits) -> Self {
        Self {
            max_m_cost_kib: l.max_m_cost_kib,
            max_t_cost: l.max_t_cost,
            max_p_cost: l.max_p_cost,
            max_bcrypt_cost: l.max_bcrypt_cost,
        }
    }
}

impl Default for VerifyLimits {
    fn default() -> Self {
        Self {
            max_m_cost_kib: Self::DEFAULT_MAX_M_COST_KIB,
            max_t_cost: Self::DEFAULT_MAX_T_COST,
            max_p_cost: Self::DEFAULT_MAX_P_COST,
            max_bcrypt_cost: Self::DEFAULT_MAX_BCRYPT_COST,
        }
    }
}

impl VerifyLimits {
    /// Default cap on a stored hash's memory: 256 MiB.
    pub const DEFAULT_MAX_M_COST_KIB: u32 = 262_144;
    /// Default cap on a stored hash's passes.
    pub const DEFAULT_MAX_T_COST: u32 = 16;
    /// Default cap on a stored hash's lanes.
    pub const DEFAULT_MAX_P_COST: u32 = 16;
    /// Default cap on a stored bcrypt cost (2^14 rounds, about a second on a server core).
    pub const DEFAULT_MAX_BCRYPT_COST: u32 = 14;
    /// bcrypt's smallest cost.
    pub const MIN_BCRYPT_COST: u32 = 4;
    /// bcrypt's largest cost.
    pub const MAX_BCRYPT_COST: u32 = 31;
    /// Digest lengths accepted from stored Argon2 hashes, in bytes.
    pub const MIN_OUTPUT_LEN: usize = 16;
    /// See [`MIN_OUTPUT_LEN`](Self::MIN_OUTPUT_LEN).
    pub const MAX_OUTPUT_LEN: usize = 64;
    /// Salt lengths accepted from stored Argon2 hashes, in bytes (RFC 9106 asks for 8 at least).
    pub const MIN_SALT_LEN: usize = 8;
    /// See [`MIN_SALT_LEN`](Self::MIN_SALT_LEN).
    pub const MAX_SALT_LEN: usize = 64;

    fn default_max_m() -> u32 {
        Self::DEFAULT_MAX_M_COST_KIB
    }
    fn default_max_t() -> u32 {
        Self::DEFAULT_MAX_T_COST
    }
    fn default_max_p() -> u32 {
        Self::DEFAULT_MAX_P_COST
    }
    fn default_max_bcrypt() -> u32 {
        Self::DEFAULT_MAX_BCRYPT_COST
    }

    /// Caps for stored hashes.
    ///
    /// # Errors
    ///
    /// [`PasswordError::InvalidConfig`] when a cap is outside what the algorithm allows
    /// ([`HasherConfig::MAX_M_COST_KIB`], [`HasherConfig::MAX_T_COST`],
    /// [`HasherConfig::MAX_P_COST`], bcrypt 4..=31) or too small to verify anything.
    pub fn new(
        max_m_cost_kib: u32,
        max_t_cost: u32,
        max_p_cost: u32,
        max_bcrypt_cost: u32,
    ) -> Result<Self> {
        let fail = |reason: String| Err(config_error(reason));
        if !(1..=HasherConfig::MAX_P_COST).contains(&max_p_cost) {
            return fail(format!(
                "max_p_cost must be 1..={}",
                HasherConfig::MAX_P_COST
            ));
        }
        if !(1..=HasherConfig::MAX_T_COST).contains(&max_t_cost) {
            return fail(format!(
                "max_t_cost must be 1..={}",
                HasherConfig::MAX_T_COST
            ));
        }
        if !(HasherConfig::MIN_M_COST_KIB..=HasherConfig::MAX_M_COST_KIB).contains(&max_m_cost_kib)
        {
            return fail(format!(
                "max_m_cost_kib must be {}..={}",
                HasherConfig::MIN_M_COST_KIB,
                HasherConfig::MAX_M_COST_KIB
            ));
        }
        if !(Self::MIN_BCRYPT_COST..=Self::MAX_BCRYPT_COST).contains(&max_bcrypt_cost) {
            return fail(format!(
                "max_bcrypt_cost must be {}..={}",
                Self::MIN_BCRYPT_COST,
                Self::MAX_BCRYPT_COST
            ));
        }
        Ok(Self {
            max_m_cost_kib,
            max_t_cost,
            max_p_cost,
            max_bcrypt_cost,
        })
    }

    /// Largest memory (KiB) a stored Argon2 hash may ask for.
    pub const fn max_m_cost_kib(&self) -> u32 {
        self.max_m_cost_kib
    }
    /// Largest number of passes a stored Argon2 hash may ask for.
    pub const fn max_t_cost(&self) -> u32 {
        self.max_t_cost
    }
    /// Largest number of lanes a stored Argon2 hash may ask for.
    pub const fn max_p_cost(&self) -> u32 {
        self.max_p_cost
    }
    /// Largest cost a stored bcrypt hash may ask for.
    pub const fn max_bcrypt_cost(&self) -> u32 {
        self.max_bcrypt_cost
    }
}

fn config_error(reason: String) -> PasswordError {
    PasswordError::InvalidConfig {
        component: "hasher",
        reason,
    }
}

/// The Argon2id parameters for new hashes, and the caps for stored ones.
///
/// Build with [`HasherConfig::builder`] (validated) or load with serde (same validation,
/// unknown fields rejected); [`HasherConfig::default`] is the recommended configuration
/// (t=3, m=64 MiB, p=4, 32-byte output, 16-byte salt).
///
/// ```
/// use umanage_password::hash::HasherConfig;
///
/// let config = HasherConfig::builder().m_cost_kib(19_456).t_cost(2).p_cost(1).build().unwrap();
/// assert_eq!(config.m_cost_kib(), 19_456);
/// assert!(HasherConfig::builder().m_cost_kib(4).build().is_err());
/// let from_json: HasherConfig = serde_json::from_str(r#"{"t_cost": 4}"#).unwrap();
/// assert_eq!(from_json.t_cost(), 4);
/// assert_eq!(from_json.m_cost_kib(), HasherConfig::DEFAULT_M_COST_KIB);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawHasherConfig", into = "RawHasherConfig")]
pub struct HasherConfig {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    output_len: u32,
    salt_len: u32,
    limits: VerifyLimits,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHasherConfig {
    #[serde(default = "HasherConfig::default_m")]
    m_cost_kib: u32,
    #[serde(default = "HasherConfig::default_t")]
    t_cost: u32,
    #[serde(default = "HasherConfig::default_p")]
    p_cost: u32,
    #[serde(default = "HasherConfig::default_output")]
    output_len: u32,
    #[serde(default = "HasherConfig::default_salt")]
    salt_len: u32,
    #[serde(default)]
    limits: VerifyLimits,
}

impl TryFrom<RawHasherConfig> for HasherConfig {
    type Error = PasswordError;
    fn try_from(r: RawHasherConfig) -> Result<Self> {
        HasherConfigBuilder {
            config: HasherConfig {
                m_cost_kib: r.m_cost_kib,
                t_cost: r.t_cost,
                p_cost: r.p_cost,
                output_len: r.output_len,
                salt_len: r.salt_len,
                limits: r.limits,
            },
        }
        .build()
    }
}

impl From<HasherConfig> for RawHasherConfig {
    fn from(c: HasherConfig) -> Self {
        Self {
            m_cost_kib: c.m_cost_kib,
            t_cost: c.t_cost,
            p_cost: c.p_cost,
            output_len: c.output_len,
            salt_len: c.salt_len,
            limits: c.limits,
        }
    }
}

impl Default for HasherConfig {
    fn default() -> Self {
        Self {
            m_cost_kib: Self::DEFAULT_M_COST_KIB,
            t_cost: Self::DEFAULT_T_COST,
            p_cost: Self::DEFAULT_P_COST,
            output_len: Self::DEFAULT_OUTPUT_LEN,
            salt_len: Self::DEFAULT_SALT_LEN,
            limits: VerifyLimits::default(),
        }
    }
}

impl HasherConfig {
    /// Default memory: 64 MiB (65,536 KiB).
    pub const DEFAULT_M_COST_KIB: u32 = 65_536;
    /// Smallest memory: 8 KiB per lane is Argon2's minimum (RFC 9106, section 3.1).
    pub const MIN_M_COST_KIB: u32 = 8;
    /// Largest memory accepted in a configuration: 4 GiB.
    pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    /// Default passes.
    pub const DEFAULT_T_COST: u32 = 3;
    /// Smallest number of passes.
    pub const MIN_T_COST: u32 = 1;
    /// Largest number of passes accepted in a configuration.
    pub const MAX_T_COST: u32 = 1024;
    /// Default lanes (degree of parallelism).
    pub const DEFAULT_P_COST: u32 = 4;
    /// Smallest number of lanes.
    pub const MIN_P_COST: u32 = 1;
    /// Largest number of lanes accepted in a configuration.
    pub const MAX_P_COST: u32 = 255;
    /// Default digest length in bytes.
    pub const DEFAULT_OUTPUT_LEN: u32 = 32;
    /// Smallest digest length.
    pub const MIN_OUTPUT_LEN: u32 = VerifyLimits::MIN_OUTPUT_LEN as u32;
    /// Largest digest length.
    pub const MAX_OUTPUT_LEN: u32 = VerifyLimits::MAX_OUTPUT_LEN as u32;
    /// Default salt length in bytes (RFC 9106 recommends 16).
    pub const DEFAULT_SALT_LEN: u32 = 16;
    /// Smallest salt length.
    pub const MIN_SALT_LEN: u32 = 16;
    /// Largest salt length.
    pub const MAX_SALT_LEN: u32 = VerifyLimits::MAX_SALT_LEN as u32;

    fn default_m() -> u32 {
        Self::DEFAULT_M_COST_KIB
    }
    fn default_t() -> u32 {
        Self::DEFAULT_T_COST
    }
    fn default_p() -> u32 {
        Self::DEFAULT_P_COST
    }
    fn default_output() -> u32 {
        Self::DEFAULT_OUTPUT_LEN
    }
    fn default_salt() -> u32 {
        Self::DEFAULT_SALT_LEN
    }

    /// A builder starting from the defaults.
    pub fn builder() -> HasherConfigBuilder {
        HasherConfigBuilder {
            config: Self::default(),
        }
    }

    /// Memory in KiB.
    pub const fn m_cost_kib(&self) -> u32 {
        self.m_cost_kib
    }
    /// Passes over memory.
    pub const fn t_cost(&self) -> u32 {
        self.t_cost
    }
    /// Lanes.
    pub const fn p_cost(&self) -> u32 {
        self.p_cost
    }
    /// Digest length in bytes.
    pub const fn output_len(&self) -> u32 {
        self.output_len
    }
    /// Salt length in bytes.
    pub const fn salt_len(&self) -> u32 {
        self.salt_len
    }
    /// Caps for stored hashes.
    pub const fn limits(&self) -> &VerifyLimits {
        &self.limits
    }
}

/// Builds a [`HasherConfig`]; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
#[must_use]
pub struct HasherConfigBuilder {
    config: HasherConfig,
}

impl HasherConfigBuilder {
    /// Memory in KiB ([`HasherConfig::MIN_M_COST_KIB`]..=[`HasherConfig::MAX_M_COST_KIB`],
    /// and at least 8 per lane).
    pub fn m_cost_kib(mut self, kib: u32) -> Self {
        self.config.m_cost_kib = kib;
        self
    }
    /// Passes ([`HasherConfig::MIN_T_COST`]..=[`HasherConfig::MAX_T_COST`]).
    pub fn t_cost(mut self, t: u32) -> Self {
        self.config.t_cost = t;
        self
    }
    /// Lanes ([`HasherConfig::MIN_P_COST`]..=[`HasherConfig::MAX_P_COST`]).
    pub fn p_cost(mut self, p: u32) -> Self {
        self.config.p_cost = p;
        self
    }
    /// Digest length in bytes (16..=64).
    pub fn output_len(mut self, bytes: u32) -> Self {
        self.config.output_len = bytes;
        self
    }
    /// Salt length in bytes (16..=64).
    pub fn salt_len(mut self, bytes: u32) -> Self {
        self.config.salt_len = bytes;
        self
    }
    /// Caps for stored hashes.
    pub fn limits(mut self, limits: VerifyLimits) -> Self {
        self.config.limits = limits;
        self
    }

    /// The configuration.
    ///
    /// # Errors
    ///
    /// [`PasswordError::InvalidConfig`] when a value is outside its range, when memory is
    /// under 8 KiB per lane, or when the new-hash parameters exceed the stored-hash caps
    /// (the hasher could not verify its own hashes).
    pub fn build(self) -> Result<HasherConfig> {
        let c = self.config;
        let range = |name: &str, v: u32, min: u32, max: u32| {
            if (min..=max).contains(&v) {
                Ok(())
            } else {
                Err(config_error(format!(
                    "{name} must be {min}..={max}, got {v}"
                )))
            }
        };
        range(
            "t_cost",
            c.t_cost,
            HasherConfig::MIN_T_COST,
            HasherConfig::MAX_T_COST,
        )?;
        range(
            "p_cost",
            c.p_cost,
            HasherConfig::MIN_P_COST,
            HasherConfig::MAX_P_COST,
        )?;
        range(
            "m_cost_kib",
            c.m_cost_kib,
            HasherConfig::MIN_M_COST_KIB,
            HasherConfig::MAX_M_COST_KIB,
        )?;
        range(
            "output_len",
            c.output_len,
            HasherConfig::MIN_OUTPUT_LEN,
            HasherConfig::MAX_OUTPUT_LEN,
        )?;
        range(
            "salt_len",
            c.salt_len,
            HasherConfig::MIN_SALT_LEN,
            HasherConfig::MAX_SALT_LEN,
        )?;
        if u64::from(c.m_cost_kib) < 8 * u64::from(c.p_cost) {
            return Err(config_error(format!(
                "m_cost_kib must be at least 8 per lane ({} for p_cost={})",
                8 * c.p_cost,
                c.p_cost
            )));
        }
        if c.m_cost_kib > c.limits.max_m_cost_kib
            || c.t_cost > c.limits.max_t_cost
            || c.p_cost > c.limits.max_p_cost
        {
            return Err(config_error(
                "hashing parameters exceed the stored-hash limits: the hasher could not verify its own hashes".into(),
            ));
        }
        Ok(c)
    }
}

/// What a stored hash says about itself (algorithm and costs; no salt, no digest).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HashInfo {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Argon2 version (`0x10` or `0x13`); `None` for bcrypt.
    pub version: Option<u32>,
    /// Argon2 memory in KiB.
    pub m_cost_kib: Option<u32>,
    /// Argon2 passes.
    pub t_cost: Option<u32>,
    /// Argon2 lanes.
    pub p_cost: Option<u32>,
    /// Argon2 digest length.
    pub output_len: Option<usize>,
    /// bcrypt cost.
    pub bcrypt_cost: Option<u32>,
    /// The pepper key the hash was made with, if any.
    pub pepper: Option<PepperId>,
}

/// The result of [`PasswordHasher::verify_and_upgrade`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum VerifyOutcome {
    /// The password does not match.
    Mismatch,
    /// The password matches and the stored hash is up to date.
    Match,
    /// The password matches; the stored hash is obsolete and this is its replacement
    /// (store it, ideally only if the stored hash has not changed meanwhile).
    MatchNeedsRehash(HashedPassword),
}

impl VerifyOutcome {
    /// Whether the password matched.
    pub fn is_match(&self) -> bool {
        !matches!(self, Self::Mismatch)
    }
}

/// Hashes and verifies passwords. Cheap to clone (the pepper keys are shared).
///
/// All methods are synchronous and CPU-heavy (tens of milliseconds at the default cost):
/// from async code, run them on a bounded blocking pool (see the `pool` module).
///
/// ```
/// use umanage_password::hash::{HasherConfig, PasswordHasher, VerifyOutcome};
/// use umanage_password::NormalizedPassword;
///
/// // cheap parameters for the example; use HasherConfig::default() in production
/// let cheap = HasherConfig::builder().m_cost_kib(64).t_cost(1).p_cost(1).build().unwrap();
/// let hasher = PasswordHasher::new(cheap);
/// let pw = NormalizedPassword::new("correct horse battery staple").unwrap();
/// let stored = hasher.hash(&pw).unwrap();
/// assert!(stored.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
/// assert!(hasher.verify(&pw, stored.as_str()).unwrap());
///
/// // raising the cost makes old hashes obsolete: they are upgraded on the next login
/// let stronger = PasswordHasher::new(
///     HasherConfig::builder().m_cost_kib(128).t_cost(1).p_cost(1).build().unwrap(),
/// );
/// assert!(stronger.needs_rehash(stored.as_str()).unwrap());
/// match stronger.verify_and_upgrade(&pw, stored.as_str()).unwrap() {
///     VerifyOutcome::MatchNeedsRehash(new) => assert!(new.as_str().contains("m=128")),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Clone, Default)]
pub struct PasswordHasher {
    config: HasherConfig,
    peppers: Option<Arc<PepperSet>>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("config", &self.config)
            .field("peppers", &self.peppers)
            .finish()
    }
}

impl PasswordHasher {
    /// A hasher without pepper.
    pub fn new(config: HasherConfig) -> Self {
        Self {
            config,
            peppers: None,
        }
    }

    /// Peppers new hashes with the set's current key; hashes of its retired keys still verify.
    #[must_use]
    pub fn with_peppers(mut self, peppers: PepperSet) -> Self {
        self.peppers = Some(Arc::new(peppers));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &HasherConfig {
        &self.config
    }

    /// Hashes `password` with Argon2id, a fresh random salt and the current pepper.
    ///
    /// # Errors
    ///
    /// [`PasswordError::HashingFailed`] when the system random source or Argon2 fails
    /// (for example the memory cannot be allocated).
    pub fn hash(&self, password: &NormalizedPassword) -> Result<HashedPassword> {
        let c = &self.config;
        let mut salt = vec![0u8; c.salt_len as usize];
        getrandom::fill(&mut salt).map_err(|e| PasswordError::HashingFailed {
            reason: format!("random source: {e}"),
        })?;
        let pepper = self.peppers.as_ref().map(|p| p.current_id().clone());
        let input = self.argon2_input(password, pepper.as_ref())?;
        let digest = argon2_raw(
            Algorithm::Argon2id,
            VERSION_13,
            c.m_cost_kib,
            c.t_cost,
            c.p_cost,
            &input,
            &salt,
            c.output_len as usize,
        )?;
        let mut out = format!(
            "$argon2id$v=19$m={},t={},p={}",
            c.m_cost_kib, c.t_cost, c.p_cost
        );
        if let Some(id) = &pepper {
            out.push(',');
            out.push_str(phc::PEPPER_PARAM);
            out.push('=');
            out.push_str(id.as_str());
        }
        out.push('$');
        out.push_str(&phc::encode_b64(&salt));
        out.push('$');
        out.push_str(&phc::encode_b64(&digest));
        Ok(HashedPassword(out))
    }

    /// Parses a stored hash and checks it against the caps, without hashing anything.
    ///
    /// # Errors
    ///
    /// [`PasswordError::MalformedHash`] or [`PasswordError::HashParamOutOfRange`].
    pub fn inspect(&self, stored: &str) -> Result<HashInfo> {
        Ok(match phc::parse(stored, &self.config.limits)? {
            Parsed::Argon2(a) => HashInfo {
                algorithm: a.algorithm,
                version: Some(a.version),
                m_cost_kib: Some(a.m_cost),
                t_cost: Some(a.t_cost),
                p_cost: Some(a.p_cost),
                output_len: Some(a.digest.len()),
                bcrypt_cost: None,
                pepper: a.pepper,
            },
            Parsed::Bcrypt { cost } => HashInfo {
                algorithm: Algorithm::Bcrypt,
                version: None,
                m_cost_kib: None,
                t_cost: None,
                p_cost: None,
                output_len: None,
                bcrypt_cost: Some(cost),
                pepper: None,
            },
        })
    }

    /// Whether `password` matches `stored` (constant-time comparison of the digests).
    ///
    /// # Errors
    ///
    /// * [`PasswordError::MalformedHash`], [`PasswordError::HashParamOutOfRange`]: the
    ///   stored hash is rejected before hashing.
    /// * [`PasswordError::UnknownPepper`]: it was made with a pepper key not configured.
    /// * [`PasswordError::BcryptPasswordTooLong`], [`PasswordError::BcryptNulByte`]: the
    ///   password cannot be checked safely against a bcrypt hash.
    /// * [`PasswordError::HashingFailed`]: Argon2 itself failed (memory).
    pub fn verify(&self, password: &NormalizedPassword, stored: &str) -> Result<bool> {
        match phc::parse(stored, &self.config.limits)? {
            Parsed::Argon2(a) => self.verify_argon2(password, &a),
            Parsed::Bcrypt { .. } => verify_bcrypt(password, stored),
        }
    }

    /// Whether `stored` should be replaced by a fresh hash: another algorithm or version,
    /// other costs or digest length than configured, or another pepper key than the current
    /// one (including none).
    ///
    /// # Errors
    ///
    /// [`PasswordError::MalformedHash`] or [`PasswordError::HashParamOutOfRange`].
    pub fn needs_rehash(&self, stored: &str) -> Result<bool> {
        let info = self.inspect(stored)?;
        let c = &self.config;
        let current_pepper = self.peppers.as_ref().map(|p| p.current_id());
        Ok(info.algorithm != Algorithm::Argon2id
            || info.version != Some(VERSION_13)
            || info.m_cost_kib != Some(c.m_cost_kib)
            || info.t_cost != Some(c.t_cost)
            || info.p_cost != Some(c.p_cost)
            || info.output_len != Some(c.output_len as usize)
            || info.pepper.as_ref() != current_pepper)
    }

    /// Verifies, and on a match of an obsolete hash returns its replacement.
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify) and [`hash`](Self::hash).
    pub fn verify_and_upgrade(
        &self,
        password: &NormalizedPassword,
        stored: &str,
    ) -> Result<VerifyOutcome> {
        if !self.verify(password, stored)? {
            return Ok(VerifyOutcome::Mismatch);
        }
        if self.needs_rehash(stored)? {
            Ok(VerifyOutcome::MatchNeedsRehash(self.hash(password)?))
        } else {
            Ok(VerifyOutcome::Match)
        }
    }

    fn verify_argon2(&self, password: &NormalizedPassword, a: &ParsedArgon2) -> Result<bool> {
        let input = self.argon2_input(password, a.pepper.as_ref())?;
        let digest = argon2_raw(
            a.algorithm,
            a.version,
            a.m_cost,
            a.t_cost,
            a.p_cost,
            &input,
            &a.salt,
            a.digest.len(),
        )?;
        Ok(bool::from(digest.as_slice().ct_eq(&a.digest)))
    }

    /// The bytes Argon2 hashes: the normalised password, or its HMAC under a pepper key.
    fn argon2_input(
        &self,
        password: &NormalizedPassword,
        pepper: Option<&PepperId>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let raw = password.expose().as_bytes();
        let Some(id) = pepper else {
            return Ok(Zeroizing::new(raw.to_vec()));
        };
        let mac = self
            .peppers
            .as_ref()
            .and_then(|set| set.mac(id, raw))
            .ok_or_else(|| PasswordError::UnknownPepper {
                key_id: id.as_str().to_owned(),
            })?;
        Ok(Zeroizing::new(mac.to_vec()))
    }
}

#[allow(clippy::too_many_arguments)]
fn argon2_raw(
    algorithm: Algorithm,
    version: u32,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    input: &[u8],
    salt: &[u8],
    output_len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let failed = |e: argon2::Error| PasswordError::HashingFailed {
        reason: format!("argon2: {e}"),
    };
    let Some(alg) = algorithm.argon2() else {
        return Err(PasswordError::MalformedHash {
            reason: "not an Argon2 hash",
        });
    };
    let version = if version == VERSION_10 {
        argon2::Version::V0x10
    } else {
        argon2::Version::V0x13
    };
    let params = argon2::Params::new(m_cost, t_cost, p_cost, Some(output_len)).map_err(failed)?;
    let mut out = Zeroizing::new(vec![0u8; output_len]);
    argon2::Argon2::new(alg, version, params)
        .hash_password_into(input, salt, &mut out)
        .map_err(failed)?;
    Ok(out)
}

/// The bcrypt input limit in bytes.
pub const BCRYPT_MAX_PASSWORD_BYTES: usize = 72;

fn verify_bcrypt(password: &NormalizedPassword, stored: &str) -> Result<bool> {
    let raw = password.expose().as_bytes();
    if raw.len() > BCRYPT_MAX_PASSWORD_BYTES {
        return Err(PasswordError::BcryptPasswordTooLong {
            max_bytes: BCRYPT_MAX_PASSWORD_BYTES,
        });
    }
    if raw.contains(&0) {
        return Err(PasswordError::BcryptNulByte);
    }
    bcrypt::verify(raw, stored).map_err(|_| PasswordError::MalformedHash {
        reason: "bcrypt salt or digest is not valid",
    })
}

/// The identifier used in hashes (`argon2id`, `argon2i`, `argon2d`, `2b`).
impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phc_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_plan() {
        let c = HasherConfig::default();
        assert_eq!(
            (c.t_cost(), c.m_cost_kib(), c.p_cost(), c.output_len()),
            (3, 65_536, 4, 32)
        );
        assert_eq!(HasherConfig::builder().build().unwrap(), c);
    }

    #[test]
    fn builder_rejects_contradictions() {
        let bad = [
            HasherConfig::builder().t_cost(0),
            HasherConfig::builder().p_cost(0),
            HasherConfig::builder().p_cost(256),
            HasherConfig::builder().m_cost_kib(7),
            HasherConfig::builder().m_cost_kib(16).p_cost(4),
            HasherConfig::builder().m_cost_kib(HasherConfig::MAX_M_COST_KIB + 1),
            HasherConfig::builder().output_len(15),
            HasherConfig::builder().output_len(65),
            HasherConfig::builder().salt_len(8),
            HasherConfig::builder().t_cost(17), // above the default stored-hash cap
        ];
        for b in bad {
            let dbg = format!("{b:?}");
            assert!(
                matches!(
                    b.build(),
                    Err(PasswordError::InvalidConfig {
                        component: "hasher",
                        ..
                    })
                ),
                "{dbg}"
            );
        }
        assert!(VerifyLimits::new(1024, 4, 1, 3).is_err());
        assert!(VerifyLimits::new(4, 4, 1, 10).is_err());
        assert!(VerifyLimits::new(1024, 0, 1, 10).is_err());
    }

    #[test]
    fn serde_validates_and_rejects_unknown_fields() {
        assert!(serde_json::from_str::<HasherConfig>(r#"{"t_cost": 0}"#).is_err());
        assert!(serde_json::from_str::<HasherConfig>(r#"{"tcost": 2}"#).is_err());
        assert!(serde_json::from_str::<HasherConfig>(r#"{"limits": {"max_p": 2}}"#).is_err());
        let c: HasherConfig = serde_json::from_str(r#"{"limits": {"max_t_cost": 8}}"#).unwrap();
        assert_eq!(c.limits().max_t_cost(), 8);
        let back: HasherConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn debug_of_a_hash_hides_salt_and_digest() {
        let h = HashedPassword::new(
            "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        );
        let dbg = format!("{h:?}");
        assert!(
            dbg.contains("m=256,t=2,p=1") && !dbg.contains("c29tZXNhbHQ"),
            "{dbg}"
        );
        let b = HashedPassword::new("$2b$04$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie");
        let dbg = format!("{b:?}");
        assert!(dbg.contains("$2b$04") && !dbg.contains("EGdr"), "{dbg}");
    }

    #[test]
    fn debug_of_anything_else_shows_no_content() {
        // Argon2 1.0 hashes carry no `v=` field: the salt is the fourth field
        let v10 = HashedPassword::new(
            "$argon2i$m=4096,t=3,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A",
        );
        let dbg = format!("{v10:?}");
        assert!(
            dbg.contains("argon2i") && dbg.contains("m=4096,t=3,p=1") && !dbg.contains("c29t"),
            "{dbg}"
        );
        // a column that holds something else (a legacy plaintext or MD5 value, a typo)
        for other in [
            "hunter2",
            "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/",
            "5f4dcc3b5aa765d61d8327deb882cf99",
            "$argon2id$secret-looking$x$y",
            "$2b$hunter2hunter2",
        ] {
            let dbg = format!("{:?}", HashedPassword::new(other));
            for part in other
                .split('$')
                .filter(|p| p.len() > 3 && !p.starts_with("argon2"))
            {
                assert!(!dbg.contains(part), "{dbg} shows {part:?}");
            }
        }
    }
}
