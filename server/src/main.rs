//! The `palmlink` binary.
#![forbid(unsafe_code)]

mod webhooks;

fn main() {}
