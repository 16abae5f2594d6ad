-- apl.data — prompt pools for the loop: JSONL and CSV files, the IMDB review folders, TL;DR posts.
--
--   local data = require "apl.data"
--   local rows = data.jsonl("pairs.jsonl", { fields = { prompt = "question" } })
--   local rows = data.csv("pairs.csv", { fields = { prompt = "question" } })   -- RFC 4180 quoting
--   local pool = data.imdb("aclImdb", { split = "train", tok = tok, seed = 1 })
--   local train, test = data.tldr_splits("tldr/", { seed = 1 })   -- train + test .jsonl or .csv
--   local a, b = data.split(rows, { test = 0.1, seed = 1 })
--
-- Every loader returns a list of rows with at least a `prompt` string. Malformed input raises one
-- error that lists each bad line as "file:line: why", so a broken file is fixed in one pass.
local cjson = require "cjson"
local fs = require "apl.fs"
local rng = require "apl.rng"

local M = {}

local MAX_REPORTED = 10

-- Characters as Python counts them (code points); bytes for text that is not UTF-8.
local function chars(s) return utf8.len(s) or #s end

local function fail(fname, problems)
    local shown = {}
    for i = 1, math.min(#problems, MAX_REPORTED) do shown[i] = problems[i] end
    local more = #problems > MAX_REPORTED and string.format("\n  ... and %d more", #problems - MAX_REPORTED) or ""
    error(string.format("apl.data.%s: %d bad line%s:\n  %s%s", fname, #problems,
        #problems == 1 and "" or "s", table.concat(shown, "\n  "), more), 3)
end

local function is_missing(v) return v == nil or v == cjson.null end

-- Reads a JSONL file. opts.fields maps the names the caller wants to the names in the file
-- ({prompt = "text"}); every mapped field is text (a string: a number or a list there is
-- reported with its file:line, not found later as a type error) and required unless listed in
-- opts.optional.
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
                local row, missing, mistyped = { line = n }, {}, {}
                for want, have in pairs(opts.fields) do
                    local v = obj[have]
                    if is_missing(v) then
                        if not optional[want] then missing[#missing + 1] = string.format("%q", have) end
                    elseif type(v) ~= "string" then
                        mistyped[#mistyped + 1] = string.format("field %q is %s, not text", have,
                            type(v) == "table" and (#v > 0 and "a list" or "an object") or "a " .. type(v))
                    else
                        row[want] = v
                    end
                end
                table.sort(mistyped)
                if #missing > 0 then
                    table.sort(missing)
                    problems[#problems + 1] = string.format("%s:%d: missing field%s %s", path, n,
                        #missing == 1 and "" or "s", table.concat(missing, ", "))
                elseif #mistyped > 0 then
                    problems[#problems + 1] = string.format("%s:%d: %s", path, n, table.concat(mistyped, "; "))
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

------------------------------------------------------------------------------------------------
-- CSV (RFC 4180), as pandas and `datasets` write it: a header row names the columns; a field in
-- double quotes may hold commas, line breaks and "" (one quote). CRLF or LF line ends, a UTF-8
-- byte-order mark and empty lines are accepted.

-- What follows a field at `at`: the text it takes up and its kind: "," "\n" (LF, CRLF or a lone
-- CR), "" (the end of the text) or the offending character.
local function field_end(text, at)
    local nl = text:match("^\r?\n", at)
    if nl then return nl, "\n" end
    local c = text:sub(at, at)
    return c, c == "\r" and "\n" or c
end

-- The field of text at pos: its value, where the next one starts and what ended it ("," "\n"
-- or ""); nil and why for a malformed field.
local function csv_field(text, pos)
    if text:sub(pos, pos) ~= '"' then
        local stop = text:find("[,\r\n]", pos) or #text + 1
        local field = text:sub(pos, stop - 1)
        if field:find('"', 1, true) then
            return nil, "a quote inside an unquoted field (quote the whole field and double the quote)"
        end
        local took, kind = field_end(text, stop)
        return field, stop + #took, kind
    end
    local parts, i = {}, pos + 1
    while true do
        local q = text:find('"', i, true)
        if not q then return nil, "a quoted field opens on this line and is never closed" end
        parts[#parts + 1] = text:sub(i, q - 1)
        i = q + 1
        if text:sub(i, i) ~= '"' then break end
        parts[#parts + 1] = '"' -- "" stands for one quote
        i = i + 1
    end
    local took, kind = field_end(text, i)
    if kind ~= "," and kind ~= "\n" and kind ~= "" then
        return nil, string.format("a closing quote must be followed by a comma or a line end, not %q", kind)
    end
    return table.concat(parts), i + #took, kind
end

-- The records of text as lists of fields, each with the line it starts on; nil, line, why for
-- malformed text. Empty lines are skipped.
local function csv_records(text)
    local records, pos, line = {}, 1, 1
    if text:sub(1, 3) == "\239\187\191" then pos = 4 end -- UTF-8 byte-order mark
    while pos <= #text do
        local record, kind = { line = line }, nil
        repeat
            local field, next_pos
            field, next_pos, kind = csv_field(text, pos)
            if not field then return nil, line, next_pos end
            local _, breaks = text:sub(pos, next_pos - 1):gsub("\n", "")
            line, pos = line + breaks, next_pos
            record[#record + 1] = field
        until kind ~= ","
        if #record > 1 or record[1] ~= "" then records[#records + 1] = record end
    end
    return records
end

-- Header and records of a CSV file; a malformed file raises "file:line: why".
local function read_csv(path)
    local f, err = io.open(path, "rb")
    if not f then error("apl.data.csv: " .. err, 4) end
    local text = f:read("a")
    f:close()
    local records, bad_line, why = csv_records(text)
    if not records then fail("csv", { string.format("%s:%d: %s", path, bad_line, why) }) end
    if #records == 0 then fail("csv", { path .. ":1: no header row" }) end
    return table.remove(records, 1), records
end

-- Reads a CSV file whose first row names the columns. Rows come back keyed by column name, or,
-- with opts.fields, keyed as jsonl keys them (every mapped column required unless listed in
-- opts.optional); each carries `line`, the line its record starts on.
function M.csv(path, opts)
    opts = opts or {}
    local header, records = read_csv(path)
    local column, optional, problems = {}, {}, {}
    for i, name in ipairs(header) do column[name] = i end
    for _, k in ipairs(opts.optional or {}) do optional[k] = true end
    local fields = opts.fields
    if not fields then
        fields = {}
        for _, name in ipairs(header) do fields[name] = name end
    end
    for want, have in pairs(fields) do
        if not column[have] and not optional[want] then
            problems[#problems + 1] = string.format("%s:%d: no column %q (the header has %s)", path, header.line,
                have, table.concat(header, ", "))
        end
    end
    table.sort(problems)
    local rows = {}
    for _, rec in ipairs(records) do
        if #rec ~= #header then
            problems[#problems + 1] = string.format("%s:%d: %d field%s where the header has %d", path, rec.line,
                #rec, #rec == 1 and "" or "s", #header)
        else
            local row = { line = rec.line }
            for want, have in pairs(fields) do row[want] = column[have] and rec[column[have]] end
            rows[#rows + 1] = row
        end
    end
    if #problems > 0 then fail("csv", problems) end
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

local list_files, is_dir = fs.files, fs.isdir

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
-- seed, min_tokens (8), max_tokens (16), limit (the first n files after a seeded shuffle),
-- min_chars (0: reviews of at most that many characters are left out; the authors' code uses 200).
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
    for _, f in ipairs(files) do
        local h = assert(io.open(f.path, "r"))
        local text = h:read("a")
        h:close()
        if chars(text) > (opts.min_chars or 0) then
            local key = split .. "/" .. f.label .. "/" .. f.path:match("[^/]+$")
            rows[#rows + 1] = { prompt = M.imdb_prompt(opts.tok, text, key, opts), label = f.label, file = f.path }
        end
    end
    return rows
end

------------------------------------------------------------------------------------------------
-- TL;DR, prepared as the method's Appendix B and its authors' code (direct/data.py) prepare it:
-- posts whose prompt is strictly between 200 and 1000 characters (the authors measure the whole
-- "SUBREDDIT: ... TITLE: ... POST: ... TL;DR:" prompt, in characters, before stripping), trailing
-- spaces removed from the prompt, whole subreddits left out. Two row formats, in JSONL or CSV:
--   - the paper's dataset, CarperAI/openai_summarize_tldr: `prompt` (already formatted) and
--     `label` (the human summary). Export it once with Python's `datasets`:
--       from datasets import load_dataset
--       ds = load_dataset("CarperAI/openai_summarize_tldr")
--       for split in ("train", "valid", "test"):
--           ds[split].to_json(f"tldr/{split}.jsonl")   # or ds[split].to_csv(f"tldr/{split}.csv")
--   - separate fields: subreddit, title, post, summary (renamed with opts.fields).

-- Subreddits left out whole (the authors' EXCLUDE_TLDR_SUBREDDITS: likely explicit content).
M.TLDR_EXCLUDED_SUBREDDITS = { "offmychest", "tifu" }

function M.tldr_prompt(r)
    return string.format("SUBREDDIT: r/%s\nTITLE: %s\nPOST: %s\nTL;DR:", r.subreddit, r.title, r.post)
end

-- The reader for path: CSV by its extension, else JSONL.
local function read_rows(path, opts)
    if path:lower():match("%.csv$") then return M.csv(path, opts) end
    return M.jsonl(path, opts)
end

-- Whether the file holds CarperAI's prompt/label rows: its first row has a `prompt` field.
local function is_prompt_label(path)
    if path:lower():match("%.csv$") then
        local f = io.open(path, "rb")
        local first = f and f:read("l") or ""
        if f then f:close() end
        return (("," .. first:gsub("^\239\187\191", ""):gsub("\r$", "") .. ","):find(',"?prompt"?,')) ~= nil
    end
    local f = io.open(path, "r")
    if not f then return false end
    for line in f:lines() do
        if line:find("%S") then
            f:close()
            local ok, obj = pcall(cjson.decode, line)
            return ok and type(obj) == "table" and obj.prompt ~= nil
        end
    end
    f:close()
    return false
end

-- {prompt=, summary=, subreddit=, line=} from either format; problems collects "file:line: why".
local function tldr_records(path, opts, problems)
    if not opts.fields and is_prompt_label(path) then
        local out = {}
        for _, r in ipairs(read_rows(path, { fields = { prompt = "prompt", summary = "label" } })) do
            r.subreddit = r.prompt:match("^SUBREDDIT:%s*r/([^%s]+)")
            if r.subreddit then
                out[#out + 1] = r
            else
                problems[#problems + 1] = string.format('%s:%d: field "prompt" does not start with "SUBREDDIT: r/<name>"',
                    path, r.line)
            end
        end
        return out
    end
    local fields = { subreddit = "subreddit", title = "title", post = "post", summary = "summary" }
    for k, v in pairs(opts.fields or {}) do fields[k] = v end
    local rows = read_rows(path, { fields = fields })
    for _, r in ipairs(rows) do
        r.post = r.post:gsub("^%s+", ""):gsub("%s+$", "")
        r.prompt = M.tldr_prompt(r)
    end
    return rows
end

-- Rows {prompt=, reference=, subreddit=, line=} from a TL;DR file (.jsonl or .csv, either format
-- above). opts: exclude_subreddits (M.TLDR_EXCLUDED_SUBREDDITS; a list, or a comma-separated
-- string as a command line gives it, "r/" optional; {} or "none" keeps all), min_chars (200),
-- max_chars (1000), fields (the separate fields' names in the file). The reference is the human
-- summary with the space that follows "TL;DR:".
function M.tldr(path, opts)
    opts = opts or {}
    local excluded, names = {}, opts.exclude_subreddits or M.TLDR_EXCLUDED_SUBREDDITS
    if type(names) == "string" then
        local list = {}
        for name in names:gmatch("[^,%s]+") do list[#list + 1] = name end
        names = names == "none" and {} or list
    end
    for _, name in ipairs(names) do excluded[name:lower():gsub("^r/", "")] = true end
    local lo, hi = opts.min_chars or 200, opts.max_chars or 1000
    local problems, rows = {}, {}
    for _, r in ipairs(tldr_records(path, opts, problems)) do
        local n = chars(r.prompt)
        if n > lo and n < hi and not excluded[r.subreddit:lower()] then
            rows[#rows + 1] = { prompt = r.prompt:gsub(" +$", ""), reference = " " .. r.summary:gsub("^%s+", ""),
                                subreddit = r.subreddit, line = r.line }
        end
    end
    if #problems > 0 then fail("tldr", problems) end
    return rows
end

-- The first of names that exists in dir, or nil.
local function first_file(dir, names)
    for _, name in ipairs(names) do
        local f = io.open(dir .. "/" .. name, "r")
        if f then f:close(); return dir .. "/" .. name end
    end
end

-- A folder with train and test files (.jsonl or .csv; valid stands in for a missing test), or
-- one file split by seed. opts as for tldr, plus n_test (the held-out share when splitting one
-- file: a count or a fraction, 0.1) and seed.
function M.tldr_splits(path, opts)
    opts = opts or {}
    if is_dir(path) then
        local train = first_file(path, { "train.jsonl", "train.csv" })
        local test = first_file(path, { "test.jsonl", "test.csv", "valid.jsonl", "valid.csv" })
        if not (train and test) then
            error(string.format("apl.data.tldr_splits: %s needs train.jsonl (or .csv) and test.jsonl (or .csv, or valid.*)", path), 2)
        end
        return M.tldr(train, opts), M.tldr(test, opts)
    end
    return M.split(M.tldr(path, opts), { test = opts.n_test or 0.1, seed = opts.seed })
end

return M
