#!/usr/bin/env bash
# End-to-end relay throughput, sealpost side by side with Postfix (issue 10).
#
#   generator (sealpost-bench send) -> relay -> sink (sealpost-bench sink)
#
# Runs, in one go: the generator straight into the sink (no relay, to show
# the tools are not the bottleneck), then Postfix and sealpost as relays,
# each with STARTTLS on both legs and in plaintext. Prints one table.
# System `fleet` is sealpost as one node of a fleet (`[cluster]` on a local
# redis-server started here, the sink's destination limited fleet-wide and
# the tenant rated): beside `sealpost` it shows what Redis costs per message.
# Only 127.0.0.1 traffic; everything started here is stopped on exit.
# Needs root (installs Postfix from the distribution, runs its own instance
# under a private config and queue directory on non-default ports).
#
# Usage: benches/e2e.sh [--connections N] [--messages N] [--size BYTES]
#                       [--warmup N] [--repeat N] [--baseline-repeat N]
#                       [--systems "baseline postfix sealpost reference fleet"]
#                       [--modes "starttls plain"] [--no-install] [--no-build]
#                       [--keep]
# Defaults: 32 connections x 625 messages (20,000 measured a run) x 10240
# bytes, after a warm-up of 2,000 messages (rounded up to a multiple of the
# connections) sent through the same relay and drained before the measured
# phase; 3 measured runs per system and mode (in interleaved rounds), the
# table shows the median and the min-max spread.
# Environment (same meaning, flags win): E2E_CONNECTIONS, E2E_MESSAGES,
# E2E_SIZE, E2E_WARMUP, E2E_REPEAT, E2E_BASELINE_REPEAT (default: REPEAT),
# E2E_SYSTEMS, E2E_MODES, E2E_PORT_BASE (25250: sink, +1 relay, +2 Redis),
# E2E_PROCESS_LIMIT (200), E2E_CONCURRENCY (32, sealpost -> sink connections),
# E2E_POSTFIX_CONCURRENCY (64, Postfix -> sink connections: its best here),
# E2E_SEND_TIMEOUT (600 s a generator run), E2E_DRAIN_TIMEOUT (120 s),
# E2E_KEEP (keep the work directory), E2E_POSTFIX_SET ("name=value ..."
# main.cf overrides for Postfix, to try a setting), E2E_REFERENCE_BIN (a
# directory with another build's sealpost, run as the system "reference"
# beside this build's, to compare two builds in one run).
# See docs/benchmarks.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEMPLATES=$ROOT/benches/e2e

CONNECTIONS=${E2E_CONNECTIONS:-32}
MESSAGES=${E2E_MESSAGES:-625}
SIZE=${E2E_SIZE:-10240}
WARMUP=${E2E_WARMUP:-2000}
REPEAT=${E2E_REPEAT:-3}
BASELINE_REPEAT=${E2E_BASELINE_REPEAT:-}
SYSTEMS=${E2E_SYSTEMS:-baseline postfix sealpost}
MODES=${E2E_MODES:-starttls plain}
PORT_BASE=${E2E_PORT_BASE:-25250}
PROCESS_LIMIT=${E2E_PROCESS_LIMIT:-200}
CONCURRENCY=${E2E_CONCURRENCY:-32}
POSTFIX_CONCURRENCY=${E2E_POSTFIX_CONCURRENCY:-64}
SEND_TIMEOUT=${E2E_SEND_TIMEOUT:-600}
DRAIN_TIMEOUT=${E2E_DRAIN_TIMEOUT:-120}
KEEP=${E2E_KEEP:-}
POSTFIX_SET=${E2E_POSTFIX_SET:-}
INSTALL=1
BUILD=1

die() { echo "e2e: $*" >&2; exit 1; }
log() { echo "e2e: $*" >&2; }

while (($#)); do
    case $1 in
    --connections) CONNECTIONS=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --baseline-repeat) BASELINE_REPEAT=$2; shift 2 ;;
    --systems) SYSTEMS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --no-install) INSTALL=; shift ;;
    --no-build) BUILD=; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done

# Bounded in count and time: refuse absurd parameters.
check_int() { # NAME VALUE MIN MAX
    if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < $3 || $2 > $4)); then
        die "$1 must be an integer in $3..$4, got '$2'"
    fi
}
check_int connections "$CONNECTIONS" 1 1000
check_int messages "$MESSAGES" 1 10000
check_int size "$SIZE" 100 10485760
check_int warmup "$WARMUP" 0 100000
check_int repeat "$REPEAT" 1 20
BASELINE_REPEAT=${BASELINE_REPEAT:-$REPEAT}
check_int baseline-repeat "$BASELINE_REPEAT" 0 20
check_int port-base "$PORT_BASE" 1024 65000
check_int process-limit "$PROCESS_LIMIT" 10 2000
check_int concurrency "$CONCURRENCY" 1 1000
check_int postfix-concurrency "$POSTFIX_CONCURRENCY" 1 1000
check_int send-timeout "$SEND_TIMEOUT" 10 3600
check_int drain-timeout "$DRAIN_TIMEOUT" 5 3600
((CONNECTIONS * MESSAGES <= 1000000)) || die "at most 1,000,000 messages a run"
for m in $MODES; do [[ $m == starttls || $m == plain ]] || die "unknown mode: $m"; done
for s in $SYSTEMS; do [[ $s =~ ^(baseline|postfix|sealpost|reference|fleet)$ ]] || die "unknown system: $s"; done
if [[ " $SYSTEMS " == *" reference "* ]]; then
    [[ -x ${E2E_REFERENCE_BIN:-}/sealpost ]] || die "system reference needs E2E_REFERENCE_BIN=<dir holding another build's sealpost>"
fi
[[ $EUID -eq 0 ]] || die "run as root (installs Postfix and runs its own instance)"

TOTAL=$((CONNECTIONS * MESSAGES))
# The warm-up uses the same connections: WARMUP rounded up to a multiple.
WARM_PER_CONN=$(((WARMUP + CONNECTIONS - 1) / CONNECTIONS))
WARM_TOTAL=$((WARM_PER_CONN * CONNECTIONS))
SINK_PORT=$PORT_BASE
RELAY_PORT=$((PORT_BASE + 1))
REDIS_PORT=$((PORT_BASE + 2))

# ---------------------------------------------------------------- cleanup
WORK=
BG_PIDS=()        # background jobs started here (generator, sink, RSS sampler)
RUNNING_RELAY=    # the system whose relay is up: its <system>_stop runs on exit

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $RUNNING_RELAY ]]; then "${RUNNING_RELAY}_stop"; fi
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [[ -n $WORK ]]; then
        if [[ -n $KEEP || $rc -ne 0 ]]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() { # PID: drop from BG_PIDS once it has been waited for
    local keep=() p
    for p in "${BG_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    BG_PIDS=("${keep[@]}")
}

port_free() { [[ -z $(ss -Htln "sport = :$1") ]]; }

wait_port() { # PORT SECONDS: wait until something listens on 127.0.0.1:PORT
    local deadline=$((SECONDS + $2))
    until [[ -n $(ss -Htln "sport = :$1") ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# ---------------------------------------------------------------- install, build
install_packages() {
    local need=() cmd pkg
    local wanted="jq:jq openssl:openssl ss:iproute2 ps:procps timeout:coreutils"
    [[ " $SYSTEMS " == *" postfix "* ]] && wanted+=" postfix:postfix"
    [[ " $SYSTEMS " == *" fleet "* ]] && wanted+=" redis-server:redis-server"
    for cmd in $wanted; do
        pkg=${cmd#*:}
        command -v "${cmd%%:*}" >/dev/null || need+=("$pkg")
    done
    ((${#need[@]})) || return 0
    [[ -n $INSTALL ]] || die "missing packages: ${need[*]} (run without --no-install)"
    log "installing ${need[*]}"
    # "No configuration": the package creates no /etc/postfix/main.cf, so the
    # distribution's own postfix service has nothing to start and never holds
    # a port; this script only runs its private instance (postfix -c DIR).
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "${need[@]}"; then
        apt-get update
        apt-get install -y "${need[@]}"
    fi
}

build() {
    command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (rust-version in Cargo.toml)"
    if [[ -n $BUILD ]]; then
        log "building sealpost-bench and sealpost (release)"
        (cd "$ROOT" && cargo build --release -p sealpost -p sealpost-bench)
    fi
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
    [[ -x $BIN/sealpost-bench ]] || die "$BIN/sealpost-bench missing (build it or drop --no-build)"
}

# ---------------------------------------------------------------- generator, sink
# start_sink NAME MODE: sink on 127.0.0.1:SINK_PORT expecting the warm-up and
# the measured messages; sets SINK_PID and SINK_OUT.
start_sink() {
    local tls=()
    [[ $2 == starttls ]] && tls=(--tls-self-signed)
    port_free "$SINK_PORT" || die "port $SINK_PORT is in use (set E2E_PORT_BASE)"
    SINK_OUT=$WORK/$1-sink.out
    # Bounded: two generator runs, two drains, and margin.
    timeout $((2 * SEND_TIMEOUT + 2 * DRAIN_TIMEOUT + 60)) "$BIN/sealpost-bench" sink \
        --listen "127.0.0.1:$SINK_PORT" "${tls[@]}" --expect $((WARM_TOTAL + TOTAL)) \
        --idle-timeout "$DRAIN_TIMEOUT" >"$SINK_OUT" 2>&1 &
    SINK_PID=$!
    BG_PIDS+=("$SINK_PID")
    wait_port "$SINK_PORT" 15 || die "sink did not listen: $(cat "$SINK_OUT")"
}

# wait_sink: waits (bounded by its own timeouts) for the sink to stop.
wait_sink() {
    wait "$SINK_PID" || log "sink exited with $? (see $SINK_OUT)"
    forget_pid "$SINK_PID"
}

# run_sender NAME MODE PORT PER_CONNECTION: sets SEND_OUT.
run_sender() {
    local tls=()
    [[ $2 == starttls ]] && tls=(--starttls)
    SEND_OUT=$WORK/$1-send.out
    # In the background so that a signal to this script runs its trap at once.
    timeout "$SEND_TIMEOUT" "$BIN/sealpost-bench" send --to "127.0.0.1:$3" \
        --connections "$CONNECTIONS" --messages-per-connection "$4" \
        --size "$SIZE" "${tls[@]}" --run-id "$1" >"$SEND_OUT" 2>&1 &
    local pid=$!
    BG_PIDS+=("$pid")
    wait "$pid" || log "generator exited with $? (see $SEND_OUT)"
    forget_pid "$pid"
}

json_of() { grep '^{' "$1" | tail -n 1 || true; }

# warm_up NAME MODE PORT [SYSTEM]: sends WARM_TOTAL messages, then (with a
# relay) waits, at most DRAIN_TIMEOUT seconds, until the relay's queue is
# empty, so that every warm-up message has reached the sink before the
# measured phase starts. Sets WARM_CHECK (ok or why not).
warm_up() {
    local name=$1-warmup n=? deadline accepted
    WARM_CHECK=ok
    ((WARM_TOTAL > 0)) || return 0
    log "$1: warm-up, $WARM_TOTAL messages"
    run_sender "$name" "$2" "$3" "$WARM_PER_CONN"
    accepted=$(jq -r '.accepted // 0' <<<"$(json_of "$SEND_OUT")" 2>/dev/null || echo 0)
    [[ $accepted == "$WARM_TOTAL" ]] || WARM_CHECK="warm-up accepted $accepted of $WARM_TOTAL"
    [[ -n ${4:-} ]] || return 0
    deadline=$((SECONDS + DRAIN_TIMEOUT))
    while n=$("${4}_queued") && [[ $n != 0 ]] && ((SECONDS < deadline)); do sleep 0.2; done
    if [[ $n != 0 && $WARM_CHECK == ok ]]; then WARM_CHECK="warm-up not drained: $n left"; fi
    return 0
}

# ---------------------------------------------------------------- RSS sampling
# sample_rss SYSTEM OUT: every 0.5 s sums RSS and PSS (KiB) of the pids that
# <SYSTEM>_pids prints and writes the peaks to OUT. Runs until killed.
sample_rss() {
    local peak_rss=0 peak_pss=0 pids rss pss
    while :; do
        pids=$("${1}_pids" | paste -sd, -)
        if [[ -n $pids ]]; then
            read -r rss pss < <(ps -o rss=,pss= -p "$pids" | awk '{r += $1; p += $2} END {print r + 0, p + 0}')
            ((rss > peak_rss)) && peak_rss=$rss
            ((pss > peak_pss)) && peak_pss=$pss
            echo "$peak_rss $peak_pss" >"$2"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------- results
# One entry per measured run:
# "system|mode|round|accepted/s|delivered/s|p99 ms|peak RSS KiB|peak PSS KiB|check|load before|load after"
RESULTS=()
FAILED=0
WARM_CHECK=ok

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# record SYSTEM MODE ROUND RSS_FILE DRAINED LOAD_BEFORE: checks counts,
# computes the measured phase's rates (the warm-up is excluded: the sink's
# count includes it, and it had all arrived before the measured phase).
record() {
    local system=$1 mode=$2 round=$3 rss_file=$4 drained=$5 load_before=$6 send sink check=ok
    send=$(json_of "$SEND_OUT")
    sink=$(json_of "$SINK_OUT")
    [[ -n $send ]] || send='{}'
    [[ -n $sink ]] || sink='{}'
    local accepted sent unique dups noid start last acc_rate p99 delivered rss=- pss=-
    sent=$(jq -r '.sent // 0' <<<"$send")
    accepted=$(jq -r '.accepted // 0' <<<"$send")
    acc_rate=$(jq -r '.msgs_per_s // 0' <<<"$send")
    p99=$(jq -r '.latency_ms.p99 // "-"' <<<"$send")
    start=$(jq -r '.start_unix_ms // 0' <<<"$send")
    unique=$(jq -r '.unique // 0' <<<"$sink")
    unique=$((unique - WARM_TOTAL))
    dups=$(jq -r '.duplicates // 0' <<<"$sink")
    noid=$(jq -r '.without_id // 0' <<<"$sink")
    last=$(jq -r '.last_receipt_unix_ms // 0' <<<"$sink")
    delivered=$(awk -v n="$unique" -v a="$start" -v b="$last" \
        'BEGIN { if (b > a && n > 0) printf "%.1f", n * 1000 / (b - a); else print 0 }')
    if [[ $sent -ne $TOTAL ]]; then check="sent $sent of $TOTAL"; fi
    if [[ $accepted -ne $sent ]]; then check="accepted $accepted of $sent"; fi
    if [[ $unique -ne $accepted ]]; then check="arrived $unique of $accepted accepted"; fi
    if [[ $dups -ne 0 ]]; then check="$dups duplicates"; fi
    if [[ $noid -ne 0 ]]; then check="$noid messages without id (bounces?)"; fi
    if [[ $drained != yes ]]; then check="queue not drained: $drained"; fi
    if [[ $WARM_CHECK != ok ]]; then check=$WARM_CHECK; fi
    [[ $check == ok ]] || FAILED=1
    if [[ -n $rss_file && -s $rss_file ]]; then read -r rss pss <"$rss_file"; fi
    log "$system/$mode run $round: sent $sent accepted $accepted arrived $unique dups $dups, $acc_rate accepted/s, $delivered delivered/s, p99 $p99 ms, peak RSS $rss KiB PSS $pss KiB, load $load_before -> $(loadavg): $check"
    RESULTS+=("$system|$mode|$round|$acc_rate|$delivered|$p99|$rss|$pss|$check|$load_before|$(loadavg)")
}

skip() { # SYSTEM MODE ROUND REASON
    log "$1/$2: $4"
    RESULTS+=("$1|$2|$3|-|-|-|-|-|$1: $4|$(loadavg)|$(loadavg)")
}

# ---------------------------------------------------------------- baseline
baseline_run() { # MODE ROUND: generator straight into the sink
    local name=baseline-$1-$2 load_before
    load_before=$(loadavg)
    log "$name: generator -> sink"
    start_sink "$name" "$1"
    warm_up "$name" "$1" "$SINK_PORT"
    log "$name: measured, $TOTAL messages"
    run_sender "$name" "$1" "$SINK_PORT" "$MESSAGES"
    wait_sink
    record baseline "$1" "$2" "" yes "$load_before"
}

# ---------------------------------------------------------------- relay runs
# A relay system S provides:
#   S_available        prints why S cannot relay and fails, or succeeds
#   S_start MODE       starts S on 127.0.0.1:RELAY_PORT relaying to SINK_PORT
#   S_pids             prints the pids whose memory counts as S's
#   S_queued           prints how many messages S still holds (0 = drained)
#   S_stop             stops everything S_start started (idempotent)
relay_run() { # SYSTEM MODE ROUND
    local system=$1 mode=$2 round=$3 name=$1-$2-$3 reason sampler rss_file drained=yes deadline n load_before
    if ! reason=$("${system}_available"); then
        skip "$system" "$mode" "$round" "$reason"
        return 0
    fi
    load_before=$(loadavg)
    port_free "$RELAY_PORT" || die "port $RELAY_PORT is in use (set E2E_PORT_BASE)"
    log "$name: generator -> $system -> sink"
    start_sink "$name" "$mode"
    RUNNING_RELAY=$system
    "${system}_start" "$mode" "$round"
    rss_file=$WORK/$name-rss
    sample_rss "$system" "$rss_file" &
    sampler=$!
    BG_PIDS+=("$sampler")
    warm_up "$name" "$mode" "$RELAY_PORT" "$system"
    log "$name: measured, $TOTAL messages"
    run_sender "$name" "$mode" "$RELAY_PORT" "$MESSAGES"
    wait_sink
    # The sink stops at all distinct messages or after DRAIN_TIMEOUT idle
    # seconds; then whatever the relay still holds is a failure.
    deadline=$((SECONDS + 10))
    while n=$("${system}_queued") && [[ $n != 0 ]] && ((SECONDS < deadline)); do sleep 0.5; done
    [[ $n == 0 ]] || drained="$n left"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    forget_pid "$sampler"
    "${system}_stop"
    RUNNING_RELAY=
    record "$system" "$mode" "$round" "$rss_file" "$drained" "$load_before"
}

# ---------------------------------------------------------------- Postfix
PF_DIR=
postfix_available() {
    command -v postfix >/dev/null || { echo "postfix not installed"; return 1; }
}

render() { # TEMPLATE OUT NAME=VALUE...
    local template=$1 out=$2 expr=() kv
    shift 2
    for kv in "$@"; do expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${expr[@]}" "$template" >"$out"
    ! grep -n '@[A-Z_]*@' "$out" || die "unrendered placeholder in $out"
}

postfix_start() { # MODE ROUND
    local level=none
    [[ $1 == starttls ]] && level=encrypt
    PF_DIR=$WORK/postfix-$1-$2
    mkdir -p "$PF_DIR/conf" "$PF_DIR/queue" "$PF_DIR/data"
    chown postfix:postfix "$PF_DIR/data"
    render "$TEMPLATES/postfix-main.cf.in" "$PF_DIR/conf/main.cf" \
        QUEUE_DIR="$PF_DIR/queue" DATA_DIR="$PF_DIR/data" LOG_FILE="$PF_DIR/postfix.log" \
        SINK_PORT="$SINK_PORT" PROCESS_LIMIT="$PROCESS_LIMIT" CONCURRENCY="$POSTFIX_CONCURRENCY" \
        CERT_FILE="$WORK/relay-cert.pem" KEY_FILE="$WORK/relay-key.pem" SMTP_TLS_LEVEL="$level"
    render "$TEMPLATES/postfix-master.cf.in" "$PF_DIR/conf/master.cf" RELAY_PORT="$RELAY_PORT"
    # E2E_POSTFIX_SET="name=value ...": main.cf overrides, to try a setting.
    local kv
    for kv in $POSTFIX_SET; do postconf -c "$PF_DIR/conf" -e "$kv"; done
    postfix -c "$PF_DIR/conf" check
    postfix -c "$PF_DIR/conf" start
    wait_port "$RELAY_PORT" 20 || die "postfix did not listen on $RELAY_PORT: $(tail -n 20 "$PF_DIR/postfix.log")"
}

postfix_master_pid() {
    [[ -n $PF_DIR && -s $PF_DIR/queue/pid/master.pid ]] || return 0
    local pid
    pid=$(tr -d ' \n' <"$PF_DIR/queue/pid/master.pid")
    [[ -d /proc/$pid ]] && echo "$pid"
    return 0
}

postfix_pids() { # the master and its children (smtpd, cleanup, qmgr, smtp, tlsproxy, ...)
    local master
    master=$(postfix_master_pid)
    [[ -n $master ]] || return 0
    echo "$master"
    pgrep -P "$master" || true
}

postfix_queued() { # queue files not yet delivered (maildrop, incoming, active, deferred, hold)
    find "$PF_DIR/queue/maildrop" "$PF_DIR/queue/incoming" "$PF_DIR/queue/active" \
        "$PF_DIR/queue/deferred" "$PF_DIR/queue/hold" -type f 2>/dev/null | wc -l
}

postfix_stop() {
    local master deadline
    master=$(postfix_master_pid)
    [[ -n $master ]] || return 0
    postfix -c "$PF_DIR/conf" stop >/dev/null 2>&1 || true
    deadline=$((SECONDS + 15))
    while [[ -d /proc/$master ]] && ((SECONDS < deadline)); do sleep 0.2; done
    if [[ -d /proc/$master ]]; then
        postfix -c "$PF_DIR/conf" abort >/dev/null 2>&1 || kill -KILL "$master" 2>/dev/null || true
    fi
}

# ---------------------------------------------------------------- sealpost
# The same shape as Postfix: durable queue (250 only after the group
# commit), STARTTLS offered with the same certificate, onward to
# [127.0.0.1]:SINK_PORT with TLS required in the starttls run (route level
# mandatory) and none offered in plain. The onward hop is the route of the
# managed domain the generator writes to (sink.bench.invalid), so no DNS
# is involved, as with Postfix's relayhost.
SP_DIR=
SP_PID=
SP_BIN=            # the sealpost binary of the running relay (this build's or the reference's)
SP_CLUSTER=        # a [cluster] section to add (system fleet)
sealpost_available() { # [BINARY]
    local bin=${1:-${BIN:-}/sealpost}
    [[ -x $bin ]] || { echo "sealpost binary not built"; return 1; }
    local probe
    probe=$(mktemp -d)
    sealpost_write_config "$probe" starttls
    if ! "$bin" --config "$probe/sealpost.toml" config check >/dev/null 2>&1; then
        rm -rf "$probe"
        echo "sealpost refuses the benchmark configuration (run config check on it)"
        return 1
    fi
    rm -rf "$probe"
}

sealpost_write_config() { # DIR MODE
    local level=opportunistic
    [[ $2 == starttls ]] && level=mandatory
    cat >"$1/sealpost.toml" <<EOF
[server]
hostname = "relay.bench.invalid"
data_dir = "$1/data"

[[listeners]]
address = "127.0.0.1:$RELAY_PORT"

[tls]
certificate = "$WORK/relay-cert.pem"
key = "$WORK/relay-key.pem"

[logging]
level = "warn"

[dns]
nameservers = ["127.0.0.1:9"]

[delivery]
connections_per_destination = $CONCURRENCY
messages_per_connection = 1000

[[domains]]
name = "sink.bench.invalid"
tenant = "bench"
route = { hosts = ["127.0.0.1:$SINK_PORT"], level = "$level" }
$SP_CLUSTER
EOF
}

# ---------------------------------------------------------------- fleet
# sealpost with `[cluster]`: one node of a fleet on a redis-server started
# for the run (no persistence). The sink's destination is limited to the
# same connections fleet-wide as the node has, and the tenant to a rate it
# never reaches, so every message takes a connection lease and an
# admission from Redis as it would in a fleet, and nothing waits.
RD_PID=
fleet_available() {
    command -v redis-server >/dev/null || { echo "redis-server not installed"; return 1; }
    sealpost_available
}

fleet_start() { # MODE ROUND
    port_free "$REDIS_PORT" || die "port $REDIS_PORT is in use (set E2E_PORT_BASE)"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$WORK" >"$WORK/redis-$1-$2.log" 2>&1 &
    RD_PID=$!
    wait_port "$REDIS_PORT" 10 || die "redis-server did not listen on $REDIS_PORT"
    SP_CLUSTER="
[cluster]
redis = \"redis://127.0.0.1:$REDIS_PORT\"
node = \"bench-1\"
connections_per_destination = $CONCURRENCY
tenant_messages_per_second = 1000000
"
    sealpost_start "$1" "$2" fleet
    SP_CLUSTER=
}

fleet_pids() { sealpost_pids; [[ -n $RD_PID && -d /proc/$RD_PID ]] && echo "$RD_PID"; return 0; }

fleet_queued() { sealpost_queued; }

fleet_stop() {
    sealpost_stop
    [[ -n $RD_PID ]] || return 0
    kill -TERM "$RD_PID" 2>/dev/null || true
    wait "$RD_PID" 2>/dev/null || true
    RD_PID=
}

sealpost_start() { # MODE ROUND [SYSTEM BINARY]
    SP_BIN=${4:-$BIN/sealpost}
    SP_DIR=$WORK/${3:-sealpost}-$1-$2
    mkdir -p "$SP_DIR"
    sealpost_write_config "$SP_DIR" "$1"
    "$SP_BIN" --config "$SP_DIR/sealpost.toml" serve >"$SP_DIR/sealpost.log" 2>&1 &
    SP_PID=$!
    wait_port "$RELAY_PORT" 20 || die "sealpost did not listen on $RELAY_PORT: $(tail -n 20 "$SP_DIR/sealpost.log")"
}

sealpost_pids() { [[ -n $SP_PID && -d /proc/$SP_PID ]] && echo "$SP_PID"; return 0; }

sealpost_queued() { # messages still in the queue, from the admin socket
    "$SP_BIN" --config "$SP_DIR/sealpost.toml" queue summary --json 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["messages"])' 2>/dev/null || echo "?"
}

sealpost_stop() {
    [[ -n $SP_PID ]] || return 0
    local deadline=$((SECONDS + 15))
    kill -TERM "$SP_PID" 2>/dev/null || true
    while [[ -d /proc/$SP_PID ]] && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$SP_PID" 2>/dev/null || true
    wait "$SP_PID" 2>/dev/null || true
    SP_PID=
}

# The system "reference": the same relay with another build's binary
# (E2E_REFERENCE_BIN, a directory holding its sealpost), in the same
# interleaved rounds, to compare two builds in one run.
reference_available() { sealpost_available "$E2E_REFERENCE_BIN/sealpost"; }
reference_start() { sealpost_start "$1" "$2" reference "$E2E_REFERENCE_BIN/sealpost"; }
reference_pids() { sealpost_pids; }
reference_queued() { sealpost_queued; }
reference_stop() { sealpost_stop; }

# ---------------------------------------------------------------- table
# stats DECIMALS V...: "median min max" of the numbers given (the median of
# an even count is the mean of the middle two).
stats() {
    local fmt="%.$1f"
    shift
    printf '%s\n' "$@" | sort -g | awk -v fmt="$fmt" '{ v[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf fmt " " fmt " " fmt "\n", m, v[1], v[NR] }'
}

mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

print_table() {
    local row system mode round acc del p99 rss pss check lb la
    echo
    echo "$CONNECTIONS connections x $MESSAGES messages x $SIZE bytes = $TOTAL measured messages a run" \
        "after a warm-up of $WARM_TOTAL, $REPEAT run(s) per relay and mode ($BASELINE_REPEAT for the baseline)," \
        "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?')," \
        "load average at start $LOAD_START, at end $(loadavg)"
    echo
    echo "Every run:"
    echo
    echo "| system | mode | run | accepted msgs/s | delivered msgs/s | p99 latency ms | peak RSS MiB (PSS) | load avg before -> after | check |"
    echo "|---|---|---:|---:|---:|---:|---:|---|---|"
    for row in "${RESULTS[@]}"; do
        IFS='|' read -r system mode round acc del p99 rss pss check lb la <<<"$row"
        local mem=-
        [[ $rss == - ]] || mem="$(mib "$rss") ($(mib "$pss"))"
        [[ $system != baseline ]] || system="generator -> sink"
        echo "| $system | $mode | $round | $acc | $del | $p99 | $mem | $lb -> $la | $check |"
    done

    # Medians over the runs that passed their check.
    local -A med_del=() summary=()
    local s m accs dels p99s runs ok_runs peak_rss peak_pss first_fail st
    for s in $SYSTEMS; do
        for m in $MODES; do
            accs=() dels=() p99s=() runs=0 ok_runs=0 peak_rss=0 peak_pss=0 first_fail=
            for row in "${RESULTS[@]}"; do
                IFS='|' read -r system mode round acc del p99 rss pss check lb la <<<"$row"
                [[ $system == "$s" && $mode == "$m" ]] || continue
                runs=$((runs + 1))
                if [[ $check != ok ]]; then
                    [[ -n $first_fail ]] || first_fail=$check
                    continue
                fi
                ok_runs=$((ok_runs + 1))
                accs+=("$acc") dels+=("$del") p99s+=("$p99")
                if [[ $rss != - ]]; then
                    if ((rss > peak_rss)); then peak_rss=$rss; fi
                    if ((pss > peak_pss)); then peak_pss=$pss; fi
                fi
            done
            ((runs)) || continue
            local acc_s del_s p99_s mem=- chk
            if ((ok_runs)); then
                read -r st a_min a_max <<<"$(stats 1 "${accs[@]}")"; acc_s="$st ($a_min-$a_max)"
                read -r st d_min d_max <<<"$(stats 1 "${dels[@]}")"; del_s="$st ($d_min-$d_max)"
                med_del[$s-$m]=$st
                read -r st p_min p_max <<<"$(stats 2 "${p99s[@]}")"; p99_s="$st ($p_min-$p_max)"
                ((peak_rss == 0)) || mem="$(mib "$peak_rss") ($(mib "$peak_pss"))"
            else
                acc_s=- del_s=- p99_s=-
            fi
            chk="$ok_runs/$runs ok"
            [[ -z $first_fail ]] || chk="$chk; $first_fail"
            summary[$s-$m]="$runs|$acc_s|$del_s|$p99_s|$mem|$chk"
        done
    done
    echo
    echo "Medians (min-max) over the runs that passed:"
    echo
    echo "| system | mode | runs | accepted msgs/s | delivered msgs/s | p99 latency ms | peak RSS MiB (PSS), max of runs | vs Postfix (median delivered) | check |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
    local n ratio label base
    for s in $SYSTEMS; do
        for m in $MODES; do
            [[ -n ${summary[$s-$m]:-} ]] || continue
            IFS='|' read -r n acc_s del_s p99_s mem chk <<<"${summary[$s-$m]}"
            ratio=-
            base=${med_del[postfix-$m]:-}
            if [[ -n ${med_del[$s-$m]:-} && -n $base ]]; then
                ratio=$(awk -v a="${med_del[$s-$m]}" -v b="$base" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
            fi
            label=$s
            [[ $s != baseline ]] || label="generator -> sink"
            echo "| $label | $m | $n | $acc_s | $del_s | $p99_s | $mem | $ratio | $chk |"
        done
    done
}

# ---------------------------------------------------------------- main
install_packages
build
LOAD_START=$(loadavg)
WORK=$(mktemp -d /var/tmp/sealpost-e2e.XXXXXX) # under /var: Postfix's maillog_file_prefixes
chmod 755 "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=relay.bench.invalid -keyout "$WORK/relay-key.pem" -out "$WORK/relay-cert.pem" 2>/dev/null
chmod 600 "$WORK/relay-key.pem"
log "load average at start: $LOAD_START"

# Interleaved rounds (every system and mode once per round), so that a
# change in the machine's load spreads over all systems, not one.
for ((round = 1; round <= REPEAT; round++)); do
    for system in $SYSTEMS; do
        for mode in $MODES; do
            if [[ $system == baseline ]]; then
                ((round <= BASELINE_REPEAT)) || continue
                baseline_run "$mode" "$round"
            else
                relay_run "$system" "$mode" "$round"
            fi
            sleep 1 # let TIME_WAIT sockets and the page cache settle between runs
        done
    done
done

print_table
if ((FAILED)); then
    log "a run failed its count check (see the check column)"
    exit 1
fi
