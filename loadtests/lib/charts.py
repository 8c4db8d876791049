"""What the rehearsal reports draw with: reading the run folder's JSON and JSON-lines
files, times, numbers, and self-contained SVG line charts. Shared by report.py and the
scenario sections (bots.py, variants.py, slowdown.py)."""

import html
import json
import math
import os
from datetime import datetime

COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777"]


def load_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def load_stats(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return rows


def parse_time(text):
    # RFC 3339 with up to nanoseconds; Python wants at most microseconds.
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        frac = "".join(c for c in rest if c.isdigit())
        tz = rest[len(frac):]
        text = f"{head}.{frac[:6]}{tz}"
    return datetime.fromisoformat(text).timestamp()


def get(d, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


# ------------------------------------------------------------------ charts

def nice_step(span, ticks=5):
    if span <= 0:
        return 1
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt_num(v):
    if v is None:
        return "-"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.1f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.0f}k"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.1f}k"
    if v == int(v):
        return str(int(v))
    return f"{v:.1f}"


def svg_chart(title, series, unit="", hlines=(), markers=(), width=920, height=240):
    """series: [(label, [(x, y)], dashed)]; hlines: [(y, label)]; markers: [(x, label)]."""
    left, right, top, bottom = 60, 16, 44, 30
    pw, ph = width - left - right, height - top - bottom
    xs = [x for _, pts, _ in series for x, _ in pts] + [x for x, _ in markers]
    ys = [y for _, pts, _ in series for _, y in pts if y is not None] + [y for y, _ in hlines]
    out = [f'<svg viewBox="0 0 {width} {height}" width="100%" xmlns="http://www.w3.org/2000/svg" '
           f'font-family="system-ui,sans-serif" font-size="11">',
           f'<text x="{left}" y="14" font-size="13" font-weight="600">{html.escape(title)}</text>']
    if not xs or not ys:
        out.append(f'<text x="{left}" y="{top + 20}" fill="#888">no data</text></svg>')
        return "".join(out)
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x1 = x0 + 1
    y1 = max(ys) * 1.08 if max(ys) > 0 else 1
    y0 = min(0, min(ys))
    sx = lambda x: left + (x - x0) / (x1 - x0) * pw
    sy = lambda y: top + ph - (y - y0) / (y1 - y0) * ph
    # grid and axes
    step = nice_step(y1 - y0)
    v = math.ceil(y0 / step) * step
    while v <= y1:
        y = sy(v)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{fmt_num(v)}{unit}</text>')
        v += step
    xstep = nice_step(x1 - x0, 10)
    v = math.ceil(x0 / xstep) * xstep
    while v <= x1:
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#999"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" fill="#555">{fmt_num(v)}s</text>')
        v += xstep
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#9ca3af"/>')
    for x, label in markers:
        px = sx(x)
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{top + ph}" stroke="#6b7280" stroke-dasharray="3 3"/>')
        out.append(f'<text x="{px + 3:.1f}" y="{top + 11}" fill="#6b7280">{html.escape(label)}</text>')
    for y, label in hlines:
        py = sy(y)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py:.1f}" y2="{py:.1f}" stroke="#dc2626" stroke-dasharray="6 4"/>')
        out.append(f'<text x="{left + pw - 4}" y="{py - 4:.1f}" text-anchor="end" fill="#dc2626">{html.escape(label)}</text>')
    lx = left
    for i, (label, pts, dashed) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        path = []
        pen_up = True
        for x, y in pts:
            if y is None:
                pen_up = True
                continue
            path.append(f'{"M" if pen_up else "L"}{sx(x):.1f},{sy(y):.1f}')
            pen_up = False
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        if path:
            out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="1.8"{dash}/>')
        out.append(f'<rect x="{lx}" y="21" width="10" height="10" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="30">{html.escape(label)}</text>')
        lx += 24 + 7 * len(label)
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------ figures


def ms(v):
    if v is None:
        return "-"
    return f"{v / 1000:.2f}s" if v >= 1000 else f"{v:.1f}ms"


def console_markers(folder):
    """(epoch, label) of the slowdown script's console lines in k6.log."""
    found = []
    try:
        with open(os.path.join(folder, "k6.log")) as f:
            for line in f:
                if 'msg="payment simulator' not in line or not line.startswith('time="'):
                    continue
                when = parse_time(line[6:line.index('"', 6)])
                label = "payments slow" if "slowed" in line else "payments normal"
                found.append((when, label))
    except (OSError, ValueError):
        pass
    return found
