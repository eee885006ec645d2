//! The [`AccountStore`] trait and its forwarding impls.

#[cfg(feature = "memory")]
pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use umanage_core::UserId;

use crate::error::{CreateWithError, Result};
use crate::model::{Account, AccountCursor, AccountPage, AccountStatus, NewAccount, Role};

/// Most accounts one [`AccountStore::list`] call returns; larger limits are lowered to it.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Where accounts live.
///
/// # Contract
///
/// * Input is normalised and validated exactly as [`NewAccount::validate`],
///   [`Username::parse`](crate::Username::parse) and [`Email::parse`](crate::Email::parse)
///   describe; invalid input is a typed `Invalid*` error and never reaches the backend.
/// * Usernames are unique after normalisation and emails are unique by
///   [`Email::key`](crate::Email::key) (case-insensitive), enforced atomically: of any
///   number of concurrent `create`/`update_email` calls claiming one name, exactly one
///   succeeds and the others get [`UsernameTaken`](crate::AccountError::UsernameTaken) /
///   [`EmailTaken`](crate::AccountError::EmailTaken). When both are taken, either may be
///   reported.
/// * Every change bumps [`Account::version`] by one and sets `updated_at`; a change whose
///   `expected_version` is not the stored one fails with
///   [`VersionConflict`](crate::AccountError::VersionConflict) and changes nothing; a
///   change of an unknown id fails with [`NotFound`](crate::AccountError::NotFound).
/// * Lookups of input that cannot be normalised return `Ok(None)`: no account can have it.
/// * [`list`](Self::list) pages in ascending id order (keyset, so concurrent inserts never
///   shift pages): following `next_cursor` visits every account present throughout
///   exactly once.
#[async_trait]
pub trait AccountStore: Send + Sync + std::fmt::Debug {
    /// Creates an account with a new random id, at version 1.
    ///
    /// # Errors
    ///
    /// The validation errors of [`NewAccount::validate`];
    /// [`UsernameTaken`](crate::AccountError::UsernameTaken) /
    /// [`EmailTaken`](crate::AccountError::EmailTaken);
    /// [`Backend`](crate::AccountError::Backend) when the backend fails.
    async fn create(&self, new: NewAccount) -> Result<Account>;

    /// The account with `id`.
    ///
    /// # Errors
    ///
    /// [`Backend`](crate::AccountError::Backend) when the backend fails.
    async fn get(&self, id: UserId) -> Result<Option<Account>>;

    /// The account whose username (if `login` has no `@`) or email (if it has one)
    /// matches `login` after normalisation.
    ///
    /// # Errors
    ///
    /// [`Backend`](crate::AccountError::Backend) when the backend fails.
    async fn find_by_login(&self, login: &str) -> Result<Option<Account>>;

    /// The account with this username (normalised first).
    ///
    /// # Errors
    ///
    /// [`Backend`](crate::AccountError::Backend) when the backend fails.
    async fn find_by_username(&self, username: &str) -> Result<Option<Account>>;

    /// The account with this email (compared by [`Email::key`](crate::Email::key)).
    ///
    /// # Errors
    ///
    /// [`Backend`](crate::AccountError::Backend) when the backend fails.
    async fn find_by_email(&self, email: &str) -> Result<Option<Account>>;

    /// Sets the status.
    ///
    /// # Errors
    ///
    /// [`InvalidLockReason`](crate::AccountError::InvalidLockReason),
    /// [`NotFound`](crate::AccountError::NotFound),
    /// [`VersionConflict`](crate::AccountError::VersionConflict),
    /// [`Backend`](crate::AccountError::Backend).
    async fn update_status(
        &self,
        id: UserId,
        status: AccountStatus,
        expected_version: u64,
    ) -> Result<Account>;

    /// Replaces the roles.
    ///
    /// # Errors
    ///
    /// [`NotFound`](crate::AccountError::NotFound),
    /// [`VersionConflict`](crate::AccountError::VersionConflict),
    /// [`Backend`](crate::AccountError::Backend).
    async fn set_roles(
        &self,
        id: UserId,
        roles: BTreeSet<Role>,
        expected_version: u64,
    ) -> Result<Account>;

    /// Changes the email address (changing only the case of one's own address is allowed).
    ///
    /// # Errors
    ///
    /// [`InvalidEmail`](crate::AccountError::InvalidEmail),
    /// [`EmailTaken`](crate::AccountError::EmailTaken),
    /// [`NotFound`](crate::AccountError::NotFound),
    /// [`VersionConflict`](crate::AccountError::VersionConflict),
    /// [`Backend`](crate::AccountError::Backend).
    async fn update_email(&self, id: UserId, email: &str, expected_version: u64)
    -> Result<Account>;

    /// Sets (`Some`) or clears (`None`) the display name (trimmed, validated as in
    /// [`NewAccount::validate`]).
    ///
    /// # Errors
    ///
    /// [`InvalidDisplayName`](crate::AccountError::InvalidDisplayName),
    /// [`NotFound`](crate::AccountError::NotFound),
    /// [`VersionConflict`](crate::AccountError::VersionConflict),
    /// [`Backend`](crate::AccountError::Backend).
    async fn update_display_name(
        &self,
        id: UserId,
        display_name: Option<&str>,
        expected_version: u64,
    ) -> Result<Account>;

    /// Deletes the account, freeing its username and email. Returns whether it existed.
    ///
    /// # Errors
    ///
    /// [`Backend`](crate::AccountError::Backend) when the backend fails.
    async fn delete(&self, id: UserId) -> Result<bool>;

    /// Up to `limit` accounts (at least 1, at most [`MAX_PAGE_SIZE`]) with ids after
    /// `cursor`, in id order.
    ///
    /// # Errors
    ///
    /// [`Backend`](crate::AccountError::Backend) when the backend fails.
    async fn list(&self, cursor: Option<AccountCursor>, limit: usize) -> Result<AccountPage>;

    /// How many accounts have `role` (e.g. "is there an admin yet?").
    ///
    /// # Errors
    ///
    /// [`Backend`](crate::AccountError::Backend) when the backend fails.
    async fn count_with_role(&self, role: &Role) -> Result<u64>;
}

/// Creates an account, then runs `follow_up` with it (store the password, grant a default
/// plan...). When `follow_up` fails, the account is deleted again, so a failed registration
/// leaves nothing behind and the username and email stay free.
///
/// This is a *compensating* delete, not a shared transaction: for the short time between
/// `create` and the end of `follow_up`, the account exists on its own (it has no password
/// yet, so it cannot log in). If the process dies in that window, the account remains;
/// a host that cannot accept that sweeps accounts without a credential. The future is
/// not cancellation-safe for the same reason: run it in a spawned task when the caller's
/// future may be dropped (an HTTP handler whose client disconnects).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use umanage_account::{AccountStore, CreateWithError, MemoryAccountStore, NewAccount, create_with};
///
/// let store = MemoryAccountStore::new();
/// let failed = create_with(&store, NewAccount::new("ana", "ana@example.com"), |_account| async {
///     Err::<(), _>("the credential store is down")
/// })
/// .await;
/// assert!(matches!(failed, Err(CreateWithError::FollowUp("the credential store is down"))));
/// assert_eq!(store.find_by_login("ana").await.unwrap(), None); // nothing remains
///
/// let (account, ()) = create_with(&store, NewAccount::new("ana", "ana@example.com"), |_| async {
///     Ok::<(), &str>(())
/// })
/// .await
/// .unwrap();
/// assert_eq!(account.username.as_str(), "ana");
/// # }
/// ```
///
/// # Errors
///
/// [`CreateWithError::Account`] when `create` fails (nothing written),
/// [`CreateWithError::FollowUp`] when `follow_up` fails (the account was deleted),
/// [`CreateWithError::Cleanup`] when the delete failed as well.
pub async fn create_with<S, F, Fut, T, E>(
    store: &S,
    new: NewAccount,
    follow_up: F,
) -> std::result::Result<(Account, T), CreateWithError<E>>
where
    S: AccountStore + ?Sized,
    F: FnOnce(Account) -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
{
    let account = store.create(new).await.map_err(CreateWithError::Account)?;
    match follow_up(account.clone()).await {
        Ok(value) => Ok((account, value)),
        Err(error) => match store.delete(account.id).await {
            Ok(_) => Err(CreateWithError::FollowUp(error)),
            Err(cleanup) => {
                tracing::error!(account = %account.id, error = %cleanup, "could not remove a half-created account");
                Err(CreateWithError::Cleanup {
                    account: account.id,
                    error,
                    cleanup,
                })
            }
        },
    }
}

macro_rules! forward_account_store {
    ($($ty:ty),+) => {$(
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<S: AccountStore + ?Sized> AccountStore for $ty {
            async fn create(&self, new: NewAccount) -> Result<Account> {
                (**self).create(new).await
            }
            async fn get(&self, id: UserId) -> Result<Option<Account>> {
                (**self).get(id).await
            }
            async fn find_by_login(&self, login: &str) -> Result<Option<Account>> {
                (**self).find_by_login(login).await
            }
            async fn find_by_username(&self, username: &str) -> Result<Option<Account>> {
                (**self).find_by_username(username).await
            }
            async fn find_by_email(&self, email: &str) -> Result<Option<Account>> {
                (**self).find_by_email(email).await
            }
            async fn update_status(
                &self,
                id: UserId,
                status: AccountStatus,
                expected_version: u64,
            ) -> Result<Account> {
                (**self).update_status(id, status, expected_version).await
            }
            async fn set_roles(
                &self,
                id: UserId,
                roles: BTreeSet<Role>,
                expected_version: u64,
            ) -> Result<Account> {
                (**self).set_roles(id, roles, expected_version).await
            }
            async fn update_email(
                &self,
                id: UserId,
                email: &str,
                expected_version: u64,
            ) -> Result<Account> {
                (**self).update_email(id, email, expected_version).await
            }
            async fn update_display_name(
                &self,
                id: UserId,
                display_name: Option<&str>,
                expected_version: u64,
            ) -> Result<Account> {
                (**self)
                    .update_display_name(id, display_name, expected_version)
                    .await
            }
            async fn delete(&self, id: UserId) -> Result<bool> {
                (**self).delete(id).await
            }
            async fn list(
                &self,
                cursor: Option<AccountCursor>,
                limit: usize,
            ) -> Result<AccountPage> {
                (**self).list(cursor, limit).await
            }
            async fn count_with_role(&self, role: &Role) -> Result<u64> {
                (**self).count_with_role(role).await
            }
        }
    )+};
}

forward_account_store!(Arc<S>, Box<S>);

/// `limit` clamped to `1..=MAX_PAGE_SIZE`.
#[cfg_attr(not(any(feature = "memory", feature = "postgres")), allow(dead_code))]
pub(crate) fn page_size(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE_SIZE)
}
