//! Feeding the clients their requests from the runner, a few lines ahead of their replies.

use std::io::Write;
use std::process::ChildStdin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::topology::Journal;

/// Feeds a client its requests (`cN-1`, `cN-2`, …) until `stop`, or until the count is
/// reached and `extend` is off (the run no longer needs traffic to show recovery from a
/// fault). Only a few lines run ahead of the client's replies: a pipe would otherwise buffer
/// thousands, and the client would still be working through them long after the fault
/// phase ends.
pub(super) struct Feeder {
    pub(super) stdin: ChildStdin,
    pub(super) source: String,
    pub(super) client: usize,
    pub(super) count: Option<u64>,
    pub(super) ahead: u64,
}

/// What the feeders are told by the run loop.
#[derive(Default)]
pub(super) struct FeedControl {
    /// Stop feeding now.
    pub(super) stop: AtomicBool,
    /// Go on past the request count: a nemesis kind still needs a fault and a reply after it.
    pub(super) extend: AtomicBool,
}

impl Feeder {
    pub(super) fn start(self, journal: Arc<Mutex<Journal>>, control: Arc<FeedControl>) {
        let Feeder {
            mut stdin,
            source,
            client,
            count,
            ahead,
        } = self;
        thread::spawn(move || {
            let mut n = 1u64;
            loop {
                let counted_out =
                    count.is_some_and(|c| n > c) && !control.extend.load(Ordering::SeqCst);
                if counted_out || control.stop.load(Ordering::SeqCst) {
                    break; // dropping stdin ends the client's input
                }
                let replied = journal
                    .lock()
                    .expect("journal lock")
                    .counts
                    .get(&source)
                    .copied()
                    .unwrap_or(0);
                if n > replied + ahead {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                }
                if writeln!(stdin, "c{client}-{n}").is_err() {
                    break;
                }
                n += 1;
            }
        });
    }
}
