#!/usr/bin/env python3
"""The fault injector of the chaos rehearsal (`loadtests/run chaos`).

It runs the k6 command it is given (the shoppers) and, while the launch is on, does each
fault of FAULTS once, in an order and at moments drawn from a seeded random generator
(the seed is printed, so a run can be repeated with CHAOS_SEED). For every fault it
measures the time to recover, by the definition written next to the fault in FAULTS,
and afterwards counts the requests that failed while it lasted, from the shoppers'
per-request log lines (lib/shopper.js with CHAOS=1 writes one per answer that is not a
plain success). It writes chaos.json and chaos.txt (the table it prints) into the report
folder and exits non-zero when a fault could not be done or the system did not recover
from it within RECOVERY_LIMIT seconds.

Probes (what "the API works again" means): on every API process, GET /readyz 200,
GET /v1/sales/{id} 200, GET …/stats 200 (merchant), and a buy-path round trip with a
probe shopper admitted by `flashsale token admission`: reserve 1 unit (201, or 409
sold_out), check out with tok_declined (402: Redis, Postgres and the payment provider
all answered, and the breaker let the call through), release the hold (204).

    chaos.py --dir <report dir> --sale <id> --merchant-token … --operator-token … \
             --probe-tokens <file> [--seed N] [--short] -- <k6 command…>

Reads from the environment: DATABASE_URL, REDIS_URL, FLASHSALE_REDIS_PREFIX (as the
fleet), and FLASHSALE_REDIS_PORT / FLASHSALE_PG_PORT for scripts/stack.
"""
import argparse
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import Fleet  # noqa: E402
import rollback  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STACK = os.path.join(ROOT, "scripts", "stack")
CONSUMER_GROUPS = ["order-confirmation", "payment-capture", "sales-ledger"]
RECOVERY_LIMIT = 120.0

# name: (what is done, what "recovered" means, needs a quiet pipeline before it starts)
FAULTS = {
    "api_kill": ("kill -9 one API process; restart it after a few seconds",
                 "the killed API is back: /readyz 200 and the probes pass on every API", False),
    "relay_kill": ("kill -9 the relay while it holds a batch (between claiming outbox rows and marking them published); restart it",
                   "the relay runs again and the oldest unpublished outbox row is younger than 1 s", False),
    "worker_kill": ("kill -9 a worker while entries are pending on it; restart it later",
                    "nothing is pending on the killed consumer and every order committed before the kill has been processed by all three consumer groups", False),
    "redis_restart": ("scripts/stack restart-redis (SHUTDOWN keeps the AOF)",
                      "every API ready, probes pass, outbox backlog younger than 1 s, every order committed before the fault processed by all consumers", True),
    "redis_empty": ("scripts/stack restart-redis --empty (all Redis state lost)",
                    "every API ready, probes pass (the sale rebuilt from Postgres), outbox backlog younger than 1 s, every order committed before the fault processed by all consumers", True),
    "redis_rollback": (rollback.DID, rollback.RECOVERED_WHEN, True),
    "postgres_restart": ("scripts/stack restart-postgres (pg_ctl restart -m fast: every connection cut)",
                         "every API ready, probes pass, outbox backlog younger than 1 s, every order committed before the fault processed by all consumers", True),
    "payment_failures": ("PUT /v1/ops/payment-simulator failure_rate 0.5 for 10 s (the one simulator every process pays through), then the settings before",
                         "after the restore, the probe checkout is answered 402 on every API (breaker closed)", False),
    "payment_answers_lost": ("PUT /v1/ops/payment-simulator lost_answer_rate 0.2 for 10 s (the provider does the work, then drops the connection), then the settings before",
                             "after the restore, the probe checkout is answered 402 on every API (breaker closed)", False),
    "payment_outage": ("PUT /v1/ops/payment-simulator outage_ms 5000 (the provider answers every call 503 for 5 s)",
                       "after the restore, the probe checkout is answered 402 on every API (breaker closed)", False),
}


def now():
    return time.time()


def say(message):
    print(f"chaos: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ clients

class Http:
    """Small JSON-over-HTTP helper (urllib): (status, body dict or None, headers)."""

    @staticmethod
    def call(method, url, token=None, body=None, headers=None, timeout=3.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                raw = res.read()
                status = res.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            status = e.code
        except (OSError, ValueError) as e:
            return 0, {"error": repr(e)}
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return status, parsed


class Psql:
    """One long-lived psql session (no client library needed): query() → rows of
    strings, or None when Postgres did not answer (the session is then restarted)."""

    END = "__chaos_end__"

    def __init__(self, url):
        self.url = url
        self.proc = None

    def _start(self):
        # Line-buffered (stdbuf): psql block-buffers a pipe, and the marker would wait.
        # No JIT: these small queries run every half second on a busy machine, and JIT
        # compilation would cost more than the queries.
        env = dict(os.environ, PGOPTIONS="-c jit=off")
        self.proc = subprocess.Popen(["stdbuf", "-oL", "psql", "-X", "-q", "-tA", "-F", "\t", self.url],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.buf = b""

    def close(self):
        if self.proc:
            try:
                self.proc.kill()
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.proc = None

    def _line(self, deadline):
        """The next output line, or None at the deadline or when psql is gone. Reads the
        pipe's file descriptor directly: a buffered reader would hide lines from select."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def query(self, sql, timeout=5.0):
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        marker = f"{self.END}{uuid.uuid4().hex[:8]}"
        try:
            self.proc.stdin.write((sql.strip().rstrip(";") + ";\n\\echo " + marker + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            self.close()
            return None
        rows, deadline = [], time.monotonic() + timeout
        while True:
            line = self._line(deadline)
            if line is None:
                self.close()
                return None
            if line == marker:
                return rows
            if line:
                rows.append(line.split("\t"))

    def scalar(self, sql, timeout=5.0):
        rows = self.query(sql, timeout)
        if not rows or not rows[0] or rows[0][0] == "":
            return None
        return rows[0][0]


class Redis:
    """A minimal RESP client for the few read commands the injector needs."""

    def __init__(self, url):
        m = re.match(r"redis://(?:[^@]*@)?([^:/]+):(\d+)", url)
        self.host, self.port = m.group(1), int(m.group(2))
        self.sock = None

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def command(self, *args, timeout=2.0):
        try:
            if self.sock is None:
                self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
                self.file = self.sock.makefile("rb")
            self.sock.settimeout(timeout)
            out = [f"*{len(args)}\r\n".encode()]
            for a in args:
                b = str(a).encode()
                out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
            self.sock.sendall(b"".join(out))
            return self._read()
        except OSError:
            self.close()
            return None

    def _read(self):
        line = self.file.readline()
        if not line:
            raise OSError("closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise OSError(f"unexpected reply {line!r}")


# ------------------------------------------------------------------ the injector

class Chaos:
    def __init__(self, args):
        self.args = args
        self.dir = args.dir
        self.fleet = Fleet(args.fleet or args.dir)
        self.sale = args.sale
        self.rng = random.Random(args.seed)
        # The retry jitter of freeze_until draws from its own generator, so the schedule
        # (order, pauses, victims: all drawn up front) depends on the seed alone.
        self.jitter = random.Random(args.seed + 1)
        self.plan = {}
        self.db_url = os.environ["DATABASE_URL"]
        self.redis_url = os.environ["REDIS_URL"]
        self.prefix = os.environ["FLASHSALE_REDIS_PREFIX"]
        self.stream = f"{self.prefix}:stream:{{order}}"
        self.psql = Psql(self.db_url)
        self.redis = Redis(self.redis_url)
        with open(args.probe_tokens) as f:
            self.probe_shoppers = [line.split() for line in f if line.strip()]
        self.next_probe = 0
        self.results = []
        self.background = []  # threads still measuring a recovery
        self.k6 = None
        self.k6_started = None
        self.sale_start = None
        self.short = args.short
        self.events = []  # (epoch, text): the log of what was done

    # ---------------------------------------------------------------- logging

    def log(self, text):
        at = now()
        self.events.append((at, text))
        rel = f"sale start {at - self.sale_start:+.1f}s" if self.sale_start else "before the start"
        say(f"[{rel}] {text}")

    # ---------------------------------------------------------------- probes

    def probe_api(self, name):
        """Every probe against one API process; returns (ok, what failed)."""
        base = self.fleet.url(name)
        status, _ = Http.call("GET", f"{base}/readyz", timeout=2)
        if status != 200:
            return False, f"readyz {status}"
        status, _ = Http.call("GET", f"{base}/v1/sales/{self.sale}", timeout=2)
        if status != 200:
            return False, f"sale {status}"
        status, _ = Http.call("GET", f"{base}/v1/admin/sales/{self.sale}/stats", self.args.merchant_token, timeout=2)
        if status != 200:
            return False, f"stats {status}"
        if self.next_probe >= len(self.probe_shoppers):
            return True, "no probe shopper left"
        shopper, admission = self.probe_shoppers[self.next_probe]
        self.next_probe += 1
        status, hold = Http.call("POST", f"{base}/v1/sales/{self.sale}/reservations", shopper, {"quantity": 1},
                                 {"X-Admission-Token": admission, "Idempotency-Key": uuid.uuid4().hex}, timeout=3)
        if status == 409 and hold and hold.get("code") == "sold_out":
            return True, "sold out"
        if status != 201 or not hold:
            return False, f"reserve {status} {hold.get('code') if hold else ''}".strip()
        rid = hold["reservation_id"]
        status, answer = Http.call("POST", f"{base}/v1/reservations/{rid}/checkout", shopper,
                                   {"payment_token": "tok_declined"}, {"Idempotency-Key": uuid.uuid4().hex}, timeout=5)
        released, _ = Http.call("DELETE", f"{base}/v1/reservations/{rid}", shopper, timeout=3)
        if status != 402:
            return False, f"checkout {status} {answer.get('code') if answer else ''}".strip()
        if released != 204:
            return False, f"release {released}"
        return True, ""

    def probes_pass(self):
        failed = {}
        for name in self.fleet.apis():
            ok, why = self.probe_api(name)
            if not ok:
                failed[name] = why
        return not failed, failed

    def probes_check(self):
        """probes_pass() as a wait_until check: (ok, what failed)."""
        ok, failed = self.probes_pass()
        return ok, "" if ok else f"probes: {failed}"

    # ---------------------------------------------------------------- pipeline

    def outbox_age(self):
        """Age in seconds of the oldest unpublished outbox row (0 when none), None when
        Postgres does not answer."""
        v = self.psql.scalar("select coalesce(extract(epoch from now() - min(occurred_at)), 0) "
                             "from outbox where published_at is null", timeout=3)
        return None if v is None else float(v)

    def unprocessed_before(self, at, psql=None):
        """Orders of the sale committed before `at` whose event some consumer group has
        not processed (or that is still unpublished); None when Postgres does not answer."""
        groups = ",".join(f"'{g}'" for g in CONSUMER_GROUPS)
        # The sale's events first (a hash join), then their processed_events rows: the
        # outbox holds every sale's events, and a lookup per outbox row is too slow.
        v = (psql or self.psql).scalar(
            f"select count(*) from (select e.id from orders o "
            f"join outbox e on e.aggregate_id = o.id and e.event_type = 'OrderPlaced' "
            f"left join processed_events p on p.event_id = e.id and p.consumer in ({groups}) "
            f"where o.sale_id = '{self.sale}' and o.created_at < to_timestamp({at}) "
            f"group by e.id having count(p.event_id) < {len(CONSUMER_GROUPS)}) late",
            timeout=5)
        return None if v is None else int(v)

    def pending_by_consumer(self, redis=None):
        """{consumer name: entries pending} summed over the consumer groups."""
        redis = redis or self.redis
        out = {}
        for group in CONSUMER_GROUPS:
            reply = redis.command("XPENDING", self.stream, group)
            if not isinstance(reply, list) or len(reply) < 4 or not reply[3]:
                continue
            for consumer, count in reply[3]:
                out[consumer] = out.get(consumer, 0) + int(count)
        return out

    @staticmethod
    def consumer_of(pid, pending):
        return {c: n for c, n in pending.items() if f"-{pid}-" in c}

    def system_recovered(self, since):
        """The stores-restart definition: every API ready, probes pass, outbox backlog
        younger than 1 s, every order committed before `since` processed."""
        ok, failed = self.probes_pass()
        if not ok:
            return False, f"probes: {failed}"
        age = self.outbox_age()
        if age is None:
            return False, "Postgres gave no answer in 3 s"
        if age >= 1.0:
            return False, f"oldest unpublished outbox row {age:.1f} s old"
        left = self.unprocessed_before(since)
        if left is None:
            return False, "Postgres gave no answer in 5 s"
        if left > 0:
            return False, f"{left} orders not processed by every consumer"
        return True, ""

    def wait_until(self, check, limit=RECOVERY_LIMIT, every=0.5, waits=None):
        """Polls check() → (ok, why) until ok; returns (epoch when ok or None, last why).
        `waits`, when given, counts each reason a look failed (what the time went on)."""
        deadline = now() + limit
        why = ""
        while now() < deadline:
            ok, why = check()
            if ok:
                return now(), ""
            if waits is not None:
                key = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "…", str(why))[:120]
                waits[key] = waits.get(key, 0) + 1
            time.sleep(every)
        return None, why

    @staticmethod
    def waited_on(waits):
        """The reasons recovery was not yet reached, most frequent first (for the report)."""
        return "; ".join(f"{why} ×{n}" for why, n in sorted(waits.items(), key=lambda kv: -kv[1])[:3]) or None

    def pipeline_quiet(self):
        return all(not t.is_alive() for t in self.background)

    # ---------------------------------------------------------------- faults

    def record(self, name, started, recovered, why="", **detail):
        result = {
            "fault": name, "did": FAULTS[name][0], "recovered_when": FAULTS[name][1],
            "started_at": started, "at_s": round(started - self.sale_start, 1) if self.sale_start else None,
            "recovered_at": recovered, "recovery_s": round(recovered - started, 2) if recovered else None,
            "not_recovered_because": why or None, **detail,
        }
        self.results.append(result)
        if recovered:
            self.log(f"{name}: recovered after {recovered - started:.2f} s")
        else:
            self.log(f"{name}: NOT recovered within {RECOVERY_LIMIT:.0f} s ({why})")
        return result

    def restart(self, name):
        self.fleet.start(name)
        if not self.fleet.wait_ready(name, 30.0):
            self.log(f"{name} not ready 30 s after its restart")

    def fault_api_kill(self):
        victim = self.plan["api_kill"]["victim"]
        delay = 2.0 if self.short else 3.0
        started = now()
        pid = self.fleet.kill(victim)
        self.log(f"api_kill: kill -9 {victim} (pid {pid}); restart in {delay:.0f} s")
        time.sleep(delay)
        self.restart(victim)
        restarted = now()
        self.log(f"api_kill: {victim} restarted (pid {self.fleet.pid(victim)})")
        waits = {}
        recovered, why = self.wait_until(self.probes_check, waits=waits)
        return self.record("api_kill", started, recovered, why, victim=victim, pid=pid,
                           restarted_after_s=round(restarted - started, 2), window_end=recovered,
                           waited_on=self.waited_on(waits))

    def freeze_until(self, pid, caught, limit=15.0):
        """Freezes `pid` (SIGSTOP) and asks `caught()` whether it is frozen in the state
        wanted; if not, thaws it (SIGCONT) and tries again a few milliseconds later, up
        to `limit` seconds. Returns (what caught() answered, looks); the process is left
        frozen when caught, so the SIGKILL that follows hits exactly that state."""
        deadline, looks = now() + limit, 0
        while now() < deadline:
            looks += 1
            os.kill(pid, signal.SIGSTOP)
            try:
                found = caught()
            except Exception:
                found = None
            if found:
                return found, looks
            os.kill(pid, signal.SIGCONT)
            time.sleep(self.jitter.uniform(0.002, 0.03))
        return None, looks

    def fault_relay_kill(self):
        victim = self.plan["relay_kill"]["victim"]
        delay = 1.0 if self.short else 2.0
        # Mid-batch: the relay's transaction is open after claiming rows (its SKIP LOCKED
        # select, or its update marking them published, was the last statement): it is
        # appending them to the stream or about to commit. Unpublished rows exist (an
        # empty claim is not a batch). Checked while the relay is frozen.
        mid_batch = ("select count(*) from outbox where published_at is null and exists ("
                     "select 1 from pg_stat_activity where state = 'idle in transaction' and "
                     "(query like '%from outbox where published_at is null%for update skip locked%' "
                     "or query like 'update outbox set published_at%'))")
        pid = self.fleet.pid(victim)

        def in_batch():
            rows = int(self.psql.scalar(mid_batch, timeout=2) or "0")
            return rows if rows > 0 else None
        backlog, looks = self.freeze_until(pid, in_batch)
        started = now()
        self.fleet.kill(victim)
        self.log(f"relay_kill: kill -9 {victim} (pid {pid}) "
                 + (f"frozen in the middle of a batch ({backlog} rows unpublished)" if backlog
                    else f"(no batch in flight caught in {looks} looks)")
                 + f"; restart in {delay:.0f} s")
        time.sleep(delay)
        self.restart(victim)
        restarted = now()

        def check():
            age = self.outbox_age()
            if age is None:
                return False, "Postgres gave no answer in 3 s"
            return age < 1.0, f"oldest unpublished outbox row {age:.1f} s old"
        waits = {}
        recovered, why = self.wait_until(check, every=0.2, waits=waits)
        return self.record("relay_kill", started, recovered, why, victim=victim, pid=pid, mid_batch=bool(backlog),
                           unpublished_at_kill=backlog, looks=looks, restarted_after_s=round(restarted - started, 2),
                           window_end=recovered, waited_on=self.waited_on(waits))

    def fault_worker_kill(self):
        victim = self.plan["worker_kill"]["victim"]
        delay = 3.0 if self.short else 5.0
        pid = self.fleet.pid(victim)

        def holding():
            mine = sum(self.consumer_of(pid, self.pending_by_consumer()).values())
            return mine if mine > 0 else None
        pending_at_kill, looks = self.freeze_until(pid, holding)
        started = now()
        self.fleet.kill(victim)
        self.log(f"worker_kill: kill -9 {victim} (pid {pid}) "
                 + (f"frozen with {pending_at_kill} entries pending on it" if pending_at_kill
                    else f"(no entry pending on it in {looks} looks)")
                 + f"; restart in {delay:.0f} s")
        time.sleep(delay)
        self.restart(victim)
        restarted = now()
        self.log(f"worker_kill: {victim} restarted (pid {self.fleet.pid(victim)}); "
                 "waiting in the background for its pending entries to be claimed")
        result = self.record_pending("worker_kill", started, victim=victim, pid=pid, pending_at_kill=pending_at_kill or 0,
                                     looks=looks,
                                     restarted_after_s=round(restarted - started, 2), window_end=restarted)

        def measure():
            psql, redis = Psql(self.db_url), Redis(self.redis_url)
            try:
                def check():
                    mine = self.consumer_of(pid, self.pending_by_consumer(redis))
                    if sum(mine.values()) > 0:
                        return False, f"{sum(mine.values())} entries still pending on the killed consumer"
                    left = self.unprocessed_before(started, psql)
                    if left is None:
                        return False, "Postgres gave no answer in 5 s"
                    return (left == 0), f"{left} orders committed before the kill not processed"
                waits = {}
                recovered, why = self.wait_until(check, waits=waits)
                result["waited_on"] = self.waited_on(waits)
                self.finish_pending(result, recovered, why)
            finally:
                psql.close()
                redis.close()
        thread = threading.Thread(target=measure, daemon=True)
        thread.start()
        self.background.append(thread)
        return result

    def record_pending(self, name, started, **detail):
        result = {"fault": name, "did": FAULTS[name][0], "recovered_when": FAULTS[name][1], "started_at": started,
                  "at_s": round(started - self.sale_start, 1), "recovered_at": None, "recovery_s": None,
                  "not_recovered_because": "still measuring", **detail}
        self.results.append(result)
        return result

    def finish_pending(self, result, recovered, why):
        result["recovered_at"] = recovered
        result["recovery_s"] = round(recovered - result["started_at"], 2) if recovered else None
        result["not_recovered_because"] = why or None
        name = result["fault"]
        if recovered:
            self.log(f"{name}: recovered after {result['recovery_s']:.2f} s")
        else:
            self.log(f"{name}: NOT recovered within {RECOVERY_LIMIT:.0f} s ({why})")

    def stack(self, *args):
        t0 = now()
        done = subprocess.run([STACK, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            self.log(f"scripts/stack {' '.join(args)} failed: {done.stderr.strip()[-300:]}")
        return round(now() - t0, 2)

    def fault_redis_restart(self, empty=False):
        name = "redis_empty" if empty else "redis_restart"
        started = now()
        took = self.stack("restart-redis", *(["--empty"] if empty else []))
        self.redis.close()
        self.log(f"{name}: Redis restarted{' empty' if empty else ' from its AOF'} in {took:.1f} s")
        waits = {}
        recovered, why = self.wait_until(lambda: self.system_recovered(started), waits=waits)
        return self.record(name, started, recovered, why, restart_took_s=took, window_end=recovered,
                           waited_on=self.waited_on(waits))

    def fault_redis_empty(self):
        return self.fault_redis_restart(empty=True)

    def fault_redis_rollback(self):
        return rollback.fault(self)

    def fault_postgres_restart(self):
        started = now()
        took = self.stack("restart-postgres")
        self.psql.close()
        self.log(f"postgres_restart: Postgres restarted in {took:.1f} s")
        waits = {}
        recovered, why = self.wait_until(lambda: self.system_recovered(started), waits=waits)
        return self.record("postgres_restart", started, recovered, why, restart_took_s=took,
                           window_end=recovered, waited_on=self.waited_on(waits))

    def breaker_opened(self):
        total = 0
        for name in self.fleet.apis():
            try:
                with urllib.request.urlopen(f"{self.fleet.url(name)}/metrics", timeout=2) as res:
                    for line in res.read().decode().splitlines():
                        if line.startswith("flashsale_payment_breaker_opened_total"):
                            total += int(float(line.split()[-1]))
            except (OSError, ValueError):
                pass
        return total

    def fault_payment_failures(self):
        return self.simulator_fault("payment_failures", {"failure_rate": 0.5}, 10.0,
                                    "the provider fails 50% of calls")

    def fault_payment_answers_lost(self):
        return self.simulator_fault("payment_answers_lost", {"lost_answer_rate": 0.2}, 10.0,
                                    "the provider loses 20% of its answers after doing the work (connection dropped)")

    def fault_payment_outage(self):
        return self.simulator_fault("payment_outage", {"outage_ms": 5000}, 5.0,
                                    "the provider answers every call 503 (down)")

    def simulator_fault(self, name, change, seconds, what):
        """Changes the payment simulator's settings for `seconds` (through an API's
        operations endpoint, which forwards to the one simulator every process pays
        through), then restores them; recovered once the probe checkout is answered 402
        everywhere (every breaker closed again)."""
        op = self.args.operator_token
        url = f"{self.fleet.url(self.fleet.apis()[0])}/v1/ops/payment-simulator"
        status, before = Http.call("GET", url, op)
        if status != 200:
            before = {"latency_ms": {"p50": 5, "p99": 20}, "failure_rate": 0.0}
        opened_before = self.breaker_opened()
        started = now()
        status, answer = Http.call("PUT", url, op, {**before, **change}, timeout=5)
        if status != 200:
            self.log(f"{name}: PUT answered {status} {answer}")
        self.log(f"{name}: {what} for {seconds:g} s")
        time.sleep(seconds)
        status, answer = Http.call("PUT", url, op, {**before, "outage_ms": 0}, timeout=5)
        if status != 200:
            self.log(f"{name}: restoring answered {status} {answer}")
        restored = now()
        self.log(f"{name}: simulator settings restored")
        waits = {}
        recovered, why = self.wait_until(self.probes_check, waits=waits)
        return self.record(name, started, recovered, why, failing_for_s=seconds,
                           restored_after_s=round(restored - started, 2),
                           breaker_opened=self.breaker_opened() - opened_before, window_end=recovered,
                           waited_on=self.waited_on(waits))

    # ---------------------------------------------------------------- the run

    def start_k6(self):
        out = open(os.path.join(self.dir, "k6.log"), "wb")
        self.k6 = subprocess.Popen(self.args.k6, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.k6_started = now()

    def k6_running(self):
        return self.k6.poll() is None

    def wait_for_sale_start(self):
        """k6's setup() moves the sale's start PREQUEUE_SECS ahead; learn when."""
        created = None
        deadline = now() + 180
        while now() < deadline and self.k6_running():
            status, sale = Http.call("GET", f"{self.fleet.url(self.fleet.apis()[0])}/v1/admin/sales/{self.sale}",
                                     self.args.merchant_token)
            if status == 200:
                created = created or sale["starts_at"]
                if sale["starts_at"] != created or sale.get("version", 1) > 1:
                    starts = sale["starts_at"].replace("Z", "+00:00")
                    from datetime import datetime
                    self.sale_start = datetime.fromisoformat(starts).timestamp()
                    return True
            time.sleep(0.5)
        return False

    def schedule(self):
        """The order of the faults, the pause before each and the victims, all drawn
        from the seed up front. The short run kills the worker first: its entries wait
        30 s (the claim idle time) before another consumer takes them, and the faults
        that need a settled pipeline would otherwise wait that long."""
        order = list(FAULTS)
        self.rng.shuffle(order)
        if self.short:
            order.remove("worker_kill")
            order.insert(0, "worker_kill")
        gap = (0.5, 2.0) if self.short else (4.0, 14.0)
        victims = {"api_kill": self.fleet.apis(), "relay_kill": self.fleet.names("relay"),
                   "worker_kill": self.fleet.names("worker")}
        for name in order:
            self.plan[name] = {"pause": round(self.rng.uniform(*gap), 2)}
            if name in victims:
                self.plan[name]["victim"] = self.rng.choice(victims[name])
        return order

    def run(self):
        say(f"seed {self.args.seed} (set CHAOS_SEED={self.args.seed} to repeat this schedule)")
        order = self.schedule()
        say("schedule: " + ", ".join(
            f"{n} (pause {self.plan[n]['pause']:.1f} s" + (f", {self.plan[n]['victim']}" if "victim" in self.plan[n] else "") + ")"
            for n in order))
        self.start_k6()
        if not self.wait_for_sale_start():
            say("k6 did not start the sale; see k6.log")
            self.k6.wait()
            return 2
        self.log(f"the sale starts at {time.strftime('%H:%M:%S', time.gmtime(self.sale_start))} UTC; "
                 f"k6 started {self.sale_start - self.k6_started:.1f} s before it")
        first = self.args.first_fault_after
        while now() < self.sale_start + first:
            time.sleep(0.2)
        ok, failed = self.probes_pass()
        if not ok:
            self.log(f"the probes fail before any fault: {failed}")
        pending = list(order)
        while pending:
            if not self.k6_running():
                self.log("k6 ended before every fault was done; doing the rest without load")
            name = pending[0]
            if FAULTS[name][2] and not self.pipeline_quiet():
                later = [f for f in pending if not FAULTS[f][2]]
                if later:
                    self.log(f"{name} waits for the pipeline to settle; {later[0]} first")
                    name = later[0]
                else:
                    self.log(f"{name} waits for the pipeline to settle")
                    for t in self.background:
                        t.join(RECOVERY_LIMIT)
            pending.remove(name)
            time.sleep(self.plan[name]["pause"])
            try:
                getattr(self, f"fault_{name}")()
            except Exception as e:  # a fault that cannot be done is a failed run, not a crash
                self.log(f"{name}: could not be done: {e!r}")
                self.results.append({"fault": name, "did": FAULTS[name][0], "recovered_when": FAULTS[name][1],
                                     "started_at": now(), "at_s": round(now() - self.sale_start, 1),
                                     "recovered_at": None, "recovery_s": None, "not_recovered_because": repr(e)})
        for t in self.background:
            t.join(RECOVERY_LIMIT)
        self.log("every fault done; waiting for k6 to finish")
        rc = self.k6.wait()
        self.log(f"k6 exited {rc}")
        return rc


# ------------------------------------------------------------------ accounting

LINE = re.compile(r'msg="chaos-req (\d+) (\S+) (\d+) (\S+) (-?\d+) (\S+)"')


def requests_log(path):
    """[(epoch s, step, status, code, api, kind)] from k6.log."""
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = LINE.search(line)
                if m:
                    out.append((int(m.group(1)) / 1000, m.group(2), int(m.group(3)), m.group(4), int(m.group(5)), m.group(6)))
    except OSError:
        pass
    return out


def attribute(results, reqs):
    """Counts, per fault window [start, end], the failed requests by kind; the rest is
    the baseline (outside every window)."""
    windows = []
    for r in results:
        end = r.get("window_end") or r.get("recovered_at") or (r["started_at"] + 30)
        windows.append((r["started_at"], end + 1.0, r))
        r["failed"] = {}
        r["failed_total"] = 0
        r["shopper_errors"] = 0
        r["by_status"] = {}
    baseline = {}
    for t, step, status, code, api, kind in reqs:
        hit = [r for start, end, r in windows if start <= t <= end]
        targets = hit or [None]
        for r in targets:
            bucket = r["failed"] if r is not None else baseline
            bucket[kind] = bucket.get(kind, 0) + 1
            if r is not None:
                r["failed_total"] += 1
                key = f"{status} {code}" if code != "-" else str(status)
                r["by_status"][key] = r["by_status"].get(key, 0) + 1
                if kind == "error":
                    r["shopper_errors"] += 1
    return baseline


def table(results, baseline, duration_s, k6_counters):
    head = f"{'fault':<20} {'at':>7} {'recovery':>9}  {'failed requests (by kind)':<46} {'shopper errors':>14}"
    lines = [head, "-" * len(head)]
    for r in results:
        at = f"{r['at_s']:+.0f}s" if r.get("at_s") is not None else "-"
        rec = f"{r['recovery_s']:.1f} s" if r.get("recovery_s") is not None else "NOT"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.get("failed", {}).items(), key=lambda kv: -kv[1])) or "none"
        lines.append(f"{r['fault']:<20} {at:>7} {rec:>9}  {str(r.get('failed_total', 0)) + ': ' + kinds:<46} {r.get('shopper_errors', 0):>14}")
    base = ", ".join(f"{k} {v}" for k, v in sorted(baseline.items(), key=lambda kv: -kv[1])) or "none"
    lines.append(f"{'outside faults':<20} {'':>7} {'':>9}  {sum(baseline.values())}: {base}")
    lines.append("")
    lines.append("at: seconds after the sale's start. recovery: from the fault to 'recovered' as defined per fault below.")
    lines.append("failed requests: answers in the fault window (start to recovery + 1 s) that were not a plain success:")
    lines.append("  failover = no answer or 5xx, sent again at once to the other API; shed = 429/503, retried after Retry-After;")
    lines.append("  no_answer = no answer after failover; lost_state = a contract answer for state the fault lost (ticket")
    lines.append("  rejoined, checkout retried with its key, hold reserved again); error = the shopper's final answer was wrong.")
    if k6_counters:
        lines.append("k6: " + " ".join(f"{k}={v}" for k, v in k6_counters.items()))
    lines.append("")
    for r in results:
        detail = {k: v for k, v in r.items() if k not in (
            "fault", "did", "recovered_when", "started_at", "at_s", "recovered_at", "recovery_s", "failed",
            "failed_total", "shopper_errors", "window_end", "by_status", "not_recovered_because") and v is not None}
        lines.append(f"{r['fault']}: {r['did']}")
        lines.append(f"  recovered when: {r['recovered_when']}")
        if detail:
            lines.append("  " + ", ".join(f"{k} {v}" for k, v in detail.items()))
        if r.get("by_status"):
            lines.append("  failed by answer: " + ", ".join(f"{k} ×{v}" for k, v in sorted(r["by_status"].items(), key=lambda kv: -kv[1])))
        if r.get("not_recovered_because"):
            lines.append(f"  NOT RECOVERED: {r['not_recovered_because']}")
    return "\n".join(lines) + "\n"


def k6_counters(folder):
    try:
        with open(os.path.join(folder, "k6-summary.json")) as f:
            metrics = json.load(f)["metrics"]
    except (OSError, ValueError, KeyError):
        return {}
    keys = ["http_reqs", "failovers", "shed_responses", "no_answer", "rejoins", "holds_lost", "orders_placed",
            "confirmations_sent", "confirmations_late"]
    return {k: int(metrics[k]["values"]["count"]) for k in keys if k in metrics}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="the report folder (k6.log, chaos.json, chaos.txt)")
    parser.add_argument("--fleet", help="the fleet folder (default: --dir)")
    parser.add_argument("--sale", required=True)
    parser.add_argument("--merchant-token", required=True)
    parser.add_argument("--operator-token", required=True)
    parser.add_argument("--probe-tokens", required=True, help="'<shopper token> <admission token>' per line")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--short", action="store_true", help="short pauses between faults (CI)")
    parser.add_argument("--first-fault-after", type=float, default=8.0, help="seconds after the sale's start")
    parser.add_argument("k6", nargs=argparse.REMAINDER, help="-- then the k6 command")
    args = parser.parse_args()
    if args.k6 and args.k6[0] == "--":
        args.k6 = args.k6[1:]
    if not args.k6:
        parser.error("the k6 command is missing (after --)")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)

    chaos = Chaos(args)
    # Stop k6 with us (Ctrl-C or the runner's timeout), not leave it running.
    def stop(signum, _frame):
        if chaos.k6 and chaos.k6.poll() is None:
            chaos.k6.send_signal(signal.SIGINT)
        raise SystemExit(130)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    t0 = now()
    k6_rc = chaos.run()

    reqs = requests_log(os.path.join(args.dir, "k6.log"))
    baseline = attribute(chaos.results, reqs)
    counters = k6_counters(args.dir)
    text = table(chaos.results, baseline, now() - t0, counters)
    failures = [r["fault"] for r in chaos.results if r.get("recovered_at") is None]
    missing = [f for f in FAULTS if f not in {r["fault"] for r in chaos.results}]
    verdict = ("every fault recovered" if not failures and not missing
               else f"NOT RECOVERED: {', '.join(failures + missing)}")
    start = chaos.sale_start or t0
    timeline = "".join(f"  {at - start:+7.1f}s  {what}\n" for at, what in chaos.events)
    text = (f"chaos: seed {args.seed} · {len(chaos.results)} faults · {verdict}\n" + text
            + "\ntimeline (seconds after the sale's start):\n" + timeline)
    with open(os.path.join(args.dir, "chaos.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(args.dir, "chaos.json"), "w") as f:
        json.dump({"seed": args.seed, "short": args.short, "sale_start": chaos.sale_start,
                   "k6_exit": k6_rc, "faults": chaos.results, "baseline_failed": baseline,
                   "k6": counters, "log": [{"at": a, "text": t} for a, t in chaos.events],
                   "verdict": verdict}, f, indent=1, default=str)
    sys.stdout.write(text)
    chaos.psql.close()
    if failures or missing:
        return 3
    return 0 if k6_rc in (0, 99) else 4


if __name__ == "__main__":
    sys.exit(main())
