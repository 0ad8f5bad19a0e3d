"""Lua scripts of the Redis cache: each cache operation is one round trip.

All scripts take the namespace prefix (``cf:{ns}:``) as ARGV[1] and touch only keys under it,
which share one Redis Cluster slot thanks to the ``{ns}`` hash tag.
"""

# KEYS: value keys. ARGV: prefix, stats TTL.
# Returns the raw stored values, nil for misses; a value whose header names a generation that
# has moved on is stale: it is unlinked and counted as a miss.
GET_MANY = """
local prefix, out, hits, misses = ARGV[1], {}, 0, 0
for i, key in ipairs(KEYS) do
  local raw = redis.call('GET', key)
  local fresh = false
  if raw then
    fresh = true
    local header = string.sub(raw, 1, string.find(raw, '\\n', 1, true) - 1)
    for name, gen in string.gmatch(header, '(%S+) (%d+)') do
      if (redis.call('GET', prefix .. 'g:' .. name) or '0') ~= gen then
        fresh = false
        break
      end
    end
    if not fresh then redis.call('UNLINK', key) end
  end
  if fresh then out[i] = raw; hits = hits + 1 else out[i] = false; misses = misses + 1 end
end
local stats = prefix .. 's'
if hits > 0 then redis.call('HINCRBY', stats, 'hits', hits) end
if misses > 0 then redis.call('HINCRBY', stats, 'misses', misses) end
redis.call('EXPIRE', stats, ARGV[2])
return out
"""

# KEYS: value keys. ARGV: prefix, ttl, tags (space-separated), direct dependencies
# (space-separated), then one encoded body per key (each starts with the newline that ends
# the header). The header records the current generation of every tag and of every key in
# the transitive closure of the dependencies (cycles end the walk; at most 1,000 nodes).
SET_MANY = """
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local parts = {}
local function add(name)
  local gkey = prefix .. 'g:' .. name
  local gen = redis.call('GET', gkey)
  if gen then redis.call('EXPIRE', gkey, ttl) else gen = '0' end
  parts[#parts + 1] = name .. ' ' .. gen
end
for tag in string.gmatch(ARGV[3], '%S+') do add('t:' .. tag) end
local direct, queue, seen, head = {}, {}, {}, 1
for dep in string.gmatch(ARGV[4], '%S+') do direct[#direct + 1] = dep; queue[#queue + 1] = dep end
while head <= #queue and head <= 1000 do
  local dep = queue[head]
  head = head + 1
  if not seen[dep] then
    seen[dep] = true
    add('d:' .. dep)
    for _, parent in ipairs(redis.call('SMEMBERS', prefix .. 'd:' .. dep)) do
      if not seen[parent] then queue[#queue + 1] = parent end
    end
  end
end
local header = table.concat(parts, ' ')
for i, key in ipairs(KEYS) do
  redis.call('SET', key, header .. ARGV[4 + i], 'EX', ttl)
end
if #direct > 0 then
  for i, key in ipairs(KEYS) do
    local edges = prefix .. 'd:' .. string.sub(key, #prefix + 3)
    redis.call('SADD', edges, unpack(direct))
    redis.call('EXPIRE', edges, ttl)
  end
end
local stats = prefix .. 's'
redis.call('HINCRBY', stats, 'sets', #KEYS)
redis.call('EXPIRE', stats, ttl)
return #KEYS
"""

# KEYS: value keys just written by MSET in the same transaction, without a header (no tag,
# no dependency). ARGV: prefix, ttl. Gives them the TTL and counts the sets. Values stay out
# of Lua: for large untagged batches (the embedding cache's) ~1.5x faster than SET_MANY.
EXPIRE_MANY = """
local ttl = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl) end
local stats = ARGV[1] .. 's'
redis.call('HINCRBY', stats, 'sets', #KEYS)
redis.call('EXPIRE', stats, ttl)
return #KEYS
"""

# KEYS: the namespace's statistics hash (a Redis Cluster routes the script to its slot, which
# every key of the namespace shares). ARGV: prefix, ttl, then generation names to bump
# ('t:<tag>' or 'd:<key>'). A dependency bump also unlinks the key itself.
BUMP = """
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
for i = 3, #ARGV do
  local name = ARGV[i]
  redis.call('INCR', prefix .. 'g:' .. name)
  redis.call('EXPIRE', prefix .. 'g:' .. name, ttl)
  if string.sub(name, 1, 2) == 'd:' then
    redis.call('UNLINK', prefix .. 'k:' .. string.sub(name, 3))
  end
end
local stats = KEYS[1]
redis.call('HINCRBY', stats, 'invalidations', #ARGV - 2)
redis.call('EXPIRE', stats, ttl)
return #ARGV - 2
"""

# KEYS: the lock key. ARGV: the owner's token. Deletes the lock only if we still own it.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
