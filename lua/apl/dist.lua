-- apl.dist — several processes, one run: libtorch's c10d (a TCPStore rendezvous, Gloo between
-- CPUs, NCCL between GPUs), set up the way torchrun sets it up.
--
--   local dist = require "apl.dist"
--   dist.rank(), dist.world_size()                 -- 0, 1 in a single process
--   dist.all_reduce(t)                             -- in place; "sum" (default), "avg", "max", "min"
--   dist.broadcast(t, 0)                           -- in place, rank 0's values everywhere
--   local all = dist.all_gather_object({n = 3})    -- {rank 0's, rank 1's, ...} (as JSON)
--   local labels = dist.from_root(judge, pairs)    -- rank 0 runs judge, every rank gets its result
--   local out = dist.map(prompts, generate_list)   -- each rank a block, gathered back in order
--
-- The process learns its place from RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT
-- (what `apl --nproc N`, torchrun and most launchers set), or from Slurm's SLURM_PROCID,
-- SLURM_NTASKS and SLURM_LOCALID with MASTER_ADDR/MASTER_PORT set by the batch script. Without
-- them (or with WORLD_SIZE=1) it is a single process and every call here is trivial: nothing is
-- started, no port is opened. The process group is joined on the first collective.
--
-- APL_DIST_TIMEOUT (seconds, default 300): how long the rendezvous and any collective wait for
-- the other ranks. A rank that dies or hangs makes the others fail within it, with an error that
-- names the rank (core/dist.h says how it is found). APL_DIST_BACKEND: "gloo" or "nccl" (default:
-- NCCL when CUDA is there, each rank on cuda:LOCAL_RANK; Gloo otherwise).
local core = require "apl.core.dist"

local M = {}

-- Values cross between ranks as what JSON can hold (tables, strings, numbers, booleans) but
-- packed with string.pack rather than as JSON text: lua-cjson writes at most 14 digits of a
-- double, and a reward or a log-prob must reach every rank bit for bit (integers stay integers).
local function pack(x, out, seen)
    local ty = type(x)
    if ty == "nil" then out[#out + 1] = "n"
    elseif ty == "boolean" then out[#out + 1] = x and "T" or "F"
    elseif math.type(x) == "integer" then out[#out + 1] = string.pack("<c1j", "i", x)
    elseif ty == "number" then out[#out + 1] = string.pack("<c1d", "d", x)
    elseif ty == "string" then out[#out + 1] = string.pack("<c1s4", "s", x)
    elseif ty == "table" then
        if seen[x] then error("apl.dist: a table that contains itself cannot be sent", 0) end
        seen[x] = true
        local n = 0
        for _ in pairs(x) do n = n + 1 end
        out[#out + 1] = string.pack("<c1I4", "t", n)
        for k, v in pairs(x) do pack(k, out, seen); pack(v, out, seen) end
        seen[x] = nil
    else
        error("apl.dist: a " .. ty .. " cannot be sent to another rank", 0)
    end
end

local function unpack_at(s, pos)
    local tag = s:sub(pos, pos)
    if tag == "n" then return nil, pos + 1 end
    if tag == "T" or tag == "F" then return tag == "T", pos + 1 end
    if tag == "i" then return string.unpack("<j", s, pos + 1) end
    if tag == "d" then return string.unpack("<d", s, pos + 1) end
    if tag == "s" then return string.unpack("<s4", s, pos + 1) end
    if tag ~= "t" then error("apl.dist: a message from another rank is corrupt (tag " .. tag .. ")", 0) end
    local n
    n, pos = string.unpack("<I4", s, pos + 1)
    local t, k, v = {}, nil, nil
    for _ = 1, n do
        k, pos = unpack_at(s, pos)
        v, pos = unpack_at(s, pos)
        t[k] = v
    end
    return t, pos
end

function M.encode(x)
    local out = {}
    pack(x, out, {})
    return table.concat(out)
end

function M.decode(s) return (unpack_at(s, 1)) end

local function env_int(names, def)
    for _, n in ipairs(names) do
        local v = os.getenv(n)
        if v and v ~= "" then
            local i = math.tointeger(tonumber(v))
            if not i or i < 0 then error(string.format("apl.dist: %s=%q is not a number >= 0", n, v), 0) end
            return i, n
        end
    end
    return def
end

-- The place of this process, from the environment (read once).
local place
local function where()
    if place then return place end
    local world, wname = env_int({ "WORLD_SIZE", "SLURM_NTASKS" }, 1)
    local rank, rname = env_int({ "RANK", "SLURM_PROCID" }, 0)
    local lrank = env_int({ "LOCAL_RANK", "SLURM_LOCALID" }, 0)
    if world < 1 then error("apl.dist: " .. wname .. " must be >= 1", 0) end
    if rank >= world then
        error(string.format("apl.dist: %s=%d is not below %s=%d", rname, rank, wname, world), 0)
    end
    local timeout = tonumber(os.getenv("APL_DIST_TIMEOUT") or "300")
    if not timeout or timeout <= 0 then error("apl.dist: APL_DIST_TIMEOUT must be a number of seconds > 0", 0) end
    place = { rank = rank, world_size = world, local_rank = lrank, timeout = timeout }
    return place
end

-- Joins the process group (once); a single process never does.
local joined = false
local function join()
    local p = where()
    if p.world_size == 1 or joined then return p end
    local addr, port = os.getenv("MASTER_ADDR"), os.getenv("MASTER_PORT")
    if not addr or addr == "" or not port or port == "" then
        error(string.format("apl.dist: rank %d of %d needs MASTER_ADDR and MASTER_PORT (the address and " ..
            "port of rank 0); `apl --nproc N` sets them on one machine", p.rank, p.world_size), 0)
    end
    local iport = math.tointeger(tonumber(port))
    if not iport or iport < 1 or iport > 65535 then
        error(string.format("apl.dist: MASTER_PORT=%q is not a port number", port), 0)
    end
    core.init { rank = p.rank, world_size = p.world_size, local_rank = p.local_rank, master_addr = addr,
                master_port = iport, timeout = p.timeout, backend = os.getenv("APL_DIST_BACKEND") }
    joined = true
    return p
end

-- Joins now (the first collective otherwise does): for what must be joined before it starts,
-- such as an optimizer that sums gradients over the ranks (opt:set_dist).
function M.join() join() end

function M.rank() return where().rank end
function M.world_size() return where().world_size end
function M.local_rank() return where().local_rank end
function M.is_root() return where().rank == 0 end
function M.active() return where().world_size > 1 end
-- "gloo" or "nccl" once joined; "none" in a single process.
function M.backend()
    if not M.active() then return "none" end
    join()
    return core.backend()
end

function M.barrier()
    if M.active() then join(); core.barrier() end
end

function M.all_reduce(t, op)
    if M.active() then join(); core.all_reduce(t, op or "sum") end
    return t
end

function M.broadcast(t, root)
    if M.active() then join(); core.broadcast(t, root or 0) end
    return t
end

-- Sums (or "max"/"min") of a list of numbers over the ranks, as doubles: a new list.
function M.all_reduce_numbers(list, op)
    if not M.active() then return table.move(list, 1, #list, 1, {}) end
    join()
    return core.all_reduce_numbers(list, op or "sum")
end

-- Every rank's x, in rank order (index rank + 1): tables, strings, numbers (exactly) and
-- booleans, as M.encode packs them; functions and userdata cannot cross.
function M.all_gather_object(x)
    if not M.active() then return { x } end
    join()
    local out = {}
    for i, s in ipairs(core.all_gather_bytes(M.encode(x))) do out[i] = M.decode(s) end
    return out
end

-- root's x on every rank (the others pass anything, usually nil).
function M.broadcast_object(x, root)
    if not M.active() then return x end
    join()
    root = root or 0
    local s = core.broadcast_bytes(where().rank == root and M.encode(x) or nil, root)
    return M.decode(s)
end

-- Rank 0 alone calls fn(...) (the oracle, the run folder); every rank returns its results. An
-- error on rank 0 is raised on every rank with the same message, so no rank is left waiting in a
-- collective for a rank that has stopped.
function M.from_root(fn, ...)
    if not M.active() then return fn(...) end
    local packed
    if M.is_root() then
        local r = table.pack(pcall(fn, ...))
        packed = r[1] and { ok = true, n = r.n - 1, values = { table.unpack(r, 2, r.n) } }
            or { ok = false, err = tostring(r[2]) }
    end
    local got = M.broadcast_object(packed, 0)
    if not got.ok then error(got.err, 0) end
    if packed then got = packed end -- rank 0 keeps its own values (the same, and no copy)
    return table.unpack(got.values, 1, got.n)
end

-- This rank's block of 1..n: first, last (last < first when it has none). Blocks are contiguous,
-- in rank order, and cut at multiples of `align` (default 1), so that work done in batches of
-- `align` items batches the same items whatever the number of ranks. rank and world_size
-- default to this process's.
function M.shard(n, align, rank, world_size)
    local p = where()
    rank, world_size, align = rank or p.rank, world_size or p.world_size, align or 1
    local units = -(-n // align)
    local lo = units * rank // world_size
    local hi = units * (rank + 1) // world_size
    return lo * align + 1, math.min(hi * align, n)
end

-- fn(block) on this rank's block of list (M.shard); fn returns one or more lists, each as long as
-- its block. Returns the lists gathered back over the whole of list, in order.
function M.map(list, fn, align)
    if not M.active() then return fn(list) end
    local first, last = M.shard(#list, align)
    local mine = table.pack(fn(table.move(list, first, last, 1, {})))
    local all = M.all_gather_object({ n = mine.n, values = { table.unpack(mine, 1, mine.n) } })
    local out = {}
    for k = 1, all[1].n do
        local whole = {}
        for _, part in ipairs(all) do
            local l = part.values[k] or {}
            table.move(l, 1, #l, #whole + 1, whole)
        end
        out[k] = whole
    end
    return table.unpack(out, 1, all[1].n)
end

-- {collectives =, bytes =, seconds =, grad_bytes =, grad_seconds =}: what this process has sent
-- through the process group (bytes of tensor data), and the gradient all-reduces among them.
function M.stats()
    if not M.active() then return { collectives = 0, bytes = 0, seconds = 0, grad_bytes = 0, grad_seconds = 0 } end
    join()
    return core.stats()
end

return M
