#!/usr/bin/env bash
# Smoke test of the README's newcomer path: `make run` on spare ports, then the README's curl of a
# fixture review, checking the decoded patch mounts alice's projects. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

wport=${SMOKE_WEBHOOK_PORT:-18443}
xport=${SMOKE_XNAT_PORT:-18090}
mport=${SMOKE_METRICS_PORT:-19090}
pport=${SMOKE_PROBE_PORT:-18081}
log=$(mktemp)
setsid make run WEBHOOK_PORT="$wport" XNAT_PORT="$xport" METRICS_PORT="$mport" PROBE_PORT="$pport" >"$log" 2>&1 &
pid=$!
cleanup() { kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT

for _ in $(seq 1 600); do
  if curl -fsS --cacert certs/dev/ca.crt "https://localhost:$wport/readyz" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "smoke: make run exited early:"; cat "$log"; exit 1
  fi
  sleep 0.5
done

# The README's command, on the smoke port.
patch=$(curl -sS --cacert certs/dev/ca.crt "https://localhost:$wport/mutate" \
  -H 'Content-Type: application/json' \
  --data @tests/fixtures/kubespawner-7.1/alice-default.json \
  | jq -r .response.patch | base64 -d | jq -c .)

expect() {
  if ! jq -e "$1" <<<"$patch" >/dev/null; then
    echo "smoke: expected $2 in the patch:"; jq . <<<"$patch"; echo "--- make run log:"; cat "$log"; exit 1
  fi
}
expect '[.[] | select(.path | endswith("/volumeMounts/-")) | .value | select(.subPath == "archive/ALPHA" and .readOnly == true)] | length == 1' "a read-only ALPHA mount"
expect '[.[] | select(.path | endswith("/volumeMounts/-")) | .value | select(.subPath == "archive/BETA" and .readOnly == true)] | length == 1' "a read-only BETA mount"
expect '[.[] | select(.path | endswith("/env/-")) | .value | select(.name == "XNAT_PROJECTS" and .value == "ALPHA,BETA")] | length == 1' "XNAT_PROJECTS=ALPHA,BETA"
# Into a variable first: `grep -q` stops reading early, and curl's broken pipe would fail the
# pipeline under pipefail.
metrics=$(curl -fsS "http://127.0.0.1:$mport/metrics")
grep -q 'xnat_webhook_admissions_total{outcome="mutated"' <<<"$metrics" \
  || { echo "smoke: the review did not show in /metrics"; exit 1; }
# kubelet's exec probes, as the Deployment runs them.
for which in ready live; do
  "${CARGO_TARGET_DIR:-target}/debug/jupyter-xnat-webhook" probe "$which" --addr "127.0.0.1:$pport" \
    || { echo "smoke: probe $which failed"; cat "$log"; exit 1; }
done
echo "smoke: make run + README curl + probes OK"
