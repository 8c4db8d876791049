#!/usr/bin/env python3
"""Samples CPU (% of one core) and memory of the processes of a rehearsal once a second
into a JSONL file, until killed: the flashsale server, k6, Redis, Postgres (all its
processes), and everything else on the machine. On a 2-core machine the load generator
shares the cores with the system under test; this shows by how much.

    python3 loadtests/lib/resources.py <out.jsonl> <flashsale pid | fleet.json>

Given a fleet description (lib/fleet.py) instead of a pid, every member's current pid
counts as flashsale; the file is read again each second, as members are restarted.
"""
import json
import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def proc_times():
    """{pid: (comm, utime+stime ticks, rss pages)} of every process."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        out[int(pid)] = (comm, int(fields[11]) + int(fields[12]), int(fields[21]))
    return out


def machine_busy():
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def servers(spec):
    """The flashsale pids: the one given, or every member of a fleet.json."""
    if spec.isdigit():
        return {int(spec)}
    try:
        with open(spec) as f:
            return {m["pid"] for m in json.load(f)["members"].values() if m.get("pid")}
    except (OSError, ValueError, KeyError):
        return set()


def group(pid, comm, server):
    if pid in server:
        return "flashsale"
    if comm == "k6":
        return "k6"
    if comm.startswith("redis-server"):
        return "redis"
    if comm.startswith("postgres") or comm.startswith("postmaster"):
        return "postgres"
    return "other"


def main():
    out_path, spec = sys.argv[1], sys.argv[2]
    page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20
    before = proc_times()
    busy0, total0 = machine_busy()
    wall0 = time.time()
    with open(out_path, "a") as out:
        while True:
            time.sleep(1)
            now, (busy1, total1), wall1 = proc_times(), machine_busy(), time.time()
            server = servers(spec)
            cpu, rss = {}, {}
            for pid, (comm, ticks, pages) in now.items():
                g = group(pid, comm, server)
                prev = before.get(pid)
                delta = ticks - prev[1] if prev and prev[0] == comm else 0
                cpu[g] = cpu.get(g, 0) + delta
                rss[g] = rss.get(g, 0) + pages
            seconds = wall1 - wall0
            record = {
                "t": wall1,
                "cpu_pct": {g: round(100 * t / TICK / seconds, 1) for g, t in cpu.items()},
                "rss_mib": {g: round(p * page_mib) for g, p in rss.items()},
                "machine_busy_pct": round(100 * (busy1 - busy0) / max(total1 - total0, 1), 1),
                "cores": os.cpu_count(),
            }
            out.write(json.dumps(record) + "\n")
            out.flush()
            before, busy0, total0, wall0 = now, busy1, total1, wall1


if __name__ == "__main__":
    main()
