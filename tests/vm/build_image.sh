#!/usr/bin/env bash
# Build a test VM image: a minimal Debian with the kernel and BPF tools of one flavor.
# Run as root. Needs debootstrap, e2fsprogs, ssh-keygen and network to deb.debian.org
# (and PyPI for pyroute2); the VM itself never gets a route off the machine.
#
#   tests/vm/build_image.sh [FLAVOR]   # prints the image directory on the last line
#
# Flavors (the vm and molecule layers boot netkit; stock and trixie are for labs):
#   netkit   (default) bookworm + bookworm-backports 6.12 (CONFIG_NETKIT=y), iproute2 6.15,
#            bpftool 7.5, libbpf 1.4.6: what yogurt.phone.bpf_toolchain gives a Debian 12 host
#            that also took the backports kernel.
#   stock    bookworm with its own 6.1 kernel (no netkit, no tcx) and the same backports tools:
#            a Debian 12 host on which only bpf_toolchain ran.
#   trixie   trixie + the trixie-backports 7.x kernel (netkit with every attribute), trixie's
#            iproute2, bpftool and libbpf.
# Every flavor above has pyroute2 0.9.7 (PyPI) in the system python.
#
# Fresh-host flavors: a host as installed, with python3 and ssh and nothing of the toolchain
# (no clang, llvm, bpftool, libbpf, pyroute2, no newer iproute2), for yogurt.phone.bpf_toolchain
# to install from nothing. Their apt lists are kept (updated at build time). apt and pip go
# through a forwarding proxy at http://10.0.2.100:3128, as a fleet behind a corporate proxy
# does: the test harness starts it (tests/vm/proxy.py) and vm.py's proxy_port adds the guestfwd.
# This machine's CA bundle is copied in (it inspects TLS) and pip.conf points `cert` at it.
#   fresh-stock   bookworm as installed: its own 6.1 kernel, no backports in its sources.
#   fresh-bpo     bookworm with the bookworm-backports 6.12 kernel; backports removed from
#                 the sources again afterwards (a host that once took the kernel).
#   fresh-trixie  trixie with the trixie-backports 7.x kernel (netkit with headroom and
#                 tailroom); backports removed from the sources again afterwards.
#
# Output: $YOGURT_VM_CACHE/<flavor>-<hash>/ (default ~/.cache/yogurt-phone/vm) with
#   rootfs.img (raw ext4), vmlinuz, initrd.img, id_ed25519 (+.pub), packages.txt, flavor, complete
# <hash> covers this script (package lists, kernel version, settings) and the flavor, so any
# change here builds a new image; an unchanged script prints "cached" and does nothing. The
# lines between the ">>> fresh-host" and "<<< fresh-host" markers only count for the fresh-*
# flavors (with this machine's CA bundle, which they carry): editing them rebuilds no other. The build
# happens in a temporary directory renamed at the end: an interrupted build never looks
# complete. Packages are cached in ~/.cache/yogurt-phone/apt to speed up rebuilds.
set -euo pipefail

FLAVOR=${1:-${YOGURT_VM_FLAVOR:-netkit}}
PYROUTE2=pyroute2==0.9.7
MIRROR=http://deb.debian.org/debian
BASE_PACKAGES=(systemd-sysv udev kmod initramfs-tools zstd openssh-server python3 python3-venv
  clang llvm tcpdump iputils-ping netcat-openbsd iperf3 ca-certificates)
TOOLS=(iproute2 bpftool libbpf1 libbpf-dev)
case "$FLAVOR" in
  netkit)
    SUITE=bookworm
    KERNEL=linux-image-6.12.95+deb12-amd64 KERNEL_FROM=bookworm-backports TOOLS_FROM=bookworm-backports ;;
  stock)
    # The metapackage: bookworm's point releases replace the 6.1 ABI package, the name stays.
    SUITE=bookworm
    KERNEL=linux-image-amd64 KERNEL_FROM=bookworm TOOLS_FROM=bookworm-backports ;;
  trixie)
    # The newest 7.x of trixie-backports (7.3.4 when written): backports moves on and may
    # drop old versions, so the metapackage, like stock; packages.txt records the version.
    SUITE=trixie
    KERNEL=linux-image-amd64 KERNEL_FROM=trixie-backports TOOLS_FROM=trixie ;;
# >>> fresh-host flavors (hashed for fresh-* only)
  fresh-stock)
    SUITE=bookworm KERNEL=linux-image-amd64 KERNEL_FROM= FRESH_BUILD_SUITES="" ;;
  fresh-bpo)
    # The same kernel as `netkit`; backports is in the sources only while it is installed.
    SUITE=bookworm KERNEL=linux-image-6.12.95+deb12-amd64 KERNEL_FROM=bookworm-backports
    FRESH_BUILD_SUITES=bookworm-backports ;;
  fresh-trixie)
    # Debian 13 with the newest 7.x of trixie-backports (netkit with every attribute; Debian
    # 13's own 6.12 is fresh-bpo's kernel); backports removed from the sources again afterwards.
    SUITE=trixie KERNEL=linux-image-amd64 KERNEL_FROM=trixie-backports FRESH_BUILD_SUITES=trixie-backports ;;
# <<< fresh-host flavors
  *)
    echo "build_image.sh: unknown flavor '$FLAVOR' (netkit, stock, trixie, fresh-stock, fresh-bpo or fresh-trixie)" >&2
    exit 2 ;;
esac
IMAGE_SIZE=4G
FRESH=
# >>> fresh-host flavors (hashed for fresh-* only)
SECURITY_MIRROR=http://deb.debian.org/debian-security
# The guest's side of the guestfwd to the harness's proxy (vm.PROXY_GUEST_ADDRESS).
PROXY_URL=http://10.0.2.100:3128
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
case "$FLAVOR" in
  fresh-*)
    FRESH=1
    # python3 and ssh (plus what boots it and sets its address: iproute2 of the release), and
    # python3-apt, which every Debian install with the standard task has (reportbug needs it).
    # Without it Ansible's apt module runs apt-get update itself and would hide stale lists.
    BASE_PACKAGES=(systemd-sysv udev kmod initramfs-tools zstd openssh-server python3 python3-apt iproute2 ca-certificates)
    TOOLS=() TOOLS_FROM=
    [ -r "$HOST_CA_BUNDLE" ] || { echo "build_image.sh: $HOST_CA_BUNDLE (this machine's CA bundle) is missing" >&2; exit 1; } ;;
esac
# <<< fresh-host flavors

here=$(cd "$(dirname "$0")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/yogurt-phone
vm_cache=${YOGURT_VM_CACHE:-$cache/vm}
apt_cache=$cache/apt
# pip on the host fetches pyroute2; the checkout's venv has one, a bare python3 may not.
python=${PYTHON:-$here/../../.venv/bin/python}
[ -x "$python" ] || python=python3
if [ -n "$FRESH" ]; then
  hash=$( (cat "$here/build_image.sh"; echo "flavor=$FLAVOR"; sha256sum <"$HOST_CA_BUNDLE") | sha256sum | cut -c1-16)
else
  hash=$( (sed '/^# >>> fresh-host/,/^# <<< fresh-host/d' "$here/build_image.sh"; echo "flavor=$FLAVOR") | sha256sum | cut -c1-16)
fi
out=$vm_cache/$FLAVOR-$hash

if [ -e "$out/complete" ]; then
  echo "cached"
  echo "$out"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "build_image.sh: run as root (debootstrap and chroot need it)" >&2
  exit 1
fi
# Every mount of the build (debootstrap mounts /proc in the target) lives in a private mount
# namespace, so none can outlive the build or leak into the host's mount table.
if [ -z "${YOGURT_VM_BUILD_NS:-}" ]; then
  YOGURT_VM_BUILD_NS=1 exec unshare --mount --propagation private -- bash "$0" "$@"
fi
for tool in debootstrap mkfs.ext4 ssh-keygen unshare chroot; do
  command -v "$tool" >/dev/null || { echo "build_image.sh: $tool is missing; run ./scripts/setup --test" >&2; exit 1; }
done

mkdir -p "$vm_cache" "$apt_cache/debs"
# One build per hash at a time; a second caller waits, then finds the image cached.
exec 9>"$vm_cache/.lock-$hash"
flock 9
if [ -e "$out/complete" ]; then
  echo "cached"
  echo "$out"
  exit 0
fi

start=$(date +%s)
tmp=$(mktemp -d "$vm_cache/.build-$hash.XXXXXX")
rootfs=$tmp/rootfs
log() { echo "build_image.sh: [$(( $(date +%s) - start )) s] $*"; }

# Long steps run in their own process group, waited for in the background, so that SIGTERM
# or SIGINT stops them at once (bash would wait for a foreground child first).
step_pid=
step() {
  setsid -w "$@" &
  step_pid=$!
  local rc=0
  wait "$step_pid" || rc=$?
  step_pid=
  return $rc
}
on_signal() {
  [ -n "$step_pid" ] && kill -TERM -- "-$step_pid" 2>/dev/null
  exit 143
}
cleanup() {
  [ -n "$step_pid" ] && kill -KILL -- "-$step_pid" 2>/dev/null
  # Unmount whatever is still mounted below $tmp, then never cross into another filesystem.
  grep -o " $tmp/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$tmp"
}
trap on_signal INT TERM HUP
trap cleanup EXIT

# >>> fresh-host flavors (hashed for fresh-* only)
# The sources of a host as the installer leaves them (the archive hosts this machine uses),
# plus the suites named in $1 (only while the kernel is installed).
fresh_sources() {
  local extra
  echo "deb $MIRROR $SUITE main"
  echo "deb $MIRROR $SUITE-updates main"
  echo "deb $SECURITY_MIRROR $SUITE-security main"
  for extra in $1; do echo "deb $MIRROR $extra main"; done
}
# apt and pip behind the proxy; this machine's CA trusted system-wide and by pip.
fresh_proxy_config() {
  install -D -m 644 "$HOST_CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/yogurt-host-ca.crt"
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || { echo "build_image.sh: update-ca-certificates failed in the image" >&2; exit 1; }
  printf 'Acquire::http::Proxy "%s";\nAcquire::https::Proxy "%s";\n' "$PROXY_URL" "$PROXY_URL" \
    >"$rootfs/etc/apt/apt.conf.d/80yogurt-proxy"
  printf '[global]\nproxy = %s\ncert = /usr/local/share/ca-certificates/yogurt-host-ca.crt\n' "$PROXY_URL" \
    >"$rootfs/etc/pip.conf"
}
# <<< fresh-host flavors

log "debootstrap $SUITE ($FLAVOR) into $rootfs"
include=$(IFS=,; echo "${BASE_PACKAGES[*]}")
step debootstrap --variant=minbase --include="$include" --cache-dir="$apt_cache/debs" \
  "$SUITE" "$rootfs" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 || {
  tail -n 30 "$tmp/debootstrap.log" >&2
  [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
  exit 1
}

log "configure the image"
ssh-keygen -q -t ed25519 -N '' -C yogurt-phone-vm -f "$tmp/id_ed25519"
install -d -m 700 "$rootfs/root/.ssh"
install -m 600 "$tmp/id_ed25519.pub" "$rootfs/root/.ssh/authorized_keys"

if [ -z "$FRESH" ]; then
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-backports main
EOF
else
  fresh_sources "$FRESH_BUILD_SUITES" >"$rootfs/etc/apt/sources.list"
fi
# No documentation in the image: smaller and faster to install.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/90-norecommends"
# A 6 MB initrd: only what finds and mounts the virtio root disk.
sed -i -e 's/^MODULES=.*/MODULES=list/' -e 's/^COMPRESS=.*/COMPRESS=zstd/' \
  "$rootfs/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk ext4 virtio_net >>"$rootfs/etc/initramfs-tools/modules"

echo yogurt-vm >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 yogurt-vm\n' >"$rootfs/etc/hosts"
echo '/dev/vda / ext4 rw,noatime 0 1' >"$rootfs/etc/fstab"

# Static address instead of DHCP (DHCP cost ~30 s of boot under TCG). qemu's user-mode
# network is always 10.0.2.0/24 with the gateway at .2; restrict=on keeps it off the host.
cat >"$rootfs/etc/systemd/system/yogurt-net.service" <<'EOF'
[Unit]
Description=Static address for the qemu user-mode NIC
DefaultDependencies=no
Before=network.target ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
# virtio_net is loaded in the initrd, so eth0 exists before udev runs: no wait for
# the .device unit (that wait cost ~10 s under TCG).
ExecStart=/bin/sh -ec 'i=0; while [ ! -e /sys/class/net/eth0 ] && [ $$i -lt 300 ]; do sleep 0.1; i=$$((i+1)); done; \
  ip link set lo up; ip link set eth0 up; \
  ip addr replace 10.0.2.15/24 dev eth0; ip route replace default via 10.0.2.2 dev eth0'

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$rootfs/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/yogurt-net.service "$rootfs/etc/systemd/system/multi-user.target.wants/yogurt-net.service"
# Units that only slow a throwaway VM down (apparmor ~23 s under TCG).
for unit in apparmor.service systemd-networkd-wait-online.service systemd-networkd.service \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
  systemd-timesyncd.service man-db.timer dpkg-db-backup.timer getty@tty1.service getty-static.service \
  systemd-journal-flush.service systemd-sysusers.service modprobe@dm_mod.service modprobe@drm.service \
  modprobe@efi_pstore.service modprobe@fuse.service modprobe@loop.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# sshd starts as soon as the address is set, not after sysinit.target (udev trigger,
# tmpfiles, ...): ~15 s earlier under TCG. It still stops before the guest powers off.
mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
cat >"$rootfs/etc/systemd/system/ssh.service.d/early.conf" <<'EOF'
[Unit]
DefaultDependencies=no
After=yogurt-net.service systemd-journald.socket
Wants=yogurt-net.service
Conflicts=shutdown.target
Before=shutdown.target
EOF
mkdir -p "$rootfs/etc/ssh/sshd_config.d"
printf 'UseDNS no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n' \
  >"$rootfs/etc/ssh/sshd_config.d/yogurt.conf"
mkdir -p "$rootfs/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$rootfs/etc/systemd/journald.conf.d/yogurt.conf"

log "install $KERNEL from ${KERNEL_FROM:-$SUITE}${TOOLS[*]:+, ${TOOLS[*]} from $TOOLS_FROM}"
# The final sources (fresh flavors): written after the kernel is in, then apt-get update, so
# the image keeps lists that match its sources.
final_sources=$tmp/sources.final
if [ -n "$FRESH" ]; then fresh_sources "" >"$final_sources"; fi
# The chroot's mounts live in a private mount namespace: they vanish with it, whatever happens.
# shellcheck disable=SC2016  # the script in single quotes runs in the new namespace
step unshare --mount --propagation private -- bash -euo pipefail -c '
  rootfs=$1 apt_cache=$2 kernel=$3 kernel_from=$4 tools_from=$5 final_sources=$6; shift 6
  mount -t proc proc "$rootfs/proc"
  mount -t sysfs sysfs "$rootfs/sys"
  mount --bind /dev "$rootfs/dev"
  mount --bind "$apt_cache" "$rootfs/var/cache/apt/archives"
  export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin
  chroot "$rootfs" apt-get update -q
  [ $# -eq 0 ] || chroot "$rootfs" apt-get install -y -q -t "$tools_from" "$@"
  chroot "$rootfs" apt-get install -y -q ${kernel_from:+-t "$kernel_from"} "$kernel"
  if [ -f "$final_sources" ]; then
    cp "$final_sources" "$rootfs/etc/apt/sources.list"
    chroot "$rootfs" apt-get update -q
  fi
' _ "$rootfs" "$apt_cache/debs" "$KERNEL" "$KERNEL_FROM" "$TOOLS_FROM" "$final_sources" "${TOOLS[@]}" >"$tmp/apt.log" 2>&1 || {
  tail -n 40 "$tmp/apt.log" >&2
  exit 1
}
# shellcheck disable=SC2016  # dpkg-query formats, not shell variables
chroot "$rootfs" dpkg-query -W -f='${Package} ${Version}\n' | sort >"$tmp/packages.txt"
if [ -n "$FRESH" ]; then
  log "apt lists kept (updated at build time); apt and pip through $PROXY_URL"
  fresh_proxy_config
else
  rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"*.bin

  log "pyroute2 from PyPI into the image's system python"
  site=$(chroot "$rootfs" python3 -c 'import sys; print("/usr/local/lib/python%d.%d/dist-packages" % sys.version_info[:2])')
  "$python" -m pip install -q --disable-pip-version-check --no-deps --no-compile \
    --cache-dir "$cache/pip" --target "$rootfs$site" "$PYROUTE2" >"$tmp/pip.log" 2>&1 || {
    cat "$tmp/pip.log" >&2
    exit 1
  }
  # Compile now with the image's python: compiling pyroute2 on first import takes ~100 s under TCG.
  chroot "$rootfs" python3 -m compileall -q "$site" >/dev/null
  echo "pyroute2 ${PYROUTE2#*==} (pypi)" >>"$tmp/packages.txt"
fi

log "extract kernel and initrd"
# Exactly one kernel is installed (the metapackage of `stock` names its version only here).
vmlinuz=("$rootfs"/boot/vmlinuz-*)
[ "${#vmlinuz[@]}" = 1 ] || { echo "build_image.sh: expected one kernel in the image, found: ${vmlinuz[*]}" >&2; exit 1; }
release=${vmlinuz[0]##*/vmlinuz-}
cp "${vmlinuz[0]}" "$tmp/vmlinuz"
cp "$rootfs/boot/initrd.img-$release" "$tmp/initrd.img"
echo "$FLAVOR $SUITE $release" >"$tmp/flavor"

log "make the ext4 root filesystem image ($IMAGE_SIZE, sparse)"
truncate -s "$IMAGE_SIZE" "$tmp/rootfs.img"
step mkfs.ext4 -q -L yogurt-root -d "$rootfs" "$tmp/rootfs.img"
rm -rf --one-file-system "$rootfs"

date -u +%FT%TZ >"$tmp/complete"
chmod 755 "$tmp"
mv -T "$tmp" "$out"
trap - EXIT INT TERM HUP
log "done"
echo "$out"
