#!/usr/bin/env python3
"""The bot-farm rehearsal's figures (`loadtests/run bots`, k6/bots.js): for each group
(the honest crowd, the farm) its share of addresses, sessions, tickets, admissions and
units bought, and whether the farm's share of units stays within its share of
addresses (issue #16, "Done when").

Reads from the rehearsal folder: k6-summary.json (every counter split by k6's
`scenario` tag: the scenarios are named `crowd` and `farm`), bots-plan.json (the groups as k6/bots.js ran them) and verify.json
(Postgres' order count, to cross-check the units). report.py puts `summary_lines` in
the printed summary and `html_section` in report.html; run as a script it writes
bots.json and exits 0 when the farm is within its share, 3 when not, 2 without data.

    python3 loadtests/lib/bots.py loadtests/reports/<run>
"""
import html
import json
import os
import sys

from charts import load_json

GROUPS = ("crowd", "farm")
# (figure, k6 counter): the columns of the table, in the order of a shopper's path.
FIGURES = (("sessions", "sessions_created"), ("tickets", "tickets_joined"),
           ("admitted", "shoppers_admitted"), ("units", "orders_placed"))




def _value(metrics, name, group, stat):
    return (metrics.get(f"{name}{{scenario:{group}}}") or {}).get("values", {}).get(stat)


def figures(folder):
    """The groups' figures and shares, or None when k6 left no summary."""
    summary = load_json(os.path.join(folder, "k6-summary.json"))
    if not summary:
        return None
    metrics = summary.get("metrics", {})
    plan = load_json(os.path.join(folder, "bots-plan.json")) or {}
    groups = {}
    for group in GROUPS:
        row = {name: int(_value(metrics, counter, group, "count") or 0) for name, counter in FIGURES}
        arrived = int(_value(metrics, "shoppers_arrived", group, "count") or 0)
        # Every crowd shopper comes from an address of its own; the farm from its few.
        farm_addresses = int((plan.get("farm") or {}).get("addresses", 0))
        row["addresses"] = arrived if group == "crowd" else min(farm_addresses, arrived)
        row["shed"] = int(_value(metrics, "shed_responses", group, "count") or 0)
        row["proof_bits_mean"] = _value(metrics, "proof_bits", group, "avg")
        row["proof_bits_max"] = _value(metrics, "proof_bits", group, "max")
        row["proof_solve_p95_ms"] = _value(metrics, "proof_solve_time", group, "p(95)")
        groups[group] = row
    shares = {}
    for name in ("addresses",) + tuple(name for name, _ in FIGURES):
        total = sum(groups[g][name] for g in GROUPS)
        for g in GROUPS:
            shares.setdefault(g, {})[name] = groups[g][name] / total if total else None
    farm_units, farm_addresses = shares["farm"]["units"], shares["farm"]["addresses"]
    ratio = farm_units / farm_addresses if farm_units is not None and farm_addresses else None
    verify = load_json(os.path.join(folder, "verify.json")) or {}
    return {
        "plan": plan,
        "groups": groups,
        "shares": shares,
        "farm_units_over_address_share": ratio,
        "within": ratio is not None and ratio <= 1.0,
        "postgres_orders": verify.get("orders"),
    }


def _pct(v):
    return "-" if v is None else f"{v * 100:.1f}%"


def _bits(row):
    if row["proof_bits_mean"] is None:
        return "-"
    return f"{row['proof_bits_mean']:.1f} / {row['proof_bits_max']:.0f}"


def _solve(row):
    v = row["proof_solve_p95_ms"]
    return "-" if v is None else f"{v:.0f} ms"


def _verdict(f):
    ratio = f["farm_units_over_address_share"]
    if ratio is None:
        return "farm's share of units: no data"
    word = "within" if f["within"] else "NOT within"
    return (f"farm's share of units {_pct(f['shares']['farm']['units'])} vs its share of addresses "
            f"{_pct(f['shares']['farm']['addresses'])}: ratio {ratio:.1f} — {word} its per-address share")


def summary_lines(folder):
    """The bots table for the printed summary ([] when the run is not a bot rehearsal)."""
    if not os.path.isfile(os.path.join(folder, "bots-plan.json")):
        return []
    f = figures(folder)
    if not f:
        return ["[bots] no k6 summary"]
    plan = f["plan"]
    farm = plan.get("farm", {})
    lines = [f"[bots] crowd: one session per address ({plan.get('crowd', {}).get('per_network', '-')} per /24); "
             f"farm: {farm.get('addresses', '-')} addresses × {farm.get('sessions_per_address', '-')} sessions, "
             f"polling every {farm.get('poll_ms', '-')} ms"]
    head = ["group", "addresses", "sessions", "tickets", "admitted", "units", "proof bits avg/max", "solve p95", "shed"]
    widths = [7, 16, 16, 16, 16, 16, 19, 10, 7]
    lines.append("  " + "".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths))))
    for g in GROUPS:
        row, share = f["groups"][g], f["shares"][g]
        cells = [g] + [f"{row[n]} ({_pct(share[n])})" for n in ("addresses", "sessions", "tickets", "admitted", "units")]
        cells += [_bits(row), _solve(row), str(row["shed"])]
        lines.append("  " + "".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    units = sum(f["groups"][g]["units"] for g in GROUPS)
    if f["postgres_orders"] is not None:
        lines.append(f"  units told to shoppers {units}; Postgres orders {f['postgres_orders']}")
    lines.append("  " + _verdict(f))
    return lines


def html_section(folder):
    """The bots table for report.html ('' when the run is not a bot rehearsal)."""
    if not os.path.isfile(os.path.join(folder, "bots-plan.json")):
        return ""
    f = figures(folder)
    if not f:
        return "<h2>Bots</h2><p>No k6 summary.</p>"
    rows = []
    for g in GROUPS:
        row, share = f["groups"][g], f["shares"][g]
        cells = "".join(f"<td>{row[n]} ({_pct(share[n])})</td>"
                        for n in ("addresses", "sessions", "tickets", "admitted", "units"))
        rows.append(f"<tr><td>{g}</td>{cells}<td>{_bits(row)}</td><td>{_solve(row)}</td><td>{row['shed']}</td></tr>")
    cls = "pass" if f["within"] else "fail"
    plan = html.escape(json.dumps(f["plan"]))
    return ("<h2>Bots: each group's share (k6/bots.js)</h2><table><tr><th>group</th><th>addresses</th>"
            "<th>sessions</th><th>tickets (joined)</th><th>admitted</th><th>units bought</th>"
            "<th>proof bits avg/max</th><th>solve p95</th><th>shed (429/503)</th></tr>" + "".join(rows) +
            f"</table><p class=\"{cls}\">{html.escape(_verdict(f))}</p><p>Plan: <code>{plan}</code></p>")


def main():
    folder = sys.argv[1]
    f = figures(folder)
    if not f:
        print("bots: no k6 summary", file=sys.stderr)
        return 2
    with open(os.path.join(folder, "bots.json"), "w") as out:
        json.dump(f, out, indent=1)
    return 0 if f["within"] else 3


if __name__ == "__main__":
    sys.exit(main())
