-- The native load generator of `galantis bench ingest`: signed Shopify
-- webhooks (one pre-signed body, so signing costs the client nothing), a
-- distinct webhook id per request, shops round-robin, and each thread stops
-- after its share of the requests. The harness sets:
--   BENCH_BODY_FILE  the body (bytes signed by BENCH_SIG)
--   BENCH_SIG        base64 HMAC-SHA256 of the body (x-shopify-hmac-sha256)
--   BENCH_SHOPS      comma-separated shop domains
--   BENCH_TAG        run tag, prefix of every webhook id
--   BENCH_PER_THREAD requests each thread sends before stopping
-- and reads the last line, `WRKJSON {...}`.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  shops = {}
  for s in string.gmatch(os.getenv("BENCH_SHOPS"), "[^,]+") do
    table.insert(shops, s)
  end
  sig = os.getenv("BENCH_SIG")
  tag = os.getenv("BENCH_TAG")
  limit = tonumber(os.getenv("BENCH_PER_THREAD"))
  local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
  body = f:read("*a")
  f:close()
  sent = 0
  answered = 0
end

function request()
  sent = sent + 1
  local headers = {
    ["content-type"] = "application/json",
    ["x-shopify-topic"] = "customers/create",
    ["x-shopify-shop-domain"] = shops[(sent % #shops) + 1],
    ["x-shopify-webhook-id"] = tag .. "-" .. tid .. "-" .. sent,
    ["x-shopify-hmac-sha256"] = sig,
  }
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  answered = answered + 1
  if answered >= limit then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
