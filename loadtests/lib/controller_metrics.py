#!/usr/bin/env python3
"""Samples the admission controller's signals from GET /metrics once a second into a
JSON-lines file, for the slowdown rehearsal's charts (lib/report.py): checkout p95 as
shoppers saw it, our part of it and the provider's, checkouts completed and failed per
second, and the controller's rate, probe ceiling and sustained rate for the sale.

    python3 loadtests/lib/controller_metrics.py <base url> <sale id> <out.jsonl>

Runs until killed. A sample the server did not answer in 2 s is skipped.
"""
import json
import sys
import time
import urllib.request

# gauge name, label filter, field in the sample
GAUGES = [
    ("flashsale_checkout_p95_ms", 'part="total"', "checkout_p95_ms"),
    ("flashsale_checkout_p95_ms", 'part="ours"', "ours_p95_ms"),
    ("flashsale_checkout_p95_ms", 'part="provider"', "provider_p95_ms"),
    ("flashsale_checkouts_per_second", 'outcome="completed"', "completed_per_s"),
    ("flashsale_checkouts_per_second", 'outcome="failed"', "failed_per_s"),
    ("flashsale_checkouts_in_flight", None, "in_flight"),
    ("flashsale_checkout_pool_wait_ms", None, "pool_wait_ms"),
]
SALE_GAUGES = [
    ("flashsale_admission_rate", "rate"),
    ("flashsale_admission_probe_ceiling", "probe_ceiling"),
    ("flashsale_admission_sustained_rate", "sustained_rate"),
]


def parse(text, sale):
    sample = {}
    sale_label = f'sale="{sale}"'
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            v = float(value)
        except ValueError:
            continue
        metric = name.split("{", 1)[0]
        for gauge, label, field in GAUGES:
            if metric == gauge and (label is None or label in name):
                sample[field] = v
        for gauge, field in SALE_GAUGES:
            if metric == gauge and sale_label in name:
                sample[field] = v
    return sample


def main():
    base, sale, out = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(out, "a") as f:
        while True:
            started = time.time()
            try:
                with urllib.request.urlopen(f"{base}/metrics", timeout=2) as answer:
                    sample = parse(answer.read().decode(), sale)
                sample["t"] = started
                f.write(json.dumps(sample) + "\n")
                f.flush()
            except OSError:
                pass
            time.sleep(max(0.0, 1.0 - (time.time() - started)))


if __name__ == "__main__":
    main()
