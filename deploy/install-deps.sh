#!/usr/bin/env bash
# Installs the system tools the namespace lab uses, if any is missing:
# ip (iproute2), nft (nftables), ping (iputils-ping), traceroute.
# Only root on a Debian-like system can install; otherwise it says what is missing.
set -euo pipefail
declare -A pkg=([ip]=iproute2 [nft]=nftables [ping]=iputils-ping [traceroute]=traceroute)
missing=()
for tool in ip nft ping traceroute; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg[$tool]}")
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
