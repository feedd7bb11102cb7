-- wrk script: POST one JSON body read from $BODY_FILE with an optional bearer token ($TOKEN).
-- With $DELAY_MS set, every connection waits that long between requests (paced load).
local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("TOKEN")
if token and #token > 0 then
  wrk.headers["Authorization"] = "Bearer " .. token
end
local pause = tonumber(os.getenv("DELAY_MS") or "0")
function delay()
  return pause
end
local non_2xx = 0
function response(status, headers, body)
  if status < 200 or status > 299 then non_2xx = non_2xx + 1 end
end
function done(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f requests=%d rps=%.1f errors=%d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests,
    summary.requests / (summary.duration / 1e6),
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
