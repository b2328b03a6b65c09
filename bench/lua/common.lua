-- Shared helpers for the humtemp wrk scripts (loaded with require through LUA_PATH).
-- Script arguments (after `--` on the wrk command line):
--   1: bucket duration in seconds (HUMTEMP_BUCKET_DURATION of the server under test)
--   2: bucket offset in Unix seconds (HUMTEMP_BUCKET_OFFSET)
--   3: number of distinct labs
--   4: observations per body (batch script only)
local M = {}

function M.config(args)
  local cfg = {
    duration = tonumber(args[1] or "86400"),
    offset = tonumber(args[2] or "0"),
    labs = tonumber(args[3] or "1000"),
    per_body = tonumber(args[4] or "100"),
  }
  local now = os.time()
  local bucket_start = cfg.offset + math.floor((now - cfg.offset) / cfg.duration) * cfg.duration
  -- Timestamps lie in the last hour AND in the current bucket, so every one is valid
  -- (not in the future, not older than retention) whatever the time of day.
  cfg.now = now
  cfg.max_back = math.min(3599, now - bucket_start)
  return cfg
end

function M.observation(cfg, lab)
  return string.format(
    '{"lab_id":"lab-%04d","timestamp":%d,"temp":%.2f,"humidity":%.2f}',
    lab, cfg.now - math.random(0, cfg.max_back),
    15 + math.random() * 15, 20 + math.random() * 60)
end

function M.post(path, body)
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
end

-- Defines wrk's init/request/done globals for a script whose requests come from a pool
-- that build(cfg) makes once per thread: building bodies per request would make wrk, not
-- the server, the bottleneck. Must be called at load time (wrk checks for `request` then).
function M.pooled(build)
  local pool, i, n = nil, 0, 0
  function init(args)
    math.randomseed(os.time())
    pool = build(M.config(args))
    n = #pool
  end
  function request()
    i = i % n + 1
    return pool[i]
  end
  done = M.done
end

-- One machine-readable line with wrk's own counters and latency percentiles (µs).
function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p75":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end

return M
