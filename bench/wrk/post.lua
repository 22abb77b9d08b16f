-- POST bodies for wrk. BENCH_BODY: a fixed JSON body (one hot app id); BENCH_DISTINCT=1: every
-- request a new app id (a per-run nonce, the thread number and a per-thread counter, 40 hex
-- digits), so that nothing can be served from a cache.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"

local distinct = os.getenv("BENCH_DISTINCT") == "1"
local nonce = os.getenv("BENCH_NONCE") or "0000000000000000"
local fixed = os.getenv("BENCH_BODY") or "{}"
wrk.body = fixed

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local prefix
local counter = 0
function init(args)
  prefix = nonce .. string.format("%08x", tid or 0)
end

function request()
  if not distinct then
    return wrk.format()
  end
  counter = counter + 1
  local body = '{"app_id":"' .. prefix .. string.format("%08x", counter) .. '00000000"}'
  return wrk.format(nil, nil, nil, body)
end
