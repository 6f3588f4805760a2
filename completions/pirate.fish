# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_pirate_global_optspecs
    string join \n v/verbose q/quiet json max-message= max-connections= max-connections-per-address= handshake-timeout= h/help V/version
end

function __fish_pirate_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_pirate_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_pirate_using_subcommand
    set -l cmd (__fish_pirate_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c pirate -n "__fish_pirate_needs_command" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_needs_command" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_needs_command" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_needs_command" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_needs_command" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_needs_command" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_needs_command" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_needs_command" -s h -l help -d 'Print help'
complete -c pirate -n "__fish_pirate_needs_command" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_needs_command" -f -a "server" -d 'Lazy Pirate server (REP), or one of a Binary Star pair (--primary/--backup) or a Freelance server (--freelance): echoes (or runs --exec), with fault injection'
complete -c pirate -n "__fish_pirate_needs_command" -f -a "client" -d 'Client for every pattern: Lazy Pirate, Majordomo (--service), Titanic (--titanic), Binary Star (repeated --connect) or Freelance (--freelance); timeouts and retries'
complete -c pirate -n "__fish_pirate_needs_command" -f -a "queue" -d 'Simple or Paranoid Pirate queue: load-balances clients over workers, heartbeating them'
complete -c pirate -n "__fish_pirate_needs_command" -f -a "worker" -d 'Worker for the Pirate queues: echoes (or runs --exec), heartbeats, reconnects, misbehaves'
complete -c pirate -n "__fish_pirate_needs_command" -f -a "broker" -d 'Majordomo broker (7/MDP 0.1 and 18/MDP 0.2, 8/MMI): routes requests to workers by service'
complete -c pirate -n "__fish_pirate_needs_command" -f -a "titanic" -d 'Titanic (9/TSP): stores requests on disk, forwards them to services through a broker, keeps replies until the client closes them'
complete -c pirate -n "__fish_pirate_needs_command" -f -a "chaos" -d 'Run a whole topology, break it on purpose, and check that nothing was lost (with no subcommand: the built-in 30-second demonstration)'
complete -c pirate -n "__fish_pirate_needs_command" -f -a "generate" -d 'Write the man pages or shell completions generated from these definitions, or print a CURVE key pair'
complete -c pirate -n "__fish_pirate_needs_command" -f -a "bench" -d 'Load generator: N clients x W requests in flight against a Majordomo broker (--service) or a Lazy Pirate server; prints req/s and latency percentiles'
complete -c pirate -n "__fish_pirate_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pirate -n "__fish_pirate_using_subcommand server" -l bind -d 'Endpoint to bind the REP socket to (a ROUTER with --primary/--backup)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l exec -d 'Run `sh -c CMD` per request, body on stdin (frames one per line, bytes unchanged), and reply with its stdout' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l exec-timeout -d 'Kill a command still running after this long, with its whole process group; the request gets an `error:` reply [default: never]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l faults -d 'Start from a preset; the other fault flags override its values' -r -f -a "none\t'No faults unless other flags ask for them'
guide\t'The Guide\'s own test program for this role: lpserver (after 3 cycles crash 1/3, stall 2s 1/3, 1s work) or spworker/ppworker (after 3 cycles crash 1/5, stall 3s 1/5, 1s work)'"
complete -c pirate -n "__fish_pirate_using_subcommand server" -l crash-rate -d 'Probability of crashing (SIGKILL to itself) per request, e.g. 0.2 or 20%' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l overload-rate -d 'Probability of stalling ("CPU overload") per request' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l overload-for -d 'How long an overload stalls [default: 2s]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l faults-after -d 'Requests served normally before random faults start [default: 3]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l crash-after -d 'Crash deterministically on request N+1' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l work -d 'Simulated work per request [default: 0s]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l seed -d 'Seed of the fault generator (printed at start); replays a run' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l state-bind -d 'Endpoint to bind the PUB socket this node\'s state is published on [default: tcp://*:5003 for the primary, tcp://*:5004 for the backup]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l peer-state -d 'The peer\'s state endpoint to subscribe to [default: tcp://localhost:5004 for the primary, tcp://localhost:5003 for the backup]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l state-heartbeat -d 'How often each node publishes its state; the peer is dead after two' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l on-split -d 'What a node does when, after it lost sight of its peer, it finds the peer active too (or passive too)' -r -f -a "resolve\t'Heal: the node that served no client while apart steps down to passive; if both served, the backup does; if both end passive, the primary takes over'
stop\t'The Guide\'s rule: both nodes stop with exit 69 (split brain)'"
complete -c pirate -n "__fish_pirate_using_subcommand server" -l endpoint -d 'With --freelance: the endpoint clients --connect to, exactly as they spell it (it is the server\'s identity) [default: --bind, with * read as localhost]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l auth-plain -d 'Require PLAIN log-ins (RFC 24) checked against FILE\'s `user:password` lines; PLAIN sends the password in clear, so use it on trusted networks only' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand server" -l auth-curve -d 'Require CURVE (RFC 26: encrypted, this server authenticated) with FILE\'s key pair, as `pirate generate keys` prints it; `client: KEY` lines in FILE let only those clients in' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand server" -l allow -d 'Let peers in only from this IP address or CIDR block (repeatable); others are refused' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l plain -d 'Log in with PLAIN (RFC 24) as USER:PASSWORD (visible to other local users in the process list)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l curve-server -d 'Speak CURVE (RFC 26, encrypted) to servers with this public key (Z85, 40 characters)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l curve-keys -d 'With --curve-server: this role\'s key pair, from FILE as `pirate generate keys` prints it [default: a new pair each run]' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand server" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand server" -l primary -d 'Run as the primary of a Binary Star pair (serves first; the backup takes over when it dies and a client asks it)'
complete -c pirate -n "__fish_pirate_using_subcommand server" -l backup -d 'Run as the backup of a Binary Star pair (serves only once the primary, seen active, has gone silent and a client asks)'
complete -c pirate -n "__fish_pirate_using_subcommand server" -l freelance -d 'Serve Freelance (10/FLP): a ROUTER whose identity is the public endpoint, answering PING with PONG; clients spread requests over several such servers'
complete -c pirate -n "__fish_pirate_using_subcommand server" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand server" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand server" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand server" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pirate -n "__fish_pirate_using_subcommand server" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand client" -l connect -d 'Endpoint to connect to; repeat it to fail over between servers (Binary Star: after a failed attempt the client moves to the next one) or, with --freelance, to spread requests over them (each spelled exactly as that server\'s public endpoint)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l settle -d 'With several --connect: wait this long after switching, for the backup to take over' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l timeout -d 'How long each attempt waits for its reply [default: 2500ms; 3s with --freelance]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l retries -d 'Attempts per request, the first included, before abandoning (the Guide\'s REQUEST_RETRIES)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l count -d 'Send the Guide\'s test sequence 1..N and check that every reply equals its request' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l interval -d 'Wait this long before reading each request after the first: paces a run (a walk-through slow enough to kill a server by hand, a steady trickle of load)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l service -d 'Speak Majordomo to a broker and ask for this service (mmi.service, mmi.status: the broker\'s own)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l protocol -d 'Client protocol: bare Lazy Pirate, or Majordomo 0.1 / 0.2 [default: lazy, or mdp with --service]' -r -f -a "lazy\t'Bare requests to a Lazy Pirate server or a Pirate queue'
mdp\t'7/MDP, Majordomo 0.1 (MDPC01)'
mdp2\t'18/MDP, Majordomo 0.2 (MDPC02, streamed PARTIAL/FINAL replies)'"
complete -c pirate -n "__fish_pirate_using_subcommand client" -l poll-interval -d 'With --titanic: wait between polls of titanic.reply while the reply is pending' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l correlate -d 'How a reply is tied to its request: id puts a request id in the envelope of each request on one DEALER; socket sends each request on a fresh REQ socket with nothing but the body, for a queue and worker that take only a REQ client\'s envelope (the Guide\'s ppqueue and ppworker) [default: id; mdp/mdp2: what the broker\'s mmi.correlate says]' -r -f -a "id\t'A request id in each request\'s envelope, echoed back with its reply'
socket\t'A fresh REQ socket per request (and per retry): the body alone on the wire'"
complete -c pirate -n "__fish_pirate_using_subcommand client" -l window -d 'Requests in flight at once (1 = synchronous, as in the Guide): on one shared socket, told apart by request ids, or one socket each (--correlate socket, or a broker that does not carry request ids)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l ping -d 'With --freelance: how often each server is pinged' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l server-ttl -d 'With --freelance: a server silent this long is dead (until it answers again)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l plain -d 'Log in with PLAIN (RFC 24) as USER:PASSWORD (visible to other local users in the process list)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l curve-server -d 'Speak CURVE (RFC 26, encrypted) to servers with this public key (Z85, 40 characters)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l curve-keys -d 'With --curve-server: this role\'s key pair, from FILE as `pirate generate keys` prints it [default: a new pair each run]' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand client" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand client" -s 0 -l null -d 'Read stdin as NUL-terminated requests (as `find -print0` writes them), newlines included, and end each reply on stdout with a NUL instead of a newline (for `xargs -0`)'
complete -c pirate -n "__fish_pirate_using_subcommand client" -l whole -d 'Send the whole of stdin, up to its end, as one request (jq\'s --slurp), and print its reply as it is, with no newline added'
complete -c pirate -n "__fish_pirate_using_subcommand client" -l expect-echo -d 'Check that every reply equals its request (an echo service); a reply that does not is reported and retried, never accepted (implied by --count)'
complete -c pirate -n "__fish_pirate_using_subcommand client" -l titanic -d 'Send each request through Titanic (9/TSP) to --service: store it, poll for the reply, close it'
complete -c pirate -n "__fish_pirate_using_subcommand client" -l freelance -d 'Freelance (10/FLP): spread requests over every --connect server, pinging them, and retry on another live one after --timeout'
complete -c pirate -n "__fish_pirate_using_subcommand client" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand client" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand client" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand client" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pirate -n "__fish_pirate_using_subcommand client" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l frontend -d 'Endpoint clients connect to (ROUTER)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l backend -d 'Endpoint workers connect to (ROUTER)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l heartbeat -d 'Heartbeat interval (6/PPP)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l liveness -d 'Silent heartbeat intervals after which a worker is expired' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l busy-timeout -d 'Forget a worker that holds one request this long (its request or reply was lost on the way, or it hangs while heartbeating); it reconnects when the queue\'s heartbeats stop. Off unless given. Set it above your slowest request' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l auth-plain -d 'Require PLAIN log-ins (RFC 24) checked against FILE\'s `user:password` lines; PLAIN sends the password in clear, so use it on trusted networks only' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l auth-curve -d 'Require CURVE (RFC 26: encrypted, this server authenticated) with FILE\'s key pair, as `pirate generate keys` prints it; `client: KEY` lines in FILE let only those clients in' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l allow -d 'Let peers in only from this IP address or CIDR block (repeatable); others are refused' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l simple -d 'Run the Simple Pirate queue: no heartbeats, no expiry'
complete -c pirate -n "__fish_pirate_using_subcommand queue" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand queue" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand queue" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand queue" -s h -l help -d 'Print help'
complete -c pirate -n "__fish_pirate_using_subcommand queue" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l connect -d 'Endpoint of the queue\'s backend or the broker [default: tcp://localhost:5556, or tcp://localhost:5555 for mdp/mdp2]; mdp/mdp2 workers take it repeated, and move to the next broker each time they lose one (Binary Star)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l protocol -d 'Protocol to speak' -r -f -a "paranoid\t'6/PPP: DEALER, READY, heartbeats, reconnect with back-off'
simple\t'Simple Pirate: REQ, READY once, no heartbeats'
mdp\t'7/MDP Majordomo 0.1 worker (MDPW01) for --service'
mdp2\t'18/MDP Majordomo 0.2 worker (MDPW02): --exec streams each output line as a PARTIAL'"
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l dialect -d 'How READY is spelled (paranoid, simple): the Guide\'s C++ ppqueue registers a worker only on the word "READY"; simple workers send the byte unless pinned to guide-cpp' -r -f -a "auto\t'6/PPP\'s byte 0x01 first; a socket whose READY gets no answer within the liveness window is followed by one that says the word "READY", and the spelling answered is kept'
rfc\t'Always 6/PPP\'s bytes 0x01 and 0x02'
guide-cpp\t'Always the words "READY" and "HEARTBEAT" of the Guide\'s C++ ppqueue and spqueue'"
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l service -d 'Majordomo service to register for (mdp, mdp2)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l heartbeat -d 'Heartbeat interval [default: 1s, or 2500ms for mdp/mdp2]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l liveness -d 'Silent heartbeat intervals after which the queue or broker is taken for dead' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l reconnect -d 'First reconnect delay after losing the queue or broker; doubles each time [default: 1s, or 2500ms for mdp/mdp2]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l reconnect-max -d 'Longest reconnect delay' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l name -d 'Readable identity prefix; each new socket is NAME-1-<32 random hex digits>, NAME-2-<…>, …, so logs name the worker and nobody can guess its identity [default: w<pid>]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l concurrency -d 'Serve up to N requests at once, their --exec commands running in parallel: with pirate broker on one connection granted credit N (a "credit=N" READY frame the Guide\'s brokers ignore); otherwise N sessions, each an ordinary worker to the queue or broker (its own socket and identity, READY, heartbeats, reconnect)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l exec -d 'Run `sh -c CMD` per request, body on stdin (frames one per line, bytes unchanged), and reply with its stdout' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l exec-timeout -d 'Kill a command still running after this long, with its whole process group; the request gets an `error:` reply [default: never]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l faults -d 'Start from a preset; the other fault flags override its values' -r -f -a "none\t'No faults unless other flags ask for them'
guide\t'The Guide\'s own test program for this role: lpserver (after 3 cycles crash 1/3, stall 2s 1/3, 1s work) or spworker/ppworker (after 3 cycles crash 1/5, stall 3s 1/5, 1s work)'"
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l crash-rate -d 'Probability of crashing (SIGKILL to itself) per request, e.g. 0.2 or 20%' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l overload-rate -d 'Probability of stalling ("CPU overload") per request' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l overload-for -d 'How long an overload stalls [default: 2s]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l faults-after -d 'Requests served normally before random faults start [default: 3]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l crash-after -d 'Crash deterministically on request N+1' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l work -d 'Simulated work per request [default: 0s]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l seed -d 'Seed of the fault generator (printed at start); replays a run' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l freeze-rate -d 'Probability per request of freezing: no reads, no heartbeats, as a hung process' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l freeze-for -d 'How long a freeze lasts [default: 5s]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l plain -d 'Log in with PLAIN (RFC 24) as USER:PASSWORD (visible to other local users in the process list)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l curve-server -d 'Speak CURVE (RFC 26, encrypted) to servers with this public key (Z85, 40 characters)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l curve-keys -d 'With --curve-server: this role\'s key pair, from FILE as `pirate generate keys` prints it [default: a new pair each run]' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand worker" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand worker" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand worker" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand worker" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pirate -n "__fish_pirate_using_subcommand worker" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l bind -d 'Endpoint to bind the broker\'s ROUTER socket to (clients and workers both connect here)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l heartbeat -d 'Heartbeat interval (7/MDP)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l liveness -d 'Silent heartbeat intervals after which a worker, idle or busy, is expired' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l request-ttl -d 'How long a request may wait for a worker of its service before it is dropped' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l max-queue -d 'Requests queued per service at most; a request beyond it is refused (the client retries). A backstop: --max-queue-bytes is what bounds memory' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l busy-timeout -d 'Disconnect a worker that holds one request this long without a reply (its request or reply was lost on the way, or it hangs while heartbeating); off unless given. Set it above your slowest request' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l max-queue-bytes -d 'Bytes of requests queued per service at most, each counted as its body, its client\'s address and 128 bytes (a request beyond it is refused); also the most one reply assembled from 0.2 PARTIALs for a 0.1 client may hold' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l max-broker-bytes -d 'Bytes the broker holds in all, queued requests and held PARTIALs of every service' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l state-bind -d 'Endpoint to bind the PUB socket this node\'s state is published on [default: tcp://*:5003 for the primary, tcp://*:5004 for the backup]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l peer-state -d 'The peer\'s state endpoint to subscribe to [default: tcp://localhost:5004 for the primary, tcp://localhost:5003 for the backup]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l state-heartbeat -d 'How often each node publishes its state; the peer is dead after two' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l on-split -d 'What a node does when, after it lost sight of its peer, it finds the peer active too (or passive too)' -r -f -a "resolve\t'Heal: the node that served no client while apart steps down to passive; if both served, the backup does; if both end passive, the primary takes over'
stop\t'The Guide\'s rule: both nodes stop with exit 69 (split brain)'"
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l auth-plain -d 'Require PLAIN log-ins (RFC 24) checked against FILE\'s `user:password` lines; PLAIN sends the password in clear, so use it on trusted networks only' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l auth-curve -d 'Require CURVE (RFC 26: encrypted, this server authenticated) with FILE\'s key pair, as `pirate generate keys` prints it; `client: KEY` lines in FILE let only those clients in' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l allow -d 'Let peers in only from this IP address or CIDR block (repeatable); others are refused' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l plain -d 'Log in with PLAIN (RFC 24) as USER:PASSWORD (visible to other local users in the process list)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l curve-server -d 'Speak CURVE (RFC 26, encrypted) to servers with this public key (Z85, 40 characters)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l curve-keys -d 'With --curve-server: this role\'s key pair, from FILE as `pirate generate keys` prints it [default: a new pair each run]' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l primary -d 'Run as the primary of a Binary Star pair (serves first; the backup takes over when it dies and a client asks it)'
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l backup -d 'Run as the backup of a Binary Star pair (serves only once the primary, seen active, has gone silent and a client asks)'
complete -c pirate -n "__fish_pirate_using_subcommand broker" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand broker" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand broker" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand broker" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pirate -n "__fish_pirate_using_subcommand broker" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l connect -d 'Endpoint of the Majordomo broker' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l dir -d 'Directory of the durable store (created if missing; one titanic per directory)' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l check -d 'Verify the store in DIR offline and print what a start would keep, cut off and set aside, changing nothing; exit 0 clean, 1 damaged, 2 unreadable or in use' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l heartbeat -d 'Heartbeat interval of the titanic.* workers (7/MDP)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l liveness -d 'Silent heartbeat intervals after which the broker is taken for dead' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l reconnect -d 'First reconnect delay after losing the broker; doubles up to 32s' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l retry-interval -d 'How long a pending request waits before it is sent to its service again' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l request-timeout -d 'How long one attempt to a service waits for its reply' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l max-request-bytes -d 'Largest request accepted (service name and frames); a bigger one is answered "500 request too big"' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l max-store-bytes -d 'New requests are answered "500 store full" while the live data in the store (requests and replies not yet closed) is past this' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l min-free -d 'New requests are answered "500 disk full" while the file system of --dir has less free space than this, kept for the replies of requests already accepted' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l faults -d 'Start from a preset; the other fault flags override its values' -r -f -a "none\t'No faults unless other flags ask for them'
guide\t'The Guide\'s own test program for this role: lpserver (after 3 cycles crash 1/3, stall 2s 1/3, 1s work) or spworker/ppworker (after 3 cycles crash 1/5, stall 3s 1/5, 1s work)'"
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l crash-rate -d 'Probability of crashing (SIGKILL to itself) per request, e.g. 0.2 or 20%' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l overload-rate -d 'Probability of stalling ("CPU overload") per request' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l overload-for -d 'How long an overload stalls [default: 2s]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l faults-after -d 'Requests served normally before random faults start [default: 3]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l crash-after -d 'Crash deterministically on request N+1' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l work -d 'Simulated work per request [default: 0s]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l seed -d 'Seed of the fault generator (printed at start); replays a run' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l plain -d 'Log in with PLAIN (RFC 24) as USER:PASSWORD (visible to other local users in the process list)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l curve-server -d 'Speak CURVE (RFC 26, encrypted) to servers with this public key (Z85, 40 characters)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l curve-keys -d 'With --curve-server: this role\'s key pair, from FILE as `pirate generate keys` prints it [default: a new pair each run]' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pirate -n "__fish_pirate_using_subcommand titanic" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -l seed -d 'Seed of the demonstration (printed at start; replays its schedule and faults)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -l out -d 'Write results.json, history.jsonl, report.html and each process\'s log into DIR' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -s h -l help -d 'Print help'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -f -a "run" -d 'Run a configurable topology under a seeded nemesis, then check the history'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -f -a "proxy" -d 'Message-level fault proxy between peers and a broker or queue'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -f -a "report" -d 'Render report.html again for a past run, from the files its --out DIR holds'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and not __fish_seen_subcommand_from run proxy report help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l pattern -d 'Pattern to run' -r -f -a "lazy\t'pirate server, clients straight to it'
simple\t'pirate queue --simple and REQ workers'
paranoid\t'pirate queue and 6/PPP workers'
majordomo\t'pirate broker and MDP workers'
titanic\t'pirate broker, MDP workers and pirate titanic; clients use --titanic'
bstar\t'a primary and a backup pirate server; clients fail over between them'
freelance\t'--workers Freelance servers, no broker; clients spread requests over them all'"
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l workers -d 'Workers, or Freelance servers (ignored for lazy: one server; bstar: a pair)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l clients -d 'Clients' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l requests -d 'Requests per client, at least (default: send for the whole --duration); with a nemesis, clients go on past R until every kind has struck and been recovered from' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l duration -d 'Length of the fault phase (healing and draining follow)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l max-extension -d 'Longest the fault phase goes on past --duration until every --nemesis kind has struck and a reply came after it (clients keep sending past --requests meanwhile); a kind still missing then makes the verdict indeterminate' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l drain-timeout -d 'Longest wait for clients to finish after healing' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l nemesis -d 'Nemesis faults to inject (comma-separated)' -r -f -a "kill\t'SIGKILL a worker (or the Lazy Pirate server), restart it after --restart-delay'
freeze\t'SIGSTOP a worker for --nemesis-freeze, then SIGCONT'
restart\t'SIGKILL the broker or queue and start it again on the same endpoints'
partition\t'--net namespaces: cut one host off from every other, silently, both ways (nft drop)'
split\t'--net namespaces: divide the hosts into two groups that only talk among themselves'
oneway\t'--net namespaces: drop one direction between two hosts that talk'
reset\t'--net namespaces: refuse one host\'s TCP at once, both ways (RST), a fast failure'
loss\t'--net namespaces: drop --loss of every packet between hosts (the kernel draws which)'
slow\t'--net namespaces: limit one host\'s bandwidth to --rate both ways (tc tbf)'
delay\t'--net namespaces: add --delay and --jitter on one host\'s link (tc netem: refused before the run where the kernel has no netem)'"
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l nemesis-interval -d 'Time between nemesis actions (0s: no nemesis)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l restart-delay -d 'How long a killed process stays down' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l nemesis-freeze -d 'How long the nemesis freezes a worker' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l net -d 'Where the processes live: loopback, or a host of their own each (network namespaces; root only), which the network kinds of --nemesis need' -r -f -a "loopback\t'Every process on 127.0.0.1 of this machine'
namespaces\t'Every process a host of its own: a network namespace with one address on a bridge in a namespace of the run\'s own (root only; needs ip, nft and tc)'"
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l ports -d 'Bind every endpoint of the topology on a port from LOW-HIGH (both included), for a host whose firewall opens only those; with --net namespaces each host has every port of its own, so the range is the ports used on every host' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l partition-for -d 'How long a network fault lasts before it heals (default: twice the liveness window, 6 × --heartbeat, so heartbeats must notice)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l loss -d 'Share of packets a `loss` fault drops, e.g. 5% (which packets: the kernel\'s draw, not the seed\'s; the schedule still replays with --seed)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l rate -d 'Bandwidth a `slow` fault leaves a host, as tc spells it: 1mbit, 512kbit, …' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l delay -d 'Latency a `delay` fault adds to a host\'s link, each way' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l jitter -d 'Jitter of a `delay` fault' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l heartbeat -d 'Heartbeat interval of every role (liveness 3)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l timeout -d 'Clients\' timeout per attempt' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l retries -d 'Clients\' attempts per request' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l busy-timeout -d 'Give the Paranoid queue or the Majordomo broker this --busy-timeout (frees workers whose request or reply a --proxy on the workers\' side dropped)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l window -d 'Requests in flight per client' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l faults -d 'Start from a preset; the other fault flags override its values' -r -f -a "none\t'No faults unless other flags ask for them'
guide\t'The Guide\'s own test program for this role: lpserver (after 3 cycles crash 1/3, stall 2s 1/3, 1s work) or spworker/ppworker (after 3 cycles crash 1/5, stall 3s 1/5, 1s work)'"
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l crash-rate -d 'Probability of crashing (SIGKILL to itself) per request, e.g. 0.2 or 20%' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l overload-rate -d 'Probability of stalling ("CPU overload") per request' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l overload-for -d 'How long an overload stalls [default: 2s]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l faults-after -d 'Requests served normally before random faults start [default: 3]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l crash-after -d 'Crash deterministically on request N+1' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l work -d 'Simulated work per request [default: 0s]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l seed -d 'Seed of the fault generator (printed at start); replays a run' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l freeze-rate -d 'Probability per request of freezing: no reads, no heartbeats, as a hung process' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l freeze-for -d 'How long a freeze lasts [default: 5s]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l worker-cmd -d 'Run each worker as this shell command instead of `pirate worker` ({endpoint} and {service} are replaced; majordomo only)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l connect -d 'Use the broker (majordomo) or queue frontend (simple, paranoid) at this endpoint instead of starting one' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l proxy -d 'Put a `pirate chaos proxy` between the clients or the workers and the rest' -r -f -a "clients\t'Between the clients and the broker, queue or server'
workers\t'Between the workers and the broker or queue'"
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l proxy-faults -d 'The proxy\'s fault flags, as one string, e.g. "--drop 10% --direction down"' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l security -d 'Secure every socket of the topology with generated credentials (written into --out, or a directory under the system\'s temporary one)' -r -f -a "none\t'No authentication'
plain\t'PLAIN: every binder requires one generated user and password, every connector logs in'
curve\t'CURVE: every binder has one generated server key, every connector encrypts to it'"
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l out -d 'Write results.json, history.jsonl, report.html and each process\'s log into DIR' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l replay -d 'Run again the configuration a past run recorded in DIR/results.json (its seed included); only --out, -v, -q and --json go beside it' -r -f -a "(__fish_complete_directories)"
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l strict -d 'Re-executions on workers make the verdict invalid (default: reported only)'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l auth-plain -d 'Require PLAIN log-ins (RFC 24) checked against FILE\'s `user:password` lines; PLAIN sends the password in clear, so use it on trusted networks only' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l auth-curve -d 'Require CURVE (RFC 26: encrypted, this server authenticated) with FILE\'s key pair, as `pirate generate keys` prints it; `client: KEY` lines in FILE let only those clients in' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l allow -d 'Let peers in only from this IP address or CIDR block (repeatable); others are refused' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l plain -d 'Log in with PLAIN (RFC 24) as USER:PASSWORD (visible to other local users in the process list)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l curve-server -d 'Speak CURVE (RFC 26, encrypted) to servers with this public key (Z85, 40 characters)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l curve-keys -d 'With --curve-server: this role\'s key pair, from FILE as `pirate generate keys` prints it [default: a new pair each run]' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l frontend -d 'Endpoint to bind for peers (ROUTER), e.g. tcp://*:6555' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l backend -d 'Endpoint of the real queue, broker or server (one DEALER per peer connects here)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l direction -d 'Which messages may be faulted: up (frontend→backend), down (backend→frontend), both' -r -f -a "up\t'Frontend → backend: requests from clients, or replies and heartbeats from workers'
down\t'Backend → frontend: replies to clients, or requests and heartbeats to workers'
both\t'Both ways'"
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l command -d 'Only fault messages with a frame equal to this: 0x hex (0x04 = MDP HEARTBEAT) or text' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l after -d 'Selected messages forwarded untouched before faults start' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l count -d 'At most N faults in total' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l drop -d 'Probability of dropping a message, e.g. 0.3 or 30%' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l delay -d 'Delay delayed messages by this much (plus --jitter)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l jitter -d 'Add a uniform random extra delay between 0 and this' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l delay-rate -d 'Probability of delaying a message [default: 1 when --delay or --jitter is given]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l duplicate -d 'Probability of sending a message twice' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l reorder -d 'Hold messages until N are held (or --reorder-wait passed), then release them shuffled' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l reorder-wait -d 'Longest a message waits in the reorder window' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l corrupt -d 'Probability of flipping bits in one random frame' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l truncate -d 'Probability of cutting the last frame short (or dropping it if empty)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l blackhole -d 'Every EVERY, drop every selected message for FOR, e.g. 5s/1s' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l peer-timeout -d 'Close a peer\'s upstream connection after this long without traffic' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l seed -d 'Seed of the fault generator (printed at start); replays a run' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from proxy" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from report" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from report" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from report" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from report" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from report" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from report" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from report" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from report" -s h -l help -d 'Print help'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from report" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from help" -f -a "run" -d 'Run a configurable topology under a seeded nemesis, then check the history'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from help" -f -a "proxy" -d 'Message-level fault proxy between peers and a broker or queue'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from help" -f -a "report" -d 'Render report.html again for a past run, from the files its --out DIR holds'
complete -c pirate -n "__fish_pirate_using_subcommand chaos; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pirate -n "__fish_pirate_using_subcommand generate" -l out -d 'Directory to write into [default: man/ or completions/]; `-` writes one --shell\'s completions to stdout' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand generate" -l shell -d 'Completions for this shell only [default: bash, zsh and fish]' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c pirate -n "__fish_pirate_using_subcommand generate" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand generate" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand generate" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand generate" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand generate" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand generate" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand generate" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand generate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pirate -n "__fish_pirate_using_subcommand generate" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l connect -d 'Endpoint of the broker (with --service) or Lazy Pirate server to load' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l service -d 'Speak Majordomo to a broker and load this service' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l protocol -d 'Client protocol: bare Lazy Pirate, or Majordomo 0.1 / 0.2 [default: lazy, or mdp with --service]' -r -f -a "lazy\t'Bare requests to a Lazy Pirate server or a Pirate queue'
mdp\t'7/MDP, Majordomo 0.1 (MDPC01)'
mdp2\t'18/MDP, Majordomo 0.2 (MDPC02, streamed PARTIAL/FINAL replies)'"
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l clients -d 'Clients at once, each a thread with a connection (or, to a foreign broker, a socket per request) of its own' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l window -d 'Requests in flight per client (with --rate, requests due while the window is full wait, and that wait counts in their latency)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l rate -d 'Open model: R requests per second over every client, each with an intended start time, its latency measured from then (a stall shows, as in wrk2); without it each client sends as soon as its window has room (closed model)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l warmup -d 'Send requests for this long first without measuring them (counts, latencies and --requests/--duration start after it)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l requests -d 'Requests in all, shared by every client [default: 10000 unless --duration]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l duration -d 'Run this long instead of a number of requests (the requests in flight then finish)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l size -d 'Bytes in each request body (its number, then dots); sizes take k/M or KiB/MiB' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l timeout -d 'How long each attempt waits for its reply' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l retries -d 'Attempts per request, the first included, before the client abandons it' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l histogram -d 'Write the latency distribution to FILE as CSV (percentile,latency_ms,count), for plotting' -r -F
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l fail-if -d 'Fail the run (exit 1) if EXPR holds: METRIC<VALUE, <=, > or >=, e.g. p99>5ms, lost>0, rate<1000; metrics p50 p90 p99 p99.9 max mean stddev (with us/ms/s), lost wrong late retries answered rate; repeatable' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l max-message -d 'Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is disconnected before it is buffered. Also bounds an --exec command\'s output. Sizes take KiB/MiB/GiB (1024) or k/M/G (1000)' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l max-connections -d 'Connections each bound TCP socket keeps open at once; one more is closed right after it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at most 10000]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l max-connections-per-address -d 'Of those, connections from one IP address. 0: no limit [default: a quarter of --max-connections]' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l handshake-timeout -d 'Close a connection whose peer has not finished its ZMTP handshake (greeting, security, READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their descriptors back' -r -f
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l expect-echo -d 'Check that every reply equals its request (an echo service); one that does not is counted wrong and retried'
complete -c pirate -n "__fish_pirate_using_subcommand bench" -s v -l verbose -d 'Trace every frame in and out on stderr, in the Guide\'s dump style'
complete -c pirate -n "__fish_pirate_using_subcommand bench" -s q -l quiet -d 'Print nothing but data and errors'
complete -c pirate -n "__fish_pirate_using_subcommand bench" -l json -d 'Write JSON Lines on stdout: one object per event or reply, then a summary object'
complete -c pirate -n "__fish_pirate_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pirate -n "__fish_pirate_using_subcommand bench" -s V -l version -d 'Print version'
complete -c pirate -n "__fish_pirate_using_subcommand help; and not __fish_seen_subcommand_from server client queue worker broker titanic chaos generate bench help" -f -a "server" -d 'Lazy Pirate server (REP), or one of a Binary Star pair (--primary/--backup) or a Freelance server (--freelance): echoes (or runs --exec), with fault injection'
complete -c pirate -n "__fish_pirate_using_subcommand help; and not __fish_seen_subcommand_from server client queue worker broker titanic chaos generate bench help" -f -a "client" -d 'Client for every pattern: Lazy Pirate, Majordomo (--service), Titanic (--titanic), Binary Star (repeated --connect) or Freelance (--freelance); timeouts and retries'
complete -c pirate -n "__fish_pirate_using_subcommand help; and not __fish_seen_subcommand_from server client queue worker broker titanic chaos generate bench help" -f -a "queue" -d 'Simple or Paranoid Pirate queue: load-balances clients over workers, heartbeating them'
complete -c pirate -n "__fish_pirate_using_subcommand help; and not __fish_seen_subcommand_from server client queue worker broker titanic chaos generate bench help" -f -a "worker" -d 'Worker for the Pirate queues: echoes (or runs --exec), heartbeats, reconnects, misbehaves'
complete -c pirate -n "__fish_pirate_using_subcommand help; and not __fish_seen_subcommand_from server client queue worker broker titanic chaos generate bench help" -f -a "broker" -d 'Majordomo broker (7/MDP 0.1 and 18/MDP 0.2, 8/MMI): routes requests to workers by service'
complete -c pirate -n "__fish_pirate_using_subcommand help; and not __fish_seen_subcommand_from server client queue worker broker titanic chaos generate bench help" -f -a "titanic" -d 'Titanic (9/TSP): stores requests on disk, forwards them to services through a broker, keeps replies until the client closes them'
complete -c pirate -n "__fish_pirate_using_subcommand help; and not __fish_seen_subcommand_from server client queue worker broker titanic chaos generate bench help" -f -a "chaos" -d 'Run a whole topology, break it on purpose, and check that nothing was lost (with no subcommand: the built-in 30-second demonstration)'
complete -c pirate -n "__fish_pirate_using_subcommand help; and not __fish_seen_subcommand_from server client queue worker broker titanic chaos generate bench help" -f -a "generate" -d 'Write the man pages or shell completions generated from these definitions, or print a CURVE key pair'
complete -c pirate -n "__fish_pirate_using_subcommand help; and not __fish_seen_subcommand_from server client queue worker broker titanic chaos generate bench help" -f -a "bench" -d 'Load generator: N clients x W requests in flight against a Majordomo broker (--service) or a Lazy Pirate server; prints req/s and latency percentiles'
complete -c pirate -n "__fish_pirate_using_subcommand help; and not __fish_seen_subcommand_from server client queue worker broker titanic chaos generate bench help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pirate -n "__fish_pirate_using_subcommand help; and __fish_seen_subcommand_from chaos" -f -a "run" -d 'Run a configurable topology under a seeded nemesis, then check the history'
complete -c pirate -n "__fish_pirate_using_subcommand help; and __fish_seen_subcommand_from chaos" -f -a "proxy" -d 'Message-level fault proxy between peers and a broker or queue'
complete -c pirate -n "__fish_pirate_using_subcommand help; and __fish_seen_subcommand_from chaos" -f -a "report" -d 'Render report.html again for a past run, from the files its --out DIR holds'
