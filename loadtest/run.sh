#!/usr/bin/env bash
# Headless load test of the users API with pass/fail thresholds.
#
#   loadtest/run.sh [--host URL] [-u USERS] [-r SPAWN_RATE] [-t RUN_TIME]
#                   [--max-error-ratio R] [--max-p95-ms MS] [--out DIR] [-- LOCUST_ARGS... [UserClass...]]
#   loadtest/run.sh --ui [--host URL]        # the web UI on http://127.0.0.1:8089 (Mixed users)
#
# Writes report.html, stats_*.csv, summary.json and locust.log into loadtest/results/<UTC timestamp>/
# and exits 0 only when the failure ratio and the p95 are within the thresholds.
# Every option has an environment twin: LOADTEST_HOST, LOADTEST_USERS, LOADTEST_SPAWN_RATE,
# LOADTEST_RUN_TIME, LOADTEST_MAX_ERROR_RATIO, LOADTEST_MAX_P95_MS, LOADTEST_OUT.
#
# Locust runs from its own environment, never the service's: by default
# `uv run --only-group loadtest` with the project environment pointed at loadtest/.venv (locked versions
# from uv.lock); LOADTEST_LOCUST=uvx uses `uvx --from locust==2.47.0` instead, and any other value is
# the command to run (e.g. LOADTEST_LOCUST=/opt/locust/bin/locust).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

HOST=${LOADTEST_HOST:-http://127.0.0.1:5000}
USERS=${LOADTEST_USERS:-20}
SPAWN_RATE=${LOADTEST_SPAWN_RATE:-5}
RUN_TIME=${LOADTEST_RUN_TIME:-1m}
MAX_ERROR_RATIO=${LOADTEST_MAX_ERROR_RATIO:-0.01}
MAX_P95_MS=${LOADTEST_MAX_P95_MS:-250}
OUT=${LOADTEST_OUT:-}
UI=0
EXTRA=()

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
    --host) HOST=$2; shift 2 ;;
    -u|--users) USERS=$2; shift 2 ;;
    -r|--spawn-rate) SPAWN_RATE=$2; shift 2 ;;
    -t|--run-time) RUN_TIME=$2; shift 2 ;;
    --max-error-ratio) MAX_ERROR_RATIO=$2; shift 2 ;;
    --max-p95-ms) MAX_P95_MS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --ui) UI=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA+=("$@"); break ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done

case ${LOADTEST_LOCUST:-uv} in
  uv) LOCUST=(env "UV_PROJECT_ENVIRONMENT=${LOADTEST_VENV:-$HERE/.venv}"
              uv run --project "$ROOT" --frozen --only-group loadtest locust) ;;
  uvx) LOCUST=(uvx --from locust==2.47.0 locust) ;;
  *) read -r -a LOCUST <<<"$LOADTEST_LOCUST" ;;
esac

COMMON=(-f "$HERE/locustfile.py" --host "$HOST" --max-error-ratio "$MAX_ERROR_RATIO" --max-p95-ms "$MAX_P95_MS")

if ((UI)); then
  exec "${LOCUST[@]}" "${COMMON[@]}" -u "$USERS" -r "$SPAWN_RATE" ${EXTRA[@]+"${EXTRA[@]}"}
fi

OUT=${OUT:-$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
echo "run.sh: $USERS users against $HOST for $RUN_TIME; thresholds: failures <= $MAX_ERROR_RATIO," \
  "p95 <= $MAX_P95_MS ms; results in $OUT" >&2

set +e
"${LOCUST[@]}" "${COMMON[@]}" --headless -u "$USERS" -r "$SPAWN_RATE" -t "$RUN_TIME" --stop-timeout 10 \
  --only-summary --html "$OUT/report.html" --csv "$OUT/stats" --csv-full-history \
  --summary-file "$OUT/summary.json" --exit-code-on-error 1 ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 | tee "$OUT/locust.log"
code=${PIPESTATUS[0]}
set -e

if [[ -f $OUT/summary.json ]]; then
  echo "run.sh: verdict $(tr -s '\n ' ' ' <"$OUT/summary.json")" >&2
fi
echo "run.sh: exit code $code; report: $OUT/report.html" >&2
exit "$code"
