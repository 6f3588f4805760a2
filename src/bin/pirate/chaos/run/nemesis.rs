//! The nemesis at work: carrying out a scheduled strike (kill, freeze, restart, a network
//! fault), thawing and healing when the fault's time is over, and what it has injected.

use std::collections::BTreeMap;
use std::time::Instant;

use pirate::chaos::net::{self, Cut};
use pirate::error::{Error, Result};
use pirate::event::chaos::NetKind;
use pirate::event::chaos::{NemesisFault, ScheduledFault};
use pirate::event::{Event, Events};

use super::config::ChaosConfig;
use super::topology::Topology;

/// The nemesis at work: strikes, thaws, and what it has injected so far.
pub(super) struct Nemesis {
    /// Frozen processes and when to continue them.
    pub(super) thaw_at: Vec<(Instant, usize)>,
    /// Actions carried out, by kind (and `respawn`s by the supervisor).
    pub(super) injected: BTreeMap<String, u64>,
    /// When each kind first struck, on the history's clock.
    pub(super) first: BTreeMap<&'static str, f64>,
    /// The network fault in force (one at a time) and when it heals.
    pub(super) network: Option<InForce>,
}

/// A network fault struck and not yet healed.
pub(super) struct InForce {
    pub(super) heal_at: Instant,
    pub(super) kind: NetKind,
    pub(super) cut: Cut,
    pub(super) target: String,
}

impl Nemesis {
    /// Carries out one action (unless its target is already down or frozen).
    pub(super) fn strike(
        &mut self,
        topo: &mut Topology,
        config: &ChaosConfig,
        s: &ScheduledFault,
        events: &mut Events,
    ) -> Result<()> {
        if let Some(kind) = s.fault.network() {
            return self.strike_network(topo, config, s, kind, events);
        }
        let Some(i) = topo.index(&s.target) else {
            return Ok(());
        };
        if !topo.alive(i) || topo.procs[i].frozen {
            return Ok(()); // already down or frozen: nothing to break
        }
        let now = Instant::now();
        let action = s.fault.name();
        let t_ms = topo.note(action, &s.target);
        match s.fault {
            NemesisFault::Kill | NemesisFault::Restart => {
                topo.kill(i);
                topo.procs[i].restart_at = Some(now + config.restart_delay);
                topo.procs[i].down_cause = Some("nemesis");
            }
            NemesisFault::Freeze => {
                topo.signal(i, libc::SIGSTOP);
                topo.procs[i].frozen = true;
                self.thaw_at.push((now + config.freeze_for, i));
            }
            _ => unreachable!("network faults are struck by strike_network"),
        }
        self.struck(action, t_ms, &s.target, events);
        Ok(())
    }

    /// Applies a network fault's rules (unless one is in force already: one at a time, so
    /// each has its own detection and recovery), and records it with the hosts it cuts.
    pub(super) fn strike_network(
        &mut self,
        topo: &mut Topology,
        config: &ChaosConfig,
        s: &ScheduledFault,
        kind: NetKind,
        events: &mut Events,
    ) -> Result<()> {
        let (Some(network), Some(net_config)) = (&topo.net, &config.net) else {
            return Ok(());
        };
        if self.network.is_some() {
            return Ok(());
        }
        let Some(cut) = Cut::parse(kind, &s.target) else {
            return Ok(());
        };
        let commands = network
            .plan
            .strike(kind, &cut, &net_config.shaping)
            .map_err(Error::Internal)?;
        for c in &commands {
            crate::chaos::net::run(c, events)?;
        }
        let action = s.fault.name();
        let hosts = cut.hosts(&network.plan.names());
        topo.cut = Some((action, hosts.clone()));
        let t_ms = topo.note_with(serde_json::json!({
            "event": "nemesis", "action": action, "target": s.target, "hosts": hosts,
        }));
        self.network = Some(InForce {
            heal_at: Instant::now() + net_config.partition_for,
            kind,
            cut,
            target: s.target.clone(),
        });
        self.struck(action, t_ms, &s.target, events);
        Ok(())
    }

    /// Counts a strike of kind `action` at `t_ms` on the history's clock (the first of its
    /// kind is what coverage waits for) and says so as a `Nemesis` event: the same for a
    /// process's fault and a network's.
    fn struck(&mut self, action: &'static str, t_ms: f64, target: &str, events: &mut Events) {
        self.first.entry(action).or_insert(t_ms);
        *self.injected.entry(action.to_string()).or_default() += 1;
        events.emit(Event::Nemesis {
            at_ms: t_ms.round() as u64,
            action: action.to_string(),
            target: target.to_string(),
        });
    }

    /// Heals the network fault in force once `--partition-for` is over (now, with `all`).
    pub(super) fn heal_network(
        &mut self,
        topo: &mut Topology,
        events: &mut Events,
        all: bool,
    ) -> Result<()> {
        let due = self
            .network
            .as_ref()
            .is_some_and(|f| all || Instant::now() >= f.heal_at);
        let (true, Some(network)) = (due, &topo.net) else {
            return Ok(());
        };
        let f = self.network.take().expect("due");
        for c in network.plan.heal(f.kind, &f.cut).map_err(Error::Internal)? {
            crate::chaos::net::run(&c, events)?;
        }
        let t_ms = topo.note(net::HEAL_ACTION, &f.target);
        topo.cut = None;
        events.emit(Event::Nemesis {
            at_ms: t_ms.round() as u64,
            action: net::HEAL_ACTION.to_string(),
            target: f.target,
        });
        Ok(())
    }

    /// Continues the processes whose freeze is over (all of them with `all`).
    pub(super) fn thaw(&mut self, topo: &mut Topology, all: bool) {
        let now = Instant::now();
        self.thaw_at.retain(|&(at, i)| {
            if all || now >= at {
                topo.signal(i, libc::SIGCONT);
                topo.procs[i].frozen = false;
                topo.note("thaw", &topo.procs[i].name.clone());
                false
            } else {
                true
            }
        });
    }

    /// The first kind of `kinds` not yet injected.
    pub(super) fn missing(&self, kinds: &[NemesisFault]) -> Option<NemesisFault> {
        kinds
            .iter()
            .copied()
            .find(|k| !self.first.contains_key(k.name()))
    }

    /// Every kind of `kinds` injected, and a client accepted a reply after it.
    pub(super) fn covered(&self, kinds: &[NemesisFault], last_reply_ms: Option<f64>) -> bool {
        kinds.iter().all(|k| {
            self.first
                .get(k.name())
                .is_some_and(|&t| last_reply_ms.is_some_and(|r| r > t))
        })
    }
}
