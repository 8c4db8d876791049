"""The slowdown rehearsal as the admission controller saw it (issue #16.6): from the
controller's /metrics samples (controller.jsonl, lib/controller_metrics.py), the /stats
series and the slow/normal markers of k6.log — admissions during vs before the slow
payments, our checkout p95 against the provider's, and how soon the rate came back."""

import html
import os

from charts import console_markers, fmt_num, get, load_stats, ms, parse_time, svg_chart

def slow_for(folder, default=30):
    """The slowdown's announced length in seconds, from k6.log's "… for Ns" line."""
    try:
        with open(os.path.join(folder, "k6.log")) as f:
            for line in f:
                if 'msg="payment simulator slowed' in line and " for " in line:
                    return int(line.rsplit(" for ", 1)[1].split("s", 1)[0])
    except (OSError, ValueError):
        pass
    return default


def slowdown_analysis(folder, stats, sale):
    """The payment slowdown as the controller saw it (controller.jsonl from
    lib/controller_metrics.py, stats.jsonl, the slow/normal console markers): None when
    the folder has no controller samples or no slowdown markers."""
    samples = load_stats(os.path.join(folder, "controller.jsonl"))
    marks = console_markers(folder)
    slow = next((t for t, label in marks if label == "payments slow"), None)
    normal = next((t for t, label in marks if label == "payments normal" and slow and t > slow), None)
    if slow is not None and normal is None:
        # The restore was not logged (k6 starved or stopped first): the slowdown lasted
        # as long as it was announced for ("… for 30s").
        normal = slow + slow_for(folder)
    if not samples or slow is None:
        return None
    target = get(sale, "admission", "checkout_p95_target_ms") or 300
    rows = [s for s in stats if "error" not in s and "queue" in s]
    pts = [(parse_time(s["at"]), get(s, "queue", "serving_position", default=0) or 0,
            get(s, "admission", "rate_per_second"), get(s, "admission", "last_change_reason"))
           for s in rows]

    def admitted_per_s(t_from, t_to):
        inside = [p for p in pts if t_from <= p[0] <= t_to]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    def median(values):
        values = sorted(v for v in values if v is not None)
        return values[len(values) // 2] if values else None

    span = min(10.0, normal - slow)
    before = admitted_per_s(slow - span, slow)
    during = admitted_per_s(slow, normal)
    rate_before = median(p[2] for p in pts if slow - span <= p[0] < slow)
    # Each p95 looks 10 s back: the slowdown's checkouts show until 10 s after it.
    affected = [c for c in samples if slow <= c["t"] <= normal + 10]
    ours = [c.get("ours_p95_ms") for c in affected if c.get("ours_p95_ms")]
    total = [c.get("checkout_p95_ms") for c in affected if c.get("checkout_p95_ms")]
    provider = [c.get("provider_p95_ms") for c in affected if c.get("provider_p95_ms")]
    back = None
    if rate_before:
        for t, _, rate, _ in pts:
            if t >= normal and rate is not None and rate >= 0.9 * rate_before:
                back = max(0.0, t - normal)
                break
    reasons = {}
    for t, _, _, reason in pts:
        if slow <= t <= normal and reason:
            reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "slow_at": slow, "normal_at": normal, "target": target, "samples": samples, "pts": pts,
        "admitted_before": before, "admitted_during": during, "rate_before": rate_before,
        "rate_during_min": min((p[2] for p in pts if slow <= p[0] <= normal and p[2] is not None), default=None),
        "ours_p95_max": max(ours, default=None), "ours_p95_median": median(ours),
        "total_p95_max": max(total, default=None), "provider_p95_max": max(provider, default=None),
        "back_after_s": back, "reasons": reasons,
    }


def slowdown_lines(folder, stats, sale):
    """The slowdown's goals, for summary.txt (empty when it was not a slowdown)."""
    a = slowdown_analysis(folder, stats, sale)
    if not a:
        return []
    ratio = (a["admitted_during"] / a["admitted_before"]
             if a["admitted_during"] is not None and a["admitted_before"] else None)
    goal = lambda ok: "ok" if ok else "MISSED"
    lines = [f"slowdown ({a['normal_at'] - a['slow_at']:.0f} s of slow payments), goals:"]
    lines.append(f"  admissions/s during {fmt_num(a['admitted_during'])} vs before {fmt_num(a['admitted_before'])}"
                 + (f" = {ratio:.2f}x (goal >= 0.5x: {goal(ratio >= 0.5)})" if ratio is not None else "")
                 + f"; controller rate before {fmt_num(a['rate_before'])}/s, lowest during {fmt_num(a['rate_during_min'])}/s")
    if a["ours_p95_max"] is not None:
        lines.append(f"  our checkout p95 (provider excluded) max {ms(a['ours_p95_max'])}, median {ms(a['ours_p95_median'])}"
                     f" (goal under {a['target']} ms: {goal(a['ours_p95_max'] < a['target'])}); as shoppers saw it max "
                     f"{ms(a['total_p95_max'])}, the provider's max {ms(a['provider_p95_max'])}")
    else:
        lines.append("  our checkout p95: no checkout completed during the slowdown")
    empty = a["reasons"].get("nobody waiting", 0)
    if empty * 2 >= sum(a["reasons"].values() or [0]) > 0:
        lines.append(f"  caveat: the line was empty in {empty} of {sum(a['reasons'].values())} samples during the "
                     "slowdown: admissions were limited by arrivals (k6), not by the controller")
    lines.append("  rate back (>= 0.9x before) " + (f"{a['back_after_s']:.0f} s after payments recovered (goal <= 10 s: "
                                                   f"{goal(a['back_after_s'] <= 10)})" if a["back_after_s"] is not None
                                                   else "never seen after payments recovered (goal <= 10 s: MISSED)"))
    if a["reasons"]:
        lines.append("  controller reasons during the slowdown (samples): "
                     + "; ".join(f"{k} x{v}" for k, v in sorted(a["reasons"].items(), key=lambda kv: -kv[1])))
    return lines


def slowdown_section(folder, stats, sale):
    """Charts of the controller through the slowdown: rate, throughput, both latencies."""
    a = slowdown_analysis(folder, stats, sale)
    if not a:
        return ""
    samples, pts = a["samples"], a["pts"]
    t0 = min(samples[0]["t"], pts[0][0] if pts else samples[0]["t"])
    col = lambda key: [(c["t"] - t0, c.get(key)) for c in samples]
    admitted = [(pts[i][0] - t0, (pts[i][1] - pts[i - 1][1]) / (pts[i][0] - pts[i - 1][0]))
                for i in range(1, len(pts)) if pts[i][0] > pts[i - 1][0]]
    markers = [(a["slow_at"] - t0, "payments slow"), (a["normal_at"] - t0, "payments normal")]
    charts = [
        svg_chart("Slowdown: admission rate and checkout throughput (per second)",
                  [("controller rate", col("rate"), False),
                   ("admitted/s", admitted, False),
                   ("probe ceiling", col("probe_ceiling"), True),
                   ("checkouts completed/s", col("completed_per_s"), False),
                   ("checkouts failed or cut off/s", col("failed_per_s"), False)], markers=markers),
        svg_chart("Slowdown: checkout p95 — ours (what admission can change) vs the provider's (ms)",
                  [("ours", col("ours_p95_ms"), False),
                   ("provider", col("provider_p95_ms"), False),
                   ("as shoppers saw it", col("checkout_p95_ms"), True)],
                  hlines=[(a["target"], f"target {a['target']} ms")], markers=markers),
    ]
    return ("<h2>The controller through the payment slowdown (GET /metrics, every second)</h2>"
            + "".join(f'<div class="chart">{c}</div>' for c in charts)
            + "<pre>" + html.escape("\n".join(slowdown_lines(folder, stats, sale))) + "</pre>")
