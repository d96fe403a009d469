#!/usr/bin/env bash
# Fails when the committed SDK code in client-sdk/ is not what scripts/gen-sdk.sh generates
# from proto/ (CI runs it): regenerates, then reports every changed, deleted or new file.
#
#   scripts/check-sdk-fresh.sh            # both SDKs
#   scripts/check-sdk-fresh.sh go|python  # one of them (client-sdk/<name> only)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/gen-sdk.sh "$@"
paths=(client-sdk)
[ $# -eq 0 ] || paths=("${@/#/client-sdk/}")

# --untracked-files=all lists new files one by one, not just their directory.
stale=$(git status --porcelain --untracked-files=all -- "${paths[@]}")
if [ -n "$stale" ]; then
  echo "check-sdk-fresh: the generated SDK code is stale (or client-sdk/ has uncommitted changes):" >&2
  echo "$stale" | sed 's/^/  /' >&2
  echo "check-sdk-fresh: run scripts/gen-sdk.sh and commit the result" >&2
  exit 1
fi
echo "check-sdk-fresh: client-sdk/ is up to date with proto/" >&2
