#!/usr/bin/env bash
# Installs the peers `galantis bench` measures Galantis against, in the same
# run (never called by the build or the tests):
#   - graphile-worker 0.17.3 (npm, pinned by graphile/package-lock.json) for
#     the queue drain, run by graphile/drain.js with node ≥ 18;
#   - pgbench (Debian postgresql-client / postgresql-contrib) for the
#     one-row JSONB insert at 32 clients (pgbench/insert.sql);
#   - wrk (Debian) as the native HTTP load generator for ingest
#     (wrk/ingest.lua), so the client does not share the server's runtime.
# Usage: bench/peers/install.sh   (root for apt-get, or the tools present)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

need_apt=()
command -v pgbench >/dev/null 2>&1 || need_apt+=(postgresql-client postgresql-contrib)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "missing: ${need_apt[*]} (install them with your package manager)" >&2
    exit 1
  fi
fi

command -v node >/dev/null 2>&1 || { echo "node (≥ 18) is needed for graphile-worker" >&2; exit 1; }
(cd "$here/graphile" && npm ci --no-audit --no-fund --loglevel=error)

echo "peers installed:"
echo "  graphile-worker $(node -p 'require("'"$here"'/graphile/node_modules/graphile-worker/package.json").version') (node $(node --version))"
echo "  $(pgbench --version)"
echo "  $(wrk --version 2>&1 | head -1)"
