//! Where a client's requests come from: reading the next one is a reactor job, since the
//! source may block (stdin from a slow pipe) while the client's loop must keep running (pings,
//! timers, Ctrl-C). [`Source::next`] is what the work closure runs, on a work thread; its
//! answer comes back to the machine as `Input::Done`. [`Records`] cuts a byte stream (stdin)
//! into requests: lines, NUL-terminated records, or the whole stream as one, each bounded.
//! [`ReadAhead`] reads them on a thread of its own, so that one job hands a client a
//! window's worth of [`Request`]s.

use std::io::{self, BufRead, Read};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

use crate::msg::Message;
use crate::reactor::Stop;

/// A request source shared with the work threads that read it, one request per job.
pub struct Source {
    requests: Mutex<Box<dyn Iterator<Item = Vec<u8>> + Send>>,
}

impl Source {
    pub fn new(requests: impl Iterator<Item = Vec<u8>> + Send + 'static) -> Self {
        Source {
            requests: Mutex::new(Box::new(requests)),
        }
    }

    /// The next request, or `None` at the end; blocks while the source does (stdin). Jobs run
    /// one at a time, so requests come out in order.
    pub fn next(&self) -> Option<Vec<u8>> {
        // A reader that panicked leaves the iterator as it was: keep reading it.
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.next()
    }
}

/// One request read from the source: its text (for events and `check_echo`) and its frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub text: String,
    pub body: Message,
}

impl Request {
    /// A one-frame request, as the command line sends them: its bytes unchanged.
    pub fn line(bytes: impl Into<Vec<u8>>) -> Self {
        let bytes = bytes.into();
        Request {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            body: Message::from_frames([bytes]),
        }
    }
}

/// Reads requests on a thread of its own into a queue of at most `max`, so that one
/// read job (the client's `ReadNext`) hands it every request already read (up to `max`, a window's
/// worth): one job, and one wake-up of the loop, per burst of requests rather than per
/// request. A job waits only for the first request, never for more, so a slow stdin is sent
/// line by line as it comes.
pub struct ReadAhead {
    queue: Mutex<mpsc::Receiver<Request>>,
    max: usize,
}

impl ReadAhead {
    /// Starts reading `next` until it returns `None` (or the reader is dropped).
    pub fn new(mut next: impl FnMut() -> Option<Request> + Send + 'static, max: usize) -> Self {
        let max = max.max(1);
        let (tx, queue) = mpsc::sync_channel(max);
        thread::spawn(move || {
            while let Some(request) = next() {
                if tx.send(request).is_err() {
                    break; // the run is over
                }
            }
        });
        ReadAhead {
            queue: Mutex::new(queue),
            max,
        }
    }

    /// The requests ready now, up to `max`, without waiting: `None` if none is ready yet,
    /// empty at the end of the source. `None` too while a [`ReadAhead::next_batch`] waits
    /// (it holds the queue): that job brings the next requests.
    pub fn try_batch(&self) -> Option<Vec<Request>> {
        let queue = self.queue.try_lock().ok()?;
        match queue.try_recv() {
            Ok(first) => Some(self.batch_from(first, &queue)),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Vec::new()),
        }
    }

    /// The next requests: waits for one, then takes what is ready, up to `max`. Empty at
    /// the end of the source.
    pub fn next_batch(&self) -> Vec<Request> {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.recv() {
            Ok(first) => self.batch_from(first, &queue),
            Err(_) => Vec::new(),
        }
    }

    /// `first`, then what else is ready, up to `max`.
    fn batch_from(&self, first: Request, queue: &mpsc::Receiver<Request>) -> Vec<Request> {
        let mut batch = vec![first];
        while batch.len() < self.max {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        batch
    }
}

/// How a byte stream is cut into requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// One request per line: the `\n` (and a `\r` before it) is not part of the request; a
    /// last line without its `\n` is a request too. Every other byte is sent unchanged.
    Lines,
    /// One request per NUL-terminated record (`find -print0`, `xargs -0`): every byte but the
    /// terminator is sent, `\n` and `\r` included; a last record without its NUL counts too.
    Nul,
    /// The whole stream, up to its end, is one request (even an empty one).
    Whole,
}

/// The requests in a byte stream, cut by a [`Split`], each at most `max` bytes. A request
/// longer than that is an error (it is not cut in two): the iterator yields it and ends, as
/// it does after a read error.
pub struct Records<R> {
    reader: R,
    split: Split,
    max: u64,
    done: bool,
}

impl<R: BufRead> Records<R> {
    pub fn new(reader: R, split: Split, max: u64) -> Self {
        Records {
            reader,
            split,
            max,
            done: false,
        }
    }

    fn read(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut record = Vec::new();
        // One byte past the bound tells a request that is too long from one that fits.
        let mut bounded = (&mut self.reader).take(self.max.saturating_add(2));
        let (read, terminator) = match self.split {
            Split::Whole => (bounded.read_to_end(&mut record)?, None),
            Split::Lines => (bounded.read_until(b'\n', &mut record)?, Some(b'\n')),
            Split::Nul => (bounded.read_until(0, &mut record)?, Some(0)),
        };
        if read == 0 && self.split != Split::Whole {
            return Ok(None);
        }
        let ended = terminator.is_some() && record.last() == terminator.as_ref();
        if ended {
            record.pop();
            if self.split == Split::Lines && record.last() == Some(&b'\r') {
                record.pop();
            }
        }
        if record.len() as u64 > self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a request on stdin is longer than {} bytes (--max-message); it was not sent",
                    self.max
                ),
            ));
        }
        if self.split == Split::Whole {
            self.done = true;
        }
        Ok(Some(record))
    }
}

impl<R: BufRead> Iterator for Records<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.read().transpose();
        if matches!(next, Some(Err(_)) | None) {
            self.done = true;
        }
        next
    }
}

/// `requests`, read on a thread of their own, ending early once `stop` is raised: for a
/// caller that reads requests on its own loop (the Titanic client) and would otherwise sit
/// in a read from an open, silent stdin until Enter, Ctrl-C or not. One request is read
/// ahead at most.
pub fn until_stopped<T: Send + 'static>(
    requests: impl Iterator<Item = T> + Send + 'static,
    stop: Stop,
) -> impl Iterator<Item = T> {
    let (tx, rx) = mpsc::sync_channel(0);
    std::thread::spawn(move || {
        for request in requests {
            if tx.send(request).is_err() {
                return;
            }
        }
    });
    std::iter::from_fn(move || loop {
        if stop.requested() {
            return None;
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(request) => return Some(request),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn a_source_yields_its_requests_in_order_then_none_for_good() {
        let source = Source::new([b"a".to_vec(), b"b".to_vec()].into_iter());
        assert_eq!(source.next().as_deref(), Some(&b"a"[..]));
        assert_eq!(source.next().as_deref(), Some(&b"b"[..]));
        assert_eq!(source.next(), None);
        assert_eq!(source.next(), None);
    }

    #[test]
    fn a_source_read_from_a_work_thread_blocks_until_its_request_comes() {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let source = Arc::new(Source::new(rx.into_iter()));
        let reader = thread::spawn({
            let source = source.clone();
            move || source.next()
        });
        thread::sleep(Duration::from_millis(20));
        tx.send(b"late".to_vec()).unwrap();
        assert_eq!(reader.join().unwrap().as_deref(), Some(&b"late"[..]));
        drop(tx);
        assert_eq!(source.next(), None, "the sender is gone");
    }

    fn cut(input: &[u8], split: Split, max: u64) -> Vec<io::Result<Vec<u8>>> {
        Records::new(input, split, max).collect()
    }

    fn ok(input: &[u8], split: Split) -> Vec<Vec<u8>> {
        cut(input, split, 1000)
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn lines_are_bytes_sent_unchanged_whatever_their_encoding() {
        let input = b"first\n\xff\xfe\x01bin\nlast\n";
        assert_eq!(
            ok(input, Split::Lines),
            [
                b"first".to_vec(),
                b"\xff\xfe\x01bin".to_vec(),
                b"last".to_vec()
            ]
        );
    }

    #[test]
    fn a_crlf_line_loses_its_cr_an_empty_line_is_a_request_and_a_last_line_needs_no_newline() {
        assert_eq!(
            ok(b"a\r\n\nb", Split::Lines),
            [b"a".to_vec(), b"".to_vec(), b"b".to_vec()]
        );
        assert!(ok(b"", Split::Lines).is_empty());
    }

    #[test]
    fn nul_records_keep_newlines_and_carriage_returns() {
        assert_eq!(
            ok(b"a\nb\r\n\0c\0d", Split::Nul),
            [b"a\nb\r\n".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
        assert!(ok(b"", Split::Nul).is_empty());
    }

    #[test]
    fn the_whole_stream_is_one_request_even_when_empty() {
        assert_eq!(ok(b"a\nb\0c\n", Split::Whole), [b"a\nb\0c\n".to_vec()]);
        assert_eq!(ok(b"", Split::Whole), [Vec::<u8>::new()]);
    }

    #[test]
    fn a_request_at_the_bound_passes_one_past_it_ends_the_stream_with_an_error() {
        assert_eq!(ok(b"abcd\n", Split::Lines), [b"abcd".to_vec()]);
        let got = cut(b"ab\nabcd\r\nabcde\nnever\n", Split::Lines, 4);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), b"ab");
        assert_eq!(got[1].as_ref().unwrap(), b"abcd");
        let err = got[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("longer than 4 bytes"), "{err}");
        for split in [Split::Nul, Split::Whole] {
            let got = cut(b"abcde", split, 4);
            assert!(got.len() == 1 && got[0].is_err(), "{split:?}: {got:?}");
        }
        assert_eq!(ok(b"abcd", Split::Whole), [b"abcd".to_vec()]);
    }

    #[test]
    fn requests_until_stopped_end_when_stop_is_raised_though_the_source_blocks() {
        let (tx, rx) = mpsc::channel::<u32>();
        let stop = Stop::new();
        let mut requests = until_stopped(rx.into_iter(), stop.clone());
        tx.send(1).unwrap();
        assert_eq!(requests.next(), Some(1));
        // Nothing more comes, and the source stays open: only the stop ends the wait.
        let raise = thread::spawn({
            let stop = stop.clone();
            move || {
                thread::sleep(Duration::from_millis(30));
                stop.request();
            }
        });
        assert_eq!(requests.next(), None);
        raise.join().unwrap();
        drop(tx);
    }

    #[test]
    fn read_ahead_hands_over_what_is_ready_and_waits_only_for_the_first() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = produced.clone();
        let mut ready = (1..=5).map(|i| Request::line(i.to_string()));
        let reader = ReadAhead::new(
            move || {
                let next = ready.next();
                counter.fetch_add(next.is_some() as usize, Ordering::SeqCst);
                next
            },
            3,
        );
        // Once the reader holds a 4th request, the queue holds 3: one job takes all 3.
        let waited = std::time::Instant::now();
        while produced.load(Ordering::SeqCst) < 4 {
            assert!(waited.elapsed() < Duration::from_secs(10), "reader stuck");
            thread::sleep(Duration::from_millis(1));
        }
        let first = reader.next_batch();
        assert_eq!(first.len(), 3, "{first:?}");
        let mut all = first;
        loop {
            let batch = reader.next_batch();
            if batch.is_empty() {
                break;
            }
            all.extend(batch);
        }
        let texts: Vec<&str> = all.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["1", "2", "3", "4", "5"], "in order, each once");
        assert!(reader.next_batch().is_empty(), "the end, for good");

        // A slow source (stdin): the first line comes out alone, as soon as it is there.
        let (tx, rx) = mpsc::channel::<String>();
        let reader = ReadAhead::new(move || rx.recv().ok().map(Request::line), 10);
        tx.send("first".into()).unwrap();
        let batch = reader.next_batch();
        assert_eq!(batch, [Request::line("first")]);
        drop(tx);
        assert!(reader.next_batch().is_empty());
    }
}

/// `requests`, each after the first read only once `interval` has passed since the one before
/// (`pirate client --interval`); ends early, at the next wait, when `stop` is raised.
pub fn paced<I: Iterator>(
    requests: I,
    interval: std::time::Duration,
    stop: crate::reactor::Stop,
) -> impl Iterator<Item = I::Item> {
    let mut first = true;
    requests.map_while(move |request| {
        if !std::mem::take(&mut first) && stop.sleep(interval).is_err() {
            return None;
        }
        Some(request)
    })
}

#[cfg(test)]
mod paced_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn each_request_after_the_first_waits_its_interval_and_a_stop_ends_the_run() {
        let stop = crate::reactor::Stop::new();
        let started = Instant::now();
        let got: Vec<u32> = paced(1..=3, Duration::from_millis(30), stop.clone()).collect();
        assert_eq!(got, [1, 2, 3]);
        assert!(
            started.elapsed() >= Duration::from_millis(60),
            "two waits, not three"
        );
        stop.request();
        let got: Vec<u32> = paced(1..=3, Duration::from_secs(60), stop).collect();
        assert_eq!(got, [1], "the first needs no wait; the stop ends the rest");
    }
}
