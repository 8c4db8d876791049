-- wrk script: POST /v1/sales/<sale>/queue, each request as the next shopper of the file
-- named by env SHOPPERS (first column), so every request is a first join (201), never a
-- per-shopper rate-limit refusal. Each thread takes every N-th line and stops when its
-- share is done (wrk still waits out -d: give it more shoppers than it can finish).
local shoppers = {}
local next_i, done_n = 0, 0

function setup(thread)
  thread_count = (thread_count or 0) + 1
  thread:set("id", thread_count - 1)
end

function init(args)
  local threads = tonumber(os.getenv("THREADS"))
  local i = 0
  for line in io.lines(os.getenv("SHOPPERS")) do
    if i % threads == id then shoppers[#shoppers + 1] = line:match("^(%S+)") end
    i = i + 1
  end
end

function request()
  next_i = next_i + 1
  return wrk.format("POST", "/v1/sales/" .. os.getenv("SALE") .. "/queue", {
    ["Authorization"] = "Bearer " .. shoppers[math.min(next_i, #shoppers)],
  })
end

function response(status, headers, body)
  done_n = done_n + 1
  if done_n >= #shoppers then wrk.thread:stop() end
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f non2xx=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status, summary.requests))
end
