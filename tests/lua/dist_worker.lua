-- tests/lua/dist_worker.lua MODE OUTDIR — one rank of test_dist.lua's runs; writes
-- OUTDIR/<rank>.json (what it saw) and OUTDIR/<rank>.pid.
--   collectives  every collective of apl.dist, with values whose sums are exact in binary
--   kill R       rank R kills itself (SIGKILL) after the first barrier; the others wait in a second
--   hang R       rank R sleeps past the timeout before the second barrier
--   spin         every rank loops in Lua until stopped (Ctrl-C)
local dist = require "apl.dist"
local T = require "apl.tensor"
local cjson = require "cjson"

local mode, outdir, arg3 = arg[1], arg[2], arg[3]
local rank = dist.rank()

local function write(name, text)
    local f = assert(io.open(outdir .. "/" .. rank .. name, "w"))
    f:write(text)
    f:close()
end

write(".pid", io.open("/proc/self/stat"):read("l"):match("^(%d+)"))

local function collectives()
    local r = { rank = rank, world = dist.world_size(), backend = dist.backend() }
    local base = { rank + 1.5, -(rank + 1) * 2, 0.25 }
    for _, op in ipairs({ "sum", "avg", "max", "min" }) do
        r[op] = dist.all_reduce(T.new(base), op):totable()
    end
    local b = T.new({ rank * 10 + 1, rank * 10 + 2 })
    r.broadcast = dist.broadcast(b, 1):totable()
    local g = dist.all_gather_object({ rank = rank, x = 0.1 * (rank + 1), n = (1 << 53) + rank,
                                       s = string.rep("é", rank + 1), list = { 1, nil, 3 }, yes = true })
    -- checked here: the JSON this file writes keeps only 14 digits
    r.gathered = {}
    for k, v in ipairs(g) do
        r.gathered[k] = { rank = v.rank, s = v.s, yes = v.yes, list3 = v.list[3], list2_nil = v.list[2] == nil,
                          x_exact = v.x == 0.1 * k, n_exact = math.type(v.n) == "integer" and v.n == (1 << 53) + k - 1 }
    end
    local o = dist.broadcast_object(rank == 0 and { answer = 42, pi = math.pi } or nil, 0)
    r.object = { answer = o.answer, pi_exact = o.pi == math.pi }
    r.from_root = dist.from_root(function(a) return a * 2, "two" end, 21)
    local ok, err = pcall(dist.from_root, function() error("the oracle is down", 0) end)
    r.from_root_error = ok and "no error" or err
    local list = {}
    for i = 1, 7 do list[i] = i end
    r.first, r.last = dist.shard(#list, 2)
    r.map_a, r.map_b = dist.map(list, function(part)
        local a, bb = {}, {}
        for i, v in ipairs(part) do a[i], bb[i] = v * v, rank end
        return a, bb
    end, 2)
    r.numbers = dist.all_reduce_numbers({ 1, rank, 0.5 })
    dist.barrier()
    r.stats = dist.stats()
    return r
end

local function fault(kind, who)
    dist.barrier()
    if rank == who and kind == "kill" then os.execute("kill -9 " .. io.open("/proc/self/stat"):read("l"):match("^(%d+)")) end
    if rank == who and kind == "hang" then os.execute("sleep 60") end
    dist.barrier()
    return { rank = rank, passed = true }
end

local function spin()
    dist.barrier()
    write(".ready", "")
    local x = 0
    while true do x = x + 1 end
end

local result
if mode == "collectives" then result = collectives()
elseif mode == "kill" or mode == "hang" then result = fault(mode, tonumber(arg3))
elseif mode == "spin" then spin()
else error("dist_worker: unknown mode " .. tostring(mode)) end
write(".json", cjson.encode(result))
