//! [`PasswordService`]: setting, changing and checking passwords with policy, history,
//! minimum age and expiry.
//!
//! The service ties the pieces together: the [`PasswordPolicy`] validates a candidate, the
//! [`HashingPool`] hashes and verifies off the async runtime, the [`CredentialStore`] keeps
//! the current hash and its history, and the injected [`Clock`](umanage_core::Clock)
//! decides minimum age and expiry. Expected outcomes (a policy violation, a reused
//! password, a wrong current password, a change too soon, a lost race) are values of
//! [`ChangeOutcome`] / [`LoginOutcome`], not errors.
//!
//! # History
//!
//! With `history_count = N` in the policy, a new password may not equal the current one
//! nor any of the N-1 before it (so N counts the current password). The candidate is
//! verified against each of those stored hashes on the pool (they may use older
//! parameters, algorithms or peppers); a stored hash that cannot be checked (malformed,
//! a pepper key since removed) counts as "not the same" and is logged.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use umanage_core::{SharedClock, UserId};

use crate::error::Result;
use crate::hash::{HashedPassword, VerifyOutcome};
use crate::normalize::NormalizedPassword;
use crate::policy::{PasswordPolicy, UserInfo, ValidationReport};
use crate::pool::HashingPool;
use crate::store::{Credential, CredentialStore, NewCredential, ReplaceOutcome};

/// The result of [`PasswordService::set_password`] / [`PasswordService::change_password`].
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum ChangeOutcome {
    /// Stored.
    Changed {
        /// When (the service's clock).
        changed_at: DateTime<Utc>,
        /// The credential's new version.
        version: u64,
    },
    /// The policy rejected the new password; the report lists every violation.
    PolicyViolation(Box<ValidationReport>),
    /// The new password is the current one or one of the last `history_count` passwords.
    ReusedPassword,
    /// The password was changed too recently (policy `min_age_days`).
    TooSoon {
        /// When a change is allowed again.
        allowed_at: DateTime<Utc>,
    },
    /// The current password given for a change is wrong.
    WrongCurrentPassword,
    /// A change was asked for a user without a password (use `set_password`).
    NoCredential,
    /// Another change of the same user won a race; read again and retry if still wanted.
    Conflict,
}

impl ChangeOutcome {
    /// Whether the password was stored.
    pub fn is_changed(&self) -> bool {
        matches!(self, Self::Changed { .. })
    }
}

/// Whether a password has expired, from the policy's `expiry_days` and the service's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryStatus {
    /// The policy has no expiry.
    NeverExpires,
    /// Valid until `expires_at`.
    Valid {
        /// The moment it expires.
        expires_at: DateTime<Utc>,
    },
    /// Expired at `expired_at`: the user must change it (the login itself succeeded).
    Expired {
        /// The moment it expired.
        expired_at: DateTime<Utc>,
    },
}

/// The result of [`PasswordService::verify_login`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum LoginOutcome {
    /// The password is right.
    Success {
        /// Whether the stored hash was obsolete and has been replaced.
        rehashed: bool,
        /// Whether the password has expired.
        expiry: ExpiryStatus,
    },
    /// Wrong password, or the user has no password (indistinguishable by timing: a dummy
    /// hash is verified then).
    Failure,
}

/// Sets, changes and verifies passwords under a [`PasswordPolicy`].
///
/// See the crate README for a complete example.
#[derive(Debug, Clone)]
pub struct PasswordService {
    policy: Arc<PasswordPolicy>,
    pool: HashingPool,
    store: Arc<dyn CredentialStore>,
    clock: SharedClock,
    dummy: Arc<tokio::sync::OnceCell<HashedPassword>>,
}

impl PasswordService {
    /// A service over its parts; `clock` decides minimum age and expiry.
    pub fn new(
        policy: PasswordPolicy,
        pool: HashingPool,
        store: Arc<dyn CredentialStore>,
        clock: SharedClock,
    ) -> Self {
        Self {
            policy: Arc::new(policy),
            pool,
            store,
            clock,
            dummy: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    /// The hashing pool.
    pub fn pool(&self) -> &HashingPool {
        &self.pool
    }

    /// The store itself: calling through `&Arc<dyn CredentialStore>` would pick the `Arc`
    /// forwarding impl and box every call's future twice.
    fn backend(&self) -> &dyn CredentialStore {
        &*self.store
    }

    /// Sets a password without knowing the current one (registration, administrator reset,
    /// reset link): policy and history are enforced, minimum age is not.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Busy`](crate::PasswordError::Busy) when the hashing pool is full,
    /// [`PasswordError::Backend`](crate::PasswordError::Backend) when the store fails.
    #[tracing::instrument(name = "password.set", skip_all, fields(user = %user))]
    pub async fn set_password(
        &self,
        user: &UserId,
        info: &UserInfo,
        new_password: &NormalizedPassword,
    ) -> Result<ChangeOutcome> {
        let current = self.backend().get(user).await?;
        self.store_new(user, info, new_password, current.as_ref())
            .await
    }

    /// Changes a password on the user's own request: the current password must verify,
    /// the minimum age must have passed, and policy and history are enforced.
    ///
    /// # Errors
    ///
    /// As [`set_password`](Self::set_password); also
    /// [`PasswordError::MalformedHash`](crate::PasswordError::MalformedHash) and the other
    /// hash errors when the stored current hash is unusable.
    #[tracing::instrument(name = "password.change", skip_all, fields(user = %user))]
    pub async fn change_password(
        &self,
        user: &UserId,
        info: &UserInfo,
        current_password: &NormalizedPassword,
        new_password: &NormalizedPassword,
    ) -> Result<ChangeOutcome> {
        let Some(current) = self.backend().get(user).await? else {
            return Ok(ChangeOutcome::NoCredential);
        };
        let ok = self
            .pool
            .verify(current_password.clone(), current.hash.clone())
            .await?;
        if !ok {
            return Ok(ChangeOutcome::WrongCurrentPassword);
        }
        if let Some(min_age) = self.policy.min_age() {
            let allowed_at = current.changed_at + min_age;
            if self.clock.now() < allowed_at {
                return Ok(ChangeOutcome::TooSoon { allowed_at });
            }
        }
        self.store_new(user, info, new_password, Some(&current))
            .await
    }

    /// Checks a login. On success an obsolete hash (older parameters, bcrypt, a retired
    /// pepper key) is replaced by a fresh one, and the expiry status is reported.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Busy`](crate::PasswordError::Busy),
    /// [`PasswordError::Backend`](crate::PasswordError::Backend), and the hash errors
    /// ([`PasswordError::MalformedHash`](crate::PasswordError::MalformedHash), ...) when
    /// the stored hash is unusable.
    #[tracing::instrument(name = "password.verify_login", skip_all, fields(user = %user))]
    pub async fn verify_login(
        &self,
        user: &UserId,
        password: &NormalizedPassword,
    ) -> Result<LoginOutcome> {
        let Some(current) = self.backend().get(user).await? else {
            // Same work as a real check, so timing does not tell which users exist.
            let dummy = self.dummy_hash().await?;
            let _ = self.pool.verify(password.clone(), dummy).await?;
            return Ok(LoginOutcome::Failure);
        };
        let outcome = self
            .pool
            .verify_and_upgrade(password.clone(), current.hash.clone())
            .await?;
        let rehashed = match outcome {
            VerifyOutcome::Mismatch => return Ok(LoginOutcome::Failure),
            VerifyOutcome::Match => false,
            VerifyOutcome::MatchNeedsRehash(new_hash) => {
                // A concurrent change wins over the rehash (the new password is newer).
                self.backend()
                    .upgrade_hash(user, current.version, new_hash)
                    .await?
            }
        };
        Ok(LoginOutcome::Success {
            rehashed,
            expiry: self.expiry_of(&current),
        })
    }

    /// The expiry status of the user's password; `None` when the user has none.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Backend`](crate::PasswordError::Backend) when the store fails.
    #[tracing::instrument(name = "password.expiry_status", skip_all, fields(user = %user))]
    pub async fn expiry_status(&self, user: &UserId) -> Result<Option<ExpiryStatus>> {
        Ok(self.backend().get(user).await?.map(|c| self.expiry_of(&c)))
    }

    fn expiry_of(&self, credential: &Credential) -> ExpiryStatus {
        match self.policy.expiry() {
            None => ExpiryStatus::NeverExpires,
            Some(after) => {
                let at = credential.changed_at + after;
                if self.clock.now() >= at {
                    ExpiryStatus::Expired { expired_at: at }
                } else {
                    ExpiryStatus::Valid { expires_at: at }
                }
            }
        }
    }

    async fn dummy_hash(&self) -> Result<HashedPassword> {
        let pool = self.pool.clone();
        self.dummy
            .get_or_try_init(|| async move {
                let pw = NormalizedPassword::new("umanage dummy password for timing")?;
                pool.hash(pw).await
            })
            .await
            .cloned()
    }

    async fn store_new(
        &self,
        user: &UserId,
        info: &UserInfo,
        new_password: &NormalizedPassword,
        current: Option<&Credential>,
    ) -> Result<ChangeOutcome> {
        let report = self.policy.validate(new_password, info);
        if !report.is_valid() {
            return Ok(ChangeOutcome::PolicyViolation(Box::new(report)));
        }
        let n = self.policy.history_count() as usize;
        if let Some(current) = current.filter(|_| n > 0) {
            let mut recent = vec![current.hash.clone()];
            recent.extend(current.history.iter().take(n - 1).cloned());
            if self.is_reused(new_password, recent).await? {
                return Ok(ChangeOutcome::ReusedPassword);
            }
        }
        let hash = self.pool.hash(new_password.clone()).await?;
        let changed_at = self.clock.now();
        let new = NewCredential::new(hash, changed_at, n.saturating_sub(1));
        match self
            .backend()
            .replace(user, current.map(|c| c.version), new)
            .await?
        {
            ReplaceOutcome::Replaced { version } => Ok(ChangeOutcome::Changed {
                changed_at,
                version,
            }),
            ReplaceOutcome::Conflict { .. } => Ok(ChangeOutcome::Conflict),
        }
    }

    /// Whether `candidate` verifies against any of `hashes` (one pool slot, checked in turn).
    async fn is_reused(
        &self,
        candidate: &NormalizedPassword,
        hashes: Vec<HashedPassword>,
    ) -> Result<bool> {
        let candidate = candidate.clone();
        self.pool
            .run(move |hasher| {
                for stored in &hashes {
                    match hasher.verify(&candidate, stored.as_str()) {
                        Ok(true) => return Ok(true),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "password history entry cannot be checked; treated as different");
                        }
                    }
                }
                Ok(false)
            })
            .await
    }
}
