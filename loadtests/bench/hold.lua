-- wrk script: one hold per shopper of the file named by env SHOPPERS ("<shopper token>
-- <admission token>" per line), recording "<shopper token> <reservation id>" lines in
-- the file named by env HOLDS, for the checkout benchmark. Run it with ONE connection
-- per thread (-tN -cN): a response then answers the thread's last request, so each
-- reservation id is written next to its owner. Each thread takes every N-th line and
-- stops when its share is done.
local shoppers = {}
local mine = {}
local next_i, done_n = 0, 0
local current, out

function setup(thread)
  thread_count = (thread_count or 0) + 1
  thread:set("id", thread_count - 1)
end

function init(args)
  local threads = tonumber(os.getenv("THREADS"))
  local i = 0
  for line in io.lines(os.getenv("SHOPPERS")) do
    if i % threads == id then
      local shopper, admission = line:match("^(%S+) (%S+)$")
      mine[#mine + 1] = { shopper, admission }
    end
    i = i + 1
  end
  out = io.open(os.getenv("HOLDS") .. "." .. id, "w")
end

function request()
  next_i = next_i % #mine + 1
  current = mine[next_i]
  return wrk.format("POST", "/v1/sales/" .. os.getenv("SALE") .. "/reservations", {
    ["Authorization"] = "Bearer " .. current[1],
    ["X-Admission-Token"] = current[2],
    ["Content-Type"] = "application/json",
  }, '{"quantity":1}')
end

function response(status, headers, body)
  done_n = done_n + 1
  if status == 201 then
    out:write(current[1], " ", body:match('"reservation_id":"([^"]+)"'), "\n")
  end
  if done_n >= #mine then
    out:close()
    wrk.thread:stop()
  end
end
