-- The replies one user has streaming across the cluster, for
-- MAX_GENERATIONS_PER_USER: a sorted set on the user's own key (and so, on
-- a Redis Cluster, in the user's slot, apart from any conversation), of
-- `<conversation>:<reply>` members scored by when they were reserved, in
-- Redis's time (milliseconds).
--
-- KEYS: 1 the set. ARGV: 1 'reserve', 2 the member, 3 the limit, 4 the
-- set's time to live (s). Answers {'ok'}, or, when the user is at the
-- limit, {'full', now, member, score, member, score, …} so that the node can
-- check whether each counted reply still streams (a removal lost to a node
-- that died between a reply's ending and its removal) and drop those that
-- do not.

local key = KEYS[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

if ARGV[1] == 'reserve' then
  if redis.call('ZCARD', key) >= tonumber(ARGV[3]) then
    local result = {'full', tostring(now)}
    for _, item in ipairs(redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')) do
      table.insert(result, item)
    end
    return result
  end
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('EXPIRE', key, ARGV[4])
  return {'ok'}
end

return redis.error_reply('CONFLICT unknown operation ' .. tostring(ARGV[1]))
