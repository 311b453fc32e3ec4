//! Shared helpers for the benchmarks, and the accuracy measurement behind the
//! `accuracy` binary.

pub mod accuracy;
