-- POST /observations: JSON arrays of `per_body` (default 100) varied valid observations.
local common = require("common")

common.pooled(function(cfg)
  local pool = {}
  for b = 1, 200 do
    local items = {}
    for i = 1, cfg.per_body do
      items[i] = common.observation(cfg, math.random(0, cfg.labs - 1))
    end
    pool[b] = common.post("/observations", "[" .. table.concat(items, ",") .. "]")
  end
  return pool
end)
