//! Random credentials, their SHA-256 digests and constant-time comparison.

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Pairing code characters: no 0/O, 1/I/L, so a code read aloud or typed is unambiguous.
pub const PAIRING_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Length of a pairing code (about 49 bits).
pub const PAIRING_CODE_LEN: usize = 10;

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).expect("the operating system random generator failed");
    buf
}

/// A high-entropy secret: `prefix` then base64url of 32 random bytes.
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes(32)))
}

/// A fresh pairing code from [`PAIRING_ALPHABET`], drawn without modulo bias.
pub fn new_pairing_code() -> String {
    let n = PAIRING_ALPHABET.len();
    let bound = (256 / n * n) as u8;
    let mut code = String::with_capacity(PAIRING_CODE_LEN);
    while code.len() < PAIRING_CODE_LEN {
        for b in random_bytes(16) {
            if b < bound && code.len() < PAIRING_CODE_LEN {
                code.push(PAIRING_ALPHABET[usize::from(b) % n] as char);
            }
        }
    }
    code
}

/// Normalises a typed pairing code: upper case, separators and spaces dropped.
pub fn normalize_pairing_code(raw: &str) -> String {
    raw.chars()
        .filter(|c| !matches!(c, '-' | ' ' | '_'))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Prefix of scanner credentials.
pub const DEVICE_SECRET_PREFIX: &str = "pds_";
/// Prefix of OAuth client secrets.
pub const CLIENT_SECRET_PREFIX: &str = "pcs_";
/// Prefix of webhook signing secrets (Standard Webhooks).
pub const SIGNING_SECRET_PREFIX: &str = "whsec_";

/// A fresh webhook signing secret: `whsec_` and the standard base64 of 32 random bytes (the
/// contract asks for at least 24); the HMAC key is the decoded bytes.
pub fn new_signing_secret() -> String {
    format!(
        "{SIGNING_SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(random_bytes(32))
    )
}

/// Lower-case hex of the SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest(&SHA256, data).as_ref())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_codes_use_the_alphabet() {
        for _ in 0..50 {
            let code = new_pairing_code();
            assert_eq!(code.len(), PAIRING_CODE_LEN);
            assert!(
                code.bytes().all(|b| PAIRING_ALPHABET.contains(&b)),
                "{code}"
            );
        }
        assert_eq!(normalize_pairing_code("abcd-efgh 23"), "ABCDEFGH23");
    }

    #[test]
    fn hashing_and_comparison() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_ne!(new_secret("x_"), new_secret("x_"));
        let signing = new_signing_secret();
        assert!(signing.starts_with(SIGNING_SECRET_PREFIX));
        assert_ne!(signing, new_signing_secret());
    }
}
