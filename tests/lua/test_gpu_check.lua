-- tools/gpu-bundle.sh and tools/gpu-check.sh, the parts that need no GPU: the bundle (its
-- contents and size check), unpacking the debs into a prefix (dpkg-deb and the ar + Python way),
-- a program built with the script's flags taking every header and library from the prefix, the
-- argument handling, and bench/gpu.lua's report on tiny models on the CPU.
-- The whole build from a bundle (tools/gpu-check.sh --no-gpu) takes minutes on 2 cores: it runs
-- with APL_TEST_GPU_CHECK_BUILD=1.
local T = require "tests.lib.test"
local cjson = require "cjson"

local ROOT = T.root()
local CHECK = ROOT .. "/tools/gpu-check.sh"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Output and exit code of a command (stderr included); never raises.
local function run(cmd)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("a")
    local _, _, code = p:close()
    return out, code
end

local function exists(path) return os.execute("test -e " .. q(path)) == true end

-- Under `make asan-test` (libasan in this process) the project root is build/asan, not the git
-- checkout that gpu-bundle.sh archives; the cases built on the bundle run only shell scripts,
-- gcc and dpkg-deb, no apl code, so they skip there (bench/gpu.lua's case runs apl and stays).
local maps = io.open("/proc/self/maps")
local ASAN = maps and maps:read("a"):find("/libasan", 1, true) ~= nil
if maps then maps:close() end

-- The bundle, made once: build/apl-gpu-bundle.tar.gz as `make gpu-bundle` makes it (debs from
-- apt's cache or the network; skipped when neither has them).
local bundle
local function make_bundle()
    if ASAN then T.skip("the ASan build's root is not the git checkout gpu-bundle.sh archives; no apl code runs here") end
    if bundle then return bundle end
    -- a tarball of its own: another run of the suite in this tree may be making one too
    local tarball = T.tmpdir() .. "/apl-gpu-bundle.tar.gz"
    local out, code = run("bash " .. q(ROOT .. "/tools/gpu-bundle.sh") .. " " .. q(tarball))
    if code ~= 0 and (out:find("no network", 1, true) or out:find("no candidate", 1, true)) then
        T.skip("the debs are neither cached nor downloadable: " .. out)
    end
    T.ok(code == 0, "gpu-bundle.sh failed:\n" .. out)
    bundle = { tarball = tarball, debs = ROOT .. "/build/gpu-bundle/debs", out = out }
    return bundle
end

-- Unpacks the bundle's debs into a fresh prefix with the script; env picks the unpacker. The
-- prefix of the default unpacker is made once and shared by the cases that only read it.
local shared_prefix
local function unpack(env)
    if not env and shared_prefix then return shared_prefix end
    local b = make_bundle()
    local prefix = T.tmpdir() .. "/prefix"
    local out, code = run(string.format("%s %s --debs %s --prefix %s --unpack-only", env or "", q(CHECK), q(b.debs), q(prefix)))
    T.ok(code == 0, "unpack failed:\n" .. out)
    if not env then shared_prefix = prefix end
    return prefix
end

local HEADERS = { "usr/include/lua5.4/lua.h", "usr/include/cjson/cJSON.h", "usr/include/pcre2.h",
                  "usr/include/x86_64-linux-gnu/curl/curl.h", "usr/include/readline/readline.h" }
local LIBS = { "liblua5.4.so", "libcjson.so", "libpcre2-8.so", "libcurl.so", "libreadline.so",
               "liblua5.4.so.0", "libcjson.so.1", "libpcre2-8.so.0", "libcurl.so.4", "libreadline.so.8",
               "libtinfo.so.6", "libnghttp2.so.14", "libssl.so.3", "lua/5.4/cjson.so" }

-- Asserts that the prefix holds the headers, and the libraries under usr/lib or lib (Debian 12
-- keeps readline and ncurses in /lib), each one a file that resolves (not a dangling link).
local function check_prefix(prefix)
    local arch = run("gcc -dumpmachine"):match("%S+")
    for _, h in ipairs(HEADERS) do
        T.ok(exists(prefix .. "/" .. h:gsub("x86_64%-linux%-gnu", arch)), "the prefix has " .. h)
    end
    for _, l in ipairs(LIBS) do
        local found = exists(prefix .. "/usr/lib/" .. arch .. "/" .. l) or exists(prefix .. "/lib/" .. arch .. "/" .. l)
        T.ok(found, "the prefix has " .. l .. " (a file, or a link that resolves inside it)")
    end
    local out = run("find " .. q(prefix) .. " -type l -lname '/*' ! -lname " .. q(prefix .. "/*"))
    T.eq(out, "", "no link points outside the prefix")
end

T.case("gpu-bundle: one tarball under 48 MiB with the source tree, the debs and a manifest", function()
    local b = make_bundle()
    local size = tonumber(run("stat -c %s " .. q(b.tarball)):match("%d+"))
    T.ok(size > 1e6 and size <= 48 * 2 ^ 20, "tarball size " .. tostring(size))
    local list = run("tar tzf " .. q(b.tarball))
    for _, want in ipairs({ "apl-gpu-bundle/MANIFEST", "apl-gpu-bundle/apl/tools/gpu-check.sh",
                            "apl-gpu-bundle/apl/bench/gpu.lua", "apl-gpu-bundle/apl/Makefile" }) do
        T.ok(list:find(want, 1, true), "the bundle has " .. want)
    end
    for _, pkg in ipairs({ "liblua5.4-0", "liblua5.4-dev", "lua-cjson", "libcjson1", "libcjson-dev", "libpcre2-8-0",
                           "libpcre2-dev", "libcurl4", "libcurl4-openssl-dev", "libreadline8", "libreadline-dev" }) do
        -- (Debian 13 names some of them <name>t64)
        T.ok(list:find("\napl%-gpu%-bundle/debs/" .. pkg:gsub("[%-%.]", "%%%0") .. "_[^/\n]*%.deb\n") or
             list:find("\napl%-gpu%-bundle/debs/" .. pkg:gsub("[%-%.]", "%%%0") .. "t64_[^/\n]*%.deb\n"),
            "the bundle has the deb of " .. pkg)
    end
    T.ok(not list:find("debs/libc6_", 1, true), "no C library in the bundle")
    T.ok(not list:find("apl-gpu-bundle/apl/build/", 1, true), "no build outputs in the bundle")
end)

T.case("gpu-bundle: over the size limit it fails, says so and leaves no tarball", function()
    make_bundle()
    local out_file = T.tmpdir() .. "/small.tar.gz"
    local out, code = run("GPU_BUNDLE_MAX_MIB=1 bash " .. q(ROOT .. "/tools/gpu-bundle.sh") .. " " .. q(out_file))
    T.ok(code ~= 0, "a 1 MiB limit fails")
    T.ok(out:find("over the 1 MiB limit", 1, true), out)
    T.ok(not exists(out_file), "the oversized tarball is removed")
end)

T.case("gpu-check: the debs unpack into a prefix with the headers and libraries (dpkg-deb)", function()
    check_prefix(unpack())
end)

T.case("gpu-check: the same without dpkg-deb (ar + Python's tarfile)", function()
    check_prefix(unpack("GPU_CHECK_UNPACK=ar PYTHON=/usr/bin/python3"))
end)

-- The KEY=value lines of --print-build-flags.
local function build_flags(prefix, libtorch)
    local out, code = run(string.format("%s --debs %s --prefix %s --libtorch %s --print-build-flags 2>/dev/null",
        q(CHECK), q(make_bundle().debs), q(prefix), q(libtorch)))
    T.ok(code == 0, "--print-build-flags failed:\n" .. out)
    local flags = {}
    for k, v in out:gmatch("([%w_]+)=([^\n]*)") do flags[k] = v end
    return flags
end

local PROBE = [[
#include <stdio.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <cJSON.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <curl/curl.h>
#include <readline/readline.h>
int main(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    /* where `require "cjson"` would load from: the prefix's lua-cjson comes first */
    if (luaL_dostring(L, "print(package.searchpath('cjson', package.cpath)); "
                         "print(require('cjson').encode({1}))")) return 1;
    cJSON *j = cJSON_Parse("[1]");
    char pcre[64];
    pcre2_config(PCRE2_CONFIG_VERSION, pcre);
    printf("%s %s %s %d\n", curl_version(), rl_library_version, pcre, cJSON_GetArraySize(j));
    return 0;
}
]]

T.case("gpu-check: a program built with the script's flags takes headers, libraries and cjson from the prefix", function()
    local prefix = unpack()
    local f = build_flags(prefix, "/usr")
    T.eq(f.LIBTORCH, "", "Debian's /usr layout builds as plain make")
    local dir = T.tmpdir()
    local src = io.open(dir .. "/probe.c", "w")
    src:write(PROBE)
    src:close()
    local flags = f.CFLAGS .. " " .. f.LUA_INC
    local deps = T.sh(string.format("cd %s && gcc %s -M probe.c", q(dir), flags))
    for _, h in ipairs({ "lua.h", "cJSON.h", "pcre2.h", "curl.h", "readline.h" }) do
        local path = deps:match("(%S*/" .. h:gsub("%.", "%%.") .. ")")
        T.ok(path and path:find(prefix, 1, true) == 1, h .. " from the prefix, not " .. tostring(path))
    end
    T.sh(string.format("cd %s && gcc %s -o probe probe.c %s -lcjson -lpcre2-8 -lcurl -lreadline -lm -ldl",
        q(dir), flags, f.LUA_LIBS))
    local ldd = T.sh("ldd " .. q(dir .. "/probe"))
    for _, l in ipairs({ "liblua5.4", "libcjson", "libpcre2%-8", "libcurl", "libreadline", "libtinfo", "libnghttp2" }) do
        local path = ldd:match(l .. "[^\n]*=> (%S+)")
        T.ok(path and path:find(prefix, 1, true) == 1, l .. " loads from the prefix, not " .. tostring(path))
    end
    local out = T.sh("env -u LD_LIBRARY_PATH LUA_CPATH_5_4=" .. q(f.LUA_CPATH_5_4) .. " " .. q(dir .. "/probe"))
    local cjson_path, encoded = out:match("^(%S+)\n(%S+)\n")
    T.ok(cjson_path and cjson_path:find(prefix, 1, true) == 1, "cjson.so from the prefix: " .. out)
    T.eq(encoded, "[1]")
    T.ok(out:find("libcurl/", 1, true) and out:find(" 1\n", 1, true), out)
end)

T.case("gpu-check: --libtorch takes a wheel's torch/ folder as it is and refuses other folders", function()
    local prefix = unpack()
    local wheel = T.tmpdir() .. "/torch"
    T.sh("mkdir -p " .. q(wheel .. "/include/torch/csrc/api/include") .. " " .. q(wheel .. "/lib") ..
         " && touch " .. q(wheel .. "/lib/libtorch_cpu.so"))
    T.eq(build_flags(prefix, wheel).LIBTORCH, wheel)
    local out, code = run(string.format("%s --debs %s --prefix %s --libtorch /tmp --print-build-flags",
        q(CHECK), q(make_bundle().debs), q(prefix)))
    T.eq(code, 1)
    T.ok(out:find("neither a libtorch folder", 1, true), out)
end)

T.case("gpu-check: bad arguments exit 2 with the reason; --help exits 0; no unpacking into the system", function()
    for _, c in ipairs({ { "--bogus", "unknown option %-%-bogus" }, { "--libtorch", "%-%-libtorch needs a value" },
                         { "--jobs x", "%-%-jobs needs a positive integer" }, { "a b", "one output folder only" },
                         { "--debs", "%-%-debs needs a value" } }) do
        local out, code = run(q(CHECK) .. " " .. c[1])
        T.eq(code, 2, c[1])
        T.ok(out:find(c[2]), c[1] .. ": " .. out)
    end
    local out, code = run(q(CHECK) .. " --help")
    T.eq(code, 0)
    T.ok(out:find("--no-gpu", 1, true) and out:find("--libtorch DIR", 1, true), out)
    local debs = make_bundle().debs
    for _, bad in ipairs({ "/", "/usr", "/usr/local" }) do
        out, code = run(string.format("%s --debs %s --prefix %s --unpack-only", q(CHECK), q(debs), bad))
        T.eq(code, 1, bad)
        T.ok(out:find("refusing to unpack", 1, true), out)
    end
    out, code = run(string.format("%s --debs %s --unpack-only", q(CHECK), q(T.tmpdir())))
    T.eq(code, 1)
    T.ok(out:find("no .deb files", 1, true), out)
end)

T.case("bench/gpu.lua --smoke on the CPU: every phase, the peer's reason, the goals, JSON and Markdown", function()
    local out_dir = T.tmpdir()
    local out, code = run(string.format("%s %s --smoke --device cpu --python /usr/bin/python3 --out %s --tests %s",
        q(ROOT .. "/apl"), q(ROOT .. "/bench/gpu.lua"), q(out_dir), q("5 passed, 0 failed")))
    T.eq(code, 0, out)
    local f = assert(io.open(out_dir .. "/gpu-check.json"))
    local report = cjson.decode(f:read("a"))
    f:close()
    T.eq(report.tests.summary, "5 passed, 0 failed")
    T.eq(#report.failures, 0)
    local seen = {}
    for _, r in ipairs(report.rows) do
        seen[r.model .. " " .. r.name] = r
        if r.name ~= "acquisition_step" then
            T.ok(type(r.apl) == "number" and r.apl > 0, r.model .. " " .. r.name .. " measured")
            T.ok(r.peer or r.peer_skipped, "the peer ran or said why not")
        end
    end
    for _, m in ipairs({ "gpt2-large", "pythia-1b" }) do
        for _, n in ipairs({ "generation", "scoring", "dpo_step" }) do T.ok(seen[m .. " " .. n], m .. " " .. n) end
    end
    local acq = seen["gpt2-large acquisition_step"]
    T.ok(acq and acq.phases.generate > 0 and acq.phases.score > 0 and acq.phases.oracle > 0 and acq.phases.train > 0,
        "the acquisition step timed per phase")
    T.ok(acq.phases.total >= acq.phases.generate + acq.phases.score + acq.phases.train, "phases within the total")
    T.eq(#report.goals, 5)
    T.ok(report.lora:find("apl has no LoRA adapters yet (issue 15)", 1, true), report.lora)
    local md = io.open(out_dir .. "/gpu-check.md"):read("a")
    T.ok(md:find("| gpt2-large (IMDB) | generation | tok/s |", 1, true), md)
    T.ok(md:find("| goal | measured | status |", 1, true) and md:find("5 passed, 0 failed", 1, true), md)
    T.ok(out:find("goal: gpt2-large: DPO step (policy, theta0, Adam) within 16 GiB", 1, true), out)
    T.ok(out:find("LoRA logits against peft: skipped: apl has no LoRA adapters yet (issue 15)", 1, true), out)
end)

T.case("bench/gpu.lua --no-bench --fail: the report says why, and the exit status is 1", function()
    local out_dir = T.tmpdir()
    local out, code = run(string.format("%s %s --no-bench --device cpu --out %s --tests %s --tests-rc 1 --fail %s",
        q(ROOT .. "/apl"), q(ROOT .. "/bench/gpu.lua"), q(out_dir), q("3 passed, 1 failed"), q("CUDA not available to apl")))
    T.eq(code, 1, out)
    local report = cjson.decode(io.open(out_dir .. "/gpu-check.json"):read("a"))
    T.eq(report.failures, { "CUDA not available to apl" })
    T.eq(report.tests.rc, 1)
    T.eq(#report.rows, 0)
end)

T.case("gpu-check --no-gpu: apl builds from the bundle's prefix and passes a test file (APL_TEST_GPU_CHECK_BUILD=1)", function()
    if os.getenv("APL_TEST_GPU_CHECK_BUILD") ~= "1" then
        T.skip("set APL_TEST_GPU_CHECK_BUILD=1 to build apl from the bundle (minutes)")
    end
    local b = make_bundle()
    local dir = T.tmpdir()
    T.sh("tar xzf " .. q(b.tarball) .. " -C " .. q(dir))
    local tree = dir .. "/apl-gpu-bundle/apl"
    local out, code = run(string.format("cd %s && tools/gpu-check.sh --no-gpu --libtorch /usr --jobs 2 --tests %s %s",
        q(tree), q("tests/lua/test_tensor.lua"), q(dir .. "/out")))
    T.eq(code, 0, out)
    T.ok(out:find("%d+ passed, 0 failed"), out)
    local ldd = T.sh("ldd " .. q(tree .. "/apl"))
    T.ok(ldd:match("liblua5%.4[^\n]*=> (%S+)"):find(dir, 1, true) == 1, "apl loads Lua from the prefix")
    T.ok(exists(dir .. "/out/gpu-check.json") and exists(dir .. "/out/gpu-check.md"), "the report")
end)
