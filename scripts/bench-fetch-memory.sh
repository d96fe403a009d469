#!/usr/bin/env bash
# What a pull costs in memory when another branch of the repository holds a huge file (issue
# 15): a repository whose main holds the demo fabric and whose branch `media` holds a 1 GiB file
# (a few MB packed). Two fresh servers each pull once and report their peak RSS (VmHWM): one
# fabric follows `main` (the fetch asks for main only), the other the same commit by its id (a
# commit id cannot be asked for by name: the fetch takes every branch and tag, as every fetch
# did before). Usage: scripts/bench-fetch-memory.sh [path of the fabricsync binary]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/fabricsync}
export PATH="$PWD/.tools/bin:$PATH"
work=$(mktemp -d)
chmod o+x "$work" # the embedded PostgreSQL runs as `postgres` when we are root
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
git=(git -c user.name=bench -c user.email=bench@example.invalid -c commit.gpgsign=false)
mkdir -p "$work/src/fabric"
cp server/tests/data/samples/demo-gitops/*.yaml "$work/src/fabric/"
"${git[@]}" -C "$work/src" init -q -b main
"${git[@]}" -C "$work/src" add . && "${git[@]}" -C "$work/src" commit -q -m fabric
commit=$("${git[@]}" -C "$work/src" rev-parse HEAD)
"${git[@]}" -C "$work/src" checkout -q -b media
head -c 1073741824 /dev/zero >"$work/src/video.bin"
"${git[@]}" -C "$work/src" add video.bin && "${git[@]}" -C "$work/src" commit -q -m "a 1 GiB file"
"${git[@]}" -C "$work/src" checkout -q main
"${git[@]}" clone -q --bare "$work/src" "$work/repo.git"
echo "repository: $(du -sh "$work/repo.git" | cut -f1) on disk, branch media holds a 1 GiB file"

pull() { # $1: label, $2: git_ref
  local dir="$work/${1//[^a-z]/}" port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  FABRICSYNC_METRICS_LISTEN=off "$bin" serve --data-dir "$dir" --listen "127.0.0.1:$port" \
    --allow-file-repositories --log-format json >"$dir.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do [ -f "$dir/admin-token" ] && break; sleep 0.2; done
  local auth="authorization: Bearer $(cat "$dir/admin-token")" addr="127.0.0.1:$port"
  for _ in $(seq 100); do grpcurl -plaintext -H "$auth" "$addr" list >/dev/null 2>&1 && break; sleep 0.2; done
  local idle repo fabric run
  idle=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  repo=$(grpcurl -plaintext -H "$auth" -d "{\"repository\": {\"name\": \"r\", \"url\": \"file://$work/repo.git\"}}" \
    "$addr" fabricsync.v1.RepositoryService/CreateRepository | jq -r .repository.id)
  fabric=$(grpcurl -plaintext -H "$auth" -d "{\"fabric\": {\"name\": \"f\", \"repository_id\": \"$repo\", \"git_ref\": \"$2\", \"gitops_path\": \"fabric\"}}" \
    "$addr" fabricsync.v1.FabricService/CreateFabric | jq -r .fabric.id)
  run=$(grpcurl -plaintext -H "$auth" -d "{\"fabric_id\": \"$fabric\", \"mode\": \"SYNC_MODE_PULL\"}" \
    "$addr" fabricsync.v1.SyncService/StartSync | jq -r .run.id)
  local started=$SECONDS
  grpcurl -plaintext -H "$auth" -d "{\"run_id\": \"$run\"}" "$addr" fabricsync.v1.SyncService/StreamSyncProgress >/dev/null
  local status peak
  status=$(grpcurl -plaintext -H "$auth" -d "{\"id\": \"$run\"}" "$addr" fabricsync.v1.SyncService/GetSyncRun | jq -r .run.status)
  peak=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  printf '%-28s %-24s idle %4d MiB, peak %5d MiB, %3d s\n' "$1" "$status" $((idle / 1024)) $((peak / 1024)) $((SECONDS - started))
  kill $pid; wait $pid 2>/dev/null || true
}
pull "git_ref main" main
pull "git_ref <commit id>" "$commit"
