-- One bounded page of a bucket, in lab-id order: the next ARGV[2] labs of the bucket's
-- lab index after ARGV[1], with their packed aggregates. Work per call is bounded by the
-- page size (one ZRANGEBYLEX ... LIMIT and one HMGET), whatever the bucket holds.
-- KEYS[1] lab index (sorted set), KEYS[2] bucket hash; key names as in humtemp/layout.py.
-- ARGV[1] "-" (from the start) or "(<lab>" (after that lab); ARGV[2] page size.
-- Returns {labs, values, labs in the index, labs in the hash}: the two counts differ only
-- for a bucket written before the index existed (humtemp/reader.py reads those by HSCAN).
local labs = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
local values = {}
if #labs > 0 then
  values = redis.call('HMGET', KEYS[2], unpack(labs))
end
return {labs, values, redis.call('ZCARD', KEYS[1]), redis.call('HLEN', KEYS[2])}
