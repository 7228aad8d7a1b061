-- chatstream's conversation log on Redis: every operation that must be atomic
-- on one conversation, in one script (as Centrifugo's Redis engine does).
--
-- KEYS: 1 meta (hash), 2 log (stream), 3 msgs (hash: id -> message JSON
-- without content), 4 order (list of message ids). All share the hash tag of
-- the conversation, and so does each message's text key, derived from them.
-- KEYS[5] is the sentinel naming the life of the data (see the fence below).
-- ARGV: 1 the operation, 2 now (RFC 3339), 3 log entries kept, 4 time to
-- live (s), 5 the sentinel's value the calling node knows; the operation's
-- own arguments follow from ARGV[6]. Each operation returns an array of
-- strings, or an error whose first word is NOTFOUND, FORBIDDEN, CONFLICT or
-- LOST.

local meta, log, msgs, order = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix = string.sub(meta, 1, #meta - 4)
local op = ARGV[1]

-- The fence. A node's operations apply only to the life of the data it
-- knows: if the sentinel vanished or changed, Redis lost its data (restarted
-- empty, flushed) since the node last looked, and what the node asks rests
-- on a conversation that may be gone only until it is rebuilt. Nothing is
-- changed; the error carries the sentinel's value now ('LOST now <value>',
-- or 'LOST vanished') so that the node records the loss and answers
-- `unavailable`, never `not_found` (a word must follow the code: Redis
-- files an error of one word under ERR). One GET, in the same atomic step as
-- the operation.
local sentinel = redis.call('GET', KEYS[5])
if sentinel ~= ARGV[5] then
  if sentinel then
    return redis.error_reply('LOST now ' .. sentinel)
  end
  return redis.error_reply('LOST vanished')
end

local function text_key(id)
  return prefix .. 'text:' .. id
end

-- Who generates a reply: the node id holding its lease.
local function lease_key(id)
  return prefix .. 'lease:' .. id
end

local function fail(code, message)
  return redis.error_reply(code .. ' ' .. message)
end

-- Every key of the conversation lives as long as its newest turn allows.
local function touch(ttl)
  for _, key in ipairs({meta, log, msgs, order, prefix .. 'turns'}) do
    redis.call('EXPIRE', key, ttl)
  end
  for _, id in ipairs(redis.call('LRANGE', order, 0, -1)) do
    redis.call('EXPIRE', text_key(id), ttl)
  end
end

-- Numbers the event, adds it to the log and publishes it, in one step.
local function log_event(event_json, now_iso, history, channel)
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local time = redis.call('TIME')
  local ts = string.format('%.3f', tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000)
  local entry = '{"seq":' .. seq .. ',"ts":' .. ts .. ',"event":' .. event_json .. '}'
  redis.call('XADD', log, 'MAXLEN', history, seq .. '-1', 'e', entry)
  redis.call('HSET', meta, 'updated_at', now_iso)
  local epoch = redis.call('HGET', meta, 'epoch')
  redis.call('PUBLISH', channel, '{"epoch":"' .. epoch .. '","entry":' .. entry .. '}')
  return {tostring(seq), entry, epoch}
end

local function create(owner, title, epoch, now_iso, ttl)
  if redis.call('EXISTS', meta) == 1 then
    return false
  end
  redis.call('HSET', meta, 'owner', owner, 'created_at', now_iso, 'updated_at', now_iso,
    'epoch', epoch, 'seq', 0, 'streaming', '')
  if title ~= '' then
    redis.call('HSET', meta, 'title', string.sub(title, 2))
  end
  redis.call('EXPIRE', meta, ttl)
  return true
end

-- A new message: the user's (complete) or the assistant's (streaming).
local function add_message(id, role, message_json, content, event_json, now_iso, history, channel)
  if redis.call('HEXISTS', msgs, id) == 1 then
    return nil, fail('CONFLICT', 'message ' .. id .. ' already exists')
  end
  if role == 'user' and redis.call('HGET', meta, 'streaming') ~= '' then
    return nil, fail('CONFLICT', 'a reply is still streaming in this conversation')
  end
  redis.call('HSET', msgs, id, message_json)
  redis.call('RPUSH', order, id)
  redis.call('SET', text_key(id), content)
  if role == 'assistant' then
    redis.call('HSET', meta, 'streaming', id)
  end
  return log_event(event_json, now_iso, history, channel)
end

-- Checks that `id` is the streaming reply.
local function check_streaming(id)
  if redis.call('HGET', meta, 'streaming') == id then
    return nil
  end
  if redis.call('HEXISTS', msgs, id) == 1 then
    return fail('CONFLICT', 'message ' .. id .. ' is no longer streaming')
  end
  return fail('NOTFOUND', 'message ' .. id .. ' does not exist in this conversation')
end

local now_iso, history, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
-- Where the conversation's events are published: `cs:{<id>}:events`.
local channel = prefix .. 'events'

if op == 'create' then
  -- owner, title ('' or 'T' .. title), epoch
  if not create(ARGV[6], ARGV[7], ARGV[8], now_iso, ttl) then
    return fail('CONFLICT', 'conversation already exists')
  end
  return {'ok'}
end

if op == 'turn' then
  -- owner, create flag, title, epoch, turn member, then for the user message
  -- and the reply: id, message JSON, content, event JSON; then the reply's
  -- lease holder and its time to live in milliseconds.
  local owner, create_new, title, epoch, member = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
  if create_new == '1' then
    if not create(owner, title, epoch, now_iso, ttl) then
      return fail('CONFLICT', 'conversation already exists')
    end
  else
    local current = redis.call('HGET', meta, 'owner')
    if not current then
      return fail('NOTFOUND', 'conversation not found')
    end
    if current ~= owner then
      return fail('FORBIDDEN', 'conversation belongs to another user')
    end
  end
  local user, err = add_message(ARGV[11], 'user', ARGV[12], ARGV[13], ARGV[14], now_iso, history, channel)
  if err then
    return err
  end
  local _, err2 = add_message(ARGV[15], 'assistant', ARGV[16], '', ARGV[17], now_iso, history, channel)
  if err2 then
    return err2
  end
  if member ~= '' then
    redis.call('SADD', prefix .. 'turns', member)
  end
  redis.call('SET', lease_key(ARGV[15]), ARGV[18], 'PX', ARGV[19])
  touch(ttl)
  return {redis.call('HGET', meta, 'epoch'), user[1]}
end

if op == 'append' then
  -- kind, message id, event JSON, then for a delta: offset (-1: anywhere),
  -- text; for an ending: status, error ('' or 'E' .. error); then the
  -- writer's node id ('' for anyone: a cancel), which must hold the lease.
  if redis.call('EXISTS', meta) == 0 then
    return fail('NOTFOUND', 'conversation not found')
  end
  local kind, id, event_json, holder = ARGV[6], ARGV[7], ARGV[8], ARGV[11]
  if holder ~= '' then
    local current = redis.call('GET', lease_key(id))
    if current and current ~= holder then
      return fail('CONFLICT', 'reply ' .. id .. ' is generated by ' .. current)
    end
  end
  local err = check_streaming(id)
  if kind == 'delta' then
    local offset, text = tonumber(ARGV[9]), ARGV[10]
    local length = redis.call('STRLEN', text_key(id))
    -- A negative offset appends wherever the text ends.
    if offset >= 0 and length ~= offset then
      -- A retry of an append that did happen: same text at the same offset.
      if length == offset + #text and redis.call('GETRANGE', text_key(id), offset, -1) == text then
        return {'applied'}
      end
      if err then
        return err
      end
      return fail('CONFLICT', 'the reply has ' .. length .. ' bytes, not ' .. offset)
    end
    if err then
      return err
    end
    redis.call('APPEND', text_key(id), text)
    return log_event(event_json, now_iso, history, channel)
  end
  if err then
    return err
  end
  local message = cjson.decode(redis.call('HGET', msgs, id))
  message['status'] = ARGV[9]
  if ARGV[10] ~= '' then
    message['error'] = string.sub(ARGV[10], 2)
  end
  redis.call('HSET', msgs, id, cjson.encode(message))
  redis.call('HSET', meta, 'streaming', '')
  redis.call('DEL', lease_key(id))
  touch(ttl)
  return log_event(event_json, now_iso, history, channel)
end

if op == 'read' then
  -- after: entries with a greater seq.
  local state = redis.call('HMGET', meta, 'epoch', 'seq')
  if not state[1] then
    return fail('NOTFOUND', 'conversation not found')
  end
  local after, seq = tonumber(ARGV[6]), tonumber(state[2])
  local result = {state[1], state[2], 'kept'}
  if after >= seq then
    return result
  end
  local entries = redis.call('XRANGE', log, (after + 1) .. '-1', '+')
  local first = entries[1] and tonumber(string.match(entries[1][1], '^(%d+)-'))
  if first ~= after + 1 then
    result[3] = 'trimmed'
    return result
  end
  for _, entry in ipairs(entries) do
    table.insert(result, entry[2][2])
  end
  return result
end

if op == 'snapshot' then
  local state = redis.call('HMGET', meta, 'epoch', 'seq', 'owner', 'title', 'created_at', 'updated_at')
  if not state[1] then
    return fail('NOTFOUND', 'conversation not found')
  end
  local result = {state[1], state[2], state[3], state[4] and ('T' .. state[4]) or '', state[5], state[6]}
  for _, id in ipairs(redis.call('LRANGE', order, 0, -1)) do
    table.insert(result, redis.call('HGET', msgs, id))
    table.insert(result, redis.call('GET', text_key(id)) or '')
  end
  return result
end

if op == 'delete' then
  if redis.call('EXISTS', meta) == 0 then
    return fail('NOTFOUND', 'conversation not found')
  end
  local result = {}
  for _, id in ipairs(redis.call('LRANGE', order, 0, -1)) do
    redis.call('DEL', text_key(id), lease_key(id))
    table.insert(result, 'm' .. id)
  end
  for _, member in ipairs(redis.call('SMEMBERS', prefix .. 'turns')) do
    table.insert(result, 't' .. member)
  end
  redis.call('DEL', meta, log, msgs, order, prefix .. 'turns')
  redis.call('PUBLISH', channel, '{"deleted":true}')
  return result
end

if op == 'lease' then
  -- message id, holder, ttl (ms): take or renew; '0' when another holds it
  -- or the reply no longer streams.
  local id, holder = ARGV[6], ARGV[7]
  if redis.call('EXISTS', meta) == 0 then
    return fail('NOTFOUND', 'conversation not found')
  end
  if redis.call('HGET', meta, 'streaming') ~= id then
    return {'0'}
  end
  local current = redis.call('GET', lease_key(id))
  if current and current ~= holder then
    return {'0'}
  end
  redis.call('SET', lease_key(id), holder, 'PX', ARGV[8])
  -- A reply streaming for longer than half the conversation's lifetime
  -- extends it (touching every key each second would cost a long
  -- conversation dearly), so no key expires under a streaming reply.
  if redis.call('TTL', meta) < ttl / 2 then
    touch(ttl)
  end
  return {'1'}
end

if op == 'release' then
  -- message id, holder
  if redis.call('GET', lease_key(ARGV[6])) == ARGV[7] then
    redis.call('DEL', lease_key(ARGV[6]))
  end
  return {'ok'}
end

if op == 'claim' then
  -- message id, holder, ttl (ms): leases an orphaned streaming reply.
  local id = ARGV[6]
  if redis.call('HGET', meta, 'streaming') ~= id then
    return {'ended'}
  end
  if redis.call('SET', lease_key(id), ARGV[7], 'NX', 'PX', ARGV[8]) then
    return {'claimed'}
  end
  return {'held'}
end

if op == 'rebuild' then
  -- owner, title ('' or 'T' .. title), created_at, epoch, the lease holder
  -- of its streaming reply ('' for none) and the lease's ttl (ms), message
  -- count, then per message: id, message JSON without content, content,
  -- event JSON.
  if redis.call('EXISTS', meta) == 1 then
    return {redis.call('HGET', meta, 'epoch'), 'exists'}
  end
  local epoch = ARGV[9]
  redis.call('HSET', meta, 'owner', ARGV[6], 'created_at', ARGV[8], 'updated_at', now_iso,
    'epoch', epoch, 'seq', 0, 'streaming', '')
  if ARGV[7] ~= '' then
    redis.call('HSET', meta, 'title', string.sub(ARGV[7], 2))
  end
  for i = 0, tonumber(ARGV[12]) - 1 do
    local base = 13 + i * 4
    local id = ARGV[base]
    redis.call('HSET', msgs, id, ARGV[base + 1])
    redis.call('RPUSH', order, id)
    redis.call('SET', text_key(id), ARGV[base + 2])
    if cjson.decode(ARGV[base + 1])['status'] == 'streaming' then
      redis.call('HSET', meta, 'streaming', id)
      if ARGV[10] ~= '' then
        redis.call('SET', lease_key(id), ARGV[10], 'PX', ARGV[11])
      end
    end
    log_event(ARGV[base + 3], now_iso, history, channel)
  end
  touch(ttl)
  return {epoch, 'rebuilt'}
end

if op == 'message' then
  -- message id: its position, message JSON without content, and content.
  local id = ARGV[6]
  local stored = redis.call('HGET', msgs, id)
  if not stored then
    if redis.call('EXISTS', meta) == 0 then
      return fail('NOTFOUND', 'conversation not found')
    end
    return {}
  end
  return {tostring(redis.call('LPOS', order, id)), stored, redis.call('GET', text_key(id)) or ''}
end

if op == 'holder' then
  -- message id: the node generating it, or ''.
  return {redis.call('GET', lease_key(ARGV[6])) or ''}
end

return fail('CONFLICT', 'unknown operation ' .. tostring(op))
