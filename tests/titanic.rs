//! Titanic (9/TSP) end to end: `pirate broker`, an echo worker and `pirate titanic` as real
//! processes on loopback, Titanic killed with SIGKILL (and crashing itself mid-write) while
//! clients talk TSP to it through the library's `MdpClient`, and `pirate client --titanic`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use pirate::majordomo::MdpClient;
use pirate::proto::mdp::Version;
use pirate::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A fresh store directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "pirate-titanic-it-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn broker() -> (Proc, u16) {
    let mut args = vec!["--json"];
    args.extend_from_slice(&FAST_HB);
    start_broker(&args)
}

fn echo_worker(port: u16, service: &str) -> Proc {
    let mut extra = vec!["--reconnect", "50ms", "--reconnect-max", "200ms"];
    extra.extend_from_slice(&FAST_HB);
    service_worker(service, &endpoint(port), &extra)
}

/// `pirate titanic` on `dir`, with fast timing and the given extra flags, waited for until
/// its three services are registered.
fn titanic(port: u16, dir: &str, extra: &[&str]) -> Proc {
    let connect = endpoint(port);
    let mut args = vec![
        "titanic",
        "--connect",
        &connect,
        "--dir",
        dir,
        "--reconnect",
        "50ms",
        "--retry-interval",
        "50ms",
    ];
    if !extra.contains(&"--request-timeout") {
        args.extend_from_slice(&["--request-timeout", "500ms"]);
    }
    args.extend_from_slice(&FAST_HB);
    args.extend_from_slice(extra);
    let t = spawn("titanic", &args);
    t.wait_for("titanic's workers to be ready", |_, e| {
        e.contains("exited") || e.matches("ready for service titanic.").count() >= 3
    });
    t
}

fn msg(frames: &[&str]) -> Message {
    Message::from_frames(frames.iter().map(|f| f.as_bytes().to_vec()))
}

fn text_frames(m: &Message) -> Vec<String> {
    m.iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// A bare MDP client with a short timeout and one attempt per call: the tests retry
/// themselves, so they can see every failure.
fn mdp_client(port: u16) -> MdpClient {
    let mut c = MdpClient::connect(&endpoint(port), Version::V1).unwrap();
    c.set_timeout(Duration::from_millis(300));
    c.set_retries(1);
    c
}

/// Calls `service` until it answers (Titanic may be dead for a while), for at most 60 s.
fn call(client: &mut MdpClient, service: &str, body: &Message) -> Vec<String> {
    let start = Instant::now();
    loop {
        if let Ok(reply) = client.request(service, body.clone()) {
            return text_frames(&reply);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{service} never answered"
        );
    }
}

/// Polls `titanic.reply` until it is not 300; returns the whole reply.
fn fetch(client: &mut MdpClient, uuid: &str) -> Vec<String> {
    let start = Instant::now();
    loop {
        let reply = call(client, "titanic.reply", &msg(&[uuid]));
        if reply != ["300"] {
            return reply;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{uuid} still pending after 60 s"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 32 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

fn log_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("titanic.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// The seed of a randomised test: `PIRATE_TEST_SEED` or a fresh one, printed either way.
fn test_seed() -> u64 {
    let seed = std::env::var("PIRATE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u32>) as u64;
    eprintln!("seed {seed} (replay with PIRATE_TEST_SEED={seed})");
    seed
}

/// Every request that got `200` + UUID is eventually answered exactly as the service
/// answered it, while Titanic is SIGKILLed at seeded random moments and also crashes itself
/// in the middle of storing requests (torn writes), restarted each time on the same store.
#[test]
fn acknowledged_requests_survive_kill_9_at_random_moments() {
    let seed = test_seed();
    let (_broker, port) = broker();
    let _echo = echo_worker(port, "echo");
    let dir = TempDir::new("kill9");
    let seed_arg = seed.to_string();
    let flags = [
        "--crash-rate",
        "0.1",
        "--faults-after",
        "0",
        "--seed",
        seed_arg.as_str(),
    ];
    let first = titanic(port, dir.path(), &flags);
    first.wait_stderr("ready for service titanic.request");

    // The killer: SIGKILL at random moments, restart at once (also after a self-crash).
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let crashes = Arc::new(AtomicU64::new(0));
    let torn = Arc::new(AtomicU64::new(0));
    let killer = {
        let (stop, kills, crashes) = (stop.clone(), kills.clone(), crashes.clone());
        let torn = torn.clone();
        let path = dir.path().to_string();
        let seed_arg = seed_arg.clone();
        thread::spawn(move || {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut current = first;
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let next_kill = Instant::now() + Duration::from_millis(rng.gen_range(50..600));
                while Instant::now() < next_kill && !current.has_exited() {
                    if stop.load(Ordering::SeqCst) {
                        return current;
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                if current.has_exited() {
                    crashes.fetch_add(1, Ordering::SeqCst);
                } else {
                    current.signal(libc::SIGKILL);
                    current.wait();
                    kills.fetch_add(1, Ordering::SeqCst);
                }
                // A different seed per life, so self-crashes do not repeat one pattern.
                n += 1;
                let life_seed = format!("{seed_arg}{n}");
                let flags = [
                    "--crash-rate",
                    "0.1",
                    "--faults-after",
                    "0",
                    "--seed",
                    life_seed.as_str(),
                ];
                current = titanic(port, &path, &flags);
                let err = current.stderr.text();
                if err.contains("cut off an incomplete record") {
                    torn.fetch_add(1, Ordering::SeqCst);
                }
                // A crash leaves at most a torn tail: never anything taken for damage.
                assert!(!err.contains("log was damaged"), "{err}");
            }
            current
        })
    };

    let mut client = mdp_client(port);
    let mut acknowledged = Vec::new();
    for i in 0..100 {
        let body = vec![
            format!("request {i}"),
            format!("frame two of {i}"),
            String::new(),
        ];
        let mut frames = vec!["echo".to_string()];
        frames.extend(body.iter().cloned());
        let request = Message::from_frames(frames.iter().map(|f| f.as_bytes().to_vec()));
        // Retry until acknowledged: an attempt that got no answer may still have been stored
        // (an orphan the client never learns of), which TSP allows.
        let reply = call(&mut client, "titanic.request", &request);
        assert_eq!(reply.len(), 2, "{reply:?}");
        assert_eq!(reply[0], "200");
        assert!(is_uuid(&reply[1]), "{reply:?}");
        acknowledged.push((reply[1].clone(), body));
    }
    // Fetch every reply while the killer keeps going.
    for (uuid, body) in &acknowledged {
        let mut expected = vec!["200".to_string()];
        expected.extend(body.iter().cloned());
        assert_eq!(&fetch(&mut client, uuid), &expected, "reply to {uuid}");
    }
    stop.store(true, Ordering::SeqCst);
    let last = killer.join().unwrap();
    eprintln!(
        "titanic killed {} times, crashed itself {} times, recovered from {} torn writes",
        kills.load(Ordering::SeqCst),
        crashes.load(Ordering::SeqCst),
        torn.load(Ordering::SeqCst)
    );
    assert!(kills.load(Ordering::SeqCst) + crashes.load(Ordering::SeqCst) >= 3);
    // Idempotent: asked again (a client that crashed after the first fetch), the same reply;
    // then closed, it is unknown.
    for (uuid, body) in &acknowledged {
        let mut expected = vec!["200".to_string()];
        expected.extend(body.iter().cloned());
        assert_eq!(&fetch(&mut client, uuid), &expected);
        assert_eq!(call(&mut client, "titanic.close", &msg(&[uuid])), ["200"]);
        assert_eq!(fetch(&mut client, uuid), ["400"]);
    }
    drop(last);
}

/// A reply stays available after the client that asked crashed, and after Titanic was
/// killed and restarted: `titanic.reply` twice gives it twice; close of an unknown UUID is
/// 200; reply of an unknown UUID is 400.
#[test]
fn replies_outlive_client_and_titanic_crashes() {
    let (_broker, port) = broker();
    let dir = TempDir::new("idempotent");
    let mut t = titanic(port, dir.path(), &[]);
    let uuid = {
        // A client that submits and "crashes" (goes away without polling).
        let mut client = mdp_client(port);
        let reply = call(&mut client, "titanic.request", &msg(&["late", "a", "b"]));
        assert_eq!(reply[0], "200");
        reply[1].clone()
    };
    let mut client = mdp_client(port);
    assert_eq!(call(&mut client, "titanic.reply", &msg(&[&uuid])), ["300"]);
    // The service appears only now: the stored request is dispatched to it.
    let _late = echo_worker(port, "late");
    assert_eq!(fetch(&mut client, &uuid), ["200", "a", "b"]);
    // Titanic dies and comes back: the reply is still there, as often as asked.
    t.signal(libc::SIGKILL);
    t.wait();
    let _t = titanic(port, dir.path(), &[]);
    for _ in 0..2 {
        assert_eq!(fetch(&mut client, &uuid), ["200", "a", "b"]);
    }
    let unknown = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        call(&mut client, "titanic.close", &msg(&[unknown])),
        ["200"]
    );
    assert_eq!(
        call(&mut client, "titanic.reply", &msg(&[unknown])),
        ["400"]
    );
    assert_eq!(call(&mut client, "titanic.close", &msg(&[&uuid])), ["200"]);
    assert_eq!(call(&mut client, "titanic.close", &msg(&[&uuid])), ["200"]);
    assert_eq!(call(&mut client, "titanic.reply", &msg(&[&uuid])), ["400"]);
    // Malformed: no request frames.
    assert_eq!(
        call(&mut client, "titanic.request", &msg(&["echo"])),
        ["400"]
    );
    // The same through the CLI's bare MDP client.
    let connect = endpoint(port);
    let (code, out, err) = run(
        &[
            "client",
            "--connect",
            &connect,
            "--service",
            "titanic.close",
            unknown,
        ],
        None,
    );
    assert_eq!((code, out.trim()), (0, "200"), "{err}");
    let (code, out, err) = run(
        &[
            "client",
            "--connect",
            &connect,
            "--service",
            "titanic.reply",
            unknown,
        ],
        None,
    );
    assert_eq!((code, out.trim()), (0, "400"), "{err}");
}

/// `pirate client --titanic`: request, poll, close, one reply per request, in order.
#[test]
fn the_cli_client_goes_through_titanic() {
    let (_broker, port) = broker();
    let _echo = echo_worker(port, "echo");
    let dir = TempDir::new("cli");
    let _t = titanic(port, dir.path(), &[]);
    let connect = endpoint(port);
    let (code, out, err) = run(
        &[
            "client",
            "--titanic",
            "--connect",
            &connect,
            "--service",
            "echo",
            "--count",
            "10",
            "--json",
            "--poll-interval",
            "20ms",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(10));
    assert_eq!(summary(&out)["replied"], 10);
    // Each request's UUID is said once stored: a client that dies can fetch its reply by it.
    let stored = err
        .lines()
        .filter(|l| l.starts_with("I: titanic stored the request as "))
        .count();
    assert_eq!(stored, 10, "{err}");
    // Closed after use: nothing left in the store but dead records.
    let (code, out, _) = run(
        &[
            "client",
            "--titanic",
            "--connect",
            &connect,
            "--service",
            "echo",
            "--poll-interval",
            "20ms",
            "hello",
            "world",
        ],
        None,
    );
    assert_eq!(code, 0);
    assert_eq!(out, "hello\nworld\n");
}

/// Request/close cycles do not make the store grow without bound: about 5 MB go through
/// it (requests and replies of 16 KiB), and the log stays near the 1 MiB compaction floor.
#[test]
fn the_store_does_not_grow_across_request_close_cycles() {
    let (_broker, port) = broker();
    let _echo = echo_worker(port, "echo");
    let dir = TempDir::new("grow");
    let _t = titanic(port, dir.path(), &[]);
    let connect = endpoint(port);
    let lines: String = (0..150)
        .map(|i| format!("{i:05}{}\n", "x".repeat(16 * 1024)))
        .collect();
    let (code, out, err) = run(
        &[
            "client",
            "--titanic",
            "--connect",
            &connect,
            "--service",
            "echo",
            "--expect-echo",
            "--json",
            "--poll-interval",
            "10ms",
        ],
        Some(&lines),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&out)["replied"], 150);
    let size = log_size(&dir.0);
    assert!(size > 0);
    assert!(
        size < 3 * 1024 * 1024 / 2,
        "log is {size} bytes after ~5 MB of closed requests"
    );
}

/// A worker for `service` that takes every request and never answers, heartbeating all the
/// while: a hung service, as far as anyone can tell.
fn hung_worker(port: u16, service: &str) -> Proc {
    let mut extra = vec!["--exec", "sleep 1000"];
    extra.extend_from_slice(&FAST_HB);
    service_worker(service, &endpoint(port), &extra)
}

/// The broker's `mmi.status` object.
fn status(client: &mut MdpClient) -> serde_json::Value {
    let reply = call(client, "mmi.status", &msg(&[""]));
    serde_json::from_str(&reply[0]).unwrap()
}

/// Requests for three hung services are in flight; a request for echo submitted after them
/// is answered while all three are still waiting out their timeout (the Guide's one at a
/// time dispatcher made it wait for each of them in turn). Nothing here depends on speed:
/// the hung requests' timeout is the clock, and the test looks at the order of events.
#[test]
fn hung_services_do_not_hold_up_requests_to_other_services() {
    let (_broker, port) = broker();
    let _echo = echo_worker(port, "echo");
    let hung: Vec<Proc> = (1..=3)
        .map(|i| hung_worker(port, &format!("hung{i}")))
        .collect();
    let dir = TempDir::new("hung");
    let t = titanic(port, dir.path(), &["--request-timeout", "10s"]);
    let mut client = mdp_client(port);
    for i in 1..=3 {
        let reply = call(
            &mut client,
            "titanic.request",
            &msg(&[&format!("hung{i}"), "x"]),
        );
        assert_eq!(reply[0], "200", "{reply:?}");
    }
    // Wait until each hung worker holds its request (busy: registered, not idle).
    let start = Instant::now();
    loop {
        let s = status(&mut client);
        let held = (1..=3)
            .filter(|i| {
                let svc = &s["services"][format!("hung{i}")];
                svc["workers"] == 1 && svc["idle"] == 0
            })
            .count();
        if held == 3 {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the hung services never got their requests: {s}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let submitted = Instant::now();
    let reply = call(&mut client, "titanic.request", &msg(&["echo", "through"]));
    assert_eq!(reply[0], "200", "{reply:?}");
    // The reference is the hung requests' 10 s timeout, which each of them waits out: the
    // echo must be answered before the first of them gives up.
    let answer = loop {
        let answer = call(&mut client, "titanic.reply", &msg(&[&reply[1]]));
        if answer != ["300"] {
            break answer;
        }
        assert!(
            submitted.elapsed() < Duration::from_secs(10),
            "echo was still pending when the hung requests timed out"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(answer, ["200", "through"]);
    // And not one of the hung requests had timed out when it was.
    let log = t.stderr.text();
    assert!(
        !log.contains("no reply in"),
        "echo waited behind a hung service:\n{log}"
    );
    drop(hung);
}

/// A request over --max-request-bytes and any request while the store is over
/// --max-store-bytes are refused with a 500 and the reason; closing requests makes room.
#[test]
fn titanic_refuses_requests_over_its_byte_limits() {
    let (_broker, port) = broker();
    let dir = TempDir::new("limits");
    let _t = titanic(
        port,
        dir.path(),
        &["--max-request-bytes", "1000", "--max-store-bytes", "3000"],
    );
    let mut client = mdp_client(port);
    let big = "b".repeat(1000);
    let reply = call(&mut client, "titanic.request", &msg(&["nobody", &big]));
    assert!(reply[0].starts_with("500 request too big"), "{reply:?}");
    assert_eq!(reply.len(), 1);
    // Nobody serves "nobody", so requests stay stored until closed: fill the store.
    let fits = "f".repeat(900);
    let mut stored = Vec::new();
    let refusal = loop {
        let reply = call(&mut client, "titanic.request", &msg(&["nobody", &fits]));
        if reply[0] != "200" {
            break reply;
        }
        stored.push(reply[1].clone());
        assert!(stored.len() < 10, "the store never filled up");
    };
    assert!(refusal[0].starts_with("500 store full"), "{refusal:?}");
    assert!(
        stored.len() >= 3,
        "{} stored before it was full",
        stored.len()
    );
    assert_eq!(
        call(&mut client, "titanic.close", &msg(&[&stored[0]])),
        ["200"]
    );
    let reply = call(&mut client, "titanic.request", &msg(&["nobody", &fits]));
    assert_eq!(reply[0], "200", "room again after a close: {reply:?}");
}

#[test]
fn a_titanic_client_for_a_service_nobody_serves_says_so_and_gets_its_reply_once_one_does() {
    let (_broker, port) = broker();
    let dir = TempDir::new("noservice");
    let _t = titanic(port, dir.path(), &[]);
    let connect = endpoint(port);
    let args = [
        "client",
        "--titanic",
        "--connect",
        &connect,
        "--service",
        "late",
        "--poll-interval",
        "20ms",
        "hello",
    ];
    let mut client = spawn("client", &args);
    client.wait_stderr(r#"no worker serves "late" now (mmi.service: 404)"#);
    // The request waits in Titanic's store; a worker for it comes, and the reply with it.
    let _late = echo_worker(port, "late");
    client.wait_stdout("hello");
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
}

/// The records of a store's log: (byte range, kind, UUID as hex), walking the layout
/// documented in `src/roles/titanic/store/record.rs`: a 16-byte magic, then `len:u32le crc:u32le payload[len]`,
/// the payload starting with a kind byte and a 16-byte UUID.
fn log_records(bytes: &[u8]) -> Vec<(std::ops::Range<usize>, u8, String)> {
    let mut at = 16;
    let mut out = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let payload = &bytes[at + 8..at + 8 + len];
        let uuid: String = payload[1..17].iter().map(|b| format!("{b:02x}")).collect();
        out.push((at..at + 8 + len, payload[0], uuid));
        at += 8 + len;
    }
    assert_eq!(at, bytes.len(), "the log parses to its end");
    out
}

/// One byte flipped on disk in each of three records of a real store (an answered request,
/// the reply of another, a pending request), then a restart: `--check` names what was lost
/// before the start, and after it every other acknowledged request completes; the reply
/// whose record was damaged is asked for again; the two lost requests answer 400 and
/// nothing else does.
#[test]
fn damaged_bytes_on_disk_lose_only_their_records_and_every_other_request_completes() {
    let (_broker, port) = broker();
    let dir = TempDir::new("damage");
    let mut client = mdp_client(port);
    let mut requests = Vec::new(); // (uuid, body)
    {
        let _echo = echo_worker(port, "echo");
        let mut t = titanic(port, dir.path(), &[]);
        for i in 0..12 {
            let body = format!("answered-{i}");
            let reply = call(&mut client, "titanic.request", &msg(&["echo", &body]));
            assert_eq!(reply[0], "200", "{reply:?}");
            requests.push((reply[1].clone(), body));
        }
        // Every reply is on disk before Titanic dies.
        for (uuid, body) in &requests {
            assert_eq!(fetch(&mut client, uuid), ["200", body.as_str()]);
        }
        for i in 0..6 {
            let body = format!("pending-{i}");
            let reply = call(&mut client, "titanic.request", &msg(&["later", &body]));
            assert_eq!(reply[0], "200", "{reply:?}");
            requests.push((reply[1].clone(), body));
        }
        t.signal(libc::SIGKILL);
        t.wait();
    }
    let log = dir.0.join("titanic.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let records = log_records(&bytes);
    let find = |kind: u8, uuid: &str| {
        records
            .iter()
            .find(|(_, k, u)| *k == kind && u == uuid)
            .map(|(r, _, _)| r.clone())
            .unwrap_or_else(|| panic!("no record of kind {kind} for {uuid}"))
    };
    let lost_answered = &requests[3].0;
    let damaged_reply = &requests[7].0;
    let lost_pending = &requests[14].0;
    let targets = [
        find(1, lost_answered),
        find(2, damaged_reply),
        find(1, lost_pending),
    ];
    for range in &targets {
        // A byte of the body, past the header and the UUID, so they still read.
        bytes[range.end - 2] ^= 0x20;
    }
    std::fs::write(&log, &bytes).unwrap();

    // Offline: exit 1, and it says where and which.
    let (code, out, err) = run(&["titanic", "--check", dir.path()], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("set aside: 3 damaged stretches, 3 records lost"),
        "{out}"
    );
    for (range, uuid) in targets
        .iter()
        .zip([lost_answered, damaged_reply, lost_pending])
    {
        assert!(
            out.contains(&format!("at offset {} hold no valid record", range.start)),
            "{out}"
        );
        assert!(out.contains(uuid.as_str()), "{out}");
    }
    assert!(
        out.contains(&format!("lost request {lost_answered}")),
        "{out}"
    );
    assert!(out.ends_with("verdict: damaged\n"), "{out}");
    let (code, out, _) = run(&["titanic", "--check", dir.path(), "--json"], None);
    assert_eq!(code, 1);
    let check: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(check["clean"], false);
    assert_eq!(check["recovery"]["damage"].as_array().unwrap().len(), 3);
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "--check changes nothing"
    );

    // The restart keeps every valid record and says what it set aside.
    let _echo = echo_worker(port, "echo");
    let _later = echo_worker(port, "later");
    let mut t = titanic(port, dir.path(), &[]);
    t.wait_stderr("the store's log was damaged: 3 damaged stretch(es), 3 record(s) lost");
    assert!(t.stderr.text().contains("titanic.log.damaged-1"));
    for (uuid, body) in &requests {
        let reply = fetch(&mut client, uuid);
        if uuid == lost_answered || uuid == lost_pending {
            assert_eq!(reply, ["400"], "{uuid} was lost");
        } else {
            assert_eq!(reply, ["200", body.as_str()], "{uuid}");
        }
    }
    let (code, _, err) = run(&["titanic", "--check", dir.path()], None);
    assert_eq!(code, 2, "a running titanic's store is not checked: {err}");
    assert!(err.contains("in use"), "{err}");
    t.signal(libc::SIGKILL);
    t.wait();
    let (code, out, _) = run(&["titanic", "--check", dir.path()], None);
    assert_eq!(code, 0, "the rewritten log is clean: {out}");
    assert!(
        out.contains("titanic.log.damaged-1 is a damaged log set aside"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(dir.0.join("titanic.log.damaged-1")).unwrap(),
        bytes,
        "the damaged log is kept as it was"
    );
}

/// A small tmpfs mounted on a fresh directory, unmounted on drop; `None` (and a visible
/// SKIP) where mounting is not permitted, unless PIRATE_REQUIRE_ROOT is set.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Option<Tmpfs> {
        let dir = TempDir::new(name);
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.clone();
        std::mem::forget(dir); // removed by our own drop, after the unmount
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            let _ = std::fs::remove_dir(&path);
            assert!(
                std::env::var_os("PIRATE_REQUIRE_ROOT").is_none(),
                "cannot mount a tmpfs (PIRATE_REQUIRE_ROOT is set)"
            );
            eprintln!("SKIP: cannot mount a tmpfs here (needs root); set PIRATE_REQUIRE_ROOT to fail instead");
            return None;
        }
        Some(Tmpfs(path))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Titanic on a 2 MiB file system that fills up: new requests get "500 disk full" with the
/// reason, replies that cannot be written are kept (300 meanwhile), the log says "full"
/// once and "room again" once, and every acknowledged request completes once space
/// returns, also across a restart.
#[test]
fn a_full_disk_keeps_every_acknowledged_request() {
    let Some(fs) = Tmpfs::mount("full", "2m") else {
        return;
    };
    let (_broker, port) = broker();
    let store = fs.0.join("store");
    let store = store.to_str().unwrap();
    let mut client = mdp_client(port);
    let mut t = titanic(port, store, &["--min-free", "256KiB"]);
    let mut requests = Vec::new();
    for i in 0..10 {
        let body = format!("{i}:{}", "x".repeat(10_000));
        let reply = call(&mut client, "titanic.request", &msg(&["echo", &body]));
        assert_eq!(reply[0], "200", "{reply:?}");
        requests.push((reply[1].clone(), body));
    }
    // Fill the file system to the last byte.
    let filler = fs.0.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&chunk[..1]).is_ok() {}
    }
    let refused = call(&mut client, "titanic.request", &msg(&["echo", "one more"]));
    assert!(refused[0].starts_with("500 disk full: "), "{refused:?}");
    assert!(refused[0].contains("--min-free"), "{refused:?}");
    t.wait_stderr("free for the store (reserve 262144 bytes");

    // The service answers, but its reply cannot be written: kept, and still 300.
    let _echo = echo_worker(port, "echo");
    t.wait_stderr("cannot store the reply for");
    for (uuid, _) in &requests {
        assert_eq!(call(&mut client, "titanic.reply", &msg(&[uuid])), ["300"]);
    }

    // Room again: every acknowledged request completes.
    std::fs::remove_file(&filler).unwrap();
    for (uuid, body) in &requests {
        assert_eq!(fetch(&mut client, uuid), ["200", body.as_str()], "{uuid}");
    }
    t.wait_stderr("the disk has room again");
    let err = t.stderr.text();
    assert_eq!(
        err.matches("free for the store (reserve").count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("has room again").count(), 1, "{err}");
    assert_eq!(
        err.matches("cannot store the reply for").count(),
        1,
        "{err}"
    );
    let reply = call(&mut client, "titanic.request", &msg(&["echo", "after"]));
    assert_eq!(reply[0], "200", "{reply:?}");
    requests.push((reply[1].clone(), "after".into()));

    // And across a restart.
    t.signal(libc::SIGKILL);
    t.wait();
    let mut t = titanic(port, store, &["--min-free", "256KiB"]);
    for (uuid, body) in &requests {
        assert_eq!(fetch(&mut client, uuid), ["200", body.as_str()], "{uuid}");
    }
    t.signal(libc::SIGKILL);
    t.wait();
}

/// `--check` takes a directory and nothing to run, `--min-free` a size: anything else is a
/// usage error (exit 2, one line); a directory without a store is exit 2 too.
#[test]
fn check_and_min_free_refuse_bad_input() {
    let dir = TempDir::new("check-usage");
    for args in [
        vec!["titanic", "--check", dir.path(), "--dir", "/tmp"],
        vec!["titanic", "--min-free", "lots"],
        vec!["titanic", "--check"],
    ] {
        let (code, out, err) = run(&args, None);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    let (code, _, err) = run(&["titanic", "--check", dir.path()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error: cannot check the store: "), "{err}");
    assert!(!dir.0.exists(), "--check creates nothing");
}
