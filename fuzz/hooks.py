"""Schemathesis hooks for scripts/fuzz: a check that every error is problem+json."""

import schemathesis


@schemathesis.check
def error_is_problem_json(ctx, response, case):
    """API.md: every 4xx/5xx is application/problem+json with a stable `code`.

    Connection-level refusals made by hyper before the app sees a request (a 431 for an
    oversized head, a 400 for an unparsable request line) carry no body; the fuzzer
    sends well-formed HTTP, so it never meets those.
    """
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if not content_type.startswith("application/problem+json"):
        raise AssertionError(
            f"{response.status_code} answered with content type {content_type!r}, not problem+json"
        )
    body = response.json()
    for field in ("type", "title", "status", "detail", "code"):
        if field not in body:
            raise AssertionError(f"problem document without `{field}`: {body}")
    if body["status"] != response.status_code:
        raise AssertionError(f"problem status {body['status']} != HTTP {response.status_code}")
