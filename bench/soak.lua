-- wrk script of bench/soak.sh: a paced mix of the soak's plain-HTTP routes, and counts of
-- what came back. Each request picks (by weight) pass-through /pass/1k and /pass/100k (the
-- pool with the flapping origin), cache hits (/cache/1k?k= one of 200 keys) and misses (a key
-- never asked before), the shielded route /api/ (10 users, over their rate limit now and
-- then: 429; /api/wp-admin: 403 by a rule), the challenge route /protected/ and /oops, where
-- the origin itself answers 503. A 5xx whose body is the edge's own error page ("served by the
-- Holdfast edge", respond.rs) is edge-made; any other 5xx is the origin's. Pacing: each
-- connection waits SOAK_DELAY_MS (env) between responses; SOAK_MISS_WEIGHT (6) sets the share
-- of misses. One line at the end:
-- SOAK requests=... s2xx=... s429=... s4xx=... edge5xx=... origin5xx=... (and wrk's errors).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local delay_ms = tonumber(os.getenv("SOAK_DELAY_MS") or "0") or 0
local counter = 0
c2xx, c3xx, c429, c4xx, cedge5xx, corigin5xx = 0, 0, 0, 0, 0, 0
edge_sample = ""

local mix = {
  { 30, function() return "/pass/1k", nil end },
  { 8,  function() return "/pass/100k", nil end },
  { 25, function() return "/cache/1k?k=" .. math.random(1, 200), nil end },
  { tonumber(os.getenv("SOAK_MISS_WEIGHT") or "6") or 6, function() counter = counter + 1; return "/cache/1k?miss=" .. counter .. "-" .. math.random(1, 1e9), nil end },
  { 15, function() return "/api/1k", "u" .. math.random(1, 10) end },
  { 3,  function() return "/api/wp-admin/x", "u" .. math.random(1, 10) end },
  { 8,  function() return "/protected/1k", nil end },
  { 5,  function() return "/oops", nil end },
}
local total = 0
for _, m in ipairs(mix) do total = total + m[1] end

function init(_)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

-- SOAK_WARM=1: only misses, unpaced (the warm-up that fills the cache to its bound)
local warm = os.getenv("SOAK_WARM") == "1"

function request()
  if warm then
    counter = counter + 1
    return wrk.format("GET", "/cache/1k?warm=" .. counter .. "-" .. math.random(1, 1e9), { ["Host"] = "soak.test" })
  end
  local r = math.random(1, total)
  for _, m in ipairs(mix) do
    r = r - m[1]
    if r <= 0 then
      local path, user = m[2]()
      local h = { ["Host"] = "soak.test", ["User-Agent"] = "Mozilla/5.0 soak" }
      if user then h["X-User"] = user end
      return wrk.format("GET", path, h)
    end
  end
  return wrk.format("GET", "/pass/1k")
end

function delay()
  if warm or delay_ms <= 0 then return 0 end
  return math.random(math.floor(delay_ms / 2), math.floor(delay_ms * 3 / 2))
end

function response(status, _, body)
  if status < 300 then
    c2xx = c2xx + 1
  elseif status < 400 then
    c3xx = c3xx + 1
  elseif status == 429 then
    c429 = c429 + 1
  elseif status < 500 then
    c4xx = c4xx + 1
  elseif body and string.find(body, "served by the Holdfast edge", 1, true) then
    cedge5xx = cedge5xx + 1
    if edge_sample == "" then edge_sample = string.sub(string.gsub(body, "%s+", " "), 1, 300) end
  else
    corigin5xx = corigin5xx + 1
  end
end

function done(s, lat, _)
  local t = { c2xx = 0, c3xx = 0, c429 = 0, c4xx = 0, cedge5xx = 0, corigin5xx = 0 }
  local sample = ""
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
    if sample == "" then sample = th:get("edge_sample") or "" end
  end
  local e = s.errors
  io.write(string.format(
    "SOAK requests=%d s2xx=%d s3xx=%d s429=%d s4xx=%d edge5xx=%d origin5xx=%d " ..
    "connect=%d read=%d write=%d timeout=%d p99_us=%d max_us=%d\n",
    s.requests, t.c2xx, t.c3xx, t.c429, t.c4xx, t.cedge5xx, t.corigin5xx,
    e.connect, e.read, e.write, e.timeout, lat:percentile(99), lat.max))
  if sample ~= "" then io.write("SOAK first edge 5xx: " .. sample .. "\n") end
end
