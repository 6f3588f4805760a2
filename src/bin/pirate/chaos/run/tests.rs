use std::path::PathBuf;
use std::time::Duration;

use pirate::chaos::net::{self, Cut};
use pirate::event::chaos::{NemesisFault, Pattern};

use super::plan::strings;
use super::supervise::without_faults;
use super::topology::incarnation_seed;
use super::{ChaosConfig, ProxyPlacement};
use crate::chaos::net::NetConfig;

fn demo(seed: u64) -> ChaosConfig {
    ChaosConfig::demo(PathBuf::from("pirate"), seed)
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    assert_eq!(demo(7).schedule(), demo(7).schedule());
    assert_ne!(demo(7).schedule(), demo(8).schedule());
}

#[test]
fn the_demo_schedule_kills_freezes_and_restarts_within_the_fault_phase() {
    let s = demo(1).schedule();
    for kind in [
        NemesisFault::Kill,
        NemesisFault::Freeze,
        NemesisFault::Restart,
    ] {
        assert!(s.iter().any(|f| f.fault == kind), "{kind:?} missing: {s:?}");
    }
    assert!(s.iter().all(|f| f.at_ms < 24_000));
    assert!(s.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    let restarts: Vec<_> = s
        .iter()
        .filter(|f| f.fault == NemesisFault::Restart)
        .collect();
    assert!(restarts.iter().all(|f| f.target == "broker"));
}

#[test]
fn no_broker_restart_against_an_external_broker_or_in_lazy_mode() {
    let mut c = demo(3);
    c.external = Some("tcp://127.0.0.1:1".into());
    assert!(c
        .schedule()
        .iter()
        .all(|f| f.fault != NemesisFault::Restart));
    let mut l = demo(3);
    l.pattern = Pattern::Lazy;
    assert!(l.schedule().iter().all(|f| f.target == "server"));
}

#[test]
fn every_process_is_a_host_and_links_follow_who_connects_to_whom() {
    let mut c = demo(1);
    c.workers = 2;
    c.proxy = Some((ProxyPlacement::Workers, Vec::new()));
    assert_eq!(
        c.host_names(),
        strings(&["broker", "worker-1", "worker-2", "proxy", "client-1", "client-2"])
    );
    let links = c.links();
    let has = |a: &str, b: &str| links.contains(&(a.to_string(), b.to_string()));
    assert!(has("worker-1", "proxy") && has("proxy", "broker") && has("client-2", "broker"));
    assert!(!has("worker-1", "broker"), "{links:?}");
    let mut b = demo(1);
    b.pattern = Pattern::Bstar;
    assert_eq!(
        b.host_names(),
        strings(&["primary", "backup", "client-1", "client-2"])
    );
    assert!(b.links().contains(&("client-1".into(), "backup".into())));
}

#[test]
fn network_kinds_are_scheduled_only_on_hosts_of_their_own_and_replay() {
    let mut c = demo(4);
    c.nemesis = vec![
        NemesisFault::Partition,
        NemesisFault::Split,
        NemesisFault::Oneway,
        NemesisFault::Loss,
    ];
    // On loopback there is nothing to cut.
    assert!(c.schedule().is_empty());
    c.net = Some(NetConfig {
        partition_for: Duration::from_millis(1500),
        shaping: net::Shaping::default(),
    });
    let s = c.schedule();
    assert_eq!(s, c.schedule());
    let hosts = c.host_names();
    for f in &s {
        let kind = f.fault.network().expect("network kind");
        let cut = Cut::parse(kind, &f.target).unwrap_or_else(|| panic!("{f:?}"));
        for h in cut.hosts(&hosts) {
            assert!(hosts.contains(&h), "{h} in {f:?}");
        }
    }
    assert_eq!(s[1].fault, NemesisFault::Split);
    assert_eq!(s[3].target, "all");
}

#[test]
fn healing_removes_exactly_the_fault_flags() {
    let faults = strings(&["--crash-rate", "2%"]);
    let args = strings(&["worker", "--crash-rate", "2%", "--seed", "3"]);
    assert_eq!(
        without_faults(&args, &faults),
        strings(&["worker", "--seed", "3"])
    );
}

#[test]
fn each_incarnation_gets_its_own_seed_and_the_run_seed_replays_them() {
    let seeds: Vec<u64> = (0..4).map(|n| incarnation_seed(7, 2, n)).collect();
    let mut distinct = seeds.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{seeds:?}");
    assert_eq!(
        seeds,
        (0..4)
            .map(|n| incarnation_seed(7, 2, n))
            .collect::<Vec<_>>()
    );
    assert_ne!(incarnation_seed(7, 2, 0), incarnation_seed(7, 3, 0));
    assert_ne!(incarnation_seed(7, 2, 0), incarnation_seed(8, 2, 0));
    assert!(seeds.iter().all(|s| *s < 1 << 53));
}

#[test]
fn required_faults_are_the_kinds_that_apply_and_any_proxy_fault() {
    let mut c = demo(1);
    assert_eq!(c.required_faults(), ["kill", "freeze", "restart"]);
    c.external = Some("tcp://127.0.0.1:1".into());
    assert_eq!(c.required_faults(), ["kill", "freeze"]);
    c.proxy = Some((ProxyPlacement::Clients, strings(&["--drop", "5%"])));
    assert_eq!(c.required_faults(), ["kill", "freeze", "proxy"]);
    c.nemesis_interval = Duration::ZERO;
    assert_eq!(c.required_faults(), ["proxy"]);
    assert!(c.schedule().is_empty());
    // A Binary Star pair heals after a frozen node thaws: freezes apply to it too.
    let mut b = demo(1);
    b.pattern = Pattern::Bstar;
    assert_eq!(b.required_faults(), ["kill", "freeze"]);
}

#[test]
fn a_short_duration_schedules_the_first_kind_and_coverage_strikes_replay() {
    let mut c = demo(5);
    c.fault_phase = Duration::from_secs(2);
    let s = c.schedule();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].fault, NemesisFault::Kill);
    assert!(s[0].at_ms < 2000);
    let a = c.coverage_fault(0, NemesisFault::Freeze, 2000);
    assert_eq!(a, c.coverage_fault(0, NemesisFault::Freeze, 2000));
    assert!(a.target.starts_with("worker-"));
    assert_eq!(
        c.coverage_fault(1, NemesisFault::Restart, 5000).target,
        "broker"
    );
}
