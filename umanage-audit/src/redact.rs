//! Redaction by field name and data class, applied before anything is queued, stored or
//! hashed.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::model::{AuditEvent, DataClass};
use crate::pipeline::Transformer;

/// What happens to a value of a data class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedactAction {
    /// Left as is.
    Keep,
    /// Removed (the key disappears; a top-level field becomes empty).
    Drop,
    /// Replaced by a masked form: first character, `***`, and an e-mail's domain
    /// (`a***@example.com`); IP addresses keep their /24 (IPv4) or /48 (IPv6) network.
    Mask,
    /// Replaced by `sha256:<hex>` of a salt and the value (stable, so equal values can be
    /// correlated without being revealed). A top-level IP address is dropped instead.
    Hash,
}

/// Redacts `old_values`, `new_values` and `metadata` (recursively, by key) and the
/// top-level `actor_name`, `target_name`, `user_agent` and `ip` (by field name), according
/// to the data class each name belongs to and the action configured for that class.
///
/// Every class a rule fired for is added to the event's `data_classes`.
#[derive(Clone)]
pub struct Redactor {
    fields: HashMap<String, DataClass>,
    substrings: Vec<(String, DataClass)>,
    actions: HashMap<DataClass, RedactAction>,
    salt: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("fields", &self.fields.len())
            .field("substrings", &self.substrings)
            .field("actions", &self.actions)
            .field("salt", &"[redacted]")
            .finish()
    }
}

/// Field names treated as secrets by [`Redactor::standard`] (exact, case-insensitive).
pub const SECRET_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set-cookie",
    "private_key",
    "client_secret",
    "otp",
    "totp_secret",
    "recovery_codes",
    "session_token",
    "cvv",
    "cvc",
    "pin",
];
/// Substrings that make a field name a secret in [`Redactor::standard`].
pub const SECRET_SUBSTRINGS: &[&str] = &["password", "secret", "token", "api_key"];
/// Field names treated as PII by [`Redactor::standard`].
pub const PII_FIELDS: &[&str] = &[
    "email",
    "phone",
    "phone_number",
    "mobile",
    "address",
    "street",
    "postal_code",
    "zip",
    "first_name",
    "last_name",
    "full_name",
    "display_name",
    "birth_date",
    "date_of_birth",
    "dob",
    "ssn",
    "national_id",
    "passport",
    "actor_name",
    "target_name",
    "ip",
    "user_agent",
];
/// Field names treated as PHI by [`Redactor::standard`].
pub const PHI_FIELDS: &[&str] = &[
    "diagnosis",
    "medical_record",
    "condition",
    "medication",
    "health",
];
/// Field names treated as PCI data by [`Redactor::standard`].
pub const PCI_FIELDS: &[&str] = &["card_number", "pan", "card", "iban", "expiry"];

impl Redactor {
    /// No rules: every value kept. Add rules with [`field`](Self::field).
    pub fn empty() -> Self {
        Self {
            fields: HashMap::new(),
            substrings: Vec::new(),
            actions: HashMap::new(),
            salt: Zeroizing::new(Vec::new()),
        }
    }

    /// The standard policy: secrets dropped, PII masked, PHI hashed, PCI masked, for the
    /// field names in [`SECRET_FIELDS`], [`SECRET_SUBSTRINGS`], [`PII_FIELDS`],
    /// [`PHI_FIELDS`] and [`PCI_FIELDS`].
    pub fn standard() -> Self {
        let mut r = Self::empty()
            .action(DataClass::Secret, RedactAction::Drop)
            .action(DataClass::Pii, RedactAction::Mask)
            .action(DataClass::Phi, RedactAction::Hash)
            .action(DataClass::Pci, RedactAction::Mask);
        for (names, class) in [
            (SECRET_FIELDS, DataClass::Secret),
            (PII_FIELDS, DataClass::Pii),
            (PHI_FIELDS, DataClass::Phi),
            (PCI_FIELDS, DataClass::Pci),
        ] {
            for n in names {
                r = r.field(n, class);
            }
        }
        for s in SECRET_SUBSTRINGS {
            r.substrings.push(((*s).to_owned(), DataClass::Secret));
        }
        r
    }

    /// Classifies the field `name` (case-insensitive) as `class`.
    #[must_use]
    pub fn field(mut self, name: &str, class: DataClass) -> Self {
        self.fields.insert(name.to_ascii_lowercase(), class);
        self
    }

    /// Sets the action for `class`. A secret's action can only be `Drop` or `Hash`
    /// (`Keep`/`Mask` of a secret are turned into `Drop`).
    #[must_use]
    pub fn action(mut self, class: DataClass, action: RedactAction) -> Self {
        let action = match (class, action) {
            (DataClass::Secret, RedactAction::Keep | RedactAction::Mask) => RedactAction::Drop,
            (_, a) => a,
        };
        self.actions.insert(class, action);
        self
    }

    /// Sets the salt mixed into [`RedactAction::Hash`] (keep it secret and stable).
    #[must_use]
    pub fn salt(mut self, salt: impl Into<Vec<u8>>) -> Self {
        self.salt = Zeroizing::new(salt.into());
        self
    }

    fn class_of(&self, name: &str) -> Option<DataClass> {
        let lower = name.to_ascii_lowercase();
        self.fields.get(&lower).copied().or_else(|| {
            self.substrings
                .iter()
                .find(|(s, _)| lower.contains(s.as_str()))
                .map(|(_, c)| *c)
        })
    }

    fn action_for(&self, class: DataClass) -> RedactAction {
        self.actions.get(&class).copied().unwrap_or(match class {
            DataClass::Secret => RedactAction::Drop,
            _ => RedactAction::Keep,
        })
    }

    fn hash(&self, value: &str) -> String {
        let mut h = Sha256::new();
        h.update((self.salt.len() as u64).to_be_bytes());
        h.update(self.salt.as_slice());
        h.update(value.as_bytes());
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    fn redact_string(&self, s: &str, action: RedactAction) -> Option<String> {
        match action {
            RedactAction::Keep => Some(s.to_owned()),
            RedactAction::Drop => None,
            RedactAction::Mask => Some(mask(s)),
            RedactAction::Hash => Some(self.hash(s)),
        }
    }

    fn redact_value(&self, v: &mut Value, hit: &mut Vec<DataClass>) {
        match v {
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    let Some(class) = self.class_of(&k) else {
                        if let Some(inner) = map.get_mut(&k) {
                            self.redact_value(inner, hit);
                        }
                        continue;
                    };
                    let action = self.action_for(class);
                    if action == RedactAction::Keep {
                        continue;
                    }
                    hit.push(class);
                    if action == RedactAction::Drop {
                        map.remove(&k);
                        continue;
                    }
                    if let Some(slot) = map.get_mut(&k) {
                        let text = match &*slot {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        *slot = self
                            .redact_string(&text, action)
                            .map_or(Value::Null, Value::String);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact_value(i, hit)),
            _ => {}
        }
    }
}

/// `a***@example.com`, `j***`, `***` for the empty string.
fn mask(s: &str) -> String {
    let first: String = s.chars().take(1).collect();
    match s.rsplit_once('@') {
        Some((_, domain)) if !first.is_empty() => format!("{first}***@{domain}"),
        _ => format!("{first}***"),
    }
}

fn mask_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

impl Transformer for Redactor {
    fn transform(&self, event: &mut AuditEvent) {
        let mut hit = Vec::new();
        for v in [&mut event.old_values, &mut event.new_values]
            .into_iter()
            .flatten()
        {
            self.redact_value(v, &mut hit);
        }
        let mut meta = Value::Object(std::mem::take(&mut event.metadata));
        self.redact_value(&mut meta, &mut hit);
        if let Value::Object(m) = meta {
            event.metadata = m;
        }
        for (name, slot) in [
            ("actor_name", &mut event.actor_name),
            ("target_name", &mut event.target_name),
            ("user_agent", &mut event.user_agent),
        ] {
            if let (Some(class), Some(value)) = (self.class_of(name), slot.as_ref()) {
                let action = self.action_for(class);
                if action != RedactAction::Keep {
                    hit.push(class);
                    *slot = self.redact_string(value, action);
                }
            }
        }
        if let (Some(class), Some(ip)) = (self.class_of("ip"), event.ip) {
            match self.action_for(class) {
                RedactAction::Keep => {}
                RedactAction::Mask => {
                    hit.push(class);
                    event.ip = Some(mask_ip(ip));
                }
                RedactAction::Drop | RedactAction::Hash => {
                    hit.push(class);
                    event.ip = None;
                }
            }
        }
        // A dropped secret is not data the record holds, so it is not a class of it.
        hit.retain(|c| *c != DataClass::Secret);
        event.data_classes.extend(hit);
        event.normalize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use umanage_core::ManualClock;

    #[test]
    fn standard_policy_drops_secrets_masks_pii_hashes_phi() {
        let clock = ManualClock::default();
        let mut e = AuditEvent::builder("user.updated", &clock)
            .actor_name("Alice Smith")
            .ip("192.0.2.77".parse().unwrap())
            .change(
                json!({"email": "alice@example.com", "password": "hunter2"}),
                json!({"email": "bob@example.com", "nested": {"newPassword": "x", "diagnosis": "flu"}}),
            )
            .meta("api_key", "k-123")
            .meta("plan", "pro")
            .build()
            .unwrap();
        Redactor::standard().salt("pepper").transform(&mut e);
        let text = serde_json::to_string(&e).unwrap();
        for secret in [
            "hunter2",
            "k-123",
            "alice@",
            "bob@",
            "Alice Smith",
            "flu",
            "192.0.2.77",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(e.old_values.unwrap()["email"], "a***@example.com");
        let new = e.new_values.unwrap();
        assert!(new["nested"].get("newPassword").is_none());
        assert!(
            new["nested"]["diagnosis"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert_eq!(e.metadata["plan"], "pro");
        assert_eq!(e.actor_name.as_deref(), Some("A***"));
        assert_eq!(e.ip, Some("192.0.2.0".parse().unwrap()));
        assert_eq!(e.data_classes, [DataClass::Pii, DataClass::Phi]);
    }

    #[test]
    fn actions_are_configurable_and_secrets_cannot_be_kept() {
        let clock = ManualClock::default();
        let mut e = AuditEvent::builder("x", &clock)
            .meta("email", "a@b.c")
            .meta("token", "t")
            .build()
            .unwrap();
        let r = Redactor::standard()
            .action(DataClass::Pii, RedactAction::Hash)
            .action(DataClass::Secret, RedactAction::Keep);
        r.transform(&mut e);
        assert!(e.metadata["email"].as_str().unwrap().starts_with("sha256:"));
        assert!(e.metadata.get("token").is_none());
        assert!(!format!("{r:?}").contains("pepper"));
    }
}
