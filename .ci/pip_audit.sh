#!/usr/bin/env bash
# Known vulnerabilities in the pinned requirements (requirements.txt, requirements-dev.txt),
# found by pip-audit. Any finding fails the step unless
# .ci/pip-audit-ignore.txt lists its id with the reason it is accepted.
#
# Where the data comes from is said in the output. pip-audit's own services come first: the
# index's per-release JSON ("pypi"), else OSV. A machine that reaches only the package index's
# project pages (as this workplace does) gets a local stand-in for OSV answered from those pages
# (.ci/osv_from_pypi.py): a pin of a project's newest release is audited exactly; an older pin
# cannot be, and is named as "not audited" (a warning: an upstream release alone must not turn CI
# red). With no data at all the step fails: an audit that checked nothing does not pass.
#
# PIP_AUDIT_SERVICE=pypi|osv|index forces a source.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="$PWD/.venv/bin"
IGNORE_FILE=".ci/pip-audit-ignore.txt"
[ -x "$BIN/pip-audit" ] || make install-dev

# "ID  reason" lines; blank lines and # comments are skipped; an id without a reason is refused.
IGNORED=()
while read -r id reason || [ -n "$id" ]; do
    case "$id" in "" | \#*) continue ;; esac
    if [ -z "$reason" ]; then
        echo "$IGNORE_FILE: $id has no reason; every accepted finding needs one" >&2
        exit 2
    fi
    IGNORED+=(--ignore-vuln "$id")
    echo "accepted: $id ($reason)"
done <"$IGNORE_FILE"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/patron-pip-audit.XXXXXX")"
SHIM_PID=""
stop() {
    if [ -n "$SHIM_PID" ]; then
        kill "$SHIM_PID" 2>/dev/null || true
        wait "$SHIM_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap stop EXIT

SERVICE="${PIP_AUDIT_SERVICE:-$("$BIN/python" .ci/osv_from_pypi.py probe)}"
SOURCE=()
case "$SERVICE" in
    pypi) echo "vulnerability data: the index's per-release JSON (pip-audit's PyPI service)" ;;
    osv) echo "vulnerability data: OSV"; SOURCE=(--vulnerability-service osv) ;;
    index)
        echo "vulnerability data: the index's project pages (advisories of each project's newest release)"
        "$BIN/python" .ci/osv_from_pypi.py serve >"$WORK/port" &
        SHIM_PID=$!
        for _ in $(seq 1 50); do
            [ -s "$WORK/port" ] && break
            sleep 0.1
        done
        [ -s "$WORK/port" ] || { echo "the local OSV stand-in did not start" >&2; exit 1; }
        SOURCE=(--vulnerability-service osv --osv-url "http://127.0.0.1:$(head -n 1 "$WORK/port")/v1/query")
        ;;
    *)
        echo "no vulnerability data reachable from this machine (not the index's JSON, not OSV):" \
            "the pins were not audited" >&2
        exit 1
        ;;
esac

PINS="$(cat requirements.txt requirements-dev.txt | grep -c '^[A-Za-z0-9].*==')"
echo "auditing $PINS pinned packages (requirements.txt, requirements-dev.txt)"
# --strict: a pin that could not be audited fails the step instead of being skipped in silence.
# Both files by name: pip-audit does not follow the "-r requirements.txt" inside the second.
"$BIN/pip-audit" --requirement requirements.txt --requirement requirements-dev.txt --no-deps --disable-pip --strict \
    --progress-spinner off --desc on --cache-dir "$WORK/cache" "${SOURCE[@]}" "${IGNORED[@]}"
