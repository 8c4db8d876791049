#!/usr/bin/env python3
"""The bot-farm rehearsal's figures (`loadtests/run bots`, k6/bots.js): for each group
(the honest crowd, the farm) its share of addresses, sessions, tickets, admissions and
units bought, and whether the farm's share of units stays within its per-address share
(issue #16, "Done when").

"Its per-address share" is judged where the farm competes: the draw. Every farm
address pre-queues, and so does part of the crowd; the rest of the crowd arrives after
the start and queues first-come behind everyone drawn, as any late shopper does. So the
farm's units bought with drawn tickets are held against what a draw that is fair per
address gives the same number of pre-queued addresses: the drawn tickets' units times
the farm's share of the pre-queued addresses, plus two standard deviations of that
binomial (each address wins its round-0 place or not). Over that, the farm's sessions
bought it more than its addresses: NOT within. The share of all addresses is printed
too; it also counts the crowd's late arrivals, which no draw can reach.

Reads from the rehearsal folder: k6-summary.json (every counter split by k6's
`scenario` tag: the scenarios are named `crowd` and `farm`), bots-plan.json (the groups as k6/bots.js ran them) and verify.json
(Postgres' order count, to cross-check the units). report.py puts `summary_lines` in
the printed summary and `html_section` in report.html; run as a script it writes
bots.json and exits 0 when the farm is within its share, 3 when not, 2 without data.

    python3 loadtests/lib/bots.py loadtests/reports/<run>
"""
import html
import json
import math
import os
import sys

from charts import load_json

GROUPS = ("crowd", "farm")
# (figure, k6 counter): the columns of the table, in the order of a shopper's path.
FIGURES = (("sessions", "sessions_created"), ("tickets", "tickets_joined"),
           ("admitted", "shoppers_admitted"), ("units", "orders_placed"))
# (figure, k6 counter): what was taken and bought before the start, the draw's part.
DRAWN = (("drawn_tickets", "prequeue_tickets"), ("drawn_units", "prequeue_orders"))

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
        row = {name: int(_value(metrics, counter, group, "count") or 0) for name, counter in FIGURES + DRAWN}
        arrived = int(_value(metrics, "shoppers_arrived", group, "count") or 0)
        # Every crowd shopper comes from an address of its own; the farm from its few.
        farm_addresses = int((plan.get("farm") or {}).get("addresses", 0))
        row["addresses"] = arrived if group == "crowd" else min(farm_addresses, arrived)
        row["drawn_addresses"] = row["drawn_tickets"] if group == "crowd" else min(farm_addresses, row["drawn_tickets"])
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
    draw = fair_draw(groups)
    return {
        "plan": plan,
        "groups": groups,
        "shares": shares,
        "farm_units_over_address_share": ratio,
        "draw": draw,
        "within": draw is not None and draw["farm_units"] <= draw["fair_at_most"],
        "postgres_orders": verify.get("orders"),
    }


def fair_draw(groups):
    """The farm's drawn units against a draw fair per address (module docstring), or None
    when nobody bought with a drawn ticket."""
    addresses = sum(groups[g]["drawn_addresses"] for g in GROUPS)
    units = sum(groups[g]["drawn_units"] for g in GROUPS)
    if not addresses or not units:
        return None
    farm = groups["farm"]["drawn_addresses"]
    per_address = units / addresses
    p = min(per_address, 1.0)
    expected = farm * per_address
    return {
        "addresses": addresses,
        "units": units,
        "farm_addresses": farm,
        "farm_units": groups["farm"]["drawn_units"],
        "fair_expected": round(expected, 2),
        "fair_at_most": round(expected + 2 * math.sqrt(farm * p * (1 - p)), 2),
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


def _overall(f):
    ratio = f["farm_units_over_address_share"]
    if ratio is None:
        return "farm's share of units: no data"
    return (f"overall: farm's share of units {_pct(f['shares']['farm']['units'])} vs its share of all addresses "
            f"{_pct(f['shares']['farm']['addresses'])}: ratio {ratio:.1f} (the crowd's late arrivals included)")


def _verdict(f):
    d = f["draw"]
    if d is None:
        return "the draw: nobody bought with a drawn ticket — no verdict"
    word = "within" if f["within"] else "NOT within"
    return (f"the draw: the farm's {d['farm_addresses']} of {d['addresses']} pre-queued addresses bought "
            f"{d['farm_units']} of the {d['units']} units sold to drawn tickets; a draw fair per address gives "
            f"them {d['fair_expected']:.1f} (at most {d['fair_at_most']:.1f} within 2 sd) — {word} its per-address share")


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
    lines.append("  " + _overall(f))
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
            f"</table><p>{html.escape(_overall(f))}</p><p class=\"{cls}\">{html.escape(_verdict(f))}</p>"
            f"<p>Plan: <code>{plan}</code></p>")


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
