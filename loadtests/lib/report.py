#!/usr/bin/env python3
"""Turns one rehearsal's folder into report.html (self-contained: inline SVG charts, no
CDN) and summary.txt (the short text `loadtests/run` prints).

Reads from the folder: meta.json (what ran), sale.json (the sale as created),
stats.jsonl (GET /stats once a second), k6-summary.json (k6 handleSummary; storms keep
one per sub-folder), verify.json / verify.txt (`flashsale verify`), and for the chaos
scenarios chaos.json / chaos.txt (lib/chaos.py: the faults, marked on the charts), and
for the bot-farm rehearsal bots-plan.json (lib/bots.py: each group's share), for the
slowdown controller.jsonl (lib/controller_metrics.py: the controller's signals), and for
the 100,000-shopper launch crowd-plan.json (lib/crowd.py: the line's figures).

    python3 loadtests/lib/report.py loadtests/reports/<run>
"""
import html
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # importing lib/*.py leaves no __pycache__ in the tree
import bots  # noqa: E402
import crowd  # noqa: E402
import order_life  # noqa: E402
import variants  # noqa: E402
from charts import (  # noqa: E402
    console_markers, fmt_num, get, load_json, load_stats, ms, parse_time, svg_chart,
)
from slowdown import slowdown_lines, slowdown_section  # noqa: E402

STEPS = ["session", "challenge", "join", "poll", "reserve", "checkout", "confirmation", "cancel",
         "admin_create", "admin_edit", "admin_read", "admin_watch", "ops"]
def step_rows(summary):
    metrics = (summary or {}).get("metrics", {})
    rows = []
    for step in STEPS:
        d = metrics.get(f"http_req_duration{{step:{step}}}")
        if not d:
            continue
        v = d.get("values", {})
        reqs = get(metrics, f"http_reqs{{step:{step}}}", "values", "count", default=0)
        rate = get(metrics, f"http_reqs{{step:{step}}}", "values", "rate", default=0)
        shed = get(metrics, f"shed_responses{{step:{step}}}", "values", "count", default=0)
        if not reqs:
            continue
        rows.append({"step": step, "reqs": reqs, "rate": rate, "p50": v.get("med"), "p95": v.get("p(95)"),
                     "p99": v.get("p(99)"), "max": v.get("max"), "shed": shed})
    return rows


def counters(summary):
    metrics = (summary or {}).get("metrics", {})
    return {k: m["values"].get("count", 0) for k, m in metrics.items()
            if m.get("type") == "counter" and "{" not in k}


def rates(summary):
    metrics = (summary or {}).get("metrics", {})
    return {k: m["values"].get("rate", 0) for k, m in metrics.items()
            if m.get("type") == "rate" and "{" not in k}


def crossed_thresholds(summary):
    out = []
    for name, m in (summary or {}).get("metrics", {}).items():
        for expr, res in (m.get("thresholds") or {}).items():
            if not res.get("ok", True):
                out.append(f"{name} {expr}")
    return out


def summaries(folder):
    """[(label, k6 summary)]: one for launches, one per storm."""
    found = []
    top = load_json(os.path.join(folder, "k6-summary.json"))
    if top:
        found.append(("k6", top))
    for sub in sorted(os.listdir(folder)):
        path = os.path.join(folder, sub, "k6-summary.json")
        if os.path.isfile(path):
            found.append((sub, load_json(path)))
    return found


def verifies(folder):
    found = []
    for name in sorted(os.listdir(folder)):
        if name.startswith("verify") and name.endswith(".json"):
            report = load_json(os.path.join(folder, name))
            if report:
                txt = os.path.join(folder, name[:-5] + ".txt")
                text = open(txt).read() if os.path.isfile(txt) else ""
                found.append((report, text))
    return found


def text_summary(folder, meta, sums, checks, variant_table=()):
    lines = []
    lines.append(f"rehearsal {meta.get('scenario')}: {meta.get('shoppers', '-')} shoppers, "
                 f"{meta.get('units', '-')} units, {meta.get('elapsed_s', '-')} s "
                 f"(k6 exit {meta.get('k6_exit')})")
    for report, _ in checks:
        verdict = "PASS" if all(c["passed"] for c in report["checks"]) else "FAIL"
        lines.append(f"sale {report['sale_id']}: sold {report['units_sold']} of {report['total']} · "
                     f"oversold {report['oversold']} · lost {report['lost']} · orders {report['orders']} · "
                     f"checker {verdict}")
        for c in report["checks"]:
            if not c["passed"]:
                lines.append(f"  FAIL {c['name']}: {c['detail']} ({c['offender_count']} offenders)")
    lines.extend(variants.text(variant_table))
    lines.extend(order_life.summary_lines(folder))
    if meta.get("k6_orders") is not None and checks:
        pg = order_life.placed(folder, checks[0][0]["orders"])
        k6o = meta["k6_orders"]
        note = "" if pg == k6o else ("  <-- orders confirmed to shoppers but missing in Postgres"
                                     if pg < k6o else "  (orders committed whose 201 the shopper never saw)")
        lines.append(f"orders: shoppers got 201 for {k6o}, Postgres has {pg}{note}")
    for label, s in sums:
        c = counters(s)
        r = rates(s)
        lines.append(f"[{label}]")
        keys = ["shoppers_arrived", "shoppers_admitted", "holds_placed", "orders_placed",
                "confirmations_sent", "confirmations_late", "shoppers_sold_out", "holds_abandoned",
                "payments_declined", "cancels_ok", "cancels_not_cancellable", "cancel_errors", "shoppers_gave_up", "shoppers_shed_out", "no_answer",
                "shoppers_expired", "shoppers_closed"]
        present = [f"{k.replace('shoppers_', '')}={c[k]}" for k in keys if k in c]
        if present:
            lines.append("  " + " ".join(present))
        lines.append(f"  {'step':<13}{'reqs':>8}{'req/s':>8}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}{'shed':>7}")
        shed_total = 0
        for row in step_rows(s):
            shed_total += row["shed"]
            lines.append(f"  {row['step']:<13}{row['reqs']:>8}{row['rate']:>8.0f}{ms(row['p50']):>10}{ms(row['p95']):>10}"
                         f"{ms(row['p99']):>10}{ms(row['max']):>10}{row['shed']:>7}")
        errs = {k: v for k, v in r.items() if k in ("admitted_errors", "unexpected_responses", "merchant_errors")}
        lines.append(f"  shed requests (429/503): {int(c.get('shed_responses', shed_total))} · "
                     + " · ".join(f"{k} {v * 100:.3f}%" for k, v in errs.items()))
        crossed = crossed_thresholds(s)
        lines.append("  thresholds: " + ("CROSSED " + "; ".join(crossed) if crossed else "all passed"))
    if "stats_answered_after_load_s" in meta:
        after = meta["stats_answered_after_load_s"]
        lines.append("after the load: " + ("/stats answered within 0 s" if after == 0 else
                     f"/stats answered again {after} s after k6 ended" if after is not None else
                     "/stats still shed 60 s after k6 ended"))
    errors = load_json(os.path.join(folder, "server-errors.json"), {}) or {}
    if errors:
        lines.append(f"server: 5xx answers {json.dumps(errors.get('responses_5xx', {}))} · "
                     f"internal errors {json.dumps(errors.get('internal_errors', {}))} · "
                     f"accept errors {errors.get('accept_errors', 0)} · panics {errors.get('panics', 0)}")
    resources = load_stats(os.path.join(folder, "resources.jsonl"))
    if resources:
        busy = sorted(r["machine_busy_pct"] for r in resources)
        peak = {}
        for r in resources:
            for g, v in r["cpu_pct"].items():
                peak[g] = peak.get(g, 0) + v / len(resources)
        lines.append(f"machine: CPU busy median {busy[len(busy) // 2]:.0f}% (p90 {busy[int(len(busy) * 0.9)]:.0f}%); "
                     "mean % of one core: " + ", ".join(f"{g} {v:.0f}" for g, v in sorted(peak.items(), key=lambda kv: -kv[1])))
    lines.extend(bots.summary_lines(folder))
    lines += slowdown_lines(folder, load_stats(os.path.join(folder, "stats.jsonl")),
                            load_json(os.path.join(folder, "sale.json"), {}))
    lines.extend(crowd.summary_lines(folder))
    lines.append(f"report: {os.path.join(folder, 'report.html')}")
    return "\n".join(lines) + "\n"


def chaos_markers(folder):
    """(epoch, label) of the faults lib/chaos.py did."""
    found = load_json(os.path.join(folder, "chaos.json"), {}) or {}
    return [(f["started_at"], f["fault"]) for f in found.get("faults", []) if f.get("started_at")]


def resources_chart(rows, t0, t_end=None):
    if t_end is not None:
        rows = [r for r in rows if t0 <= r["t"] <= t0 + t_end]
    if not rows:
        return ""
    groups = ["flashsale", "k6", "redis", "postgres", "other"]
    series = [(f"{g} CPU %", [(r["t"] - t0, r["cpu_pct"].get(g, 0)) for r in rows], False) for g in groups]
    cores = rows[0].get("cores", 1)
    chart = svg_chart(f"CPU by process (% of one core; the machine has {cores})", series,
                      hlines=[(100 * cores, f"{cores} cores")])
    mem = svg_chart("Memory (RSS, MiB)",
                    [(g, [(r["t"] - t0, r["rss_mib"].get(g, 0)) for r in rows], False) for g in groups[:4]])
    return f'<div class="chart">{chart}</div><div class="chart">{mem}</div>'


def stats_charts(stats, sale, extra_markers=(), resources=()):
    failed = [s for s in stats if "error" in s]
    stats = [s for s in stats if "error" not in s and "stock" in s]
    note = ""
    if failed:
        codes = {}
        for s in failed:
            codes[s["error"]] = codes.get(s["error"], 0) + 1
        note = (f"<p>{len(failed)} of {len(failed) + len(stats)} samples got no stats "
                f"(HTTP status: {html.escape(json.dumps(codes))}; 000 = no answer in 2 s): gaps in the lines.</p>")
    if not stats:
        return note + "<p>No /stats samples.</p>" + resources_chart(resources, resources[0]["t"] if resources else 0)
    t0 = parse_time(stats[0]["at"])
    xs = [parse_time(s["at"]) - t0 for s in stats]
    col = lambda *path: [(x, get(s, *path)) for x, s in zip(xs, stats)]
    # Admitted per second from the serving position (what actually moved).
    admitted = []
    for i in range(1, len(stats)):
        dt = xs[i] - xs[i - 1]
        d = (get(stats[i], "queue", "serving_position", default=0) or 0) - \
            (get(stats[i - 1], "queue", "serving_position", default=0) or 0)
        admitted.append((xs[i], d / dt if dt > 0 else None))
    markers = []
    for x, s, prev in zip(xs[1:], stats[1:], stats[:-1]):
        if s.get("status") != prev.get("status"):
            markers.append((x, s.get("status", "")))
    markers += [(when - t0, label) for when, label in extra_markers]
    target = get(sale, "admission", "checkout_p95_target_ms")
    charts = [
        svg_chart("Admission: controller rate and shoppers admitted per second",
                  [("rate/s (controller)", col("admission", "rate_per_second"), False),
                   ("admitted/s (serving position)", admitted, False)], markers=markers),
        svg_chart("Line length and active shoppers",
                  [("waiting", col("queue", "waiting"), False),
                   ("pre-queue", col("queue", "prequeue"), False),
                   ("active shoppers (admitted, not done)", col("admission", "active_shoppers"), True)],
                  markers=markers),
        svg_chart("Stock",
                  [("available", col("stock", "available"), False),
                   ("held", col("stock", "held"), False),
                   ("sold", col("stock", "sold"), False),
                   ("total", col("stock", "total"), True)], markers=markers),
        svg_chart("Checkout p95 vs target (ms)",
                  [("checkout p95", col("signals", "checkout_p95_ms"), False),
                   ("reserve p95", col("signals", "reserve_p95_ms"), False),
                   ("pool wait", col("signals", "pool_wait_ms"), True)],
                  hlines=[(target, f"target {target} ms")] if target else [], markers=markers),
        svg_chart("Outbox backlog",
                  [("unpublished rows", col("signals", "outbox_backlog"), False),
                   ("oldest age (ms)", col("signals", "outbox_oldest_age_ms"), True)], markers=markers),
        svg_chart("Orders", [("orders", col("orders", "count"), False)], markers=markers),
    ]
    reasons = []
    last = None
    for x, s in zip(xs, stats):
        reason = get(s, "admission", "last_change_reason")
        if reason and reason != last:
            reasons.append(f"<tr><td>{x:.0f}s</td><td>{html.escape(str(reason))}</td>"
                           f"<td>{fmt_num(get(s, 'admission', 'rate_per_second'))}/s</td></tr>")
            last = reason
    table = ""
    if reasons:
        table = ("<details><summary>Controller decisions (reason changes)</summary><table>"
                 "<tr><th>t</th><th>reason</th><th>rate</th></tr>" + "".join(reasons[:300]) + "</table></details>")
    return note + "".join(f'<div class="chart">{c}</div>' for c in charts) + resources_chart(resources, t0, xs[-1]) + table


def html_page(folder, meta, sale, stats, sums, checks, summary_text, variant_table=()):
    parts = [f"""<!doctype html><html><head><meta charset="utf-8">
<title>flashsale rehearsal {html.escape(str(meta.get('scenario')))} {html.escape(os.path.basename(folder))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px auto; max-width: 980px; color: #111; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f4f6; }} td:first-child, th:first-child {{ text-align: left; }}
pre {{ background: #f8fafc; border: 1px solid #e5e7eb; padding: 10px; font-size: 12px; overflow-x: auto; }}
.pass {{ color: #15803d; font-weight: 600; }} .fail {{ color: #b91c1c; font-weight: 600; }}
.chart {{ margin: 10px 0 18px; }}
</style></head><body>
<h1>Launch rehearsal: {html.escape(str(meta.get('scenario')))} — {html.escape(os.path.basename(folder))}</h1>
<p>{meta.get('shoppers', '-')} shoppers · {meta.get('units', '-')} units · hold TTL {get(sale, 'hold_ttl_seconds', default='-')} s ·
per-shopper limit {get(sale, 'per_user_limit', default='-')} · sale <code>{html.escape(str(get(sale, 'id', default='-')))}</code> ·
{meta.get('elapsed_s', '-')} s wall time · machine: {html.escape(str(meta.get('machine', '')))}</p>"""]
    for report, _ in checks:
        ok = all(c["passed"] for c in report["checks"])
        parts.append(f"<p>Sale <code>{report['sale_id']}</code>: sold <b>{report['units_sold']}</b> of {report['total']} · "
                     f"oversold <b>{report['oversold']}</b> · lost <b>{report['lost']}</b> · "
                     f"checker <span class=\"{'pass' if ok else 'fail'}\">{'PASS' if ok else 'FAIL'}</span></p>")
    parts.append("<h2>Over time (GET /stats, every second)</h2>")
    resources = load_stats(os.path.join(folder, "resources.jsonl"))
    parts.append(stats_charts(stats, sale, console_markers(folder) + chaos_markers(folder), resources))
    parts.append(variants.html_table(variant_table))
    left = variants.available_series(sale, stats, parse_time)
    if left:
        parts.append('<div class="chart">' + svg_chart("Free units per variant", [(n, pts, False) for n, pts in left]) + "</div>")
    parts.append(order_life.html_section(folder))
    parts.append(slowdown_section(folder, stats, sale))
    chaos_path = os.path.join(folder, "chaos.txt")
    if os.path.isfile(chaos_path):
        parts.append("<h2>Faults (lib/chaos.py)</h2><pre>" + html.escape(open(chaos_path).read()) + "</pre>")
    parts.append(bots.html_section(folder))
    parts.append(crowd.html_section(folder))
    for label, s in sums:
        parts.append(f"<h2>k6 — {html.escape(label)}: latency per step</h2><table>"
                     "<tr><th>step</th><th>requests</th><th>req/s</th><th>p50</th><th>p95</th><th>p99</th><th>max</th><th>shed (429/503)</th></tr>")
        for row in step_rows(s):
            parts.append(f"<tr><td>{row['step']}</td><td>{row['reqs']}</td><td>{row['rate']:.0f}</td><td>{ms(row['p50'])}</td><td>{ms(row['p95'])}</td>"
                         f"<td>{ms(row['p99'])}</td><td>{ms(row['max'])}</td><td>{row['shed']}</td></tr>")
        parts.append("</table>")
        c = counters(s)
        r = rates(s)
        parts.append("<table><tr><th>counter</th><th>value</th></tr>" +
                     "".join(f"<tr><td>{html.escape(k)}</td><td>{v:g}</td></tr>" for k, v in sorted(c.items())) +
                     "".join(f"<tr><td>{html.escape(k)} (rate)</td><td>{v * 100:.3f}%</td></tr>" for k, v in sorted(r.items())) +
                     "</table>")
        crossed = crossed_thresholds(s)
        parts.append("<p>Thresholds: " + (f"<span class='fail'>crossed: {html.escape('; '.join(crossed))}</span>"
                                          if crossed else "<span class='pass'>all passed</span>") + "</p>")
    for report, text in checks:
        parts.append(f"<h2>Invariant checker — sale {report['sale_id']}</h2><pre>{html.escape(text)}</pre>")
    parts.append(f"<h2>Summary as printed</h2><pre>{html.escape(summary_text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def main():
    folder = sys.argv[1]
    meta = load_json(os.path.join(folder, "meta.json"), {})
    sale = load_json(os.path.join(folder, "sale.json"), {})
    stats = load_stats(os.path.join(folder, "stats.jsonl"))
    sums = summaries(folder)
    checks = verifies(folder)
    checked = (checks[0][0].get("variants") if checks else None) or ()
    variant_table = variants.rows(sale, stats, parse_time, checked)
    summary_text = text_summary(folder, meta, sums, checks, variant_table)
    with open(os.path.join(folder, "summary.txt"), "w") as f:
        f.write(summary_text)
    with open(os.path.join(folder, "report.html"), "w") as f:
        f.write(html_page(folder, meta, sale, stats, sums, checks, summary_text, variant_table))
    sys.stdout.write(summary_text)


if __name__ == "__main__":
    main()
