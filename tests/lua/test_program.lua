-- The apl program itself: command line, REPL over a pipe, require paths, Ctrl-C, start-up checks.
local T = require "tests.lib.test"

local root = T.root()
local APL = root .. "/apl"

-- Runs a shell command; returns its combined output and exit code (never raises).
local function run(cmd)
    local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\""))
    local out = p:read("a")
    p:close()
    local body, rc = out:match("^(.-)rc=(%d+)\n$")
    return body, tonumber(rc)
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local fs = require "apl.fs"
local write_file = fs.write

local function read_file(path) return fs.read(path) or "" end

-- Feeds `input` to the REPL on a pipe; returns stdout, stderr, exit code.
local function repl(input, flags)
    local d = T.tmpdir()
    write_file(d .. "/in", input)
    local _, rc = run(string.format("%s %s < %s/in > %s/out 2> %s/err", APL, flags or "", d, d, d))
    return read_file(d .. "/out"), read_file(d .. "/err"), rc
end

T.case("script gets arg table and ... in order", function()
    local d = T.tmpdir()
    write_file(d .. "/s.lua", [[
print(#arg, arg[0]:match("[^/]+$"), arg[1], arg[2], arg[3], select("#", ...), ...)
print(type(apl), arg[-1]:match("[^/]+$"))
]])
    local out = T.sh(APL .. " " .. d .. "/s.lua a 'b c' 3")
    T.eq(out, "3\ts.lua\ta\tb c\t3\t3\ta\tb c\t3\ntable\tapl\n")
end)

T.case("-e runs code, several -e in order, then the script", function()
    T.eq(T.sh(APL .. " -e 'print(6 * 7)'"), "42\n")
    local d = T.tmpdir()
    write_file(d .. "/s.lua", "print(x + 1)\n")
    T.eq(T.sh(APL .. " -e 'x = 1' -e 'print(x)' " .. d .. "/s.lua"), "1\n2\n")
end)

T.case("--version names libtorch, the BLAS file, threads and CUDA", function()
    local out = T.sh(APL .. " --version")
    local v = apl.version_info() -- this test runs in apl too
    T.ok(v.torch:find("^%d+%.%d+"), v.torch)
    T.ok(out:find("apl " .. v.apl .. "\n", 1, true), out)
    T.ok(out:find("\nlibtorch " .. v.torch .. "\n", 1, true), out)
    T.ok(out:find("\nBLAS: " .. v.blas .. " " .. v.blas_path, 1, true), out)
    local path = v.blas_path
    T.ok(out:find("\nthreads: %d+"), out)
    T.ok(out:find("\nCUDA: "), out)
    -- The detected file is the one Debian's alternative points to.
    local alt = io.popen("readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu 2>/dev/null"):read("l")
    if alt and alt ~= "" then T.eq(path, alt) end
end)

T.case("reference BLAS: loud warning, APL_QUIET_BLAS=1 silences it", function()
    local ref = "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"
    if not io.open(ref) then T.skip("reference BLAS not installed") end
    -- Preloading the Netlib library makes it the sgemm_ that libtorch binds to.
    local out = T.sh("LD_PRELOAD=" .. ref .. " " .. APL .. " -e 'print(apl.version_info().blas)'")
    T.ok(out:find("WARNING", 1, true) and out:find("REFERENCE BLAS", 1, true), out)
    T.ok(out:find("update-alternatives", 1, true), out)
    T.ok(out:find("\nreference\n", 1, true), out)
    -- (The -e test checks that there is no warning without the reference BLAS.)
    local quiet = T.sh("APL_QUIET_BLAS=1 LD_PRELOAD=" .. ref .. " " .. APL .. " -e 'print(1)'")
    T.eq(quiet, "1\n")
end)

T.case("--help, and bad options exit 2", function()
    local out = T.sh(APL .. " --help")
    T.ok(out:find("usage: apl", 1, true) and out:find("--threads", 1, true), out)
    local msg, rc = run(APL .. " --bogus")
    T.eq(rc, 2)
    T.ok(msg:find("unknown option '--bogus'", 1, true), msg)
    msg, rc = run(APL .. " --threads zero -e ''")
    T.eq(rc, 2)
    T.ok(msg:find("--threads", 1, true), msg)
end)

T.case("threads: cores by default, APL_THREADS, --threads wins", function()
    if not os.getenv("APL_THREADS") then -- then this test runner got the default
        T.eq(apl.get_num_threads(), tonumber(T.sh("nproc")))
    end
    T.eq(T.sh("APL_THREADS=3 " .. APL .. " -e 'print(apl.get_num_threads())'"), "3\n")
    T.eq(T.sh("APL_THREADS=3 " .. APL .. " --threads 1 -e 'print(apl.get_num_threads())'"), "1\n")
end)

-- The runner's own environment already has what apl adds; children start without it here.
local FRESH = "env -u OMP_WAIT_POLICY -u OPENBLAS_CORETYPE -u APL_SET_ENV "

T.case("OMP_WAIT_POLICY=PASSIVE reaches libgomp (spin count 0), unless the user set it", function()
    local out = T.sh(FRESH .. "OMP_DISPLAY_ENV=VERBOSE " .. APL .. " -e 'print(os.getenv(\"OMP_WAIT_POLICY\"))'")
    T.ok(out:find("GOMP_SPINCOUNT = '0'", 1, true), "libgomp saw: " .. out)
    T.ok(out:find("\nPASSIVE\n", 1, true), out)
    out = T.sh(FRESH .. "OMP_WAIT_POLICY=ACTIVE OMP_DISPLAY_ENV=VERBOSE " .. APL .. " -e ''")
    T.ok(out:find("OMP_WAIT_POLICY = 'ACTIVE'", 1, true), out)
end)

T.case("OpenBLAS kernels follow the CPU's features, unless OPENBLAS_CORETYPE is set", function()
    if apl.version_info().blas ~= "OpenBLAS" then T.skip("libtorch is not calling OpenBLAS") end
    local flags = io.open("/proc/cpuinfo"):read("a"):match("\nflags%s*:([^\n]*)") or ""
    if not flags:find(" avx2") then T.skip("no AVX2: OpenBLAS's own choice stands") end
    local code = quote("print(apl.version_info().blas_detail)")
    local detail = T.sh(FRESH .. APL .. " -e " .. code)
    local want = flags:find(" avx512_bf16") and "Cooperlake" or flags:find(" avx512bw") and "SkylakeX" or "Haswell"
    T.ok(detail:find(" " .. want .. " ", 1, true), detail)
    T.ok(not detail:find("Prescott", 1, true), detail)
    T.ok(T.sh(FRESH .. "OPENBLAS_CORETYPE=Prescott " .. APL .. " -e " .. code):find(" Prescott ", 1, true))
end)

T.case("require finds the project's modules from any directory; cjson", function()
    local code = [[print(type(require("tests.lib.test").case), package.apl_root)
local c = require "cjson"; print(c.encode({1, 2}), c.decode("[3]")[1] == 3)]]
    T.eq(T.sh("cd /tmp && " .. APL .. " -e " .. quote(code)), "function\t" .. root .. "\n[1,2]\ttrue\n")
end)

T.case("a script error exits 1 with a traceback", function()
    local d = T.tmpdir()
    write_file(d .. "/bad.lua", "local function f() error('boom') end\nf()\n")
    local out, rc = run(APL .. " " .. d .. "/bad.lua")
    T.eq(rc, 1)
    T.ok(out:find("bad.lua:1: boom", 1, true), out)
    T.ok(out:find("stack traceback:", 1, true) and out:find("in local 'f'", 1, true), out)
    out, rc = run(APL .. " -e 'x ='")
    T.eq(rc, 1)
    T.ok(out:find("unexpected symbol near <eof>", 1, true), out)
    out, rc = run(APL .. " " .. d .. "/missing.lua")
    T.eq(rc, 1)
    T.ok(out:find("cannot open", 1, true), out)
end)

T.case("Lua errors never crash the process", function()
    -- Errors with odd objects, in __gc, in __tostring, deep recursion, out of memory: each one
    -- is reported and the REPL keeps going.
    local input = table.concat({
        "error({})",
        "error(setmetatable({}, {__tostring = function() return 'custom' end}))",
        "setmetatable({}, {__tostring = function() error('in tostring') end})",
        "local function r() return 1 + r() end r()",
        "string.rep('x', 1 << 40)",
        "setmetatable({}, {__gc = function() error('in gc') end}) collectgarbage()",
        "print('still here')",
    }, "\n") .. "\n"
    local out, err, rc = repl(input)
    T.eq(rc, 0, err)
    T.eq(out, "still here\n")
    T.ok(err:find("(error object is a table value)", 1, true), err)
    T.ok(err:find("custom", 1, true), err)
    T.ok(err:find("in tostring", 1, true), err)
    T.ok(err:find("stack overflow", 1, true), err)
    T.ok(err:find("not enough memory", 1, true) or err:find("too large", 1, true), err)
end)

T.case("REPL: expressions print, multi-line input, errors keep the session", function()
    local out, err, rc = repl(table.concat({
        "1 + 2",
        "1, 'a', nil",
        "function double(x)",
        "  return 2 * x",
        "end",
        "double(21)",
        "error('boom')",
        "print('after')",
        "x = {",
        "  n = 5 }",
        "x.n",
        "apl.tensor ~= nil",
    }, "\n") .. "\n")
    T.eq(rc, 0)
    T.eq(out, "3\n1\ta\tnil\n42\nafter\n5\ntrue\n")
    T.ok(err:find("stdin:1: boom", 1, true) and err:find("stack traceback:", 1, true), err)
end)

T.case("REPL prints tensors through __tostring", function()
    local out = repl("apl.tensor.ones({2}), 'x'\n")
    T.eq(out, tostring(apl.tensor.ones({2})) .. "\tx\n")
end)

T.case("REPL shows tables by their fields (apl.show): an oracle's stats, not an address", function()
    local out, err, rc = repl(table.concat({
        "o = apl.oracle.lua(function() return 'A' end, {seed = 1})",
        "n = #o:label{{prompt = 'p', a = 'x', b = 'y'}}",
        "o:stats()",
        "{b = 2, a = 'x', 1.5}",
        "'bare', {}",
        "apl.show({z = {1}})",
        "'after apl.show'",
    }, "\n") .. "\n")
    T.eq(rc, 0, err)
    T.ok(not out:find("table: 0x", 1, true), out)
    local stats = out:match("^(%b{})\n")
    T.ok(stats and stats:find("\n  labels = 1,\n", 1, true) and stats:find("\n  cost = 0.0,\n", 1, true), out)
    T.eq(out:sub(#stats + 1), '\n{1.5, a = "x", b = 2}\nbare\t{}\n{z = {1}}\nafter apl.show\n')
end)

T.case("REPL: with apl.show unloadable, values print with tostring and the session goes on", function()
    local d = T.tmpdir()
    write_file(d .. "/s.lua", "package.loaded['apl.show'] = nil; package.path = ''; package.cpath = ''\n")
    local out, err, rc = repl("{}\n1 + 1\n", "-i " .. d .. "/s.lua")
    T.eq(rc, 0, err)
    T.ok(out:find("^table: 0x%x+\n2\n$"), out)
    T.ok(err:find("values print with tostring: apl.show did not load", 1, true), err)
end)

T.case("REPL: r:pairs{n = 3} prints 3 rows and nothing after them; rows come back when assigned", function()
    local d = T.tmpdir() .. "/run"
    local run = require("apl.runfolder").create(d, { acquisition = "random", seed = 1 })
    for i = 1, 25 do
        run:append("acquired", { step = 1 + i // 10, prompt = "prompt " .. i, a = "a", b = "b", score = i, label = 1 })
    end
    run:append("eval", { labels = 25, winrate = 0.5, stderr = 0.1, n = 4 })
    run:close()
    local out, err, rc = repl(table.concat({
        "r = apl.inspect.run(" .. string.format("%q", d) .. ")",
        "r:pairs{n = 3, sort = 'score'}",
        "rows = r:pairs{n = 2}",
        "#rows, rows[1].prompt",
        "r:evals()",
        "r:pairs{limt = 3}",
    }, "\n") .. "\n")
    T.eq(rc, 0, err)
    local lines = {}
    for l in out:gmatch("[^\n]*\n") do lines[#lines + 1] = l end
    T.eq(#lines, 1 + 3 + 1 + 1 + 2 + 1 + 1 + 2, out) -- header, rows, footer; again; the values; evals
    T.ok(lines[2]:find("^   3 ") and lines[2]:find("prompt 25", 1, true), lines[2])
    T.ok(lines[5]:find("^3 of 25 pairs"), lines[5])
    T.eq(lines[6]:match("^step "), "step ", "the next table starts: nothing printed after the first")
    T.ok(lines[9]:find("^2 of 25 pairs"), lines[9])
    T.eq(lines[10], "2\tprompt 1\n")
    T.eq(lines[12], "      25    0.500    0.100      4\n", out)
    T.ok(not out:find("table: 0x", 1, true), out)
    T.ok(err:find("r:pairs: unknown option 'limt'", 1, true), err)
end)

T.case("-i runs the script, then the REPL sees its globals", function()
    local d = T.tmpdir()
    write_file(d .. "/s.lua", "answer = 40 + 2\n")
    local out, _, rc = repl("answer\n", "-i " .. d .. "/s.lua")
    T.eq(rc, 0)
    T.eq(out, "42\n")
end)

-- Starts `apl ARGS` in the background with stdin from a fifo, waits for it to print "ready",
-- sends SIGINT, then sends `after` on stdin and closes it. Returns stdout, stderr, exit code.
local function interrupt(args, program, after)
    local d = T.tmpdir()
    write_file(d .. "/prog", program)
    local script = string.format([[
cd %s && mkfifo in
%s %s < in > out 2> err &
pid=$!
exec 3> in
cat prog >&3
n=0; until grep -q ready out 2>/dev/null; do sleep 0.05; n=$((n+1)); [ $n -gt 400 ] && break; done
sleep 0.2
kill -INT $pid
sleep 0.2
printf '%%s' %s >&3
exec 3>&-
wait $pid
echo "rc=$?" >> out
]], d, APL, args, quote(after))
    write_file(d .. "/t.sh", script)
    os.execute("sh " .. d .. "/t.sh")
    local out = read_file(d .. "/out")
    local rc = tonumber(out:match("rc=(%d+)\n$"))
    return out:gsub("rc=%d+\n$", ""), read_file(d .. "/err"), rc
end

T.case("Ctrl-C in a script: 'interrupted' with a traceback, exit 130", function()
    local out, err, rc = interrupt("-e " .. quote("print('ready') io.stdout:flush() while true do end"), "", "")
    T.eq(rc, 130, err)
    T.eq(out, "ready\n")
    T.ok(err:find("(command line):1: interrupted", 1, true), err)
    T.ok(err:find("stack traceback:", 1, true), err)
end)

T.case("Ctrl-C in the REPL stops the loop, the session goes on", function()
    local out, err, rc = interrupt("", "print('ready') io.stdout:flush() while true do end\n",
        "print('alive', apl.interrupted())\n")
    T.eq(rc, 0, err)
    T.eq(out, "ready\nalive\tfalse\n")
    T.ok(err:find("stdin:1: interrupted", 1, true), err)
end)

T.case("sys: clock, memory, grad mode, no_grad restores on error", function()
    -- Only lower bounds: how long a loaded machine takes is no failure (speed is make bench's).
    local t0 = apl.clock()
    os.execute("sleep 0.2")
    local t1 = apl.clock()
    T.ok(t1 - t0 >= 0.19, "seconds of wall time: " .. (t1 - t0))
    T.ok(apl.clock() >= t1, "monotonic")
    local rss, peak = apl.rss_mb(), apl.peak_rss_mb()
    T.ok(rss > 1 and peak >= rss, string.format("rss %g peak %g", rss, peak))
    local big = string.rep("x", 64 << 20)
    T.ok(apl.peak_rss_mb() >= rss + 60, "peak grows with a 64 MiB string")
    big = nil
    local sys = require "apl.core.sys"
    T.eq(sys.grad_enabled(), true)
    local a, b = apl.no_grad(function(x) return sys.grad_enabled(), x end, 7)
    T.eq({ a, b }, { false, 7 })
    T.eq(sys.grad_enabled(), true)
    T.assert_error_match(function() apl.no_grad(error, "inside") end, "inside")
    T.eq(sys.grad_enabled(), true, "restored after an error")
    local prev = apl.get_num_threads()
    apl.set_num_threads(1)
    T.eq(apl.get_num_threads(), 1)
    apl.set_num_threads(prev)
    T.assert_error_match(function() apl.set_num_threads(0) end, "thread count")
    T.eq(apl.interrupted(), false)
    local v = apl.version_info()
    T.eq(type(v.cuda), "boolean")
    T.eq(v.threads, prev)
end)

T.case("progress: plain lines off a terminal, final line, APL_QUIET", function()
    local prog = [[
local p = apl.progress.new("score", 4)
for i = 1, 4 do p:update(i, "loss 0.5") end
p:done()
p:done()
local q = apl.progress.new("stream")
q:update(3)
q:done()
]]
    local d = T.tmpdir()
    write_file(d .. "/p.lua", prog)
    run("APL_PROGRESS_INTERVAL=0 " .. APL .. " " .. d .. "/p.lua 2> " .. d .. "/err")
    local out = read_file(d .. "/err")
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    T.eq(#lines, 7, out) -- 4 updates + done for "score", 1 update + done for "stream"
    T.ok(lines[1]:find("^score  1/4  25%%  .*elapsed %d+:%d%d  ETA %d+:%d%d  loss 0.5$"), lines[1])
    T.ok(lines[5]:find("^score  4/4 100%%  .*elapsed %d+:%d%d  loss 0.5$"), lines[5])
    T.ok(lines[7]:find("^stream  3  "), lines[7])
    T.eq(T.sh("APL_QUIET=1 APL_PROGRESS_INTERVAL=0 " .. APL .. " " .. d .. "/p.lua"), "")
    -- The default interval prints only the final line of a short phase.
    run(APL .. " " .. d .. "/p.lua 2> " .. d .. "/err")
    out = read_file(d .. "/err")
    T.eq(select(2, out:gsub("\n", "")), 2, out)
end)

-- The terminal REPL (readline) driven through a pseudo-terminal by Debian's python3.
local PTY_DRIVER = [=[
import os, pty, select, sys, time
apl, home = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.environ["HOME"] = home
    os.execv(apl, [apl])
buf = b""
def expect(pat, timeout=20):
    global buf
    end = time.time() + timeout
    while pat.encode() not in buf:
        if time.time() > end:
            sys.exit("timeout waiting for %r; got %r" % (pat, buf))
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            buf += os.read(fd, 4096)
    i = buf.index(pat.encode()) + len(pat)
    seen, buf = buf[:i], buf[i:]
    return seen.decode(errors="replace")
def send(s):
    os.write(fd, s.encode())
expect("> ")
send("6*7\r"); print("expr", "42" in expect("> "))
send("abc"); time.sleep(0.2); send("\x03"); print("clear", "^C" in expect("> "))
send("function f()\r"); expect(">> "); send("\x03"); expect("> ")
send("f == nil\r"); print("cancelled", "true" in expect("> "))
send("print('go') while true do end\r"); expect("go"); time.sleep(0.3); send("\x03")
print("interrupted", "interrupted" in expect("> "))
send("'alive'\r"); print("alive", "alive" in expect("> "))
send("apl.vers\t\r"); print("complete", "0.1.0" in expect("> "))
send("s = 'x'\r"); expect("> "); send("s:upp\t()\r"); print("method", "X" in expect("> "))
send("\x04")
_, status = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(status))
]=]

T.case("terminal REPL: Ctrl-C clears the line, interrupts a loop; completion; history saved", function()
    local py = io.open("/usr/bin/python3")
    if not py then T.skip("no /usr/bin/python3 to drive a pseudo-terminal") end
    py:close()
    local d = T.tmpdir()
    write_file(d .. "/repl_driver.py", PTY_DRIVER)
    local out = T.sh("/usr/bin/python3 " .. d .. "/repl_driver.py " .. APL .. " " .. d)
    T.eq(out, "expr True\nclear True\ncancelled True\ninterrupted True\nalive True\ncomplete True\n"
        .. "method True\nexit 0\n")
    T.eq(read_file(d .. "/.apl_history"),
        "6*7\nf == nil\nprint('go') while true do end\n'alive'\napl.version\ns = 'x'\ns:upper()\n")
end)
