#!/usr/bin/env bash
# A local NetBox with the plugin against the embedded fabricsync, to try it: fabricsync, a Git
# repository with the demo fabric and a kube-apiserver (tests/sdk-fixture.sh), a private NetBox
# (dev/netbox.sh) on http://127.0.0.1:${NETBOX_PORT:-8000}, user admin, password admin.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../../.."
[ -x target/debug/fabricsync ] || cargo build -p fabricsync
[ -x .tools/bin/kubeharness ] || scripts/kube-harness.sh
tests/sdk-fixture.sh client-sdk/netbox-plugin/dev/netbox.sh bash -c '
  DJANGO_SUPERUSER_PASSWORD=admin netbox createsuperuser --noinput --username admin --email admin@example.com >/dev/null
  (umask 077; printf %s "$FABRICSYNC_KUBE_TOKEN" >"$NETBOX_ROOT/cluster.token")
  cat <<INFO
NetBox:          http://127.0.0.1:${NETBOX_PORT:-8000}/plugins/fabricsync/fabrics/  (admin / admin)
fabricsync:      $FABRICSYNC_ADDR
Repository URL:  $FABRICSYNC_GIT_URL   (fabric directory: $FABRICSYNC_GITOPS_PATH)
Cluster URL:     $FABRICSYNC_KUBE_URL
Cluster CA:      $FABRICSYNC_KUBE_CA_FILE
Cluster token:   in $NETBOX_ROOT/cluster.token
INFO
  exec netbox runserver "127.0.0.1:${NETBOX_PORT:-8000}" --insecure
'
