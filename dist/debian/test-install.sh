#!/bin/sh
# Installs, upgrades and purges the sealpost package in a throwaway Debian
# root (debootstrap --variant=minbase, then chroot), checking the user,
# files, owners and modes, the conffile across an upgrade, and what a
# purge removes. Needs root, debootstrap and a Debian mirror.
#
#   dist/debian/test-install.sh FIRST.deb SECOND.deb
#
# SECOND.deb must carry a higher version (e.g. `cargo deb --no-build
# --deb-version 0.1.0-2`). SEALPOST_TEST_ROOT names a directory that
# keeps the pristine root between runs (default: a new temporary one).
set -eu

first=$(realpath "${1:?usage: test-install.sh FIRST.deb SECOND.deb}")
second=$(realpath "${2:?usage: test-install.sh FIRST.deb SECOND.deb}")
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -n "${SEALPOST_TEST_ROOT:-}" ]; then
    cache=$SEALPOST_TEST_ROOT
    mkdir -p "$cache"
else
    cache=$(mktemp -d)
    trap 'rm -rf "$cache"' EXIT
fi
base=$cache/bookworm-base
root=$cache/bookworm-test

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
in_root() {
    chroot "$root" "$@"
}
expect_mode() { # path owner:group mode
    got=$(in_root stat -c '%U:%G %a' "$1")
    [ "$got" = "$2 $3" ] || fail "$1 is $got, expected $2 $3"
}

if [ ! -x "$base/usr/bin/dpkg" ]; then
    rm -rf "$base"
    debootstrap --variant=minbase bookworm "$base" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
        { tail -20 "$cache/debootstrap.log"; fail "debootstrap"; }
fi
rm -rf "$root"
cp -a "$base" "$root"
cp "$first" "$root/tmp/first.deb"
cp "$second" "$root/tmp/second.deb"

echo "== install"
in_root dpkg -i /tmp/first.deb
in_root getent passwd sealpost | grep -q ':/var/lib/sealpost:/usr/sbin/nologin$' ||
    fail "no sealpost system user"
in_root getent group sealpost >/dev/null || fail "no sealpost group"
uid=$(in_root id -u sealpost)
[ "$uid" -lt 1000 ] || fail "sealpost is not a system user (uid $uid)"
in_root test -x /usr/bin/sealpost || fail "no /usr/bin/sealpost"
in_root test -f /usr/lib/systemd/system/sealpost.service || fail "no unit file"
expect_mode /var/lib/sealpost sealpost:sealpost 750
expect_mode /etc/sealpost root:sealpost 750
expect_mode /etc/sealpost/sealpost.toml root:sealpost 640
in_root dpkg-query -W -f='${Conffiles}\n' sealpost | grep -q /etc/sealpost/sealpost.toml ||
    fail "sealpost.toml is not a conffile"
# The installed binary accepts the installed configuration, as the user
# the unit runs it as.
chroot --userspec=sealpost:sealpost "$root" \
    /usr/bin/sealpost --config /etc/sealpost/sealpost.toml config check ||
    fail "config check of the packaged configuration"

echo "== upgrade (edited conffile)"
echo "# edited by the operator" >>"$root/etc/sealpost/sealpost.toml"
mkdir -p "$root/var/lib/sealpost/queue"
echo "queued mail" >"$root/var/lib/sealpost/queue/marker"
in_root dpkg -i /tmp/second.deb
in_root dpkg-query -W -f='${Version}\n' sealpost
grep -q "edited by the operator" "$root/etc/sealpost/sealpost.toml" ||
    fail "the upgrade replaced the edited conffile"
[ -f "$root/var/lib/sealpost/queue/marker" ] || fail "the upgrade lost the data directory"
expect_mode /var/lib/sealpost sealpost:sealpost 750

echo "== remove, then purge"
in_root dpkg --remove sealpost
in_root test ! -e /usr/bin/sealpost || fail "remove left the binary"
in_root test -f /etc/sealpost/sealpost.toml || fail "remove took the conffile"
in_root dpkg --purge sealpost
in_root test ! -e /var/lib/sealpost || fail "purge left /var/lib/sealpost"
in_root test ! -e /etc/sealpost || fail "purge left /etc/sealpost"
in_root test ! -e /usr/lib/systemd/system/sealpost.service || fail "purge left the unit"
in_root getent passwd sealpost >/dev/null || fail "purge removed the system user (policy: keep it)"

echo "== install again after the purge"
in_root dpkg -i /tmp/second.deb
expect_mode /var/lib/sealpost sealpost:sealpost 750
in_root dpkg --purge sealpost

rm -rf "$root"
echo "install, upgrade, remove, purge and reinstall: ok"
