//! The topology as processes: each role's `pirate` command line (or `--worker-cmd` shell),
//! with its endpoints on loopback ports, on `--ports`, or on the addresses of the hosts of
//! `--net namespaces`, and the security flags of `--security`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pirate::chaos::net::NetPlan;
use pirate::error::{Error, Result};
use pirate::event::chaos::Pattern;

use super::config::{ChaosConfig, ChaosSecurity, ProxyPlacement};
use super::topology::Proc;

/// Adds `security`'s flags to each child by what its subcommand does. `--worker-cmd`
/// workers are not `pirate` and get nothing.
pub(super) fn secure(procs: &mut [Proc], security: &ChaosSecurity) {
    for proc in procs.iter_mut().filter(|p| p.shell.is_none()) {
        let pair = proc
            .args
            .iter()
            .any(|a| a == "--primary" || a == "--backup");
        let (binds, connects) = match proc.args[0].as_str() {
            "broker" | "queue" => (true, false),
            "server" => (true, pair),
            "chaos" => (true, true),
            _ => (false, true),
        };
        if binds {
            proc.args.extend(security.binder.iter().cloned());
        }
        if connects {
            proc.args.extend(security.connector.iter().cloned());
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago, below the ephemeral range (see
/// [`pirate::endpoint::free_loopback_port`]: a restarted broker must get its port back).
pub(super) fn free_port() -> Result<u16> {
    Ok(pirate::endpoint::free_loopback_port()?)
}

pub(super) fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Where the Titanic pattern keeps its store: under `--out` when given (kept as evidence),
/// else in a temporary directory removed after the run.
pub(super) fn titanic_dir(config: &ChaosConfig) -> PathBuf {
    match &config.out {
        Some(out) => out.join("titanic-store"),
        None => std::env::temp_dir().join(format!(
            "pirate-chaos-titanic-{}-{}",
            std::process::id(),
            config.seed
        )),
    }
}

/// How many ports the topology binds: the plan made with made-up endpoints, counted. Checked
/// against `--ports` before anything is written or started.
pub(super) fn ports_needed(config: &ChaosConfig) -> Result<usize> {
    let mut n = 0usize;
    plan_with(config, &mut |_| {
        n += 1;
        Ok(format!("tcp://127.0.0.1:{n}"))
    })?;
    Ok(n)
}

/// Refuses a `--ports` range smaller than the topology (a usage error, exit 2).
pub(super) fn check_port_range(config: &ChaosConfig) -> Result<()> {
    if let Some(range) = config.ports {
        let needed = ports_needed(config)?;
        if needed > range.len() {
            return Err(Error::Usage(format!(
                "--ports {range} has {} port(s); this topology binds {needed}",
                range.len()
            )));
        }
    }
    Ok(())
}

/// Builds the process list for the pattern. With a network plan, each endpoint is on the
/// address of the host that binds it (a port of its own, though every host has all of them:
/// from 5550 up, or from the low end of `--ports`); otherwise on a free port of 127.0.0.1
/// (from `--ports` when given).
pub(super) fn plan(config: &ChaosConfig, net: Option<&NetPlan>) -> Result<(Vec<Proc>, String)> {
    let mut next_port = config.ports.map_or(5550u16, |r| r.low);
    plan_with(config, &mut |host: &str| -> Result<String> {
        match (net, config.ports) {
            (None, None) => Ok(format!("tcp://127.0.0.1:{}", free_port()?)),
            (None, Some(range)) => Ok(format!(
                "tcp://127.0.0.1:{}",
                pirate::endpoint::free_loopback_port_in(range)
                    .map_err(|e| Error::Usage(e.to_string()))?
            )),
            (Some(plan), _) => {
                let addr = plan.host(host).map(|h| h.addr).ok_or_else(|| {
                    Error::Internal(format!("{host} has no host in the network plan"))
                })?;
                next_port += 1;
                Ok(format!("tcp://{addr}:{}", next_port - 1))
            }
        }
    })
}

/// [`plan`] with `ep` giving the endpoint each host binds (its name in, `tcp://…` out).
pub(super) fn plan_with(
    config: &ChaosConfig,
    ep: &mut dyn FnMut(&str) -> Result<String>,
) -> Result<(Vec<Proc>, String)> {
    let hb = format!("{}ms", config.heartbeat.as_millis());
    let reconnect_max = format!("{}ms", config.heartbeat.as_millis() * 8);
    let mut procs = Vec::new();
    // `slot`: which process this is, for its seeds (see `incarnation_seed`); `None` for a
    // `--worker-cmd` shell, which takes no `--seed`.
    let new = |name: String, args: Vec<String>, shell: Option<String>, slot: Option<u64>| Proc {
        name,
        args,
        shell,
        seed_slot: slot,
        incarnation: 0,
        child: None,
        pgid: None,
        stdin: None,
        restarts: 0,
        frozen: false,
        restart_at: None,
        down_cause: None,
        restarted_after: BTreeMap::new(),
    };
    let front = ep(config.front_host())?;
    let back = ep(if config.pattern == Pattern::Bstar {
        "backup"
    } else {
        config.front_host()
    })?;
    let worker_flags = || {
        let mut a = config.worker_args.clone();
        a.extend(config.worker_faults.iter().cloned());
        a
    };
    // Every `pirate worker` of a topology: its protocol's flags, then the same liveness flags
    // (reconnecting at the heartbeat, backing off to 8 of them) and the workers' faults.
    let pirate_worker = |protocol: &[&str], connect: &str, name: &str| {
        let mut args = strings(&["worker", "--json"]);
        args.extend(strings(protocol));
        args.extend(strings(&[
            "--connect",
            connect,
            "--heartbeat",
            &hb,
            "--reconnect",
            &hb,
            "--reconnect-max",
            &reconnect_max,
            "--name",
            name,
        ]));
        args.extend(worker_flags());
        args
    };
    // With a proxy, one side connects to the proxy's frontend instead, and the proxy's
    // backend connects where that side would have.
    let proxy_front = match &config.proxy {
        Some(_) => ep("proxy")?,
        None => String::new(),
    };
    let placed = |placement: ProxyPlacement, endpoint: &str| -> String {
        match &config.proxy {
            Some((p, _)) if *p == placement => proxy_front.clone(),
            _ => endpoint.to_string(),
        }
    };
    let mut proxy_backend: Option<String> = None;
    let busy_timeout_args: Vec<String> = match config.busy_timeout {
        Some(d) => strings(&["--busy-timeout", &format!("{}ms", d.as_millis())]),
        None => Vec::new(),
    };
    let mut client_extra: Vec<String> = Vec::new();
    let client_endpoint = match config.pattern {
        Pattern::Bstar => {
            let (s1, s2) = (ep("primary")?, ep("backup")?);
            for (name, role, bind, state, peer) in [
                ("primary", "--primary", &front, &s1, &s2),
                ("backup", "--backup", &back, &s2, &s1),
            ] {
                let mut args = strings(&[
                    "server",
                    "--json",
                    role,
                    "--bind",
                    bind,
                    "--state-bind",
                    state,
                    "--peer-state",
                    peer,
                    "--state-heartbeat",
                    &hb,
                ]);
                args.extend(worker_flags());
                let slot = if name == "primary" { 1 } else { 2 };
                procs.push(new(name.into(), args, None, Some(slot)));
            }
            let settle = format!("{}ms", config.heartbeat.as_millis() * 3);
            client_extra = strings(&["--connect", &back, "--settle", &settle]);
            front.clone()
        }
        Pattern::Freelance => {
            // Each server's public endpoint (its identity) is its bind endpoint, spelled as
            // the clients spell it; a proxy in between would be one server, so none is allowed.
            if config.proxy.is_some() {
                return Err(Error::Usage(
                    "--proxy does not fit Freelance: clients address each server by its endpoint"
                        .into(),
                ));
            }
            let mut servers = Vec::new();
            for i in 1..=config.workers.max(1) {
                let endpoint = ep(&format!("server-{i}"))?;
                let mut args = strings(&["server", "--json", "--freelance", "--bind", &endpoint]);
                args.extend(worker_flags());
                procs.push(new(format!("server-{i}"), args, None, Some(i as u64 + 1)));
                servers.push(endpoint);
            }
            let ttl = format!("{}ms", config.heartbeat.as_millis() * 3);
            client_extra = strings(&["--freelance", "--ping", &hb, "--server-ttl", &ttl]);
            for endpoint in &servers[1..] {
                client_extra.extend(strings(&["--connect", endpoint]));
            }
            servers.swap_remove(0)
        }
        Pattern::Lazy => {
            let mut args = strings(&["server", "--json", "--bind", &front]);
            args.extend(worker_flags());
            procs.push(new("server".into(), args, None, Some(1)));
            front.clone()
        }
        Pattern::Majordomo | Pattern::Titanic => {
            let broker = config.external.clone().unwrap_or_else(|| front.clone());
            if matches!(config.proxy, Some((ProxyPlacement::Workers, _))) {
                proxy_backend = Some(broker.clone());
            }
            let endpoint = placed(ProxyPlacement::Workers, &broker);
            if config.external.is_none() {
                let mut args = strings(&["broker", "--json", "--bind", &front, "--heartbeat", &hb]);
                args.extend(busy_timeout_args.iter().cloned());
                procs.push(new("broker".into(), args, None, None));
            }
            for i in 1..=config.workers.max(1) {
                let name = format!("worker-{i}");
                let shell = config.worker_cmd.as_ref().map(|cmd| {
                    cmd.replace("{endpoint}", &endpoint)
                        .replace("{service}", "echo")
                });
                let args = pirate_worker(
                    &["--protocol", "mdp", "--service", "echo"],
                    &endpoint,
                    &name,
                );
                let slot = shell.is_none().then_some(i as u64 + 1);
                procs.push(new(name, args, shell, slot));
            }
            if config.pattern == Pattern::Titanic {
                let dir = titanic_dir(config);
                let retry = format!("{}ms", config.heartbeat.as_millis() * 2);
                let args = strings(&[
                    "titanic",
                    "--json",
                    "--connect",
                    &broker,
                    "--dir",
                    &dir.display().to_string(),
                    "--heartbeat",
                    &hb,
                    "--reconnect",
                    &hb,
                    "--retry-interval",
                    &retry,
                ]);
                procs.push(new("titanic".into(), args, None, Some(99)));
            }
            broker
        }
        Pattern::Simple | Pattern::Paranoid => {
            let simple = config.pattern == Pattern::Simple;
            let client_side = front.clone();
            if matches!(config.proxy, Some((ProxyPlacement::Workers, _))) {
                proxy_backend = Some(back.clone());
            }
            let worker_side = placed(ProxyPlacement::Workers, &back);
            {
                let mut args = strings(&[
                    "queue",
                    "--json",
                    "--frontend",
                    &front,
                    "--backend",
                    &back,
                    "--heartbeat",
                    &hb,
                ]);
                if simple {
                    args.push("--simple".into());
                }
                args.extend(busy_timeout_args.iter().cloned());
                procs.push(new("queue".into(), args, None, None));
            }
            for i in 1..=config.workers.max(1) {
                let name = format!("worker-{i}");
                let protocol = if simple { "simple" } else { "paranoid" };
                let args = pirate_worker(&["--protocol", protocol], &worker_side, &name);
                procs.push(new(name, args, None, Some(i as u64 + 1)));
            }
            client_side
        }
    };
    if let Some((placement, faults)) = &config.proxy {
        let backend = match placement {
            ProxyPlacement::Clients => client_endpoint.clone(),
            ProxyPlacement::Workers => proxy_backend.ok_or_else(|| {
                Error::Usage("a proxy in front of workers needs a broker or queue".into())
            })?,
        };
        let mut args = strings(&[
            "chaos",
            "proxy",
            "--json",
            "--frontend",
            &proxy_front,
            "--backend",
            &backend,
        ]);
        args.extend(faults.iter().cloned());
        procs.push(new("proxy".into(), args, None, Some(0)));
    }
    let client_endpoint = placed(ProxyPlacement::Clients, &client_endpoint);
    let timeout = format!("{}ms", config.client_timeout.as_millis());
    for c in 1..=config.clients.max(1) {
        let mut args = strings(&[
            "client",
            "--json",
            "--expect-echo",
            "--connect",
            &client_endpoint,
            "--timeout",
            &timeout,
            "--retries",
            &config.client_retries.to_string(),
        ]);
        if config.pattern != Pattern::Freelance {
            // A Freelance client has one request in flight by design (and refuses --window).
            args.extend(strings(&["--window", &config.window.max(1).to_string()]));
        }
        match config.pattern {
            Pattern::Majordomo => args.extend(strings(&["--service", "echo"])),
            Pattern::Titanic => args.extend(strings(&["--titanic", "--service", "echo"])),
            _ => {}
        }
        args.extend(client_extra.iter().cloned());
        procs.push(new(format!("client-{c}"), args, None, None));
    }
    secure(&mut procs, &config.security);
    Ok((procs, client_endpoint))
}
