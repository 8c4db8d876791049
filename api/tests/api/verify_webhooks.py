"""Checks webhook deliveries with the Standard Webhooks reference library (PyPI
`standardwebhooks`), an implementation independent of ours.

Reads JSON on stdin: {"secrets": ["whsec_…", …], "deliveries": [{"headers": {…},
"body": "…"}, …]}. Every delivery must verify under every secret given (during a
rotation the header carries one signature per live secret). Prints the number of
deliveries verified; exits 1 on the first that does not verify, 2 when the library is
missing.
"""
import json
import sys

try:
    from standardwebhooks.webhooks import Webhook
except ImportError:
    print("the standardwebhooks package is missing: python3 -m pip install 'standardwebhooks>=1,<2'", file=sys.stderr)
    sys.exit(2)

given = json.load(sys.stdin)
for secret in given["secrets"]:
    hook = Webhook(secret)
    for delivery in given["deliveries"]:
        try:
            hook.verify(delivery["body"], delivery["headers"])
        except Exception as e:  # noqa: BLE001 - any failure is a test failure
            print(f"delivery {delivery['headers'].get('webhook-id')} does not verify: {e}", file=sys.stderr)
            sys.exit(1)
print(len(given["deliveries"]))
