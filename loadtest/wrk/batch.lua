-- wrk: POST /observations with JSON arrays of BATCH observations over `labs` lab ids.
-- Bodies are rebuilt once per second (timestamps stay current) and rotated, so wrk spends
-- its CPU sending, not formatting.
-- usage: wrk -t1 -c16 -d10s -s loadtest/wrk/batch.lua http://127.0.0.1:PORT -- LABS BATCH PREFIX
local labs, batch, prefix = 1000, 100, "wrk-"
local bodies, built_at, n, ROTATE = {}, -1, 0, 16

function init(args)
  labs = tonumber(args[1] or labs)
  batch = tonumber(args[2] or batch)
  prefix = args[3] or prefix
  n = math.random(0, labs - 1)
end

local function build(now)
  for b = 1, ROTATE do
    local items = {}
    for i = 1, batch do
      n = n + 1
      items[i] = string.format('{"lab_id":"%s%06d","timestamp":%d,"temp":%.2f,"humidity":%.2f}',
        prefix, n % labs, now, (n % 160) * 0.25, (n % 400) * 0.25)
    end
    bodies[b] = "[" .. table.concat(items, ",") .. "]"
  end
  built_at = now
end

function request()
  local now = os.time()
  if now ~= built_at then build(now) end
  n = n + 1
  return wrk.format("POST", "/observations", {["Content-Type"] = "application/json"},
    bodies[n % ROTATE + 1])
end
