//! Process-wide stop flag set by Ctrl-C/SIGTERM, and sleeps that wake up when it is set.
//!
//! Every role loop polls its sockets in slices of at most [`POLL_SLICE`] and checks
//! [`requested`] between slices, so a signal stops every loop within one slice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The longest a role blocks before looking at the stop flag again.
pub const POLL_SLICE: Duration = Duration::from_millis(100);

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every loop in the process to stop (called from the signal handler).
pub fn request() {
    STOP.store(true, Ordering::SeqCst);
}

/// True once a stop was requested.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once a stop was requested, for `?` in role loops.
pub fn check() -> Result<()> {
    if requested() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Sleeps for `duration` in slices, returning `Err(Interrupted)` as soon as a stop is requested.
pub fn sleep(duration: Duration) -> Result<()> {
    let deadline = Instant::now() + duration;
    loop {
        check()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// Milliseconds (at least 0, at most one poll slice) until `deadline`, for `zmq::poll`.
pub fn slice_until(deadline: Instant) -> i64 {
    let left = deadline.saturating_duration_since(Instant::now());
    left.min(POLL_SLICE).as_millis() as i64
}
