-- wrk script: POST /v1/reservations/<id>/checkout once per hold of the files
-- "$HOLDS.<thread>" written by hold.lua ("<shopper token> <reservation id>"), with the
-- reservation id as the idempotency key and tok_ok. A thread whose holds are done stops
-- (wrk still waits out -d, so give it more holds than it can finish), so no request is
-- a replay or a 409.
local holds = {}
local next_i, done_n = 0, 0

function setup(thread)
  thread_count = (thread_count or 0) + 1
  thread:set("id", thread_count - 1)
end

function init(args)
  local threads = tonumber(os.getenv("THREADS"))
  local i = 0
  for t = 0, threads - 1 do
    for line in io.lines(os.getenv("HOLDS") .. "." .. t) do
      if i % threads == id then
        local shopper, rid = line:match("^(%S+) (%S+)$")
        holds[#holds + 1] = { shopper, rid }
      end
      i = i + 1
    end
  end
end

function request()
  next_i = next_i + 1
  local h = holds[math.min(next_i, #holds)]
  return wrk.format("POST", "/v1/reservations/" .. h[2] .. "/checkout", {
    ["Authorization"] = "Bearer " .. h[1],
    ["Idempotency-Key"] = h[2],
    ["Content-Type"] = "application/json",
  }, '{"payment_token":"tok_ok"}')
end

function response(status, headers, body)
  done_n = done_n + 1
  if done_n >= #holds then wrk.thread:stop() end
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f non2xx=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status, summary.requests))
end
