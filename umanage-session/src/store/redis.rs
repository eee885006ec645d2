//! Redis [`SessionStore`]: validation is three native commands in one pipeline (no Lua);
//! everything else is one Lua script. Every operation is one round trip.
//!
//! # Keys
//!
//! All keys of one user share the hash tag `{<user-id>}`, so every operation touches one
//! Redis Cluster slot. `KEYS[1]` of the scripts is the user's base
//! `<prefix>:sess:{<user-id>}:`; the rest is derived from it (always inside that tag).
//! `<th>` is the lower-case hex SHA-256 of the session token.
//!
//! | key | type | holds | expires |
//! | --- | --- | --- | --- |
//! | `…t:<th>` | string | the record: a header (`1|sid|version|epoch|created|absolute deadline|idle ms|ip changed|device mismatch|login ip|last ip|fingerprint hex|`) and the encoded session | just before the idle deadline (`PX <idle - 1>` at every validation) |
//! | `…a:<th>` | string | `1`: the session is within its absolute lifetime | at the absolute deadline |
//! | `…idx` | sorted set | session ids scored by their absolute deadline | at the latest member's deadline |
//! | `…map` | hash | session id → `<th>` (listing and revoking by id) | with `…idx` |
//! | `…epoch` | string | the user's credential epoch | when no session it could govern can live |
//! | `…f:<family-id>` | hash | refresh family: current and previous token hash, grace | at the session's absolute deadline |
//! | `…rt:<sha256-hex>` | string | refresh token hash → family id | with the family |
//!
//! # Validation without Lua
//!
//! [`touch`](SessionStore::touch) sends `GETEX …t:<th> PX <idle - 1>`, `EXISTS …a:<th>` and
//! `GET …epoch` as one pipeline (the idle timeout comes from the token, see
//! [`SessionToken`](crate::SessionToken)). The deadlines are Redis's own key expiry, on the
//! server's clock (Redis keeps a key through its expiry millisecond, so both keys expire
//! one millisecond before their deadline, when the session stops being live):
//!
//! * past the idle deadline the record key is gone, so `GETEX` returns nothing and sets
//!   nothing: an expired session is never revived;
//! * past the absolute deadline the `a:` key is gone, so the session is not returned even
//!   though its record may linger (at most one idle timeout); it is deleted on the spot;
//! * a session whose epoch is older than the user's is not returned (and is deleted);
//! * so is a session whose idle timeout is not its token's (only one created with another
//!   idle timeout than its token carries): no token can ever validate it, and the `GETEX`
//!   slid it by the token's.
//!
//! Native commands cost a Lua script's fixed overhead several times less on redis-server
//! (see the crate README's benchmarks). The commands of the pipeline are not one atomic
//! step, and need not be: `GETEX` only ever extends a key that exists, revocation and
//! rotation delete or rename that key (so a validation racing them either ran first or
//! finds nothing), and a validation that has to write (a first IP change, a device
//! mismatch to flag, a rotation, or [`BindingPolicy::Reject`] with a fingerprint, which must
//! not slide a rejected request) runs the `session_touch` script instead, atomically.
//! The `last_activity` of a session returned by the pipeline is the host's clock
//! ([`RedisSessionStore::with_clock`]; the deadlines were enforced by Redis, and the
//! reported idle deadline is `min(last_activity + idle, absolute)`); scripts report the
//! server's `TIME`, and [`list`](SessionStore::list) derives it from the record's expiry.
//!
//! Token hashes are looked up as key names, not compared; what is looked up is the
//! SHA-256 of a 256-bit secret, so timing reveals nothing usable.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use redis::Value;
use umanage_core::redis::{RedisConnection, RedisScript};
use umanage_core::{BackendError, SharedClock, SystemClock, UserId};

use super::{
    BindingPolicy, CreateOutcome, LimitPolicy, NewSession, RefreshOutcome, RefreshRequest,
    SessionStore, Touch, TouchOutcome, UpdateOutcome,
};
use crate::codec::{JsonSerializer, SessionSerializer, SharedSerializer};
use crate::error::{Error, Result};
use crate::model::{FamilyId, Session, SessionId};
use crate::token::{SessionToken, TokenHash};

/// Longest duration handed to Redis (100 years): keeps every deadline an integer Lua
/// prints exactly.
const MAX_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// Milliseconds of a duration handed to Redis: at least 1 (a zero TTL would mean
/// "expired already"), at most [`MAX_MS`].
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis())
        .unwrap_or(MAX_MS)
        .clamp(1, MAX_MS)
}

/// The TTL a validation gives the record: one millisecond short of the idle timeout,
/// because Redis keeps a key through its expiry millisecond (`slide_ms` in the scripts).
fn slide_ms(idle_ms: i64) -> i64 {
    (idle_ms - 1).max(1)
}

const COMMON: &str = r"
local base = KEYS[1]
local idx, map = base .. 'idx', base .. 'map'
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function cur_epoch() return redis.call('GET', base .. 'epoch') or '0' end
local function tkey(th) return base .. 't:' .. th end
local function akey(th) return base .. 'a:' .. th end
-- The record's TTL for an idle timeout: Redis keeps a key through its expiry millisecond,
-- so the record expires one millisecond before the idle deadline (at least 1 ms).
local function slide_ms(idle) return math.max(tonumber(idle) - 1, 1) end
local PAT = '^1|([^|]*)|(%d+)|(%d+)|(%d+)|(%d+)|(%d+)|([01])|([01])|([^|]*)|([^|]*)|([^|]*)|()'
local function parse(raw)
  if not raw then return nil end
  local sid, ver, ep, ca, aexp, idle, ipc, dm, ip, lip, fp, at = string.match(raw, PAT)
  if not sid then return nil end
  return {raw = raw, sid = sid, ver = ver, ep = ep, ca = ca, aexp = aexp, idle = idle,
    ipc = ipc, dm = dm, ip = ip, lip = lip, fp = fp, body = string.sub(raw, at)}
end
local function build(r)
  return table.concat({'1', r.sid, r.ver, r.ep, r.ca, r.aexp, r.idle, r.ipc, r.dm, r.ip,
    r.lip, r.fp, r.body}, '|')
end
local function kill(sid)
  local th = redis.call('HGET', map, sid)
  if th then redis.call('DEL', tkey(th), akey(th)) end
  redis.call('HDEL', map, sid)
  redis.call('ZREM', idx, sid)
end
-- The record under `th`, if it is live (within both deadlines, current epoch).
local function load(th, ep)
  local rec = parse(redis.call('GET', tkey(th)))
  if rec and rec.ep == ep and redis.call('EXISTS', akey(th)) == 1 then return rec end
  return nil
end
-- The live record of session `sid` and its token hash, or nil.
local function live_of(sid, ep)
  local th = redis.call('HGET', map, sid)
  if not th then return nil end
  local rec = load(th, ep)
  if rec and rec.sid == sid then return rec, th end
  return nil
end
local function fit_index()
  local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if top[2] then
    redis.call('PEXPIREAT', idx, top[2])
    redis.call('PEXPIREAT', map, top[2])
  end
end
";

/// Helpers of the scripts that read or list many sessions.
const MORE: &str = r"
-- When the session was last validated: its record expires `slide_ms(idle)` after that.
local function last_active(th, rec)
  return redis.call('PEXPIRETIME', tkey(th)) - slide_ms(rec.idle)
end
local function prune(now, ep)
  for _, sid in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', now)) do kill(sid) end
  local live = {}
  for _, sid in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    local rec, th = live_of(sid, ep)
    if rec then table.insert(live, {sid, th, rec}) else kill(sid) end
  end
  return live
end
";

/// ARGV: sid, token hash, body, idle ms, lifetime ms, limit (0 = none), policy, ip, fp hex.
/// Returns {1, view, evicted}, {0, active} (limit reached) or {-1} (duplicate).
const CREATE: &str = r"
local sid, th = ARGV[1], ARGV[2]
local idle, life, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local ep = cur_epoch()
if redis.call('EXISTS', tkey(th)) == 1 or redis.call('HEXISTS', map, sid) == 1 then
  return {-1}
end
local evicted = {}
if limit > 0 then
  local live = prune(now, ep)
  if #live >= limit then
    if ARGV[7] ~= 'evict' then
      fit_index()
      return {0, #live}
    end
    table.sort(live, function(a, b)
      local x, y = tonumber(a[3].ca), tonumber(b[3].ca)
      if x == y then return a[1] < b[1] end
      return x < y
    end)
    for i = 1, #live - limit + 1 do
      kill(live[i][1])
      table.insert(evicted, live[i][1])
    end
  end
else
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', now)) do kill(id) end
end
local aexp = now + life
local raw = build({sid = sid, ver = '1', ep = ep, ca = string.format('%d', now),
  aexp = string.format('%d', aexp), idle = ARGV[4], ipc = '0', dm = '0', ip = ARGV[8],
  lip = ARGV[8], fp = ARGV[9], body = ARGV[3]})
redis.call('SET', tkey(th), raw, 'PX', slide_ms(idle))
-- Redis keeps a key through its expiry millisecond; the session ends before `aexp`.
redis.call('SET', akey(th), '1', 'PXAT', aexp - 1)
redis.call('ZADD', idx, aexp, sid)
redis.call('HSET', map, sid, th)
fit_index()
-- Sessions created under this epoch must not outlive the epoch key, or a later bump
-- would restart at 1 below their epoch and miss them.
local ek = base .. 'epoch'
local pt = redis.call('PTTL', ek)
if pt >= 0 and now + pt < aexp then redis.call('PEXPIREAT', ek, aexp) end
return {1, {raw, now}, evicted}
";

/// ARGV: token hash, ip, fp hex, binding (0 ignore, 1 flag, 2 reject), new token hash or
/// '', idle ms (the token's).
/// Returns {1, view}, {0} (invalid), {2, sid} (device mismatch) or {-1} (duplicate).
///
/// The validation's write path (the pipeline in `touch` handles the rest): flags, last
/// IP and rotation, atomically.
const TOUCH: &str = r"
local th = ARGV[1]
local tk, ak = tkey(th), akey(th)
local rec = parse(redis.call('GET', tk))
if not rec then return {0} end
-- A token of another idle timeout than its session's (the hash covers it, so only a
-- session created with the wrong one) can never validate it, and the pipeline may have
-- slid the record by the token's: it goes like a dead one.
if rec.ep ~= cur_epoch() or redis.call('EXISTS', ak) == 0 or rec.idle ~= ARGV[6] then
  if redis.call('HGET', map, rec.sid) == th then kill(rec.sid) else redis.call('DEL', tk, ak) end
  fit_index()
  return {0}
end
if ARGV[3] ~= '' and rec.fp ~= '' and ARGV[3] ~= rec.fp then
  if ARGV[4] == '2' then return {2, rec.sid} end
  if ARGV[4] == '1' then rec.dm = '1' end
end
if ARGV[5] ~= '' and redis.call('EXISTS', tkey(ARGV[5])) == 1 then return {-1} end
if ARGV[2] ~= '' then
  if rec.ip ~= '' and rec.ip ~= ARGV[2] then rec.ipc = '1' end
  rec.lip = ARGV[2]
end
local raw = build(rec)
if raw ~= rec.raw then redis.call('SET', tk, raw, 'KEEPTTL') end
if ARGV[5] ~= '' then
  local ntk = tkey(ARGV[5])
  redis.call('RENAME', tk, ntk)
  redis.call('RENAME', ak, akey(ARGV[5]))
  redis.call('HSET', map, rec.sid, ARGV[5])
  tk = ntk
end
redis.call('PEXPIRE', tk, slide_ms(rec.idle))
return {1, {raw, now_ms()}}
";

/// ARGV: sid, expected version, body, ip, fp hex. Returns {1, version}, {0} or {2, current}.
const UPDATE: &str = r"
local sid = ARGV[1]
local rec, th = live_of(sid, cur_epoch())
if not rec then
  kill(sid)
  fit_index()
  return {0}
end
if rec.ver ~= ARGV[2] then return {2, tonumber(rec.ver)} end
rec.ver = string.format('%d', tonumber(rec.ver) + 1)
rec.body, rec.ip, rec.fp = ARGV[3], ARGV[4], ARGV[5]
redis.call('SET', tkey(th), build(rec), 'KEEPTTL')
return {1, tonumber(rec.ver)}
";

/// Returns the views of the live sessions; prunes the rest.
const LIST: &str = r"
local live = prune(now_ms(), cur_epoch())
fit_index()
local out = {}
for _, e in ipairs(live) do table.insert(out, {e[3].raw, last_active(e[2], e[3])}) end
return out
";

/// ARGV: sid. Returns 1 when a live session was revoked.
const REVOKE: &str = r"
local sid = ARGV[1]
local was = live_of(sid, cur_epoch())
kill(sid)
fit_index()
if was then return 1 end
return 0
";

/// ARGV: sid to keep or ''. Returns how many live sessions were revoked.
const REVOKE_ALL: &str = r"
local ep, n = cur_epoch(), 0
for _, sid in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  if sid ~= ARGV[1] then
    if live_of(sid, ep) then n = n + 1 end
    kill(sid)
  end
end
fit_index()
return n
";

/// O(1) apart from reading the index's top score: INCR, then keep the key until the
/// latest absolute deadline any older session could reach (or drop it if there is none).
const BUMP_EPOCH: &str = r"
local now = now_ms()
local ek = base .. 'epoch'
local pt = redis.call('PTTL', ek)
local ep = redis.call('INCR', ek)
local keep = 0
if pt > 0 then keep = now + pt end
local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
if top[2] and tonumber(top[2]) > keep then keep = tonumber(top[2]) end
if keep > now then redis.call('PEXPIREAT', ek, keep) else redis.call('DEL', ek) end
return ep
";

/// ARGV: sid, refresh token hash, family id. Returns 1, 0 (session not live) or -1.
const START_FAMILY: &str = r"
local sid = ARGV[1]
local rec = live_of(sid, cur_epoch())
if not rec then return 0 end
local rk = base .. 'rt:' .. ARGV[2]
if redis.call('EXISTS', rk) == 1 then return -1 end
local fk = base .. 'f:' .. ARGV[3]
redis.call('HSET', fk, 'cur', ARGV[2], 'sid', sid, 'exp', rec.aexp)
redis.call('PEXPIREAT', fk, rec.aexp)
redis.call('SET', rk, ARGV[3], 'PXAT', rec.aexp)
return 1
";

/// ARGV: presented, next refresh hash, next session hash, fp, grace ms.
/// Returns {1, view} rotated, {3, view} grace, {2} reused (family revoked), {0}, {-1}.
const REFRESH: &str = r"
local fid = redis.call('GET', base .. 'rt:' .. ARGV[1])
if not fid then return {0} end
local fk = base .. 'f:' .. fid
local f = redis.call('HMGET', fk, 'cur', 'prev', 'pu', 'pfp', 'sid', 'exp')
if not f[1] then return {0} end
local now = now_ms()
local sid = f[5]
local rec, th = live_of(sid, cur_epoch())
if not rec then
  kill(sid)
  redis.call('DEL', fk)
  fit_index()
  return {0}
end
if f[1] == ARGV[1] then
  local nrk, ntk = base .. 'rt:' .. ARGV[2], tkey(ARGV[3])
  if redis.call('EXISTS', nrk) == 1 or redis.call('EXISTS', ntk) == 1 then return {-1} end
  redis.call('RENAME', tkey(th), ntk)
  redis.call('RENAME', akey(th), akey(ARGV[3]))
  redis.call('HSET', map, sid, ARGV[3])
  redis.call('PEXPIRE', ntk, slide_ms(rec.idle))
  redis.call('HSET', fk, 'cur', ARGV[2], 'prev', ARGV[1], 'pu', now + tonumber(ARGV[5]),
    'pfp', ARGV[4])
  redis.call('SET', nrk, fid, 'PXAT', f[6])
  return {1, {rec.raw, now}}
end
if f[2] == ARGV[1] and ARGV[4] ~= '' and f[4] == ARGV[4] and now < tonumber(f[3]) then
  redis.call('PEXPIRE', tkey(th), slide_ms(rec.idle))
  return {3, {rec.raw, now}}
end
kill(sid)
redis.call('DEL', fk)
fit_index()
return {2}
";

fn script(name: &'static str, body: &str) -> RedisScript {
    RedisScript::new(name, format!("{COMMON}{MORE}{body}"))
}

static CREATE_SCRIPT: LazyLock<RedisScript> = LazyLock::new(|| script("session_create", CREATE));
static TOUCH_SCRIPT: LazyLock<RedisScript> = LazyLock::new(|| script("session_touch", TOUCH));
static UPDATE_SCRIPT: LazyLock<RedisScript> = LazyLock::new(|| script("session_update", UPDATE));
static LIST_SCRIPT: LazyLock<RedisScript> = LazyLock::new(|| script("session_list", LIST));
static REVOKE_SCRIPT: LazyLock<RedisScript> = LazyLock::new(|| script("session_revoke", REVOKE));
static REVOKE_ALL_SCRIPT: LazyLock<RedisScript> =
    LazyLock::new(|| script("session_revoke_all", REVOKE_ALL));
static BUMP_EPOCH_SCRIPT: LazyLock<RedisScript> =
    LazyLock::new(|| script("session_bump_epoch", BUMP_EPOCH));
static START_FAMILY_SCRIPT: LazyLock<RedisScript> =
    LazyLock::new(|| script("session_start_family", START_FAMILY));
static REFRESH_SCRIPT: LazyLock<RedisScript> = LazyLock::new(|| script("session_refresh", REFRESH));

/// A [`SessionStore`] on Redis (see the module docs for keys and time).
///
/// Clones share the connection. A Redis outage surfaces as
/// [`Error::Backend`] with [`Error::is_unavailable`] true; the connection reconnects by
/// itself and later calls succeed again.
#[derive(Debug, Clone)]
pub struct RedisSessionStore {
    conn: RedisConnection,
    serializer: SharedSerializer,
    clock: SharedClock,
}

impl RedisSessionStore {
    /// A store on `conn` (under its key prefix), encoding sessions as JSON.
    pub fn new(conn: RedisConnection) -> Self {
        Self {
            conn,
            serializer: Arc::new(JsonSerializer),
            clock: SystemClock::shared(),
        }
    }

    /// The clock that stamps `last_activity` on sessions returned by the validation
    /// pipeline (the system clock by default). Only that report: the deadlines are Redis
    /// key expiry on the server's clock, and scripts report the server's `TIME`.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Uses another serializer (e.g. [`MsgpackSerializer`](crate::MsgpackSerializer)).
    /// Records written with one serializer are not readable with another.
    #[must_use]
    pub fn with_serializer(mut self, serializer: impl SessionSerializer) -> Self {
        self.serializer = Arc::new(serializer);
        self
    }

    /// The connection.
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// The base of the user's keys, `<prefix>:sess:{<user-id>}:`.
    pub fn user_base(&self, user: UserId) -> String {
        let mut id = uuid::Uuid::encode_buffer();
        let id = user.as_uuid().hyphenated().encode_lower(&mut id);
        self.conn.keys().key_with("sess", id, "")
    }

    /// A session of `user` from a script's view `[record, last activity ms]`.
    fn parse_view(&self, user: UserId, value: &Value) -> Result<Session> {
        let Value::Array(f) = value else {
            return Err(protocol("session view", value));
        };
        let [raw, la] = f.as_slice() else {
            return Err(protocol("session view", value));
        };
        let raw = bytes(raw).ok_or_else(|| protocol("record", raw))?;
        let rec = Record::parse(raw).ok_or_else(|| protocol_text("record header"))?;
        self.session(user, &rec, int(la)?)
    }

    /// The session of `user` in a parsed record, last validated at `la_ms`. The body has
    /// neither id (the header has it) nor user (the key has it).
    fn session(&self, user: UserId, rec: &Record<'_>, la_ms: i64) -> Result<Session> {
        let mut s = self.serializer.decode(rec.body)?;
        s.id = rec.sid.parse().map_err(|_| protocol_text("record sid"))?;
        s.user_id = user;
        let at = |ms: i64| {
            DateTime::from_timestamp_millis(ms).ok_or_else(|| protocol_text("record time"))
        };
        s.created_at = at(rec.ca)?;
        s.last_activity = at(la_ms)?;
        s.idle_expires_at = at(la_ms.saturating_add(rec.idle).min(rec.aexp))?;
        s.expires_at = at(rec.aexp)?;
        s.credential_epoch = rec.ep;
        s.idle_timeout = Duration::from_millis(rec.idle.unsigned_abs());
        s.ip_changed = rec.ipc;
        s.device_mismatch = rec.dm;
        s.last_ip = std::str::from_utf8(rec.lip)
            .ok()
            .and_then(|t| t.parse::<IpAddr>().ok());
        s.version = rec.ver;
        Ok(s)
    }

    /// The `session_touch` script: the validation that has to write (or to refuse
    /// without sliding).
    async fn touch_script(
        &self,
        token: &SessionToken,
        ip: Option<IpAddr>,
        fp: &str,
        touch: &Touch,
    ) -> Result<TouchOutcome> {
        let binding = match touch.binding {
            BindingPolicy::Ignore => "0",
            BindingPolicy::Flag => "1",
            BindingPolicy::Reject => "2",
        };
        let reply: Vec<Value> = TOUCH_SCRIPT
            .call()
            .key(self.user_base(token.user_id()))
            .arg(token.hash().to_hex())
            .arg(ip.map(|ip| ip.to_string()).unwrap_or_default())
            .arg(hex::encode(fp))
            .arg(binding)
            .arg(touch.rotate_to.map(|h| h.to_hex()).unwrap_or_default())
            .arg(ms(token.idle_timeout()))
            .invoke(&self.conn)
            .await?;
        match reply.as_slice() {
            [Value::Int(1), view] => Ok(TouchOutcome::Valid(Arc::new(
                self.parse_view(token.user_id(), view)?,
            ))),
            [Value::Int(0)] => Ok(TouchOutcome::Invalid),
            [Value::Int(2), sid] => Ok(TouchOutcome::DeviceMismatch(
                text(sid)
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| protocol("sid", sid))?,
            )),
            [Value::Int(-1)] => Err(Error::Duplicate),
            _ => Err(protocol("touch reply", &Value::Array(reply))),
        }
    }
}

/// The header of a stored record (see the module docs), borrowed from the reply.
#[derive(Debug)]
struct Record<'a> {
    sid: &'a str,
    ver: u64,
    ep: u64,
    ep_text: &'a [u8],
    ca: i64,
    aexp: i64,
    idle: i64,
    ipc: bool,
    dm: bool,
    ip: &'a [u8],
    lip: &'a [u8],
    fp: &'a [u8],
    body: &'a [u8],
}

impl<'a> Record<'a> {
    /// Parses `1|sid|ver|ep|ca|aexp|idle|ipc|dm|ip|lip|fp|body`.
    fn parse(raw: &'a [u8]) -> Option<Self> {
        // memchr over the header (the body after the 12th separator is not scanned).
        let mut seps = memchr::memchr_iter(b'|', raw);
        let mut start = 0;
        let mut fields = 0;
        let mut next = || {
            if fields == 12 {
                fields += 1;
                return raw.get(start..);
            }
            let end = seps.next()?;
            let part = raw.get(start..end)?;
            start = end + 1;
            fields += 1;
            Some(part)
        };
        if next()? != b"1" {
            return None;
        }
        let sid = std::str::from_utf8(next()?).ok()?;
        // Decimal digits only (what the scripts write), at most 18 of them: no overflow.
        let num = |b: &[u8]| -> Option<i64> {
            if b.is_empty() || b.len() > 18 {
                return None;
            }
            b.iter().try_fold(0_i64, |n, &d| {
                d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
            })
        };
        let flag = |b: &[u8]| match b {
            b"0" => Some(false),
            b"1" => Some(true),
            _ => None,
        };
        let ver = num(next()?)?.try_into().ok()?;
        let ep_text = next()?;
        let ep = num(ep_text)?.try_into().ok()?;
        let ca = num(next()?)?;
        let aexp = num(next()?)?;
        let idle = num(next()?)?;
        let ipc = flag(next()?)?;
        let dm = flag(next()?)?;
        let (ip, lip, fp) = (next()?, next()?, next()?);
        let body = next()?;
        Some(Self {
            sid,
            ver,
            ep,
            ep_text,
            ca,
            aexp,
            idle,
            ipc,
            dm,
            ip,
            lip,
            fp,
            body,
        })
    }
}

/// Whether `hex` (lower case, as the header keeps fingerprints) encodes `raw`, without
/// allocating.
fn hex_is(hex: &[u8], raw: &[u8]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    hex.len() == 2 * raw.len()
        && hex.chunks_exact(2).zip(raw).all(|(pair, &b)| {
            pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 15)]
        })
}

/// Whether header text is the address `ip` (already canonical), without allocating.
fn ip_is(text: &[u8], ip: IpAddr) -> bool {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<IpAddr>().ok())
        == Some(ip)
}

fn protocol_text(what: &str) -> Error {
    Error::Backend(BackendError::Protocol(format!(
        "session record: bad {what}"
    )))
}

/// A reply of the wrong shape. Only its kind and size are described: a reply can hold a
/// session record, whose body is the user's data.
fn protocol(what: &str, v: &Value) -> Error {
    let shape = match v {
        Value::Nil => "nil".to_owned(),
        Value::Int(_) => "an integer".to_owned(),
        Value::BulkString(b) => format!("a {}-byte string", b.len()),
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::SimpleString(_) => "a status".to_owned(),
        Value::ServerError(_) => "an error".to_owned(),
        _ => "another type".to_owned(),
    };
    Error::Backend(BackendError::Protocol(format!(
        "session script reply: bad {what} ({shape})"
    )))
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    bytes(v).and_then(|b| std::str::from_utf8(b).ok())
}

fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        other => text(other)
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| protocol("integer", other)),
    }
}

/// A fingerprint as the record header keeps it: hex, so any text is safe between `|`s.
fn fp_arg(fp: Option<&str>) -> String {
    fp.map(hex::encode).unwrap_or_default()
}

fn ip_arg(ip: Option<IpAddr>) -> String {
    ip.map(|ip| umanage_core::net::canonical_ip(ip).to_string())
        .unwrap_or_default()
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    #[tracing::instrument(level = "debug", skip_all, fields(user = %new.session.user_id))]
    async fn create(&self, new: NewSession) -> Result<CreateOutcome> {
        let body = self.serializer.encode(&new.session.body())?;
        let (limit, policy) = new.limit.map_or((0, "reject"), |l| {
            (
                l.max.max(1),
                match l.policy {
                    LimitPolicy::RejectNew => "reject",
                    LimitPolicy::EvictOldest => "evict",
                },
            )
        });
        let reply: Vec<Value> = CREATE_SCRIPT
            .call()
            .key(self.user_base(new.session.user_id))
            .arg(new.session.id.to_string())
            .arg(new.token.to_hex())
            .arg(body)
            .arg(ms(new.idle_timeout))
            .arg(ms(new.lifetime))
            .arg(limit)
            .arg(policy)
            .arg(ip_arg(new.session.ip))
            .arg(fp_arg(new.session.fingerprint.as_deref()))
            .invoke(&self.conn)
            .await?;
        match reply.as_slice() {
            [Value::Int(1), view, Value::Array(evicted)] => {
                let session = self.parse_view(new.session.user_id, view)?;
                let evicted = evicted
                    .iter()
                    .map(|v| {
                        text(v)
                            .and_then(|t| t.parse().ok())
                            .ok_or_else(|| protocol("evicted id", v))
                    })
                    .collect::<Result<Vec<SessionId>>>()?;
                Ok(CreateOutcome::Created {
                    session: Arc::new(session),
                    evicted,
                })
            }
            [Value::Int(0), active] => Ok(CreateOutcome::LimitReached {
                active: int(active)?.try_into().unwrap_or(u32::MAX),
            }),
            [Value::Int(-1)] => Err(Error::Duplicate),
            _ => Err(protocol("create reply", &Value::Array(reply))),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %token.user_id()))]
    async fn touch(&self, token: &SessionToken, touch: Touch) -> Result<TouchOutcome> {
        // Rotation, and a rejection that must leave the session as it was, need the
        // script's atomic read-check-write.
        if touch.rotate_to.is_some()
            || (touch.binding == BindingPolicy::Reject
                && touch.fingerprint.as_deref().is_some_and(|f| !f.is_empty()))
        {
            let ip = touch.ip.map(umanage_core::net::canonical_ip);
            let fp = touch.fingerprint.as_deref().unwrap_or("");
            return self.touch_script(token, ip, fp, &touch).await;
        }
        let idle = ms(token.idle_timeout());
        // The hot path of every request: one buffer for the three key names (the command
        // copies each), no other allocation before the reply.
        let mut key = self.user_base(token.user_id());
        let base_len = key.len();
        key.reserve(2 + 64);
        let cmd = |name: &str, key: &str, extra: usize| {
            let mut c = redis::Cmd::with_capacity(2 + extra, key.len() + 8 + 16 * extra);
            c.arg(name).arg(key);
            c
        };
        let mut pipe = redis::Pipeline::with_capacity(3);
        key.push_str("t:");
        let mut hex = [0_u8; 64];
        key.push_str(token.hash().hex_into(&mut hex));
        let mut getex = cmd("GETEX", &key, 2);
        getex.arg("PX").arg(slide_ms(idle));
        pipe.add_command(getex);
        key.replace_range(base_len..=base_len, "a");
        pipe.add_command(cmd("EXISTS", &key, 0));
        key.truncate(base_len);
        key.push_str("epoch");
        pipe.add_command(cmd("GET", &key, 0));
        let mut conn = self.conn.manager();
        // Integer and nil replies cost the client no allocation (an MGET's array would).
        let (record, live, epoch): (Value, Value, Value) = pipe
            .query_async(&mut conn)
            .await
            .map_err(BackendError::from)?;
        let raw = match &record {
            Value::Nil => return Ok(TouchOutcome::Invalid),
            Value::BulkString(raw) => raw,
            other => return Err(protocol("record", other)),
        };
        let rec = Record::parse(raw).ok_or_else(|| protocol_text("record header"))?;
        let live = match live {
            Value::Int(n) => n == 1,
            other => return Err(protocol("marker", &other)),
        };
        let current_epoch = match &epoch {
            Value::Nil => &b"0"[..],
            other => bytes(other).ok_or_else(|| protocol("epoch", other))?,
        };
        let fp = touch.fingerprint.as_deref().unwrap_or("");
        let ip = touch.ip.map(umanage_core::net::canonical_ip);
        if !live || rec.ep_text != current_epoch || rec.idle != idle {
            // Past the absolute deadline, logged out everywhere, or a token of another
            // idle timeout than the session's (the GETEX above just slid the record by
            // it, so it must not stay): the script deletes it.
            return self.touch_script(token, ip, fp, &touch).await;
        }
        let mismatch = !fp.is_empty() && !rec.fp.is_empty() && !hex_is(rec.fp, fp.as_bytes());
        let flag = mismatch && touch.binding == BindingPolicy::Flag && !rec.dm;
        let moved = ip.is_some_and(|ip| {
            let at_last = ip_is(rec.lip, ip);
            // The login address is usually the last one too: one parse then.
            let at_login = if rec.ip == rec.lip {
                at_last
            } else {
                ip_is(rec.ip, ip)
            };
            !at_last || (!rec.ipc && !rec.ip.is_empty() && !at_login)
        });
        if flag || moved {
            return self.touch_script(token, ip, fp, &touch).await;
        }
        let now = self.clock.now().timestamp_millis();
        Ok(TouchOutcome::Valid(Arc::new(self.session(
            token.user_id(),
            &rec,
            now,
        )?)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %session.user_id))]
    async fn update(&self, session: &Session) -> Result<UpdateOutcome> {
        let body = self.serializer.encode(&session.body())?;
        let reply: Vec<Value> = UPDATE_SCRIPT
            .call()
            .key(self.user_base(session.user_id))
            .arg(session.id.to_string())
            .arg(session.version)
            .arg(body)
            .arg(ip_arg(session.ip))
            .arg(fp_arg(session.fingerprint.as_deref()))
            .invoke(&self.conn)
            .await?;
        match reply.as_slice() {
            [Value::Int(1), v] => Ok(UpdateOutcome::Updated(int(v)?.try_into().unwrap_or(0))),
            [Value::Int(0)] => Ok(UpdateOutcome::NotFound),
            [Value::Int(2), v] => Ok(UpdateOutcome::Conflict {
                current: int(v)?.try_into().unwrap_or(0),
            }),
            _ => Err(protocol("update reply", &Value::Array(reply))),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %user))]
    async fn list(&self, user: UserId) -> Result<Vec<Session>> {
        let reply: Vec<Value> = LIST_SCRIPT
            .call()
            .key(self.user_base(user))
            .invoke(&self.conn)
            .await?;
        let mut out = reply
            .iter()
            .map(|v| self.parse_view(user, v))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|s| (s.created_at, s.id));
        Ok(out)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %user))]
    async fn revoke(&self, user: UserId, id: SessionId) -> Result<bool> {
        let n: i64 = REVOKE_SCRIPT
            .call()
            .key(self.user_base(user))
            .arg(id.to_string())
            .invoke(&self.conn)
            .await?;
        Ok(n == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %user))]
    async fn revoke_all(&self, user: UserId, keep: Option<SessionId>) -> Result<u64> {
        let n: i64 = REVOKE_ALL_SCRIPT
            .call()
            .key(self.user_base(user))
            .arg(keep.map(|k| k.to_string()).unwrap_or_default())
            .invoke(&self.conn)
            .await?;
        Ok(n.try_into().unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %user))]
    async fn bump_epoch(&self, user: UserId) -> Result<()> {
        let _epoch: i64 = BUMP_EPOCH_SCRIPT
            .call()
            .key(self.user_base(user))
            .invoke(&self.conn)
            .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %user))]
    async fn start_family(
        &self,
        user: UserId,
        session: SessionId,
        token: &TokenHash,
    ) -> Result<Option<FamilyId>> {
        let id = FamilyId::new();
        let n: i64 = START_FAMILY_SCRIPT
            .call()
            .key(self.user_base(user))
            .arg(session.to_string())
            .arg(token.to_hex())
            .arg(id.to_string())
            .invoke(&self.conn)
            .await?;
        match n {
            1 => Ok(Some(id)),
            0 => Ok(None),
            _ => Err(Error::Duplicate),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %request.user))]
    async fn refresh(&self, request: RefreshRequest) -> Result<RefreshOutcome> {
        let reply: Vec<Value> = REFRESH_SCRIPT
            .call()
            .key(self.user_base(request.user))
            .arg(request.presented.to_hex())
            .arg(request.next_refresh.to_hex())
            .arg(request.next_session.to_hex())
            .arg(request.fingerprint.as_deref().unwrap_or(""))
            .arg(
                i64::try_from(request.grace.as_millis())
                    .unwrap_or(MAX_MS)
                    .min(MAX_MS),
            )
            .invoke(&self.conn)
            .await?;
        match reply.as_slice() {
            [Value::Int(1), view] => Ok(RefreshOutcome::Rotated(Arc::new(
                self.parse_view(request.user, view)?,
            ))),
            [Value::Int(3), view] => Ok(RefreshOutcome::Grace(Arc::new(
                self.parse_view(request.user, view)?,
            ))),
            [Value::Int(2)] => Ok(RefreshOutcome::Reused),
            [Value::Int(0)] => Ok(RefreshOutcome::Invalid),
            [Value::Int(-1)] => Err(Error::Duplicate),
            _ => Err(protocol("refresh reply", &Value::Array(reply))),
        }
    }
}
