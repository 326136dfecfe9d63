#!/usr/bin/env bash
# scripts/package.sh stand-in: writes a small archive into --out and prints
# its path, as package.sh does.
set -u
. "$STUB_DIR/lib.sh"
record package.sh "$@"
out=artifacts/source
while [ $# -gt 0 ]; do
  if [ "$1" = --out ]; then out=$2; shift; fi
  shift
done
mkdir -p "$out"
echo archive >"$out/functions-0123456789abcdef0123456789abcdef01234567.zip"
echo "$out/functions-0123456789abcdef0123456789abcdef01234567.zip"
