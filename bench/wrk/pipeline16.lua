-- 16 pipelined POST /events per write, each with a fresh id.
local depth = 16
local counter = 0
local headers = { ["Content-Type"] = "application/cloudevents+json" }
math.randomseed(os.time())
local prefix = string.format("wrkp%d", math.random(1, 1000000000))

request = function()
  local r = {}
  for i = 1, depth do
    counter = counter + 1
    local body = string.format(
      '{"specversion":"1.0","id":"%s-%d","source":"/inlet-client/bench","type":"inlet.bench.reading","time":"2026-11-29T06:00:00Z","datacontenttype":"application/json","data":{"sensor":"s-17","celsius":21.5,"seq":%d}}',
      prefix, counter, counter)
    r[i] = wrk.format("POST", "/events", headers, body)
  end
  return table.concat(r)
end
