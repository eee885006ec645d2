//! The audit event and its vocabulary.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use umanage_core::{Clock, RequestContext};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Longest accepted text field, in bytes (event type, names, ids, user agent, ...).
pub const MAX_TEXT_LEN: usize = 8 * 1024;

/// How important an event is (the syslog levels an auditor cares about).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Diagnostic detail.
    Debug,
    /// Normal operation (a login, a profile read).
    Info,
    /// Normal but significant (a password change, a role grant).
    Notice,
    /// Something that may need attention (a failed login, a rate limit).
    Warning,
    /// A failure that needs attention.
    Error,
    /// A security incident (token reuse, tampering detected).
    Critical,
}

impl Severity {
    /// The lower-case name (`"warning"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Notice => "notice",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    /// A human user.
    User,
    /// The system itself (a job, a scheduler).
    System,
    /// An API client (service account, API key).
    Api,
    /// Nobody identified: a failed login of an unknown user, a request rejected before
    /// authentication (rate limit, spray protection). Use `"anonymous"` (or the client
    /// address, if the host's privacy rules allow it) as the actor id.
    Anonymous,
}

impl ActorType {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::System => "system",
            Self::Api => "api",
            Self::Anonymous => "anonymous",
        }
    }
}

/// How the action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It worked.
    Success,
    /// It was refused or failed.
    Failure,
    /// Part of it worked (a bulk operation with some failures).
    Partial,
}

impl Outcome {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Partial => "partial",
        }
    }
}

/// A regulation an event is relevant to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regulation {
    /// EU General Data Protection Regulation.
    Gdpr,
    /// US Health Insurance Portability and Accountability Act.
    Hipaa,
    /// AICPA SOC 2.
    Soc2,
}

/// A class of sensitive data an event touches (and the key of redaction rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// Personally identifiable information.
    Pii,
    /// Protected health information.
    Phi,
    /// Payment card data.
    Pci,
    /// Credentials and secrets (passwords, tokens, keys): never kept.
    Secret,
}

/// One audit record. Build it with [`AuditEvent::builder`]; every field is public so
/// pipelines can enrich and redact it.
///
/// The timestamp is truncated to microseconds when the event is built (what Postgres
/// keeps), and [`normalize`](Self::normalize) truncates again before an event is stored or
/// hashed, so the hash covers exactly what the database holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditEvent {
    /// Unique id (UUIDv7, time-ordered). Re-delivering an event with the same id is a no-op.
    pub id: Uuid,
    /// When it happened (microsecond precision).
    pub timestamp: DateTime<Utc>,
    /// What happened, one of [`event_types`](crate::event_types) or a host-defined name.
    pub event_type: String,
    /// How important it is.
    pub severity: Severity,
    /// Who acted (user id, service name, API key id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// What kind of actor.
    pub actor_type: ActorType,
    /// The actor's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// The actor's roles at the time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actor_roles: Vec<String>,
    /// What was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// The kind of target (`"user"`, `"session"`, `"role"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// The target's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// The verb (`"create"`, `"login"`, `"revoke"`).
    pub action: String,
    /// The resource path or name (`"/api/users/42"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The request method (`"POST"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// How it ended.
    pub result: Outcome,
    /// Correlation: request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Correlation: session id (its public id, never a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Correlation: W3C trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Correlation: W3C span id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// The client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The client's user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The host that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The service that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The service's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// State before a change (redacted by the pipeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_values: Option<Value>,
    /// State after a change (redacted by the pipeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_values: Option<Value>,
    /// Names of the fields that changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_fields: Vec<String>,
    /// How long the operation took (microsecond precision).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "duration_us",
        with = "duration_micros"
    )]
    pub duration: Option<Duration>,
    /// Risk score 0..=100 from a risk scorer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_score: Option<u8>,
    /// Anomalies a risk scorer found (`"new_ip"`, `"failure_burst"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<String>,
    /// Regulations the event is relevant to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regulations: Vec<Regulation>,
    /// Sensitive data classes the event touches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_classes: Vec<DataClass>,
    /// Further key/value details (redacted by the pipeline like old/new values).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

mod duration_micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_micros))
    }
}

/// A UUIDv7 for the instant `at` (random low bits).
pub fn uuid_v7_at(at: DateTime<Utc>) -> Uuid {
    let secs = u64::try_from(at.timestamp()).unwrap_or(0);
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, at.timestamp_subsec_nanos());
    Uuid::new_v7(ts)
}

fn check_text(name: &str, value: &str) -> Result<()> {
    if value.len() > MAX_TEXT_LEN {
        return Err(Error::InvalidEvent(format!(
            "{name} is longer than {MAX_TEXT_LEN} bytes"
        )));
    }
    if value.contains('\0') {
        return Err(Error::InvalidEvent(format!("{name} contains a NUL byte")));
    }
    Ok(())
}

fn check_json(name: &str, value: &Value, depth: usize) -> Result<()> {
    if depth > 32 {
        return Err(Error::InvalidEvent(format!("{name} is nested too deeply")));
    }
    match value {
        Value::String(s) => check_text(name, s),
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| check_json(name, v, depth + 1)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            check_text(name, k)?;
            check_json(name, v, depth + 1)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

impl AuditEvent {
    /// A builder for an event of `event_type`, stamped with `clock`'s time and a UUIDv7.
    ///
    /// Defaults: severity from [`event_types::default_severity`](crate::event_types::default_severity),
    /// actor type `system`, action = the part of the event type after the last `.`,
    /// result `success`.
    pub fn builder(event_type: impl Into<String>, clock: &dyn Clock) -> AuditEventBuilder {
        let event_type = event_type.into();
        let timestamp = clock.now().trunc_subsecs(6);
        let action = event_type
            .rsplit('.')
            .next()
            .unwrap_or(event_type.as_str())
            .to_owned();
        AuditEventBuilder {
            event: Self {
                id: uuid_v7_at(timestamp),
                timestamp,
                severity: crate::event_types::default_severity(&event_type),
                event_type,
                actor_id: None,
                actor_type: ActorType::System,
                actor_name: None,
                actor_roles: Vec::new(),
                target_id: None,
                target_type: None,
                target_name: None,
                action,
                resource: None,
                method: None,
                result: Outcome::Success,
                request_id: None,
                session_id: None,
                trace_id: None,
                span_id: None,
                ip: None,
                user_agent: None,
                hostname: None,
                service: None,
                version: None,
                old_values: None,
                new_values: None,
                changed_fields: Vec::new(),
                duration: None,
                risk_score: None,
                anomalies: Vec::new(),
                regulations: Vec::new(),
                data_classes: Vec::new(),
                metadata: Map::new(),
            },
        }
    }

    /// Copies what `ctx` knows (client IP, user agent, request/session/trace/span ids, and
    /// the user as actor when no actor is set) into fields that are still empty.
    pub fn apply_context(&mut self, ctx: &RequestContext) {
        fn fill(slot: &mut Option<String>, value: Option<&String>) {
            if slot.is_none() {
                slot.clone_from(&value.cloned());
            }
        }
        if self.ip.is_none() {
            self.ip = ctx.client_ip;
        }
        fill(&mut self.user_agent, ctx.user_agent.as_ref());
        fill(&mut self.request_id, ctx.request_id.as_ref());
        fill(&mut self.session_id, ctx.session_id.as_ref());
        fill(&mut self.trace_id, ctx.trace_id.as_ref());
        fill(&mut self.span_id, ctx.span_id.as_ref());
        if self.actor_id.is_none()
            && let Some(user) = ctx.user_id
        {
            self.actor_id = Some(user.to_string());
            self.actor_type = ActorType::User;
        }
    }

    /// True for events that must never be sampled away: severity `warning` or higher, or a
    /// type in [`event_types::SECURITY`](crate::event_types::SECURITY), or a failure of
    /// an `auth.` / `security.` event.
    pub fn is_security(&self) -> bool {
        self.severity >= Severity::Warning
            || crate::event_types::is_security(&self.event_type)
            || (self.result == Outcome::Failure
                && (self.event_type.starts_with("auth.")
                    || self.event_type.starts_with("security.")))
    }

    /// Truncates the timestamp and duration to microseconds and sorts/dedups the
    /// regulation and data-class sets, so equal events serialise (and hash) equally.
    pub fn normalize(&mut self) {
        self.timestamp = self.timestamp.trunc_subsecs(6);
        if let Some(d) = self.duration {
            self.duration = Some(Duration::from_micros(
                u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            ));
        }
        self.regulations.sort_unstable();
        self.regulations.dedup();
        self.data_classes.sort_unstable();
        self.data_classes.dedup();
    }

    /// Checks that the event can be stored by every backend.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEvent`] for an empty event type or action, a text field with a NUL
    /// byte or longer than [`MAX_TEXT_LEN`], JSON nested deeper than 32 levels, a risk
    /// score above 100, or a timestamp outside the years 1..=9999.
    pub fn validate(&self) -> Result<()> {
        if self.event_type.is_empty() {
            return Err(Error::InvalidEvent("event_type is empty".into()));
        }
        if self.action.is_empty() {
            return Err(Error::InvalidEvent("action is empty".into()));
        }
        if !(1..=9999).contains(&self.timestamp.year()) {
            return Err(Error::InvalidEvent(
                "timestamp outside the years 1..=9999".into(),
            ));
        }
        if self.risk_score.is_some_and(|r| r > 100) {
            return Err(Error::InvalidEvent("risk_score above 100".into()));
        }
        let texts: [(&str, Option<&String>); 17] = [
            ("event_type", Some(&self.event_type)),
            ("actor_id", self.actor_id.as_ref()),
            ("actor_name", self.actor_name.as_ref()),
            ("target_id", self.target_id.as_ref()),
            ("target_type", self.target_type.as_ref()),
            ("target_name", self.target_name.as_ref()),
            ("action", Some(&self.action)),
            ("resource", self.resource.as_ref()),
            ("method", self.method.as_ref()),
            ("request_id", self.request_id.as_ref()),
            ("session_id", self.session_id.as_ref()),
            ("trace_id", self.trace_id.as_ref()),
            ("span_id", self.span_id.as_ref()),
            ("user_agent", self.user_agent.as_ref()),
            ("hostname", self.hostname.as_ref()),
            ("service", self.service.as_ref()),
            ("version", self.version.as_ref()),
        ];
        for (name, value) in texts {
            if let Some(v) = value {
                check_text(name, v)?;
            }
        }
        for (name, list) in [
            ("actor_roles", &self.actor_roles),
            ("changed_fields", &self.changed_fields),
            ("anomalies", &self.anomalies),
        ] {
            list.iter().try_for_each(|v| check_text(name, v))?;
        }
        for (name, value) in [
            ("old_values", self.old_values.as_ref()),
            ("new_values", self.new_values.as_ref()),
        ] {
            if let Some(v) = value {
                check_json(name, v, 0)?;
            }
        }
        self.metadata.iter().try_for_each(|(k, v)| {
            check_text("metadata", k)?;
            check_json("metadata", v, 1)
        })
    }
}

/// Builder for [`AuditEvent`] (see [`AuditEvent::builder`]).
#[derive(Clone)]
#[must_use]
pub struct AuditEventBuilder {
    event: AuditEvent,
}

impl fmt::Debug for AuditEventBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AuditEventBuilder")
            .field(&self.event.id)
            .field(&self.event.event_type)
            .finish()
    }
}

macro_rules! opt_setters {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(mut self, value: impl Into<String>) -> Self {
            self.event.$name = Some(value.into());
            self
        }
    )+};
}

impl AuditEventBuilder {
    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.event.severity = severity;
        self
    }

    /// Sets the actor.
    pub fn actor(mut self, kind: ActorType, id: impl Into<String>) -> Self {
        self.event.actor_type = kind;
        self.event.actor_id = Some(id.into());
        self
    }

    /// Sets the actor's roles.
    pub fn actor_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event.actor_roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the target.
    pub fn target(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.event.target_type = Some(kind.into());
        self.event.target_id = Some(id.into());
        self
    }

    /// Sets the action verb.
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.event.action = action.into();
        self
    }

    /// Sets the result.
    pub fn result(mut self, result: Outcome) -> Self {
        self.event.result = result;
        self
    }

    /// Sets the client address.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.event.ip = Some(umanage_core::net::canonical_ip(ip));
        self
    }

    opt_setters!(
        /// Sets the actor's display name.
        actor_name,
        /// Sets the target's display name.
        target_name,
        /// Sets the resource.
        resource,
        /// Sets the request method.
        method,
        /// Sets the request id.
        request_id,
        /// Sets the session id.
        session_id,
        /// Sets the trace id.
        trace_id,
        /// Sets the span id.
        span_id,
        /// Sets the user agent.
        user_agent,
        /// Sets the hostname.
        hostname,
        /// Sets the service name.
        service,
        /// Sets the service version.
        version,
    );

    /// Sets the values before and after a change, and the changed field names (the keys
    /// whose values differ, when both are JSON objects).
    pub fn change(mut self, old: Value, new: Value) -> Self {
        if let (Value::Object(o), Value::Object(n)) = (&old, &new) {
            let mut changed: Vec<String> = n
                .iter()
                .filter(|(k, v)| o.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .chain(o.keys().filter(|k| !n.contains_key(*k)).cloned())
                .collect();
            changed.sort();
            self.event.changed_fields = changed;
        }
        self.event.old_values = Some(old);
        self.event.new_values = Some(new);
        self
    }

    /// Sets the changed field names explicitly.
    pub fn changed_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event.changed_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the duration.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.event.duration = Some(duration);
        self
    }

    /// Sets the risk score (clamped to 0..=100) and anomalies.
    pub fn risk<I, S>(mut self, score: u8, anomalies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event.risk_score = Some(score.min(100));
        self.event.anomalies = anomalies.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a regulation.
    pub fn regulation(mut self, regulation: Regulation) -> Self {
        self.event.regulations.push(regulation);
        self
    }

    /// Adds a data class.
    pub fn data_class(mut self, class: DataClass) -> Self {
        self.event.data_classes.push(class);
        self
    }

    /// Adds a metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.event.metadata.insert(key.into(), value.into());
        self
    }

    /// Fills correlation fields and the actor from a request context
    /// (see [`AuditEvent::apply_context`]).
    pub fn context(mut self, ctx: &RequestContext) -> Self {
        self.event.apply_context(ctx);
        self
    }

    /// Validates and returns the event.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEvent`] as described on [`AuditEvent::validate`].
    pub fn build(self) -> Result<AuditEvent> {
        let mut event = self.event;
        event.normalize();
        event.validate()?;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umanage_core::{ManualClock, UserId};

    #[test]
    fn builder_truncates_time_and_uses_the_clock() {
        let clock = ManualClock::default();
        clock.advance(Duration::from_nanos(1_234_567_891));
        let e = AuditEvent::builder("auth.login.success", &clock)
            .build()
            .unwrap();
        assert_eq!(e.timestamp.timestamp_subsec_nanos(), 234_567_000);
        assert_eq!(e.id.get_version_num(), 7);
        let (secs, _) = e.id.get_timestamp().unwrap().to_unix();
        assert_eq!(secs as i64, e.timestamp.timestamp());
        assert_eq!(e.action, "success");
        assert_eq!(e.result, Outcome::Success);
    }

    #[test]
    fn every_field_round_trips_through_serde() {
        let clock = ManualClock::default();
        let user = UserId::new();
        let ctx = RequestContext::new()
            .with_client_ip("::ffff:10.0.0.1".parse().unwrap())
            .with_user_agent("ua")
            .with_request_id("r1")
            .with_session_id("s1")
            .with_trace("t1", "sp1")
            .with_user_id(user);
        let e = AuditEvent::builder(crate::event_types::USER_UPDATED, &clock)
            .context(&ctx)
            .severity(Severity::Notice)
            .actor_name("Ann")
            .actor_roles(["admin"])
            .target("user", "u-2")
            .target_name("Bob")
            .resource("/users/u-2")
            .method("PATCH")
            .result(Outcome::Partial)
            .hostname("h")
            .service("svc")
            .version("1.0")
            .change(
                serde_json::json!({"a": 1, "b": 2}),
                serde_json::json!({"a": 1, "b": 3, "c": 4}),
            )
            .duration(Duration::from_nanos(1_500_999))
            .risk(250, ["new_ip"])
            .regulation(Regulation::Gdpr)
            .regulation(Regulation::Soc2)
            .regulation(Regulation::Gdpr)
            .data_class(DataClass::Pii)
            .meta("k", "v")
            .build()
            .unwrap();
        assert_eq!(e.actor_id, Some(user.to_string()));
        assert_eq!(e.actor_type, ActorType::User);
        assert_eq!(e.ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(e.changed_fields, ["b", "c"]);
        assert_eq!(e.duration, Some(Duration::from_micros(1500)));
        assert_eq!(e.risk_score, Some(100));
        assert_eq!(e.regulations, [Regulation::Gdpr, Regulation::Soc2]);
        let json = serde_json::to_string(&e).unwrap();
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        assert!(json.contains("\"duration_us\":1500"));
    }

    #[test]
    fn anonymous_actor_round_trips() {
        let clock = ManualClock::default();
        let e = AuditEvent::builder("auth.login.failure", &clock)
            .actor(ActorType::Anonymous, "anonymous")
            .build()
            .unwrap();
        assert_eq!(e.actor_type, ActorType::Anonymous);
        assert_eq!(ActorType::Anonymous.as_str(), "anonymous");
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"actor_type\":\"anonymous\""), "{json}");
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn invalid_events_are_typed_errors() {
        let clock = ManualClock::default();
        let err = AuditEvent::builder("x", &clock)
            .actor_name("a\0b")
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidEvent(_)), "{err}");
        let err = AuditEvent::builder("", &clock).build().unwrap_err();
        assert!(matches!(err, Error::InvalidEvent(_)));
        let err = AuditEvent::builder("x", &clock)
            .meta("k", "x".repeat(MAX_TEXT_LEN + 1))
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidEvent(_)));
        assert!(serde_json::from_str::<AuditEvent>(r#"{"bogus":1}"#).is_err());
    }

    #[test]
    fn security_events_are_recognised() {
        let clock = ManualClock::default();
        let login_fail = AuditEvent::builder(crate::event_types::LOGIN_FAILURE, &clock)
            .build()
            .unwrap();
        assert!(login_fail.is_security());
        let read = AuditEvent::builder("profile.read", &clock).build().unwrap();
        assert!(!read.is_security());
    }
}
