# Shared by the benchmark drivers: the stack, a release build, a private flashsale
# process on loopback, and a merchant token. Source it; it sets $bin, $base, $token,
# $prefix, $out, $redis_port (the single Redis) and $redis_nodes (the ports the server's
# keys live on), $payment_url and $payment_secret (the payment simulator, a process of its
# own on port+1), and stops both on exit.
# Env: CLUSTER=1 runs the server on the stack's 3-master Redis Cluster instead of the
# single Redis; STRIPES=n splits each sale's stock into n stripes
# (FLASHSALE_STOCK_STRIPES, default 1).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

cluster=${CLUSTER:-0}
stripes=${STRIPES:-1}
if [ "$cluster" = 1 ]; then
  scripts/stack up --cluster >/dev/null
  set -a
  eval "$(scripts/stack urls --cluster)"
  set +a
else
  scripts/stack up >/dev/null
  set -a
  eval "$(scripts/stack urls)"
  set +a
  unset REDIS_CLUSTER_URLS # the server would prefer it
fi
# Optional: a database of the benchmarks' own (BENCH_DATABASE=name), so no other
# flashsale process relays its outbox; `flashsale all` migrates it.
if [ -n "${BENCH_DATABASE:-}" ]; then
  [ "$(psql -X -tA "${DATABASE_URL%/*}/postgres" -c "select 1 from pg_database where datname = '$BENCH_DATABASE'")" = 1 ] ||
    psql -X -q "${DATABASE_URL%/*}/postgres" -c "create database $BENCH_DATABASE" >/dev/null
  export DATABASE_URL=${DATABASE_URL%/*}/$BENCH_DATABASE
fi
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
command -v redis-benchmark >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null; }

# Where cargo put it: CARGO_TARGET_DIR when set (a worktree with a target of its own);
# BENCH_BIN names a release binary already built (then nothing is built).
if [ -n "${BENCH_BIN:-}" ]; then
  bin=$BENCH_BIN
else
  cargo build --release --locked -q -p flashsale
  bin=${CARGO_TARGET_DIR:-$root/target}/release/flashsale
fi
redis_port=${REDIS_URL##*:}
if [ "$cluster" = 1 ]; then
  redis_nodes=$(tr ',' '\n' <<<"$REDIS_CLUSTER_URLS" | sed -E 's/.*:([0-9]+)$/\1/' | tr '\n' ' ')
else
  redis_nodes=$redis_port
fi
port=${BENCH_PORT:-18181}
base=http://127.0.0.1:$port
prefix=bench$(date +%s)
out=$(mktemp -d)

# The payment provider as a process of its own, as in production: its cost is not ours.
payment_url=http://127.0.0.1:$((port + 1))
payment_secret=sk_test_bench_$(date +%s)
RUST_LOG=warn "$bin" payment-simulator --listen "127.0.0.1:$((port + 1))" --secret-key "$payment_secret" \
  >"$out/payments.log" 2>&1 &
payments=$!
# The benchmarks measure the hot paths, not the door: no proof of work, and no cap on
# the one loopback address every load generator sends from.
FLASHSALE_BIND_ADDR=127.0.0.1:$port FLASHSALE_REDIS_PREFIX=$prefix FLASHSALE_STOCK_STRIPES=$stripes \
  FLASHSALE_PAYMENT_URL=$payment_url FLASHSALE_PAYMENT_SECRET_KEY=$payment_secret \
  FLASHSALE_PROOF_DIFFICULTY_BITS=0 FLASHSALE_IP_RATE_PER_SECOND=0 \
  RUST_LOG=warn "$bin" all >"$out/server.log" 2>&1 &
server=$!
cleanup() {
  kill -TERM $server $payments 2>/dev/null || true
  wait $server $payments 2>/dev/null || true
  # One UNLINK per key, sent to the node that holds it: a cluster refuses multi-key
  # commands across slots.
  local node
  for node in $redis_nodes; do
    redis-cli -p "$node" --scan --pattern "$prefix:*" | sed 's/^/UNLINK /' | redis-cli -p "$node" >/dev/null
  done
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
token=$("$bin" token merchant "$(cat /proc/sys/kernel/random/uuid)")

# create_live_sale <units> <per-user limit>: prints the new sale's id.
create_live_sale() {
  local starts ends
  starts=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
  ends=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
  curl -fsS -X POST "$base/v1/admin/sales" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"name\":\"bench\",\"sku\":\"BENCH\",\"price\":{\"amount_minor\":100,\"currency\":\"EUR\"},
         \"stock\":{\"total\":$1},\"per_user_limit\":$2,\"starts_at\":\"$starts\",\"ends_at\":\"$ends\"}" |
    sed -E 's/^\{"id":"([^"]+)".*/\1/'
}

# wait_loaded <port> <meta key>: waits (30 s at most) until the sale's state is in Redis,
# so that a raw EVALSHA baseline never measures the script's fast "no_state" answer.
wait_loaded() {
  local i
  for i in $(seq 300); do
    [ -z "$(redis-cli -p "$1" hget "$2" state)" ] || return 0
    sleep 0.1
  done
  echo "  (the sale behind $2 never appeared in Redis)" >&2
}

# node_of <key>: the port of the Redis that holds <key> (on a cluster, the master that
# owns its slot, from CLUSTER KEYSLOT and CLUSTER NODES).
node_of() {
  if [ "$cluster" != 1 ]; then
    echo "$redis_port"
    return
  fi
  local first slot
  first=${redis_nodes%% *}
  slot=$(redis-cli -p "$first" cluster keyslot "$1")
  redis-cli -p "$first" cluster nodes | awk -v slot="$slot" '$3 ~ /master/ {
    for (i = 9; i <= NF; i++) {
      n = split($i, r, "-"); lo = r[1]; hi = (n == 2) ? r[2] : r[1]
      if (slot >= lo + 0 && slot <= hi + 0) { sub(/@.*/, "", $2); sub(/.*:/, "", $2); print $2; exit }
    }
  }'
}
