#!/usr/bin/env python3
"""A fleet of flashsale processes for one system: each role in processes of its own
(`serve` on several loopback ports, `relay`, `worker`), as at scale, sharing one Redis
key prefix and one database. The chaos rehearsal kills and restarts its members; a
Redis-Cluster rehearsal can start the same fleet against another REDIS_URL.

Every member is started from the caller's environment (REDIS_URL, DATABASE_URL,
FLASHSALE_REDIS_PREFIX, RUST_LOG …), detached in a session of its own so a member
outlives the command that started it; APIs get FLASHSALE_BIND_ADDR=127.0.0.1:<port>.
The fleet is described in <dir>/fleet.json (members, pids, ports); each member appends
its output to <dir>/<name>.log across restarts. The payment provider is a member of its
own, `payments` (`flashsale payment-simulator`, journaled to <dir>/payments.journal); every
other member gets FLASHSALE_PAYMENT_URL pointing at it.

    fleet.py up <dir> --bin target/release/flashsale --api-ports 18380,18381 --relays 1 --workers 2
    fleet.py kill <dir> <name>      # SIGKILL (kill -9)
    fleet.py start <dir> <name>     # start a member that is not running; wait until ready
    fleet.py status <dir>
    fleet.py urls <dir>             # the API base URLs, comma-separated
    fleet.py down <dir>             # SIGTERM every member, SIGKILL after a grace period

Members are named payments, api1, api2 …, relay1 …, worker1 …. `up` runs `flashsale migrate`
first and returns once every API answers /readyz with 200.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

HOST = "127.0.0.1"


def log(message):
    print(f"fleet: {message}", file=sys.stderr, flush=True)


def http_status(url, timeout=1.0):
    """The status of a GET, or 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            return res.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return 0


def pid_alive(pid):
    """True while the process exists and is not a zombie waiting to be reaped."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Fleet:
    """The members of one fleet, as written in <dir>/fleet.json."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, "fleet.json")
        self.children = {}  # pid -> Popen, for members this process started (reaped here)
        if os.path.exists(self.path):
            with open(self.path) as f:
                state = json.load(f)
            self.binary = state["bin"]
            self.members = state["members"]
        else:
            self.binary = None
            self.members = {}

    # ---------------------------------------------------------------- description

    def plan(self, binary, api_ports, relays, workers, payments_port):
        self.binary = os.path.abspath(binary)
        self.members = {}
        # The payment provider is a service of its own, shared by every member (its
        # ledger outlives any member a fault kills): the simulator, journaled here.
        self.members["payments"] = {"role": "payment-simulator", "port": payments_port, "pid": None, "starts": 0}
        for i, port in enumerate(api_ports, 1):
            self.members[f"api{i}"] = {"role": "serve", "port": port, "pid": None, "starts": 0}
        for i in range(1, relays + 1):
            self.members[f"relay{i}"] = {"role": "relay", "pid": None, "starts": 0}
        for i in range(1, workers + 1):
            self.members[f"worker{i}"] = {"role": "worker", "pid": None, "starts": 0}
        self.save()

    def save(self):
        os.makedirs(self.folder, exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"bin": self.binary, "members": self.members}, f, indent=1)
        os.replace(tmp, self.path)

    def names(self, role=None):
        return [n for n, m in self.members.items() if role is None or m["role"] == role]

    def apis(self):
        return self.names("serve")

    def url(self, name):
        return f"http://{HOST}:{self.members[name]['port']}"

    def urls(self):
        return [self.url(n) for n in self.apis()]

    def pid(self, name):
        return self.members[name]["pid"]

    def log_path(self, name):
        return os.path.join(self.folder, f"{name}.log")

    # ---------------------------------------------------------------- processes

    def alive(self, name):
        pid = self.pid(name)
        child = self.children.get(pid)
        if child is not None:
            return child.poll() is None
        return pid_alive(pid)

    def ready(self, name):
        """APIs: /readyz answers 200. Relays and workers: the process runs."""
        if not self.alive(name):
            return False
        member = self.members[name]
        if member["role"] == "serve":
            return http_status(f"{self.url(name)}/readyz") == 200
        if member["role"] == "payment-simulator":
            return http_status(f"{self.url(name)}/v1/simulator/settings") != 0
        return True

    def payments_url(self):
        payments = self.members.get("payments")
        return f"http://{HOST}:{payments['port']}" if payments else None

    def migrate(self):
        subprocess.run([self.binary, "migrate"], check=True, stdout=subprocess.DEVNULL)

    def start(self, name):
        """Starts a member that is not running; returns its pid (does not wait)."""
        member = self.members[name]
        if self.alive(name):
            raise RuntimeError(f"{name} is already running (pid {member['pid']})")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        env.setdefault("RUST_LIB_BACKTRACE", "0")
        env.setdefault("NO_COLOR", "1")
        if member["role"] == "serve":
            port = member["port"]
            if http_status(f"http://{HOST}:{port}/healthz") != 0:
                raise RuntimeError(f"port {port} is already serving")
            env["FLASHSALE_BIND_ADDR"] = f"{HOST}:{port}"
        command = [self.binary, member["role"]]
        if member["role"] == "payment-simulator":
            command += ["--listen", f"{HOST}:{member['port']}",
                        "--journal", os.path.join(self.folder, "payments.journal")]
        elif self.payments_url():
            env["FLASHSALE_PAYMENT_URL"] = self.payments_url()
        with open(self.log_path(name), "ab") as out:
            out.write(f"---- fleet: starting {name} ({member['role']}) at {time.time():.3f}\n".encode())
            out.flush()
            child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.children[child.pid] = child
        member["pid"] = child.pid
        member["starts"] += 1
        self.save()
        return child.pid

    def wait_ready(self, name, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready(name):
                return True
            if not self.alive(name):
                raise RuntimeError(f"{name} exited at start; see {self.log_path(name)}")
            time.sleep(0.1)
        return False

    def kill(self, name, sig=signal.SIGKILL):
        """Sends `sig` (default SIGKILL: kill -9) to a member; returns the pid it had."""
        pid = self.pid(name)
        if not pid or not self.alive(name):
            raise RuntimeError(f"{name} is not running")
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            self.wait_gone(name, 5.0)
        return pid

    def wait_gone(self, name, timeout):
        deadline = time.monotonic() + timeout
        pid = self.pid(name)
        while time.monotonic() < deadline:
            child = self.children.get(pid)
            if child is not None:
                try:
                    child.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    continue
                return True
            if not pid_alive(pid):
                return True
            time.sleep(0.05)
        return False

    def up(self):
        self.migrate()
        for name in self.members:
            self.start(name)
        for name in self.members:
            if not self.wait_ready(name, 30.0):
                raise RuntimeError(f"{name} not ready after 30 s; see {self.log_path(name)}")

    def down(self, grace=15.0):
        running = [n for n in self.members if self.alive(n)]
        for name in running:
            try:
                os.kill(self.pid(name), signal.SIGTERM)
            except ProcessLookupError:
                pass
        for name in running:
            if not self.wait_gone(name, grace):
                log(f"{name} still running {grace:.0f} s after SIGTERM; killing it")
                try:
                    os.kill(self.pid(name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait_gone(name, 5.0)

    def status(self):
        return {n: {**m, "alive": self.alive(n)} for n, m in self.members.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up")
    up.add_argument("dir")
    up.add_argument("--bin", required=True)
    up.add_argument("--api-ports", required=True, help="comma-separated loopback ports, one API each")
    up.add_argument("--relays", type=int, default=1)
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--payments-port", type=int, help="the payment simulator's port (default: last API port + 10)")
    for command in ("kill", "start"):
        p = sub.add_parser(command)
        p.add_argument("dir")
        p.add_argument("name")
    for command in ("status", "urls", "down"):
        sub.add_parser(command).add_argument("dir")
    args = parser.parse_args()

    fleet = Fleet(args.dir)
    if args.command == "up":
        ports = [int(p) for p in args.api_ports.split(",") if p.strip()]
        fleet.plan(args.bin, ports, args.relays, args.workers, args.payments_port or max(ports) + 10)
        fleet.up()
        log("up: " + ", ".join(f"{n} (pid {m['pid']}{', port %d' % m['port'] if 'port' in m else ''})"
                               for n, m in fleet.members.items()))
    elif args.command == "kill":
        pid = fleet.kill(args.name)
        log(f"killed {args.name} (pid {pid}) with SIGKILL")
    elif args.command == "start":
        pid = fleet.start(args.name)
        if not fleet.wait_ready(args.name, 30.0):
            sys.exit(f"fleet: {args.name} not ready after 30 s")
        log(f"started {args.name} (pid {pid})")
    elif args.command == "status":
        print(json.dumps(fleet.status(), indent=1))
    elif args.command == "urls":
        print(",".join(fleet.urls()))
    elif args.command == "down":
        fleet.down()


if __name__ == "__main__":
    main()
