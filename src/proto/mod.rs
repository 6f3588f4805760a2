//! Pure codecs, one per RFC: they turn frame lists into typed commands and back, and return
//! malformed input as an error value, never a panic.

pub mod correlate;
pub mod flp;
pub mod mdp;
pub mod mmi;
pub mod ppp;
