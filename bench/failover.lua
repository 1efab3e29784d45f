-- wrk script for bench/failover.sh.
--  * Pacing: with FO_DELAY_MS > 0 each connection waits that many milliseconds (on average;
--    wrk takes whole milliseconds, so the fraction is dithered) between a response and its
--    next request, so CONNS connections offer about CONNS * 1000 / FO_DELAY_MS requests/s
--    instead of saturating the machine. The wait is not counted in the latency.
--  * At the end, one machine-readable line with the counts and latency percentiles
--    (microseconds), parsed by failover_report.py.
local pace = tonumber(os.getenv("FO_DELAY_MS") or "0") or 0

if pace > 0 then
  math.randomseed(os.time())
  local whole = math.floor(pace)
  local frac = pace - whole
  delay = function()
    if math.random() < frac then return whole + 1 end
    return whole
  end
end

done = function(s, lat, _)
  local e = s.errors
  io.write(string.format(
    "FAILOVER requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    s.requests, s.duration, e.connect, e.read, e.write, e.status, e.timeout,
    lat:percentile(50), lat:percentile(90), lat:percentile(99), lat:percentile(99.9), lat.max))
end
