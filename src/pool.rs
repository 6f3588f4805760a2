//! A cached pool of work threads for the reactor's jobs: a job runs on an idle thread if
//! there is one, on a new thread if not, and a thread idle for [`IDLE_EXIT`] ends.
//!
//! Why not a thread per job: starting a thread costs tens of microseconds of CPU (a stack
//! mapped and unmapped, signal and TLS set-up), which a client reading one request ahead per
//! reply, or a worker running `--work` per request, paid on every request. Why not a fixed
//! number of threads: a job may block for as long as it likes (a client's stdin, an `--exec`
//! command, a streamed reply's next line), so every job must get a thread at once, as before.
//!
//! Each idle thread waits on a channel of its own, listed in `idle`. [`Pool::run`] takes the
//! most recently idle thread off the list and hands it the job; a thread whose wait timed out
//! takes itself off the list before it ends, under the same lock, so a job is never handed
//! to a thread that is gone (and if one were, the send fails and the job goes elsewhere).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long a thread waits for another job before it ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(10);

type Task = Box<dyn FnOnce() + Send + 'static>;

/// An idle thread: its number (to find it again) and where to hand it a job.
struct Idle {
    id: u64,
    jobs: Sender<Task>,
}

#[derive(Default)]
struct Shared {
    idle: Vec<Idle>,
    next_id: u64,
}

/// The pool. Dropping it ends nothing: threads end on their own once idle, and a job still
/// running finishes.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Mutex<Shared>>,
    idle_exit: Duration,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::new()
    }
}

impl Pool {
    /// A pool whose idle threads end after [`IDLE_EXIT`].
    pub fn new() -> Pool {
        Pool::with_idle_exit(IDLE_EXIT)
    }

    /// A pool whose idle threads end after `idle_exit` (tests).
    pub fn with_idle_exit(idle_exit: Duration) -> Pool {
        Pool {
            shared: Arc::default(),
            idle_exit,
        }
    }

    /// Runs `task` on a thread at once: an idle one, or a new one.
    pub fn run(&self, task: impl FnOnce() + Send + 'static) {
        let mut task: Task = Box::new(task);
        loop {
            let idle = self.lock().idle.pop();
            match idle {
                Some(thread) => match thread.jobs.send(task) {
                    Ok(()) => return,
                    // Not reached (a thread leaves the list before it ends); try another.
                    Err(mpsc::SendError(back)) => task = back,
                },
                None => return self.spawn(task),
            }
        }
    }

    /// Threads waiting for a job now.
    pub fn idle_threads(&self) -> usize {
        self.lock().idle.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self, first: Task) {
        let pool = self.clone();
        let idle_exit = self.idle_exit;
        thread::spawn(move || {
            let (jobs, mine) = mpsc::channel::<Task>();
            let mut task = first;
            loop {
                task();
                let id = {
                    let mut shared = pool.lock();
                    let id = shared.next_id;
                    shared.next_id += 1;
                    shared.idle.push(Idle {
                        id,
                        jobs: jobs.clone(),
                    });
                    id
                };
                task = match mine.recv_timeout(idle_exit) {
                    Ok(next) => next,
                    Err(RecvTimeoutError::Timeout) => {
                        let mut shared = pool.lock();
                        match shared.idle.iter().position(|t| t.id == id) {
                            // Still listed: nobody will hand it a job; it ends.
                            Some(at) => {
                                shared.idle.remove(at);
                                return;
                            }
                            // Taken off the list by `run`, whose job is on its way.
                            None => {
                                drop(shared);
                                match mine.recv() {
                                    Ok(next) => next,
                                    Err(_) => return,
                                }
                            }
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                };
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::time::Instant;

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_thread_is_reused_once_idle() {
        let pool = Pool::new();
        let (tx, rx) = mpsc::channel();
        let mut threads = HashSet::new();
        for _ in 0..20 {
            let tx = tx.clone();
            pool.run(move || tx.send(thread::current().id()).unwrap());
            threads.insert(rx.recv().unwrap());
            wait_until("the thread to be idle again", || pool.idle_threads() == 1);
        }
        assert_eq!(threads.len(), 1, "20 jobs one after another, on one thread");
    }

    #[test]
    fn jobs_that_block_each_get_a_thread_at_once() {
        // 8 jobs that all wait for each other: they finish only if all 8 run at once.
        let pool = Pool::new();
        let barrier = Arc::new(Barrier::new(8));
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..8 {
            let (barrier, done) = (barrier.clone(), done.clone());
            pool.run(move || {
                barrier.wait();
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        wait_until("all 8 jobs to finish", || done.load(Ordering::SeqCst) == 8);
        wait_until("8 idle threads", || pool.idle_threads() == 8);
        // Run again: the 8 idle threads serve them, all at once again.
        let barrier = Arc::new(Barrier::new(8));
        for _ in 0..8 {
            let (barrier, done) = (barrier.clone(), done.clone());
            pool.run(move || {
                barrier.wait();
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        wait_until("the second 8 to finish", || {
            done.load(Ordering::SeqCst) == 16
        });
    }

    #[test]
    fn idle_threads_end_after_the_idle_time_and_new_jobs_still_run() {
        let pool = Pool::with_idle_exit(Duration::from_millis(20));
        let (tx, rx) = mpsc::channel();
        for _ in 0..3 {
            let tx = tx.clone();
            pool.run(move || tx.send(()).unwrap());
        }
        for _ in 0..3 {
            rx.recv().unwrap();
        }
        wait_until("the idle threads to end", || pool.idle_threads() == 0);
        pool.run(move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a job after the threads ended still runs");
    }
}
