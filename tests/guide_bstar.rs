//! Binary Star against the Guide's real programs (`../shared/guide`): the Guide's bstarcli
//! against a pair of `pirate server --primary/--backup`, `pirate client` with two `--connect`
//! against the Guide's bstarsrv pair, and a mixed pair (pirate's primary, the Guide's backup),
//! each in Python and C++ and each across a kill -9 of the active node.
//!
//! The Guide's nodes publish their state every 1000 ms and a peer is dead 2000 ms after its
//! last one (`HEARTBEAT = 1000`, `peer_expiry = now + 2 * HEARTBEAT` in `bstarsrv.py`); its
//! client times out after 1000 ms and waits 2000 ms before failing over (`REQUEST_TIMEOUT`,
//! `SETTLE_DELAY` in `bstarcli.py`). Pirate's side uses the same values where it meets them.

mod common;

use common::guide::{self, Lang};
use common::*;

/// Requests in each run; the active node is killed after `KILL_AFTER` replies, which leaves
/// 3.5 s of paced requests for the test to notice and kill on a loaded machine.
const COUNT: u64 = 40;
const KILL_AFTER: u64 = 5;

/// The numbers of the Guide's bstarcli "I: server replied OK (N)" lines, in order.
fn replied_ok(client: &Proc) -> Vec<u64> {
    client
        .stdout
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("I: server replied OK ("))
        .filter_map(|n| n.trim_end_matches(')').parse().ok())
        .collect()
}

/// The Guide's bstarcli against a pirate pair (state heartbeat 100 ms): it sends its
/// sequence (Python from 0, C++ from 1) and checks each reply (`int(reply) == sequence`); the
/// primary is killed after `KILL_AFTER` replies, the client fails over ("W: no response from
/// server, failing over"), the backup takes over on its vote, and every number is answered
/// once, in order. The Guide's client never exits after `ZG_COUNT` (its last socket is never
/// closed, so the context's termination waits forever): the test waits for the last line.
fn bstarcli_against_pirate_pair(lang: Lang) {
    let ports = BstarPorts::new();
    let primary = start_bstar_node(&ports, true, "100ms", &[]);
    let backup = start_bstar_node(&ports, false, "100ms", &[]);
    primary.wait_for("the primary to go active", |_, _| {
        bstar_states(&primary).contains(&"ACTIVE".to_string())
    });
    backup.wait_for("the backup to go passive", |_, _| {
        bstar_states(&backup).contains(&"PASSIVE".to_string())
    });
    let count = COUNT.to_string();
    let Some(client) = guide::start(
        lang,
        "bstarcli",
        &[],
        &[
            ("ZG_SERVER1", &ports.primary),
            ("ZG_SERVER2", &ports.backup),
            ("ZG_COUNT", &count),
            ("ZG_SLEEP", "0.1"),
            ("ZG_SLEEP_MS", "100"),
        ],
    ) else {
        return;
    };
    let first = match lang {
        Lang::Python => 0,
        Lang::Cpp => 1,
    };
    client.wait_for("replies before the kill", |_, _| {
        replied_ok(&client).len() as u64 >= KILL_AFTER
    });
    primary.signal(libc::SIGKILL);
    client.wait_for("every reply", |_, _| {
        replied_ok(&client).len() as u64 >= COUNT
    });
    let said = client.stdout.text();
    assert_eq!(
        replied_ok(&client),
        (first..first + COUNT).collect::<Vec<_>>(),
        "{lang:?} bstarcli: {said}"
    );
    assert!(said.contains("failing over"), "{lang:?} bstarcli: {said}");
    assert!(
        !said.contains("malformed") && !said.contains("bad reply"),
        "{said}"
    );
    assert_eq!(
        bstar_states(&backup).last().map(String::as_str),
        Some("ACTIVE"),
        "{}",
        backup.stderr.text()
    );
}

combinations! {
    bstarcli_against_pirate_pair;
    the_python_bstarcli_fails_over_across_a_pirate_pair: Lang::Python;
    the_cpp_bstarcli_fails_over_across_a_pirate_pair: Lang::Cpp;
}

/// One of the Guide's bstarsrv nodes (`-p` or `-b`) on the given endpoints.
fn guide_node(lang: Lang, primary: bool, front: &str, publish: &str, peer: &str) -> Option<Proc> {
    guide::start(
        lang,
        "bstarsrv",
        &[if primary { "-p" } else { "-b" }],
        &[
            ("ZG_FRONTEND", front),
            ("ZG_STATEPUB", publish),
            ("ZG_STATESUB", peer),
        ],
    )
}

/// `pirate client` over `primary` then `backup` at the Guide's client timing, with the
/// sequence paced so that the kill falls in the middle: it returns once the client has
/// `KILL_AFTER` replies, for the caller to kill the active node.
fn paced_client(primary: &str, backup: &str) -> Proc {
    let count = COUNT.to_string();
    let client = spawn(
        "client",
        &[
            "client",
            "--json",
            "--connect",
            primary,
            "--connect",
            backup,
            "--count",
            &count,
            "--interval",
            "100ms",
            "--timeout",
            "1s",
            "--settle",
            "2s",
            "--retries",
            "10",
        ],
    );
    client.wait_for("replies before the kill", |o, _| {
        o.matches(r#""event":"reply""#).count() as u64 >= KILL_AFTER
    });
    client
}

/// Ends `client` and checks that the whole sequence was answered in order, with a failover
/// to `backup` (whose output a failure shows too).
fn answered_across_a_failover(mut client: Proc, what: &str, backup: &Proc) {
    let code = client.code();
    let out = client.stdout.text();
    let context = format!(
        "{what}\n--- client\n{}--- backup\n{}{}",
        client.stderr.text(),
        backup.stdout.text(),
        backup.stderr.text()
    );
    assert_eq!(code, 0, "{context}");
    assert_eq!(replies(&out), sequence(COUNT), "{context}");
    let last = summary(&out);
    assert!(
        last["reconnects"].as_u64().unwrap_or(0) >= 1,
        "no failover: {last}\n{context}"
    );
}

/// `pirate client` with two `--connect` against the Guide's bstarsrv pair (Python:
/// "connected to backup (slave), ready as master"; C++: "connected to backup (passive), ready
/// active"), the primary killed (-9) after `KILL_AFTER` replies: the Guide's backup takes over
/// on pirate's retried request, and every reply comes back, in order.
fn pirate_client_against_guide_pair(lang: Lang) {
    let ports = BstarPorts::new();
    let Some(primary) = guide_node(
        lang,
        true,
        &ports.primary,
        &ports.primary_state,
        &ports.backup_state,
    ) else {
        return;
    };
    let Some(backup) = guide_node(
        lang,
        false,
        &ports.backup,
        &ports.backup_state,
        &ports.primary_state,
    ) else {
        return;
    };
    primary.wait_stdout("connected to backup");
    backup.wait_stdout("connected to primary");
    let client = paced_client(&ports.primary, &ports.backup);
    primary.signal(libc::SIGKILL);
    answered_across_a_failover(client, &format!("{lang:?} bstarsrv pair"), &backup);
    if lang == Lang::Cpp {
        assert!(
            backup.stdout.text().contains("failover successful"),
            "{}",
            backup.stdout.text()
        );
    }
}

combinations! {
    pirate_client_against_guide_pair;
    pirate_client_fails_over_across_the_python_bstarsrv_pair: Lang::Python;
    pirate_client_fails_over_across_the_cpp_bstarsrv_pair: Lang::Cpp;
}

/// A mixed pair: `pirate server --primary` (state heartbeat 1 s, the Guide's) with the
/// Guide's bstarsrv as its backup. They speak the same state messages (one frame, the state
/// as a decimal digit: `statepub.send_string("%d" % state)`), so each sees the other: the
/// Guide's backup says "connected to primary" and goes passive. Pirate's primary is killed
/// (-9) and the Guide's backup serves the rest of pirate client's sequence.
fn pirate_primary_with_guide_backup(lang: Lang) {
    let ports = BstarPorts::new();
    let primary = start_bstar_node(&ports, true, "1s", &[]);
    let Some(backup) = guide_node(
        lang,
        false,
        &ports.backup,
        &ports.backup_state,
        &ports.primary_state,
    ) else {
        return;
    };
    backup.wait_stdout("connected to primary");
    primary.wait_for("the primary to go active", |_, _| {
        bstar_states(&primary).contains(&"ACTIVE".to_string())
    });
    let client = paced_client(&ports.primary, &ports.backup);
    primary.signal(libc::SIGKILL);
    answered_across_a_failover(client, &format!("pirate primary, {lang:?} backup"), &backup);
}

combinations! {
    pirate_primary_with_guide_backup;
    pirate_primary_pairs_with_the_python_bstarsrv_backup: Lang::Python;
    pirate_primary_pairs_with_the_cpp_bstarsrv_backup: Lang::Cpp;
}

/// The other mixed pair: the Guide's bstarsrv `-p` as primary, `pirate server --backup`
/// (state heartbeat 1 s) as its backup. The Guide's primary says "connected to backup" on
/// pirate's BACKUP state, pirate's backup goes PASSIVE on the Guide's ACTIVE; the Guide's
/// primary is killed (-9), and pirate's backup takes over on pirate client's vote.
fn guide_primary_with_pirate_backup(lang: Lang) {
    let ports = BstarPorts::new();
    let Some(primary) = guide_node(
        lang,
        true,
        &ports.primary,
        &ports.primary_state,
        &ports.backup_state,
    ) else {
        return;
    };
    let backup = start_bstar_node(&ports, false, "1s", &[]);
    primary.wait_stdout("connected to backup");
    backup.wait_for("the backup to go passive", |_, _| {
        bstar_states(&backup).contains(&"PASSIVE".to_string())
    });
    let client = paced_client(&ports.primary, &ports.backup);
    primary.signal(libc::SIGKILL);
    answered_across_a_failover(client, &format!("{lang:?} primary, pirate backup"), &backup);
    assert_eq!(
        bstar_states(&backup).last().map(String::as_str),
        Some("ACTIVE"),
        "{}",
        backup.stderr.text()
    );
}

combinations! {
    guide_primary_with_pirate_backup;
    the_python_bstarsrv_primary_pairs_with_a_pirate_backup: Lang::Python;
    the_cpp_bstarsrv_primary_pairs_with_a_pirate_backup: Lang::Cpp;
}
