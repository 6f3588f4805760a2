//! Where a client's requests come from: reading the next one is a reactor job, since the
//! source may block (stdin from a slow pipe) while the client's loop must keep running (pings,
//! timers, Ctrl-C). [`Source::next`] is what the work closure runs, on a work thread; its
//! answer comes back to the machine as `Input::Done`.

use std::sync::Mutex;

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
    use std::sync::{mpsc, Arc};
    use std::thread;
    use std::time::Duration;

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
