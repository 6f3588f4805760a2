//! Simple and Paranoid Pirate against the Guide's real programs (`../shared/guide`): pirate as
//! client, queue and worker, each beside the Guide's Python and C++ queues and workers, and
//! the Guide's lpclient (the client of its Simple and Paranoid chapters) in front of pirate.
//!
//! Every combination serves every request of the Guide's test sequence, in order. The
//! Paranoid ones also live through a `kill -9` of one of two workers and a restart of the
//! queue (same ports, a new process). Simple Pirate has no heartbeats: a REQ worker whose
//! READY went to a queue that then restarted waits forever (the Guide's spworker blocks in
//! `recv`), so the Simple ones show the `kill -9` only.
//!
//! The Guide's programs run with `ZG_NOFAULTS=1` and 10 ms of work; their heartbeat is the
//! Guide's fixed 1 s with liveness 3, so pirate's side uses the same timing here.
//!
//! Not here, because the Guide's programs fail it among themselves: lpclient through the C++
//! ppqueue. lpclient's REQ has libzmq's binary identity (`0x00` + 4 bytes), and ppqueue.cpp's
//! `msg.unwrap ()` pops the worker's address and then any frame that starts with a NUL (it
//! tests `*address () == 0`, meaning the empty delimiter), so the client's identity goes
//! too and the reply is routed nowhere. `pirate client` has a printable identity and is
//! served by ppqueue.cpp (above).

mod common;

use common::guide::{self, Lang};
use common::*;
use Lang::{Cpp, Python};
use Pattern::{Paranoid, Simple};
use Side::{Guide, Pirate};

/// Which program plays a part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Pirate,
    Guide(Lang),
}

/// Simple or Paranoid Pirate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    Simple,
    Paranoid,
}

/// The queue of a test, on its two ports, started again on the same ports by `restart`.
struct Queue {
    side: Side,
    pattern: Pattern,
    front: u16,
    back: u16,
    proc: Proc,
}

impl Queue {
    /// `None`: the Guide's program cannot run here (the harness said SKIPPED).
    fn start(side: Side, pattern: Pattern) -> Option<Queue> {
        let (front, back) = (free_port(), free_port());
        let proc = Self::spawn(side, pattern, front, back)?;
        Some(Queue {
            side,
            pattern,
            front,
            back,
            proc,
        })
    }

    fn spawn(side: Side, pattern: Pattern, front: u16, back: u16) -> Option<Proc> {
        let (f, b) = (endpoint(front), endpoint(back));
        match side {
            Side::Pirate => {
                let mut args = vec!["queue", "--json", "--frontend", &f, "--backend", &b];
                if pattern == Pattern::Simple {
                    args.push("--simple");
                }
                let queue = spawn("queue", &args);
                queue.wait_stdout(r#""event":"started""#);
                Some(queue)
            }
            Side::Guide(lang) => {
                let name = match pattern {
                    Pattern::Simple => "spqueue",
                    Pattern::Paranoid => "ppqueue",
                };
                guide::start(lang, name, &[], &[("ZG_FRONTEND", &f), ("ZG_BACKEND", &b)])
            }
        }
    }

    /// `kill -9` of the queue, and a new one on the same ports.
    fn restart(&mut self) {
        self.proc.signal(libc::SIGKILL);
        self.proc.wait();
        self.proc =
            Self::spawn(self.side, self.pattern, self.front, self.back).expect("it started once");
    }
}

/// A worker of `side` behind the queue's backend. `name` names a pirate worker's sockets.
fn worker(side: Side, pattern: Pattern, back: u16, name: &str) -> Option<Proc> {
    let connect = endpoint(back);
    match side {
        Side::Pirate => {
            let protocol = match pattern {
                Pattern::Simple => "simple",
                Pattern::Paranoid => "paranoid",
            };
            let args = [
                "worker",
                "--json",
                "--connect",
                &connect,
                "--name",
                name,
                "--protocol",
                protocol,
            ];
            Some(spawn(&format!("worker {name}"), &args))
        }
        Side::Guide(lang) => {
            let program = match pattern {
                Pattern::Simple => "spworker",
                Pattern::Paranoid => "ppworker",
            };
            guide::start(
                lang,
                program,
                &[],
                &[
                    ("ZG_CONNECT", &connect),
                    ("ZG_NOFAULTS", "1"),
                    ("ZG_WORK", "0.01"),
                    ("ZG_WORK_MS", "10"),
                ],
            )
        }
    }
}

/// `pirate client` reading the Guide's sequence from stdin, so that the test can kill and
/// restart things between requests. A second's timeout and many retries: a request lost
/// with a killed worker or queue is sent again until the survivors answer it.
struct Client {
    proc: Proc,
    sent: u64,
}

impl Client {
    fn start(front: u16, extra: &[&str]) -> Client {
        let connect = endpoint(front);
        let mut args = vec![
            "client",
            "--json",
            "--connect",
            &connect,
            "--timeout",
            "1s",
            "--retries",
            "30",
        ];
        args.extend_from_slice(extra);
        Client {
            proc: spawn_with_stdin("client", &args, true),
            sent: 0,
        }
    }

    /// Sends the next `n` numbers of the sequence and waits until each is answered.
    fn ask(&mut self, n: u64) {
        let lines: String = (self.sent + 1..=self.sent + n)
            .map(|i| format!("{i}\n"))
            .collect();
        self.proc.write_stdin(&lines);
        self.sent += n;
        let want = self.sent as usize;
        self.proc.wait_for(&format!("{want} replies"), |out, _| {
            out.matches(r#""event":"reply""#).count() >= want
        });
    }

    /// No more requests: the client ends, having printed every reply, in order.
    fn finish(mut self, what: &str) {
        self.proc.close_stdin();
        let code = self.proc.code();
        let (out, err) = (self.proc.stdout.text(), self.proc.stderr.text());
        assert_eq!(code, 0, "{what}: {err}");
        assert_eq!(replies(&out), sequence(self.sent), "{what}: {err}");
    }
}

/// `pirate client` → `queue` → two `workers`: five requests; `kill -9` of one worker, five
/// more; for Paranoid a restart of the queue, five more. Every request answered, in order.
fn survives(pattern: Pattern, queue: Side, workers: Side) {
    survives_with(pattern, queue, workers, &[]);
}

/// [`survives`], the client started with `client_args` too.
fn survives_with(pattern: Pattern, queue: Side, workers: Side, client_args: &[&str]) {
    let what = format!("{pattern:?}: queue {queue:?}, workers {workers:?}, {client_args:?}");
    let Some(mut q) = Queue::start(queue, pattern) else {
        return;
    };
    let Some(doomed) = worker(workers, pattern, q.back, "doomed") else {
        return;
    };
    let Some(survivor) = worker(workers, pattern, q.back, "survivor") else {
        return;
    };
    if queue == Side::Pirate {
        // Both registered, so that the kill below hits a worker the queue counts on.
        wait_ready(&q.proc, 2);
    }
    let mut client = Client::start(q.front, client_args);
    client.ask(5);
    doomed.signal(libc::SIGKILL);
    client.ask(5);
    if pattern == Pattern::Paranoid {
        q.restart();
        client.ask(5);
    }
    client.finish(&what);
    if queue == Side::Pirate {
        // The Guide's workers' words and envelopes were all taken: nothing refused.
        let out = q.proc.stdout.text();
        assert!(!out.contains(r#""event":"invalid""#), "{what}: {out}");
    }
    if let (Side::Guide(_), Pattern::Paranoid, Side::Pirate) = (queue, pattern, workers) {
        // The restarted queue heard only its own spelling from the surviving worker: the one
        // its predecessor answered, READY and heartbeats alike (ppqueue.py: `E: Invalid
        // message from worker`; ppqueue.cpp: `E: invalid message from …`).
        let said = q.proc.stdout.text();
        assert!(
            !said.to_lowercase().contains("invalid message"),
            "{what}: {said}"
        );
    }
    if let (Side::Guide(Lang::Cpp), Pattern::Paranoid, Side::Pirate) = (queue, pattern, workers) {
        // 0x01 went unanswered by ppqueue.cpp: the word, said once.
        let said = survivor.stderr.text();
        assert_eq!(
            said.matches("as the Guide's C++ ppqueue needs").count(),
            1,
            "{what}: {said}"
        );
    }
    if let Side::Guide(_) = workers {
        // ppworker.py: `print("E: Invalid message: %s" % frames)`; ppworker.cpp: `E: (…)
        // invalid message`: every heartbeat and request the queue sent them was taken.
        for w in [&doomed, &survivor] {
            let said = w.stdout.text();
            assert!(
                !said.to_lowercase().contains("invalid message"),
                "{what}: {said}"
            );
        }
    }
}

combinations! {
    survives;
    pirate_queue_serves_the_python_ppworker_across_a_kill_and_a_restart: Paranoid, Pirate, Guide(Python);
    pirate_queue_serves_the_cpp_ppworker_across_a_kill_and_a_restart: Paranoid, Pirate, Guide(Cpp);
    pirate_worker_serves_behind_the_python_ppqueue_across_a_kill_and_a_restart: Paranoid, Guide(Python), Pirate;
    pirate_worker_registers_with_the_cpp_ppqueue_and_serves_across_a_kill_and_a_restart: Paranoid, Guide(Cpp), Pirate;
    pirate_simple_queue_serves_the_python_spworker_across_a_kill: Simple, Pirate, Guide(Python);
    pirate_simple_queue_serves_the_cpp_spworker_across_a_kill: Simple, Pirate, Guide(Cpp);
    pirate_simple_worker_serves_behind_the_python_spqueue_across_a_kill: Simple, Guide(Python), Pirate;
    pirate_simple_worker_serves_behind_the_cpp_spqueue_across_a_kill: Simple, Guide(Cpp), Pirate;
}

/// The Guide's ppqueue.py makes a busy worker ready again on any message from it
/// (`workers.ready(Worker(address))` before it looks at the frames: trap 7), so a worker
/// still working when its heartbeat goes out is handed the next request. `pirate worker`
/// holds it and serves it after the current one: both replies, in order.
#[test]
fn pirate_worker_serves_in_turn_the_second_request_ppqueue_py_hands_it_while_busy() {
    let Some(q) = Queue::start(Side::Guide(Lang::Python), Pattern::Paranoid) else {
        return;
    };
    let connect = endpoint(q.back);
    // Work well past a heartbeat interval (1 s), so that one goes out mid-request; a liveness
    // that outlasts two requests, as ppqueue.py heartbeats only workers it thinks idle.
    let args = [
        "worker",
        "--json",
        "--connect",
        &connect,
        "--work",
        "2500ms",
        "--liveness",
        "10",
    ];
    let mut worker = spawn("worker", &args);
    let front = endpoint(q.front);
    let client = [
        "client",
        "--json",
        "--connect",
        &front,
        "--window",
        "2",
        "--timeout",
        "20s",
        "first",
        "second",
    ];
    let (code, out, err) = run(&client, None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), ["first", "second"], "{err}");
    let summary = stop_and_summarise(&mut worker);
    assert_eq!(summary["held_while_busy"], 1, "{summary}");
}

// pirate as the client only. The Guide's queues pass the client's envelope through as it is,
// and its ppworker takes only `[address][""][body]`: the client's request id would make four
// frames, so it sends each request on a REQ socket of its own instead (`--correlate socket`).
// The Guide's Simple workers are REQ sockets, which take any envelope: no flag. Each
// language's queue and worker only (the Guide's Python and C++ Paranoid programs do not
// understand each other: 0x01 against the word READY).

#[test]
fn pirate_client_is_served_by_the_python_ppqueue_and_ppworker_across_a_kill_and_a_restart() {
    let (py, socket) = (Side::Guide(Lang::Python), &["--correlate", "socket"]);
    survives_with(Pattern::Paranoid, py, py, socket);
}

#[test]
fn pirate_client_is_served_by_the_cpp_ppqueue_and_ppworker_across_a_kill_and_a_restart() {
    let (cpp, socket) = (Side::Guide(Lang::Cpp), &["--correlate", "socket"]);
    survives_with(Pattern::Paranoid, cpp, cpp, socket);
}

#[test]
fn pirate_client_is_served_by_the_python_spqueue_and_spworker_across_a_kill() {
    let py = Side::Guide(Lang::Python);
    survives(Pattern::Simple, py, py);
}

#[test]
fn pirate_client_is_served_by_the_cpp_spqueue_and_spworker_across_a_kill() {
    let cpp = Side::Guide(Lang::Cpp);
    survives(Pattern::Simple, cpp, cpp);
}

/// The Guide's lpclient (`client` language) in front of `queue` with one worker: it prints
/// "server replied OK" per request (`lpclient.py`: `logging.info("Server replied OK (%s)",
/// reply)`; `lpclient.cpp`: `I: server replied OK`), checks each reply is its sequence
/// number, and stops after `ZG_COUNT`.
fn lpclient_through(client: Lang, pattern: Pattern, queue: Side, workers: Side) {
    const COUNT: usize = 5;
    let what = format!("lpclient {client:?}, {pattern:?}: queue {queue:?}, worker {workers:?}");
    let Some(q) = Queue::start(queue, pattern) else {
        return;
    };
    let Some(_worker) = worker(workers, pattern, q.back, "w") else {
        return;
    };
    if queue == Side::Pirate {
        q.proc.wait_stdout(r#""event":"worker_ready""#);
    }
    let (connect, count) = (endpoint(q.front), COUNT.to_string());
    let env = [
        ("ZG_CONNECT", connect.as_str()),
        ("ZG_COUNT", count.as_str()),
        ("ZG_SLEEP_MS", "0"),
    ];
    let Some(mut lpclient) = guide::start(client, "lpclient", &[], &env) else {
        return;
    };
    let status = lpclient.wait();
    let said = format!("{}{}", lpclient.stdout.text(), lpclient.stderr.text());
    let ok = said.to_lowercase().matches("server replied ok").count();
    assert!(status.success(), "{what}: {said}");
    assert_eq!(ok, COUNT, "{what}: {said}");
}

combinations! {
    lpclient_through;
    the_python_lpclient_is_served_by_pirate_queue_and_the_cpp_ppworker: Python, Paranoid, Pirate, Guide(Cpp);
    the_cpp_lpclient_is_served_by_pirate_queue_and_the_python_ppworker: Cpp, Paranoid, Pirate, Guide(Python);
    the_cpp_lpclient_is_served_by_pirate_worker_behind_the_python_ppqueue: Cpp, Paranoid, Guide(Python), Pirate;
    the_python_lpclient_is_served_by_pirate_simple_queue_and_the_cpp_spworker: Python, Simple, Pirate, Guide(Cpp);
    the_cpp_lpclient_is_served_by_pirate_simple_worker_behind_the_python_spqueue: Cpp, Simple, Guide(Python), Pirate;
}

/// `--dialect guide-cpp`: the first socket's READY is the word, so ppqueue.cpp registers the
/// worker at once. A 60 s back-off rules out a second socket within the test's deadline, and
/// ppqueue.cpp never logs `E: invalid message from …`.
#[test]
fn a_worker_pinned_to_the_cpp_dialect_registers_with_ppqueue_cpp_on_its_first_socket() {
    let Some(q) = Queue::start(Side::Guide(Lang::Cpp), Pattern::Paranoid) else {
        return;
    };
    let connect = endpoint(q.back);
    let args = [
        "worker",
        "--connect",
        &connect,
        "--dialect",
        "guide-cpp",
        "--reconnect",
        "60s",
        "--reconnect-max",
        "60s",
    ];
    let worker = spawn("worker", &args);
    let mut client = Client::start(q.front, &[]);
    client.ask(3);
    client.finish("guide-cpp");
    let said = q.proc.stdout.text();
    assert!(!said.contains("invalid message"), "{said}");
    assert!(!worker.stderr.text().contains("C++ ppqueue needs"));
}

/// `--dialect rfc`: 0x01 on every socket, however long ppqueue.cpp ignores it (`E: invalid
/// message from …` each time), and no switch.
#[test]
fn a_worker_pinned_to_the_rfc_dialect_keeps_0x01_on_every_socket() {
    let Some(q) = Queue::start(Side::Guide(Lang::Cpp), Pattern::Paranoid) else {
        return;
    };
    let connect = endpoint(q.back);
    let args = [
        "worker",
        "--connect",
        &connect,
        "--name",
        "pinned",
        "--dialect",
        "rfc",
        "--heartbeat",
        "200ms",
        "--reconnect",
        "100ms",
        "--reconnect-max",
        "100ms",
    ];
    let worker = spawn("worker", &args);
    // The third socket: two went unanswered.
    worker.wait_stderr("worker pinned-3-");
    let said = worker.stderr.text();
    assert!(!said.contains("C++ ppqueue needs"), "{said}");
    // ppqueue.cpp: `std::cout << "E: invalid message from " << identity`, per READY 0x01
    // and heartbeat 0x02 of each socket.
    let queue_said = q.proc.stdout.text();
    for n in 1..=2 {
        let socket = format!("invalid message from pinned-{n}-");
        assert!(queue_said.contains(&socket), "{socket}: {queue_said}");
    }
}

/// A client two proxy hops away from `pirate queue` reaches `[identity][hop][hop][request
/// id]["" ][body]` there; the Guide's ppworker behind it still gets its three frames.
#[test]
fn the_python_ppworker_serves_a_client_two_proxy_hops_from_pirate_queue() {
    let Some(q) = Queue::start(Side::Pirate, Pattern::Paranoid) else {
        return;
    };
    let Some(_worker) = worker(Side::Guide(Lang::Python), Pattern::Paranoid, q.back, "w") else {
        return;
    };
    q.proc.wait_stdout(r#""event":"worker_ready""#);
    let outer = router_dealer_proxy(router_dealer_proxy(q.front));
    let connect = endpoint(outer);
    let args = ["client", "--json", "--connect", &connect, "--count", "5"];
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(5), "{err}");
}
