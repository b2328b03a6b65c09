-- Every lab's aggregate of one bucket on this shard, in one round trip.
-- ARGV[1] key prefix, ARGV[2] bucket start. Returns MessagePack:
-- [lab, n, st, sh, tmin, tmax, hmin, hmax, lab, ...]; the lab index set avoids SCAN.
local prefix = ARGV[1]
local bucket = ARGV[2]
local labs = redis.call('SMEMBERS', prefix .. 'labs:' .. bucket)
local base = prefix .. 'b:' .. bucket .. ':'
local call, unpack_agg = redis.call, struct.unpack
local out, o = {}, 0
for i = 1, #labs do
  local lab = labs[i]
  local v = call('GET', base .. lab)
  if v then
    local n, st, sh, tmin, tmax, hmin, hmax = unpack_agg('<ddddddd', v)
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = lab, n, st, sh
    out[o + 5], out[o + 6], out[o + 7], out[o + 8] = tmin, tmax, hmin, hmax
    o = o + 8
  end
end
return cmsgpack.pack(out)
