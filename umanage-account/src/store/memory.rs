//! In-memory [`AccountStore`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use async_trait::async_trait;
use parking_lot::RwLock;
use umanage_core::{SharedClock, SystemClock, UserId};

use super::{AccountStore, page_size};
use crate::error::{AccountError, Result};
use crate::model::{
    Account, AccountCursor, AccountPage, AccountStatus, Email, Login, NewAccount, Role, Username,
};

#[derive(Debug, Default)]
struct Inner {
    accounts: BTreeMap<UserId, Account>,
    by_username: HashMap<String, UserId>,
    by_email: HashMap<String, UserId>,
}

impl Inner {
    /// The account to change, after the version check.
    fn for_update(&mut self, id: UserId, expected: u64) -> Result<&mut Account> {
        let account = self
            .accounts
            .get_mut(&id)
            .ok_or(AccountError::NotFound { id })?;
        if account.version != expected {
            return Err(AccountError::VersionConflict {
                id,
                expected,
                actual: account.version,
            });
        }
        Ok(account)
    }
}

/// An in-process [`AccountStore`]: one `RwLock` over the accounts (ordered by id) and the
/// two unique indexes (username, email key), so every check-and-write is atomic.
///
/// `created_at` / `updated_at` come from the injected [`Clock`](umanage_core::Clock).
/// Data lives as long as the store: this is the embedded default and the test double of
/// the Postgres store, not a cache.
#[derive(Debug)]
pub struct MemoryAccountStore {
    inner: RwLock<Inner>,
    clock: SharedClock,
}

impl Default for MemoryAccountStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryAccountStore {
    /// A store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock::shared())
    }

    /// A store on `clock` (a [`ManualClock`](umanage_core::ManualClock) in tests).
    pub fn with_clock(clock: SharedClock) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            clock,
        }
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.inner.read().accounts.len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn find_by(&self, pick: impl FnOnce(&Inner) -> Option<UserId>) -> Option<Account> {
        let inner = self.inner.read();
        pick(&inner).and_then(|id| inner.accounts.get(&id).cloned())
    }

    fn change(
        &self,
        id: UserId,
        expected: u64,
        apply: impl FnOnce(&mut Account),
    ) -> Result<Account> {
        let now = self.clock.now();
        let mut inner = self.inner.write();
        let account = inner.for_update(id, expected)?;
        apply(account);
        account.version += 1;
        account.updated_at = now;
        Ok(account.clone())
    }
}

#[async_trait]
impl AccountStore for MemoryAccountStore {
    #[tracing::instrument(name = "account.create", skip_all, fields(backend = "memory"))]
    async fn create(&self, new: NewAccount) -> Result<Account> {
        let valid = new.validate()?;
        let now = self.clock.now();
        let mut inner = self.inner.write();
        if inner.by_username.contains_key(valid.username.as_str()) {
            return Err(AccountError::UsernameTaken);
        }
        if inner.by_email.contains_key(valid.email.key()) {
            return Err(AccountError::EmailTaken);
        }
        let mut id = UserId::new();
        while inner.accounts.contains_key(&id) {
            id = UserId::new();
        }
        let account = valid.into_account(id, now);
        inner
            .by_username
            .insert(account.username.as_str().to_owned(), id);
        inner.by_email.insert(account.email.key().to_owned(), id);
        inner.accounts.insert(id, account.clone());
        Ok(account)
    }

    #[tracing::instrument(name = "account.get", skip_all, fields(backend = "memory", %id))]
    async fn get(&self, id: UserId) -> Result<Option<Account>> {
        Ok(self.inner.read().accounts.get(&id).cloned())
    }

    #[tracing::instrument(name = "account.find_by_login", skip_all, fields(backend = "memory"))]
    async fn find_by_login(&self, login: &str) -> Result<Option<Account>> {
        Ok(match Login::parse(login) {
            Some(Login::Username(u)) => self.find_by(|i| i.by_username.get(u.as_str()).copied()),
            Some(Login::Email(e)) => self.find_by(|i| i.by_email.get(e.key()).copied()),
            None => None,
        })
    }

    #[tracing::instrument(
        name = "account.find_by_username",
        skip_all,
        fields(backend = "memory")
    )]
    async fn find_by_username(&self, username: &str) -> Result<Option<Account>> {
        let Ok(username) = Username::parse(username) else {
            return Ok(None);
        };
        Ok(self.find_by(|i| i.by_username.get(username.as_str()).copied()))
    }

    #[tracing::instrument(name = "account.find_by_email", skip_all, fields(backend = "memory"))]
    async fn find_by_email(&self, email: &str) -> Result<Option<Account>> {
        let Ok(email) = Email::parse(email) else {
            return Ok(None);
        };
        Ok(self.find_by(|i| i.by_email.get(email.key()).copied()))
    }

    #[tracing::instrument(name = "account.update_status", skip_all, fields(backend = "memory", %id))]
    async fn update_status(
        &self,
        id: UserId,
        status: AccountStatus,
        expected_version: u64,
    ) -> Result<Account> {
        let status = status.normalized()?;
        self.change(id, expected_version, |a| a.status = status)
    }

    #[tracing::instrument(name = "account.set_roles", skip_all, fields(backend = "memory", %id))]
    async fn set_roles(
        &self,
        id: UserId,
        roles: BTreeSet<Role>,
        expected_version: u64,
    ) -> Result<Account> {
        self.change(id, expected_version, |a| a.roles = roles)
    }

    #[tracing::instrument(name = "account.update_email", skip_all, fields(backend = "memory", %id))]
    async fn update_email(
        &self,
        id: UserId,
        email: &str,
        expected_version: u64,
    ) -> Result<Account> {
        let email = Email::parse(email)?;
        let now = self.clock.now();
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        let owner = inner.by_email.get(email.key()).copied();
        let account = inner.for_update(id, expected_version)?;
        if owner.is_some_and(|owner| owner != id) {
            return Err(AccountError::EmailTaken);
        }
        let old_key = account.email.key().to_owned();
        account.email = email;
        account.version += 1;
        account.updated_at = now;
        let updated = account.clone();
        inner.by_email.remove(&old_key);
        inner.by_email.insert(updated.email.key().to_owned(), id);
        Ok(updated)
    }

    #[tracing::instrument(name = "account.update_display_name", skip_all, fields(backend = "memory", %id))]
    async fn update_display_name(
        &self,
        id: UserId,
        display_name: Option<&str>,
        expected_version: u64,
    ) -> Result<Account> {
        let display_name = display_name
            .map(NewAccount::normalize_display_name)
            .transpose()?;
        self.change(id, expected_version, |a| a.display_name = display_name)
    }

    #[tracing::instrument(name = "account.delete", skip_all, fields(backend = "memory", %id))]
    async fn delete(&self, id: UserId) -> Result<bool> {
        let mut inner = self.inner.write();
        let Some(account) = inner.accounts.remove(&id) else {
            return Ok(false);
        };
        inner.by_username.remove(account.username.as_str());
        inner.by_email.remove(account.email.key());
        Ok(true)
    }

    #[tracing::instrument(name = "account.list", skip_all, fields(backend = "memory", limit = limit))]
    async fn list(&self, cursor: Option<AccountCursor>, limit: usize) -> Result<AccountPage> {
        let limit = page_size(limit);
        let start = cursor.map_or(Bound::Unbounded, |c| Bound::Excluded(c.last_id()));
        let inner = self.inner.read();
        let mut accounts: Vec<Account> = inner
            .accounts
            .range((start, Bound::Unbounded))
            .take(limit + 1)
            .map(|(_, a)| a.clone())
            .collect();
        let next_cursor = if accounts.len() > limit {
            accounts.truncate(limit);
            accounts.last().map(|a| AccountCursor::after(a.id))
        } else {
            None
        };
        Ok(AccountPage {
            accounts,
            next_cursor,
        })
    }

    #[tracing::instrument(name = "account.count_with_role", skip_all, fields(backend = "memory", role = %role))]
    async fn count_with_role(&self, role: &Role) -> Result<u64> {
        let inner = self.inner.read();
        Ok(inner.accounts.values().filter(|a| a.has_role(role)).count() as u64)
    }
}
