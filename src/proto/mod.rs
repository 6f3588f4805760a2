//! Pure codecs, one per RFC: they turn frame lists into typed commands and back, and return
//! malformed input as an error value, never a panic. 9/TSP's frames are plain enough to need
//! no codec: [`tsp`] is its vocabulary (service names, statuses, the request's UUID).

pub mod correlate;
pub mod flp;
pub mod mdp;
pub mod mmi;
pub mod ppp;
pub mod tsp;
