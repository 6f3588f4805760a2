_pirate() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="pirate"
                ;;
            pirate,bench)
                cmd="pirate__subcmd__bench"
                ;;
            pirate,broker)
                cmd="pirate__subcmd__broker"
                ;;
            pirate,chaos)
                cmd="pirate__subcmd__chaos"
                ;;
            pirate,client)
                cmd="pirate__subcmd__client"
                ;;
            pirate,generate)
                cmd="pirate__subcmd__generate"
                ;;
            pirate,help)
                cmd="pirate__subcmd__help"
                ;;
            pirate,queue)
                cmd="pirate__subcmd__queue"
                ;;
            pirate,server)
                cmd="pirate__subcmd__server"
                ;;
            pirate,titanic)
                cmd="pirate__subcmd__titanic"
                ;;
            pirate,worker)
                cmd="pirate__subcmd__worker"
                ;;
            pirate__subcmd__chaos,help)
                cmd="pirate__subcmd__chaos__subcmd__help"
                ;;
            pirate__subcmd__chaos,proxy)
                cmd="pirate__subcmd__chaos__subcmd__proxy"
                ;;
            pirate__subcmd__chaos,report)
                cmd="pirate__subcmd__chaos__subcmd__report"
                ;;
            pirate__subcmd__chaos,run)
                cmd="pirate__subcmd__chaos__subcmd__run"
                ;;
            pirate__subcmd__chaos__subcmd__help,help)
                cmd="pirate__subcmd__chaos__subcmd__help__subcmd__help"
                ;;
            pirate__subcmd__chaos__subcmd__help,proxy)
                cmd="pirate__subcmd__chaos__subcmd__help__subcmd__proxy"
                ;;
            pirate__subcmd__chaos__subcmd__help,report)
                cmd="pirate__subcmd__chaos__subcmd__help__subcmd__report"
                ;;
            pirate__subcmd__chaos__subcmd__help,run)
                cmd="pirate__subcmd__chaos__subcmd__help__subcmd__run"
                ;;
            pirate__subcmd__help,bench)
                cmd="pirate__subcmd__help__subcmd__bench"
                ;;
            pirate__subcmd__help,broker)
                cmd="pirate__subcmd__help__subcmd__broker"
                ;;
            pirate__subcmd__help,chaos)
                cmd="pirate__subcmd__help__subcmd__chaos"
                ;;
            pirate__subcmd__help,client)
                cmd="pirate__subcmd__help__subcmd__client"
                ;;
            pirate__subcmd__help,generate)
                cmd="pirate__subcmd__help__subcmd__generate"
                ;;
            pirate__subcmd__help,help)
                cmd="pirate__subcmd__help__subcmd__help"
                ;;
            pirate__subcmd__help,queue)
                cmd="pirate__subcmd__help__subcmd__queue"
                ;;
            pirate__subcmd__help,server)
                cmd="pirate__subcmd__help__subcmd__server"
                ;;
            pirate__subcmd__help,titanic)
                cmd="pirate__subcmd__help__subcmd__titanic"
                ;;
            pirate__subcmd__help,worker)
                cmd="pirate__subcmd__help__subcmd__worker"
                ;;
            pirate__subcmd__help__subcmd__chaos,proxy)
                cmd="pirate__subcmd__help__subcmd__chaos__subcmd__proxy"
                ;;
            pirate__subcmd__help__subcmd__chaos,report)
                cmd="pirate__subcmd__help__subcmd__chaos__subcmd__report"
                ;;
            pirate__subcmd__help__subcmd__chaos,run)
                cmd="pirate__subcmd__help__subcmd__chaos__subcmd__run"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        pirate)
            opts="-v -q -h -V --verbose --quiet --json --max-message --help --version server client queue worker broker titanic chaos generate bench help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__bench)
            opts="-v -q -h -V --connect --service --protocol --clients --window --requests --duration --size --expect-echo --timeout --retries --verbose --quiet --json --max-message --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --connect)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --service)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --protocol)
                    COMPREPLY=($(compgen -W "lazy mdp mdp2" -- "${cur}"))
                    return 0
                    ;;
                --clients)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --window)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --requests)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --duration)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --size)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --retries)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__broker)
            opts="-v -q -h -V --bind --heartbeat --liveness --request-ttl --max-queue --busy-timeout --max-queue-bytes --max-broker-bytes --primary --backup --state-bind --peer-state --state-heartbeat --auth-plain --auth-curve --allow --plain --curve-server --curve-keys --verbose --quiet --json --max-message --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --bind)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --heartbeat)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --liveness)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --request-ttl)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-queue)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --busy-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-queue-bytes)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-broker-bytes)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-bind)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --peer-state)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-heartbeat)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-plain)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-curve)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --allow)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --plain)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-server)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-keys)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__chaos)
            opts="-v -q -h -V --seed --out --verbose --quiet --json --max-message --help --version run proxy report help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --seed)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --out)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__chaos__subcmd__help)
            opts="run proxy report help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__chaos__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__chaos__subcmd__help__subcmd__proxy)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__chaos__subcmd__help__subcmd__report)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__chaos__subcmd__help__subcmd__run)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__chaos__subcmd__proxy)
            opts="-v -q -h -V --auth-plain --auth-curve --allow --plain --curve-server --curve-keys --frontend --backend --direction --command --after --count --drop --delay --jitter --delay-rate --duplicate --reorder --reorder-wait --corrupt --truncate --blackhole --peer-timeout --seed --verbose --quiet --json --max-message --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --auth-plain)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-curve)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --allow)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --plain)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-server)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-keys)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --frontend)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backend)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --direction)
                    COMPREPLY=($(compgen -W "up down both" -- "${cur}"))
                    return 0
                    ;;
                --command)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --after)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --count)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drop)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --delay)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --jitter)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --delay-rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --duplicate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reorder)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reorder-wait)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --corrupt)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --truncate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --blackhole)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --peer-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --seed)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__chaos__subcmd__report)
            opts="-v -q -h -V --verbose --quiet --json --max-message --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__chaos__subcmd__run)
            opts="-v -q -h -V --pattern --workers --clients --requests --duration --max-extension --drain-timeout --nemesis --nemesis-interval --restart-delay --nemesis-freeze --net --partition-for --loss --rate --delay --jitter --heartbeat --timeout --retries --busy-timeout --window --faults --crash-rate --overload-rate --overload-for --faults-after --crash-after --work --seed --freeze-rate --freeze-for --worker-cmd --connect --proxy --proxy-faults --security --strict --out --verbose --quiet --json --max-message --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --pattern)
                    COMPREPLY=($(compgen -W "lazy simple paranoid majordomo titanic bstar freelance" -- "${cur}"))
                    return 0
                    ;;
                --workers)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --clients)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --requests)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --duration)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-extension)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drain-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --nemesis)
                    COMPREPLY=($(compgen -W "kill freeze restart partition split oneway reset loss slow delay" -- "${cur}"))
                    return 0
                    ;;
                --nemesis-interval)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --restart-delay)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --nemesis-freeze)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --net)
                    COMPREPLY=($(compgen -W "loopback namespaces" -- "${cur}"))
                    return 0
                    ;;
                --partition-for)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --loss)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --delay)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --jitter)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --heartbeat)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --retries)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --busy-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --window)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --faults)
                    COMPREPLY=($(compgen -W "none guide" -- "${cur}"))
                    return 0
                    ;;
                --crash-rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --overload-rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --overload-for)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --faults-after)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crash-after)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --work)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --seed)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --freeze-rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --freeze-for)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --worker-cmd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --connect)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --proxy)
                    COMPREPLY=($(compgen -W "clients workers" -- "${cur}"))
                    return 0
                    ;;
                --proxy-faults)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --security)
                    COMPREPLY=($(compgen -W "none plain curve" -- "${cur}"))
                    return 0
                    ;;
                --out)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__client)
            opts="-0 -v -q -h -V --null --whole --connect --settle --timeout --retries --count --interval --expect-echo --service --protocol --titanic --poll-interval --window --freelance --ping --server-ttl --plain --curve-server --curve-keys --verbose --quiet --json --max-message --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --connect)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --settle)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --retries)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --count)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --interval)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --service)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --protocol)
                    COMPREPLY=($(compgen -W "lazy mdp mdp2" -- "${cur}"))
                    return 0
                    ;;
                --poll-interval)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --window)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ping)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --server-ttl)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --plain)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-server)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-keys)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__generate)
            opts="-v -q -h -V --out --shell --verbose --quiet --json --max-message --help --version man completions keys schema"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --out)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --shell)
                    COMPREPLY=($(compgen -W "bash elvish fish powershell zsh" -- "${cur}"))
                    return 0
                    ;;
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help)
            opts="server client queue worker broker titanic chaos generate bench help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__bench)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__broker)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__chaos)
            opts="run proxy report"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__chaos__subcmd__proxy)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__chaos__subcmd__report)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__chaos__subcmd__run)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__client)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__generate)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__queue)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__server)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__titanic)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__help__subcmd__worker)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__queue)
            opts="-v -q -h -V --frontend --backend --heartbeat --liveness --simple --busy-timeout --auth-plain --auth-curve --allow --verbose --quiet --json --max-message --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --frontend)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backend)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --heartbeat)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --liveness)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --busy-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-plain)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-curve)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --allow)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__server)
            opts="-v -q -h -V --bind --exec --exec-timeout --faults --crash-rate --overload-rate --overload-for --faults-after --crash-after --work --seed --primary --backup --state-bind --peer-state --state-heartbeat --freelance --endpoint --auth-plain --auth-curve --allow --plain --curve-server --curve-keys --verbose --quiet --json --max-message --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --bind)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exec)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exec-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --faults)
                    COMPREPLY=($(compgen -W "none guide" -- "${cur}"))
                    return 0
                    ;;
                --crash-rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --overload-rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --overload-for)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --faults-after)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crash-after)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --work)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --seed)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-bind)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --peer-state)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-heartbeat)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --endpoint)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-plain)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --auth-curve)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --allow)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --plain)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-server)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-keys)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__titanic)
            opts="-v -q -h -V --connect --dir --heartbeat --liveness --reconnect --retry-interval --request-timeout --max-request-bytes --max-store-bytes --faults --crash-rate --overload-rate --overload-for --faults-after --crash-after --work --seed --plain --curve-server --curve-keys --verbose --quiet --json --max-message --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --connect)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --heartbeat)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --liveness)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reconnect)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --retry-interval)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --request-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-request-bytes)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-store-bytes)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --faults)
                    COMPREPLY=($(compgen -W "none guide" -- "${cur}"))
                    return 0
                    ;;
                --crash-rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --overload-rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --overload-for)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --faults-after)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crash-after)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --work)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --seed)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --plain)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-server)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-keys)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pirate__subcmd__worker)
            opts="-v -q -h -V --connect --protocol --service --heartbeat --liveness --reconnect --reconnect-max --name --concurrency --exec --exec-timeout --faults --crash-rate --overload-rate --overload-for --faults-after --crash-after --work --seed --freeze-rate --freeze-for --plain --curve-server --curve-keys --verbose --quiet --json --max-message --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --connect)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --protocol)
                    COMPREPLY=($(compgen -W "paranoid simple mdp mdp2" -- "${cur}"))
                    return 0
                    ;;
                --service)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --heartbeat)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --liveness)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reconnect)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reconnect-max)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --concurrency)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exec)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exec-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --faults)
                    COMPREPLY=($(compgen -W "none guide" -- "${cur}"))
                    return 0
                    ;;
                --crash-rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --overload-rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --overload-for)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --faults-after)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --crash-after)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --work)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --seed)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --freeze-rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --freeze-for)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --plain)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-server)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --curve-keys)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _pirate -o nosort -o bashdefault -o default pirate
else
    complete -F _pirate -o bashdefault -o default pirate
fi
