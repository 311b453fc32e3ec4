//! PalmLink engine.
