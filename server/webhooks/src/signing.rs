//! Standard Webhooks signatures.
//!
//! A signing secret is `whsec_` followed by the standard base64 of 32 random bytes. The HMAC
//! key is the decoded bytes; the signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`;
//! the `webhook-signature` header is a space-separated list of `v1,<base64 HMAC-SHA256>`, one
//! entry per secret in force (two while a rotated secret is in its grace period).

use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use palmlink_domain::SIGNING_SECRET_PREFIX as SECRET_PREFIX;

/// The HMAC key of a secret: the decoded bytes after `whsec_`, or `None` when malformed.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?;
    STANDARD.decode(encoded).ok().filter(|k| !k.is_empty())
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` for one secret.
pub fn sign_one(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret_key(secret)?);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    Some(format!("v1,{}", STANDARD.encode(ctx.sign().as_ref())))
}

/// The `webhook-signature` header value: one `v1,` entry per valid secret, space separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .filter_map(|s| sign_one(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use palmlink_domain::new_signing_secret;

    use super::*;

    /// The example of the Standard Webhooks specification (also used by the Svix libraries).
    #[test]
    fn matches_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = 1614265330;
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign_one(secret, id, ts, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn new_secrets_are_random_and_long_enough() {
        let a = new_signing_secret();
        assert_ne!(a, new_signing_secret());
        assert!(secret_key(&a).is_some_and(|k| k.len() >= 24));
    }

    #[test]
    fn two_secrets_give_two_entries() {
        let a = new_signing_secret();
        let b = new_signing_secret();
        let header = signature_header([a.as_str(), b.as_str()], "evt_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_ne!(parts[0], parts[1]);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
    }

    #[test]
    fn malformed_secrets_do_not_sign() {
        assert!(sign_one("nope", "id", 1, b"").is_none());
        assert!(sign_one("whsec_!!!", "id", 1, b"").is_none());
        assert!(sign_one("whsec_", "id", 1, b"").is_none());
    }
}
