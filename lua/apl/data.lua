-- apl.data — prompt pools for the loop: JSONL files, the IMDB review folders, TL;DR posts.
--
--   local data = require "apl.data"
--   local rows = data.jsonl("pairs.jsonl", { fields = { prompt = "question" } })
--   local pool = data.imdb("aclImdb", { split = "train", tok = tok, seed = 1 })
--   local train, test = data.tldr_splits("tldr/", { n_test = 256, seed = 1 })
--   local a, b = data.split(rows, { test = 0.1, seed = 1 })
--
-- Every loader returns a list of rows with at least a `prompt` string. Malformed input raises one
-- error that lists each bad line as "file:line: why", so a broken file is fixed in one pass.
local cjson = require "cjson"
local rng = require "apl.rng"

local M = {}

local MAX_REPORTED = 10

local function fail(fname, problems)
    local shown = {}
    for i = 1, math.min(#problems, MAX_REPORTED) do shown[i] = problems[i] end
    local more = #problems > MAX_REPORTED and string.format("\n  ... and %d more", #problems - MAX_REPORTED) or ""
    error(string.format("apl.data.%s: %d bad line%s:\n  %s%s", fname, #problems,
        #problems == 1 and "" or "s", table.concat(shown, "\n  "), more), 3)
end

local function is_missing(v) return v == nil or v == cjson.null end

-- Reads a JSONL file. opts.fields maps the names the caller wants to the names in the file
-- ({prompt = "text"}); every mapped field is required unless listed in opts.optional.
-- Mapped rows also carry `line`, their line number. Without opts.fields, rows come back as
-- decoded. Empty lines are skipped.
function M.jsonl(path, opts)
    opts = opts or {}
    local f, err = io.open(path, "r")
    if not f then error("apl.data.jsonl: " .. err, 2) end
    local optional = {}
    for _, k in ipairs(opts.optional or {}) do optional[k] = true end
    local rows, problems, n = {}, {}, 0
    for line in f:lines() do
        n = n + 1
        if line:find("%S") then
            local ok, obj = pcall(cjson.decode, line)
            if not ok or type(obj) ~= "table" or #obj > 0 then
                problems[#problems + 1] = string.format("%s:%d: invalid JSON (%s)", path, n,
                    ok and "not an object" or tostring(obj):gsub("^.-: ", ""))
            elseif opts.fields then
                local row, missing = { line = n }, {}
                for want, have in pairs(opts.fields) do
                    if is_missing(obj[have]) then
                        if not optional[want] then missing[#missing + 1] = string.format("%q", have) end
                    else
                        row[want] = obj[have]
                    end
                end
                if #missing > 0 then
                    table.sort(missing)
                    problems[#problems + 1] = string.format("%s:%d: missing field%s %s", path, n,
                        #missing == 1 and "" or "s", table.concat(missing, ", "))
                else
                    rows[#rows + 1] = row
                end
            else
                rows[#rows + 1] = obj
            end
        end
    end
    f:close()
    if #problems > 0 then fail("jsonl", problems) end
    return rows
end

-- Seeded split into (train, test); opts.test is a count or a fraction of the rows.
function M.split(rows, opts)
    local n_test = opts.test
    if n_test < 1 then n_test = math.floor(#rows * n_test + 0.5) end
    local order = rng.new(opts.seed or 0, "split"):sample(rows, #rows)
    local train, test = {}, {}
    for i, r in ipairs(order) do
        if i <= n_test then test[#test + 1] = r else train[#train + 1] = r end
    end
    return train, test
end

------------------------------------------------------------------------------------------------
-- IMDB: aclImdb/{train,test}/{pos,neg}/*.txt; prompts are review openings of 8–16 tokens.

local function list_files(dir, suffix)
    local p = io.popen("find '" .. dir .. "' -maxdepth 1 -type f -name '*" .. suffix .. "' 2>/dev/null | LC_ALL=C sort")
    local out = {}
    for l in p:lines() do out[#out + 1] = l end
    p:close()
    return out
end

local function is_dir(path)
    local p = io.popen("test -d '" .. path .. "' && echo yes")
    local yes = p:read("l") == "yes"
    p:close()
    return yes
end

-- The review's text as a reader sees it: HTML line breaks out, whitespace collapsed.
local function clean_review(s)
    return (s:gsub("<br%s*/?>", " "):gsub("%s+", " "):gsub("^ ", ""))
end

-- A prompt needs at most 16 tokens; encoding only the first few hundred characters keeps
-- 25,000 reviews fast, and cutting at a space keeps the last word whole.
local function opening(text, chars)
    if #text <= chars then return text end
    local cut = text:sub(1, chars):match("^(.*) ") or text:sub(1, chars)
    return cut
end

-- Truncates a review to a random 8–16 of its first tokens. The length is drawn from
-- (seed, file name), so a prompt does not change when other files come or go.
function M.imdb_prompt(tok, text, key, opts)
    local lo, hi = opts.min_tokens or 8, opts.max_tokens or 16
    local ids = tok:encode(opening(clean_review(text), 40 * hi))
    local k = rng.new(opts.seed or 0, "imdb", key):int(lo, hi)
    if #ids <= k then return tok:decode(ids) end
    return tok:decode(table.move(ids, 1, k, 1, {}))
end

-- dir is the aclImdb folder (or a folder holding it). opts: tok (required), split ("train"),
-- seed, min_tokens (8), max_tokens (16), limit (the first n files after a seeded shuffle).
function M.imdb(dir, opts)
    opts = opts or {}
    if not opts.tok then error("apl.data.imdb: opts.tok (a tokenizer) is required", 2) end
    if not is_dir(dir .. "/train") and is_dir(dir .. "/aclImdb") then dir = dir .. "/aclImdb" end
    local split = opts.split or "train"
    local files = {}
    for _, label in ipairs { "pos", "neg" } do
        for _, f in ipairs(list_files(dir .. "/" .. split .. "/" .. label, ".txt")) do
            files[#files + 1] = { path = f, label = label }
        end
    end
    if #files == 0 then
        error(string.format("apl.data.imdb: no reviews in %s/%s/{pos,neg}/*.txt", dir, split), 2)
    end
    if opts.limit and opts.limit < #files then
        files = rng.new(opts.seed or 0, "imdb-limit", split):sample(files, opts.limit)
    end
    local rows = {}
    for i, f in ipairs(files) do
        local h = assert(io.open(f.path, "r"))
        local text = h:read("a")
        h:close()
        local key = split .. "/" .. f.label .. "/" .. f.path:match("[^/]+$")
        rows[i] = { prompt = M.imdb_prompt(opts.tok, text, key, opts), label = f.label, file = f.path }
    end
    return rows
end

------------------------------------------------------------------------------------------------
-- TL;DR: JSONL rows with subreddit, title, post, summary; posts of 200–1000 characters.

function M.tldr_prompt(r)
    return string.format("SUBREDDIT: r/%s\nTITLE: %s\nPOST: %s\nTL;DR:", r.subreddit, r.title, r.post)
end

-- opts: fields (rename subreddit/title/post/summary), min_chars (200), max_chars (1000).
-- Rows carry prompt and reference (the human summary, with the space that follows "TL;DR:").
function M.tldr(path, opts)
    opts = opts or {}
    local fields = { subreddit = "subreddit", title = "title", post = "post", summary = "summary" }
    for k, v in pairs(opts.fields or {}) do fields[k] = v end
    local lo, hi = opts.min_chars or 200, opts.max_chars or 1000
    local rows = {}
    for _, r in ipairs(M.jsonl(path, { fields = fields })) do
        local post = r.post:gsub("^%s+", ""):gsub("%s+$", "")
        if #post >= lo and #post <= hi then
            r.post = post
            rows[#rows + 1] = { prompt = M.tldr_prompt(r), reference = " " .. r.summary:gsub("^%s+", ""),
                                subreddit = r.subreddit }
        end
    end
    return rows
end

-- A folder with train.jsonl and test.jsonl (or valid.jsonl), or one file split by seed.
-- opts as for tldr, plus n_test (size of the held-out set) and seed.
function M.tldr_splits(path, opts)
    opts = opts or {}
    if is_dir(path) then
        local test_file = path .. "/test.jsonl"
        local f = io.open(test_file, "r")
        if f then f:close() else test_file = path .. "/valid.jsonl" end
        return M.tldr(path .. "/train.jsonl", opts), M.tldr(test_file, opts)
    end
    return M.split(M.tldr(path, opts), { test = opts.n_test or 0.1, seed = opts.seed })
end

return M
