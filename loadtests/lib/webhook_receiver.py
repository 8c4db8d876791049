#!/usr/bin/env python3
"""A merchant's webhook endpoint for a rehearsal (API.md v1.1 "Webhooks").

Listens on 127.0.0.1:PORT (a thread per request), registers itself through
POST /v1/admin/webhooks with the merchant's token for all six event types, then
verifies every delivery's signature (Standard Webhooks: with the `standardwebhooks`
package when it is importable, else HMAC-SHA256 by hand as API.md spells it), answers
204 (401 to a bad signature, so the server retries it and the run sees it), and appends
one JSON line per delivery to OUT:

    {"webhook_id", "type", "order_id", "sale_id", "received_at" (epoch s, this
     machine's clock), "event_at" (the body's `timestamp`), "order_at" (the order's
     `created_at` or `closed_at` from the body), "signature_ok"}

Duplicates (the same webhook-id again, which at-least-once allows) are written as they
come; lib/order_life.py counts them. Once registered it writes READY (the endpoint's
id and url, never the secret). SIGTERM or SIGINT stops it.

    webhook_receiver.py --api http://127.0.0.1:18280 --token <merchant jwt> \\
        --port 18310 --out DIR/webhooks.jsonl --ready DIR/webhook-endpoint.json
"""
import argparse
import base64
import hashlib
import hmac
import json
import signal
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVENTS = ["order.placed", "order.cancelled", "order.refunded", "sale.started", "sale.sold_out", "sale.ended"]

try:
    from standardwebhooks.webhooks import Webhook  # the independent implementation
except ImportError:  # scripts/test installs it; a bare machine verifies by hand
    Webhook = None


def verify_by_hand(secret, headers, body):
    """API.md: `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed with the
    base64 part of the `whsec_` secret; any of the space-separated signatures may match."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers.get('webhook-id', '')}.{headers.get('webhook-timestamp', '')}.".encode() + body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(sig.startswith("v1,") and hmac.compare_digest(sig[3:], want)
               for sig in headers.get("webhook-signature", "").split())


class Receiver:
    def __init__(self, out_path):
        self.out = open(out_path, "a", buffering=1)
        self.lock = threading.Lock()
        self.secret = None
        self.ready = threading.Event()

    def verify(self, headers, body):
        if Webhook is not None:
            try:
                Webhook(self.secret).verify(body, headers)
                return True
            except Exception:  # WebhookVerificationError, or a header it cannot parse
                return False
        return verify_by_hand(self.secret, headers, body)

    def record(self, headers, body, received_at):
        ok = self.verify(headers, body)
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        data = event.get("data") or {}
        line = {"webhook_id": headers.get("webhook-id"), "type": event.get("type"),
                "order_id": data.get("order_id"), "sale_id": data.get("sale_id"),
                "received_at": round(received_at, 6), "event_at": event.get("timestamp"),
                "order_at": data.get("closed_at") or data.get("created_at"), "signature_ok": ok}
        with self.lock:
            self.out.write(json.dumps(line) + "\n")
        return ok


def handler_for(receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            received_at = time.time()
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            receiver.ready.wait(10)  # a delivery can only follow the registration's answer
            headers = {k.lower(): v for k, v in self.headers.items()}
            ok = receiver.record(headers, body, received_at)
            self.send_response(204 if ok else 401)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):  # one line per delivery is in OUT already
            pass

    return Handler


def register(api, token, url):
    req = urllib.request.Request(
        f"{api}/v1/admin/webhooks", method="POST",
        data=json.dumps({"url": url, "events": EVENTS}).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.load(res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready", required=True)
    args = ap.parse_args()
    receiver = Receiver(args.out)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(receiver))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{args.port}/hook"
    try:
        endpoint = register(args.api, args.token, url)
    except Exception as e:  # noqa: BLE001 - said and exited: the runner reports it
        print(f"webhook_receiver: registering {url} failed: {e}", file=sys.stderr)
        sys.exit(2)
    receiver.secret = endpoint["secret"]
    receiver.ready.set()
    with open(args.ready, "w") as f:
        json.dump({"id": endpoint.get("id"), "url": url, "events": endpoint.get("events"),
                   "verified_with": "standardwebhooks" if Webhook else "hmac by hand"}, f)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    receiver.out.close()


if __name__ == "__main__":
    main()
