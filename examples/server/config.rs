//! The server's configuration file (`--config umanage.toml`, env `UMANAGE_CONFIG`).
//!
//! Every section is optional and every table refuses unknown keys, so a typo is an error at
//! start, not a silently ignored setting. The SDK's own config types (the Argon2 and pool
//! settings, the session timeouts, the trusted proxies) are used as they are: they carry
//! their own validation. `examples/server/umanage.example.toml` documents every key.

use std::time::Duration;

use serde::Deserialize;

use umanage::core::ClientIpResolver;
use umanage::password::pool::PoolConfig;
use umanage::password::spray::SprayConfig;
use umanage::password::{HasherConfig, PasswordPolicy};
use umanage::session::SessionConfig;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (the `--listen` flag and `UMANAGE_LISTEN` win over it).
    pub listen: Option<String>,
    /// Redis for sessions, rate limits and spray detection (the flag and env win).
    pub redis_url: Option<String>,
    /// The prefix of every Redis key (default `umanage`), so several deployments can share
    /// one Redis.
    pub redis_key_prefix: Option<String>,
    /// Postgres for accounts, credentials and audit (the flag and env win).
    pub database_url: Option<String>,
    /// The password policy.
    #[serde(default)]
    pub password: PasswordSection,
    /// Argon2id parameters and the hashing pool.
    #[serde(default)]
    pub hashing: HashingSection,
    /// Session timeouts and limits ([`SessionConfig`]'s serde form).
    #[serde(default)]
    pub sessions: Option<SessionConfig>,
    /// Request and login rate limits.
    #[serde(default)]
    pub rate_limits: RateLimitSection,
    /// Password-spray detection on login ([`SprayConfig`]'s serde form).
    #[serde(default)]
    pub spray: SprayConfig,
    /// Which reverse proxies may tell the client address ([`ClientIpResolver`]'s serde form:
    /// `trusted_proxies = ["10.0.0.0/8"]`, `header = "x-forwarded-for" | "forwarded"`).
    #[serde(default)]
    pub proxies: ClientIpResolver,
    /// HTTP details.
    #[serde(default)]
    pub http: HttpSection,
    /// Audit checkpoint signing.
    #[serde(default)]
    pub audit: AuditSection,
}

/// A bundled policy to start from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// [`PasswordPolicy::nist`]: 15+ code points, no composition rules, no expiry.
    #[default]
    Nist,
    /// [`PasswordPolicy::nist_with_mfa`]: as NIST with a second factor, 8+.
    NistWithMfa,
    /// [`PasswordPolicy::enterprise`]: 12+, two of each class, score 3, history 5,
    /// 90-day expiry, 1-day minimum age.
    Enterprise,
}

/// `[password]`: a preset and the few settings a host usually changes on top of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSection {
    /// The preset (default `nist`).
    #[serde(default)]
    pub preset: Preset,
    /// How many previous passwords may not be reused, the current one included
    /// (default 5; 0 turns the check off).
    pub history_count: Option<u32>,
    /// Days before a password may be changed again (0: any time; default: any time with
    /// `nist`, the preset's value otherwise).
    pub min_age_days: Option<u32>,
    /// Days after which a password expires (0: never; default: the preset's value).
    pub expiry_days: Option<u32>,
    /// Minimum length in code points (default: the preset's).
    pub min_length: Option<u32>,
    /// Minimum zxcvbn score 0-4 (default: the preset's).
    pub min_score: Option<u8>,
}

impl Default for PasswordSection {
    fn default() -> Self {
        Self {
            preset: Preset::Nist,
            history_count: None,
            min_age_days: None,
            expiry_days: None,
            min_length: None,
            min_score: None,
        }
    }
}

/// The history depth when the file does not set one.
pub const DEFAULT_HISTORY: u32 = 5;

impl PasswordSection {
    /// The validated policy.
    ///
    /// # Errors
    ///
    /// The policy's own error (for example an expiry with the NIST preset, which forbids it).
    pub fn policy(&self) -> Result<PasswordPolicy, String> {
        let (base, default_min_age) = match self.preset {
            // The newcomer default: no minimum age, so a first journey can change twice.
            Preset::Nist => (PasswordPolicy::nist(), None),
            Preset::NistWithMfa => (PasswordPolicy::nist_with_mfa(), None),
            Preset::Enterprise => {
                let p = PasswordPolicy::enterprise();
                let age = p.min_age_days();
                (p, age)
            }
        };
        let mut b = base
            .to_builder()
            .history_count(self.history_count.unwrap_or(DEFAULT_HISTORY))
            .min_age_days(match self.min_age_days {
                Some(0) => None,
                Some(d) => Some(d),
                None => default_min_age,
            });
        match self.expiry_days {
            Some(0) => b = b.expiry_days(None),
            Some(d) => b = b.expiry_days(Some(d)),
            None => {}
        }
        if let Some(n) = self.min_length {
            b = b.min_length(n);
        }
        if let Some(s) = self.min_score {
            b = b.min_score(Some(s));
        }
        b.build().map_err(|e| format!("[password]: {e}"))
    }
}

/// `[hashing]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashingSection {
    /// `[hashing.argon2]`: `m_cost_kib`, `t_cost`, `p_cost`, ... ([`HasherConfig`]).
    #[serde(default)]
    pub argon2: HasherConfig,
    /// `[hashing.pool]`: `max_concurrent` hashes at once, `queue_timeout` before a request
    /// is answered "busy" ([`PoolConfig`]).
    #[serde(default)]
    pub pool: PoolConfig,
}

/// `[rate_limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    /// Requests per minute and client address, on every route.
    pub requests_per_minute: u64,
    /// Login attempts per minute and client address.
    pub logins_per_minute: u64,
    /// Login attempts per 15 minutes and account.
    pub logins_per_account: u64,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        Self {
            requests_per_minute: 600,
            logins_per_minute: 20,
            logins_per_account: 10,
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// The `Secure` attribute on the session cookie (turn off only for plain-HTTP
    /// development).
    pub secure_cookie: bool,
    /// How long `/readyz` waits for each backend.
    #[serde(with = "umanage::core::duration")]
    pub readiness_timeout: Duration,
    /// How long `GET /v1/me` may answer from an in-process copy of the account instead of
    /// reading the account store (`"0s"`: always read).
    #[serde(with = "umanage::core::duration")]
    pub account_cache_ttl: Duration,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024,
            secure_cookie: true,
            readiness_timeout: Duration::from_secs(1),
            account_cache_ttl: Duration::from_secs(1),
        }
    }
}

impl ServerConfig {
    /// Parses a file's text.
    ///
    /// # Errors
    ///
    /// The TOML error, which names the line and the unknown or malformed key.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    ///
    /// A message naming the file and what is wrong.
    pub fn load(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("config {path}: {e}"))?;
        Self::parse(&text).map_err(|e| format!("config {path}: {e}"))
    }
}

/// A secret read from the file or the environment: kept as text until it is decoded, and
/// never printed (`Debug` shows `<redacted>`; decoding errors do not echo it).
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A retired checkpoint key, still accepted when verifying older checkpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousKey {
    /// The id the key signed with (the `key_id` stored with its checkpoints).
    pub id: String,
    /// The key, hex (at least 32 bytes, 64 hex digits).
    pub key: SecretText,
}

/// `[audit]`: the HMAC key(s) of the signed checkpoints and how often one is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// The id stored with each checkpoint (default `"server"`); change it with the key.
    pub checkpoint_key_id: String,
    /// The signing key, hex (at least 32 bytes). Env `UMANAGE_AUDIT_CHECKPOINT_KEY` wins.
    /// Without one a random key is used, and checkpoints do not verify after a restart.
    pub checkpoint_key: Option<SecretText>,
    /// Retired keys (`[[audit.previous_keys]]` with `id` and `key`), verify-only.
    pub previous_keys: Vec<PreviousKey>,
    /// How often the head of the chain is signed (default `"1m"`).
    #[serde(with = "umanage::core::duration")]
    pub checkpoint_interval: Duration,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            checkpoint_key_id: "server".into(),
            checkpoint_key: None,
            previous_keys: Vec::new(),
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

/// Decodes a hex key without ever putting its text in the error.
///
/// # Errors
///
/// A message naming `what` when the text is not hex.
pub fn decode_key(what: &str, text: &SecretText) -> Result<Vec<u8>, String> {
    hex::decode(text.0.trim()).map_err(|_| format!("{what}: not a hex string"))
}
