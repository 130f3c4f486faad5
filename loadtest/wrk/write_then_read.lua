-- POST /users/ then GET /users/{id} of the user just created, in turn: how a client reads its own write.
-- With SEND_TOKEN=1 the GET carries the create's X-Consistency-Token (read-your-writes); without it the
-- GET is a plain read, which a replica may answer from before the create (a 404: counted in status).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local prefix, counter, created = "", 0, {}
not_found, unavailable = 0, 0  -- per thread: GETs of a just-created user answered 404, and 503s

local threads_seen, report_setup, report_done = {}, setup, done
function setup(thread)
  report_setup(thread)
  threads_seen[#threads_seen + 1] = thread
end

function done(summary, latency, requests)
  local missing, busy = 0, 0
  for _, thread in ipairs(threads_seen) do
    missing = missing + thread:get("not_found")
    busy = busy + thread:get("unavailable")
  end
  io.write(string.format("WRT_RESULT not_found=%d unavailable=%d\n", missing, busy))
  report_done(summary, latency, requests)
end
local send_token = os.getenv("SEND_TOKEN") == "1"
function init(args)
  prefix = string.format("w%s_%d_", os.getenv("WRK_TAG") or string.format("%08x", os.time()), thread_no or 0)
end

function request()
  local last = table.remove(created, 1)
  if last then
    local headers = {}
    if send_token and last.token then headers["X-Consistency-Token"] = last.token end
    return wrk.format("GET", "/users/" .. last.id, headers)
  end
  counter = counter + 1
  local body = string.format('{"username":"%s%d","first_name":"Bench","last_name":"User"}', prefix, counter)
  return wrk.format("POST", "/users/", { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  if status == 404 then not_found = not_found + 1 end
  if status == 503 then unavailable = unavailable + 1 end
  if status == 201 then
    created[#created + 1] = { id = body:match('"id":"([^"]+)"'), token = headers["x-consistency-token"] }
  end
end
