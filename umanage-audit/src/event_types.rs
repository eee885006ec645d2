//! The standard user-management event types, so hosts and every umanage crate emit the
//! same names.
//!
//! Names are `<area>.<subject>[.<outcome>]`, lower case, dot separated. Hosts may add their
//! own names; keep the same shape so filters by prefix (`"auth."`) keep working.

use crate::model::Severity;

/// A user logged in.
pub const LOGIN_SUCCESS: &str = "auth.login.success";
/// A login attempt failed (wrong password, unknown user, locked account).
pub const LOGIN_FAILURE: &str = "auth.login.failure";
/// A user logged out.
pub const LOGOUT: &str = "auth.logout";
/// A user changed their password.
pub const PASSWORD_CHANGED: &str = "auth.password.changed";
/// A password reset was requested.
pub const PASSWORD_RESET_REQUESTED: &str = "auth.password.reset_requested";
/// A password was reset with a reset token.
pub const PASSWORD_RESET_COMPLETED: &str = "auth.password.reset_completed";
/// A password was rejected by the policy or a breach check.
pub const PASSWORD_REJECTED: &str = "auth.password.rejected";
/// An account was locked (too many failures, an admin).
pub const ACCOUNT_LOCKED: &str = "auth.account.locked";
/// An account was unlocked.
pub const ACCOUNT_UNLOCKED: &str = "auth.account.unlocked";
/// A password-spray pattern was detected.
pub const SPRAY_DETECTED: &str = "security.spray_detected";
/// MFA was enrolled.
pub const MFA_ENROLLED: &str = "auth.mfa.enrolled";
/// MFA was removed.
pub const MFA_REMOVED: &str = "auth.mfa.removed";
/// An MFA challenge was passed.
pub const MFA_SUCCESS: &str = "auth.mfa.success";
/// An MFA challenge failed.
pub const MFA_FAILURE: &str = "auth.mfa.failure";
/// A session was created.
pub const SESSION_CREATED: &str = "session.created";
/// A session was revoked (logout elsewhere, admin, limit reached).
pub const SESSION_REVOKED: &str = "session.revoked";
/// A session expired.
pub const SESSION_EXPIRED: &str = "session.expired";
/// A session token was rotated.
pub const SESSION_ROTATED: &str = "session.rotated";
/// A rotated (old) session token was presented again: likely theft.
pub const SESSION_REUSE_DETECTED: &str = "security.session_reuse_detected";
/// A request was rejected by a rate limit.
pub const RATE_LIMITED: &str = "security.rate_limited";
/// A user was created.
pub const USER_CREATED: &str = "user.created";
/// A user was updated.
pub const USER_UPDATED: &str = "user.updated";
/// A user was deleted.
pub const USER_DELETED: &str = "user.deleted";
/// A user's roles or permissions changed.
pub const PERMISSION_CHANGED: &str = "authz.permission.changed";
/// A role was granted.
pub const ROLE_GRANTED: &str = "authz.role.granted";
/// A role was revoked.
pub const ROLE_REVOKED: &str = "authz.role.revoked";
/// Access was denied by an authorisation check.
pub const ACCESS_DENIED: &str = "authz.access.denied";
/// An API key was created.
pub const API_KEY_CREATED: &str = "api_key.created";
/// An API key was revoked.
pub const API_KEY_REVOKED: &str = "api_key.revoked";
/// Personal data was exported (GDPR access request).
pub const DATA_EXPORTED: &str = "privacy.data.exported";
/// Personal data was erased (GDPR erasure).
pub const DATA_ERASED: &str = "privacy.data.erased";
/// Consent was given or withdrawn.
pub const CONSENT_CHANGED: &str = "privacy.consent.changed";
/// Configuration changed.
pub const CONFIG_CHANGED: &str = "system.config.changed";
/// The audit chain failed verification.
pub const AUDIT_TAMPER_DETECTED: &str = "security.audit_tamper_detected";

/// Event types that are security-relevant: never sampled away, whatever their severity.
pub const SECURITY: &[&str] = &[
    LOGIN_FAILURE,
    PASSWORD_CHANGED,
    PASSWORD_RESET_COMPLETED,
    ACCOUNT_LOCKED,
    SPRAY_DETECTED,
    MFA_REMOVED,
    MFA_FAILURE,
    SESSION_REVOKED,
    SESSION_REUSE_DETECTED,
    RATE_LIMITED,
    USER_DELETED,
    PERMISSION_CHANGED,
    ROLE_GRANTED,
    ROLE_REVOKED,
    ACCESS_DENIED,
    API_KEY_CREATED,
    API_KEY_REVOKED,
    DATA_ERASED,
    AUDIT_TAMPER_DETECTED,
];

/// True when `event_type` is in [`SECURITY`] or starts with `security.`.
pub fn is_security(event_type: &str) -> bool {
    event_type.starts_with("security.") || SECURITY.contains(&event_type)
}

/// The severity an event of this type gets unless set explicitly.
pub fn default_severity(event_type: &str) -> Severity {
    match event_type {
        SESSION_REUSE_DETECTED | AUDIT_TAMPER_DETECTED => Severity::Critical,
        LOGIN_FAILURE | MFA_FAILURE | ACCOUNT_LOCKED | SPRAY_DETECTED | RATE_LIMITED
        | ACCESS_DENIED | PASSWORD_REJECTED => Severity::Warning,
        t if t.starts_with("security.") => Severity::Warning,
        PASSWORD_CHANGED
        | PASSWORD_RESET_COMPLETED
        | MFA_ENROLLED
        | MFA_REMOVED
        | SESSION_REVOKED
        | USER_CREATED
        | USER_DELETED
        | PERMISSION_CHANGED
        | ROLE_GRANTED
        | ROLE_REVOKED
        | API_KEY_CREATED
        | API_KEY_REVOKED
        | DATA_EXPORTED
        | DATA_ERASED
        | CONFIG_CHANGED => Severity::Notice,
        _ => Severity::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_well_formed_and_security_set_is_consistent() {
        for t in SECURITY {
            assert!(is_security(t));
            assert!(default_severity(t) >= Severity::Notice, "{t}");
        }
        assert!(!is_security(LOGIN_SUCCESS));
        assert_eq!(default_severity("host.custom"), Severity::Info);
        assert_eq!(default_severity(SESSION_REUSE_DETECTED), Severity::Critical);
    }
}
