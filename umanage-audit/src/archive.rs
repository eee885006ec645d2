//! JSON-lines archive files with rotation by size and age, and gzip of closed files.
//!
//! Each event is one line of JSON (its serde form). The open file is
//! `<dir>/<prefix>-<UTC time opened>-<n>.jsonl`; when it would grow beyond `max_bytes`,
//! or is older than `max_age` (by the injected clock), it is closed, optionally compressed
//! to `….jsonl.gz` (the plain file is removed once the `.gz` is synced), and a new file is
//! opened. Every delivered batch is flushed and `fsync`ed before `deliver` returns.
//!
//! Delivery is at-least-once: a batch retried after a partial write can repeat lines, so
//! readers dedupe by event id ([`read_archive`] does not; it returns what the file holds).

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, BufWriter, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use umanage_core::SharedClock;

use crate::error::{Error, Result};
use crate::model::AuditEvent;
use crate::pipeline::AuditDestination;

/// Settings of a [`JsonlArchive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveConfig {
    dir: PathBuf,
    prefix: String,
    max_bytes: u64,
    max_age: Duration,
    gzip: bool,
}

impl ArchiveConfig {
    /// Default size at which a file is rotated: 64 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
    /// Default age at which a file is rotated: one day.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(86_400);

    /// Files in `dir` named `audit-…`, rotated at the defaults, gzipped.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            prefix: "audit".into(),
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_age: Self::DEFAULT_MAX_AGE,
            gzip: true,
        }
    }

    /// File name prefix (letters, digits, `-`, `_`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Rotate before a file exceeds this many bytes.
    #[must_use]
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }

    /// Rotate files older than this.
    #[must_use]
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }

    /// Compress closed files.
    #[must_use]
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    fn check(&self) -> Result<()> {
        let prefix_ok = !self.prefix.is_empty()
            && self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !prefix_ok {
            return Err(Error::Config(
                "archive prefix must be non-empty [A-Za-z0-9_-]".into(),
            ));
        }
        if self.max_bytes == 0 || self.max_age.is_zero() {
            return Err(Error::Config(
                "archive max_bytes and max_age must be > 0".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
    opened_at: DateTime<Utc>,
}

#[derive(Debug)]
struct State {
    config: ArchiveConfig,
    current: Option<OpenFile>,
    counter: u64,
}

impl State {
    fn open(&mut self, now: DateTime<Utc>) -> Result<&mut OpenFile> {
        if self.current.is_none() {
            self.counter += 1;
            let name = format!(
                "{}-{}-{}.jsonl",
                self.config.prefix,
                now.format("%Y%m%dT%H%M%S%.6fZ"),
                self.counter
            );
            let path = self.config.dir.join(name);
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            let bytes = file.metadata()?.len();
            self.current = Some(OpenFile {
                path,
                out: BufWriter::new(file),
                bytes,
                opened_at: now,
            });
        }
        self.current
            .as_mut()
            .ok_or_else(|| Error::Io(std::io::Error::other("archive file not open")))
    }

    fn rotate(&mut self) -> Result<Option<PathBuf>> {
        let Some(mut f) = self.current.take() else {
            return Ok(None);
        };
        f.out.flush()?;
        f.out.get_ref().sync_all()?;
        drop(f.out);
        if !self.config.gzip {
            return Ok(Some(f.path));
        }
        let gz_path = f.path.with_extension("jsonl.gz");
        let mut input = File::open(&f.path)?;
        let out = File::create(&gz_path)?;
        let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        std::io::copy(&mut input, &mut enc)?;
        let out = enc.finish()?;
        out.sync_all()?;
        std::fs::remove_file(&f.path)?;
        Ok(Some(gz_path))
    }

    fn write(&mut self, events: &[AuditEvent], now: DateTime<Utc>) -> Result<()> {
        let max_age =
            chrono::TimeDelta::from_std(self.config.max_age).unwrap_or(chrono::TimeDelta::MAX);
        for e in events {
            let mut line = serde_json::to_vec(e)?;
            line.push(b'\n');
            let rotate = self.current.as_ref().is_some_and(|f| {
                (f.bytes > 0 && f.bytes + line.len() as u64 > self.config.max_bytes)
                    || now - f.opened_at >= max_age
            });
            if rotate {
                self.rotate()?;
            }
            let f = self.open(now)?;
            f.out.write_all(&line)?;
            f.bytes += line.len() as u64;
        }
        if let Some(f) = self.current.as_mut() {
            f.out.flush()?;
            f.out.get_ref().sync_data()?;
        }
        Ok(())
    }
}

/// The JSON-lines archive destination (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct JsonlArchive {
    state: Arc<Mutex<State>>,
    clock: SharedClock,
}

impl JsonlArchive {
    /// An archive writing into `config`'s directory (created if missing).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad prefix or zero limits; [`Error::Io`] when the directory
    /// cannot be created.
    pub fn new(config: ArchiveConfig, clock: SharedClock) -> Result<Self> {
        config.check()?;
        std::fs::create_dir_all(&config.dir)?;
        Ok(Self {
            state: Arc::new(Mutex::new(State {
                config,
                current: None,
                counter: 0,
            })),
            clock,
        })
    }

    /// Closes (and compresses) the open file now; returns its final path.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when closing or compressing fails.
    pub async fn rotate(&self) -> Result<Option<PathBuf>> {
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || state.lock().rotate())
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }
}

#[async_trait]
impl AuditDestination for JsonlArchive {
    fn name(&self) -> &'static str {
        "jsonl-archive"
    }

    async fn deliver(&self, events: &[AuditEvent]) -> Result<()> {
        let state = Arc::clone(&self.state);
        let events = events.to_vec();
        let now = self.clock.now();
        tokio::task::spawn_blocking(move || state.lock().write(&events, now))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }
}

/// Reads the events of one archive file (`.jsonl` or `.jsonl.gz`).
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read; [`Error::Backend`] (serialisation) for a
/// line that is not an event.
pub fn read_archive(path: &Path) -> Result<Vec<AuditEvent>> {
    let file = File::open(path)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut out = Vec::new();
    for line in BufReader::new(reader).lines() {
        let line = line?;
        if !line.trim().is_empty() {
            out.push(serde_json::from_str(&line)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use umanage_core::ManualClock;

    fn tmpdir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("umanage-audit-archive-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn rotates_by_size_and_age_and_gzips() {
        let dir = tmpdir();
        let clock = ManualClock::default();
        let archive = JsonlArchive::new(
            ArchiveConfig::new(&dir)
                .max_bytes(2000)
                .max_age(Duration::from_secs(3600)),
            clock.shared(),
        )
        .unwrap();
        let events: Vec<AuditEvent> = (0..30)
            .map(|i| {
                AuditEvent::builder("t.x", &clock)
                    .meta("i", i)
                    .build()
                    .unwrap()
            })
            .collect();
        archive.deliver(&events[..20]).await.unwrap();
        clock.advance(Duration::from_secs(7200));
        archive.deliver(&events[20..]).await.unwrap();
        archive.rotate().await.unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{files:?}");
        assert!(
            files
                .iter()
                .all(|f| f.to_string_lossy().ends_with(".jsonl.gz")),
            "{files:?}"
        );
        let mut back = Vec::new();
        for f in &files {
            let part = read_archive(f).unwrap();
            let raw = std::fs::metadata(f).unwrap().len();
            assert!(raw < 2000, "{f:?} is {raw} bytes");
            back.extend(part);
        }
        back.sort_by_key(|e| e.metadata["i"].as_u64());
        assert_eq!(back, events);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            JsonlArchive::new(ArchiveConfig::new(&dir).prefix("../x"), clock.shared()).is_err()
        );
    }
}
