# Shared by the benchmark drivers: the stack, a release build, a private flashsale
# process on loopback, and a merchant token. Source it; it sets $bin, $base, $token,
# $prefix, $out and stops the server on exit.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

scripts/stack up >/dev/null
set -a
eval "$(scripts/stack urls)"
set +a
# Optional: a database of the benchmarks' own (BENCH_DATABASE=name), so no other
# flashsale process relays its outbox; `flashsale all` migrates it.
if [ -n "${BENCH_DATABASE:-}" ]; then
  [ "$(psql -X -tA "${DATABASE_URL%/*}/postgres" -c "select 1 from pg_database where datname = '$BENCH_DATABASE'")" = 1 ] ||
    psql -X -q "${DATABASE_URL%/*}/postgres" -c "create database $BENCH_DATABASE" >/dev/null
  export DATABASE_URL=${DATABASE_URL%/*}/$BENCH_DATABASE
fi
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
command -v redis-benchmark >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null; }

cargo build --release --locked -q -p flashsale
bin=$root/target/release/flashsale
redis_port=${REDIS_URL##*:}
port=${BENCH_PORT:-18181}
base=http://127.0.0.1:$port
prefix=bench$(date +%s)
out=$(mktemp -d)

FLASHSALE_BIND_ADDR=127.0.0.1:$port FLASHSALE_REDIS_PREFIX=$prefix RUST_LOG=warn \
  "$bin" all >"$out/server.log" 2>&1 &
server=$!
cleanup() {
  kill -TERM $server 2>/dev/null || true
  wait $server 2>/dev/null || true
  redis-cli -p "$redis_port" --scan --pattern "$prefix:*" | xargs -r -n 500 redis-cli -p "$redis_port" del >/dev/null
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
