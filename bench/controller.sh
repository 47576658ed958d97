#!/usr/bin/env bash
# Benchmark the controller, as the issue asks:
#
#   1. a scheduler tick with 10,000 tenants: <= 100 ms;
#   2. the job queue: >= 500 claim+complete per second with 8 agents.
#
# Runs controller/examples/controller_bench.rs in release mode (it starts its own
# throwaway PostgreSQL through lifeboat-sandbox, migrates a catalog, inserts the tenants,
# serves the agent API in-process and drives it with 8 HTTP agents), records the machine
# and writes everything to bench/results/controller-<date>.md.
#
# See BENCHMARKS.md ("Controller") for the figures and how to read them.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

usage() {
    cat <<EOF
Usage: bench/controller.sh [options] [-- controller_bench options]

Builds and runs
  cargo run --release -p lifeboat-controller --example controller_bench -- ...
which prints Markdown tables: the scheduler tick with --tenants tenants (cold, steady,
one minute of the backup window) and the job queue over HTTP with --agents agents (plus
the same claims and completions through the library, for comparison). The results,
with the machine, go to the results file.

Options:
  --out FILE     results file (default bench/results/controller-<date>.md, -<HHMM>
                 appended if that exists)
  --quick        a small run to check the script (1000 tenants, 2000 jobs)
  --no-fsync-probe
                 skip pg_test_fsync (how long a WAL flush takes on this disk; the
                 benchmark's own PostgreSQL runs with fsync off, see BENCHMARKS.md)
  -h, --help     this text

Everything after -- goes to controller_bench (its --help lists them), e.g.
  bench/controller.sh -- --pg-stat-statements
  bench/controller.sh -- --job-kind delete --skip-tick

Environment: PG_BIN (PostgreSQL bin dir for pg_test_fsync, default
/usr/lib/postgresql/15/bin; the benchmark itself finds its server like the tests do).
Run as root (PostgreSQL then runs as the 'postgres' user) or as a user that can run
initdb. Takes about 1-2 minutes after the build.
EOF
}

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

INVOCATION="bench/controller.sh${*:+ $*}"
OUT_FILE=""
QUICK=0
FSYNC_PROBE=1
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
BENCH_ARGS=()
while (($# > 0)); do
    case $1 in
        --out) [[ -n ${2:-} ]] || die "--out needs a file"; OUT_FILE=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --no-fsync-probe) FSYNC_PROBE=0; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; BENCH_ARGS+=("$@"); break ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
if ((QUICK)); then
    BENCH_ARGS=(--tenants 1000 --tick-runs 5 --cold-runs 2 --jobs 2000 --library-jobs 1000 "${BENCH_ARGS[@]}")
fi
if [[ -z $OUT_FILE ]]; then
    OUT_FILE="$SCRIPT_DIR/results/controller-$(date +%Y-%m-%d).md"
    [[ -e $OUT_FILE ]] && OUT_FILE="$SCRIPT_DIR/results/controller-$(date +%Y-%m-%d-%H%M).md"
fi
mkdir -p "$(dirname "$OUT_FILE")"

T_START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-controller-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

log "cargo build --release -p lifeboat-controller --example controller_bench"
(cd "$REPO_ROOT" && cargo build --release -p lifeboat-controller --example controller_bench) >&2

# How long a synchronous WAL flush takes here: the benchmark's PostgreSQL runs with
# fsync off (lifeboat-sandbox), so commit latency on a durable catalog is not in its
# figures. 8 kB fdatasync writes/s, the method PostgreSQL uses on Linux by default.
FSYNC_LINE="not measured (--no-fsync-probe)"
if ((FSYNC_PROBE)); then
    if [[ -x $PG_BIN/pg_test_fsync ]]; then
        log "pg_test_fsync (1 s per method)"
        if "$PG_BIN/pg_test_fsync" -s 1 -f "$WORK/fsync.probe" >"$WORK/fsync.txt" 2>&1; then
            FSYNC_LINE=$(awk '/one 8kB write/ { section = 1 } section && $1 == "fdatasync" { print $2, $3, $4, $5; exit }' "$WORK/fsync.txt")
            [[ -n $FSYNC_LINE ]] || FSYNC_LINE="pg_test_fsync output not understood (see its output)"
        else
            FSYNC_LINE="pg_test_fsync failed"
        fi
    else
        FSYNC_LINE="pg_test_fsync not found in $PG_BIN"
    fi
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "controller_bench ${BENCH_ARGS[*]}"
"$REPO_ROOT/target/release/examples/controller_bench" "${BENCH_ARGS[@]}" >"$WORK/report.md"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL=$(($(date +%s) - T_START))

machine_info() {
    local cpu mem rev
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
    echo "- host: $(uname -srm), nproc $(nproc), CPU: ${cpu:-unknown}, memory $mem"
    echo "- load average (1/5/15 min) before the benchmark: $LOAD_BEFORE; after: $LOAD_AFTER"
    echo "  (anything else running on these cores shows up in the figures)"
    echo "- disk: one 8 kB write + fdatasync (pg_test_fsync): $FSYNC_LINE"
    echo "- lifeboat: repo HEAD $rev (worktree may differ), release build"
}

{
    echo "# lifeboat controller benchmark — $(date '+%Y-%m-%d %H:%M %Z')"
    echo
    # shellcheck disable=SC2016 # the backticks are Markdown
    printf 'Command: `%s` — total run time %ss\n' "$INVOCATION" "$TOTAL"
    echo
    machine_info
    cat "$WORK/report.md"
} >"$WORK/results.md"

cat "$WORK/results.md"
cp "$WORK/results.md" "$OUT_FILE"
log "results written to $OUT_FILE (total ${TOTAL}s)"
