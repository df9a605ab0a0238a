#!/usr/bin/env bash
# Peak memory of `sealpost serve` under large messages (issue 14, part 2):
# N clients at once each send one message of SIZE octets to D managed
# domains (D destination groups per message), relayed to a discarding sink.
# Prints sealpost's peak resident set (VmHWM) and the sink's count.
#
#   sealpost-bench send -> sealpost serve -> sealpost-bench sink
#
# Usage: benches/memory.sh [--clients N] [--size BYTES] [--domains D] [--no-build]
# Defaults: 32 clients, 50 MiB, 10 domains. Only 127.0.0.1 traffic; bounded:
# every step has a timeout, and everything started here is stopped on exit.
# See docs/benchmarks.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLIENTS=32
SIZE=$((50 * 1024 * 1024))
DOMAINS=10
BUILD=1
PORT_BASE=${MEMORY_PORT_BASE:-25350}

while (($#)); do
    case $1 in
    --clients) CLIENTS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --domains) DOMAINS=$2; shift 2 ;;
    --no-build) BUILD=; shift ;;
    -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "memory: unknown argument $1" >&2; exit 2 ;;
    esac
done
((CLIENTS >= 1 && CLIENTS <= 256)) || { echo "memory: 1..256 clients" >&2; exit 2; }
((SIZE >= 1024 && SIZE <= 200 * 1024 * 1024)) || { echo "memory: size 1 KiB..200 MiB" >&2; exit 2; }
((DOMAINS >= 1 && DOMAINS <= 100)) || { echo "memory: 1..100 domains" >&2; exit 2; }

BIN=$ROOT/target/release
if [[ -n $BUILD ]]; then
    (cd "$ROOT" && cargo build --release -p sealpost -p sealpost-bench) >&2
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

SINK_PORT=$PORT_BASE
SMTP_PORT=$((PORT_BASE + 1))
EXPECT=$((CLIENTS * DOMAINS))

"$BIN/sealpost-bench" sink --listen "127.0.0.1:$SINK_PORT" --expect "$EXPECT" \
    --idle-timeout 120 >"$WORK/sink.out" 2>&1 &
SINK=$!
PIDS+=("$SINK")

{
    cat <<TOML
[server]
hostname = "relay.bench.invalid"
data_dir = "$WORK/data"

[[listeners]]
address = "127.0.0.1:$SMTP_PORT"

[dns]
nameservers = ["127.0.0.1:9"]

[limits]
max_message_size = $((SIZE + 1024 * 1024))
min_free_disk = 0

[[tenants]]
name = "bench"
relay_sources = ["127.0.0.0/8"]

TOML
    for ((d = 0; d < DOMAINS; d++)); do
        printf '[[domains]]\nname = "d%d.bench.test"\ntenant = "bench"\n' "$d"
        printf 'route = { hosts = ["127.0.0.1:%d"], level = "opportunistic" }\n\n' "$SINK_PORT"
    done
} >"$WORK/sealpost.toml"

"$BIN/sealpost" --config "$WORK/sealpost.toml" --log-level warn serve 2>"$WORK/sealpost.log" &
RELAY=$!
PIDS+=("$RELAY")
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null && break
    sleep 0.1
done

RCPTS=$(for ((d = 0; d < DOMAINS; d++)); do printf 'bob@d%d.bench.test,' "$d"; done)
RCPTS=${RCPTS%,}
START=$SECONDS
timeout 600 "$BIN/sealpost-bench" send --to "127.0.0.1:$SMTP_PORT" --connections "$CLIENTS" \
    --messages-per-connection 1 --size "$SIZE" --rcpt "$RCPTS" >"$WORK/send.out" 2>&1
# Every copy delivered (the sink stops at EXPECT), within a bound.
timeout 600 tail --pid="$SINK" -f /dev/null || true
ELAPSED=$((SECONDS - START))
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$RELAY/status")
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$RELAY/status")
echo "clients=$CLIENTS size=$SIZE domains=$DOMAINS copies_expected=$EXPECT seconds=$ELAPSED"
echo "sender: $(grep -m1 -E 'accepted|sent' "$WORK/send.out" || tail -1 "$WORK/send.out")"
echo "sink:   $(tail -1 "$WORK/sink.out")"
echo "sealpost peak RSS (VmHWM): $((HWM / 1024)) MiB; RSS after the run: $((RSS / 1024)) MiB"
