//! The in-memory [`CredentialStore`]: one process, nothing persisted (tests, single-node
//! hosts, embedded use).

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;
use umanage_core::UserId;

use super::{Credential, CredentialStore, NewCredential, ReplaceOutcome};
use crate::error::Result;
use crate::hash::HashedPassword;

/// Credentials in a mutex-guarded map. Every operation is atomic under the lock.
#[derive(Default)]
pub struct MemoryCredentialStore {
    users: Mutex<HashMap<UserId, Credential>>,
}

impl MemoryCredentialStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for MemoryCredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCredentialStore")
            .field("users", &self.users.lock().len())
            .finish()
    }
}

#[async_trait]
impl CredentialStore for MemoryCredentialStore {
    async fn get(&self, user: &UserId) -> Result<Option<Credential>> {
        Ok(self.users.lock().get(user).cloned())
    }

    async fn replace(
        &self,
        user: &UserId,
        expected: Option<u64>,
        new: NewCredential,
    ) -> Result<ReplaceOutcome> {
        let mut users = self.users.lock();
        let current = users.get(user).map(|c| c.version);
        if current != expected {
            return Ok(ReplaceOutcome::Conflict { current });
        }
        let (version, mut history) = match users.remove(user) {
            Some(old) => {
                let mut history = old.history;
                history.insert(0, old.hash);
                (old.version + 1, history)
            }
            None => (1, Vec::new()),
        };
        history.truncate(new.keep_history);
        users.insert(
            *user,
            Credential {
                hash: new.hash,
                changed_at: new.changed_at,
                version,
                history,
            },
        );
        Ok(ReplaceOutcome::Replaced { version })
    }

    async fn upgrade_hash(
        &self,
        user: &UserId,
        expected: u64,
        hash: HashedPassword,
    ) -> Result<bool> {
        let mut users = self.users.lock();
        match users.get_mut(user) {
            Some(c) if c.version == expected => {
                c.hash = hash;
                c.version += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, user: &UserId) -> Result<bool> {
        Ok(self.users.lock().remove(user).is_some())
    }
}
