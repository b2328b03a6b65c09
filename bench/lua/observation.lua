-- POST /observation with varied valid bodies: every lab of 1000 (round robin), random
-- timestamp in the last hour of the current bucket, random temp/humidity.
local common = require("common")

common.pooled(function(cfg)
  local pool = {}
  for i = 1, 4 * cfg.labs do
    pool[i] = common.post("/observation", common.observation(cfg, (i - 1) % cfg.labs))
  end
  return pool
end)
