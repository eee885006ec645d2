//! Redis [`KvStore`].

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands as _;

use super::{KvError, KvStore, Result};
use crate::BackendError;
use crate::redis::{RedisConnection, RedisScript};

/// `KEYS[1]` counter, `ARGV[1]` increment, `ARGV[2]` ttl in ms. Returns `{1, value}` or
/// `{0}` when the value is not an integer (or would overflow). The value is read back with
/// GET so it is exact beyond 2^53 (Lua numbers are doubles). A counter without TTL gets one:
/// a key can never be left without expiry.
const INCREMENT: &str = r"
local ok = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(ok) == 'table' and ok.err then return {0} end
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, redis.call('GET', KEYS[1])}
";

static INCREMENT_SCRIPT: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new("kv_increment", INCREMENT));

/// A [`KvStore`] on Redis. Keys are `<prefix>:kv:{<key>}`; expiry is Redis' own TTL, so
/// all app instances agree on it whatever their clocks say.
#[derive(Debug, Clone)]
pub struct RedisKvStore {
    conn: RedisConnection,
}

impl RedisKvStore {
    /// A store on `conn`, under its key prefix.
    pub fn new(conn: RedisConnection) -> Self {
        Self { conn }
    }

    fn key(&self, key: &str) -> String {
        self.conn.keys().key("kv", key)
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    // Redis rejects PX 0; a sub-millisecond TTL is rounded up to 1 ms.
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl KvStore for RedisKvStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conn.manager();
        let value: Option<Vec<u8>> = conn.get(self.key(key)).await.map_err(BackendError::from)?;
        Ok(value)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let mut conn = self.conn.manager();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl_ms(ttl));
        }
        let () = cmd
            .query_async(&mut conn)
            .await
            .map_err(BackendError::from)?;
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        let mut conn = self.conn.manager();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl_ms(ttl));
        }
        let reply: Option<String> = cmd
            .query_async(&mut conn)
            .await
            .map_err(BackendError::from)?;
        Ok(reply.is_some())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let mut conn = self.conn.manager();
        let removed: i64 = conn.del(self.key(key)).await.map_err(BackendError::from)?;
        Ok(removed > 0)
    }

    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64> {
        let reply: Vec<redis::Value> = INCREMENT_SCRIPT
            .call()
            .key(self.key(key))
            .arg(by)
            .arg(ttl_ms(ttl))
            .invoke(&self.conn)
            .await?;
        match reply.as_slice() {
            [redis::Value::Int(1), value] => {
                let text: String = redis::FromRedisValue::from_redis_value(value.clone())
                    .map_err(|e| BackendError::Protocol(e.to_string()))?;
                text.parse()
                    .map_err(|_| BackendError::Protocol(format!("counter reply {text:?}")).into())
            }
            [redis::Value::Int(0)] => Err(KvError::NotAnInteger),
            other => Err(BackendError::Protocol(format!("kv_increment reply {other:?}")).into()),
        }
    }
}
