-- GET /users/{id} of existing users: ids read from IDS_FILE (one a line), picked at random per request.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local paths = {}
function init(args)
  math.randomseed(os.time() + 7919 * (thread_no or 0))
  for line in io.lines(os.getenv("IDS_FILE")) do
    if #line > 0 then paths[#paths + 1] = "/users/" .. line end
  end
  assert(#paths > 0, "IDS_FILE holds no ids")
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
