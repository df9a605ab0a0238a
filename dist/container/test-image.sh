#!/usr/bin/env bash
# Builds the container image from the Dockerfile with podman, without any
# registry, then runs it and checks what docs/service.md promises of it:
# a non-root process, SMTP and health on the published ports, a healthy
# HEALTHCHECK, mail kept in the volume across a graceful stop and a new
# container. Prints the image's and the binary's sizes.
#
#   dist/container/test-image.sh
#
# The base images are made here: one `debootstrap --variant=minbase
# bookworm` root becomes the build stage's base (plus gcc, make and libc6-dev)
# and the runtime base (slimmed like debian:bookworm-slim). The build
# stage compiles with the host's Rust toolchain, mounted read-only, and
# the host's cargo registry (the crates already downloaded are not
# fetched again); the release build itself is real, and cold unless
# SEALPOST_CONTAINER_CACHE (below) keeps its target/.
#
# Needs root, podman, runc, debootstrap, a Debian mirror and a Rust
# toolchain whose cargo sits beside rustc (rustup's do). podman runs with
# its own containers.conf (CONTAINERS_CONF, below): runc, and no default
# ulimits, which a host that is itself a container may refuse to raise.
#
# SEALPOST_CONTAINER_CACHE names a directory that keeps the Debian roots
# and the build's target/ between runs (default: a new temporary one).
# Its bookworm-base is the pristine root dist/debian/test-install.sh
# keeps in SEALPOST_TEST_ROOT: one directory can serve both.
set -euo pipefail
cd "$(dirname "$0")/../.."

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d)
cache=${SEALPOST_CONTAINER_CACHE:-$work/cache}
mkdir -p "$cache"

# Names of everything made here, removed at the end whatever happens.
run_id=sealpost-test-$$
image=localhost/sealpost:test-$$
builder_base=localhost/sealpost-test-builder-base:$$
runtime_base=localhost/sealpost-test-runtime-base:$$
volume=$run_id-data
containers=()

cleanup() {
    status=$?
    set +e
    for c in "${containers[@]}"; do
        podman rm -f -t 0 "$c" >/dev/null 2>&1
    done
    podman volume rm -f "$volume" "$volume-empty" >/dev/null 2>&1
    podman rmi -f "$image" "$builder_base" "$runtime_base" >/dev/null 2>&1
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for c in "${containers[@]}"; do
        echo "--- last log lines of container $c:" >&2
        podman logs --tail 20 "$c" >&2 2>&1
    done
    exit 1
}
now() { date +%s; }

# podman's settings for this run only (not /etc/containers).
cat >"$work/containers.conf" <<'EOF'
[containers]
# podman's default raises RLIMIT_NOFILE in the container, which fails
# where the host itself runs with a lower hard limit ("setrlimit
# RLIMIT_NOFILE: Operation not permitted"): keep the host's limits.
default_ulimits = []

[engine]
# crun 1.8 (Debian 12) refuses cgroups in hybrid mode; runc does not.
runtime = "runc"
EOF
export CONTAINERS_CONF=$work/containers.conf
# podman schedules the image's health check with systemd timers, which a
# host without systemd lacks (every podman run then logs errors): no
# timers; this script runs the check itself (podman healthcheck run).
export DISABLE_HC_SYSTEMD=true

for tool in podman runc debootstrap rustc; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (needed: podman runc debootstrap rustc)"
done

echo "== base images (debootstrap, no registry)"
started=$(now)
base=$cache/bookworm-base
if [ ! -x "$base/usr/bin/dpkg" ]; then
    rm -rf "$base"
    debootstrap --variant=minbase bookworm "$base" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log"; fail "debootstrap of bookworm from $mirror"; }
fi

# The build stage's base: what the official rust image brings that the
# build needs (a C compiler for ring and jemalloc, make for jemalloc's
# build, the linker, the C library), without the toolchain, which is
# mounted at build time. The marker holds the package list, so a kept
# root made with fewer packages is made again.
builder=$cache/builder-root
builder_packages="gcc make libc6-dev ca-certificates"
if [ "$(cat "$cache/builder-root.ready" 2>/dev/null)" != "$builder_packages" ]; then
    rm -rf "$builder"
    cp -a "$base" "$builder"
    {
        chroot "$builder" apt-get update &&
            chroot "$builder" env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y --no-install-recommends $builder_packages &&
            chroot "$builder" apt-get clean &&
            rm -rf "$builder"/var/lib/apt/lists/*
    } >"$work/builder-apt.log" 2>&1 ||
        { tail -20 "$work/builder-apt.log"; fail "apt-get install $builder_packages in the builder root"; }
    echo "$builder_packages" >"$cache/builder-root.ready"
fi

# The runtime base, slimmed the way debian:bookworm-slim is: no package
# lists or downloaded packages, no documentation but the copyright
# files, no manual or info pages, no translations, no logs; and dpkg
# keeps it so for packages installed later.
runtime=$cache/runtime-root
if [ ! -f "$runtime/etc/dpkg/dpkg.cfg.d/slim" ]; then
    rm -rf "$runtime"
    cp -a "$base" "$runtime"
    rm -rf "$runtime"/var/lib/apt/lists/* "$runtime"/var/cache/apt/*.bin \
        "$runtime"/var/cache/apt/archives/*.deb "$runtime"/var/log/*.log \
        "$runtime"/var/log/apt/* "$runtime"/usr/share/man/* "$runtime"/usr/share/info/* \
        "$runtime"/usr/share/locale/* "$runtime"/usr/share/lintian \
        "$runtime"/var/cache/debconf/*-old "$runtime"/var/lib/dpkg/*-old
    find "$runtime/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$runtime/usr/share/doc" -mindepth 1 -type d -empty -delete
    cat >"$runtime/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
# A slim image (dist/container/test-image.sh): documentation other than
# copyright files, manual pages and translations are not installed.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
fi
# The host's name server and name are the container engine's business.
: >"$runtime/etc/resolv.conf"
: >"$builder/etc/resolv.conf"

path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
tar -C "$builder" -c . | podman import --quiet \
    --change "ENV PATH=/usr/local/cargo/bin:/opt/rust/bin:$path" \
    --change "ENV CARGO_HOME=/usr/local/cargo" \
    - "$builder_base" >/dev/null
tar -C "$runtime" -c . | podman import --quiet \
    --change "ENV PATH=$path" --change 'CMD ["bash"]' \
    - "$runtime_base" >/dev/null
echo "base images ready in $(($(now) - started)) s"

echo "== podman build (release build in the build stage)"
sysroot=$(rustc --print sysroot)
[ -x "$sysroot/bin/cargo" ] ||
    fail "no cargo beside rustc in $sysroot/bin (a rustup toolchain has one)"
registry=${CARGO_HOME:-$HOME/.cargo}/registry
mkdir -p "$registry" "$cache/target"
started=$(now)
# --format docker: the OCI format has no HEALTHCHECK.
podman build --format docker --layers=false --pull=never \
    --build-arg RUST_IMAGE="$builder_base" \
    --build-arg RUNTIME_IMAGE="$runtime_base" \
    --volume "$sysroot:/opt/rust:ro" \
    --volume "$registry:/usr/local/cargo/registry" \
    --volume "$cache/target:/src/target" \
    --tag "$image" . >"$work/build.log" 2>&1 ||
    { tail -40 "$work/build.log"; fail "podman build (whole log above, last 40 lines)"; }
build_seconds=$(($(now) - started))
grep -E '^ *(Finished|Compiling sealpost )' "$work/build.log" || true
echo "image built in $build_seconds s"

image_size=$(podman image inspect --format '{{.Size}}' "$image")
base_size=$(podman image inspect --format '{{.Size}}' "$runtime_base")
binary_size=$(podman run --rm --entrypoint stat "$image" -c %s /usr/bin/sealpost)
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
echo "image $(mb "$image_size") (runtime base $(mb "$base_size")), binary $(mb "$binary_size") stripped"

# The image as built: healthcheck, user, volume, ports, entrypoint.
inspect() { podman image inspect --format "$1" "$image"; }
[ "$(inspect '{{.Config.User}}')" = sealpost:sealpost ] || fail "image user: $(inspect '{{.Config.User}}')"
inspect '{{json .Config.Healthcheck}}' | grep -q /healthz/ready ||
    fail "no HEALTHCHECK in the image: $(inspect '{{json .Config.Healthcheck}}')"
inspect '{{json .Config.Volumes}}' | grep -q '"/var/lib/sealpost"' || fail "no volume"

# The shipped configuration, and a managed domain without a route: mail
# to it is accepted and waits in the queue (deferred, "no downstream
# route is configured"), touching neither DNS nor the network.
config=$work/sealpost.toml
{
    cat dist/container/sealpost.toml
    printf '\n[[domains]]\nname = "customer.test"\ntenant = "ci"\n'
} >"$config"
chmod 0644 "$config"

# Starts a container with a configuration and a volume, its ports
# published on loopback at ports podman picks; sets smtp_port and
# metrics_port.
start() { # name configuration volume
    containers+=("$1")
    podman run -d --name "$1" \
        --volume "$3:/var/lib/sealpost" \
        --volume "$2:/etc/sealpost/sealpost.toml:ro" \
        --publish 127.0.0.1::2525 --publish 127.0.0.1::9925 \
        "$image" >/dev/null || fail "podman run $1"
    smtp_port=$(podman port "$1" 2525/tcp | sed 's/.*://')
    metrics_port=$(podman port "$1" 9925/tcp | sed 's/.*://')
    [ -n "$smtp_port" ] && [ -n "$metrics_port" ] || fail "$1: ports not published"
}

# SMTP over bash's /dev/tcp. reply holds the last reply line read.
say() { printf '%s\r\n' "$1" >&3; }
expect() { # code: reads one reply, all its lines; fails on another code
    local line
    while IFS= read -r -t 10 line <&3; do
        line=${line%$'\r'}
        reply=$line
        case $line in
        "$1-"*) ;;
        "$1 "*) return 0 ;;
        *) fail "SMTP: expected $1, got: $line" ;;
        esac
    done
    fail "SMTP: no $1 reply within 10 s (last: ${reply:-nothing})"
}
greeting() { # waits up to 30 s for the greeting on smtp_port
    local i
    for i in $(seq 60); do
        if { exec 3<>"/dev/tcp/127.0.0.1/$smtp_port"; } 2>/dev/null; then
            if IFS= read -r -t 5 reply <&3 && [ "${reply:0:4}" = "220 " ]; then
                return 0
            fi
            exec 3>&-
        fi
        sleep 0.5
    done
    fail "no SMTP greeting on 127.0.0.1:$smtp_port within 30 s (last read: ${reply:-nothing})"
}
http_get() { # path: the status line of GET path on metrics_port
    exec 4<>"/dev/tcp/127.0.0.1/$metrics_port" || return 1
    printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&4
    IFS= read -r -t 5 line <&4 || true
    exec 4>&-
    printf '%s\n' "${line%$'\r'}"
}
expect_queued() { # container id: the message is in the container's queue
    podman exec "$1" sealpost --config /etc/sealpost/sealpost.toml queue show "$2" \
        >"$work/queue.$1" 2>&1 || fail "$1: no message $2 in the queue: $(cat "$work/queue.$1")"
    grep -q 'someone@customer.test' "$work/queue.$1" ||
        fail "$1: queue show $2: $(cat "$work/queue.$1")"
}

echo "== first container: runs unprivileged, healthy, accepts and queues mail"
first=$run_id-1
start "$first" "$config" "$volume"
greeting
echo "greeting: ${reply%$'\r'}"
pid=$(podman inspect --format '{{.State.Pid}}' "$first")
uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status")
[ "$uids" = "10025 10025 10025 10025" ] ||
    fail "sealpost's uids (real, effective, saved, file system) are $uids, not all 10025"
caps=$(awk '/^CapEff:/ { print $2 }' "/proc/$pid/status")
[ "$caps" = 0000000000000000 ] || fail "sealpost has capabilities $caps"
echo "process $pid: uid 10025 (real, effective, saved, file system), no capabilities"

healthy=""
for i in $(seq 20); do
    if podman healthcheck run "$first" >"$work/health.out" 2>&1; then
        healthy=yes
        break
    fi
    sleep 1
done
[ -n "$healthy" ] || fail "podman healthcheck run: $(cat "$work/health.out")"
health=$(podman inspect --format '{{.State.Healthcheck.Status}}' "$first")
[ "$health" = healthy ] || fail "health status after a passing check: $health"
echo "podman healthcheck run: exit 0, status $health"
status=$(http_get /healthz/ready) || fail "metrics port 127.0.0.1:$metrics_port"
case $status in *" 200 "*) ;; *) fail "GET /healthz/ready from the host: $status" ;; esac
echo "GET /healthz/ready from the host: $status"

say "EHLO ci.sealpost.test"
expect 250
say "MAIL FROM:<sender@outside.test>"
expect 250
say "RCPT TO:<someone@customer.test>"
expect 250
say "DATA"
expect 354
say "From: sender@outside.test"
say "To: someone@customer.test"
say "Subject: kept across containers"
say ""
say "Queued in the volume."
say "."
expect 250
accepted=$reply
id=$(printf '%s\n' "$accepted" | sed -n 's/.*queued as \([0-9a-f]\{16\}\).*/\1/p')
[ -n "$id" ] || fail "no message id in the reply to DATA: $accepted"
say "QUIT"
expect 221
exec 3>&-
echo "DATA: $accepted"
expect_queued "$first" "$id"

echo "== podman stop: SIGTERM, a graceful stop"
started=$(now)
podman stop -t 30 "$first" >/dev/null || fail "podman stop"
stop_seconds=$(($(now) - started))
code=$(podman inspect --format '{{.State.ExitCode}}' "$first")
podman logs "$first" >"$work/logs.1" 2>&1
[ "$code" = 0 ] || fail "sealpost exited with $code after SIGTERM"
grep -q '"stopping: no new connections' "$work/logs.1" || fail "no graceful stop in the logs"
grep -q '"sealpost stopped"' "$work/logs.1" || fail "no \"sealpost stopped\" in the logs"
echo "stopped in $stop_seconds s, exit code 0, logged the graceful stop"

echo "== second container on the same volume: the message is still queued"
second=$run_id-2
start "$second" "$config" "$volume"
greeting
exec 3>&-
expect_queued "$second" "$id"
sed -n '1,12p' "$work/queue.$second"
podman stop -t 30 "$second" >/dev/null || fail "podman stop $second"
[ "$(podman inspect --format '{{.State.ExitCode}}' "$second")" = 0 ] || fail "$second exit code"

echo "== a container that is not ready: the health check fails"
# The disk reserve cannot be kept (1 EB free wanted): sealpost runs and
# answers SMTP, but GET /healthz/ready answers 503.
greedy=$work/greedy.toml
sed 's/^min_free_disk = .*/min_free_disk = 1000000000000000000/' "$config" >"$greedy"
chmod 0644 "$greedy"
grep -q '^min_free_disk = 1000000000000000000$' "$greedy" || fail "no min_free_disk line to change"
third=$run_id-3
start "$third" "$greedy" "$volume-empty"
greeting
exec 3>&-
status=$(http_get /healthz/ready) || fail "metrics port 127.0.0.1:$metrics_port"
case $status in *" 503 "*) ;; *) fail "GET /healthz/ready with the reserve crossed: $status" ;; esac
if podman healthcheck run "$third" >"$work/health.out" 2>&1; then
    fail "podman healthcheck run passed on a container that is not ready"
fi
echo "GET /healthz/ready: $status; podman healthcheck run: $(cat "$work/health.out")"
podman stop -t 30 "$third" >/dev/null || fail "podman stop $third"

echo "container image: built in $build_seconds s; $(mb "$image_size"), binary $(mb "$binary_size")"
echo "all checks passed in $SECONDS s"
