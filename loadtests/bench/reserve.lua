-- wrk script: POST /v1/sales/<sale>/reservations, each request as the next admitted
-- shopper from the file named by env SHOPPERS ("<shopper token> <admission token>"
-- per line), so every request is a real hold, not a per-shopper-limit refusal. The body
-- is env BODY (default `{"quantity":1}`; the cart row sends `{"lines":[...]}`).
local shoppers = {}
local body = os.getenv("BODY")
if body == nil or body == "" then body = '{"quantity":1}' end
local next_shopper = 0

function init(args)
  for line in io.lines(os.getenv("SHOPPERS")) do
    local shopper, admission = line:match("^(%S+) (%S+)$")
    shoppers[#shoppers + 1] = { shopper, admission }
  end
  -- Each wrk thread starts at a different offset.
  next_shopper = math.random(#shoppers)
end

function request()
  next_shopper = next_shopper % #shoppers + 1
  local s = shoppers[next_shopper]
  return wrk.format("POST", "/v1/sales/" .. os.getenv("SALE") .. "/reservations", {
    ["Authorization"] = "Bearer " .. s[1],
    ["X-Admission-Token"] = s[2],
    ["Content-Type"] = "application/json",
  }, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, non2xx))
end

-- SHOW_ERRORS=1: print the first answer that is not 2xx (a Lua call per response, so
-- off by default).
if os.getenv("SHOW_ERRORS") then
  local shown = false
  function response(status, headers, body)
    if status >= 300 and not shown then
      shown = true
      io.stderr:write("first non-2xx answer: ", status, " ", body, "\n")
    end
  end
end
