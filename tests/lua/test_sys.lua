-- apl.core.sys's file system layer (lua/lsys.c): no shell anywhere, so names holding spaces,
-- quotes and $(...) are only names; rmtree stays inside the folder it is given; write is atomic.
local T = require "tests.lib.test"
local fs = require "apl.fs"
local sys = require "apl.core.sys"

-- Names a shell would act on: if anything passed one to a shell, PWNED would appear in cwd or
-- in the test folder.
local HOSTILE = { "a'$(touch PWNED)'b", 'q"$(touch PWNED)"', "sp ace;touch PWNED", "`touch PWNED`", "x'|touch PWNED|'" }

local function no_pwned(dir)
    T.ok(not fs.exists("PWNED"), "a PWNED file appeared in the current folder: a shell ran")
    T.ok(not fs.exists(dir .. "/PWNED"), "a PWNED file appeared in " .. dir .. ": a shell ran")
end

T.case("mkdir_p, isdir, listdir, write, read and rmtree take hostile names as names", function()
    local dir = T.tmpdir()
    for _, name in ipairs(HOSTILE) do
        local d = dir .. "/" .. name .. "/sub/deeper"
        fs.mkdir_p(d)
        T.ok(fs.isdir(d), d)
        fs.mkdir_p(d) -- again: an existing folder is fine
        fs.write(d .. "/f " .. name .. ".txt", "text of " .. name)
        T.eq(fs.read(d .. "/f " .. name .. ".txt"), "text of " .. name)
        T.eq(fs.listdir(d), { "f " .. name .. ".txt" })
        T.eq(fs.files(d, ".txt"), { d .. "/f " .. name .. ".txt" })
        fs.rmtree(dir .. "/" .. name, dir)
        T.ok(not fs.exists(dir .. "/" .. name), "removed " .. name)
    end
    no_pwned(dir)
end)

T.case("listdir is sorted bytewise and skips . and ..; files keeps regular files with the suffix", function()
    local dir = T.tmpdir()
    for _, n in ipairs { "b.txt", "B.txt", "a.txt", "c.md" } do fs.write(dir .. "/" .. n, n) end
    fs.mkdir_p(dir .. "/d.txt")
    T.eq(fs.listdir(dir), { "B.txt", "a.txt", "b.txt", "c.md", "d.txt" })
    T.eq(fs.files(dir, ".txt"), { dir .. "/B.txt", dir .. "/a.txt", dir .. "/b.txt" })
    local none, err = fs.listdir(dir .. "/missing")
    T.ok(none == nil and err:find("missing", 1, true), tostring(err))
    T.eq(fs.files(dir .. "/missing", ".txt"), {})
    T.ok(not fs.isdir(dir .. "/a.txt"), "a file is not a folder")
end)

T.case("mkdir_p fails naming the path when a file is in the way", function()
    local dir = T.tmpdir()
    fs.write(dir .. "/file", "x")
    T.assert_error_match(function() fs.mkdir_p(dir .. "/file/sub") end, "apl%.sys%.mkdir_p: .*/file: Not a directory")
end)

T.case("rmtree refuses /, '..' and anything outside the folder it was given", function()
    local dir = T.tmpdir()
    local run = dir .. "/run"
    fs.mkdir_p(run .. "/policy/step-1")
    fs.mkdir_p(dir .. "/keep")
    fs.write(dir .. "/keep/f", "precious")
    T.assert_error_match(function() fs.rmtree("/", "/") end, "refusing")
    T.assert_error_match(function() fs.rmtree(run .. "/../keep", run) end, "'%.%.' component")
    T.assert_error_match(function() fs.rmtree(dir .. "/keep", run) end, "not inside")
    T.assert_error_match(function() fs.rmtree(run, run) end, "not inside")
    T.assert_error_match(function() fs.rmtree(run .. "/.", run) end, "refusing")
    -- A symbolic link inside the run folder that points outside: the link goes, its target stays.
    T.ok(sys.run { "ln", "-s", dir .. "/keep", run .. "/link" } == 0)
    fs.rmtree(run .. "/link", run)
    T.eq(fs.read(dir .. "/keep/f"), "precious")
    -- A path through a link that leads outside resolves outside, and is refused.
    T.ok(sys.run { "ln", "-s", dir .. "/keep", run .. "/link2" } == 0)
    T.assert_error_match(function() fs.rmtree(run .. "/link2/f", run) end, "not inside")
    T.eq(fs.read(dir .. "/keep/f"), "precious")
    fs.rmtree(run .. "/policy", run)
    T.ok(not fs.exists(run .. "/policy"), "policy removed")
    fs.rmtree(run .. "/never-was", run) -- a missing path is not an error, as with rm -rf
end)

T.case("write replaces a file whole and leaves no temporary behind", function()
    local dir = T.tmpdir()
    fs.write(dir .. "/c.json", "old")
    fs.write(dir .. "/c.json", "new\0with a NUL")
    T.eq(fs.read(dir .. "/c.json"), "new\0with a NUL")
    T.eq(fs.listdir(dir), { "c.json" })
    T.assert_error_match(function() fs.write(dir .. "/no/such/folder/x", "s") end, "apl%.sys%.write: .*x: No such file")
end)

T.case("run passes argv to execvp unparsed and reports exit status", function()
    local dir = T.tmpdir()
    local log = dir .. "/out $(touch PWNED).log"
    T.eq(sys.run({ "printf", "%s|", "a'$(touch PWNED)'b", "two words" }, { stdout = log, stderr = log }), 0)
    T.eq(fs.read(log), "a'$(touch PWNED)'b|two words|")
    T.eq(sys.run { "sh", "-c", "exit 3" }, 3)
    T.eq(sys.run { "/no/such/program" }, 127)
    no_pwned(dir)
end)

T.case("the IMDB loader reads a data folder with a hostile name", function()
    local dir = T.tmpdir()
    local data_dir = dir .. "/a'$(touch PWNED)'b"
    require("recipes.lib.demo_data").write_imdb(data_dir, { train = 4, test = 2, seed = 1 })
    local tok = { encode = function(_, s) local t = {}; for w in s:gmatch("%S+") do t[#t + 1] = w end; return t end,
                  decode = function(_, t) return table.concat(t, " ") end }
    local rows = require("apl.data").imdb(data_dir, { tok = tok })
    T.eq(#rows, 4)
    T.ok(require("apl.args").parse({ "--d", data_dir }, { { "d", "DIR", "data", dir = true } }).d == data_dir)
    no_pwned(dir)
end)

T.case("no shell in the library or the recipes", function()
    local root = T.root()
    for _, folder in ipairs { "lua/apl", "recipes" } do
        for _, path in ipairs(fs.files(root .. "/" .. folder, ".lua")) do
            local text = fs.read(path)
            for _, call in ipairs { "os%.execute", "io%.popen" } do
                T.ok(not text:find(call), path .. " calls " .. call:gsub("%%", ""))
            end
        end
    end
end)

-- Values from Python's arbitrary-precision integers reduced mod 2^64, written from the
-- definitions (splitmix64: Steele, Lea and Flood 2014; FNV-1a: the IETF draft's 64-bit constants).
T.case("hashes: mix64, fnv1a and fnv1a_ids against a Python reference", function()
    T.eq(sys.mix64(0), 0)
    T.eq(sys.mix64(1), 6238072747940578789)
    T.eq(sys.mix64(-1), -5417735806833148549)
    T.eq(sys.fnv1a(""), -3750763034362895579)
    T.eq(sys.fnv1a("a"), -5808556873153909620)
    T.eq(sys.fnv1a("foobar"), -8821353812377114648)
    T.eq(sys.fnv1a("bar", sys.fnv1a("foo")), -8821353812377114648) -- chained = whole
    T.eq(sys.fnv1a_ids({ 5, -1, 70000 }), 5976310685927193351)
    T.eq(sys.fnv1a_ids({}), sys.fnv1a(""))
    T.assert_error_match(function() sys.fnv1a_ids({ 1, "x" }) end, "apl%.sys%.fnv1a_ids: ids%[2%] is not an integer")
end)

-- ------------------------------------------------------------------------------------------
-- Journals (core/journal.c; tests/c/test_journal.c covers the C side)

local function raw_write(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end

T.case("journal: appends are on disk when append returns; a torn last line is skipped and named", function()
    local path = T.tmpdir() .. "/j.jsonl"
    local lines, warning = sys.journal_read(path)
    T.eq(#lines, 0, "a missing file reads as no lines")
    T.eq(warning, nil)
    local j, old = sys.journal_open(path, { noun = "record" })
    T.eq(#old, 0)
    j:append('{"a":1}')
    T.eq(sys.journal_read(path), { '{"a":1}' }, "a fresh reader sees the line while j is open")
    j:append({ '{"a":2}', '{"a":3}' })
    j:append({})
    T.eq(fs.read(path), '{"a":1}\n{"a":2}\n{"a":3}\n')
    T.assert_error_match(function() j:append('{"a":\n4}') end, "apl%.sys%.journal:append: .*a record must be one non%-empty line")
    T.assert_error_match(function() j:append({ '{"a":4}', 5 }) end, "lines%[2%] is not a string")
    j:close()
    j:close() -- twice is fine
    T.assert_error_match(function() j:append('{"a":4}') end, "journal is closed")
    T.ok(tostring(j):find("closed"), tostring(j))

    raw_write(path, '{"a":1}\n{"a":2}\n{"a":3,"b')
    lines, warning = sys.journal_read(path, { noun = "record" })
    T.eq(lines, { '{"a":1}', '{"a":2}' })
    T.ok(warning and warning:find("j.jsonl:3: truncated last line skipped", 1, true), warning)
    T.eq(fs.read(path), '{"a":1}\n{"a":2}\n{"a":3,"b', "a reader leaves the file as it is")
    local w
    j, lines, w = sys.journal_open(path)
    T.eq(w, warning)
    j:append('{"a":4}')
    j:close()
    T.eq(fs.read(path), '{"a":1}\n{"a":2}\n{"a":4}\n', "a writer cuts the torn line first")

    raw_write(path, '{"a":1}\n{"a":2} x\n{"a":3}\n')
    T.assert_error_match(function() sys.journal_read(path, { noun = "record" }) end,
        "apl%.sys%.journal_read: .*j%.jsonl:2: corrupt record %(not one JSON object%)")
    lines, warning = sys.journal_read(path, { lenient = true })
    T.eq(lines, { '{"a":1}', '{"a":3}' })
    T.ok(warning and warning:find("j.jsonl:2: corrupt line skipped", 1, true), warning)

    raw_write(path, '{"a":1}\n')
    local l1 = sys.journal_open(path, { lock = true })
    T.assert_error_match(function() sys.journal_open(path, { lock = true }) end, "in use by another process")
    l1:close()
    T.assert_error_match(function() sys.journal_read(path, { lock = true }) end, "unknown option 'lock'")
    T.assert_error_match(function() sys.journal_open(path, { fsync = false }) end, "apl%.sys%.journal_open: unknown option 'fsync'")
end)

T.case("journal: a run folder's records survive a torn last line; the run goes on appending", function()
    local runfolder = require "apl.runfolder"
    local dir = T.tmpdir() .. "/run 'x'"
    local run = runfolder.create(dir, { seed = 1 })
    run:append("train", { step = 1, loss = 0.5 })
    run:append("train", { step = 2, loss = 0.25 })
    T.eq(#runfolder.open(dir):read("train"), 2, "on disk before append returned")
    run:close()
    -- killed mid-write of step 3
    local path = dir .. "/train.jsonl"
    raw_write(path, fs.read(path) .. '{"step":3,"lo')
    local again = runfolder.open(dir)
    local records, warning = again:read("train")
    T.eq(#records, 2)
    T.eq(records[2].loss, 0.25)
    T.ok(warning and warning:find("train.jsonl:3: truncated last line skipped", 1, true), warning)
    again:append("train", { step = 3, loss = 0.125 })
    again:close()
    records, warning = runfolder.open(dir):read("train")
    T.eq(warning, nil, "the resumed writer cut the torn line")
    T.eq(#records, 3)
    T.eq(records[3].step, 3)
    T.eq(#runfolder.open(dir):read("eval"), 0, "a record file never written reads as none")

    raw_write(path, '{"step":1}\nnot json\n{"step":3}\n')
    T.assert_error_match(function() runfolder.open(dir):read("train") end,
        "^[^:]*:%d+: apl%.runfolder: .*train%.jsonl:2: corrupt record")
end)
