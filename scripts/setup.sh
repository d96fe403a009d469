#!/usr/bin/env bash
# Installs what fabricsync needs on a fresh Debian machine of this kind, idempotently:
# PostgreSQL (the embedded default database), git, openssh-server (tests' sshd), openssl (a test
# certificate), jq, libpq-dev, and in .tools/: buf (proto lint), grpcurl (the README session
# test) and diesel_cli (the schema check). Rust, Go and Python come with the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v git >/dev/null || need_apt+=(git)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if [ "${1:-}" = "--test" ]; then
  [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
  command -v openssl >/dev/null || need_apt+=(openssl)
  command -v jq >/dev/null || need_apt+=(jq)
  # libpq's link library, for diesel_cli (the schema check)
  ls /usr/lib/*/libpq.so >/dev/null 2>&1 || need_apt+=(libpq-dev)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing ${need_apt[*]}; install them (apt-get install ${need_apt[*]}) or run as root" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts a system cluster on install; fabricsync runs its own private clusters.
  if command -v pg_ctlcluster >/dev/null; then
    for c in $(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}'); do pg_ctlcluster ${c%/*} ${c#*/} stop || true; done
  fi
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup)" >&2; exit 1; }

if [ "${1:-}" = "--test" ] && [ ! -x .tools/venv/bin/buf ]; then
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install -q buf-bin==1.75.0
fi

# diesel_cli: server/tests/schema.rs compares db/schema.rs with `diesel print-schema`.
if [ "${1:-}" = "--test" ] && [ ! -x .tools/diesel-cli/bin/diesel ]; then
  CARGO_TARGET_DIR="$PWD/.tools/diesel-cli/build" cargo install --quiet --locked --root .tools/diesel-cli \
    diesel_cli --version 2.3.14 --no-default-features --features postgres
  rm -rf .tools/diesel-cli/build
fi

if [ "${1:-}" = "--test" ] && [ ! -x .tools/bin/grpcurl ]; then
  command -v go >/dev/null || { echo "setup: go not found; it is needed to install grpcurl" >&2; exit 1; }
  GOBIN="$PWD/.tools/bin" go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3
fi
