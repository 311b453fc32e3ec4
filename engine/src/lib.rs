//! PalmLink engine.
pub mod calibration;
