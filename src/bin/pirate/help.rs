//! The help texts every subcommand shares: its exit status and, for chaos, the verdicts
//! (clap's after-help; the man pages' EXIT STATUS is made from them).

/// The exit codes, as a literal so the chaos help can append to it.
macro_rules! exit_codes {
    () => {
        "\
EXIT STATUS:
  0    success
  1    the run finished but something was lost, wrong or abandoned (a chaos verdict
       INVALID or INDETERMINATE; a client whose stdin held a request over --max-message;
       a bench --fail-if threshold crossed)
  2    usage error, before anything starts (bad flag or value: a zero timeout or heartbeat,
       an endpoint with a wrong transport, a bad host or a port outside 1..65535), or an
       endpoint cannot be bound
  68   a client (or bench) gave up, and the broker had answered mmi.service 404: it is
       up, but no worker serves that service
  69   a peer stayed unreachable after every retry
  70   internal error
  76   the peer answered in another protocol: a Majordomo broker answered a client
       without --service, or a client with --service had its question echoed back
  77   authentication refused: the server turned down the --plain login or --curve key
  130  interrupted by Ctrl-C or SIGTERM
  141  stdout was closed (`pirate client … | head -1`): the run stopped, quietly"
    };
}

pub const EXIT_CODES: &str = exit_codes!();

/// `pirate chaos` and `chaos run`: the verdicts, then the exit codes.
pub const CHAOS_AFTER_HELP: &str = concat!(
    "\
VERDICT:
  VALID          nothing lost, duplicated, reordered or wrongly answered, and the run showed
                 it (exit 0)
  INVALID        a request lost, duplicated, out of order or wrongly answered, or re-executed
                 with --strict (exit 1)
  INDETERMINATE  nothing fatal, but nothing shown: no request answered, requests abandoned,
                 a --nemesis kind that never struck or was never followed by a reply (exit 1)
  The fault phase goes on past --duration, for at most --max-extension (30s), until every
  --nemesis kind has struck and been recovered from. Ctrl-C prints the verdict of what was
  seen, marked (interrupted), and exits 130.

REAL NETWORKS (--net namespaces, root only):
  Every process runs as a host of its own: a network namespace with one address (10.77.0.N)
  on a bridge inside a namespace the run made, so no packet reaches the machine's network.
  partition, split, oneway, reset and loss are nft rules, slow and delay tc qdiscs; each is
  healed after --partition-for, and -v prints every ip/nft/tc command. The schedule (which
  kind, which hosts, when) replays with --seed; which packets a loss window drops is the
  kernel's draw. Needs ip and tc (iproute2) and nft (nftables); delay needs the kernel's
  netem. Namespaces are removed however the run ends, SIGKILL of the runner included.

",
    exit_codes!()
);

#[cfg(test)]
mod tests {
    use pirate::error::EXIT_STATUSES;

    /// The codes the help lists: the first word of each line that starts with two spaces
    /// and a number.
    fn listed(text: &str) -> Vec<i32> {
        text.lines()
            .filter_map(|l| l.strip_prefix("  "))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    #[test]
    fn the_help_lists_exactly_the_exit_statuses_of_the_one_table() {
        let table: Vec<i32> = EXIT_STATUSES.iter().map(|(code, _)| *code).collect();
        assert_eq!(listed(super::EXIT_CODES), table);
        let chaos = super::CHAOS_AFTER_HELP;
        assert_eq!(listed(&chaos[chaos.find("EXIT STATUS:").unwrap()..]), table);
    }
}
