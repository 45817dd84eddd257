#!/usr/bin/env bash
# The relay's benchmark, in one run: see bench/README.md for what it measures and how to
# read bench/out/results.md.
#
#   bash bench/run.sh                     # BENCH_SECONDS=20 by default
#   BENCH_SECONDS=60 bash bench/run.sh
#
# Knobs (environment): BENCH_SECONDS (20), WARMUP_SECONDS (3), CONNECTIONS (64),
# MEM_CALLBACKS (100000), DRAIN_TIMEOUT (120, seconds), STEADY_RATE (half the flat-out ack
# rate), OHA (path to oha).
#
# It only ever talks to 127.0.0.1. Every process it starts is stopped on exit.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BENCH_SECONDS=${BENCH_SECONDS:-20}
WARMUP_SECONDS=${WARMUP_SECONDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
MEM_CALLBACKS=${MEM_CALLBACKS:-100000}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-120}

OUT=$ROOT/bench/out
CERTS=$OUT/certs
PAYLOAD=$ROOT/fixtures/callbacks/wav-success.json
BIN=$ROOT/target/release
ROUTE_PATH=/callbacks/wav

PIDS=()

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    say "FAILED: $*"
    exit 1
}

cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [[ -n $pid ]] && wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# Stops one process we started: SIGTERM, then SIGKILL after 15 s.
stop_pid() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

is_int() { [[ $1 =~ ^[0-9]+$ ]]; }

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready NAME PID LOG URL [curl options...]: polls URL until it answers any HTTP status;
# fails early, with the end of LOG, if the process died.
wait_ready() {
    local name=$1 pid=$2 log=$3 url=$4 code i
    shift 4
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            die "$name exited before it was ready (log: $log)"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$@" "$url" || true)
        if [[ $code != 000 && -n $code ]]; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$log" >&2 || true
    die "$name did not answer $url within 30 s (log: $log)"
}

# POSTs the payload once and checks the answer is 200.
check_post() {
    local name=$1 url=$2 code
    code=$(curl -s -o "$OUT/$name-check.body" -w '%{http_code}' --max-time 5 \
        --cacert "$CERTS/ca.crt" -H 'content-type: application/json' \
        --data-binary "@$PAYLOAD" "$url" || true)
    [[ $code == 200 ]] || die "$name answered $code (not 200) to one POST of the payload: $(head -c 300 "$OUT/$name-check.body" 2>/dev/null)"
}

# The receiver's count of POSTs received.
receiver_count() {
    curl -s --max-time 2 "http://127.0.0.1:$RECEIVER_PORT/count" | tr -d '[:space:]'
}

# run_oha OUTFILE URL ARGS...: oha over TLS with keep-alive connections; JSON summary to OUTFILE.
run_oha() {
    local out=$1 url=$2
    shift 2
    if ! "$OHA" --no-tui --output-format json -c "$CONNECTIONS" -m POST \
        -T application/json -D "$PAYLOAD" --cacert "$CERTS/ca.crt" \
        "$@" "$url" >"$out" 2>"$out.stderr"; then
        cat "$out.stderr" >&2 || true
        die "oha failed against $url (see $out.stderr)"
    fi
    python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$out" 2>/dev/null ||
        die "oha wrote no JSON summary to $out"
}

# The number of 200 answers in an oha JSON summary.
oha_ok() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["statusCodeDistribution"].get("200", 0))' "$1"
}

# VmRSS and VmHWM of PID in KiB, as "rss hwm".
mem_kib() {
    awk '/^VmRSS:/ { rss = $2 } /^VmHWM:/ { hwm = $2 } END { print rss, hwm }' "/proc/$1/status"
}

now() { date +%s.%N; }

# "busy total" clock ticks of the whole machine since boot (from /proc/stat).
machine_ticks() {
    awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6; exit }' /proc/stat
}

# user + system clock ticks used by PID so far.
pid_ticks() {
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Waits until the receiver has counted at least TARGET POSTs; prints the seconds it took,
# or "timeout".
wait_drained() {
    local target=$1 start count
    start=$(now)
    while :; do
        count=$(receiver_count || true)
        if is_int "$count" && ((count >= target)); then
            python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$start" "$(now)"
            return 0
        fi
        if python3 -c "import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) > float(sys.argv[3]) else 1)" "$start" "$(now)" "$DRAIN_TIMEOUT"; then
            echo timeout
            return 0
        fi
        sleep 0.05
    done
}

# timed_load TAG URL OUT PID: a warm-up (OUT-warmup.json, when WARMUP_SECONDS > 0), then
# the measured load (OUT.json). Sets LOADAVG (before the measurement) and LOAD_CPU, the
# "machine-busy machine-total pid 0" clock ticks it took.
timed_load() {
    local tag=$1 url=$2 out=$3 pid=$4 m0_busy m0_total m1_busy m1_total s0 s1
    if ((WARMUP_SECONDS > 0)); then
        say "$tag warm-up ${WARMUP_SECONDS}s"
        run_oha "$out-warmup.json" "$url" -z "${WARMUP_SECONDS}s" "${OHA_WAIT[@]}"
    fi
    LOADAVG=$(cut -d' ' -f1 /proc/loadavg)
    say "$tag measuring ${BENCH_SECONDS}s, $CONNECTIONS connections"
    read -r m0_busy m0_total < <(machine_ticks)
    s0=$(pid_ticks "$pid")
    run_oha "$out.json" "$url" -z "${BENCH_SECONDS}s" "${OHA_WAIT[@]}"
    read -r m1_busy m1_total < <(machine_ticks)
    s1=$(pid_ticks "$pid")
    LOAD_CPU="$((m1_busy - m0_busy)) $((m1_total - m0_total)) $((s1 - s0)) 0"
}

# Writes a relay config: relay_config FILE JOURNAL_DIR [DESTINATION_PORT] (default: the
# receiver's).
relay_config() {
    local dest_port=${3:-$RECEIVER_PORT}
    cat >"$1" <<EOF
# Written by bench/run.sh: TLS on loopback, a fresh journal, one route to the receiver.
# Everything not set here is the relay's default (journal cache 24MiB, 32 attempts in
# flight per destination). A short shutdown_timeout, so stopping it does not wait on a
# destination that holds its attempts.
[server]
listen = "127.0.0.1:$RELAY_PORT"
shutdown_timeout = "1s"

[server.tls]
cert = "$CERTS/relay.crt"
key = "$CERTS/relay.key"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[journal]
path = "$2"

[routes.wav]
path = "$ROUTE_PATH"
destinations = ["http://127.0.0.1:$dest_port/hooks/wav"]
EOF
}

# start_relay CONFIG LOG: starts the relay, waits until it serves; sets RELAY_PID.
start_relay() {
    RUST_LOG=${RELAY_LOG:-info} "$BIN/callback-relay" serve --config "$1" >"$2" 2>&1 &
    RELAY_PID=$!
    PIDS+=("$RELAY_PID")
    local i
    for ((i = 0; i < 300; i++)); do
        grep -q 'relay listening' "$2" 2>/dev/null && break
        kill -0 "$RELAY_PID" 2>/dev/null || {
            tail -n 20 "$2" >&2
            die "the relay exited at start (log: $2)"
        }
        sleep 0.1
    done
    grep -q 'relay listening' "$2" || die "the relay never logged 'relay listening' (log: $2)"
    wait_ready relay "$RELAY_PID" "$2" "https://127.0.0.1:$RELAY_PORT/" --cacert "$CERTS/ca.crt"
}

# write_report OUT: reads OUT/run.env, the oha summaries and the receiver samples; prints
# results.md.
write_report() {
    python3 - "$1" <<'PY'
import json, os, sys

out = sys.argv[1]
env = {}
for line in open(os.path.join(out, "run.env")):
    key, _, value = line.rstrip("\n").partition("=")
    env[key] = value

def num(key):
    return float(env[key])

def oha(name):
    data = json.load(open(os.path.join(out, name)))
    s = data["summary"]
    codes = {str(k): int(v) for k, v in (data.get("statusCodeDistribution") or {}).items()}
    errors = sum(int(v) for v in (data.get("errorDistribution") or {}).values())
    ok = codes.get("200", 0)
    total_s = float(s["total"])
    pct = data.get("latencyPercentiles") or {}
    ms = lambda key: float(pct[key]) * 1000 if pct.get(key) is not None else float("nan")
    return {
        "ok": ok,
        "other": sum(codes.values()) - ok,
        "errors": errors,
        "seconds": total_s,
        "acks": ok / total_s if total_s > 0 else 0.0,
        "p50": ms("p50"),
        "p99": ms("p99"),
        "p999": ms("p99.9"),
        "codes": codes,
        "error_kinds": data.get("errorDistribution") or {},
    }

bare = oha("bare.json")
ingest = oha("relay-ingest.json")
relay = oha("relay.json")
steady = oha("relay-steady.json")
mem = oha("relay-mem.json")
ratio_ingest = ingest["acks"] / bare["acks"] if bare["acks"] else 0.0
ratio = relay["acks"] / bare["acks"] if bare["acks"] else 0.0

# Receiver samples during the measured load (skipping its first second).
samples = []
for line in open(os.path.join(out, "receiver-samples.txt")):
    parts = line.split()
    if len(parts) == 2:
        samples.append((float(parts[0]), int(parts[1])))
load_start, load_end = num("LOAD_START"), num("LOAD_END")
window = [(t, c) for t, c in samples if load_start + 1.0 <= t <= load_end]
fwd_rate = float("nan")
if len(window) >= 2 and window[-1][0] > window[0][0]:
    fwd_rate = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
fwd_ratio = fwd_rate / relay["acks"] if relay["acks"] else float("nan")

# Backlog = acknowledged - received by the destination. Exact at the two marks; in between
# estimated with acks spread evenly over the load (oha's ack rate is steady).
warmup_acked = int(env["WARMUP_ACKED"])
backlog_warmup = warmup_acked - int(env["WARMUP_END_COUNT"]) if float(env["WARMUP_END"]) > 0 else None
backlog_end = int(env["ACKED"]) - int(env["LOAD_END_COUNT"])
est_rows = []
duration = load_end - load_start
for frac in (0.25, 0.5, 0.75):
    t = load_start + frac * duration
    near = min(samples, key=lambda s: abs(s[0] - t)) if samples else None
    if near and abs(near[0] - t) < 1.0:
        acked = warmup_acked + relay["ok"] * (near[0] - load_start) / duration
        est_rows.append((frac, round(acked - near[1])))

drain = env["DRAIN_SECONDS"]
drain_s = None if drain == "timeout" else float(drain)
mem_drain = env["MEM_DRAIN_SECONDS"]

mib = lambda kib: int(kib) / 1024
rss_after = max(mib(env["MEM_LOAD_RSS"]), mib(env["MEM_END_RSS"]))

# Steady state: what the destination lacked when the fixed-rate load stopped.
steady_rate = int(env["STEADY_RATE"])
steady_backlog = int(env["STEADY_BASE"]) + int(env["STEADY_ACKED"]) - int(env["STEADY_END_COUNT"])
steady_drain = env["STEADY_DRAIN_SECONDS"]
steady_drain_s = None if steady_drain == "timeout" else float(steady_drain)

# Verdicts against the targets of the relay-core issue: the ack rate and latency of the
# relay alone, and forwarding that keeps up at a steady offered rate (a backlog of at most
# half a second's callbacks when the load stops).
keeps_up = (
    steady_drain_s is not None
    and steady_drain_s <= 5.0
    and steady_backlog <= max(steady_rate / 2, 100)
)
verdict = lambda ok: "PASS" if ok else "MISS"
v_ratio = verdict(ratio_ingest >= 0.35)
v_p99 = verdict(ingest["p99"] < 10.0)
v_p99_fwd = verdict(relay["p99"] < 10.0)
v_fwd = verdict(keeps_up)
v_rss = verdict(rss_after < 100 and int(env["MEM_ACKED"]) >= int(env["MEM_CALLBACKS"]))

f0 = lambda x: f"{x:,.0f}"
f1 = lambda x: f"{x:.1f}"
f2 = lambda x: f"{x:.2f}"

print("# callback-relay benchmark results")
print()
print(f"Run {env['DATE']} at {env['GIT_REV']}; `BENCH_SECONDS={env['BENCH_SECONDS']} bash bench/run.sh`; "
      f"{env['CONNECTIONS']} keep-alive HTTP/1.1 connections over TLS on loopback, "
      f"POST `fixtures/callbacks/wav-success.json`, {env['WARMUP_SECONDS']} s warm-up before each measurement; "
      f"load generator {env['OHA_VERSION']} on the same cores.")
print()
print(f"Machine: {env['NPROC']} cores, {env['CPU_MODEL']}, Linux {env['KERNEL']}. "
      f"Load average before the baseline / relay-alone / relay runs: {env.get('LOADAVG_BARE', '?')} / {env.get('LOADAVG_INGEST', '?')} / {env.get('LOADAVG_RELAY', '?')} "
      "(anything well above 0 means something else was using the cores).")
print()
print("| measure | value | target | verdict |")
print("| --- | --- | --- | --- |")
print(f"| baseline (bare hyper + rustls) acks/s | {f0(bare['acks'])} | | |")
print(f"| baseline p50 / p99 ack latency | {f2(bare['p50'])} ms / {f2(bare['p99'])} ms | | |")
print(f"| relay durable acks/s, destination holding every attempt (the relay alone) | {f0(ingest['acks'])} | | |")
print(f"| relay alone / baseline | {f2(ratio_ingest)} | >= 0.35 | {v_ratio} |")
print(f"| relay alone p50 / p99 ack latency | {f2(ingest['p50'])} ms / {f2(ingest['p99'])} ms | p99 < 10 ms | {v_p99} |")
print(f"| relay durable acks/s while forwarding flat out to a fast destination | {f0(relay['acks'])} ({f2(ratio)} of baseline) | | |")
print(f"| p50 / p99 ack latency while forwarding flat out | {f2(relay['p50'])} ms / {f2(relay['p99'])} ms | p99 < 10 ms | {v_p99_fwd} |")
print(f"| end-to-end rate flat out: forwarded / acknowledged per s | {f0(fwd_rate)}/s / {f0(relay['acks'])}/s = {f2(fwd_ratio)} | | |")
bw = "n/a" if backlog_warmup is None else f0(backlog_warmup)
print(f"| backlog flat out (acked - forwarded) after warm-up / at end of load; drained in | {bw} / {f0(backlog_end)}; "
      f"{'> ' + env.get('DRAIN_TIMEOUT', '?') + ' s (timeout)' if drain_s is None else f2(drain_s) + ' s'} | | |")
sd = "timeout" if steady_drain_s is None else f2(steady_drain_s) + " s"
print(f"| steady state, {f0(steady_rate)} callbacks/s offered for {f1(steady['seconds'])} s: backlog when the load stopped; drained in | "
      f"{f0(steady_backlog)}; {sd} | not growing | {v_fwd} |")
print(f"| relay RSS after {f0(int(env['MEM_ACKED']))} callbacks (VmRSS after load / after forwarding; VmHWM) | "
      f"{f1(mib(env['MEM_LOAD_RSS']))} / {f1(mib(env['MEM_END_RSS']))} MiB; {f1(mib(env['MEM_END_HWM']))} MiB | < 100 MiB | {v_rss} |")
print()
print("## Details")
print()
print("| run | 200s | other statuses | errors | seconds | p50 ms | p99 ms | p99.9 ms |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for name, r in (("baseline", bare), ("relay alone", ingest), ("relay, forwarding", relay),
                ("relay, steady state", steady), (f"relay, -n {env['MEM_CALLBACKS']}", mem)):
    print(f"| {name} | {r['ok']:,} | {r['other']:,} | {r['errors']:,} | {f1(r['seconds'])} | "
          f"{f2(r['p50'])} | {f2(r['p99'])} | {f2(r['p999'])} |")
print()
for name, r in (("baseline", bare), ("relay alone", ingest), ("relay", relay), ("relay (steady)", steady), ("relay (memory run)", mem)):
    extra = {k: v for k, v in r["codes"].items() if k != "200"}
    if extra or r["error_kinds"]:
        print(f"- {name}: statuses {extra or '{}'}, errors {r['error_kinds'] or '{}'}")
print(f"- Forwarding: {env['ACKED']} callbacks acknowledged in the relay run (check + warm-up + load); "
      f"the receiver had {env['LOAD_END_COUNT']} when the load stopped and {env['DRAIN_COUNT']} after the drain.")
if est_rows:
    est = ", ".join(f"{int(f * 100)}%: {f0(b)}" for f, b in est_rows)
    print(f"- Backlog estimated during the load (acks spread evenly; at % of the load): {est}.")
print(f"- Relay RSS at the end of the timed load: {f1(mib(env['LOAD_RSS']))} MiB (VmHWM {f1(mib(env['LOAD_HWM']))} MiB); "
      f"journal on disk after it: {f1(mib(env['JOURNAL_KIB']))} MiB.")
print(f"- Memory run: RSS {f1(mib(env['MEM_START_RSS']))} MiB at start; {f0(int(env['MEM_ACKED']))} acks in {f1(mem['seconds'])} s; "
      f"forwarded all in {mem_drain} s after the load; journal on disk {f1(mib(env['MEM_JOURNAL_KIB']))} MiB.")
ncpu = int(env["NPROC"])
for name, key, server in (("baseline", "BARE_CPU", "bare_server"), ("relay-alone", "INGEST_CPU", "relay"), ("relay", "RELAY_CPU", "relay")):
    busy, total, srv, rcv = (int(x) for x in env[key].split())
    if total > 0:
        cores = lambda ticks: ncpu * ticks / total
        line = (f"- CPU during the {name} load: {cores(busy):.2f} of {ncpu} cores busy; "
                f"{server} {cores(srv):.2f} cores")
        if name == "relay":
            line += f", receiver {cores(rcv):.2f}"
        line += f", oha and anything else {cores(busy - srv - rcv):.2f}."
        print(line)
print()
print("Raw oha summaries, receiver samples and logs are in `bench/out/`.")
PY
}

# ---------------------------------------------------------------------------------------
# Tools and build

for tool in curl python3 awk; do
    command -v "$tool" >/dev/null || die "$tool is needed and not installed"
done
[[ -f $PAYLOAD ]] || die "payload $PAYLOAD is missing"
is_int "$BENCH_SECONDS" && ((BENCH_SECONDS >= 5)) || die "BENCH_SECONDS must be a whole number >= 5"
is_int "$WARMUP_SECONDS" || die "WARMUP_SECONDS must be a whole number"

OHA=${OHA:-$(command -v oha || true)}
if [[ -z $OHA && -x $HOME/.cargo/bin/oha ]]; then
    OHA=$HOME/.cargo/bin/oha
fi
if [[ -z $OHA ]]; then
    say "oha not found: cargo install oha --locked (a few minutes, once)"
    cargo install oha --locked >&2 || die "cargo install oha --locked failed"
    OHA=$HOME/.cargo/bin/oha
fi
[[ -x $OHA ]] || die "oha at $OHA is not executable"
"$OHA" --help | grep -q -- '--output-format' ||
    die "$OHA has no --output-format option: install a newer one (cargo install oha --locked)"
OHA_WAIT=()
if "$OHA" --help | grep -q -- '--wait-ongoing-requests-after-deadline'; then
    # Requests in flight at the deadline are awaited rather than counted as errors.
    OHA_WAIT=(--wait-ongoing-requests-after-deadline)
fi

say "building release binaries and examples"
cargo build --release --examples --bins >&2 || die "cargo build --release --examples --bins failed"
for exe in callback-relay examples/bare_server examples/gen_cert examples/receiver; do
    [[ -x $BIN/$exe ]] || die "$BIN/$exe was not built"
done

rm -rf "$OUT"
mkdir -p "$OUT"
"$BIN/examples/gen_cert" --out "$CERTS" >"$OUT/gen_cert.log" 2>&1 ||
    die "gen_cert failed: $(cat "$OUT/gen_cert.log")"

BARE_PORT=$(free_port)
RELAY_PORT=$(free_port)
ADMIN_PORT=$(free_port)
RECEIVER_PORT=$(free_port)
HOLD_PORT=$(free_port)
while [[ $RELAY_PORT == "$BARE_PORT" ]]; do RELAY_PORT=$(free_port); done
while [[ $ADMIN_PORT == "$RELAY_PORT" || $ADMIN_PORT == "$BARE_PORT" ]]; do ADMIN_PORT=$(free_port); done
while [[ $RECEIVER_PORT == "$ADMIN_PORT" || $RECEIVER_PORT == "$RELAY_PORT" || $RECEIVER_PORT == "$BARE_PORT" ]]; do
    RECEIVER_PORT=$(free_port)
done

# ---------------------------------------------------------------------------------------
# (a) The baseline: bare hyper + rustls, reads the body, answers 200.

say "(a) baseline: bare_server on https://127.0.0.1:$BARE_PORT"
"$BIN/examples/bare_server" --listen "127.0.0.1:$BARE_PORT" \
    --cert "$CERTS/relay.crt" --key "$CERTS/relay.key" >"$OUT/bare_server.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
BARE_URL="https://127.0.0.1:$BARE_PORT$ROUTE_PATH"
wait_ready bare_server "$BARE_PID" "$OUT/bare_server.log" "$BARE_URL" --cacert "$CERTS/ca.crt"
check_post bare_server "$BARE_URL"

timed_load "(a)" "$BARE_URL" "$OUT/bare" "$BARE_PID"
LOADAVG_BARE=$LOADAVG
BARE_CPU=$LOAD_CPU
stop_pid "$BARE_PID"

# ---------------------------------------------------------------------------------------
# (b0) The relay alone: its destination takes every attempt and holds it, so the cores go
# to acknowledging (the relay's 32 attempts in flight wait; nothing else is sent).

say "(b0) holding destination on http://127.0.0.1:$HOLD_PORT"
"$BIN/examples/receiver" --listen "127.0.0.1:$HOLD_PORT" --quiet --delay 60m >"$OUT/holder.log" 2>&1 &
HOLD_PID=$!
PIDS+=("$HOLD_PID")
wait_ready holder "$HOLD_PID" "$OUT/holder.log" "http://127.0.0.1:$HOLD_PORT/count"
relay_config "$OUT/relay-ingest.toml" "$OUT/journal-ingest" "$HOLD_PORT"
start_relay "$OUT/relay-ingest.toml" "$OUT/relay-ingest.log"
RELAY_URL="https://127.0.0.1:$RELAY_PORT$ROUTE_PATH"
check_post relay "$RELAY_URL"
timed_load "(b0)" "$RELAY_URL" "$OUT/relay-ingest" "$RELAY_PID"
LOADAVG_INGEST=$LOADAVG
INGEST_CPU=$LOAD_CPU
stop_pid "$RELAY_PID"
stop_pid "$HOLD_PID"

# ---------------------------------------------------------------------------------------
# (b) + (c) The relay, forwarding to the receiver; the receiver's count is sampled.

say "(b) receiver on http://127.0.0.1:$RECEIVER_PORT"
"$BIN/examples/receiver" --listen "127.0.0.1:$RECEIVER_PORT" --quiet >"$OUT/receiver.log" 2>&1 &
RECEIVER_PID=$!
PIDS+=("$RECEIVER_PID")
wait_ready receiver "$RECEIVER_PID" "$OUT/receiver.log" "http://127.0.0.1:$RECEIVER_PORT/count"

relay_config "$OUT/relay.toml" "$OUT/journal"
say "(b) relay on https://127.0.0.1:$RELAY_PORT (journal $OUT/journal)"
start_relay "$OUT/relay.toml" "$OUT/relay.log"
RELAY_URL="https://127.0.0.1:$RELAY_PORT$ROUTE_PATH"
check_post relay "$RELAY_URL"
ACKED=1 # the check above

# Samples "unix-time receiver-count" about 5 times a second until stopped.
(
    while :; do
        c=$(curl -s --max-time 1 "http://127.0.0.1:$RECEIVER_PORT/count" | tr -d '[:space:]' || true)
        [[ $c =~ ^[0-9]+$ ]] && echo "$(date +%s.%N) $c"
        sleep 0.2
    done
) >"$OUT/receiver-samples.txt" 2>/dev/null &
SAMPLER_PID=$!
PIDS+=("$SAMPLER_PID")

WARMUP_END=0
WARMUP_END_COUNT=0
if ((WARMUP_SECONDS > 0)); then
    say "(b) warm-up ${WARMUP_SECONDS}s"
    run_oha "$OUT/relay-warmup.json" "$RELAY_URL" -z "${WARMUP_SECONDS}s" "${OHA_WAIT[@]}"
    WARMUP_END=$(now)
    WARMUP_END_COUNT=$(receiver_count)
    ACKED=$((ACKED + $(oha_ok "$OUT/relay-warmup.json")))
fi
WARMUP_ACKED=$ACKED
LOADAVG_RELAY=$(cut -d' ' -f1 /proc/loadavg)
say "(b) measuring ${BENCH_SECONDS}s, $CONNECTIONS connections, forwarding to the receiver"
read -r M0_BUSY M0_TOTAL < <(machine_ticks)
S0=$(pid_ticks "$RELAY_PID")
R0=$(pid_ticks "$RECEIVER_PID")
LOAD_START=$(now)
run_oha "$OUT/relay.json" "$RELAY_URL" -z "${BENCH_SECONDS}s" "${OHA_WAIT[@]}"
LOAD_END=$(now)
LOAD_END_COUNT=$(receiver_count)
read -r M1_BUSY M1_TOTAL < <(machine_ticks)
S1=$(pid_ticks "$RELAY_PID")
R1=$(pid_ticks "$RECEIVER_PID")
RELAY_CPU="$((M1_BUSY - M0_BUSY)) $((M1_TOTAL - M0_TOTAL)) $((S1 - S0)) $((R1 - R0))"
read -r LOAD_RSS LOAD_HWM < <(mem_kib "$RELAY_PID")
ACKED=$((ACKED + $(oha_ok "$OUT/relay.json")))
say "(c) waiting for the receiver to get all $ACKED acknowledged callbacks"
DRAIN_SECONDS=$(wait_drained "$ACKED")
DRAIN_COUNT=$(receiver_count)
stop_pid "$SAMPLER_PID"
du -sk "$OUT/journal" | awk '{ print $1 }' >"$OUT/journal-kib.txt"

# (e) Steady state: a fixed offered rate (half what the relay acknowledged while forwarding
# flat out, unless STEADY_RATE says), to see whether the backlog stays flat.
STEADY_RATE=${STEADY_RATE:-$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(max(100, int(d["statusCodeDistribution"].get("200", 0) / float(d["summary"]["total"]) / 2)))' "$OUT/relay.json")}
say "(e) steady state: $STEADY_RATE callbacks/s for ${BENCH_SECONDS}s"
STEADY_BASE=$(receiver_count)
run_oha "$OUT/relay-steady.json" "$RELAY_URL" -q "$STEADY_RATE" -z "${BENCH_SECONDS}s" "${OHA_WAIT[@]}"
STEADY_END_COUNT=$(receiver_count)
STEADY_ACKED=$(oha_ok "$OUT/relay-steady.json")
STEADY_DRAIN_SECONDS=$(wait_drained $((STEADY_BASE + STEADY_ACKED)))
stop_pid "$RELAY_PID"

# ---------------------------------------------------------------------------------------
# (d) Resident memory after MEM_CALLBACKS callbacks into a fresh journal.

relay_config "$OUT/relay-mem.toml" "$OUT/journal-mem"
say "(d) relay with a fresh journal for $MEM_CALLBACKS callbacks"
start_relay "$OUT/relay-mem.toml" "$OUT/relay-mem.log"
read -r MEM_START_RSS MEM_START_HWM < <(mem_kib "$RELAY_PID")
MEM_BASE_COUNT=$(receiver_count)
run_oha "$OUT/relay-mem.json" "$RELAY_URL" -n "$MEM_CALLBACKS"
MEM_ACKED=$(oha_ok "$OUT/relay-mem.json")
read -r MEM_LOAD_RSS MEM_LOAD_HWM < <(mem_kib "$RELAY_PID")
say "(d) waiting for the $MEM_ACKED callbacks to be forwarded"
MEM_DRAIN_SECONDS=$(wait_drained $((MEM_BASE_COUNT + MEM_ACKED)))
sleep 1
read -r MEM_END_RSS MEM_END_HWM < <(mem_kib "$RELAY_PID")
MEM_JOURNAL_KIB=$(du -sk "$OUT/journal-mem" | awk '{ print $1 }')
stop_pid "$RELAY_PID"

# ---------------------------------------------------------------------------------------
# Results

cat >"$OUT/run.env" <<EOF
BENCH_SECONDS=$BENCH_SECONDS
WARMUP_SECONDS=$WARMUP_SECONDS
CONNECTIONS=$CONNECTIONS
MEM_CALLBACKS=$MEM_CALLBACKS
WARMUP_ACKED=$WARMUP_ACKED
WARMUP_END=$WARMUP_END
WARMUP_END_COUNT=$WARMUP_END_COUNT
LOAD_START=$LOAD_START
LOAD_END=$LOAD_END
LOAD_END_COUNT=$LOAD_END_COUNT
LOAD_RSS=$LOAD_RSS
LOAD_HWM=$LOAD_HWM
ACKED=$ACKED
DRAIN_SECONDS=$DRAIN_SECONDS
DRAIN_COUNT=$DRAIN_COUNT
JOURNAL_KIB=$(cat "$OUT/journal-kib.txt")
MEM_ACKED=$MEM_ACKED
MEM_START_RSS=$MEM_START_RSS
MEM_LOAD_RSS=$MEM_LOAD_RSS
MEM_LOAD_HWM=$MEM_LOAD_HWM
MEM_END_RSS=$MEM_END_RSS
MEM_END_HWM=$MEM_END_HWM
MEM_DRAIN_SECONDS=$MEM_DRAIN_SECONDS
MEM_JOURNAL_KIB=$MEM_JOURNAL_KIB
DRAIN_TIMEOUT=$DRAIN_TIMEOUT
LOADAVG_BARE=$LOADAVG_BARE
LOADAVG_RELAY=$LOADAVG_RELAY
BARE_CPU=$BARE_CPU
RELAY_CPU=$RELAY_CPU
INGEST_CPU=$INGEST_CPU
LOADAVG_INGEST=$LOADAVG_INGEST
STEADY_RATE=$STEADY_RATE
STEADY_BASE=$STEADY_BASE
STEADY_END_COUNT=$STEADY_END_COUNT
STEADY_ACKED=$STEADY_ACKED
STEADY_DRAIN_SECONDS=$STEADY_DRAIN_SECONDS
NPROC=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
KERNEL=$(uname -r)
OHA_VERSION=$("$OHA" --version | head -n 1)
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo "+local changes")
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF

write_report "$OUT" >"$OUT/results.md" || die "writing results.md failed"
say "results: $OUT/results.md"
cat "$OUT/results.md"
