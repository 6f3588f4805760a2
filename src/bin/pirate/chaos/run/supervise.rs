//! The supervisor: restarting the processes that are due, as a process supervisor would, and
//! replacing faulty ones with the same command line minus their fault flags when the run heals.

use std::collections::BTreeMap;
use std::time::Instant;

use pirate::error::Result;
use pirate::event::Events;

use super::config::ChaosConfig;
use super::topology::Topology;

/// The running args minus the fault flags (and their values).
pub(super) fn without_faults(args: &[String], faults: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i..].starts_with(faults) {
            i += faults.len();
        } else {
            out.push(args[i].clone());
            i += 1;
        }
    }
    out
}

/// Restarts processes that are due, and schedules a restart for any non-client that died
/// on its own (an injected crash).
pub(super) fn supervise(
    topo: &mut Topology,
    config: &ChaosConfig,
    injected: &mut BTreeMap<String, u64>,
    events: &mut Events,
    now_if_down: bool,
) -> Result<()> {
    let now = Instant::now();
    for i in 0..topo.procs.len() {
        if topo.procs[i].name.starts_with("client") || topo.alive(i) {
            continue;
        }
        match topo.procs[i].restart_at {
            Some(at) if now >= at => {
                topo.spawn(i)?;
                topo.procs[i].restarts += 1;
                let cause = topo.procs[i].down_cause.take().unwrap_or("own crash");
                *topo.procs[i]
                    .restarted_after
                    .entry(cause.to_string())
                    .or_default() += 1;
                let name = topo.procs[i].name.clone();
                topo.note("start", &name);
                events.info(format!("restarted {name} (after {cause})"));
            }
            Some(_) => {}
            None => {
                // Died by itself: a crash the worker injected. Restart it like a supervisor.
                *injected.entry("respawn".into()).or_default() += 1;
                let name = topo.procs[i].name.clone();
                topo.note("died", &name);
                topo.procs[i].down_cause = Some("own crash");
                topo.procs[i].restart_at = Some(if now_if_down {
                    now
                } else {
                    now + config.restart_delay
                });
            }
        }
    }
    Ok(())
}
