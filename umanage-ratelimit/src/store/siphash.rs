//! One-shot SipHash over a byte string (Aumasson & Bernstein, "SipHash: a fast short-input
//! PRF", 2012), for the memory limiter's key hashing.
//!
//! `std`'s `RandomState` hashes with SipHash-1-3 too, but through the streaming `Hasher`
//! interface (a `write` for the bytes, another for the `str` terminator, then `finish`),
//! which costs about three times the instructions of this one-shot form on the short keys
//! a limiter sees. Keys are random per limiter, so an attacker choosing the limited keys
//! (header values, paths) cannot aim them at one bucket: the same protection against
//! flooding as `std`'s maps.

use std::hash::{BuildHasher, RandomState};

/// SipHash-`C`-`D` with a 128-bit key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SipKey<const C: usize, const D: usize> {
    k0: u64,
    k1: u64,
}

/// The variant std uses for `HashMap`: one compression round, three finalisation rounds.
pub(crate) type Sip13 = SipKey<1, 3>;

#[inline]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

impl<const C: usize, const D: usize> SipKey<C, D> {
    /// A key from two 64-bit halves (little-endian order of the 16 key bytes).
    pub(crate) const fn new(k0: u64, k1: u64) -> Self {
        Self { k0, k1 }
    }

    /// A random key, drawn from the OS through `std`'s `RandomState` (two of its keyed
    /// hashes of different inputs).
    pub(crate) fn random() -> Self {
        let seed = RandomState::new();
        Self::new(seed.hash_one(0u64), seed.hash_one(1u64))
    }

    /// The 64-bit SipHash of `bytes`.
    #[inline]
    pub(crate) fn hash(&self, bytes: &[u8]) -> u64 {
        let mut v = [
            self.k0 ^ 0x736f_6d65_7073_6575,
            self.k1 ^ 0x646f_7261_6e64_6f6d,
            self.k0 ^ 0x6c79_6765_6e65_7261,
            self.k1 ^ 0x7465_6462_7974_6573,
        ];
        let compress = |v: &mut [u64; 4], m: u64| {
            v[3] ^= m;
            for _ in 0..C {
                round(v);
            }
            v[0] ^= m;
        };
        let mut blocks = bytes.chunks_exact(8);
        for block in &mut blocks {
            let mut b = [0u8; 8];
            b.copy_from_slice(block);
            compress(&mut v, u64::from_le_bytes(b));
        }
        // the last block: the 0 to 7 bytes left, and the length's low byte on top
        let tail = blocks.remainder();
        let mut last = u64::from(bytes.len() as u8) << 56;
        let mut i = 0;
        if let Some(&[a, b, c, d]) = tail.get(..4) {
            last |= u64::from(u32::from_le_bytes([a, b, c, d]));
            i = 4;
        }
        if let Some(&[a, b]) = tail.get(i..i + 2) {
            last |= u64::from(u16::from_le_bytes([a, b])) << (8 * i);
            i += 2;
        }
        if let Some(&a) = tail.get(i) {
            last |= u64::from(a) << (8 * i);
        }
        compress(&mut v, last);
        v[2] ^= 0xff;
        for _ in 0..D {
            round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: (u64, u64) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);

    /// The paper's test vector (appendix A): SipHash-2-4, key 00..0f, message 00..0e.
    #[test]
    fn paper_vector() {
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(
            SipKey::<2, 4>::new(KEY.0, KEY.1).hash(&msg),
            0xa129_ca61_49be_45e5
        );
    }

    /// Agrees with std's SipHash-2-4 on every length from 0 to 64 bytes (so the block
    /// loop and the tail are right; 1-3 differs only in the round counts).
    #[test]
    #[allow(deprecated)] // std::hash::SipHasher is deprecated but still SipHash-2-4
    fn agrees_with_std() {
        use std::hash::Hasher as _;
        let ours = SipKey::<2, 4>::new(KEY.0 ^ 0x1234, KEY.1.rotate_left(7));
        for len in 0..=64usize {
            let msg: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let mut std = std::hash::SipHasher::new_with_keys(KEY.0 ^ 0x1234, KEY.1.rotate_left(7));
            std.write(&msg);
            assert_eq!(ours.hash(&msg), std.finish(), "length {len}");
        }
        let a = Sip13::random();
        let b = Sip13::random();
        assert_ne!(a.hash(b"user:42"), b.hash(b"user:42"), "keys are random");
        assert_ne!(a.hash(b"user:42"), a.hash(b"user:43"));
    }
}
