#!/usr/bin/env bash
# Installs the tools the probe bench compares vantage with, if any is missing:
# fping, scamper, zmap (Debian packages), and GNU time (/usr/bin/time), which
# measures every tool the same way. Only root on a Debian-like system can
# install; otherwise it says what is missing.
set -euo pipefail
declare -A pkg=([fping]=fping [scamper]=scamper [zmap]=zmap [/usr/bin/time]=time)
missing=()
for tool in fping scamper zmap /usr/bin/time; do
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
