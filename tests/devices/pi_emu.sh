#!/usr/bin/env bash
# An emulated 64-bit Raspberry-Pi-class device on an x86_64 Debian host, served over SSH on
# 127.0.0.1 only, for the `arm` tests (tests/devices/test_emulated.py) and CI's Arm step.
#
#   tests/devices/pi_emu.sh up     build the rootfs once (cached), start the device's sshd
#   tests/devices/pi_emu.sh down   stop that sshd, unmount
#
# The device is an arm64 Debian bookworm chroot (Python 3.11) run by qemu-user through
# binfmt_misc, so every program in it, its sshd included, really executes aarch64 code: `uname -m`
# says aarch64 and pip installs aarch64 wheels. It has no edgepress and no wheels: `edgepress
# deploy` brings everything. Only Debian packages are fetched (apt, debootstrap); run as root.
# First `up` takes ~5 minutes (debootstrap under emulation), later ones seconds.
#
# The same rootfs also serves a Termux-like phone target (issue 19) on 127.0.0.1:8022: a non-root
# user whose home is Termux's (/data/data/com.termux/files/home), the only place it can write
# (its sshd runs in a mount namespace where /tmp, /var/tmp and /run/lock are read-only, as a
# phone has no writable /tmp). What it cannot be: Android (bionic libc, getprop, SELinux) or
# proot, which does not run under qemu-user; its programs are Debian's, as in a proot Debian.
#
# State for the tests goes in $CACHE/ssh: the client key, known_hosts, the port and the user;
# termux_* for the phone target (termux_known_hosts also files its key as adb-emulated0).
set -euo pipefail
CACHE=${EDGEPRESS_PI_CACHE:-/var/cache/edgepress-pi}
PORT=${EDGEPRESS_PI_PORT:-2232}
TERMUX_PORT=${EDGEPRESS_TERMUX_PORT:-8022}
R=$CACHE/rootfs
S=$CACHE/ssh
DEVICE_USER=pi
TERMUX_USER=u0_a187
TERMUX_HOME=/data/data/com.termux/files/home
# The CPU qemu-user emulates for the device's programs (QEMU_CPU, set by each sshd for its
# sessions): a Pi 4's Cortex-A72 and a phone-class Cortex-A76. Without it qemu emulates its `max`
# CPU, whose HWCAPs (SVE, SME, i8mm...) no Pi has, and XNNPACK, which picks its kernels from the
# HWCAPs, ran other kernels than a Pi runs: crepe tiny's int8 .tflite gave all-zero outputs
# under `max` (qemu 7.2; the same file through LiteRT's builtin kernels, or under cortex-a72,
# a76 or neoverse-n1, matched the host at cosine 0.9999), so verification failed on the device.
PI_CPU=cortex-a72
PHONE_CPU=cortex-a76

host_packages() {
  # binfmt_misc is not mounted on a fresh machine; qemu-user-static registers aarch64 with the
  # F flag (interpreter opened at registration), so the rootfs needs no copy of qemu.
  local need=()
  for cmd in debootstrap qemu-aarch64-static update-binfmts ssh-keygen; do
    command -v "$cmd" >/dev/null || need=(debootstrap qemu-user-static binfmt-support openssh-client)
  done
  if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable qemu-aarch64 2>/dev/null || true
  grep -q 'flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64
}

rootfs() {
  # Built in a temp dir and renamed: an interrupted build never looks finished.
  [ -x "$R/usr/sbin/sshd" ] && return
  rm -rf "$R.tmp"
  mkdir -p "$CACHE"
  debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,openssh-server,openssh-sftp-server bookworm "$R.tmp" \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -5 "$CACHE/debootstrap.log" >&2; exit 1; }
  rm -rf "$R"; mv "$R.tmp" "$R"
}

mounts() {
  # onnxruntime's cpuinfo library crashes under qemu when it reads the host's x86
  # /proc/cpuinfo: the device gets a Raspberry Pi 4's (four Cortex-A72, part 0xd08).
  : >"$CACHE/cpuinfo"
  for i in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i" >>"$CACHE/cpuinfo"
  done
  printf 'Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1 (emulated)\n' >>"$CACHE/cpuinfo"
  mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
  grep -q "$R/proc/cpuinfo " /proc/mounts || mount --bind "$CACHE/cpuinfo" "$R/proc/cpuinfo"
  mountpoint -q "$R/sys" || { mount --rbind /sys "$R/sys"; mount --make-rslave "$R/sys"; }
}

in_device() {
  # env -i: the host's PIP_*, PYTHON* and VIRTUAL_ENV settings must not leak into the device.
  chroot "$R" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 "$@"
}

accounts() {
  mkdir -p "$S"
  [ -f "$S/client" ] || ssh-keygen -q -t ed25519 -N '' -C edgepress-ci -f "$S/client"
  # '*' (not useradd's locked '!') so sshd without PAM accepts the key of a password-less user.
  in_device id -u "$DEVICE_USER" >/dev/null 2>&1 || in_device useradd -m -s /bin/bash -p '*' "$DEVICE_USER"
  local home=$R/home/$DEVICE_USER
  mkdir -p "$home/.ssh"
  cp "$S/client.pub" "$home/.ssh/authorized_keys"
  in_device chown -R "$DEVICE_USER:$DEVICE_USER" "/home/$DEVICE_USER/.ssh"
  chmod 700 "$home/.ssh"; chmod 600 "$home/.ssh/authorized_keys"
}

sshd_config() {
  mkdir -p "$R/etc/ssh/ci" "$R/run/sshd"
  [ -f "$R/etc/ssh/ci/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$R/etc/ssh/ci/host_ed25519"
  # 127.0.0.1 only: the emulated device is never reachable from outside this machine.
  cat >"$R/etc/ssh/ci/sshd_config.new" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey /etc/ssh/ci/host_ed25519
PidFile /run/sshd-ci.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
Subsystem sftp internal-sftp
SetEnv QEMU_CPU=$PI_CPU
EOF
  changed "$R/etc/ssh/ci/sshd_config"
  echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$R/etc/ssh/ci/host_ed25519.pub")" >"$S/known_hosts"
  echo "$PORT" >"$S/port"; echo "$DEVICE_USER" >"$S/user"
}

# changed FILE: FILE.new replaces FILE where they differ, so FILE's mtime says when its content
# last changed (see current)
changed() {
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else mv "$1.new" "$1"; fi
}

# current PIDFILE CONFIG: true when its sshd runs and was started after CONFIG last changed; an
# sshd older than its config (e.g. from before QEMU_CPU was set) is stopped, to be restarted
current() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null || return 1
  [ "$2" -nt "$1" ] || return 0
  kill "$(cat "$1")" 2>/dev/null || true; rm -f "$1"; sleep 0.5; return 1
}

start_sshd() {
  local pidfile=$R/run/sshd-ci.pid
  current "$pidfile" "$R/etc/ssh/ci/sshd_config" && return
  in_device /usr/sbin/sshd -t -f /etc/ssh/ci/sshd_config
  in_device /usr/sbin/sshd -f /etc/ssh/ci/sshd_config -E /var/log/sshd-ci.log
  await_ssh "$PORT" "$S/known_hosts" "$DEVICE_USER" "the device's sshd"
}

# await_ssh PORT KNOWN_HOSTS USER WHAT: wait (30 s at most) until USER logs in on 127.0.0.1:PORT
await_ssh() {
  for _ in $(seq 1 100); do
    ssh -q -i "$S/client" -p "$1" -o UserKnownHostsFile="$2" \
      -o StrictHostKeyChecking=yes -o BatchMode=yes "$3@127.0.0.1" true && return
    sleep 0.3
  done
  echo "pi_emu: $4 did not answer on 127.0.0.1:$1" >&2; exit 1
}

termux_account() {
  # parents root-owned, as on a phone: the user writes under its home and nowhere else
  mkdir -p "$R$(dirname "$TERMUX_HOME")"
  in_device id -u "$TERMUX_USER" >/dev/null 2>&1 || \
    in_device useradd -m -d "$TERMUX_HOME" -s /bin/bash -p '*' "$TERMUX_USER"
  mkdir -p "$R$TERMUX_HOME/.ssh"
  cp "$S/client.pub" "$R$TERMUX_HOME/.ssh/authorized_keys"
  in_device chown -R "$TERMUX_USER:$TERMUX_USER" "$TERMUX_HOME"
  chmod 700 "$R$TERMUX_HOME/.ssh"; chmod 600 "$R$TERMUX_HOME/.ssh/authorized_keys"
  in_device id -u "$TERMUX_USER" >"$S/termux_uid"
}

termux_sshd() {
  local cfg=$R/etc/ssh/ci/termux_config pidfile=$R/run/sshd-termux.pid
  [ -f "$R/etc/ssh/ci/termux_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$R/etc/ssh/ci/termux_ed25519"
  sed -e "s/^Port .*/Port $TERMUX_PORT/" -e "s#^HostKey .*#HostKey /etc/ssh/ci/termux_ed25519#" \
      -e "s#^PidFile .*#PidFile /run/sshd-termux.pid#" -e "s#^SetEnv QEMU_CPU=.*#SetEnv QEMU_CPU=$PHONE_CPU#" \
      "$R/etc/ssh/ci/sshd_config" >"$cfg.new"
  echo "AllowUsers $TERMUX_USER" >>"$cfg.new"
  changed "$cfg"
  local key; key=$(cut -d' ' -f1,2 "$R/etc/ssh/ci/termux_ed25519.pub")
  printf '[127.0.0.1]:%s %s\nadb-emulated0 %s\n' "$TERMUX_PORT" "$key" "$key" >"$S/termux_known_hosts"
  echo "$TERMUX_PORT" >"$S/termux_port"; echo "$TERMUX_USER" >"$S/termux_user"
  echo "$TERMUX_HOME" >"$S/termux_home"
  current "$pidfile" "$cfg" && return
  # its own mount namespace: the rootfs's world-writable dirs (/tmp, /var/tmp, /run/lock) are
  # read-only for this sshd and its sessions only
  unshare -m --propagation private sh -c "for d in tmp var/tmp run/lock; do
      mount -t tmpfs -o ro,size=64k tmpfs '$R/'\$d || exit 1; done &&
    chroot '$R' env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
      /usr/sbin/sshd -f /etc/ssh/ci/termux_config -E /var/log/sshd-termux.log"
  await_ssh "$TERMUX_PORT" "$S/termux_known_hosts" "$TERMUX_USER" "the phone target's sshd"
}

up() {
  host_packages; rootfs; mounts
  [ "$(chroot "$R" uname -m)" = aarch64 ]
  accounts; sshd_config; start_sshd
  termux_account; termux_sshd
  echo "pi_emu: $DEVICE_USER@127.0.0.1:$PORT and the Termux-like $TERMUX_USER@127.0.0.1:$TERMUX_PORT are up (aarch64, emulated); state in $S"
}

down() {
  local pidfile
  for pidfile in "$R/run/sshd-ci.pid" "$R/run/sshd-termux.pid"; do
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi
  done
  # what the device still runs (e.g. a pip left by a test's dropped connection): only processes
  # whose root is this rootfs, by pid, so the mounts below can go
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$R" ] && kill "${p#/proc/}" 2>/dev/null || true
  done
  sleep 1
  grep -q "$R/proc/cpuinfo " /proc/mounts && umount "$R/proc/cpuinfo" || true
  mountpoint -q "$R/sys" && umount -R "$R/sys" || true
  mountpoint -q "$R/proc" && umount "$R/proc" || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
