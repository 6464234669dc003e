-- 16 pipelined POST /events per write, each with a fresh id.
--
-- The generator must not be the limit of what it measures. Formatting
-- sixteen requests in Lua for every write (wrk.format builds a header table
-- and concatenates piece by piece) costs more than some servers take to
-- answer them, so this script formats the whole batch once, in `init`,
-- into one format string whose only holes are the ids, and every write
-- costs a single `string.format` call. Ids are zero-padded to a fixed
-- width, so every body (and its Content-Length) has the same size.
local depth = 16
local counter = 0
local batch

init = function(args)
  math.randomseed(os.time() + math.random(1, 1000000))
  local prefix = string.format("wrkp%09d", math.random(1, 999999999))
  local body = '{"specversion":"1.0","id":"' .. prefix .. '-%012d","source":"/inlet-client/bench",'
    .. '"type":"inlet.bench.reading","time":"2026-11-29T06:00:00Z","datacontenttype":"application/json",'
    .. '"data":{"sensor":"s-17","celsius":21.5}}'
  -- The length of a body once its id is filled in: `%012d` becomes 12 digits.
  local length = #body - #"%012d" + 12
  local head = "POST /events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/cloudevents+json\r\n"
    .. "Content-Length: " .. length .. "\r\n\r\n"
  batch = string.rep(head .. body, depth)
end

request = function()
  local c = counter
  counter = c + depth
  return batch:format(c + 1, c + 2, c + 3, c + 4, c + 5, c + 6, c + 7, c + 8,
    c + 9, c + 10, c + 11, c + 12, c + 13, c + 14, c + 15, c + 16)
end
