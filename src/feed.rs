//! Requests read on a thread of their own, so a client can keep its socket loop running
//! (pings, PONGs, timers, Ctrl-C) while the next request is slow to come, as from a pipe.
//!
//! On the reactor, reading the next request is a job: [`Source::next`] is what the work
//! closure runs, on a work thread, and its answer comes back to the machine as
//! `Input::Done` (the Lazy Pirate client). [`RequestFeed`] is the older way, for a loop of its
//! own that polls a wake-up socket:
//!
//! The loop polls [`RequestFeed::wakeup`] beside its own sockets. The reader thread notifies it
//! only while the loop has armed it ([`RequestFeed::arm`] before polling,
//! [`RequestFeed::disarm`] after), so a fast source (e.g. `--count`) costs no wake-ups at all. A source that blocks for good (stdin that is never
//! closed) leaves its thread blocked; the process exits anyway, and the thread holds only the
//! wake-up's own context, so closing the client's sockets never waits for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::error::{Error, Result};
use crate::transport::{Socket, Wakeup};

/// Requests buffered ahead of the loop; the reader blocks beyond this (back-pressure).
const AHEAD: usize = 64;

/// What the source has next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Request(String),
    /// The source is exhausted: no more requests.
    End,
}

/// A request source drained by a reader thread.
pub struct RequestFeed {
    rx: Receiver<String>,
    wakeup: Wakeup,
    waiting: Arc<AtomicBool>,
}

impl RequestFeed {
    /// Starts the reader thread on `requests`.
    pub fn spawn<I>(requests: I) -> Result<Self>
    where
        I: Iterator<Item = String> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(AHEAD);
        let wakeup = Wakeup::new(&zmq::Context::new())?;
        let notifier = wakeup.notifier();
        let waiting = Arc::new(AtomicBool::new(false));
        let flag = waiting.clone();
        thread::Builder::new()
            .name("requests".into())
            .spawn(move || {
                let wake = || {
                    if flag.swap(false, Ordering::SeqCst) {
                        notifier.notify();
                    }
                };
                for request in requests {
                    if tx.send(request).is_err() {
                        return; // the client stopped reading
                    }
                    wake();
                }
                drop(tx);
                wake();
            })
            .map_err(|e| Error::Internal(format!("cannot start the request reader: {e}")))?;
        Ok(RequestFeed {
            rx,
            wakeup,
            waiting,
        })
    }

    /// The next request or the end, if either is there now; `None` if the source has not
    /// produced anything yet.
    pub fn try_next(&self) -> Option<Next> {
        match self.rx.try_recv() {
            Ok(request) => Some(Next::Request(request)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Next::End),
        }
    }

    /// Call before polling: returns what arrived meanwhile, else arms the wake-up so the
    /// reader notifies [`RequestFeed::wakeup`] when the next request (or the end) comes.
    pub fn arm(&self) -> Option<Next> {
        self.waiting.store(true, Ordering::SeqCst);
        // Checked again after arming: a request sent before the flag was set woke nobody.
        let next = self.try_next();
        if next.is_some() {
            self.waiting.store(false, Ordering::SeqCst);
        }
        next
    }

    /// Call after polling: disarms the wake-up and clears any notification.
    pub fn disarm(&self) {
        self.waiting.store(false, Ordering::SeqCst);
        self.wakeup.drain();
    }

    /// The socket to poll beside the loop's own, readable when the reader has news.
    pub fn wakeup(&self) -> &Socket {
        self.wakeup.socket()
    }
}

/// A request source shared with the work threads that read it, one request per job.
pub struct Source {
    requests: Mutex<Box<dyn Iterator<Item = String> + Send>>,
}

impl Source {
    pub fn new(requests: impl Iterator<Item = String> + Send + 'static) -> Self {
        Source {
            requests: Mutex::new(Box::new(requests)),
        }
    }

    /// The next request, or `None` at the end; blocks while the source does (stdin). Jobs run
    /// one at a time, so requests come out in order.
    pub fn next(&self) -> Option<String> {
        // A reader that panicked leaves the iterator as it was: keep reading it.
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Polls the feed the way a client loop does, until it yields something or 5 s pass.
    fn next(feed: &RequestFeed) -> Next {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(next) = feed.try_next().or_else(|| feed.arm()) {
                return next;
            }
            let woke = feed.wakeup().poll_in(5000).unwrap();
            feed.disarm();
            assert!(woke || Instant::now() < deadline, "no wake-up");
        }
    }

    #[test]
    fn yields_every_request_in_order_then_the_end() {
        let feed = RequestFeed::spawn((1..=500).map(|i| i.to_string())).unwrap();
        for i in 1..=500 {
            assert_eq!(next(&feed), Next::Request(i.to_string()));
        }
        assert_eq!(next(&feed), Next::End);
        assert_eq!(next(&feed), Next::End, "the end stays the end");
    }

    #[test]
    fn a_slow_source_wakes_the_poll_instead_of_leaving_it_to_time_out() {
        let (tx, rx) = mpsc::channel::<String>();
        let feed = RequestFeed::spawn(rx.into_iter()).unwrap();
        assert_eq!(feed.arm(), None);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            tx.send("late".into()).unwrap();
        });
        // Readable means woken by the reader: a poll that timed out would say false.
        assert!(feed.wakeup().poll_in(10_000).unwrap());
        feed.disarm();
        assert_eq!(feed.try_next(), Some(Next::Request("late".into())));
        assert_eq!(next(&feed), Next::End, "the sender is gone");
    }

    #[test]
    fn an_empty_source_ends_at_once() {
        let feed = RequestFeed::spawn(std::iter::empty()).unwrap();
        assert_eq!(next(&feed), Next::End);
    }

    #[test]
    fn a_source_yields_its_requests_in_order_then_none_for_good() {
        let source = Source::new(["a".to_string(), "b".to_string()].into_iter());
        assert_eq!(source.next().as_deref(), Some("a"));
        assert_eq!(source.next().as_deref(), Some("b"));
        assert_eq!(source.next(), None);
        assert_eq!(source.next(), None);
    }

    #[test]
    fn a_source_read_from_a_work_thread_blocks_until_its_request_comes() {
        let (tx, rx) = mpsc::channel::<String>();
        let source = Arc::new(Source::new(rx.into_iter()));
        let reader = thread::spawn({
            let source = source.clone();
            move || source.next()
        });
        thread::sleep(Duration::from_millis(20));
        tx.send("late".into()).unwrap();
        assert_eq!(reader.join().unwrap().as_deref(), Some("late"));
        drop(tx);
        assert_eq!(source.next(), None, "the sender is gone");
    }
}
