#!/usr/bin/env bash
# End-to-end scenarios on the real regions: two Apache Kafka 4.x clusters and MirrorMaker 2
# (infra/regions), both region pipelines running live, `tidemark loadgen` sending to both
# regions, and `tidemark verify` checking both regions afterwards.
#
#   tests/real/scenarios.sh [--duration SECONDS] [SCENARIO...]
#
# Scenarios (all but three-broker by default):
#   split-hold-off   replication paused for 5 s mid-load, max_split_hold = 0: late events, all of
#                    them in the late topic; `tidemark late-report` on both late topics must find
#                    the pause as a burst matched to a split-brain episode (chart:
#                    artifacts/late-report-region-a.png), and `tidemark reconcile` run twice
#                    must write the corrections once
#   split-advised    the same pause with the max_split_hold that late-report advised (99.9 %):
#                    at most 1 % of the events late in each region
#   split-hold-on    the same with a hold longer than the split: no late events; also a small
#                    load through the gateway, and the dashboard truth test: every Grafana
#                    panel query returns data from the real Prometheus that changed during
#                    the run (four named panels may stay flat), Prometheus recorded a split of
#                    at least 5 s, and the split-brain
#                    alert fires during the pause and resolves after it; and region-a's
#                    status page in headless Chromium (screenshot: artifacts/status-page.png)
#   kill-mm2         MM2 killed with SIGKILL mid-load and restarted (its re-sent copies are
#                    absorbed by dedup)
#   kill-pipeline    exactly-once across crashes, rescaling and fencing, checked by strict
#                    verify: region-a's pipeline SIGKILLed three times mid-load and restarted
#                    with 1, 2 and 2 workers, region-b's once, and MM2 once (replication stops
#                    for 5 s plus MM2's start: a split the pipelines must see); then a second
#                    copy of region-a's pipeline is started, which fences the first (it must
#                    stop, saying so). Each kill asserts the pid is gone and the new process
#                    restored its state
#   partition        MM2 cut off from region-b by nftables in its own network namespace
#                    (infra/regions up --netns) for 15 s, left running: the pipelines must see
#                    the split, MM2 must replicate again by itself after the heal, and with a
#                    hold of 180 s no event is late
#   hosts            the global pipeline (pipelines/global.toml) as a cluster of two processes,
#                    each in a network namespace of its own made here (tm-host0, tm-host1),
#                    joined to each other by a veth pair that carries the cluster's traffic
#                    (10.79.0.1, 10.79.0.2: the hostfile's addresses) and to this host by one
#                    each, over which they reach both regions' brokers (their LINK listeners,
#                    infra/regions up --netns). Half the load, then a strict verify; then the
#                    other half, with tm-host1's process SIGKILLed in the middle of it: its pid
#                    must be gone, and tm-host0's process must stop by itself within 10 s,
#                    non-zero, naming its lost peer; both restart, restore their state, and a
#                    strict verify of the whole load must find nothing lost or duplicated. Then
#                    the link between the hosts goes down, silently (no process dies, nothing
#                    is reset): each process must stop by itself within 10 s, naming the other.
#                    The bytes the two hosts exchanged per event read are printed
#   beyond-horizon   pipelines with a 15 s dedup horizon and no hold, MM2 frozen (SIGSTOP) for
#                    30 s: the copies that cross after it are past the horizon, so each goes to
#                    the late topic marked tidemark-beyond-horizon; verify allows marked copies
#                    only, and the marked records must equal the pipelines' counters
#   restart-broker   region-b's broker stopped mid-load and started again: no event late
#   kill-broker      region-b's broker SIGKILLed mid-load (its pid must be gone) and started
#                    again 5 s later
#   disk-full        region-b's broker log dir on a 256 MiB tmpfs (infra/regions up --disk),
#                    filled to the last byte mid-load: the broker must stop, saying "No space
#                    left on device"; the space is freed and the broker started again; region-b's
#                    pipeline has either ridden it out or stopped with an error (then it is
#                    restarted), and strict verify finds nothing lost or duplicated
#   three-broker     (on demand: its six brokers take CI's time) each region three KRaft nodes
#                    with replication factor 3 and min.insync.replicas 2 (infra/regions up
#                    --brokers 3); region-b's second node, leader of some of log-events'
#                    partitions, SIGKILLed mid-load and left down: its pid must be gone, the
#                    cluster must move those leaders, both pipelines must still run at the end,
#                    and strict verify finds nothing lost or duplicated
#   oversized-gap    region-a's pipeline alone: a load with two valid events too large for the
#                    outputs (1,000,263 bytes, and 1,048,000: just under 1 MiB), which must
#                    become too_large_for_output dead letters without stopping anything (strict
#                    verify); then records deleted (DeleteRecords, as retention would) behind
#                    the stopped pipeline, and again behind a frozen one (SIGSTOP, so the gap
#                    opens while it runs): each gap counted exactly by
#                    tidemark_source_gap_records_total and logged, and the job goes on
#   gateway          load through the ingestion gateway (sticky producers on both regions);
#                    region-b's broker stopped mid-load: its producers fall back to region-a,
#                    and return once region-b has been healthy for 3 s (a second, short load
#                    after the recovery makes sure they have traffic to return with). Then a
#                    second gateway with TLS and API tokens: the attacks curl can make (no
#                    token, a bad one, another region's, an untrusted certificate) get their
#                    answers, and the unmodified OpenTelemetry Python SDK (OTLP/HTTP exporter,
#                    gzip, from PyPI) logs through it with one token per region; every record
#                    must be on both regions' ordered topics exactly once, mapped as documented,
#                    and every partition in event-time order (tests/real/otel_check.py, with
#                    kafka-python)
#   secure           the regions on SASL_SSL with SCRAM users and ACLs (infra/regions up
#                    --secure), MM2 over SASL_SSL, both pipelines (pipelines/REGION.secure.toml;
#                    region-a's with SCRAM-SHA-512, region-b's with SCRAM-SHA-256) and the
#                    gateway (gateway.secure.toml) each as its own principal; the whole load
#                    through the gateway, replication paused for 5 s mid-load with a hold longer
#                    than the split (no event late), strict verify as admin by mutual TLS to
#                    region-a and SASL PLAIN to region-b (infra/secure-clusters-mtls-plain.toml).
#                    Then the refusals, each of which must stop a pipeline, the gateway and
#                    verify within 30 s with an error naming the cluster and the cause: a wrong
#                    password, an untrusted CA, plaintext where TLS was expected (the controller
#                    port), and mutual TLS without a client certificate; verify and loadgen as
#                    principals without the ACL they need must say which topic and operation.
#                    ACLs taken away from the running pipelines (region-a's write to its ordered
#                    topic, region-b's read of its events) must stop them, naming the topic and
#                    the operation. No password may appear in any log of the run, in `tidemark
#                    graph`, on the status page or in the metrics
#
# Every scenario proves its fault: a fault command that fails fails the scenario (each runs
# with errexit on), a killed pid must be gone, and a cut in replication must show as a split in
# the pipelines' metrics. Each scenario starts from fresh clusters, so each verifies only its
# own traffic. Everything
# this script starts is stopped by pid when it exits. Only loopback addresses are used.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
DURATION=60
EVENTS=10000
SCENARIOS=()
while [ $# -gt 0 ]; do
  case $1 in
    --duration)
      DURATION=$2
      shift 2
      ;;
    --events)
      EVENTS=$2
      shift 2
      ;;
    *)
      SCENARIOS+=("$1")
      shift
      ;;
  esac
done
[ "$DURATION" -ge 20 ] || {
  echo "--duration below 20 s would leave no load on either side of a 5 s split" >&2
  exit 2
}
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(split-hold-off split-advised split-hold-on kill-mm2
  partition hosts beyond-horizon kill-pipeline restart-broker kill-broker disk-full oversized-gap gateway
  secure)

BIN=$ROOT/target/release/tidemark
WORK=$(mktemp -d /tmp/tidemark-scenarios.XXXXXX)
REGIONS=$ROOT/infra/regions
declare -A PIPELINE_PID=()
LOADGEN_PID=
GATEWAY_PID=
OTLP_GATEWAY_PID=
GATEWAY_LOAD_PID=
MM2_START_PID=
SAMPLER_PID=
FAILED=0

log() { echo "[$(date +%H:%M:%S)] $*"; }

stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local r
  stop_pid "$SAMPLER_PID"
  stop_pid "$LOADGEN_PID"
  stop_pid "$GATEWAY_PID"
  stop_pid "$OTLP_GATEWAY_PID"
  stop_pid "$GATEWAY_LOAD_PID"
  stop_pid "$MM2_START_PID"
  for r in "${!PIPELINE_PID[@]}"; do
    stop_pid "${PIPELINE_PID[$r]}"
  done
  hosts_down
  "$REGIONS" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

# start_pipeline REGION HOLD [WORKERS [FLAGS...]]: runs pipelines/REGION.toml with
# max_split_hold = HOLD (and the dedup horizon HORIZON, when the caller sets it).
start_pipeline() {
  local r=$1 hold=$2 file=$WORK/$1.toml workers=${3:-2}
  shift $(($# < 3 ? $# : 3))
  sed -e "s/^max_split_hold = .*/max_split_hold = \"$hold\"/" \
    -e "s/^horizon = .*/horizon = \"${HORIZON:-10m}\"/" "pipelines/$r.toml" >"$file"
  if [ -n "${SECURE_RUN:-}" ]; then
    # pipelines/REGION.secure.toml laid over this copy (its include), as a user would.
    # Region-b's pipeline signs in with SCRAM-SHA-256, so that both SCRAM mechanisms carry a
    # whole run (everything else uses SCRAM-SHA-512; verify uses mutual TLS and PLAIN).
    local mechanism=SCRAM-SHA-512
    [ "$r" = region-a ] || mechanism=SCRAM-SHA-256
    { echo "include = \"$r.toml\"" && grep -v '^include' "pipelines/$r.secure.toml"; } |
      sed -e "s/^\"sasl.mechanism\" = .*/\"sasl.mechanism\" = \"$mechanism\"/" >"$WORK/$r.secure.toml"
    grep -q "\"sasl.mechanism\" = \"$mechanism\"" "$WORK/$r.secure.toml" || {
      log "pipelines/$r.secure.toml has no sasl.mechanism to set"
      return 1
    }
    file=$WORK/$r.secure.toml
  fi
  "$BIN" run "$file" --workers "$workers" "$@" >>"$WORK/$r.log" 2>&1 &
  PIPELINE_PID[$r]=$!
}

# restored REGION: how many times REGION's pipeline has logged that it restored its state.
restored() { grep -c "state restored" "$WORK/$1.log" || true; }

# wait_restored REGION COUNT: waits up to 90 s for the COUNTth restore of REGION's pipeline.
wait_restored() {
  local deadline=$((SECONDS + 90))
  until [ "$(restored "$1")" -ge "$2" ]; do
    [ $SECONDS -lt $deadline ] || {
      log "$1's pipeline did not log its restore #$2 within 90 s"
      return 1
    }
    sleep 0.5
  done
}

# wait_gone PID: waits up to 10 s for a killed PID (not a child of this shell) to be gone.
wait_gone() { wait_gone_within 10 "$1"; }

# wait_gone_within SECONDS PID: waits for PID (not a child of this shell) to be gone.
wait_gone_within() {
  local deadline=$((SECONDS + $1))
  while kill -0 "$2" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || {
      log "pid $2 still runs $1 s later"
      return 1
    }
    sleep 0.5
  done
}

# kill_restart REGION HOLD WORKERS: SIGKILLs REGION's pipeline once it is running, proves the
# pid is gone, restarts it with WORKERS workers, and waits for the new process's restore.
kill_restart() {
  local r=$1 pid=${PIPELINE_PID[$1]} n
  n=$(restored "$r")
  log "kill -9 the $r pipeline (pid $pid); restarting it with $3 worker(s)"
  kill -KILL "$pid" || return 1
  wait "$pid" 2>/dev/null || true
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid is still alive after SIGKILL"
    return 1
  fi
  start_pipeline "$r" "$2" "$3"
  wait_restored "$r" $((n + 1))
}

# kill_pipelines HOLD: the kill-pipeline fault (see the header), every step checked.
kill_pipelines() {
  local hold=$1 old new
  wait_restored region-a 1 && wait_restored region-b 1 || return 1
  kill_restart region-a "$hold" 1 || return 1
  # MM2 SIGKILLed while the pipelines are being killed: replication stops for at least 5 s
  # (a split) and restarts by re-sending what it had not committed, so copies straddle the
  # pipelines' restarts as well.
  local mm2 mm2_down
  mm2=$("$REGIONS" pid mm2) || return 1
  log "kill -9 MM2 (pid $mm2): replication stops until it is started again"
  kill -KILL "$mm2" || return 1
  mm2_down=$SECONDS
  wait_gone "$mm2" || return 1
  kill_restart region-b "$hold" 2 || return 1
  sleep $((mm2_down + 5 > SECONDS ? mm2_down + 5 - SECONDS : 0))
  log "starting MM2 again, $((SECONDS - mm2_down)) s after its kill"
  "$REGIONS" start mm2 >"$WORK/mm2-start.log" 2>&1 &
  MM2_START_PID=$!
  kill_restart region-a "$hold" 2 || return 1
  sleep 2
  kill_restart region-a "$hold" 2 || return 1
  wait "$MM2_START_PID" || {
    log "MM2 did not start again"
    cat "$WORK/mm2-start.log"
    return 1
  }
  MM2_START_PID=
  log "MM2 replicates again (pid $("$REGIONS" pid mm2)), $((SECONDS - mm2_down)) s after its kill"
  sleep 2
  # A second copy of the same pipeline: its transactional producers fence the first, which
  # must stop with an error that says so, and never write beside it.
  old=${PIPELINE_PID[region-a]}
  # Its metrics on another port: the first still holds region-a's.
  start_pipeline region-a "$hold" 2 --metrics-listen 127.0.0.1:9466
  new=${PIPELINE_PID[region-a]}
  log "a second region-a pipeline (pid $new) beside pid $old"
  # A fenced producer learns it is fenced when it next talks to the coordinator, at its next
  # commit: a little more traffic makes sure the first has something to write (the load may
  # have ended), and it is verified with the rest.
  "$BIN" loadgen --events 200 --duration 5s --jitter 1s --seed "$RANDOM" \
    --out "$WORK/kill-pipeline.fence.ids" >"$WORK/kill-pipeline.fence.log" 2>&1 || {
    log "loadgen beside the two copies failed"
    cat "$WORK/kill-pipeline.fence.log"
    return 1
  }
  ids+=(--ids "$WORK/kill-pipeline.fence.ids")
  local deadline=$((SECONDS + 60))
  while kill -0 "$old" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || {
      log "the fenced region-a pipeline (pid $old) did not stop within 60 s"
      kill -KILL "$old"
      return 1
    }
    sleep 0.5
  done
  if wait "$old"; then
    log "the fenced region-a pipeline exited with status 0"
    return 1
  fi
  grep -q "fenced: another instance of this pipeline" "$WORK/region-a.log" || {
    log "the fenced pipeline did not say it was fenced"
    return 1
  }
  log "pid $old stopped: $(grep -m1 -o 'fenced: another instance[^;]*' "$WORK/region-a.log")"
}

# leaders_on REGION TOPIC NODE: how many partitions of TOPIC node NODE leads.
leaders_on() {
  "$REGIONS" topics "$1" --describe --topic "$2" 2>/dev/null |
    awk -v n="$3" '$1 == "Topic:" && $3 == "Partition:" && $6 == n {c++} END {print c + 0}'
}

# three_broker: region-b's second node SIGKILLed mid-load (see the header), every step checked.
three_broker() {
  local led deadline
  led=$(leaders_on region-b log-events 2)
  [ "$led" -gt 0 ] || {
    log "region-b's node 2 leads no partition of log-events: killing it would prove nothing"
    return 1
  }
  log "kill -9 region-b's node 2, leader of $led of log-events' partitions; left down"
  "$REGIONS" kill region-b-2 || return 1
  deadline=$((SECONDS + 60))
  until [ "$(leaders_on region-b log-events 2)" = 0 ]; do
    [ $SECONDS -lt $deadline ] || {
      log "region-b still names node 2 a leader 60 s after its kill"
      return 1
    }
    sleep 1
  done
  log "region-b moved node 2's leaders to the other nodes"
}

# disk_full HOLD: region-b's log dir filled mid-load (see the header), every step checked.
disk_full() {
  local broker pid log=$ROOT/infra/state/region-b.log
  broker=$("$REGIONS" pid region-b) || return 1
  log "filling region-b's log dir mid-load (broker pid $broker)"
  "$REGIONS" fill-disk region-b || return 1
  # The broker's next append fails. Kafka takes a log dir it cannot write offline, and this
  # broker's only log dir also holds its metadata log, so it stops.
  wait_gone_within 120 "$broker" || return 1
  grep -q "No space left on device" "$log" || {
    log "region-b's broker stopped, but its log does not say the disk was full"
    tail -n 20 "$log"
    return 1
  }
  log "region-b's broker (pid $broker) stopped: $(grep -m1 -o 'No space left on device' "$log")"
  sleep 3
  "$REGIONS" free-disk region-b || return 1
  "$REGIONS" start region-b || return 1
  log "region-b's broker answers again"
  # Either outcome is allowed: riding it out, or stopping with an error a restart recovers from.
  pid=${PIPELINE_PID[region-b]}
  if kill -0 "$pid" 2>/dev/null; then
    DISK_FULL_OUTCOME="rode it out"
  else
    if wait "$pid"; then
      log "region-b's pipeline exited with status 0 while its broker was down"
      return 1
    fi
    # main prints the error that stopped the job last, as "error: ...".
    grep -q "^error: " "$WORK/region-b.log" || {
      log "region-b's pipeline stopped without saying why"
      return 1
    }
    DISK_FULL_OUTCOME="stopped: $(grep "^error: " "$WORK/region-b.log" | tail -n1 | cut -c1-200)"
    local n
    n=$(restored region-b)
    start_pipeline region-b "$1"
    wait_restored region-b $((n + 1)) || return 1
  fi
  log "region-b's pipeline: $DISK_FULL_OUTCOME"
}

metric() {
  # metric PORT NAME: the first sample of NAME on the pipeline's /metrics, or nothing.
  curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk -v n="$2" 'index($1, n "{") == 1 || $1 == n {print $2; exit}'
}

# Samples replication lag and the split gauge on both pipelines every half second.
start_sampler() {
  (
    while true; do
      for port in 9464 9465; do
        echo "$port $(metric $port tidemark_replication_lag_seconds) $(metric $port tidemark_split_brain)"
      done
      sleep 0.5
    done
  ) >"$WORK/samples" 2>/dev/null &
  SAMPLER_PID=$!
}

metric_sum() {
  # metric_sum PORT NAME: the sum over all label sets of NAME (0 when nothing answers).
  { curl -s --max-time 2 "http://127.0.0.1:$1/metrics" || true; } |
    awk -v n="$2" 'index($1, n "{") == 1 || $1 == n {s += $2} END {printf "%d", s}'
}

# wait_metric PORT NAME VALUE SECONDS: polls until the sum of NAME on PORT is VALUE.
wait_metric() {
  local deadline=$((SECONDS + $4))
  while [ "$(metric_sum "$1" "$2")" != "$3" ]; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}

max_lag() { awk '$2 != "" && $2 + 0 > m {m = $2 + 0} END {printf "%.1f", m}' "$WORK/samples"; }
split_seen() { awk '$3 == 1 {s = 1} END {print s ? "yes" : "no"}' "$WORK/samples"; }

late_count() {
  # late_count VERIFY_OUTPUT COLUMN: the "late" row of a verify table.
  awk -v c="$2" '$1 == "late" && $2 ~ /^[0-9]+$/ {print $(c + 1)}' "$1"
}

# fresh_regions NAME [UP_FLAGS]: the regions purged and started again, region-a's pipeline log
# emptied.
fresh_regions() {
  "$REGIONS" down --purge >/dev/null
  "$REGIONS" up "${@:2}" >"$WORK/$1.infra.log" 2>&1 || {
    cat "$WORK/$1.infra.log"
    return 1
  }
  : >"$WORK/region-a.log"
}

# scenario NAME HOLD FAULT [VERIFY_FLAGS]: fresh regions, both pipelines, load, the fault in
# the middle of the load, drain, verify.
scenario() {
  local name=$1 hold=$2 fault=$3 flags=${4:-}
  local started=$SECONDS out=$WORK/$name.verify recovered=yes since
  since=$(date +%s)
  log "== $name: $EVENTS events over ${DURATION}s, max_split_hold = $hold, fault: $fault"
  # A dedup horizon shorter than the pause, so the copies that cross after it are past it.
  local HORIZON=10m
  [ "$fault" != beyond-horizon ] || HORIZON=15s
  if [ "$fault" = partition ]; then
    # MM2 in a network namespace of its own, so the partition can cut its link for real.
    fresh_regions "$name" --netns || return 1
  elif [ "$fault" = three-broker ]; then
    fresh_regions "$name" --brokers 3 || return 1
  elif [ "$name" = secure ]; then
    fresh_regions "$name" --secure || return 1
    local SECURE_RUN=yes
  elif [ "$fault" = disk-full ]; then
    # Small enough to fill in a moment, large enough for the topics' first segments.
    fresh_regions "$name" --disk 256m || return 1
  else
    fresh_regions "$name" || return 1
  fi
  : >"$WORK/region-b.log"
  start_pipeline region-a "$hold"
  start_pipeline region-b "$hold"
  start_sampler
  # Event-time jitter of 1 s leaves 1 s of the pipelines' 2 s disorder bound for the trip
  # through Kafka on a busy 2-core machine.
  local load=(--events "$EVENTS" --duration "${DURATION}s" --jitter 1s)
  local ids=(--ids "$WORK/$name.ids")
  if [ "$name" = split-hold-on ]; then
    # The dashboard truth test needs every panel fed, the gateway's too: a small second load
    # goes through the gateway, and verify checks both loads.
    "$BIN" gateway --config gateway.toml >"$WORK/gateway.log" 2>&1 &
    GATEWAY_PID=$!
    sleep 2
    "$BIN" loadgen --events 1000 --duration "$((DURATION + 30))s" --gateway 127.0.0.1:8080 --jitter 1s \
      --seed "$RANDOM" --out "$WORK/$name.gateway.ids" >"$WORK/$name.gateway-load.log" 2>&1 &
    GATEWAY_LOAD_PID=$!
    ids+=(--ids "$WORK/$name.gateway.ids")
  fi
  if [ "$name" = secure ]; then
    # The whole load through the gateway, as its own principal.
    "$BIN" gateway --config gateway.secure.toml >"$WORK/gateway.log" 2>&1 &
    GATEWAY_PID=$!
    load+=(--gateway 127.0.0.1:8080 --batch 10 --connections 4 --producers 8)
  fi
  if [ "$fault" = gateway ]; then
    # Long enough for region-b to come back and be healthy for return_after before the end.
    local gduration=$((DURATION > 45 ? DURATION : 45))
    sed 's/^return_after = .*/return_after = "3s"/' gateway.toml >"$WORK/gateway.toml"
    "$BIN" gateway --config "$WORK/gateway.toml" >"$WORK/gateway.log" 2>&1 &
    GATEWAY_PID=$!
    load=(--events "$EVENTS" --duration "${gduration}s" --jitter 1s --gateway 127.0.0.1:8080 --batch 10
      --connections 4 --producers 8)
  fi
  sleep 3
  "$BIN" loadgen "${load[@]}" --seed "$RANDOM" \
    --out "$WORK/$name.ids" >"$WORK/$name.loadgen.log" 2>&1 &
  LOADGEN_PID=$!
  # A 5 s fault centred on the middle of the load (a quarter in for the gateway, so the return
  # happens while load is still running).
  # The kills start early: four restarts take most of a short load.
  case $fault in
    gateway) sleep 10 ;;
    kill-pipeline) sleep 3 ;;
    *) sleep $((DURATION / 2 - 2)) ;;
  esac
  case $fault in
    pause)
      if [ "$name" = split-hold-on ]; then
        # Quiet before the pause, so a firing alert afterwards is the pause's doing.
        python3 tests/real/dashboard_truth.py alert TidemarkSplitBrain resolved --timeout 30 ||
          ALERT_QUIET_BEFORE=no
      fi
      log "pausing replication for 5 s"
      PAUSE_START=$(date +%s%3N)
      "$REGIONS" pause-replication
      local alert_pid=
      if [ "$name" = split-hold-on ]; then
        python3 tests/real/dashboard_truth.py alert TidemarkSplitBrain firing --timeout 40 \
          >"$WORK/alert-firing.log" 2>&1 &
        alert_pid=$!
      fi
      sleep 5
      "$REGIONS" resume-replication
      PAUSE_END=$(date +%s%3N)
      if [ -n "$alert_pid" ]; then
        if wait "$alert_pid"; then ALERT_FIRED=yes; else ALERT_FIRED=no; fi
        cat "$WORK/alert-firing.log"
        # The status page of region-a's pipeline in headless Chromium, while the gateway's
        # load still runs (Chromium's start-up is kept away from the first seconds of load).
        python3 tests/real/status_page.py http://127.0.0.1:9464/ \
          "$ROOT/artifacts/status-page.png" >"$WORK/status-page.log" 2>&1 &
        STATUS_PID=$!
      fi
      ;;
    kill-mm2)
      # `kill` fails unless the pid is gone.
      "$REGIONS" kill mm2
      sleep 3
      "$REGIONS" start mm2
      ;;
    partition)
      local mm2
      mm2=$("$REGIONS" pid mm2)
      log "cutting MM2 (pid $mm2) off from region-b for 15 s; MM2 keeps running"
      "$REGIONS" partition region-b
      sleep 15
      kill -0 "$mm2" || {
        log "MM2 (pid $mm2) died during the partition"
        recovered=no
      }
      # heal waits for new replicated heartbeats in both regions: MM2 recovered by itself.
      "$REGIONS" heal
      [ "$("$REGIONS" pid mm2)" = "$mm2" ] || {
        log "MM2 is not the process that was partitioned"
        recovered=no
      }
      ;;
    beyond-horizon)
      log "freezing MM2 for 30 s, twice the dedup horizon"
      "$REGIONS" pause-replication --freeze
      sleep 30
      "$REGIONS" resume-replication
      ;;
    kill-broker)
      log "kill -9 region-b's broker mid-load; started again 5 s later"
      "$REGIONS" kill region-b
      sleep 5
      "$REGIONS" start region-b
      log "region-b's broker answers again"
      ;;
    three-broker)
      three_broker || {
        log "the three-broker fault did not happen as planned"
        recovered=no
      }
      ;;
    disk-full)
      disk_full "$hold" || {
        log "the disk-full fault did not happen as planned"
        recovered=no
      }
      ;;
    kill-pipeline)
      kill_pipelines "$hold" || {
        log "the kill-pipeline fault did not happen as planned"
        recovered=no
      }
      ;;
    restart-broker | gateway)
      log "stopping region-b's broker for 5 s"
      "$REGIONS" stop region-b
      if "$REGIONS" pid region-b >/dev/null 2>&1; then
        log "region-b's broker still runs after its stop"
        recovered=no
      fi
      sleep 5
      "$REGIONS" start region-b
      log "region-b's broker answers again"
      if [ "$fault" = gateway ]; then
        # Region-b has recovered when the gateway's own probe says so; its writes count from
        # then.
        if wait_metric 8080 'tidemark_gateway_region_healthy{region="region-b"}' 1 120; then
          log "the gateway sees region-b healthy"
        else
          log "the gateway did not see region-b healthy within 120 s"
          recovered=no
        fi
        B_AT_RECOVERY=$(metric_sum 8080 'tidemark_gateway_events_total{region="region-b"}')
      fi
      ;;
  esac
  wait "$LOADGEN_PID" || {
    log "loadgen failed"
    cat "$WORK/$name.loadgen.log"
    return 1
  }
  LOADGEN_PID=
  if [ -n "$GATEWAY_LOAD_PID" ]; then
    wait "$GATEWAY_LOAD_PID" || {
      log "gateway loadgen failed"
      cat "$WORK/$name.gateway-load.log"
      return 1
    }
    GATEWAY_LOAD_PID=
  fi
  if [ "$fault" = gateway ] || [ "$name" = secure ]; then
    # The load's length is fixed but the broker's restart is not (a JVM start on a busy
    # machine can take most of the load), so the same sticky producers send once more after
    # the recovery: their return is always exercised, never raced against the end of the load.
    # (On the secure regions: after MM2's restart, so that the partitions held across the
    # split deliver again, rather than holding the watermark for the whole max_split_hold.)
    "$BIN" loadgen --events 400 --duration 10s --jitter 1s --gateway 127.0.0.1:8080 --batch 10 \
      --connections 4 --producers 8 --seed "$RANDOM" --out "$WORK/$name.after.ids" \
      >"$WORK/$name.after.log" 2>&1 &
    LOADGEN_PID=$!
    wait "$LOADGEN_PID" || {
      log "loadgen after the recovery failed"
      cat "$WORK/$name.after.log"
      return 1
    }
    LOADGEN_PID=
    ids+=(--ids "$WORK/$name.after.ids")
  fi
  tail -n1 "$WORK/$name.loadgen.log"
  local ok=yes
  [ "$recovered" = yes ] || ok=no
  # shellcheck disable=SC2086
  local tools=() a=127.0.0.1:19092 b=127.0.0.1:29092
  if [ -n "${SECURE_RUN:-}" ]; then
    # On the secure regions verify connects as admin by the brokers' two other ways in: mutual
    # TLS to region-a, SASL PLAIN to region-b.
    tools=(--cluster-config infra/secure-clusters-mtls-plain.toml)
    a=region-a
    b=region-b
  fi
  "$BIN" "${tools[@]}" verify --bootstrap "$a" --bootstrap "$b" \
    "${ids[@]}" --wait 180s $flags | tee "$out" || ok=no
  if [ "$fault" = gateway ]; then
    otel_through_gateway || ok=no
  fi
  if [ "$name" = secure ]; then
    secure_refusals || ok=no
    stop_pid "$GATEWAY_PID"
    GATEWAY_PID=
  fi
  if [ "$name" = split-hold-on ]; then
    # Prometheus scraped the whole run: every dashboard panel must have data, the split-brain
    # alert must have fired during the pause and be resolved now.
    log "dashboard truth test"
    # The split is the 5 s pause and more (MM2's restart), so Prometheus must have seen 5 s.
    python3 tests/real/dashboard_truth.py recorded --min-split 5 || ok=no
    # Flat by design here: no conflicting copies are sent, the hold leaves nothing late (let
    # alone past the horizon), and no region goes down for the gateway (no fallbacks; its
    # events/s query still has to move).
    python3 tests/real/dashboard_truth.py panels --wait 60 --since "$since" \
      --flat "Dedup conflicts" --flat "Late events/s" --flat "Late events past the dedup horizon" \
      --flat "Gateway view of region health" --flat "Gateway events/s by region, and fallbacks [B]" || ok=no
    [ "${ALERT_FIRED:-no}" = yes ] && [ "${ALERT_QUIET_BEFORE:-yes}" = yes ] || {
      log "TidemarkSplitBrain did not go from quiet before the pause to firing during it"
      ok=no
    }
    python3 tests/real/dashboard_truth.py alert TidemarkSplitBrain resolved --timeout 60 || ok=no
    log "status page in headless Chromium"
    wait "$STATUS_PID" || ok=no
    cat "$WORK/status-page.log"
    stop_pid "$GATEWAY_PID"
    GATEWAY_PID=
  fi
  stop_pid "$SAMPLER_PID"
  SAMPLER_PID=
  local la lb da db
  la=$(late_count "$out" 1)
  lb=$(late_count "$out" 2)
  # Copies dropped by dedup in each region (after a restart, only the new process's count).
  da=$(metric_sum 9464 tidemark_duplicates_total)
  db=$(metric_sum 9465 tidemark_duplicates_total)
  local ma mb
  ma=$(metric_sum 9464 tidemark_dedup_beyond_horizon_total)
  mb=$(metric_sum 9465 tidemark_dedup_beyond_horizon_total)
  for r in region-a region-b; do
    if [ "$fault" = three-broker ] && ! kill -0 "${PIPELINE_PID[$r]}" 2>/dev/null; then
      log "$r's pipeline did not ride out the loss of one of three brokers"
      ok=no
    fi
    stop_pid "${PIPELINE_PID[$r]}"
    unset "PIPELINE_PID[$r]"
  done
  case $name in
    split-hold-off)
      # The split outlasted max_out_of_orderness, so each region got the other's backlog late.
      if [ "${la:-0}" -eq 0 ] || [ "${lb:-0}" -eq 0 ]; then
        log "expected late events in both regions without a hold, got $la and $lb"
        ok=no
      fi
      analyse_late || ok=no
      ;;
    split-advised)
      local unique
      unique=$(awk '$1 == "acknowledged" && $2 == "unique" {print $4}' "$out")
      log "with the advised hold of $hold: late $la and $lb of $unique events"
      if [ $((la * 100)) -gt "$unique" ] || [ $((lb * 100)) -gt "$unique" ]; then
        log "expected at most 1 % late with the advised max_split_hold"
        ok=no
      fi
      ;;
    split-hold-on | partition | secure)
      # A split shorter than the hold costs latency, not late events.
      if [ "${la:-1}" -ne 0 ] || [ "${lb:-1}" -ne 0 ]; then
        log "expected no late events with a hold longer than the split, got $la and $lb"
        ok=no
      fi
      ;;
    restart-broker)
      # A graceful stop shorter than unreachable_hold: the README's figure is 0 late events.
      if [ "${la:-1}" -ne 0 ] || [ "${lb:-1}" -ne 0 ]; then
        log "expected no late events across a graceful broker restart, got $la and $lb"
        ok=no
      fi
      ;;
    beyond-horizon)
      # The copies that crossed after the pause were past the horizon: marked, counted, and
      # every extra copy among them marked (verify ran with --allow-beyond-horizon, so an
      # unmarked copy still fails it).
      local ba bb
      ba=$(awk '$1 == "beyond" {print $4}' "$out")
      bb=$(awk '$1 == "beyond" {print $6}' "$out")
      log "beyond the horizon: $ba and $bb marked records in the late topics; counted $ma and $mb"
      if [ "${ba:-0}" -eq 0 ] || [ "${bb:-0}" -eq 0 ] || [ "$ba" != "$ma" ] || [ "$bb" != "$mb" ]; then
        log "expected marked records in both regions, as many as each pipeline counted"
        ok=no
      fi
      ;;
  esac
  case $fault in
    restart-broker | kill-broker | disk-full)
      # The broker's absence must have reached region-b's pipeline, not just its pid file.
      grep -q "reachable=false" "$WORK/region-b.log" || {
        log "region-b's pipeline never reported its broker unreachable"
        ok=no
      }
      ;;
    pause | kill-mm2 | kill-pipeline | partition | beyond-horizon)
      # Replication must have stopped for real: a split the pipelines saw, not just a command
      # that returned.
      if [ "$(split_seen)" != yes ]; then
        log "expected the pipelines to report a split while replication was cut"
        ok=no
      fi
      ;;
  esac
  if [ "$fault" = gateway ]; then
    local fb back
    fb=$(metric_sum 8080 'tidemark_gateway_region_fallbacks_total{from="region-b",to="region-a"}')
    back=$(($(metric_sum 8080 'tidemark_gateway_events_total{region="region-b"}') - B_AT_RECOVERY))
    grep "gateway:" "$WORK/$name.loadgen.log" || true
    log "gateway: $fb fallbacks region-b -> region-a; $back events written to region-b after it recovered; $(grep -c REGION_FALLBACK "$WORK/gateway.log") REGION_FALLBACK and $(grep -c REGION_RETURN "$WORK/gateway.log") REGION_RETURN log events"
    if [ "${fb:-0}" -eq 0 ] || [ "$back" -le 0 ] || ! grep -q REGION_RETURN "$WORK/gateway.log"; then
      log "expected fallbacks while region-b was down, and producers back on region-b after it recovered"
      ok=no
    fi
    stop_pid "$GATEWAY_PID"
    GATEWAY_PID=
  fi
  local line
  line=$(printf '%-15s %-4s %6s/%-6s %7s/%-7s %8ss  %-3s %5ds' \
    "$name" "$ok" "$la" "$lb" "$da" "$db" "$(max_lag)" "$(split_seen)" $((SECONDS - started)))
  echo "$line" >>"$WORK/results"
  log "$line"
  if [ $ok = no ]; then
    log "pipeline logs: $WORK/region-a.log $WORK/region-b.log"
    tail -n 20 "$WORK/region-a.log" "$WORK/region-b.log" || true
    cp "$WORK/region-a.log" "$WORK/$name.region-a.log"
    cp "$WORK/region-b.log" "$WORK/$name.region-b.log"
    cp "$ROOT/infra/state/mm2.log" "$WORK/$name.mm2.log" 2>/dev/null || true
    return 1
  fi
}

# otel_venv: the OpenTelemetry Python SDK, its OTLP/HTTP exporter and kafka-python from PyPI, in
# a virtual environment kept under infra/.cache (lz4: the pipelines compress their output).
otel_venv() {
  local venv=$ROOT/infra/.cache/otel-venv
  local want="opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2 kafka-python==3.0.12 lz4==4.4.5"
  if [ "$(cat "$venv/.wants" 2>/dev/null)" != "$want" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" || return 1
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --disable-pip-version-check $want >"$WORK/pip.log" 2>&1 || {
      cat "$WORK/pip.log"
      return 1
    }
    echo "$want" >"$venv/.wants"
  fi
  OTEL_PYTHON=$venv/bin/python
}

# answer_is CODE WHAT CURL-ARGS...: the gateway's status for one request must be CODE.
answer_is() {
  local want=$1 what=$2 got
  shift 2
  got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@") || true
  if [ "$got" != "$want" ]; then
    log "$what: HTTP $got, expected $want"
    return 1
  fi
  log "$what: $got"
}

# otel_through_gateway: the gateway with TLS and API tokens on the real regions (see the
# header): curl's attacks, then the OpenTelemetry SDK's logs checked on both ordered topics.
otel_through_gateway() {
  otel_venv || return 1
  local dir=$WORK/otlp url=https://127.0.0.1:8443/v1/logs
  # A CA, and a server certificate for 127.0.0.1 signed by it; a second CA nobody trusts.
  "$ROOT/infra/gateway-tls" "$dir" gateway.toml 127.0.0.1:8443 || return 1
  local token_a token_b
  token_a=$("$BIN" gateway token add --file "$dir/tokens.toml" --name otel-a --producer otel-a \
    --region region-a) || return 1
  token_b=$("$BIN" gateway token add --file "$dir/tokens.toml" --name otel-b --producer otel-b \
    --region region-b) || return 1
  "$BIN" gateway --config "$dir/gateway.toml" >"$WORK/otlp-gateway.log" 2>&1 &
  OTLP_GATEWAY_PID=$!
  local deadline=$((SECONDS + 30))
  until curl -s -o /dev/null --cacert "$dir/ca.pem" https://127.0.0.1:8443/readyz; do
    [ $SECONDS -lt $deadline ] && kill -0 "$OTLP_GATEWAY_PID" 2>/dev/null || {
      log "the TLS gateway did not come up"
      cat "$WORK/otlp-gateway.log"
      return 1
    }
    sleep 0.5
  done
  local ok=yes body='{"resourceLogs":[]}' tls=(--cacert "$dir/ca.pem" -H 'Content-Type: application/json')
  answer_is 401 "no token" "${tls[@]}" -d "$body" "$url" || ok=no
  answer_is 401 "a made-up token" "${tls[@]}" -H "Authorization: Bearer tdm_${token_a:4:8}" -d "$body" "$url" || ok=no
  answer_is 403 "region-a's token asking for region-b" "${tls[@]}" -H "Authorization: Bearer $token_a" \
    -H 'X-Region: region-b' -d "$body" "$url" || ok=no
  answer_is 200 "region-a's token, an empty export" "${tls[@]}" -H "Authorization: Bearer $token_a" -d "$body" "$url" || ok=no
  answer_is 000 "a client that trusts another CA" --cacert "$dir/other.pem" -d "$body" "$url" || ok=no
  # Each region's producer logs through the gateway, side by side, configured only as the
  # OpenTelemetry documentation says (requests would let a CA bundle variable override the
  # exporter's certificate, hence the env -u).
  local records=500 r token pids=()
  for r in a b; do
    [ $r = a ] && token=$token_a || token=$token_b
    env -u REQUESTS_CA_BUNDLE -u CURL_CA_BUNDLE \
      OTEL_EXPORTER_OTLP_LOGS_ENDPOINT="$url" \
      OTEL_EXPORTER_OTLP_LOGS_HEADERS="Authorization=Bearer%20$token,X-Region=region-$r" \
      OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE="$dir/ca.pem" \
      OTEL_EXPORTER_OTLP_LOGS_COMPRESSION=gzip \
      OTEL_SERVICE_NAME=checkout \
      OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=scenario,service.version=1.4.2 \
      "$OTEL_PYTHON" tests/real/otel_emit.py --records $records --tag region-$r \
      --expect "$dir/expect-$r.jsonl" >"$WORK/otel-emit-$r.log" 2>&1 &
    pids+=($!)
  done
  for r in "${pids[@]}"; do
    wait "$r" || {
      log "the OpenTelemetry SDK's run failed"
      cat "$WORK"/otel-emit-*.log
      ok=no
    }
  done
  local accepted
  accepted=$(curl -s --max-time 2 --cacert "$dir/ca.pem" https://127.0.0.1:8443/metrics |
    awk 'index($1, "tidemark_gateway_token_events_total{") == 1 {s += $2} END {printf "%d", s}')
  log "OpenTelemetry SDK: $(cat "$dir"/expect-*.jsonl | wc -l) records emitted; the TLS gateway counted $accepted events for the two tokens"
  stop_pid "$OTLP_GATEWAY_PID"
  OTLP_GATEWAY_PID=
  "$OTEL_PYTHON" tests/real/otel_check.py --bootstrap 127.0.0.1:19092 --bootstrap 127.0.0.1:29092 \
    --expect "$dir/expect-a.jsonl" --expect "$dir/expect-b.jsonl" --service checkout \
    --resource deployment.environment.name=scenario --resource service.version=1.4.2 --wait 120 || ok=no
  [ $ok = yes ]
}

# refused WHAT EXPECT COMMAND...: COMMAND must exit non-zero within 30 s, and its output must
# say EXPECT (which names the cluster and the cause).
refused() {
  local what=$1 expect=$2 started=$SECONDS rc=0 out
  out=$WORK/refused.$(echo "$what" | tr -cs 'a-z0-9\n' -).log
  shift 2
  timeout 60 "$@" >"$out" 2>&1 || rc=$?
  local took=$((SECONDS - started))
  if [ $rc = 0 ] || [ $rc = 124 ] || [ $took -gt 30 ]; then
    log "$what: exit status $rc after $took s; expected a refusal within 30 s"
    tail -n 5 "$out"
    return 1
  fi
  grep -q -- "$expect" "$out" || {
    log "$what: exit status $rc, but its output does not say \"$expect\""
    tail -n 5 "$out"
    return 1
  }
  log "$what: refused in $took s: $(grep -m1 -o "$expect.\{0,100\}" "$out")"
}

# secure_refusals: on the secure regions, after the verified load (see the header): each
# misconfiguration must stop a pipeline, the gateway and a tool; an ACL taken away from a
# running pipeline must stop it; and no password appears anywhere tidemark writes.
secure_refusals() {
  local case variant expect ok=yes
  cp gateway.toml "$WORK/gateway.toml"
  for case in password ca plaintext certificate; do
    case $case in
      password)
        variant=(-e 's/"sasl.password" = .*/"sasl.password" = "not-the-password"/')
        expect="cluster region-a: authentication failed"
        ;;
      ca)
        variant=(-e 's#"ssl.ca.location" = .*#"ssl.ca.location" = "infra/state/secure/untrusted-ca.pem"#')
        expect="cluster region-a: TLS failed"
        ;;
      plaintext)
        # Each region's controller port: a Kafka listener in plaintext (region-b's is unused by
        # region-a's pipeline).
        variant=(-e '$a [clusters.region-a]\nbootstrap = "127.0.0.1:19093"\n[clusters.region-b]\nbootstrap = "127.0.0.1:29093"')
        expect="cluster region-a: TLS was expected, and the broker does not speak it"
        ;;
      certificate)
        # The mutual-TLS listener, with no client certificate to show.
        variant=(-e 's/"security.protocol" = .*/"security.protocol" = "SSL"/'
          -e '$a [clusters.region-a]\nbootstrap = "127.0.0.1:19094"\n[clusters.region-b]\nbootstrap = "127.0.0.1:29094"')
        expect="cluster region-a: TLS failed: .*alert bad certificate"
        ;;
    esac
    { echo 'include = "region-a.toml"' && grep -v '^include' pipelines/region-a.secure.toml; } |
      sed "${variant[@]}" >"$WORK/refuse-$case.toml"
    { echo 'include = "gateway.toml"' && grep -v '^include' gateway.secure.toml; } |
      sed "${variant[@]}" >"$WORK/refuse-$case.gateway.toml"
    # The three at once: each must be refused on its own within 30 s.
    local pids=() p
    refused "pipeline, $case" "$expect" "$BIN" run "$WORK/refuse-$case.toml" \
      --metrics-listen 127.0.0.1:9470 &
    pids+=($!)
    refused "gateway, $case" "$expect" "$BIN" gateway --config "$WORK/refuse-$case.gateway.toml" \
      --listen 127.0.0.1:8090 &
    pids+=($!)
    refused "verify, $case" "$expect" "$BIN" --cluster-config "$WORK/refuse-$case.gateway.toml" \
      verify --bootstrap region-a --ids "$WORK/secure.ids" &
    pids+=($!)
    for p in "${pids[@]}"; do
      wait "$p" || ok=no
    done
  done
  # A tool whose principal lacks the ACL it needs: verify as the gateway (which may only write
  # events), loadgen as region-a's pipeline (which may only read them).
  local as
  for as in gateway pipeline-region-a; do
    sed -e "s/\"admin\"/\"$as\"/" -e "s#admin.password#$as.password#" infra/secure-clusters.toml \
      >"$WORK/as-$as.toml"
  done
  refused "verify, no ACL" "cluster region-a: not authorized to Describe topic log-events-ordered" \
    "$BIN" --cluster-config "$WORK/as-gateway.toml" verify --bootstrap region-a --ids "$WORK/secure.ids" || ok=no
  refused "loadgen, no ACL" "cluster region-a: not authorized to Write topic log-events" \
    "$BIN" --cluster-config "$WORK/as-pipeline-region-a.toml" loadgen --region-a region-a \
    --region-b region-a --events 20 --duration 1s --out "$WORK/secure.no-acl.ids" || ok=no
  # What the pipelines serve, taken while they run: it is searched for passwords below.
  curl -s --max-time 5 http://127.0.0.1:9465/ >"$WORK/status.secure.html" || true
  curl -s --max-time 5 http://127.0.0.1:9465/metrics >"$WORK/metrics.secure.txt" || true
  curl -s --max-time 5 http://127.0.0.1:8080/metrics >"$WORK/gateway-metrics.secure.txt" || true
  # The running pipelines lose a right each: region-a to write its ordered topic, region-b to
  # read its events. With traffic to move, each must stop, naming the topic and the operation.
  local region op topic said pid started
  for region in region-a region-b; do
    kill -0 "${PIPELINE_PID[$region]}" || {
      log "$region's pipeline is not running"
      return 1
    }
  done
  "$REGIONS" acls region-a --add --deny-principal User:pipeline-region-a --operation Write \
    --topic log-events-ordered >"$WORK/acl-deny.log" 2>&1 &&
    "$REGIONS" acls region-b --add --deny-principal User:pipeline-region-b --operation Read \
      --topic log-events >>"$WORK/acl-deny.log" 2>&1 || {
    cat "$WORK/acl-deny.log"
    return 1
  }
  started=$SECONDS
  "$BIN" --cluster-config infra/secure-clusters.toml loadgen --events 200 --duration 3s \
    --seed "$RANDOM" --out "$WORK/secure.denied.ids" >"$WORK/secure.denied.log" 2>&1 || {
    cat "$WORK/secure.denied.log"
    return 1
  }
  for region in region-a region-b; do
    pid=${PIPELINE_PID[$region]}
    op=Write topic=log-events-ordered
    [ "$region" = region-a ] || op=Read topic=log-events
    said="not authorized to $op topic $topic"
    if ! wait_gone_within $((30 - (SECONDS - started))) "$pid"; then
      log "$region's pipeline still runs $((SECONDS - started)) s after its $op was denied"
      ok=no
      continue
    fi
    if wait "$pid"; then
      log "$region's pipeline exited with status 0 when its $op was denied"
      ok=no
    fi
    if grep -q "^error: .*$said" "$WORK/$region.log"; then
      log "denied the $op: $region's pipeline stopped within $((SECONDS - started)) s of the load: $said"
    else
      log "$region's pipeline stopped without saying \"$said\""
      ok=no
    fi
  done
  # Every password infra/regions made, looked for in everything tidemark wrote or serves.
  "$BIN" graph pipelines/region-a.secure.toml >"$WORK/graph.secure.txt" 2>&1
  "$BIN" graph "$WORK/refuse-password.gateway.toml" >>"$WORK/graph.secure.txt" 2>&1 || true
  local secret found=0 files
  files=("$WORK"/*.log "$WORK/graph.secure.txt" "$WORK/status.secure.html" "$WORK/metrics.secure.txt" \
    "$WORK/gateway-metrics.secure.txt")
  [ -s "$WORK/status.secure.html" ] && [ -s "$WORK/metrics.secure.txt" ] || {
    log "region-b's status page or metrics did not answer: nothing to search"
    ok=no
  }
  for secret in infra/state/secure/*.password; do
    if grep -l -F -- "$(cat "$secret")" "${files[@]}"; then
      log "the password of $(basename "$secret" .password) is in the files above"
      found=1
    fi
  done
  if [ $found = 0 ]; then
    log "no password in ${#files[@]} logs and outputs (graph, status page, metrics)"
  else
    ok=no
  fi
  [ $ok = yes ]
}

# gap_load IDS: 1,000 events into region-a's log-events only, waiting for every one to be
# acknowledged; prints how many records the topic gained.
gap_load() {
  local before after
  before=$("$REGIONS" records region-a log-events)
  "$BIN" loadgen --events 1000 --duration 3s --region-b 127.0.0.1:19092 --failover 0 --retries 0 \
    --invalid 0 --seed "$RANDOM" --out "$1" >"$1.log" 2>&1 || {
    cat "$1.log" >&2
    return 1
  }
  after=$("$REGIONS" records region-a log-events)
  echo $((after - before))
}

# oversized_gap: see the list at the top.
oversized_gap() {
  local started=$SECONDS ok=yes out=$WORK/oversized-gap.verify pid added deleted expected
  log "== oversized-gap: 2,000 events and two too large for the outputs; then two gaps"
  fresh_regions oversized-gap || return 1
  start_pipeline region-a 60s
  sleep 3
  "$BIN" loadgen --events 2000 --duration 10s --jitter 1s --oversized 1000263,1048000 \
    --seed "$RANDOM" --out "$WORK/oversized.ids" >"$WORK/oversized.loadgen.log" 2>&1 || {
    log "loadgen failed"
    cat "$WORK/oversized.loadgen.log"
    return 1
  }
  tail -n1 "$WORK/oversized.loadgen.log"
  "$BIN" verify --bootstrap 127.0.0.1:19092 --ids "$WORK/oversized.ids" --wait 180s | tee "$out" || ok=no
  local big
  big=$(awk '$1 == "too" && $3 == "for" {print $5}' "$out")
  [ "${big:-0}" = 2 ] || {
    log "expected both oversized events as too_large_for_output dead letters, verify found ${big:-none}"
    ok=no
  }
  pid=${PIPELINE_PID[region-a]}
  kill -0 "$pid" 2>/dev/null || {
    log "region-a's pipeline stopped on the oversized events"
    return 1
  }
  # Gap 1: records deleted behind the stopped pipeline (it drained and committed at SIGTERM).
  stop_pid "$pid"
  wait_gone "$pid" || return 1
  added=$(gap_load "$WORK/gap1.ids") || return 1
  deleted=$("$REGIONS" delete-records region-a log-events) || return 1
  expected=$added
  log "gap 1: $added records written behind the stopped pipeline, $deleted deleted (the read ones too)"
  start_pipeline region-a 60s
  wait_restored region-a 2 || return 1
  if wait_metric 9464 tidemark_source_gap_records_total "$expected" 60; then
    log "gap 1 counted: $expected records"
  else
    log "expected tidemark_source_gap_records_total = $expected, got $(metric_sum 9464 tidemark_source_gap_records_total)"
    ok=no
  fi
  # Gap 2: the pipeline frozen while records are written and deleted; on waking its next fetch
  # is out of range.
  pid=${PIPELINE_PID[region-a]}
  kill -STOP "$pid"
  added=$(gap_load "$WORK/gap2.ids") || {
    kill -CONT "$pid"
    return 1
  }
  deleted=$("$REGIONS" delete-records region-a log-events) || {
    kill -CONT "$pid"
    return 1
  }
  kill -CONT "$pid"
  expected=$((expected + added))
  log "gap 2: $added records written and deleted while the pipeline was frozen"
  if wait_metric 9464 tidemark_source_gap_records_total "$expected" 60; then
    log "gap 2 counted: $expected records in all"
  else
    log "expected tidemark_source_gap_records_total = $expected, got $(metric_sum 9464 tidemark_source_gap_records_total)"
    ok=no
  fi
  [ "$(grep -c 'records still to read are gone' "$WORK/region-a.log")" -ge 2 ] || {
    log "expected an error log line per gap"
    ok=no
  }
  kill -0 "$pid" 2>/dev/null || {
    log "region-a's pipeline stopped on the gap (on_gap is continue)"
    ok=no
  }
  # Nothing written twice across the restart.
  "$BIN" verify --bootstrap 127.0.0.1:19092 --ids "$WORK/oversized.ids" --wait 60s >"$out.after" || {
    cat "$out.after"
    ok=no
  }
  local counted
  counted=$(metric_sum 9464 tidemark_source_gap_records_total)
  stop_pid "$pid"
  unset "PIPELINE_PID[region-a]"
  local line
  line=$(printf '%-15s %-4s %6s/%-6s %7s/%-7s %8ss  %-3s %5ds' oversized-gap "$ok" - - - - - - \
    $((SECONDS - started)))
  echo "$line" >>"$WORK/results"
  log "$line (gaps counted: $counted of $expected)"
  if [ $ok = no ]; then
    tail -n 30 "$WORK/region-a.log" || true
    cp "$WORK/region-a.log" "$WORK/oversized-gap.region-a.log"
    return 1
  fi
}

# The two "hosts" of the hosts scenario: network namespaces, each joined to this host by a veth
# pair (10.78.I.1 here, 10.78.I.2 there, with a route to the brokers' LINK listeners on
# 10.77.0.1) and to each other by a third pair (10.79.0.1 and 10.79.0.2), which carries the
# cluster's own traffic.
HOST_NS=(tm-host0 tm-host1)
hosts_up() {
  local i ns
  hosts_down
  for i in 0 1; do
    ns=${HOST_NS[$i]}
    ip netns add "$ns"
    ip link add "tm-h$i" type veth peer name "tm-h$i-ns"
    ip link set "tm-h$i-ns" netns "$ns"
    ip addr add "10.78.$i.1/30" dev "tm-h$i"
    ip link set "tm-h$i" up
    ip -n "$ns" addr add "10.78.$i.2/30" dev "tm-h$i-ns"
    ip -n "$ns" link set "tm-h$i-ns" up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add 10.77.0.0/30 via "10.78.$i.1"
  done
  ip link add tm-hx0 netns tm-host0 type veth peer name tm-hx1 netns tm-host1
  ip -n tm-host0 addr add 10.79.0.1/30 dev tm-hx0
  ip -n tm-host1 addr add 10.79.0.2/30 dev tm-hx1
  ip -n tm-host0 link set tm-hx0 up
  ip -n tm-host1 link set tm-hx1 up
  # Each host reaches both regions, and not the other's loopback.
  for i in 0 1; do
    ip netns exec "${HOST_NS[$i]}" bash -c 'exec 3<>/dev/tcp/10.77.0.1/19095 && exec 4<>/dev/tcp/10.77.0.1/29095' || {
      log "${HOST_NS[$i]} cannot reach the brokers' LINK listeners"
      return 1
    }
  done
  log "hosts: tm-host0 (10.79.0.1) and tm-host1 (10.79.0.2), brokers at 10.77.0.1:19095 and :29095"
}

hosts_down() {
  local ns
  for ns in "${HOST_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  ip link del tm-h0 2>/dev/null || true
  ip link del tm-h1 2>/dev/null || true
}

# start_host I: process I of the global pipeline's cluster, in host I's namespace. `ip netns
# exec` execs the pipeline itself, so the pid is the pipeline's.
start_host() {
  ip netns exec "${HOST_NS[$1]}" "$BIN" run "$WORK/global.toml" --workers 1 --processes 2 \
    --process "$1" --hostfile "$WORK/hosts" >>"$WORK/host$1.log" 2>&1 &
  PIPELINE_PID[host$1]=$!
}

# stops_alone I J [NTH [SINCE]]: host I's process must stop by itself within 10 s of losing
# host J (at SINCE, in $SECONDS; now by default), not zero, with its NTHth (default first)
# "is gone" line naming J, and no panic or backtrace.
stops_alone() {
  local i=$1 j=$2 nth=${3:-1} pid=${PIPELINE_PID[host$1]} status=0 deadline=$((${4:-$SECONDS} + 10))
  # A child of this shell: `wait` reaps it and says how it ended; until then it is a zombie.
  while [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" != Z ] && kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || {
      log "tm-host$i's process (pid $pid) still runs 10 s after losing tm-host$j"
      return 1
    }
    sleep 0.2
  done
  wait "$pid" 2>/dev/null || status=$?
  [ "$status" != 0 ] || {
    log "tm-host$i's process exited 0 after losing tm-host$j"
    return 1
  }
  local line
  line=$(grep "^error: cluster process" "$WORK/host$i.log" | sed -n "${nth}p")
  case $line in
    *"cluster process $j (10.79.0.$((j + 1)):2101) is gone"*)
      log "tm-host$i stopped with status $status: $line" ;;
    *)
      log "tm-host$i's log does not name tm-host$j as gone:"
      tail -n 5 "$WORK/host$i.log"
      return 1
      ;;
  esac
  if grep -qi "panicked\|backtrace" "$WORK/host$i.log"; then
    log "tm-host$i's log has a panic or a backtrace"
    return 1
  fi
}

# cross_bytes: bytes host 0 sent to and received from host 1.
cross_bytes() {
  ip netns exec tm-host0 cat /sys/class/net/tm-hx0/statistics/tx_bytes \
    /sys/class/net/tm-hx0/statistics/rx_bytes | awk '{s += $1} END {print s}'
}

# hosts_scenario: see the list at the top.
hosts_scenario() {
  local started=$SECONDS ok=yes out=$WORK/hosts.verify half=$((EVENTS / 2)) pid0 pid1 status
  local load_s=$((DURATION / 2))
  log "== hosts: the global pipeline on two processes in namespaces of their own; $EVENTS events"
  fresh_regions hosts --netns || return 1
  hosts_up || return 1
  sed -e 's/127\.0\.0\.1:19092/10.77.0.1:19095/' -e 's/127\.0\.0\.1:29092/10.77.0.1:29095/' \
    pipelines/global.toml >"$WORK/global.toml"
  grep -q '"10.77.0.1:19095"' "$WORK/global.toml" && grep -q '"10.77.0.1:29095"' "$WORK/global.toml" || {
    log "pipelines/global.toml has no bootstrap to point at the LINK listeners"
    return 1
  }
  printf '10.79.0.1:2101\n10.79.0.2:2101\n' >"$WORK/hosts"
  : >"$WORK/host0.log"
  : >"$WORK/host1.log"
  start_host 0
  start_host 1
  wait_restored host0 1 && wait_restored host1 1 || return 1
  local bytes0 bytes1 read1 read2 seed=$RANDOM
  bytes0=$(cross_bytes)
  # Two seeds, so that the two loads' invalid records differ too.
  "$BIN" loadgen --events "$half" --duration "${load_s}s" --jitter 1s --seed "$seed" \
    --out "$WORK/hosts-1.ids" >"$WORK/hosts-1.loadgen.log" 2>&1 || {
    cat "$WORK/hosts-1.loadgen.log"
    return 1
  }
  tail -n1 "$WORK/hosts-1.loadgen.log"
  "$BIN" verify --bootstrap 127.0.0.1:19092 --ids "$WORK/hosts-1.ids" --wait 120s | tee "$out.1" || ok=no
  bytes1=$(cross_bytes)
  read1=$(ip netns exec tm-host0 curl -s 127.0.0.1:9464/metrics | awk '/^tidemark_events_in_total/ {s += $2} END {print s + 0}')
  read2=$(ip netns exec tm-host1 curl -s 127.0.0.1:9464/metrics | awk '/^tidemark_events_in_total/ {s += $2} END {print s + 0}')
  log "hosts: $((bytes1 - bytes0)) bytes between the hosts for $((read1 + read2)) records read:" \
    "$(awk -v b=$((bytes1 - bytes0)) -v n=$((read1 + read2)) 'BEGIN {printf "%.0f", n ? b / n : 0}') bytes per record"
  # The second half, with host 1's process SIGKILLed in the middle of it.
  "$BIN" loadgen --events "$half" --duration "${load_s}s" --jitter 1s --seed "$((seed + 1))" \
    --out "$WORK/hosts-2.ids" >"$WORK/hosts-2.loadgen.log" 2>&1 &
  LOADGEN_PID=$!
  sleep $((load_s / 2))
  pid0=${PIPELINE_PID[host0]}
  pid1=${PIPELINE_PID[host1]}
  [ "$(cat "/proc/$pid1/comm")" = tidemark ] || {
    log "pid $pid1 is not the pipeline"
    return 1
  }
  log "kill -9 tm-host1's process (pid $pid1)"
  kill -KILL "$pid1"
  wait "$pid1" 2>/dev/null || true
  ! kill -0 "$pid1" 2>/dev/null || {
    log "pid $pid1 is still alive after SIGKILL"
    return 1
  }
  stops_alone 0 1 || ok=no
  start_host 0
  start_host 1
  wait_restored host0 2 && wait_restored host1 2 || return 1
  wait "$LOADGEN_PID" || {
    cat "$WORK/hosts-2.loadgen.log"
    return 1
  }
  LOADGEN_PID=
  tail -n1 "$WORK/hosts-2.loadgen.log"
  "$BIN" verify --bootstrap 127.0.0.1:19092 --ids "$WORK/hosts-1.ids" --ids "$WORK/hosts-2.ids" \
    --wait 180s | tee "$out" || ok=no
  # A silent peer: the link between the hosts goes down, so every packet between them is lost
  # and nothing is closed or reset. Both processes still run, and each must stop by itself
  # within 10 s, naming the other.
  log "the link between the hosts goes down (tm-hx1 in tm-host1)"
  local cut=$SECONDS
  ip -n tm-host1 link set tm-hx1 down
  stops_alone 0 1 2 "$cut" || ok=no
  stops_alone 1 0 1 "$cut" || ok=no
  unset "PIPELINE_PID[host0]" "PIPELINE_PID[host1]"
  hosts_down
  local line
  line=$(printf '%-15s %-4s %6s/%-6s %7s/%-7s %8ss  %-3s %5ds' hosts "$ok" - - - - - - \
    $((SECONDS - started)))
  echo "$line" >>"$WORK/results"
  log "$line"
  if [ $ok = no ]; then
    tail -n 30 "$WORK/host0.log" "$WORK/host1.log" || true
    return 1
  fi
}

# analyse_late: late-report on both regions' late topics after the split-hold-off run (while
# Prometheus still has the run's metrics), then reconcile twice. Writes the advised hold to
# $WORK/advised-hold.
analyse_late() {
  local r bootstrap
  for r in region-a region-b; do
    bootstrap=127.0.0.1:19092
    [ $r = region-b ] && bootstrap=127.0.0.1:29092
    "$BIN" late-report --bootstrap $bootstrap --pipeline "$WORK/$r.toml" --workers 2 \
      --prometheus 127.0.0.1:9090 --plot "$ROOT/artifacts/late-report-$r.png" \
      | tee "$WORK/late-report-$r.txt" || return 1
    "$BIN" late-report --bootstrap $bootstrap --pipeline "$WORK/$r.toml" --workers 2 \
      --prometheus 127.0.0.1:9090 --format json >"$WORK/late-report-$r.json" || return 1
  done
  python3 tests/real/late_report_check.py --pause-start "$PAUSE_START" --pause-end "$PAUSE_END" \
    "$WORK/late-report-region-a.json" "$WORK/late-report-region-b.json" | tee "$WORK/late-check.log" || return 1
  local advised
  advised=$(sed -n 's/^ADVISED_HOLD=//p' "$WORK/late-check.log")
  echo "$advised" >"$WORK/advised-hold"
  log "late-report advises max_split_hold = $advised (99.9 %)"
  local first second run
  for run in 1 2; do
    "$BIN" reconcile --bootstrap 127.0.0.1:19092 --window 10s >"$WORK/reconcile-$run.txt" || return 1
    cat "$WORK/reconcile-$run.txt"
  done
  first=$(awk '$1 == "written" {print $2}' "$WORK/reconcile-1.txt")
  second=$(awk '$1 == "written" {print $2}' "$WORK/reconcile-2.txt")
  log "reconcile: first run wrote $first corrections, the second $second"
  [ "${first:-0}" -gt 0 ] && [ "$second" = 0 ] || {
    log "expected corrections on the first reconcile run and none on the second"
    return 1
  }
}

log "building tidemark (release)"
cargo build --release --quiet
"$REGIONS" fetch
total=$SECONDS
# run_scenario FUNCTION ARGS...: one scenario in a subshell of its own with errexit on. (Under
# `scenario ... || FAILED=1` errexit would be off inside it, and a fault command that failed
# would leave a run with no fault that still passed.) Its exit trap stops what it started.
run_scenario() {
  (
    set -eE
    trap 'log "failed (status $?): $BASH_COMMAND"' ERR
    trap cleanup EXIT
    "$@"
  ) &
  wait $! || FAILED=1
}

: >"$WORK/results"
for s in "${SCENARIOS[@]}"; do
  case $s in
    split-hold-off) run_scenario scenario split-hold-off 0s pause ;;
    split-advised)
      if [ ! -s "$WORK/advised-hold" ]; then
        log "split-advised needs split-hold-off's advice first"
        FAILED=1
      else
        run_scenario scenario split-advised "$(cat "$WORK/advised-hold")" pause
      fi
      ;;
    # The split is MM2's whole outage: the 5 s pause plus its JVM's restart, which takes 25 s
    # to well over a minute on this machine; the hold must outlast all of it.
    split-hold-on) run_scenario scenario split-hold-on 180s pause ;;
    kill-mm2) run_scenario scenario kill-mm2 60s kill-mm2 ;;
    # As long as split-hold-on's: the split lasts the cut plus MM2's own recovery.
    partition) run_scenario scenario partition 180s partition ;;
    hosts) run_scenario hosts_scenario ;;
    beyond-horizon) run_scenario scenario beyond-horizon 0s beyond-horizon --allow-beyond-horizon ;;
    kill-pipeline) run_scenario scenario kill-pipeline 60s kill-pipeline ;;
    restart-broker) run_scenario scenario restart-broker 60s restart-broker ;;
    kill-broker) run_scenario scenario kill-broker 60s kill-broker ;;
    disk-full) run_scenario scenario disk-full 60s disk-full ;;
    three-broker) run_scenario scenario three-broker 60s three-broker ;;
    oversized-gap) run_scenario oversized_gap ;;
    gateway) run_scenario scenario gateway 60s gateway ;;
    # As long as split-hold-on's: the pause is MM2's stop and start.
    secure) run_scenario scenario secure 180s pause ;;
    *)
      echo "unknown scenario $s" >&2
      exit 2
      ;;
  esac
done
echo
echo "scenario        ok   late a/b       copies dropped a/b  max lag  split  time"
cat "$WORK/results"
echo "all scenarios: $((SECONDS - total)) s; work files in $WORK"
exit $FAILED
