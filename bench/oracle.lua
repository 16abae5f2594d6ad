-- bench/oracle.lua — labelling throughput of the HTTP judge against a local server that answers
-- each request after 1 s: 128 pairs with 16 in flight should take about 8 s (<= 10 s).
-- Prints one JSON line: {"name":"oracle_labels_per_s","apl":<labels/s>,"unit":"labels/s"}.
--   ./apl bench/oracle.lua [--quick]      (--quick: 32 pairs)
local core = require "apl.core.oracle"
local root = package.apl_root or "."
local server = dofile(root .. "/tests/lua/oracle_server.lua")

local N, IN_FLIGHT, DELAY = 128, 16, 1.0
for _, a in ipairs(arg or {}) do if a == "--quick" then N = 32 end end

local s = server.start { delay = DELAY, lifetime = 60 }
local ok, err = pcall(function()
    local o = apl.oracle.openai { base_url = s.url, model = "bench-judge", template = "imdb",
        seed = 1, max_in_flight = IN_FLIGHT, timeout = 10, progress = false }
    local list = {}
    for i = 1, N do
        list[i] = { prompt = "review " .. i, a = "a good film " .. i, b = "a dull film " .. i }
    end
    local t0 = core.now()
    local labels = o:label(list)
    local dt = core.now() - t0
    local n = 0
    for _, l in ipairs(labels) do if l.preferred == 1 then n = n + 1 end end
    io.stderr:write(string.format("oracle: %d/%d labels correct in %.2f s (%d in flight, %.1f s answers)\n",
        n, N, dt, IN_FLIGHT, DELAY))
    -- the Python peer against the same server (fresh prompts: the judge keeps no cache)
    local p = io.popen(string.format("/usr/bin/python3 '%s/bench/oracle_baseline.py' '%s' %d %d",
        root, s.url, N, IN_FLIGHT))
    local base = require("cjson").decode(p:read("a"))
    p:close()
    io.stderr:write(string.format("oracle baseline (Python threads): %d/%d correct, %.2f labels/s\n",
        math.tointeger(base.correct), N, base.labels_per_s))
    print(string.format('{"name":"oracle_labels_per_s","apl":%.2f,"baseline":%.2f,"unit":"labels/s"}',
        N / dt, base.labels_per_s))
end)
s:stop()
if not ok then error(err, 0) end
