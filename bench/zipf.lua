-- Zipf-distributed keys for bench/cache.sh's mixed workload: each request asks for
-- /1k?k=N with N drawn from a Zipf distribution (exponent ZIPF_S, default 1.0) over
-- ZIPF_KEYS keys (default 20000), ZIPF_REQUESTS responses (default 200000). Every response is classified by the target's cache
-- header — Cache-Status containing "hit" (Holdfast) or X-Cache: HIT (nginx, Varnish with
-- the VCL of cache.sh) — and done() prints "zipf hits N misses M other K".
local keys = tonumber(os.getenv("ZIPF_KEYS") or "20000")
local s = tonumber(os.getenv("ZIPF_S") or "1.0")
-- stop after this many responses, so every target is compared over the same sequence
local limit = tonumber(os.getenv("ZIPF_REQUESTS") or "200000")
local cdf = {}
local total = 0
for i = 1, keys do
  total = total + 1 / (i ^ s)
  cdf[i] = total
end
for i = 1, keys do cdf[i] = cdf[i] / total end
-- a fixed seed: every target gets the same sequence of keys
math.randomseed(42)

local function draw()
  local u = math.random()
  local lo, hi = 1, keys
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- globals: done() runs in another Lua state and reads them through thread:get
hits, misses, other = 0, 0, 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

request = function()
  return wrk.format("GET", "/1k?k=" .. draw())
end

response = function(status, headers, body)
  local verdict = nil
  for name, value in pairs(headers) do
    local n = string.lower(name)
    if n == "cache-status" then
      verdict = string.find(value, "; hit", 1, true) ~= nil
    elseif n == "x-cache" then
      verdict = value == "HIT"
    end
  end
  if status ~= 200 or verdict == nil then
    other = other + 1
  elseif verdict then
    hits = hits + 1
  else
    misses = misses + 1
  end
  if hits + misses + other >= limit then
    wrk.thread:stop()
  end
end

done = function(summary, latency, requests)
  local h, m, o = 0, 0, 0
  for _, t in ipairs(threads) do
    h = h + (t:get("hits") or 0)
    m = m + (t:get("misses") or 0)
    o = o + (t:get("other") or 0)
  end
  io.write(string.format("zipf hits %d misses %d other %d\n", h, m, o))
end
