-- apl.progress — one status line on stderr for every long phase (generation, scoring, training,
-- oracle calls): done/total, percent, rate, elapsed time and ETA.
--
--   local p = apl.progress.new("generate", #prompts)
--   for i = 1, #prompts do ...; p:update(i, string.format("loss %.3f", loss)) end
--   p:done()
--
-- On a terminal the line is redrawn in place (at most 10 times a second); elsewhere (a log
-- file, a pipe) a plain line is printed at most every `interval` seconds (default 5, or
-- APL_PROGRESS_INTERVAL). APL_QUIET=1 silences it, and so does being a rank other than 0 of
-- several (apl.dist): rank 0's line stands for all. total may be nil or 0 when unknown.
-- C loops report through the same object via apl_lua_progress_cb (lua/lprogress.c).
local sys = require "apl.core.sys"
local dist = require "apl.dist"

local M = {}
local Progress = {}
Progress.__index = Progress

local function hms(s)
    if s ~= s or s == math.huge or s < 0 then return "?" end
    s = math.floor(s + 0.5)
    local h, m = s // 3600, s % 3600 // 60
    if h > 0 then return string.format("%d:%02d:%02d", h, m, s % 60) end
    return string.format("%d:%02d", m, s % 60)
end

local function rate_str(r)
    if r >= 100 then return string.format("%.0f/s", r) end
    if r >= 1 then return string.format("%.1f/s", r) end
    if r > 0 then return string.format("%.1fs/it", 1 / r) end
    return "-/s"
end

-- The text of the line, without the carriage return or newline.
function Progress:line(now, final)
    local elapsed = now - self.t0
    local rate = elapsed > 0 and self.n / elapsed or 0
    local parts = { self.phase }
    if self.total and self.total > 0 then
        parts[#parts + 1] = string.format("%d/%d %3d%%", self.n, self.total,
            math.floor(100 * self.n / self.total))
    else
        parts[#parts + 1] = tostring(self.n)
    end
    parts[#parts + 1] = rate_str(rate)
    parts[#parts + 1] = "elapsed " .. hms(elapsed)
    if not final and self.total and self.total > 0 and rate > 0 then
        parts[#parts + 1] = "ETA " .. hms((self.total - self.n) / rate)
    end
    if self.extra and self.extra ~= "" then parts[#parts + 1] = self.extra end
    return table.concat(parts, "  ")
end

function Progress:emit(now, final)
    local text = self:line(now, final)
    if self.tty then
        -- \27[K clears what a longer previous line left to the right.
        io.stderr:write("\r", text, "\27[K", final and "\n" or "")
    else
        io.stderr:write(text, "\n")
    end
    io.stderr:flush()
    self.last = now
end

-- done: items finished so far; extra: free text appended to the line (loss, reward, ...).
function Progress:update(done, extra)
    self.n = done
    if extra ~= nil then self.extra = tostring(extra) end
    if self.quiet or self.finished then return end
    local now = sys.time()
    if now - self.last >= self.interval then self:emit(now, false) end
end

-- Prints the final line once (the total time and rate); later calls do nothing.
function Progress:done(extra)
    if self.finished then return end
    self.finished = true
    if extra ~= nil then self.extra = tostring(extra) end
    if not self.quiet then self:emit(sys.time(), true) end
end

function M.new(phase, total)
    assert(type(phase) == "string", "apl.progress.new: phase must be a string")
    assert(total == nil or type(total) == "number", "apl.progress.new: total must be a number")
    local tty = sys.isatty(2)
    local interval = tty and 0.1 or tonumber(os.getenv("APL_PROGRESS_INTERVAL")) or 5
    local now = sys.time()
    return setmetatable({
        phase = phase, total = total, n = 0, extra = nil,
        t0 = now, last = tty and now - interval or now, interval = interval,
        tty = tty, quiet = os.getenv("APL_QUIET") == "1" or not dist.is_root(), finished = false,
    }, Progress)
end

return M
