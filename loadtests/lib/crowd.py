#!/usr/bin/env python3
"""The figures of the 100,000-shopper launch (`loadtests/run launch-100k`,
k6/launch-100k.js, issue #19 point 3): how fast the line served joins and polls (and
how many it shed), how the admission rate moved and why, what the server and Redis
used, units sold and oversold, how long from the start to sold out, and what limited
the run.

Reads from the rehearsal folder: crowd-plan.json (the crowd as k6 ran it),
crowd-mint.json (how the sessions were minted), k6-summary.json, k6.log (each VU's
`crowd-rate` lines: answers served and shed per 5-second window), stats.jsonl (the
controller's rate and reason, the stock), resources.jsonl (lib/resources.py) and
verify.json (the checker). report.py puts `summary_lines` in the printed summary and
`html_section` in report.html; run as a script it writes crowd.json and exits 0, or 2
without a k6 summary.

    python3 loadtests/lib/crowd.py loadtests/reports/<run>
"""
import html
import json
import os
import sys

from charts import load_json, load_stats, parse_time

WINDOW_S = 5  # k6/lib/crowd.js BUCKET_MS








def _metric(metrics, name, stat, default=None):
    return (metrics.get(name) or {}).get("values", {}).get(stat, default)


def rate_windows(folder):
    """{window start (epoch s): {"join_served": n, …}} summed over every VU's lines."""
    windows = {}
    try:
        with open(os.path.join(folder, "k6.log")) as f:
            for line in f:
                at = line.find("crowd-rate ")
                if at < 0:
                    continue
                parts = line[at:].split('"')[0].split()
                try:
                    start = int(parts[1]) / 1000
                except (IndexError, ValueError):
                    continue
                w = windows.setdefault(start, {})
                for kv in parts[2:]:
                    k, _, v = kv.partition("=")
                    if v.isdigit():
                        w[k] = w.get(k, 0) + int(v)
    except OSError:
        pass
    return windows


def _rates(windows, step):
    """Mean and peak per-second served and shed over the windows that served `step`."""
    served = [(t, w.get(f"{step}_served", 0), w.get(f"{step}_shed", 0)) for t, w in sorted(windows.items())]
    active = [row for row in served if row[1] or row[2]]
    if not active:
        return None
    mean = sum(s for _, s, _ in active) / (len(active) * WINDOW_S)
    peak_t, peak, _ = max(active, key=lambda row: row[1])
    shed_peak = max(sh for _, _, sh in active) / WINDOW_S
    return {"windows": len(active), "served_per_s_mean": round(mean), "served_per_s_peak": round(peak / WINDOW_S),
            "peak_window_at": peak_t, "shed_per_s_peak": round(shed_peak)}


def admission_changes(stats, start):
    """The controller's rate each time its reason changed: [(s after start, rate, reason)]."""
    out = []
    last = object()
    for s in stats:
        a = s.get("admission")
        if not a or "at" not in s:
            continue
        reason = a.get("last_change_reason")
        if reason is not None and reason != last:
            out.append((round(parse_time(s["at"]) - start, 1), a.get("rate_per_second"), reason))
            last = reason
    return out


def sold_out_at(stats, total):
    """(first sample with every unit held or sold, first with every unit sold), epoch s."""
    held_all = sold_all = None
    for s in stats:
        stock = s.get("stock")
        if not stock or "at" not in s:
            continue
        t = parse_time(s["at"])
        if held_all is None and stock.get("available", 1) == 0:
            held_all = t
        if sold_all is None and total and stock.get("sold", 0) >= total:
            sold_all = t
    return held_all, sold_all


def resource_figures(rows, t_from, t_to):
    rows = [r for r in rows if t_from - 1 <= r["t"] <= t_to + 1] or rows
    out = {}
    for g in ("flashsale", "redis", "k6", "postgres"):
        cpu = [r["cpu_pct"].get(g, 0) for r in rows]
        rss = [r["rss_mib"].get(g, 0) for r in rows]
        if cpu:
            out[g] = {"cpu_mean": round(sum(cpu) / len(cpu)), "cpu_peak": round(max(cpu)), "rss_peak_mib": max(rss)}
    busy = sorted(r["machine_busy_pct"] for r in rows)
    if busy:
        out["machine_busy_median"] = busy[len(busy) // 2]
    return out


def figures(folder):
    summary = load_json(os.path.join(folder, "k6-summary.json"))
    plan = load_json(os.path.join(folder, "crowd-plan.json"))
    if not summary or not plan:
        return None
    m = summary.get("metrics", {})
    mint = load_json(os.path.join(folder, "crowd-mint.json")) or {}
    verify = load_json(os.path.join(folder, "verify.json")) or {}
    stats = [s for s in load_stats(os.path.join(folder, "stats.jsonl")) if "error" not in s]
    first = (plan.get("first_arrival_ms") or 0) / 1000
    start = parse_time(plan["starts_at"]) if plan.get("starts_at") else first
    windows = rate_windows(folder)
    total = verify.get("total") or ((stats[-1].get("stock") or {}).get("total") if stats else None)
    held_all, sold_all = sold_out_at(stats, total)
    end = max(windows) + WINDOW_S if windows else (first + plan.get("duration_s", 0))
    lat = {k: {"p50": _metric(m, f"line_lateness{{kind:{k}}}", "med"), "p99": _metric(m, f"line_lateness{{kind:{k}}}", "p(99)"),
               "max": _metric(m, f"line_lateness{{kind:{k}}}", "max")} for k in ("join", "poll")}
    steps = {}
    for step in ("challenge", "join", "poll", "reserve", "checkout", "confirmation"):
        d = m.get(f"http_req_duration{{step:{step}}}")
        if d:
            steps[step] = {"reqs": _metric(m, f"http_reqs{{step:{step}}}", "count", 0), "p50": d["values"].get("med"),
                           "p99": d["values"].get("p(99)"), "shed": _metric(m, f"shed_responses{{step:{step}}}", "count", 0)}
    changes = admission_changes(stats, start)
    rates = [s["admission"]["rate_per_second"] for s in stats if s.get("admission")]
    count = lambda name: int(_metric(m, name, "count", 0) or 0)
    return {
        "plan": plan,
        "mint": mint,
        "arrived": count("shoppers_arrived"),
        "tickets": count("tickets_joined"),
        "admitted": count("shoppers_admitted"),
        "orders": count("orders_placed"),
        "told_sold_out": count("shoppers_sold_out"),
        "left": count("shoppers_left"),
        "waiting_at_end": count("shoppers_waiting_at_end"),
        "joins_not_sent": count("joins_not_sent"),
        "joins_retried": count("joins_retried"),
        "no_answer": count("no_answer"),
        "slices": count("line_slices"),
        "dropped_ticks": count("dropped_iterations"),
        "served": {"join": count("line_served{step:join}"), "poll": count("line_served{step:poll}")},
        "rates": {"join": _rates(windows, "join"), "poll": _rates(windows, "poll")},
        "lateness_ms": lat,
        "steps": steps,
        "admission": {"changes": changes, "peak_rate": max(rates) if rates else None},
        "resources": resource_figures(load_stats(os.path.join(folder, "resources.jsonl")), first, end),
        "units_sold": verify.get("units_sold"),
        "total": total,
        "oversold": verify.get("oversold"),
        "checker_passed": all(c["passed"] for c in verify.get("checks", [])) if verify else None,
        "all_held_after_start_s": round(held_all - start, 1) if held_all else None,
        "sold_out_after_start_s": round(sold_all - start, 1) if sold_all else None,
        "sold_out_after_first_arrival_s": round(sold_all - first, 1) if sold_all and first else None,
    }


def _ms(v):
    if v is None:
        return "-"
    return f"{v / 1000:.2f}s" if v >= 1000 else f"{v:.0f}ms"


def limit_verdict(f):
    """What limited the run, from the machine's load, each side's CPU and the lateness."""
    r = f["resources"]
    busy = r.get("machine_busy_median")
    server = r.get("flashsale", {}).get("cpu_mean", 0) + r.get("redis", {}).get("cpu_mean", 0)
    k6 = r.get("k6", {}).get("cpu_mean", 0)
    late = max((f["lateness_ms"][k]["p99"] or 0) for k in ("join", "poll"))
    words = []
    if busy is not None and busy >= 85:
        words.append(f"the cores (machine {busy:.0f}% busy, median)")
    words.append(f"k6 took {k6}% of a core against {server}% for flashsale + Redis")
    if late > 1000:
        words.append(f"the schedule ran late (p99 {_ms(late)}): the crowd arrived faster than it was served")
    else:
        words.append(f"the schedule kept up (p99 lateness {_ms(late)})")
    return "; ".join(words)


def summary_lines(folder):
    """The crowd's figures for the printed summary ([] when the run is not launch-100k)."""
    if not os.path.isfile(os.path.join(folder, "crowd-plan.json")):
        return []
    f = figures(folder)
    if not f:
        return ["[crowd] no k6 summary"]
    p, mint = f["plan"], f["mint"]
    lines = [f"[crowd] {p['shoppers']} shoppers over {p['line_vus']} VUs ({p['line_ticks']} ticks/s); sessions minted "
             f"in {mint.get('seconds', '-')} s ({mint.get('how', '-')}); arrivals {p['prequeue_share']:.0%} over the "
             f"{p['prequeue_s']} s pre-queue, {p['spike_share']:.0%} in the {p['spike_s']} s after the start, the rest "
             f"over {p['tail_s']} s"]
    lines.append(f"  arrived {f['arrived']} · tickets {f['tickets']} · admitted {f['admitted']} · orders {f['orders']} · "
                 f"told sold out {f['told_sold_out']} · still in line (or trying to join) at the end {f['waiting_at_end']} · left otherwise "
                 f"{f['left']} · joins never sent {f['joins_not_sent']} · joins sent again {f['joins_retried']} · "
                 f"slices owned {f['slices']}/{p['line_vus']} · no answer (sent again) {f['no_answer']} · ticks dropped "
                 f"while every VU was busy {f['dropped_ticks']}")
    for step in ("join", "poll"):
        r = f["rates"][step]
        lat = f["lateness_ms"][step]
        shed = f["steps"].get(step, {}).get("shed", 0)
        if r:
            lines.append(f"  {step}s served {f['served'][step]}: {r['served_per_s_mean']}/s mean, {r['served_per_s_peak']}/s "
                         f"peak ({WINDOW_S} s window); shed {shed} (peak {r['shed_per_s_peak']}/s); lateness p50 "
                         f"{_ms(lat['p50'])} p99 {_ms(lat['p99'])} max {_ms(lat['max'])}")
    lines.append("  p50/p99: " + " · ".join(f"{k} {_ms(v['p50'])}/{_ms(v['p99'])}" for k, v in f["steps"].items()))
    adm = f["admission"]
    lines.append(f"  admission rate (peak {adm['peak_rate']}/s), each change of the controller's reason:")
    changes = adm["changes"]
    shown = changes if len(changes) <= 12 else changes[:6] + [None] + changes[-5:]
    for c in shown:
        lines.append("    …" if c is None else f"    {c[0]:+7.1f} s  {c[1]:>8}/s  {c[2]}")
    res = f["resources"]
    lines.append("  " + " · ".join(f"{g} CPU {v['cpu_mean']}% mean / {v['cpu_peak']}% peak, RSS {v['rss_peak_mib']} MiB peak"
                                   for g, v in res.items() if isinstance(v, dict) and g != "postgres")
                 + " (% of one core; Redis: every redis-server on the machine)")
    held = f["all_held_after_start_s"]
    sold = f["sold_out_after_start_s"]
    lines.append(f"  units sold {f['units_sold']} of {f['total']} · oversold {f['oversold']} · checker "
                 f"{'PASS' if f['checker_passed'] else 'FAIL'} · every unit held or sold "
                 + (f"{held} s after the start" if held is not None else "never")
                 + " · sold out " + (f"{sold} s after the start ({f['sold_out_after_first_arrival_s']} s after the "
                                     "first arrival)" if sold is not None else "not within the run"))
    lines.append("  limited by: " + limit_verdict(f))
    return lines


def html_section(folder):
    """The crowd's figures for report.html ('' when the run is not launch-100k)."""
    if not os.path.isfile(os.path.join(folder, "crowd-plan.json")):
        return ""
    text = "\n".join(summary_lines(folder))
    return f"<h2>The crowd (k6/launch-100k.js, lib/crowd.py)</h2><pre>{html.escape(text)}</pre>"


def main():
    folder = sys.argv[1]
    f = figures(folder)
    if not f:
        print("crowd: no k6 summary or crowd plan", file=sys.stderr)
        return 2
    with open(os.path.join(folder, "crowd.json"), "w") as out:
        json.dump(f, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
