-- chatstream's conversation log on Redis: every operation that must be atomic
-- on one conversation, in one script (as Centrifugo's Redis engine does).
--
-- KEYS: 1 meta (hash), 2 log (stream), 3 msgs (hash: id -> message JSON
-- without content), 4 order (list of message ids), 5 the sentinel naming the
-- life of the data in the conversation's slot (see the fence below). The conversation's other keys are
-- named from meta's and share its hash tag: texts (hash: id -> content, for
-- every message but the streaming reply), pos (hash: id -> position in
-- order), turns (set of the client_msg_ids it remembers), and, for the one
-- reply streaming at a time, text:<id> (its text, appended to) and
-- lease:<id> (the node generating it).
-- ARGV: 1 the operation, 2 now (RFC 3339), 3 log entries kept, 4 time to
-- live (s), 5 the sentinel's value the calling node knows, 6 the most
-- messages a conversation holds, 7 the command that publishes events
-- (PUBLISH, or SPUBLISH on a Redis Cluster, where the conversation's
-- channel then lives in its shard); the operation's own arguments follow,
-- from ARGV[A + 1]. Each operation returns an array of strings, or an error
-- whose first word is NOTFOUND, FORBIDDEN, CONFLICT, TOOLARGE, STALE (a
-- turn's newest message is no longer the newest: the node reads it again)
-- or LOST.
--
-- Every key the script touches is in the conversation's hash slot, as Redis
-- Cluster requires: what is about a user or the whole cluster (the user's
-- streaming replies, the in-flight replies, the message index) is written
-- by the node beside the script.
--
-- Cost: a turn, a delta, an ending, a lease renewal and a message read each
-- touch a fixed number of keys and loop over nothing, so they cost the same
-- in a conversation of 2,000 messages as in one of 2. Only the operations
-- that are about every message loop over them: snapshot, delete, rebuild.

local A = 7
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

local now_iso, history, publish = ARGV[2], ARGV[3], ARGV[7]
-- Where the conversation's events are published: `cs:{<id>}:events`.
local channel = prefix .. 'events'

local function text_key(id)
  return prefix .. 'text:' .. id
end

-- Who generates a reply: the node id holding its lease.
local function lease_key(id)
  return prefix .. 'lease:' .. id
end

-- Numbers the event, adds it to the log and publishes it, in one step.
local function log_event(event_json)
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local time = redis.call('TIME')
  local ts = string.format('%.3f', tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000)
  local entry = '{"seq":' .. seq .. ',"ts":' .. ts .. ',"event":' .. event_json .. '}'
  redis.call('XADD', log, 'MAXLEN', history, seq .. '-1', 'e', entry)
  redis.call('HSET', meta, 'updated_at', now_iso)
  local epoch = redis.call('HGET', meta, 'epoch')
  redis.call(publish, channel, '{"epoch":"' .. epoch .. '","entry":' .. entry .. '}')
  return {tostring(seq), entry, epoch}
end

-- The token path: a delta that applies, to the streaming reply by its
-- lease's holder at the reply's length, runs here and nothing below (every
-- call of a script runs its body, and what it defines costs each call). Any
-- other delta goes on to `append` below, which checks it in full and
-- answers why it is refused, or that it was applied already.
if op == 'append' and ARGV[A + 1] == 'delta' then
  local id, holder, offset = ARGV[A + 2], ARGV[A + 6], tonumber(ARGV[A + 4])
  local lease = holder ~= '' and redis.call('GET', lease_key(id))
  if redis.call('HGET', meta, 'streaming') == id
    and (not lease or lease == holder)
    and (offset < 0 or redis.call('STRLEN', text_key(id)) == offset) then
    redis.call('APPEND', text_key(id), ARGV[A + 5])
    return log_event(ARGV[A + 3])
  end
end

local ttl = tonumber(ARGV[4])
local max_messages = tonumber(ARGV[6])
local texts, positions, turns = prefix .. 'texts', prefix .. 'pos', prefix .. 'turns'

local function fail(code, message)
  return redis.error_reply(code .. ' ' .. message)
end

-- The layout of a conversation's keys described above. Conversations
-- written before it kept every message's text in a text:<id> key of its
-- own, each expired again on every turn and ending; and their messages had
-- no parent_id (each followed the one before it). `migrate` moves the texts
-- into texts and pos and names each message's parent, once, at the first
-- write that renews such a conversation (touch) or the first read of it
-- whole; reads of one message fall back to the old keys until then.
local LAYOUT = '3'

local function migrate()
  local streaming = redis.call('HGET', meta, 'streaming')
  local previous = nil
  for i, id in ipairs(redis.call('LRANGE', order, 0, -1)) do
    redis.call('HSET', positions, id, i - 1)
    if id ~= streaming then
      local text = redis.call('GET', text_key(id))
      if text then
        redis.call('HSET', texts, id, text)
        redis.call('DEL', text_key(id))
      end
    end
    local stored = redis.call('HGET', msgs, id)
    if previous and stored and not string.find(stored, '"parent_id"', 1, true) then
      local message = cjson.decode(stored)
      message['parent_id'] = previous
      redis.call('HSET', msgs, id, cjson.encode(message))
    end
    previous = id
  end
  redis.call('HSET', meta, 'layout', LAYOUT)
end

-- Every key of the conversation lives as long as its newest turn allows.
-- A fixed set of keys, however long the conversation: nothing here grows
-- with its messages.
local function touch()
  if redis.call('HGET', meta, 'layout') ~= LAYOUT then
    migrate()
  end
  for _, key in ipairs({meta, log, msgs, order, texts, positions, turns}) do
    redis.call('EXPIRE', key, ttl)
  end
  local streaming = redis.call('HGET', meta, 'streaming')
  if streaming and streaming ~= '' then
    redis.call('EXPIRE', text_key(streaming), ttl)
  end
end

-- A message's text: in texts, or in its own key while it streams (and in a
-- conversation not yet migrated).
local function text_of(id)
  return redis.call('HGET', texts, id) or redis.call('GET', text_key(id)) or ''
end

local function create(owner, title, epoch, created_at)
  redis.call('HSET', meta, 'owner', owner, 'created_at', created_at, 'updated_at', now_iso,
    'epoch', epoch, 'seq', 0, 'streaming', '', 'layout', LAYOUT)
  if title ~= '' then
    redis.call('HSET', meta, 'title', string.sub(title, 2))
  end
  redis.call('EXPIRE', meta, ttl)
end

-- A new message: the user's (complete) or the assistant's (streaming).
local function add_message(id, role, message_json, content, event_json)
  if redis.call('HEXISTS', msgs, id) == 1 then
    return nil, fail('CONFLICT', 'message ' .. id .. ' already exists')
  end
  redis.call('HSET', msgs, id, message_json)
  local length = redis.call('RPUSH', order, id)
  redis.call('HSET', positions, id, length - 1)
  if role == 'assistant' then
    redis.call('SET', text_key(id), content)
    redis.call('HSET', meta, 'streaming', id)
  else
    redis.call('HSET', texts, id, content)
  end
  return log_event(event_json)
end

-- Checks that `id` is the streaming reply (`streaming`: meta's field).
local function check_streaming(id, streaming)
  if streaming == id then
    return nil
  end
  if redis.call('HEXISTS', msgs, id) == 1 then
    return fail('CONFLICT', 'message ' .. id .. ' is no longer streaming')
  end
  return fail('NOTFOUND', 'message ' .. id .. ' does not exist in this conversation')
end

if op == 'create' then
  -- owner, title ('' or 'T' .. title), epoch
  if redis.call('EXISTS', meta) == 1 then
    return fail('CONFLICT', 'conversation already exists')
  end
  create(ARGV[A + 1], ARGV[A + 2], ARGV[A + 3], now_iso)
  return {'ok'}
end

if op == 'turn' then
  -- owner, create flag, title, epoch, turn member, then for the user message
  -- (its id '' when the turn appends a reply alone) and the reply: id,
  -- message JSON, content, event JSON; then the reply's lease holder and its
  -- time to live in milliseconds; the place the messages go ('newest ' ..
  -- the newest message the node read, '' for none: the turn follows it,
  -- unless another turn came first; 'after ' .. a message id: it must
  -- exist; '': a first message); and for a reply that starts with text (a
  -- continued one), that text's delta event JSON and the text.
  local owner, create_new, title, epoch, member =
    ARGV[A + 1], ARGV[A + 2], ARGV[A + 3], ARGV[A + 4], ARGV[A + 5]
  local user_id, reply = ARGV[A + 6], ARGV[A + 10]
  local place, prefix_event, prefix = ARGV[A + 15], ARGV[A + 16], ARGV[A + 17]
  -- Every check comes before the first write: a refused turn appends nothing.
  if create_new == '1' then
    if redis.call('EXISTS', meta) == 1 then
      return fail('CONFLICT', 'conversation already exists')
    end
  else
    local state = redis.call('HMGET', meta, 'owner', 'streaming', 'layout')
    if not state[1] then
      return fail('NOTFOUND', 'conversation not found')
    end
    if state[1] ~= owner then
      return fail('FORBIDDEN', 'conversation belongs to another user')
    end
    if state[2] ~= '' then
      return fail('CONFLICT', 'a reply is still streaming in this conversation')
    end
    if state[3] ~= LAYOUT then
      migrate()
    end
    if string.sub(place, 1, 7) == 'newest ' then
      if (redis.call('LINDEX', order, -1) or '') ~= string.sub(place, 8) then
        return fail('STALE', 'another turn came first')
      end
    elseif string.sub(place, 1, 6) == 'after ' then
      if redis.call('HEXISTS', msgs, string.sub(place, 7)) == 0 then
        return fail('CONFLICT', 'the message to follow is not in this conversation')
      end
    end
  end
  local count = user_id == '' and 1 or 2
  if redis.call('LLEN', order) + count > max_messages then
    return fail('TOOLARGE', tostring(max_messages))
  end
  if create_new == '1' then
    create(owner, title, epoch, now_iso)
  end
  local first = nil
  if user_id ~= '' then
    local user, err = add_message(user_id, 'user', ARGV[A + 7], ARGV[A + 8], ARGV[A + 9])
    if err then
      return err
    end
    first = user
  end
  local added, err2 = add_message(reply, 'assistant', ARGV[A + 11], '', ARGV[A + 12])
  if err2 then
    return err2
  end
  first = first or added
  if prefix_event ~= '' then
    redis.call('APPEND', text_key(reply), prefix)
    log_event(prefix_event)
  end
  if member ~= '' then
    redis.call('SADD', turns, member)
  end
  redis.call('SET', lease_key(reply), ARGV[A + 13], 'PX', ARGV[A + 14])
  touch()
  return {redis.call('HGET', meta, 'epoch'), first[1]}
end

if op == 'rename' then
  -- title
  if redis.call('EXISTS', meta) == 0 then
    return fail('NOTFOUND', 'conversation not found')
  end
  redis.call('HSET', meta, 'title', ARGV[A + 1], 'updated_at', now_iso)
  return {'ok'}
end

if op == 'newest' then
  -- The id of the newest message, '' for none.
  if redis.call('EXISTS', meta) == 0 then
    return fail('NOTFOUND', 'conversation not found')
  end
  return {redis.call('LINDEX', order, -1) or ''}
end

if op == 'append' then
  -- kind, message id, event JSON, then for a delta: offset (-1: anywhere),
  -- text; for an ending: status, error ('' or 'E' .. error); then the
  -- writer's node id ('' for anyone: a cancel), which must hold the lease.
  local state = redis.call('HMGET', meta, 'owner', 'streaming')
  if not state[1] then
    return fail('NOTFOUND', 'conversation not found')
  end
  local owner, streaming = state[1], state[2]
  local kind, id, event_json, holder = ARGV[A + 1], ARGV[A + 2], ARGV[A + 3], ARGV[A + 6]
  if holder ~= '' then
    local current = redis.call('GET', lease_key(id))
    if current and current ~= holder then
      return fail('CONFLICT', 'reply ' .. id .. ' is generated by ' .. current)
    end
  end
  local err = check_streaming(id, streaming)
  if kind == 'delta' then
    local offset, text = tonumber(ARGV[A + 4]), ARGV[A + 5]
    -- A negative offset appends wherever the text ends.
    if offset >= 0 then
      -- An ended message's text is read whole, off the token path: only a
      -- retry or a refusal gets here.
      local ended = nil
      local length
      if id == streaming then
        length = redis.call('STRLEN', text_key(id))
      else
        ended = text_of(id)
        length = #ended
      end
      if length ~= offset then
        -- A retry of an append that did happen: same text at the same offset.
        if length == offset + #text then
          local tail = ended and string.sub(ended, offset + 1)
            or redis.call('GETRANGE', text_key(id), offset, -1)
          if tail == text then
            return {'applied'}
          end
        end
        if err then
          return err
        end
        return fail('CONFLICT', 'the reply has ' .. length .. ' bytes, not ' .. offset)
      end
    end
    if err then
      return err
    end
    redis.call('APPEND', text_key(id), text)
    return log_event(event_json)
  end
  if err then
    return err
  end
  local message = cjson.decode(redis.call('HGET', msgs, id))
  message['status'] = ARGV[A + 4]
  if ARGV[A + 5] ~= '' then
    message['error'] = string.sub(ARGV[A + 5], 2)
  end
  redis.call('HSET', msgs, id, cjson.encode(message))
  -- The text joins the others: the conversation keeps a fixed set of keys.
  redis.call('HSET', texts, id, redis.call('GET', text_key(id)) or '')
  redis.call('DEL', text_key(id), lease_key(id))
  redis.call('HSET', meta, 'streaming', '')
  touch()
  -- The owner, so that the node gives the reply's place back to its user.
  local result = log_event(event_json)
  table.insert(result, owner)
  return result
end

if op == 'read' then
  -- after: entries with a greater seq.
  local state = redis.call('HMGET', meta, 'epoch', 'seq')
  if not state[1] then
    return fail('NOTFOUND', 'conversation not found')
  end
  local after, seq = tonumber(ARGV[A + 1]), tonumber(state[2])
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
  local state = redis.call('HMGET', meta, 'epoch', 'seq', 'owner', 'title', 'created_at', 'updated_at',
    'layout')
  if not state[1] then
    return fail('NOTFOUND', 'conversation not found')
  end
  if state[7] ~= LAYOUT then
    migrate()
  end
  local result = {state[1], state[2], state[3], state[4] and ('T' .. state[4]) or '', state[5], state[6]}
  local ids = redis.call('LRANGE', order, 0, -1)
  -- A few reads per hundreds of messages rather than two per message; in
  -- slices, since a Lua call takes a bounded number of arguments.
  local slice = 500
  for first = 1, #ids, slice do
    local part = {unpack(ids, first, math.min(first + slice - 1, #ids))}
    local stored = redis.call('HMGET', msgs, unpack(part))
    local contents = redis.call('HMGET', texts, unpack(part))
    for i, id in ipairs(part) do
      table.insert(result, stored[i])
      table.insert(result, contents[i] or redis.call('GET', text_key(id)) or '')
    end
  end
  return result
end

if op == 'delete' then
  local state = redis.call('HMGET', meta, 'owner', 'streaming', 'layout')
  if not state[1] then
    return fail('NOTFOUND', 'conversation not found')
  end
  local streaming = state[2]
  local result = {}
  for _, id in ipairs(redis.call('LRANGE', order, 0, -1)) do
    if state[3] ~= LAYOUT then
      redis.call('DEL', text_key(id), lease_key(id))
    end
    table.insert(result, 'm' .. id)
  end
  if streaming ~= '' then
    redis.call('DEL', text_key(streaming), lease_key(streaming))
    table.insert(result, 's' .. streaming)
  end
  for _, member in ipairs(redis.call('SMEMBERS', turns)) do
    table.insert(result, 't' .. member)
  end
  redis.call('DEL', meta, log, msgs, order, texts, positions, turns)
  redis.call(publish, channel, '{"deleted":true}')
  return result
end

if op == 'lease' then
  -- message id, holder, ttl (ms): take or renew; '0' when another holds it
  -- or the reply no longer streams.
  local id, holder = ARGV[A + 1], ARGV[A + 2]
  local state = redis.call('HMGET', meta, 'owner', 'streaming')
  if not state[1] then
    return fail('NOTFOUND', 'conversation not found')
  end
  if state[2] ~= id then
    return {'0'}
  end
  local current = redis.call('GET', lease_key(id))
  if current and current ~= holder then
    return {'0'}
  end
  redis.call('SET', lease_key(id), holder, 'PX', ARGV[A + 3])
  -- A reply streaming for longer than half the conversation's lifetime
  -- extends it, so that no key expires under a streaming reply; not every
  -- second, though cheap, as most renewals have nothing to extend.
  if redis.call('TTL', meta) < ttl / 2 then
    touch()
  end
  return {'1'}
end

if op == 'release' then
  -- message id, holder
  if redis.call('GET', lease_key(ARGV[A + 1])) == ARGV[A + 2] then
    redis.call('DEL', lease_key(ARGV[A + 1]))
  end
  return {'ok'}
end

if op == 'claim' then
  -- message id, holder, ttl (ms): leases an orphaned streaming reply.
  local id = ARGV[A + 1]
  local state = redis.call('HMGET', meta, 'owner', 'streaming')
  if state[2] ~= id then
    return {'ended'}
  end
  if redis.call('SET', lease_key(id), ARGV[A + 2], 'NX', 'PX', ARGV[A + 3]) then
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
  local owner, epoch = ARGV[A + 1], ARGV[A + 4]
  create(owner, ARGV[A + 2], epoch, ARGV[A + 3])
  for i = 0, tonumber(ARGV[A + 7]) - 1 do
    local base = A + 8 + i * 4
    local id = ARGV[base]
    redis.call('HSET', msgs, id, ARGV[base + 1])
    redis.call('RPUSH', order, id)
    redis.call('HSET', positions, id, i)
    if cjson.decode(ARGV[base + 1])['status'] == 'streaming' then
      redis.call('SET', text_key(id), ARGV[base + 2])
      redis.call('HSET', meta, 'streaming', id)
      if ARGV[A + 5] ~= '' then
        redis.call('SET', lease_key(id), ARGV[A + 5], 'PX', ARGV[A + 6])
      end
    else
      redis.call('HSET', texts, id, ARGV[base + 2])
    end
    log_event(ARGV[base + 3])
  end
  touch()
  return {epoch, 'rebuilt'}
end

if op == 'message' then
  -- message id: its position, message JSON without content, and content.
  local id = ARGV[A + 1]
  local layout = redis.call('HGET', meta, 'layout')
  if layout and layout ~= LAYOUT then
    migrate()
  end
  local stored = redis.call('HGET', msgs, id)
  if not stored then
    if redis.call('EXISTS', meta) == 0 then
      return fail('NOTFOUND', 'conversation not found')
    end
    return {}
  end
  local position = redis.call('HGET', positions, id) or redis.call('LPOS', order, id)
  return {tostring(position), stored, text_of(id)}
end

if op == 'holder' then
  -- message id: the node generating it, or ''.
  return {redis.call('GET', lease_key(ARGV[A + 1])) or ''}
end

return fail('CONFLICT', 'unknown operation ' .. tostring(op))
