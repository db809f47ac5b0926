#!/usr/bin/env bash
# The one list of system packages vantage's build, tests, demo and benches
# use, by group. Installs whatever of the named groups is missing; .ci/run,
# `make deps` and the lab targets all call it, so a fresh machine needs
# nothing installed by hand.
#
#   bash deploy/install-deps.sh [GROUP...]   (default: lab)
#
# Groups:
#   build  protoc and the well-known .proto files (make proto, make
#          proto-check), git (fmt-check, proto-check), make
#   lab    the namespace lab: ip and ss, nft, ping and traceroute (lab tests
#          compare with them), sysctl, and everything in bgp
#   bgp    the lab's BGP mode (Options.BGP, vantage-lab up --bgp): BIRD 2
#          (bird and birdc); its own group so it can be installed alone,
#          and part of lab so the lab tests run their BGP cases too
#   peers  the tools the probe bench and the trace lab tests compare vantage
#          with: fping, zmap, scamper, and GNU time, which measures them all
#   units  systemd-analyze, which verifies the hardened systemd units
#   faults the disk fault tests (make test-reliability): mkfs.ext4 for a
#          small loop-mounted file system, losetup and mount to attach and
#          mount it, fsfreeze to stall it
#   web    the dashboard's front-end build (make web, make web-check):
#          Node.js and npm, which fetch esbuild and the chart packages at
#          the versions package-lock.json pins; Chromium, which the
#          dashboard's browser test drives (chromedp; make test-scenarios
#          installs this group with lab)
#   all    every group
#
# Each package is checked by the file it provides and vantage uses, so the
# script also says what is missing on a machine without apt. Only root on a
# Debian-like system can install.
set -euo pipefail

declare -A probe=(
  [protobuf-compiler]=protoc
  # protoc resolves google/protobuf/*.proto from /usr/include; Debian's
  # protobuf-compiler only recommends the package that ships them.
  [libprotobuf-dev]=/usr/include/google/protobuf/timestamp.proto
  [git]=git
  [make]=make
  [iproute2]=ip
  [nftables]=nft
  [iputils-ping]=ping
  [traceroute]=traceroute
  [procps]=sysctl
  [fping]=fping
  [zmap]=zmap
  [scamper]=scamper
  [time]=/usr/bin/time
  [systemd]=systemd-analyze
  [e2fsprogs]=mkfs.ext4
  [mount]=losetup
  [util-linux]=fsfreeze
  [bird2]=/usr/sbin/bird
  [nodejs]=node
  [npm]=npm
  [chromium]=/usr/bin/chromium
)
declare -A group=(
  [build]="protobuf-compiler libprotobuf-dev git make"
  [lab]="iproute2 nftables iputils-ping traceroute procps bird2"
  [bgp]="bird2"
  [peers]="fping zmap scamper time"
  [units]="systemd"
  [faults]="e2fsprogs mount util-linux"
  [web]="nodejs npm chromium"
)

want=()
[ $# -eq 0 ] && set -- lab
for g in "$@"; do
  if [ "$g" = all ]; then
    for k in build lab bgp peers units faults web; do want+=(${group[$k]}); done
  elif [ -n "${group[$g]:-}" ]; then
    want+=(${group[$g]})
  else
    echo "install-deps: unknown group \"$g\" (build, lab, bgp, peers, units, faults, web, all)" >&2
    exit 2
  fi
done

present() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# A package in two named groups (bird2 in lab and bgp) is wanted once.
mapfile -t want < <(printf '%s\n' "${want[@]}" | awk '!seen[$0]++')
missing=()
for p in "${want[@]}"; do
  present "${probe[$p]}" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing packages: ${missing[*]} (install them as root)" >&2
  exit 1
fi
echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for p in "${missing[@]}"; do
  present "${probe[$p]}" || { echo "install-deps: $p installed but ${probe[$p]} is still missing" >&2; exit 1; }
done
