-- Group commit: merge every (lab, bucket) aggregate of one flush into this shard.
-- ARGV[1] key prefix, ARGV[2] MessagePack payload, ARGV[3] "agg" or "dedup".
--   agg:   [[bucket, expire_at, [lab, n, st, sh, tmin, tmax, hmin, hmax, lab, ...]], ...]
--   dedup: [[bucket, expire_at, [lab, {ts, temp, hum, ts, ...}, lab, ...]], ...]
-- One call per flush: Redis runs it atomically, so a flush is applied whole or not
-- at all, and the client packs a single argument instead of thousands.
--
-- Each aggregate is one string of 7 little-endian doubles (n, st, sh, tmin, tmax,
-- hmin, hmax): GET + SET per key, no decimal formatting. Measured: ~3.5 us of Redis
-- CPU per merged key against ~10.5 us for a 7-field hash with %.17g values.
local prefix = ARGV[1]
local groups = cmsgpack.unpack(ARGV[2])
local dedup = ARGV[3] == 'dedup'
local call = redis.call
local pack, unpack_agg = struct.pack, struct.unpack
local AGG = '<ddddddd'
local stored = 0

-- Returns true when the key is new (its lab must join the bucket's lab set).
local function merge(key, expire_at, n, st, sh, tmin, tmax, hmin, hmax)
  local cur = call('GET', key)
  if not cur then
    call('SET', key, pack(AGG, n, st, sh, tmin, tmax, hmin, hmax), 'EXAT', expire_at)
    return true
  end
  local n0, st0, sh0, tmin0, tmax0, hmin0, hmax0 = unpack_agg(AGG, cur)
  if tmin0 < tmin then tmin = tmin0 end
  if tmax0 > tmax then tmax = tmax0 end
  if hmin0 < hmin then hmin = hmin0 end
  if hmax0 > hmax then hmax = hmax0 end
  call('SET', key, pack(AGG, n0 + n, st0 + st, sh0 + sh, tmin, tmax, hmin, hmax), 'KEEPTTL')
  return false
end

for g = 1, #groups do
  local bucket = groups[g][1]
  local expire_at = groups[g][2]
  local rows = groups[g][3]
  local base = prefix .. 'b:' .. bucket .. ':'
  local new_labs, fresh = {}, 0
  local step = dedup and 2 or 8
  for i = 1, #rows, step do
    local lab = rows[i]
    local created = false
    if dedup then
      local seen_key = prefix .. 'seen:' .. bucket .. ':' .. lab
      local obs = rows[i + 1]
      local n, st, sh, tmin, tmax, hmin, hmax = 0, 0, 0, 0, 0, 0, 0
      for j = 1, #obs, 3 do
        if call('SADD', seen_key, string.format('%d', obs[j])) == 1 then
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
        created = merge(base .. lab, expire_at, n, st, sh, tmin, tmax, hmin, hmax)
        stored = stored + n
      end
    else
      created = merge(base .. lab, expire_at, rows[i + 1], rows[i + 2], rows[i + 3],
                      rows[i + 4], rows[i + 5], rows[i + 6], rows[i + 7])
      stored = stored + rows[i + 1]
    end
    if created then
      fresh = fresh + 1
      new_labs[fresh] = lab
    end
  end
  if fresh > 0 then
    local set_key = prefix .. 'labs:' .. bucket
    for c = 1, fresh, 1000 do
      call('SADD', set_key, unpack(new_labs, c, math.min(c + 999, fresh)))
    end
    call('EXPIREAT', set_key, expire_at)
  end
end
return stored
