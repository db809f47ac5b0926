#!/usr/bin/env bash
# Checks, before make proto runs protoc, that protoc is installed and that it
# finds every well-known type the project's .proto files import
# (google/protobuf/*.proto), and names the Debian package that is missing
# instead of protoc's own "Import ... was not found".
#
#   bash deploy/check-protoc.sh PROTO_DIR
set -euo pipefail
dir=${1:?usage: check-protoc.sh PROTO_DIR}
fix="run 'make deps' as root, or: apt-get install protobuf-compiler libprotobuf-dev"

if ! command -v protoc >/dev/null 2>&1; then
  echo "make proto: protoc is not installed: it comes from Debian's protobuf-compiler ($fix)" >&2
  exit 1
fi
mapfile -t wkt < <(grep -ho '^import "google/protobuf/[^"]*"' "$dir"/*.proto | sed 's/^import "//; s/"$//' | sort -u)
[ ${#wkt[@]} -eq 0 ] && exit 0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{
  echo 'syntax = "proto3";'
  for f in "${wkt[@]}"; do echo "import \"$f\";"; done
} >"$tmp/wkt.proto"
if ! protoc -I "$tmp" --descriptor_set_out=/dev/null "$tmp/wkt.proto" 2>"$tmp/err"; then
  echo "make proto: protoc ($(protoc --version)) does not find the well-known types ${wkt[*]}:" >&2
  sed 's/^/  /' "$tmp/err" >&2
  echo "They come from Debian's libprotobuf-dev, which protobuf-compiler only recommends ($fix)" >&2
  exit 1
fi
