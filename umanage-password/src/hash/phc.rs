//! Strict parsing of stored hashes: PHC strings for Argon2, modular crypt strings for bcrypt.
//!
//! A stored hash is untrusted input (a database row can be tampered with, an import can
//! carry anything). Everything is checked here, against [`VerifyLimits`], before a single
//! block of memory is allocated for hashing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;

use super::{Algorithm, VerifyLimits};
use crate::error::{PasswordError, Result};
use crate::pepper::PepperId;

/// The longest stored hash looked at; anything longer is malformed without being read.
pub(crate) const MAX_STORED_HASH_LEN: usize = 512;

/// The PHC parameter name under which a pepper key id is recorded.
pub(crate) const PEPPER_PARAM: &str = "pepper";

/// Argon2 version 0x10 (1.0), written `v=16`, or implied when `v=` is absent.
pub(crate) const VERSION_10: u32 = 0x10;
/// Argon2 version 0x13 (1.3), written `v=19`: the current one.
pub(crate) const VERSION_13: u32 = 0x13;

/// A parsed, range-checked stored hash. Holds salt and digest (not secret, but not shown).
pub(crate) enum Parsed {
    Argon2(ParsedArgon2),
    Bcrypt { cost: u32 },
}

pub(crate) struct ParsedArgon2 {
    pub algorithm: Algorithm,
    pub version: u32,
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub pepper: Option<PepperId>,
    pub salt: Vec<u8>,
    pub digest: Vec<u8>,
}

fn malformed(reason: &'static str) -> PasswordError {
    PasswordError::MalformedHash { reason }
}

/// Parses `stored` and checks every parameter against `limits`.
pub(crate) fn parse(stored: &str, limits: &VerifyLimits) -> Result<Parsed> {
    if stored.len() > MAX_STORED_HASH_LEN {
        return Err(malformed("longer than any supported hash"));
    }
    if !stored.is_ascii() {
        return Err(malformed("contains non-ASCII characters"));
    }
    if stored.starts_with("$2") {
        return parse_bcrypt(stored, limits);
    }
    parse_argon2(stored, limits)
}

fn parse_bcrypt(stored: &str, limits: &VerifyLimits) -> Result<Parsed> {
    // $2b$12$ + 22 salt characters + 31 digest characters = 60 bytes.
    let b = stored.as_bytes();
    if b.len() != 60 || b[3] != b'$' || b[6] != b'$' {
        return Err(malformed("not a 60-character bcrypt string"));
    }
    match &stored[1..3] {
        "2a" | "2b" | "2y" => {}
        // $2x$ marks hashes made by the sign-extension bug of old crypt_blowfish; they do
        // not verify with a correct implementation, so they are refused explicitly.
        "2x" => {
            return Err(malformed(
                "bcrypt $2x$ hashes (crypt_blowfish bug) are not supported",
            ));
        }
        _ => return Err(malformed("unknown bcrypt variant")),
    }
    let cost = &stored[4..6];
    if !cost.bytes().all(|c| c.is_ascii_digit()) {
        return Err(malformed("bcrypt cost is not a two-digit number"));
    }
    let cost: u32 = cost
        .parse()
        .map_err(|_| malformed("bcrypt cost is not a two-digit number"))?;
    check_range(
        "bcrypt cost",
        u64::from(cost),
        u64::from(VerifyLimits::MIN_BCRYPT_COST),
        u64::from(limits.max_bcrypt_cost()),
    )?;
    let alphabet_ok = stored[7..]
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/');
    if !alphabet_ok {
        return Err(malformed(
            "bcrypt salt or digest has characters outside its alphabet",
        ));
    }
    Ok(Parsed::Bcrypt { cost })
}

fn parse_argon2(stored: &str, limits: &VerifyLimits) -> Result<Parsed> {
    let mut fields = stored.split('$');
    if fields.next() != Some("") {
        return Err(malformed("does not start with '$'"));
    }
    let algorithm = match fields.next() {
        Some("argon2id") => Algorithm::Argon2id,
        Some("argon2i") => Algorithm::Argon2i,
        Some("argon2d") => Algorithm::Argon2d,
        _ => return Err(malformed("unknown or unsupported algorithm identifier")),
    };
    let rest: Vec<&str> = fields.collect();
    let (version, rest) = match rest.first() {
        Some(v) if v.starts_with("v=") => {
            let version = match *v {
                "v=16" => VERSION_10,
                "v=19" => VERSION_13,
                _ => return Err(malformed("unknown Argon2 version")),
            };
            (version, &rest[1..])
        }
        // The reference implementation writes no version field for 1.0 hashes.
        _ => (VERSION_10, &rest[..]),
    };
    let [params, salt, digest] = rest else {
        return Err(malformed("expected parameters, salt and digest fields"));
    };

    let mut m = None;
    let mut t = None;
    let mut p = None;
    let mut pepper = None;
    for pair in params.split(',') {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(malformed("parameter without '='"));
        };
        let slot = match name {
            "m" => &mut m,
            "t" => &mut t,
            "p" => &mut p,
            PEPPER_PARAM => {
                if pepper.is_some() {
                    return Err(malformed("duplicate parameter"));
                }
                pepper =
                    Some(PepperId::new(value).map_err(|_| malformed("invalid pepper key id"))?);
                continue;
            }
            "keyid" | "data" => {
                return Err(malformed("Argon2 keyid/data parameters are not supported"));
            }
            _ => return Err(malformed("unknown parameter")),
        };
        if slot.is_some() {
            return Err(malformed("duplicate parameter"));
        }
        *slot = Some(decimal(value)?);
    }
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        return Err(malformed("missing m, t or p parameter"));
    };
    check_range("p", p, 1, u64::from(limits.max_p_cost()))?;
    check_range("t", t, 1, u64::from(limits.max_t_cost()))?;
    // Argon2 needs at least 8 KiB per lane (RFC 9106, section 3.1).
    check_range("m", m, 8 * p, u64::from(limits.max_m_cost_kib()))?;

    let salt = b64(
        "salt",
        salt,
        VerifyLimits::MIN_SALT_LEN,
        VerifyLimits::MAX_SALT_LEN,
    )?;
    let digest = b64(
        "output length",
        digest,
        VerifyLimits::MIN_OUTPUT_LEN,
        VerifyLimits::MAX_OUTPUT_LEN,
    )?;
    Ok(Parsed::Argon2(ParsedArgon2 {
        algorithm,
        version,
        m_cost: m as u32,
        t_cost: t as u32,
        p_cost: p as u32,
        pepper,
        salt,
        digest,
    }))
}

/// A plain decimal number: digits only, no sign, no leading zero, at most 10 digits (so the
/// value fits a `u64` and comparing it with a cap cannot overflow).
fn decimal(text: &str) -> Result<u64> {
    let well_formed = !text.is_empty()
        && text.len() <= 10
        && text.bytes().all(|c| c.is_ascii_digit())
        && !(text.len() > 1 && text.starts_with('0'));
    if !well_formed {
        return Err(malformed("parameter value is not a plain decimal number"));
    }
    text.parse()
        .map_err(|_| malformed("parameter value is not a plain decimal number"))
}

fn check_range(param: &'static str, value: u64, min: u64, max: u64) -> Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(PasswordError::HashParamOutOfRange {
            param,
            value,
            min,
            max,
        })
    }
}

/// Decodes unpadded standard base64 after checking its length, then checks the byte count.
fn b64(param: &'static str, text: &str, min: usize, max: usize) -> Result<Vec<u8>> {
    // 4 characters carry 3 bytes; a remainder of 1 character is never valid.
    let decoded_len = text.len() / 4 * 3 + (text.len() % 4).saturating_sub(1);
    check_range(param, decoded_len as u64, min as u64, max as u64)?;
    STANDARD_NO_PAD
        .decode(text)
        .map_err(|_| malformed("salt or digest is not canonical unpadded base64"))
}

/// Unpadded standard base64, as PHC strings use.
pub(crate) fn encode_b64(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> VerifyLimits {
        VerifyLimits::default()
    }

    #[test]
    fn decimals_are_strict() {
        assert_eq!(decimal("0").unwrap(), 0);
        assert_eq!(decimal("4294967295").unwrap(), 4_294_967_295);
        for bad in [
            "",
            "+1",
            "-1",
            "01",
            " 1",
            "1 ",
            "1e3",
            "99999999999",
            "0x10",
        ] {
            assert!(decimal(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base64_length_is_checked_before_decoding() {
        let long = "A".repeat(400);
        assert!(matches!(
            b64("salt", &long, 8, 64),
            Err(PasswordError::HashParamOutOfRange { param: "salt", .. })
        ));
        // "c29tZXNhbHQ" = "somesalt"
        assert_eq!(b64("salt", "c29tZXNhbHQ", 8, 64).unwrap(), b"somesalt");
        // padded and non-canonical trailing bits are rejected
        assert!(b64("salt", "c29tZXNhbHQ=", 8, 64).is_err());
        assert!(b64("salt", "c29tZXNhbHR", 8, 64).is_err());
    }

    #[test]
    fn versions_and_fields() {
        let ok =
            "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";
        assert!(matches!(parse(ok, &limits()), Ok(Parsed::Argon2(p)) if p.version == VERSION_13));
        let no_version = ok.replace("v=19$", "");
        assert!(
            matches!(parse(&no_version, &limits()), Ok(Parsed::Argon2(p)) if p.version == VERSION_10)
        );
        for bad in [
            ok.replace("v=19", "v=20"),
            ok.replace("m=256,", ""),
            ok.replace("t=2", "t=2,t=2"),
            ok.replace("p=1", "p=1,x=1"),
            ok.replace("p=1", "p=1,keyid=AAAA"),
            format!("{ok}$extra"),
            ok.replace("$argon2id", "$argon2"),
            ok.replace("$argon2id", "argon2id"),
        ] {
            assert!(
                matches!(
                    parse(&bad, &limits()),
                    Err(PasswordError::MalformedHash { .. })
                ),
                "{bad}"
            );
        }
    }
}
