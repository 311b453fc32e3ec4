//! Credentials: OAuth clients and their access tokens, scanner credentials, scopes.

pub(crate) mod caller;
pub(crate) mod keys;
pub(crate) mod secrets;
pub(crate) mod token;

/// Every scope a client can hold.
pub const ALL_SCOPES: [&str; 6] = [
    "devices", "enroll", "verify", "identify", "users", "webhooks",
];

/// Parses a space-separated scope list, rejecting unknown and repeated-away duplicates.
pub(crate) fn parse_scopes(raw: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for s in raw.split_whitespace() {
        if !ALL_SCOPES.contains(&s) {
            return Err(format!("unknown scope `{s}`"));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}
