-- POST /users/ with a new valid user on every request. Usernames are distinct across runs and threads:
-- WRK_TAG (8 hex digits, one per wrk run) + the thread number + a per-thread counter. The server
-- chooses the ids, as it does for most clients.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local prefix, counter = "", 0
function init(args)
  prefix = string.format("b%s_%d_", os.getenv("WRK_TAG") or string.format("%08x", os.time()), thread_no or 0)
end

function request()
  counter = counter + 1
  local body = string.format('{"username":"%s%d","first_name":"Bench","last_name":"User"}', prefix, counter)
  return wrk.format("POST", "/users/", { ["Content-Type"] = "application/json" }, body)
end
