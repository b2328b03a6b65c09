-- wrk: POST /observation, one observation per request, cycling over `labs` lab ids.
-- usage: wrk -t1 -c64 -d10s -s loadtest/wrk/observation.lua http://127.0.0.1:PORT -- LABS PREFIX
local labs, prefix, n = 1000, "wrk-", 0

function init(args)
  labs = tonumber(args[1] or labs)
  prefix = args[2] or prefix
  n = math.random(0, labs - 1)
end

function request()
  n = n + 1
  local body = string.format('{"lab_id":"%s%06d","timestamp":%d,"temp":%.2f,"humidity":%.2f}',
    prefix, n % labs, os.time(), (n % 160) * 0.25, (n % 400) * 0.25)
  return wrk.format("POST", "/observation", {["Content-Type"] = "application/json"}, body)
end
