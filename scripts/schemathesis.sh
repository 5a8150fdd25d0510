#!/usr/bin/env bash
# Fuzzes the HTTP API from its own `/openapi.json` with schemathesis (PyPI),
# against a scratch embedded server: a temporary data directory, one tenant,
# its OWNER's token. Not in CI (randomised and slow); run it by hand after
# changing routes or their annotations (ADR 0015). Extra arguments go to
# `schemathesis run`, e.g. `scripts/schemathesis.sh --include-path-regex members`.
#
#   MAX_EXAMPLES  examples per operation (default 20)
#   PORT          where the scratch server listens (default 18080)
#   VENV          where schemathesis is installed (default target/schemathesis-venv)
#   SERVER_BIN    a built binary to run (default: build target/debug/galantis)
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES="${MAX_EXAMPLES:-20}"
PORT="${PORT:-18080}"
VENV="$(realpath -m "${VENV:-target/schemathesis-venv}")"
SCHEMATHESIS_VERSION="4.32.5"
BASE="http://127.0.0.1:$PORT"

if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null | grep -o '[0-9.]*$')" != "$SCHEMATHESIS_VERSION" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ -z "${SERVER_BIN:-}" ]; then
  cargo build --quiet -p galantis-server --bin galantis
  SERVER_BIN="$PWD/target/debug/galantis"
fi
BIN="$(realpath "$SERVER_BIN")"

DATA="$(mktemp -d)"
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT

# Only the environment configures the scratch server: no galantis.toml of the
# working tree is read.
cd "$DATA"
export GALANTIS_DATA_DIR="$DATA/data" GALANTIS_BIND="127.0.0.1:$PORT"
TOKEN="$("$BIN" tenant create --shop schemathesis.myshopify.com | jq -r .token)"
"$BIN" serve >"$DATA/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do
  curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$BASE/readyz" >/dev/null

# The webhooks in are signed with secrets the fuzzer cannot know: every case
# would be a 401 (tests/it/webhooks.rs covers them).
status=0
"$VENV/bin/schemathesis" run "$BASE/openapi.json" \
  --url "$BASE" \
  --header "Authorization: Bearer $TOKEN" \
  --max-examples "$MAX_EXAMPLES" \
  --checks all \
  --seed "${SEED:-1}" \
  --exclude-path-regex '^/webhooks/' \
  "$@" || status=$?

# 5xx are logged with their cause: show them next to the findings.
grep -E '"level":"ERROR"|ERROR' "$DATA/server.log" | tail -n 50 || true
exit "$status"
