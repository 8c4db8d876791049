"""The `redis_rollback` fault of the chaos rehearsal: Redis comes back older, not empty.

`scripts/stack restart-redis --rollback <s>` takes a snapshot (BGSAVE), lets the system
run on for 1–2 s (drawn from the seed), kills Redis without saving and starts it from
the snapshot: the last seconds of acknowledged writes are gone, as after a failover to
a replica that lagged that much. Holds checked out in those seconds come back `held`,
shoppers' counts roll back, stream entries are gone.

Recovered when: the sale is reconciled for the Redis that came back (its marker key
names the new incarnation: every API noticed the new run id, and one of them
reconciled the sale from Postgres), Redis' units sold equal Postgres' and
available + held + sold = total, and then the stores-restart definition (every API
ready, probes pass, outbox backlog younger than 1 s, every order committed before the
fault processed by all consumers). The run's checker then shows 0 oversold, the
per-shopper limit held over orders, conservation, and every order's events processed
once by each consumer.

The incarnation id is computed as the service computes it (reservations'
`redis_identity`: FNV-1a 64 over the node name, `run_id` and `master_replid`, each
followed by a NUL byte; a single server's node name is empty).
"""
import random
import time

DID = ("scripts/stack restart-redis --rollback 1–2 s (BGSAVE, the system runs on, Redis killed "
       "without saving and started from the snapshot: the last seconds of acknowledged writes lost)")
RECOVERED_WHEN = ("the sale is reconciled for the new Redis (its marker names the new incarnation), "
                  "Redis' units sold = Postgres' and available + held + sold = total, every API ready, "
                  "probes pass, outbox backlog younger than 1 s, every order committed before the fault "
                  "processed by all consumers")


def incarnation_id(redis):
    """The id the service writes in a reconciled sale's marker, or None when Redis does
    not answer."""
    fields = {}
    for section in ("server", "replication"):
        text = redis.command("INFO", section)
        if not isinstance(text, str):
            return None
        for line in text.splitlines():
            key, _, value = line.strip().partition(":")
            fields[key] = value
    if "run_id" not in fields:
        return None
    h = 0xCBF29CE484222325
    for part in ("", fields["run_id"], fields.get("master_replid", "")):
        for byte in part.encode() + b"\0":
            h ^= byte
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def redis_stock(chaos):
    """(total, available, held, sold) summed over the sale's stripes, or None."""
    tag = f"{chaos.prefix}:{{sale:{chaos.sale}}}"
    stripes = chaos.redis.command("HGET", f"{tag}:meta", "stripes")
    if isinstance(stripes, Exception):
        return None
    sums = [0, 0, 0, 0]
    for k in range(int(stripes or 1)):
        keys = tag if k == 0 else f"{chaos.prefix}:{{sale:{chaos.sale}:{k}}}"
        meta = chaos.redis.command("HMGET", f"{keys}:meta", "total", "held", "sold")
        free = chaos.redis.command("LLEN", f"{keys}:free")
        if not isinstance(meta, list) or None in meta or not isinstance(free, int):
            return None
        total, held, sold = (int(v) for v in meta)
        for i, v in enumerate((total, free, held, sold)):
            sums[i] += v
    return tuple(sums)


def reconciled(chaos, started):
    """(ok, why) for the part of recovery that is this fault's own."""
    now_id = incarnation_id(chaos.redis)
    if now_id is None:
        return False, "Redis does not answer INFO"
    marker = chaos.redis.command("GET", f"{chaos.prefix}:{{sale:{chaos.sale}}}:reconciled")
    if marker != now_id:
        return False, "the sale is not yet reconciled for the Redis that came back"
    stock = redis_stock(chaos)
    if stock is None:
        return False, "the sale's Redis state is not readable"
    total, available, held, sold = stock
    if available + held + sold != total:
        return False, f"Redis: {available} + {held} + {sold} != {total}"
    pg_sold = chaos.psql.scalar(f"select count(*) from order_units where sale_id = '{chaos.sale}'")
    if pg_sold is None:
        return False, "Postgres gave no answer in 5 s"
    if int(pg_sold) != sold:
        return False, f"Redis sold {sold}, Postgres {pg_sold}"
    return chaos.system_recovered(started)


def fault(chaos):
    """Does the fault and measures the recovery; returns the result row."""
    seconds = round(random.Random(f"{chaos.args.seed}-rollback").uniform(1.0, 2.0), 2)
    before = incarnation_id(chaos.redis)
    started = time.time()
    took = chaos.stack("restart-redis", "--rollback", str(seconds))
    chaos.redis.close()
    after = incarnation_id(chaos.redis)
    chaos.log(f"redis_rollback: Redis restarted {seconds:.2f} s older in {took:.1f} s "
              f"(incarnation {before} → {after})")
    waits = {}
    recovered, why = chaos.wait_until(lambda: reconciled(chaos, started), waits=waits)
    return chaos.record("redis_rollback", started, recovered, why, rolled_back_s=seconds,
                        restart_took_s=took, window_end=recovered, waited_on=chaos.waited_on(waits))
