-- Zipf-distributed keys for bench/cache.sh's mixed workload: each request asks for
-- /1k?k=N with N drawn from a Zipf distribution (exponent ZIPF_S, default 1.0) over
-- ZIPF_KEYS keys (default 20000). Every response is classified by the target's cache
-- header — Cache-Status containing "hit" (Holdfast) or X-Cache: HIT (nginx, Varnish with
-- the VCL of cache.sh) — and done() prints "zipf hits N misses M other K".
local keys = tonumber(os.getenv("ZIPF_KEYS") or "20000")
local s = tonumber(os.getenv("ZIPF_S") or "1.0")
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

local hits, misses, other = 0, 0, 0

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
end

done = function(summary, latency, requests)
  -- wrk runs response() in its thread's Lua state; with -t1 that is this one.
  io.write(string.format("zipf hits %d misses %d other %d\n", hits, misses, other))
end
