"""Per-variant figures of a rehearsal's sale (API.md v1.1, "variants and carts").

From the sale as created (sale.json), the /stats series (stats.jsonl, whose
samples list `variants` with their stock) and the checker's report (verify.json, whose
`variants` count each variant's units sold and oversold in Postgres): each variant's
units, units sold, units oversold, when it first had nothing free (every unit held or
sold) and when it sold out (every unit sold), in seconds from the sale's start (the
first sample whose status is `live`; the first sample when none is). A one-variant sale
has no table.
"""

import html


def _variants(sale):
    variants = sale.get("variants") or []
    return variants if len(variants) > 1 else []


def rows(sale, stats, parse_time, checked=()):
    """One row per variant: sku, name, total, sold, oversold, first_empty_s, sold_out_s.

    `checked` is the checker's per-variant list; its figures (Postgres) win over the
    last sample's, and `oversold` is None without it.
    """
    variants = _variants(sale)
    if not variants or not stats:
        return []
    live = [s for s in stats if s.get("status") == "live"]
    t0 = parse_time((live or stats)[0]["at"])
    out = {v["variant_id"]: {"sku": v.get("sku", ""), "name": v.get("name") or v.get("sku", ""),
                             "total": v.get("stock", {}).get("total", 0), "sold": 0, "oversold": None,
                             "first_empty_s": None, "sold_out_s": None} for v in variants}
    for s in stats:
        at = parse_time(s["at"]) - t0
        for v in s.get("variants") or []:
            row = out.get(v.get("variant_id"))
            stock = v.get("stock") or {}
            if row is None or not stock:
                continue
            row["total"] = stock.get("total", row["total"])
            row["sold"] = stock.get("sold", row["sold"])
            if row["first_empty_s"] is None and stock.get("available", 1) <= 0:
                row["first_empty_s"] = at
            if row["sold_out_s"] is None and row["total"] and stock.get("sold", 0) >= row["total"]:
                row["sold_out_s"] = at
    for v in checked or ():
        row = out.get(v.get("variant_id"))
        if row is not None:
            row["sold"] = v.get("units_sold", row["sold"])
            row["oversold"] = v.get("oversold")
    return list(out.values())


def _secs(v):
    return "-" if v is None else f"{v:.0f} s"


def _count(v):
    return "-" if v is None else str(v)


def text(table):
    """The per-variant lines of the printed summary."""
    if not table:
        return []
    lines = [f"  {'variant':<14}{'units':>7}{'sold':>7}{'oversold':>10}{'nothing free':>14}{'sold out':>10}"]
    for r in table:
        lines.append(f"  {r['name'][:13]:<14}{r['total']:>7}{r['sold']:>7}{_count(r['oversold']):>10}"
                     f"{_secs(r['first_empty_s']):>14}{_secs(r['sold_out_s']):>10}")
    return ["per variant (sold and oversold: the checker; times: /stats, seconds after the sale started):"] + lines


def html_table(table):
    """The per-variant table of report.html."""
    if not table:
        return ""
    cells = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td>{html.escape(r['sku'])}</td><td>{r['total']}</td><td>{r['sold']}</td>"
        f"<td>{_count(r['oversold'])}</td><td>{_secs(r['first_empty_s'])}</td><td>{_secs(r['sold_out_s'])}</td></tr>"
        for r in table)
    return ("<h2>Per variant</h2><p>Sold and oversold from the checker (Postgres); times in seconds after the "
            "sale started, from /stats.</p><table><tr><th>variant</th><th>SKU</th><th>units</th><th>sold</th>"
            "<th>oversold</th><th>nothing free at</th><th>sold out at</th></tr>" + cells + "</table>")


def available_series(sale, stats, parse_time):
    """(name, [(t, available)]) per variant, for a chart of what is left over time."""
    variants = _variants(sale)
    if not variants:
        return []
    names = {v["variant_id"]: v.get("name") or v.get("sku", "") for v in variants}
    series = {vid: [] for vid in names}
    for s in stats:
        t = parse_time(s["at"])
        for v in s.get("variants") or []:
            if v.get("variant_id") in series and v.get("stock"):
                series[v["variant_id"]].append((t, v["stock"].get("available", 0)))
    return [(names[vid], pts) for vid, pts in series.items()]
