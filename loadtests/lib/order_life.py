#!/usr/bin/env python3
"""The order's life after purchase in a rehearsal (issue #18): cancels, the units sold
again, and the webhooks a merchant's endpoint received.

Run as a script by loadtests/run after k6 and the checker, while the server still runs:

    order_life.py DIR --api BASE --token MERCHANT_JWT --sale SALE_ID [--wait 30]

It reads the sale's orders from Postgres (`psql "$DATABASE_URL"`, the rehearsal's own
database), GET /v1/admin/sales/{id}/report, the k6 summary (k6-summary.json) and the
receiver's log (webhooks.jsonl, lib/webhook_receiver.py), writes order-life.json and
exits 3 when a webhook is missing or a delivery's signature did not verify, else 0.
report.py puts `summary_lines` in the printed summary and `html_section` in report.html.

Definitions:
- placed: orders of the sale in Postgres (every status); cancelled: status `cancelled`.
  k6 counts its own (`orders_placed`, `cancels_ok` / `cancels_not_cancellable` /
  `cancel_errors`) and /report its own (`orders`, `cancelled`); the summary shows all three.
- returned units: rows of `released_units` with `restocked` (units of cancelled or
  refunded orders that went back on sale).
- **resold units**: returned units that a later order bought again: the unit is in
  `order_units` of an order created at or after its release, or was itself released
  by such an order (sold again, then cancelled again). Cross-check: units sold at the
  end (/report `units_sold`) = units of all orders placed − units released.
  Units are told apart by number, so in a sale that did not sell out a returned unit
  may stay free while others sell: **sold beyond stock** (units of all orders placed −
  the sale's total, at least 0; the total from verify.json) is the fungible view — sales
  that only the returns made possible.
- webhooks expected: one `order.placed` per order placed, one `order.cancelled` per
  order cancelled (`order.refunded` per refunded). **missing**: expected but never
  received with a valid signature, after waiting up to --wait seconds (30) for them.
  **duplicates**: deliveries whose webhook-id was received before (at-least-once).
- **delivery latency**: from the commit to the receiver, per order event's first valid
  delivery: `received_at` (the receiver's clock) − the order's `created_at` (placed) or
  `closed_at` (cancelled) as Postgres stored them. Both are the `now()` of the
  transaction that wrote them, so the figure includes that transaction's own few ms;
  the event body's `timestamp` is the same transaction time. One machine, one clock.
"""
import html
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.dont_write_bytecode = True  # importing lib/*.py leaves no __pycache__ in the tree
from charts import load_json, load_stats, svg_chart  # noqa: E402

ORDER_EVENTS = {"confirmed": ["order.placed"], "cancelled": ["order.placed", "order.cancelled"],
                "refunded": ["order.placed", "order.refunded"]}


def psql(sql):
    out = subprocess.run(["psql", "-X", "-q", "-tA", "-F", "\t", os.environ["DATABASE_URL"], "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def orders(sale):
    """{order id: (status, quantity, created epoch, closed epoch or None)}."""
    rows = psql(f"select id, status, quantity, extract(epoch from created_at), "
                f"coalesce(extract(epoch from closed_at)::text, '') from orders where sale_id = '{sale}'")
    return {r[0]: (r[1], int(r[2]), float(r[3]), float(r[4]) if r[4] else None) for r in rows}


def units(sale):
    """(units released back on sale, of them resold, units released in all) — see the docstring."""
    returned, resold, released = psql(f"""
        select count(*) filter (where r.restocked),
               count(*) filter (where r.restocked and (
                 exists (select 1 from order_units u join orders o on o.id = u.order_id
                         where u.sale_id = r.sale_id and u.unit_no = r.unit_no and o.created_at >= r.released_at)
                 or exists (select 1 from released_units r2 join orders o2 on o2.id = r2.order_id
                            where r2.sale_id = r.sale_id and r2.unit_no = r.unit_no
                              and r2.order_id <> r.order_id and o2.created_at >= r.released_at))),
               count(*)
        from released_units r where r.sale_id = '{sale}'""")[0]
    return int(returned), int(resold), int(released)


def sale_report(api, token, sale):
    req = urllib.request.Request(f"{api}/v1/admin/sales/{sale}/report", headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.load(res)
    except Exception as e:  # noqa: BLE001 - recorded, the figures say "-"
        return {"error": str(e)}


def expected(by_id):
    return {(oid, t) for oid, (status, *_rest) in by_id.items() for t in ORDER_EVENTS.get(status, [])}


def received(path):
    """(every delivery, {(order id, type): first valid delivery})."""
    deliveries = load_stats(path)
    first = {}
    for d in deliveries:
        if d.get("signature_ok") and d.get("order_id"):
            key = (d["order_id"], d["type"])
            if key not in first or d["received_at"] < first[key]["received_at"]:
                first[key] = d
    return deliveries, first


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def k6_counts(folder):
    metrics = (load_json(os.path.join(folder, "k6-summary.json"), {}) or {}).get("metrics", {})
    return {k: int((metrics.get(k) or {}).get("values", {}).get("count", 0))
            for k in ("orders_placed", "cancels_ok", "cancels_not_cancellable", "cancel_errors")}


def figures(folder, api, token, sale, wait_s):
    hooks = os.path.join(folder, "webhooks.jsonl")
    webhooks = os.path.isfile(hooks)
    t_end = time.time() + wait_s
    while True:
        by_id = orders(sale)
        want = expected(by_id)
        deliveries, first = received(hooks) if webhooks else ([], {})
        missing = sorted(want - set(first)) if webhooks else []
        if not webhooks or not missing or time.time() >= t_end:
            break
        time.sleep(1)
    waited = round(wait_s - max(0.0, t_end - time.time()), 1)
    returned, resold, released = units(sale)
    report = sale_report(api, token, sale)
    per_type, ids, dups, bad = {}, set(), 0, 0
    for d in deliveries:
        per_type[d.get("type")] = per_type.get(d.get("type"), 0) + 1
        dups += d["webhook_id"] in ids
        ids.add(d["webhook_id"])
        bad += not d.get("signature_ok")
    lat = {"order.placed": [], "order.cancelled": [], "order.refunded": []}
    for (oid, kind), d in first.items():
        o = by_id.get(oid)
        if o is None or kind not in lat:
            continue
        commit = o[2] if kind == "order.placed" else o[3]
        if commit is not None:
            lat[kind].append((d["received_at"] - commit) * 1000)
    every = [v for vs in lat.values() for v in vs]
    summary = lambda vs: {"n": len(vs), "p50_ms": pct(vs, 50), "p99_ms": pct(vs, 99), "max_ms": max(vs) if vs else None}
    t0 = min((d["received_at"] for d in deliveries), default=0)
    per_second = {}
    for d in deliveries:
        sec = int(d["received_at"] - t0)
        per_second[sec] = per_second.get(sec, 0) + 1
    placed_units = sum(o[1] for o in by_id.values())
    total = (load_json(os.path.join(folder, "verify.json"), {}) or {}).get("total")
    return {
        "sale_id": sale, "webhooks": webhooks, "waited_s": waited,
        "placed": len(by_id), "cancelled": sum(o[0] == "cancelled" for o in by_id.values()),
        "refunded": sum(o[0] == "refunded" for o in by_id.values()), "k6": k6_counts(folder),
        "report": {k: report.get(k) for k in ("orders", "cancelled", "refunded", "units_sold", "error") if k in report},
        "units": {"placed": placed_units, "released": released, "returned": returned, "resold": resold,
                  "beyond_stock": None if total is None else max(0, placed_units - total),
                  "sold_at_end_expected": placed_units - released},
        "deliveries": len(deliveries), "per_type": per_type, "duplicates": dups, "bad_signatures": bad,
        "expected": len(want), "missing": len(missing), "missing_sample": [list(m) for m in missing[:10]],
        "latency": {"all": summary(every), **{k: summary(v) for k, v in lat.items() if v}},
        "per_second": sorted(per_second.items()),
    }


def _ms(v):
    return "-" if v is None else f"{v:.0f} ms"


def placed(folder, default):
    """Orders ever placed in Postgres, cancelled ones included (`default` without figures)."""
    f = load_json(os.path.join(folder, "order-life.json"))
    return f["placed"] if f else default


def summary_lines(folder):
    """The order-life lines of the printed summary ([] when the run did not collect them)."""
    f = load_json(os.path.join(folder, "order-life.json"))
    if not f:
        return []
    k6, rep, u = f["k6"], f["report"], f["units"]
    agree = ("unavailable" if "error" in rep else
             "agree" if rep.get("cancelled") == f["cancelled"] == k6["cancels_ok"] else "DISAGREE")
    lines = [f"order life: placed {f['placed']} (k6 {k6['orders_placed']}, /report {rep.get('orders', '-')}) · "
             f"cancelled {f['cancelled']} (k6 ok {k6['cancels_ok']}, not_cancellable {k6['cancels_not_cancellable']}, "
             f"errors {k6['cancel_errors']}; /report {rep.get('cancelled', '-')}: {agree})",
             f"  units: returned {u['returned']} · resold {u['resold']} · sold beyond stock "
             f"{'-' if u.get('beyond_stock') is None else u['beyond_stock']} · sold at end {rep.get('units_sold', '-')} "
             f"(placed {u['placed']} − released {u['released']} = {u['sold_at_end_expected']})"]
    if f["webhooks"]:
        la = f["latency"]["all"]
        types = " ".join(f"{k}={v}" for k, v in sorted(f["per_type"].items()))
        lines.append(f"  webhooks: {f['deliveries']} delivered ({types}) · duplicates {f['duplicates']} · "
                     f"bad signatures {f['bad_signatures']} · missing {f['missing']} of {f['expected']} "
                     f"(waited {f['waited_s']} s)")
        lines.append(f"  webhook latency commit→receiver: p50 {_ms(la['p50_ms'])} · p99 {_ms(la['p99_ms'])} · "
                     f"max {_ms(la['max_ms'])} over {la['n']} order events" + "".join(
                         f"; {k} p50 {_ms(v['p50_ms'])} p99 {_ms(v['p99_ms'])}"
                         for k, v in f["latency"].items() if k != "all"))
    else:
        lines.append("  webhooks: no receiver (WEBHOOKS=0)")
    return lines


def html_section(folder):
    """The order-life section of report.html ('' when the run did not collect it)."""
    f = load_json(os.path.join(folder, "order-life.json"))
    if not f:
        return ""
    out = "<h2>After the purchase (lib/order_life.py)</h2><pre>" + html.escape("\n".join(summary_lines(folder))) + "</pre>"
    if f.get("per_second"):
        pts = [(t, n) for t, n in f["per_second"]]
        out += '<div class="chart">' + svg_chart("Webhook deliveries per second (from the first)",
                                                 [("deliveries/s", pts, False)]) + "</div>"
    return out


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--api", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--sale", required=True)
    ap.add_argument("--wait", type=float, default=30)
    a = ap.parse_args()
    f = figures(a.folder, a.api, a.token, a.sale, a.wait)
    with open(os.path.join(a.folder, "order-life.json"), "w") as out:
        json.dump(f, out, indent=1)
    if f["missing"] or f["bad_signatures"]:
        print(f"order_life: {f['missing']} webhooks missing, {f['bad_signatures']} bad signatures "
              f"(order-life.json)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
