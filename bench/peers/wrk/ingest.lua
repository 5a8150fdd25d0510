-- The native load generator of `galantis bench ingest`: signed Shopify
-- webhooks (one pre-signed body, so signing costs the client nothing), a
-- distinct webhook id per request, shops round-robin, and each thread stops
-- after its share of the requests. The harness sets:
--   BENCH_BODY_FILE  the body (bytes signed by BENCH_SIG)
--   BENCH_SIG        base64 HMAC-SHA256 of the body (x-shopify-hmac-sha256)
--   BENCH_SHOPS      comma-separated shop domains
--   BENCH_TAG        run tag, prefix of every webhook id
--   BENCH_PER_THREAD requests each thread sends before stopping
-- Each thread prints `WRKDONE` when its share is answered; the harness then
-- interrupts wrk (SIGINT), which otherwise sleeps out its whole -d, and
-- reads the last line, `WRKJSON {...}`. Throughput is timed here, from the
-- first request to the last answer (wall clock through LuaJIT's FFI).
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

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
  ok = 0
  first = 0
  last = 0
  stopped = false
end

function request()
  if first == 0 then
    first = now()
  end
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
  if stopped then
    return
  end
  answered = answered + 1
  if status == 200 then
    ok = ok + 1
  end
  last = now()
  if answered >= limit then
    stopped = true
    io.write("WRKDONE\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local t0, t1, answered_ok = math.huge, 0, 0
  for _, t in ipairs(threads) do
    local f, l = t:get("first"), t:get("last")
    if f and f > 0 and f < t0 then t0 = f end
    if l and l > t1 then t1 = l end
    answered_ok = answered_ok + (t:get("ok") or 0)
  end
  local duration_us = 0
  if t1 > t0 then duration_us = (t1 - t0) * 1e6 end
  io.write(string.format(
    'WRKJSON {"ok":%d,"requests":%d,"duration_us":%d,"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    answered_ok, summary.requests, duration_us, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
