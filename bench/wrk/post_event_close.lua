-- As post_event.lua, with `Connection: close`: every request on a new
-- connection (over HTTPS: a full TLS handshake each), so the rate is
-- handshake-bound.
local counter = 0
local headers = { ["Content-Type"] = "application/cloudevents+json", ["Connection"] = "close" }

math.randomseed(os.time())
local prefix = string.format("wrkc%d", math.random(1, 1000000000))

request = function()
  counter = counter + 1
  local body = string.format(
    '{"specversion":"1.0","id":"%s-%d","source":"/inlet-client/bench","type":"inlet.bench.reading","time":"2026-11-29T06:00:00Z","datacontenttype":"application/json","data":{"sensor":"s-17","celsius":21.5,"seq":%d}}',
    prefix, counter, counter)
  return wrk.format("POST", "/events", headers, body)
end
