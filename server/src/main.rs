//! The `palmlink` binary.

fn main() {}
