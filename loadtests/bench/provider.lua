-- wrk script: the payment provider's own cost — POST /v1/payment_intents (authorize:
-- capture_method=manual, confirm=true, tok_ok) straight at the simulator, each with an
-- Idempotency-Key of its own, as checkout sends it. Env: SECRET_KEY.
local n = 0

function setup(thread)
  thread_count = (thread_count or 0) + 1
  thread:set("id", thread_count - 1)
end

function request()
  n = n + 1
  local attempt = string.format("bench-%d-%d-%d", id, os.time(), n)
  return wrk.format("POST", "/v1/payment_intents", {
    ["Authorization"] = "Bearer " .. os.getenv("SECRET_KEY"),
    ["Idempotency-Key"] = attempt,
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }, "amount=12900&currency=eur&capture_method=manual&confirm=true&payment_method=tok_ok&metadata[attempt_id]=" .. attempt)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f non2xx=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status, summary.requests))
end
