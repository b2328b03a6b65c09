-- Every lab's aggregate of one bucket on this shard, in one round trip.
-- ARGV[1] key prefix, ARGV[2] bucket start. Returns MessagePack:
-- [lab, n, st, sh, tmin, tmax, hmin, hmax, lab, ...]; the lab index set avoids SCAN.
local prefix = ARGV[1]
local bucket = ARGV[2]
local labs = redis.call('SMEMBERS', prefix .. 'labs:' .. bucket)
local out = {}
for i = 1, #labs do
  local lab = labs[i]
  local v = redis.call('HMGET', prefix .. 'b:' .. bucket .. ':' .. lab,
                       'n', 'st', 'sh', 'tmin', 'tmax', 'hmin', 'hmax')
  if v[1] then
    out[#out + 1] = lab
    for j = 1, 7 do out[#out + 1] = tonumber(v[j]) end
  end
end
return cmsgpack.pack(out)
