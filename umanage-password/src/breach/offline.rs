//! An offline breach index: Have I Been Pwned's `SHA1:COUNT` file in a compact, searchable form.
//!
//! # File format (little-endian)
//!
//! | offset | size | content |
//! | --- | --- | --- |
//! | 0 | 8 | magic `UMPWIDX1` |
//! | 8 | 1 | `prefix_bits` *b* (0-24) |
//! | 9 | 7 | zero |
//! | 16 | 8 | record count *n* |
//! | 24 | 8 × (2^*b* + 1) | bucket table: index of the first record whose hash starts with each *b*-bit prefix, then *n* |
//! | … | 24 × *n* | records sorted by hash: 20-byte SHA-1, `u32` count |
//!
//! [`OfflineIndex::open`] validates the header, the file size and the table, and keeps only the
//! table in memory (8 MiB for 2^20 buckets); a lookup reads one bucket (about 16 records,
//! 384 bytes, with the default bucket size) with one positioned read, or binary-searches a
//! larger bucket with 24-byte reads, so it needs no memory map and works on files far
//! larger than RAM (the full corpus is about 24 GB).
//!
//! # Building
//!
//! [`build_index_file`] (or the `build_breach_index` example) converts a text file with one
//! `HEX40:COUNT` line per hash (upper or lower case, `\r\n` or `\n`; HIBP's downloader format).
//! Sorted input (as HIBP ships it) is streamed in two passes with only the bucket table in
//! memory; unsorted input is sorted in memory (24 bytes per record). Duplicate hashes are
//! merged by adding their counts (saturating).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{BreachChecker, BreachStatus, FailurePolicy, UnavailableReason, sha1_digest};
use crate::error::{PasswordError, Result};
use crate::normalize::NormalizedPassword;

const MAGIC: &[u8; 8] = b"UMPWIDX1";
const HEADER_LEN: u64 = 24;
const RECORD_LEN: usize = 24;
/// The most prefix bits an index may use.
pub const MAX_PREFIX_BITS: u8 = 24;
/// Target records per bucket when choosing the prefix bits.
pub const TARGET_BUCKET_RECORDS: u64 = 16;
/// Buckets up to this many records are read whole.
const WHOLE_BUCKET_RECORDS: u64 = 256;

/// Options of [`build_index`] / [`build_index_file`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Force the prefix bits (0-24); `None` chooses so buckets hold about
    /// [`TARGET_BUCKET_RECORDS`] records (at most 20 bits).
    pub prefix_bits: Option<u8>,
}

/// What a build did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildStats {
    /// Lines read (excluding blank lines).
    pub lines: u64,
    /// Distinct hashes written.
    pub records: u64,
    /// Prefix bits used.
    pub prefix_bits: u8,
    /// Whether the input was already sorted (streamed) or sorted in memory.
    pub input_sorted: bool,
}

fn invalid(reason: &'static str) -> PasswordError {
    PasswordError::InvalidBreachIndex { reason }
}

fn parse_line(line: &str, number: u64) -> Result<Option<([u8; 20], u32)>> {
    let line = line.trim_end_matches(['\r', '\n']).trim();
    if line.is_empty() {
        return Ok(None);
    }
    let bad = |reason| PasswordError::InvalidBreachInput {
        line: number,
        reason,
    };
    let (hash, count) = line
        .split_once(':')
        .ok_or_else(|| bad("expected HASH:COUNT"))?;
    if hash.len() != 40 {
        return Err(bad("the hash is not 40 hex digits"));
    }
    let mut digest = [0u8; 20];
    hex::decode_to_slice(hash, &mut digest).map_err(|_| bad("the hash is not hex"))?;
    let count: u64 = count
        .trim()
        .parse()
        .map_err(|_| bad("the count is not a number"))?;
    Ok(Some((digest, u32::try_from(count).unwrap_or(u32::MAX))))
}

fn choose_bits(records: u64, forced: Option<u8>) -> Result<u8> {
    if let Some(bits) = forced {
        if bits > MAX_PREFIX_BITS {
            return Err(PasswordError::InvalidConfig {
                component: "breach index",
                reason: format!("prefix_bits must be at most {MAX_PREFIX_BITS}"),
            });
        }
        return Ok(bits);
    }
    let mut bits = 0u8;
    while bits < 20 && (records >> bits) > TARGET_BUCKET_RECORDS {
        bits += 1;
    }
    Ok(bits)
}

fn prefix_of(hash: &[u8; 20], bits: u8) -> usize {
    if bits == 0 {
        return 0;
    }
    let top = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]);
    (top >> (32 - u32::from(bits))) as usize
}

/// Writes an index from records sorted by hash and free of duplicates.
fn write_index<W: Write + Seek>(
    out: &mut W,
    records: impl Iterator<Item = Result<([u8; 20], u32)>>,
    count: u64,
    bits: u8,
) -> Result<()> {
    let buckets = 1usize << bits;
    let mut per_bucket = vec![0u64; buckets];
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8] = bits;
    header[16..24].copy_from_slice(&count.to_le_bytes());
    out.write_all(&header)?;
    let table_len = (buckets as u64 + 1) * 8;
    out.write_all(&vec![0u8; table_len as usize])?;
    let mut written = 0u64;
    for record in records {
        let (hash, n) = record?;
        per_bucket[prefix_of(&hash, bits)] += 1;
        out.write_all(&hash)?;
        out.write_all(&n.to_le_bytes())?;
        written += 1;
    }
    if written != count {
        return Err(invalid("the input changed while the index was built"));
    }
    let mut table = Vec::with_capacity(table_len as usize);
    let mut start = 0u64;
    for n in &per_bucket {
        table.extend_from_slice(&start.to_le_bytes());
        start += n;
    }
    table.extend_from_slice(&start.to_le_bytes());
    out.seek(SeekFrom::Start(HEADER_LEN))?;
    out.write_all(&table)?;
    out.flush()?;
    Ok(())
}

/// Merges adjacent duplicates of a sorted stream.
fn merge_sorted(
    mut input: impl Iterator<Item = Result<([u8; 20], u32)>>,
) -> impl Iterator<Item = Result<([u8; 20], u32)>> {
    let mut pending: Option<([u8; 20], u32)> = None;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        loop {
            match input.next() {
                Some(Ok((hash, n))) => match pending {
                    Some((h, c)) if h == hash => pending = Some((h, c.saturating_add(n))),
                    Some(prev) => {
                        pending = Some((hash, n));
                        return Some(Ok(prev));
                    }
                    None => pending = Some((hash, n)),
                },
                Some(Err(e)) => {
                    done = true;
                    return Some(Err(e));
                }
                None => {
                    done = true;
                    return pending.take().map(Ok);
                }
            }
        }
    })
}

fn lines(reader: impl BufRead) -> impl Iterator<Item = Result<([u8; 20], u32)>> {
    reader
        .lines()
        .enumerate()
        .filter_map(|(i, line)| match line {
            Ok(line) => parse_line(&line, i as u64 + 1).transpose(),
            Err(e) => Some(Err(PasswordError::Io(e))),
        })
}

/// Builds an index from an in-memory or streamed source of `HEX40:COUNT` lines, sorting in
/// memory (24 bytes per record). For large sorted files prefer [`build_index_file`].
///
/// # Errors
///
/// [`PasswordError::InvalidBreachInput`] for a malformed line (with its number),
/// [`PasswordError::Io`] when reading or writing fails, [`PasswordError::InvalidConfig`] for
/// prefix bits above [`MAX_PREFIX_BITS`].
pub fn build_index<W: Write + Seek>(
    input: impl BufRead,
    output: &mut W,
    options: BuildOptions,
) -> Result<BuildStats> {
    let mut all = lines(input).collect::<Result<Vec<_>>>()?;
    let line_count = all.len() as u64;
    let input_sorted = all.windows(2).all(|w| w[0].0 <= w[1].0);
    all.sort_by_key(|a| a.0);
    let merged: Vec<_> = merge_sorted(all.into_iter().map(Ok)).collect::<Result<_>>()?;
    let bits = choose_bits(merged.len() as u64, options.prefix_bits)?;
    let count = merged.len() as u64;
    write_index(output, merged.into_iter().map(Ok), count, bits)?;
    Ok(BuildStats {
        lines: line_count,
        records: count,
        prefix_bits: bits,
        input_sorted,
    })
}

/// Builds an index file from a `HEX40:COUNT` text file. Sorted input is streamed (two
/// passes, only the bucket table in memory); unsorted input is sorted in memory.
///
/// # Errors
///
/// As [`build_index`]; plus [`PasswordError::Io`] when a file cannot be opened or created.
pub fn build_index_file(input: &Path, output: &Path, options: BuildOptions) -> Result<BuildStats> {
    // pass 1: validate, count distinct hashes, check the order
    let mut line_count = 0u64;
    let mut distinct = 0u64;
    let mut sorted = true;
    let mut prev: Option<[u8; 20]> = None;
    for record in lines(BufReader::new(File::open(input)?)) {
        let (hash, _) = record?;
        line_count += 1;
        match prev {
            Some(p) if p == hash => {}
            Some(p) if p > hash => sorted = false,
            _ => distinct += 1,
        }
        prev = Some(hash);
    }
    let mut out = BufWriter::new(File::create(output)?);
    if !sorted {
        let stats = build_index(BufReader::new(File::open(input)?), &mut out, options)?;
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()?;
        return Ok(stats);
    }
    let bits = choose_bits(distinct, options.prefix_bits)?;
    let records = merge_sorted(lines(BufReader::new(File::open(input)?)));
    write_index(&mut out, records, distinct, bits)?;
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()?;
    Ok(BuildStats {
        lines: line_count,
        records: distinct,
        prefix_bits: bits,
        input_sorted: true,
    })
}

#[derive(Debug)]
struct Inner {
    file: File,
    path: PathBuf,
    bits: u8,
    table: Box<[u64]>,
    records: u64,
    data_offset: u64,
}

/// A read-only offline breach index (see the module docs). Cheap to clone; lookups from
/// many threads at once are fine (positioned reads, no shared cursor).
#[derive(Debug, Clone)]
pub struct OfflineIndex {
    inner: Arc<Inner>,
    failure_policy: FailurePolicy,
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

impl OfflineIndex {
    /// Opens and validates an index file. The breach check fails open on read errors; see
    /// [`with_failure_policy`](Self::with_failure_policy).
    ///
    /// # Errors
    ///
    /// [`PasswordError::Io`] when the file cannot be read, [`PasswordError::InvalidBreachIndex`]
    /// when it is not a valid index (magic, prefix bits, size, bucket table).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len < HEADER_LEN {
            return Err(invalid("shorter than the header"));
        }
        let mut header = [0u8; HEADER_LEN as usize];
        read_at(&file, &mut header, 0)?;
        if &header[..8] != MAGIC {
            return Err(invalid("not an umanage breach index (bad magic)"));
        }
        let bits = header[8];
        if bits > MAX_PREFIX_BITS || header[9..16].iter().any(|b| *b != 0) {
            return Err(invalid("unsupported prefix bits or header flags"));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&header[16..24]);
        let records = u64::from_le_bytes(n);
        let entries = (1u64 << bits) + 1;
        let data_offset = HEADER_LEN + entries * 8;
        let expected = records
            .checked_mul(RECORD_LEN as u64)
            .and_then(|r| r.checked_add(data_offset));
        if expected != Some(len) {
            return Err(invalid("the file size does not match the record count"));
        }
        let mut raw = vec![0u8; (entries * 8) as usize];
        read_at(&file, &mut raw, HEADER_LEN)?;
        let table: Box<[u64]> = raw
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        if table.first() != Some(&0)
            || table.last() != Some(&records)
            || table.windows(2).any(|w| w[0] > w[1])
        {
            return Err(invalid("the bucket table is inconsistent"));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                file,
                path: path.to_owned(),
                bits,
                table,
                records,
                data_offset,
            }),
            failure_policy: FailurePolicy::FailOpen,
        })
    }

    /// Sets what [`BreachChecker::check`] reports when the file cannot be read.
    #[must_use]
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Number of distinct hashes.
    pub fn len(&self) -> u64 {
        self.inner.records
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.records == 0
    }

    /// Prefix bits of the bucket table.
    pub fn prefix_bits(&self) -> u8 {
        self.inner.bits
    }

    /// The index file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Looks up a SHA-1 digest; `Some(count)` when present. Synchronous (a few µs with a
    /// warm page cache).
    ///
    /// # Errors
    ///
    /// [`io::Error`] when the file cannot be read.
    pub fn lookup_digest(&self, digest: &[u8; 20]) -> io::Result<Option<u32>> {
        self.inner.lookup(digest)
    }

    /// Looks up a password (SHA-1 of its normalised form).
    ///
    /// # Errors
    ///
    /// [`io::Error`] when the file cannot be read.
    pub fn lookup(&self, password: &NormalizedPassword) -> io::Result<Option<u32>> {
        self.inner.lookup(&sha1_digest(password))
    }
}

impl Inner {
    fn record_at(&self, index: u64, buf: &mut [u8; RECORD_LEN]) -> io::Result<()> {
        read_at(
            &self.file,
            buf,
            self.data_offset + index * RECORD_LEN as u64,
        )
    }

    fn lookup(&self, digest: &[u8; 20]) -> io::Result<Option<u32>> {
        let bucket = prefix_of(digest, self.bits);
        let (mut lo, mut hi) = (self.table[bucket], self.table[bucket + 1]);
        let mut rec = [0u8; RECORD_LEN];
        // narrow a large bucket with single-record reads
        while hi - lo > WHOLE_BUCKET_RECORDS {
            let mid = lo + (hi - lo) / 2;
            self.record_at(mid, &mut rec)?;
            match rec[..20].cmp(&digest[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(count_of(&rec))),
            }
        }
        if lo == hi {
            return Ok(None);
        }
        let mut buf = vec![0u8; ((hi - lo) as usize) * RECORD_LEN];
        read_at(
            &self.file,
            &mut buf,
            self.data_offset + lo * RECORD_LEN as u64,
        )?;
        let (mut a, mut b) = (0usize, (hi - lo) as usize);
        while a < b {
            let mid = a + (b - a) / 2;
            let start = mid * RECORD_LEN;
            let record = &buf[start..start + RECORD_LEN];
            match record[..20].cmp(&digest[..]) {
                std::cmp::Ordering::Less => a = mid + 1,
                std::cmp::Ordering::Greater => b = mid,
                std::cmp::Ordering::Equal => {
                    let mut r = [0u8; RECORD_LEN];
                    r.copy_from_slice(record);
                    return Ok(Some(count_of(&r)));
                }
            }
        }
        Ok(None)
    }
}

fn count_of(rec: &[u8; RECORD_LEN]) -> u32 {
    u32::from_le_bytes([rec[20], rec[21], rec[22], rec[23]])
}

#[async_trait]
impl BreachChecker for OfflineIndex {
    /// Runs the lookup on tokio's blocking pool, since it reads a file.
    #[tracing::instrument(name = "breach.offline.check", skip_all)]
    async fn check(&self, password: &NormalizedPassword) -> BreachStatus {
        let digest = sha1_digest(password);
        let inner = Arc::clone(&self.inner);
        let unavailable = BreachStatus::Unavailable {
            policy: self.failure_policy,
            reason: UnavailableReason::Io,
        };
        match tokio::task::spawn_blocking(move || inner.lookup(&digest)).await {
            Ok(Ok(Some(count))) => BreachStatus::Breached {
                count: count.into(),
            },
            Ok(Ok(None)) => BreachStatus::NotFound,
            Ok(Err(error)) => {
                tracing::warn!(%error, "offline breach index unreadable");
                unavailable
            }
            Err(_) => unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_bits() {
        let mut h = [0u8; 20];
        h[0] = 0xAB;
        h[1] = 0xCD;
        assert_eq!(prefix_of(&h, 0), 0);
        assert_eq!(prefix_of(&h, 4), 0xA);
        assert_eq!(prefix_of(&h, 16), 0xABCD);
        assert_eq!(choose_bits(0, None).unwrap(), 0);
        assert_eq!(choose_bits(16, None).unwrap(), 0);
        assert_eq!(choose_bits(17, None).unwrap(), 1);
        assert_eq!(choose_bits(u64::MAX, None).unwrap(), 20);
        assert!(choose_bits(10, Some(25)).is_err());
    }

    #[test]
    fn line_parsing() {
        let h = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8";
        let (d, n) = parse_line(&format!("{h}:42\r"), 1).unwrap().unwrap();
        assert_eq!(hex::encode_upper(d), h);
        assert_eq!(n, 42);
        assert_eq!(parse_line("  ", 1).unwrap(), None);
        let huge = parse_line(&format!("{}:99999999999", h.to_lowercase()), 1).unwrap();
        assert_eq!(huge.unwrap().1, u32::MAX);
        for bad in [
            "nocolon",
            "ABC:1",
            &format!("{h}:x"),
            &format!("{}:1", "Z".repeat(40)),
        ] {
            assert!(matches!(
                parse_line(bad, 7),
                Err(PasswordError::InvalidBreachInput { line: 7, .. })
            ));
        }
    }
}
