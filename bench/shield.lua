-- wrk script for the refusal check of bench/shield.sh: counts responses by status (2xx, 429,
-- 429 carrying Retry-After and RateLimit, 5xx, any other) and, at the end, prints one
-- machine-readable line parsed by shield_report.py. Defining response() makes wrk hand every
-- response's headers to Lua, which costs wrk CPU: use it for counting, not for the CPU part.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

c2xx, c429, c429_headers, c5xx, cother = 0, 0, 0, 0, 0

function response(status, headers, _)
  if status >= 200 and status < 300 then
    c2xx = c2xx + 1
  elseif status == 429 then
    c429 = c429 + 1
    local ra, rl = false, false
    for k, _ in pairs(headers) do
      local l = string.lower(k)
      if l == "retry-after" then ra = true elseif l == "ratelimit" then rl = true end
    end
    if ra and rl then c429_headers = c429_headers + 1 end
  elseif status >= 500 then
    c5xx = c5xx + 1
  else
    cother = cother + 1
  end
end

function done(s, lat, _)
  local t = { c2xx = 0, c429 = 0, c429_headers = 0, c5xx = 0, cother = 0 }
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
  end
  local e = s.errors
  io.write(string.format(
    "SHIELD requests=%d duration_us=%d s2xx=%d s429=%d s429_headers=%d s5xx=%d sother=%d " ..
    "connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d max_us=%d\n",
    s.requests, s.duration, t.c2xx, t.c429, t.c429_headers, t.c5xx, t.cother,
    e.connect, e.read, e.write, e.status, e.timeout,
    lat:percentile(50), lat:percentile(99), lat.max))
end
