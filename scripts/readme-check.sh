#!/usr/bin/env bash
# Runs README.md's shell examples, in order and in one shell (so the
# variables one sets are there for the next), against a scratch embedded
# server, and fails when one fails.
#
# Run: every block fenced as ```sh (indented ones too). A block fenced as
# ```sh not-checked (it starts a server, needs real credentials or runs the
# tests) is only checked to be valid shell (bash -n). While the examples run:
#   - `cargo run [-q] --release -- ARGS` runs the debug binary with ARGS (a
#     release build would take too long on a CI machine); no other cargo
#     command is allowed;
#   - localhost:8080 is the scratch server, on a free port (GALANTIS_BIND is
#     set for the CLI commands too);
#   - curl fails on an HTTP error status (--fail-with-body), so an example
#     answered 4xx/5xx fails the check;
#   - the working directory is a temporary one holding a copy of
#     docs/examples/ (as the clone's root would), where the server keeps
#     galantis-data/.
# Needs curl, jq and python3. Usage: scripts/readme-check.sh [README.md]
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
README="$(realpath "${1:-$ROOT/README.md}")"
# All the examples together run at most this long (one that never ends,
# e.g. a status that never arrives, fails the check instead of hanging CI).
TIMEOUT_SECS="${README_CHECK_TIMEOUT:-600}"

for tool in curl jq python3 timeout; do
  command -v "$tool" >/dev/null || {
    echo "readme-check: $tool is required" >&2
    exit 1
  }
done

cd "$ROOT"
cargo build --quiet --locked -p galantis-server --bin galantis
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/galantis"
[ -x "$BIN" ] || {
  echo "readme-check: no binary at $BIN" >&2
  exit 1
}

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The scratch server sees none of the caller's configuration.
while IFS= read -r name; do
  case "$name" in GALANTIS_* | DATABASE_URL) unset "$name" ;; esac
done < <(compgen -e)

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export GALANTIS_BIND="127.0.0.1:$PORT"
mkdir -p "$WORK/docs"
cp -R "$ROOT/docs/examples" "$WORK/docs/examples"

(cd "$WORK" && exec "$BIN" serve) >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
ready=""
for _ in $(seq 1 240); do
  if curl -sf "http://$GALANTIS_BIND/readyz" >/dev/null 2>&1; then
    ready=1
    break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.5
done
if [ -z "$ready" ]; then
  echo "readme-check: the scratch server did not become ready; its log:" >&2
  cat "$WORK/serve.log" >&2
  exit 1
fi

# The examples, as one script: each block announced with its README line.
python3 - "$README" "$PORT" "$WORK/unchecked.sh" >"$WORK/examples.sh" <<'PY'
import re
import shlex
import sys

readme, port = sys.argv[1], sys.argv[2]
lines = open(readme, encoding="utf-8").read().split("\n")
fence = re.compile(r"^(\s*)(`{3,})\s*(\S*)\s*(.*)$")
blocks, unchecked, i = [], [], 0
while i < len(lines):
    m = fence.match(lines[i])
    if not m:
        i += 1
        continue
    indent, ticks, lang, rest = m.groups()
    start, body, i = i + 1, [], i + 1
    while i < len(lines) and not re.match(r"^\s*" + ticks + r"\s*$", lines[i]):
        line = lines[i]
        body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
        i += 1
    i += 1
    if lang == "sh" and "not-checked" not in rest.split():
        blocks.append((start, "\n".join(body)))
    elif lang == "sh":
        unchecked.append((start, "\n".join(body)))

# The skipped blocks must still parse (written beside, for `bash -n`).
with open(sys.argv[3], "w", encoding="utf-8") as f:
    for start, body in unchecked:
        f.write(f"# README.md:{start}\n{body}\n")
print(f"# {len(blocks)} examples from {readme}")
print(f"__README_EXAMPLES={len(blocks)}")
for start, body in blocks:
    body = body.replace("localhost:8080", f"127.0.0.1:{port}")
    body = body.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    print(f"__example {start} {shlex.quote(body)}")
    print(body)
PY

cat >"$WORK/prelude.sh" <<'SH'
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
__line=""
__example() {
  __line="$1"
  printf '\n== README.md:%s ==\n%s\n--\n' "$1" "$2"
}
cargo() {
  if [ "${1:-}" != run ]; then
    echo "readme-check: the examples may only use \`cargo run --release -- …\`, not \`cargo $*\`" >&2
    return 2
  fi
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    case "$1" in
      -q | --quiet | --release) shift ;;
      *)
        echo "readme-check: \`cargo run $1\` is not supported" >&2
        return 2
        ;;
    esac
  done
  [ $# -gt 0 ] && shift
  "$README_CHECK_BIN" "$@"
}
curl() { command curl --show-error --fail-with-body "$@"; }
trap 'rc=$?; if [ $rc -ne 0 ]; then echo; echo "readme-check: the example at README.md:$__line failed (exit $rc)" >&2; fi' EXIT
SH

if ! bash -n "$WORK/unchecked.sh"; then
  echo "readme-check: a \`sh not-checked\` example is not valid shell" >&2
  exit 1
fi
echo "readme-check: $(grep -c '^__example ' "$WORK/examples.sh") examples, server on $GALANTIS_BIND"
status=0
(
  cd "$WORK"
  export README_CHECK_BIN="$BIN"
  timeout "$TIMEOUT_SECS" bash -c 'source ./prelude.sh; source ./examples.sh'
) || status=$?
echo
if [ "$status" -ne 0 ]; then
  [ "$status" -eq 124 ] && echo "readme-check: the examples took longer than ${TIMEOUT_SECS}s" >&2
  echo "readme-check: FAILED; the server's log:" >&2
  tail -n 40 "$WORK/serve.log" >&2
  exit 1
fi
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "readme-check: the server died while the examples ran; its log:" >&2
  tail -n 40 "$WORK/serve.log" >&2
  exit 1
fi
echo "readme-check: every checked README example ran"
