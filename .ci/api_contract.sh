#!/usr/bin/env bash
# Contract check of /api/v1: a throwaway Patron (temporary instance folder, SQLite, generated
# keys) behind gunicorn on a free local port, fuzzed by Schemathesis from the OpenAPI document it
# serves. Fails on any server error, undocumented status code or response that breaks its schema,
# and unless every operation of the document was tested. Schemathesis sends schema-valid and
# schema-breaking requests (--mode all): missing and mistyped fields, odd strings and numbers,
# wrong content types, unsupported methods; the malformed bodies no schema describes (lone
# surrogates, deep nesting, invalid UTF-8) are in tests/test_api.py and tests/test_fuzz.py.
#
# API_CONTRACT_EXAMPLES (default 300, about 45 s here) bounds the test cases per operation and phase;
# API_CONTRACT_SEED (default fixed) makes a run repeatable; set it to "random" to explore.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="$PWD/.venv/bin"
EXAMPLES="${API_CONTRACT_EXAMPLES:-300}"
SEED="${API_CONTRACT_SEED:-20261122}"
CHECKS="${API_CONTRACT_CHECKS:-all}"
# A server error fails the run whatever the checks are narrowed to; it cannot be excluded.
case ",$CHECKS," in
    *,all,* | *,not_a_server_error,*) ;;
    *) CHECKS="not_a_server_error,$CHECKS" ;;
esac
# positive_data_acceptance wants every schema-valid request accepted, but business rules that
# a schema cannot state (a purchase dated in the future, an amount of 0, an order nobody posted)
# are rightly refused with 422.
EXCLUDED_CHECKS="${API_CONTRACT_EXCLUDED_CHECKS:-positive_data_acceptance}"
case ",$EXCLUDED_CHECKS," in
    *,all,* | *,not_a_server_error,*)
        echo "API_CONTRACT_EXCLUDED_CHECKS may not exclude not_a_server_error" >&2
        exit 2
        ;;
esac

step() { printf '\n==> %s\n' "$*"; }

[ -x "$BIN/st" ] || make install-dev

WORK="$(mktemp -d "${TMPDIR:-/tmp}/patron-api-contract.XXXXXX")"
GUNICORN_PID=""
stop() {
    if [ -n "$GUNICORN_PID" ] && kill -0 "$GUNICORN_PID" 2>/dev/null; then
        kill -TERM "$GUNICORN_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$GUNICORN_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$GUNICORN_PID" 2>/dev/null || true
        wait "$GUNICORN_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap stop EXIT
trap 'exit 130' INT TERM

random_key() { "$BIN/python" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'; }

# Only this app's settings: nothing from the caller's environment may point it elsewhere.
unset DATABASE_URL TEST_DATABASE_URL PATRON_ENV RATELIMIT_STORAGE_URI FLASK_APP
export PATRON_INSTANCE_PATH="$WORK/instance"
export DATABASE_URL="sqlite:///$WORK/instance/patron.sqlite"
export PATRON_SECRET_KEY="$(random_key)"
export PATRON_ENCRYPTION_KEYS="1:$(random_key)"
export PATRON_BLIND_INDEX_KEY="$(random_key)"
mkdir -p "$PATRON_INSTANCE_PATH"
flask() { "$BIN/flask" --app app "$@"; }
# Run a set-up command quietly; show its output only if it fails.
quietly() {
    if ! "$@" >"$WORK/step.log" 2>&1; then
        cat "$WORK/step.log" >&2
        echo "failed: $*" >&2
        exit 1
    fi
}

step "A throwaway database: migrations, demo customers, rewards, an API key with every scope"
quietly flask db upgrade
# 50 customers, so that the member number the document gives as an example (M00000042) exists
# and the examples phase posts real purchases, replays and conflicts.
quietly flask seed-demo --customers 50
quietly "$BIN/python" - <<'PY'
from app import create_app
from models.loyalty.rewards import Reward
from models.uow import Actor, unit_of_work

with create_app().app_context(), unit_of_work(Actor.system("ci")) as uow:
    for reward in [
        Reward(name_en="Tote bag", name_zh="帆布袋", points_cost=1, stock=1000),
        Reward(name_en="Mug", name_zh="马克杯", points_cost=50, stock=None),
        Reward(name_en="Sold out", name_zh="已售罄", points_cost=1, stock=0),
    ]:
        uow.add(reward)
PY
API_KEY="$(flask create-api-key "API contract" --source contract \
    --scope purchases:write --scope points:read --scope redemptions:write | tail -n 1)"
case "$API_KEY" in ptr_*) ;; *) echo "create-api-key printed no key" >&2; exit 1 ;; esac

step "gunicorn on a free local port"
PORT="$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
"$BIN/gunicorn" --bind "127.0.0.1:$PORT" --workers 2 --timeout 30 \
    --error-logfile "$WORK/gunicorn.log" "app:create_app()" &
GUNICORN_PID=$!
for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$BASE/api/v1/openapi.json" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$GUNICORN_PID" 2>/dev/null; then
        echo "gunicorn exited before serving:" >&2
        cat "$WORK/gunicorn.log" >&2
        exit 1
    fi
    sleep 0.2
done
curl -fsS -o /dev/null "$BASE/api/v1/openapi.json"
echo "serving $BASE/api/v1 (gunicorn pid $GUNICORN_PID)"

step "Schemathesis: $EXAMPLES examples per operation and phase, seed $SEED"
SEED_ARGS=()
[ "$SEED" = random ] || SEED_ARGS=(--seed "$SEED")
status=0
(
    cd "$WORK"  # Hypothesis' example database and any report stay in the throwaway folder
    # A hard stop, should a hung request or a slow machine stretch the run.
    timeout --kill-after=10 240 "$BIN/st" run "$BASE/api/v1/openapi.json" \
        --url "$BASE/api/v1" \
        --header "Authorization: Bearer $API_KEY" \
        --checks "$CHECKS" --exclude-checks "$EXCLUDED_CHECKS" \
        --mode all \
        --max-examples "$EXAMPLES" \
        --workers 1 \
        --request-timeout 20 \
        --generation-database none \
        --no-color \
        "${SEED_ARGS[@]}" | tee "$WORK/schemathesis.log"
) || status=$?

# Every operation of the document tested (no filter or failed schema load left one out).
if [ "$status" -eq 0 ]; then
    selected="$(sed -n 's/^ *Selected: \([0-9]*\)\/\([0-9]*\)$/\1 \2/p' "$WORK/schemathesis.log")"
    tested="$(sed -n 's/^ *Tested: \([0-9]*\)$/\1/p' "$WORK/schemathesis.log")"
    read -r chosen total <<<"${selected:-0 -1}"
    if [ "$chosen" != "$total" ] || [ "${tested:-0}" != "$total" ]; then
        echo "Schemathesis tested ${tested:-no} of ${total} operations (selected: ${selected:-none})." >&2
        status=1
    else
        echo "every operation tested: $tested of $total"
    fi
fi

if [ "$status" -ne 0 ]; then
    if grep -q "Traceback" "$WORK/gunicorn.log"; then
        echo ""
        echo "--- server errors logged by the app (first 200 lines) ---"
        grep -v -e "\[INFO\]" -e "\[WARNING\] Invalid request" "$WORK/gunicorn.log" >"$WORK/errors.log" || true
        sed -n 1,200p "$WORK/errors.log"
    fi
    echo "API contract check failed (exit $status)." >&2
fi
exit "$status"
