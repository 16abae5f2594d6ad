-- tests/lua/oracle_server.lua — starts tests/ref/judge_server.py for the oracle tests and the
-- oracle benchmark, and reads what it logged.
--
--   local server = dofile(T.root() .. "/tests/lua/oracle_server.lua")
--   local s = server.start{delay = 0.2}     -- s.url, s.log, s.pid
--   ... apl.oracle.judge{base_url = s.url, backend = "openai" | "anthropic", ...} ...
--   local reqs = s:requests()               -- every request the server saw, decoded
--   s:stop()
local cjson = require "cjson"
local core = require "apl.core.oracle"

local M = {}
local Server = {}
Server.__index = Server

local function tmpdir()
    local p = assert(io.popen("mktemp -d /tmp/apl-oracle.XXXXXX"))
    local d = p:read("l")
    p:close()
    return d
end

-- opts: delay, hang, retry_after, lifetime (seconds), dir (where the port file and log go).
function M.start(opts)
    opts = opts or {}
    local dir = opts.dir or tmpdir()
    local root = package.apl_root or "."
    local s = setmetatable({ dir = dir, log = dir .. "/server.jsonl" }, Server)
    local cmd = string.format(
        "%s %s/tests/ref/judge_server.py --port-file %s/port --log %s " ..
        "--delay %g --hang %g --retry-after '%s' --lifetime %g >%s/server.out 2>&1 &",
        require("tests.lib.test").PYTHON, root, dir, s.log, opts.delay or 0, opts.hang or 3, opts.retry_after or "1",
        opts.lifetime or 60, dir)
    assert(os.execute(cmd))
    local t0 = core.now()
    while core.now() - t0 < 10 do
        local f = io.open(dir .. "/port")
        if f then
            s.port, s.pid = f:read("n", "n")
            f:close()
            if s.port then break end
        end
        core.sleep(0.02)
    end
    if not s.port then error("judge server did not start: see " .. dir .. "/server.out") end
    s.url = "http://127.0.0.1:" .. math.tointeger(s.port) .. "/v1"
    return s
end

-- Every logged request, in arrival order: {seq, path, attempt, in_flight, action, auth (the
-- Authorization header), api_key (x-api-key), headers, body, model, user (the user message's text,
-- whichever protocol sent it)}.
function Server:requests()
    local out = {}
    local f = io.open(self.log)
    if not f then return out end
    for line in f:lines() do
        local e = cjson.decode(line)
        local body = cjson.decode(e.body)
        e.model = body.model
        for _, m in ipairs(body.messages) do if m.role == "user" then e.user = m.content end end
        out[#out + 1] = e
    end
    f:close()
    return out
end

function Server:stop()
    if self.pid then os.execute("kill " .. math.tointeger(self.pid) .. " 2>/dev/null") end
    self.pid = nil
end

return M
