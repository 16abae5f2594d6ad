-- Tests of apl.oracle against tests/ref/judge_server.py, a real HTTP server on 127.0.0.1 that
-- judges deterministically (more "good" wins) and injects faults asked for in the prompt.
local T = require "tests.lib.test"
local cjson = require "cjson"
local core = require "apl.core.oracle"
local sys = require "apl.core.sys"
local oracle = require "apl.oracle"
local prompts = require "apl.prompts"
local root = T.root()
local server = dofile(root .. "/tests/lua/oracle_server.lua")

-- ------------------------------------------------------------------------------------------
-- Helpers

-- Pair i: a has ga "good"s, b has gb; the judge should prefer the one with more.
local function pair(i, ga, gb, marker)
    return { prompt = "pair-" .. i .. "- " .. (marker or ""),
             a = ("good "):rep(ga) .. "first " .. i, b = ("good "):rep(gb) .. "second " .. i }
end

local function expected(p)
    local _, ga = p.a:gsub("good", "")
    local _, gb = p.b:gsub("good", "")
    return ga > gb and 1 or 2
end

local function pairs_n(n)
    local list = {}
    for i = 1, n do list[i] = pair(i, i % 3, (i + 1) % 3) end
    return list
end

local fs = require "apl.fs"
local read = fs.read

local write = fs.write

local function ledger_entries(path)
    local out = {}
    for line in (read(path) or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
    return out
end

local function with_server(opts, fn)
    local s = server.start(opts)
    local ok, err = pcall(fn, s)
    s:stop()
    if not ok then error(err, 0) end
end

-- Options of a fast test judge: short timeouts and backoffs.
local function judge(s, extra)
    local o = { base_url = s.url, model = "test-judge", template = "tldr", seed = 1,
                timeout = 5, backoff = 0.02, backoff_max = 0.1, max_tries = 3, progress = false }
    for k, v in pairs(extra or {}) do o[k] = v end
    return oracle.openai(o)
end

-- How many requests the server saw per pair id ("pair-7-" in the prompt).
local function requests_per_pair(s)
    local n = {}
    for _, r in ipairs(s:requests()) do
        local id = tonumber(r.user:match("pair%-(%d+)%-"))
        n[id] = (n[id] or 0) + 1
    end
    return n
end

-- ------------------------------------------------------------------------------------------
-- Prompts and answers

-- The paper's Figure 4 (Appendix A), copied from the paper's text, where each prompt is printed
-- on one line; the tags mark the system and user messages.
local FIGURE4 = {
    imdb = [[// SENTIMENT ORACLE PROMPT <SYSTEM> You are a helpful assistant that evaluates the quality and positive sentiment of movie reviews </SYSTEM> <USER> Which of the following movie reviews is better? The best one will be the one with the most positive sentiment, which also is grammatically correct, consistent, and avoids repetition. Review A: {{PROMPT}} {{COMPLETION-A}} Review B: {{PROMPT}} {{COMPLETION-B}} First, provide a one-sentence comparison of the two reviews, explaining which is better and why. Second, on a new line, state only "A" or "B" to indicate your choice. You must choose A or B for the preferred answer even if neither review is very good. Your response should use the format: Comparison: <one-sentence comparison and explanation> Preferred: <"A" or "B"> <\USER>]],
    tldr = [[// SUMMARIZATION ORACLE PROMPT <SYSTEM> You are a helpful assistant that evaluates the quality of summaries for internet posts. </SYSTEM> <USER> Which of the following summaries does a better job of summarizing the most important points in the given forum post, without including unimportant or irrelevant details? Post: {{PROMPT}} Summary A: {{COMPLETION_A}} Summary B: {{COMPLETION_B}} First, provide a one-sentence comparison of the two summaries, which you prefer and why. Second, on a new line, state only "A" or "B" to indicate your choice. You must choose A or B for the preferred answer even if neither summary is very good. Your response should use the format: Comparison: <one-sentence comparison and explanation> Preferred: <"A" or "B"> <\USER>]],
}

-- system, user of a Figure 4 prompt, its placeholders filled as render(t, "PROMPT-TEXT",
-- "TEXT-OF-A", "TEXT-OF-B") fills a template's.
local function figure4(name)
    local system, user = FIGURE4[name]:match("<SYSTEM> (.-) </SYSTEM> <USER> (.-) <\\USER>")
    user = user:gsub("{{PROMPT}}", "PROMPT-TEXT"):gsub("{{COMPLETION[-_]A}}", "TEXT-OF-A")
        :gsub("{{COMPLETION[-_]B}}", "TEXT-OF-B")
    return system, user
end

T.case("oracle prompts: imdb and tldr are the paper's Figure 4, word for word", function()
    for _, name in ipairs { "imdb", "tldr" } do
        local want_system, want_user = figure4(name)
        local system, user = prompts.render(prompts.get(name), "PROMPT-TEXT", "TEXT-OF-A", "TEXT-OF-B")
        T.eq(system, want_system, name .. " system")
        -- The paper lost the line breaks: the words and their order must match, spaces aside.
        T.eq(user:gsub("%s+", " "), want_user, name .. " user")
        -- The answer format stands on lines of its own, as the judge should answer and parse reads.
        T.ok(user:find('\n\nComparison: <one%-sentence comparison and explanation>\nPreferred: <"A" or "B">$'),
            name .. ": answer format lines")
        T.ok(user:find("\n\nYou must choose A or B for the preferred answer even if neither ", 1, true), name)
    end
    -- IMDB's judge reads whole reviews: the prompt before each completion.
    local _, user = prompts.render(prompts.get("imdb"), "The film", "was great.", "was dull.")
    T.ok(user:find("Review A:\nThe film was great.\n\nReview B:\nThe film was dull.\n", 1, true), user)
end)

T.case("oracle prompts: the alternatives kept by name, placeholders filled once", function()
    T.eq(prompts.names(), { "imdb", "imdb_sentiment", "tldr", "tldr_dpo" })
    T.ok(prompts.get("imdb_sentiment").user:find("more positive", 1, true))
    T.ok(not prompts.get("imdb_sentiment").user:find("You must choose", 1, true))
    local dpo = prompts.get("tldr_dpo")
    T.ok(dpo.user:find("A good summary is both precise and concise.", 1, true))
    local system, user = prompts.render(dpo, "the post", "x {{B}} %1", "y")
    T.eq(system, dpo.system)
    T.ok(user:find("Post:\nthe post\n", 1, true))
    T.ok(user:find("Summary A:\nx {{B}} %1\n\nSummary B:\ny\n", 1, true), user)
    T.assert_error_match(function() prompts.get("nope") end,
        "no template named 'nope' %(imdb, imdb_sentiment, tldr, tldr_dpo%)")
    T.assert_error_match(function() prompts.copy("imdb", { user = "{{A}} only" }) end, "no {{B}}")
    T.eq(prompts.copy("imdb", { system = "S" }).system, "S")
end)

T.case("oracle parse: judge answers, table-driven", function()
    local rows = { -- name, content, answer, rationale or reason pattern
        { "plain", "Comparison: A is tighter.\nPreferred: A", "A", "A is tighter." },
        -- The paper's format, with a rationale of its Appendix C, and echoing the template's <"B">.
        { "paper", "Comparison: Review A is better because it provides a positive sentiment about the movie, is grammatically correct, and does not contain repetition like Review B.\nPreferred: A",
          "A", "Review A is better because it provides a positive sentiment about the movie, is grammatically correct, and does not contain repetition like Review B." },
        { "template echo", 'Comparison: <B is kinder>\nPreferred: <"B">', "B", "<B is kinder>" },
        { "quoted", 'Comparison: x\nPreferred: "B"', "B", "x" },
        { "markdown", "**Comparison:** y\n**Preferred:** B", "B", "y" },
        { "crlf", "Comparison: z\r\nPreferred: A\r\n", "A", "z" },
        { "last wins", "Preferred: A\nComparison: on reflection B\nPreferred: B", "B", "on reflection B" },
        { "no comparison", "B is better overall.\nPreferred: B", "B", "B is better overall." },
        { "letter C", "Comparison: both\nPreferred: C", nil, "'Preferred: C' is not A or B" },
        { "both letters", "Preferred: A or B", nil, "is not A or B" },
        { "empty", "", nil, "empty answer" },
        { "blank", " \n\t", nil, "empty answer" },
        { "nil", nil, nil, "empty answer" },
        { "no line", "I prefer the first one.", nil, "no 'Preferred:' line" },
        -- A NUL ends a line: the last line still decides (a C string would stop at the NUL).
        { "NUL", "Preferred: A\0Preferred: B", "B", "" },
        { "NUL rationale", "Comparison: x\0Preferred: A", "A", "x" },
        { "spaces then text", "Preferred: A" .. (" "):rep(50) .. "x", nil, "is not A or B" },
    }
    for _, r in ipairs(rows) do
        local answer, why = oracle.parse(r[2])
        T.eq(answer, r[3], r[1])
        if r[3] then T.eq(why, r[4], r[1]) else T.ok(why:find(r[4], 1, true), r[1] .. ": " .. why) end
    end
end)

T.case("oracle parse: linear in the answer's length (runs of spaces, many decision lines)", function()
    -- Each took ~20 s when a pattern backtracked over every space of a line (quadratic); linear
    -- work is milliseconds, so 2 s of CPU leaves a wide margin on a loaded machine.
    local hostile = {
        "Preferred: A" .. (" "):rep(40000) .. "x",
        "Comparison: " .. (" \t"):rep(20000) .. "x\nPreferred: B",
        ("why\nPreferred: A\n"):rep(50000),
    }
    for i, text in ipairs(hostile) do
        local t0 = os.clock()
        oracle.parse(text)
        local dt = os.clock() - t0
        T.ok(dt < 2, string.format("answer %d (%d bytes) parsed in %.2f s", i, #text, dt))
    end
end)

-- ------------------------------------------------------------------------------------------
-- Ledger

-- The ledger as apl.oracle opens it: a journal it alone holds, its lines called ledger entries.
local function ledger_open(path) return sys.journal_open(path, { lock = true, noun = "ledger entry" }) end

T.case("oracle ledger: append, reload, cut last line skipped, corrupt line named", function()
    local path = T.tmpdir() .. "/ledger.jsonl"
    local l, lines, warning = ledger_open(path)
    T.eq(#lines, 0)
    T.eq(warning, nil)
    l:append('{"key":"k1"}')
    l:append('{"key":"k2"}')
    T.assert_error_match(function() l:append('{"key":\n"k3"}') end, "one non%-empty line")
    T.assert_error_match(function() ledger_open(path) end, "in use by another process")
    l:close()
    l:close() -- twice is fine

    -- A process killed mid-write leaves a cut last line: skipped, reported, cut from the file.
    write(path, read(path) .. '{"key":"k3","ans')
    l, lines, warning = ledger_open(path)
    T.eq(lines, { '{"key":"k1"}', '{"key":"k2"}' })
    T.ok(warning and warning:find("ledger.jsonl:3: truncated last line skipped", 1, true), warning)
    l:append('{"key":"k4"}')
    l:close()
    T.eq(read(path), '{"key":"k1"}\n{"key":"k2"}\n{"key":"k4"}\n')

    -- A complete object that lost only its newline is kept.
    write(path, '{"key":"k1"}\n{"key":"k2"}')
    l, lines, warning = ledger_open(path)
    T.eq(#lines, 2)
    T.eq(warning, nil)
    l:close()
    T.eq(read(path), '{"key":"k1"}\n{"key":"k2"}\n')

    write(path, '{"key":"k1"}\nnot json\n{"key":"k2"}\n')
    T.assert_error_match(function() ledger_open(path) end, "ledger%.jsonl:2: corrupt ledger entry")
    write(path, '{"key":"k1"}\n[1,2]\n')
    T.assert_error_match(function() ledger_open(path) end, "ledger%.jsonl:2: corrupt")
    -- Trailing text after an object (or after a NUL) is named here with file:line, not met later
    -- by the Lua JSON decoder without one.
    write(path, '{"key":"k1"}\n{"key":"k2"} trailing garbage\n{"key":"k3"}\n')
    T.assert_error_match(function() ledger_open(path) end, "ledger%.jsonl:2: corrupt ledger entry %(not one JSON object%)")
    write(path, '{"key":"k1"}\0{"key":"k2"}\n')
    T.assert_error_match(function() ledger_open(path) end, "ledger%.jsonl:1: corrupt")
    write(path, '{"key":"k1"}   \r\n')
    local l2, lines2 = ledger_open(path)
    T.eq(#lines2, 1, "blanks after the object are fine")
    l2:close()
    T.assert_error_match(function() ledger_open(T.tmpdir() .. "/no/such/dir/l.jsonl") end,
        "No such file")
end)

T.case("oracle key: stable FNV-1a over length-prefixed parts", function()
    -- Pinned: changing the hash would orphan every existing ledger.
    T.eq(core.key("a", "b"), "41c80da72d0aec94")
    T.ok(core.key("ab", "c") ~= core.key("a", "bc"))
    T.ok(core.key("x", "AB") ~= core.key("x", "BA"))
    T.ok(core.key("x"):match("^%x+$") and #core.key("x") == 16)
end)

-- ------------------------------------------------------------------------------------------
-- The HTTP judge

T.case("oracle openai: labels correct and un-swapped; ledger replays without requests", function()
    with_server({}, function(s)
        local path = T.tmpdir() .. "/labels.jsonl"
        local list = pairs_n(24)
        local o = judge(s, { ledger = path })
        local labels = o:label(list)
        local orders = {}
        for i, l in ipairs(labels) do
            T.eq(l.preferred, expected(list[i]), "pair " .. i)
            T.eq(l.cached, false)
            T.ok(l.rationale:find("says good more often"), l.rationale)
            T.ok(l.raw:find("Preferred: [AB]"), l.raw)
        end
        for _, e in ipairs(ledger_entries(path)) do orders[e.order] = (orders[e.order] or 0) + 1 end
        T.ok((orders.AB or 0) > 3 and (orders.BA or 0) > 3, "both orders shown: " .. cjson.encode(orders))
        local st = o:stats()
        T.eq({ st.requests, st.labels, st.cached, st.failed, st.retries }, { 24, 24, 0, 0, 0 })
        T.ok(st.prompt_tokens > 24 * 50 and st.completion_tokens > 0)
        T.eq(#s:requests(), 24)
        o:close()

        local o2 = judge(s, { ledger = path, price_in = 1, price_out = 2 })
        labels = o2:label(list)
        for i, l in ipairs(labels) do
            T.eq({ l.preferred, l.cached }, { expected(list[i]), true })
        end
        T.eq(#s:requests(), 24, "no request for ledgered pairs")
        st = o2:stats()
        T.eq({ st.requests, st.cached, st.cost }, { 0, 24, 0 })
        -- A new pair is paid for, and priced.
        labels = o2:label { list[1], pair(99, 2, 0) }
        T.eq({ labels[1].cached, labels[2].cached, labels[2].preferred }, { true, false, 1 })
        st = o2:stats()
        T.ok(math.abs(st.cost - (st.prompt_tokens + 2 * st.completion_tokens) / 1000) < 1e-12)
        T.ok(st.cost > 0)
        o2:close()
    end)
end)

T.case("oracle openai: the imdb judge is sent the paper's messages, whole reviews", function()
    with_server({}, function(s)
        local list = pairs_n(8)
        local labels = judge(s, { template = "imdb" }):label(list)
        for i, l in ipairs(labels) do T.eq(l.preferred, expected(list[i]), "pair " .. i) end
        local body = cjson.decode(s:requests()[1].body)
        T.eq(body.messages[1], { role = "system", content = prompts.imdb.system })
        local p = list[tonumber(body.messages[2].content:match("pair%-(%d+)%-"))]
        local first, second = p.a, p.b
        if not body.messages[2].content:find("Review A:\n" .. p.prompt .. " " .. p.a, 1, true) then
            first, second = p.b, p.a
        end
        T.eq(body.messages[2].content, select(2, prompts.render(prompts.imdb, p.prompt, first, second)))
        T.ok(body.messages[2].content:find("Review B:\n" .. p.prompt .. " " .. second .. "\n", 1, true))
    end)
end)

T.case("oracle openai: faults retried, then reported unlabelled and not charged", function()
    with_server({ hang = 3 }, function(s)
        -- marker, expected reason pattern (nil: labelled), requests the server sees. libcurl
        -- itself sends a request again when a reused keep-alive connection dies before any
        -- answer, so a dropped connection is seen at least as often as we tried.
        local rows = {
            { "[fault:429x1]", nil, 2 }, { "[fault:500x2]", nil, 3 }, { "[fault:hangx1]", nil, 2 },
            { "[fault:dropx2]", nil, "at least 3" }, { "[fault:badjsonx1]", nil, 2 }, { "[fault:wrongx1]", nil, 2 },
            { "[fault:wrongx2]", "'Preferred: C' is not A or B", 2 },
            { "[fault:emptyx2]", "empty answer", 2 },
            { "[fault:noprefx2]", "no 'Preferred:' line", 2 },
            { "[fault:badjsonx2]", "reply is not valid JSON", 2 },
            { "[fault:500x9]", "HTTP 500.*%(3 tries%)", 3 },
            { "[fault:hangx9]", "timed out after 1s %(3 tries%)", 3 },
            { "[fault:dropx99]", "%(3 tries%)", "at least 3" },
        }
        local list = {}
        for i, r in ipairs(rows) do list[i] = pair(i, i % 2, (i + 1) % 2, r[1]) end
        local path = T.tmpdir() .. "/labels.jsonl"
        -- backoff_max 2: Retry-After is capped there, so the 429's "Retry-After: 1" is obeyed.
        local o = judge(s, { ledger = path, budget = #rows, max_in_flight = 16, timeout = 1, backoff_max = 2 })
        local labels = o:label(list)
        local seen = requests_per_pair(s)
        local n_ok = 0
        for i, r in ipairs(rows) do
            local l = labels[i]
            if r[2] then
                T.eq(l.preferred, nil, r[1])
                T.ok(l.reason and l.reason:find(r[2]), r[1] .. ": reason " .. tostring(l.reason))
            else
                T.eq(l.preferred, expected(list[i]), r[1])
                n_ok = n_ok + 1
            end
            if type(r[3]) == "number" then T.eq(seen[i], r[3], r[1] .. ": requests")
            else T.ok(seen[i] >= 3, r[1] .. ": " .. seen[i] .. " requests") end
        end
        local st = o:stats()
        T.eq({ st.labels, st.failed }, { n_ok, #rows - n_ok })
        T.ok(st.retries >= 15, "retries " .. st.retries)
        -- Retry-After: 1 was honoured (backoff alone is 0.02 s).
        local t429 = {}
        for _, r in ipairs(s:requests()) do
            if r.user:find("[fault:429x1]", 1, true) then t429[#t429 + 1] = r.time end
        end
        T.ok(t429[2] - t429[1] >= 0.9, string.format("retried after %.2fs", t429[2] - t429[1]))
        -- Only answers with a label were charged: the rest of the budget buys new labels.
        local more = {}
        for i = 1, #rows - n_ok + 1 do more[i] = pair(100 + i, 1, 0) end
        labels = o:label(more)
        for i = 1, #rows - n_ok do T.eq(labels[i].preferred, 1) end
        T.eq(labels[#more].reason, "label budget exhausted")
        o:close()
    end)
end)

T.case("oracle openai: budget holds across a restart", function()
    with_server({}, function(s)
        local path = T.tmpdir() .. "/labels.jsonl"
        local list = pairs_n(8)
        local o = judge(s, { ledger = path, budget = 5 })
        local labels = o:label(list)
        local n = 0
        for i, l in ipairs(labels) do
            if l.preferred then n = n + 1; T.eq(l.preferred, expected(list[i])) end
            if i > 5 then T.eq(l.reason, "label budget exhausted") end
        end
        T.eq(n, 5)
        o:close()
        o = judge(s, { ledger = path, budget = 5 })
        labels = o:label(list)
        T.eq({ labels[5].cached, labels[6].reason, #s:requests() }, { true, "label budget exhausted", 5 })
        o:close()
    end)
end)

T.case("oracle openai: both orders keeps consistent answers only", function()
    with_server({}, function(s)
        local list = pairs_n(6)
        list[7] = pair(7, 2, 0, "[fault:alwaysAx99]")
        list[8] = pair(8, 0, 2, "[fault:alwaysAx99]")
        local o = judge(s, { both_orders = true })
        local labels = o:label(list)
        for i = 1, 6 do T.eq(labels[i].preferred, expected(list[i])) end
        for i = 7, 8 do
            T.eq(labels[i].preferred, nil)
            T.ok(labels[i].reason:find("inconsistent"), labels[i].reason)
        end
        T.eq(#s:requests(), 16)
        T.eq(o:stats().failed, 2)
    end)
end)

-- The server counts the requests it is handling when each arrives; limits are checked by those
-- counts and by how far apart requests arrived (lower bounds only: a slow machine makes
-- requests later, never earlier, so these cannot fail for want of CPU).
local function max_in_flight(s)
    local m = 0
    for _, r in ipairs(s:requests()) do m = math.max(m, r.in_flight) end
    return m
end

local function arrival_span(s)
    local reqs = s:requests()
    return reqs[#reqs].time - reqs[1].time
end

T.case("oracle openai: 16 requests in flight; rpm and tpm limits", function()
    with_server({ delay = 1 }, function(s)
        local o = judge(s, { max_in_flight = 16, timeout = 10 })
        T.eq(#o:label(pairs_n(32)), 32)
        T.eq(max_in_flight(s), 16, "the server saw 16 requests at once, never more")
    end)
    with_server({ delay = 1 }, function(s)
        local o = judge(s, { max_in_flight = 3, timeout = 10 })
        o:label(pairs_n(8))
        T.eq(max_in_flight(s), 3, "max_in_flight = 3")
    end)
    with_server({}, function(s)
        -- rpm 600: 10 a second after a burst of 10, so the 20th request starts ~1 s after the first.
        local o = judge(s, { rpm = 600 })
        o:label(pairs_n(20))
        T.ok(arrival_span(s) > 0.85, string.format("rpm 600: 20 requests within %.2fs", arrival_span(s)))
    end)
    with_server({}, function(s)
        -- tpm: each request is estimated at max_tokens + body/4 (~1100) tokens; 3300 tokens/s
        -- lets 3 start at once and about 3 a second after that.
        local o = judge(s, { tpm = 198000, max_tokens = 1000 })
        local list = pairs_n(7)
        for _, p in ipairs(list) do p.prompt = p.prompt .. " tpm" end
        o:label(list)
        T.ok(arrival_span(s) > 0.9, string.format("tpm: 7 requests within %.2fs", arrival_span(s)))
    end)
end)

T.case("oracle openai: Retry-After (seconds, ms, a date, inf) is capped at backoff_max, and the error says so", function()
    for _, c in ipairs {
        { "inf", "[fault:429x9]", "inf" }, { "86400", "[fault:429x9]", "86400" },
        { "inf", "[fault:429msx9]", "inf" }, { "Fri, 31 Dec 2100 23:59:59 GMT", "[fault:429x9]", "%d" },
    } do
        with_server({ retry_after = c[1] }, function(s)
            local o = judge(s, { backoff_max = 0.2, max_tries = 2 })
            local t0 = core.now()
            local l = o:label { pair(1, 1, 0, c[2]) }[1]
            T.ok(core.now() - t0 < 30, "not stalled by Retry-After " .. c[1])
            T.eq(l.preferred, nil, c[1])
            T.ok(l.reason:find("HTTP 429") and l.reason:find("Retry%-After of " .. c[3] .. "[^;]* s was capped at backoff_max 0%.2 s"),
                c[1] .. ": " .. l.reason)
        end)
    end
end)

-- A child ./apl process labels 40 pairs; it is killed with -9 mid-batch and run again.
local CHILD = [[
local cjson = require "cjson"
local dir, url = arg[1], arg[2]
local o = apl.oracle.openai{base_url = url, model = "judge", template = "tldr", seed = 7,
    ledger = dir .. "/labels.jsonl", api_key_env = "APL_TEST_ORACLE_KEY", max_in_flight = 4,
    timeout = 5, backoff = 0.02}
local list = {}
for i = 1, 40 do
    list[i] = {prompt = "pair-" .. i .. "-", a = ("good "):rep(i % 3) .. "first " .. i,
               b = ("good "):rep((i + 1) % 3) .. "second " .. i}
end
local labels = o:label(list)
local out = {}
for i, l in ipairs(labels) do out[i] = {preferred = l.preferred or 0, cached = l.cached} end
local f = assert(io.open(dir .. "/result.json", "w"))
f:write(cjson.encode({labels = out, stats = o:stats()}))
f:close()
]]

T.case("oracle openai: kill -9 mid-batch and restart loses no label and pays nothing twice", function()
    local key = "sk-apl-test-3f9c1d7e0b5a4c2e9d8f"
    local run = T.tmpdir()
    write(run .. "/child.lua", CHILD)
    with_server({ delay = 0.25, dir = T.tmpdir() }, function(s)
        local env = "APL_TEST_ORACLE_KEY=" .. key .. " APL_PROGRESS_INTERVAL=0.2"
        local cmd = string.format("cd %s && %s ./apl %s/child.lua %s %s", root, env, run, run, s.url)
        local p = io.popen(cmd .. " >" .. run .. "/out1 2>" .. run .. "/err1 & echo $!")
        local pid = math.tointeger(p:read("n"))
        p:close()
        local t0 = core.now()
        while #ledger_entries(run .. "/labels.jsonl") < 8 and core.now() - t0 < 20 do core.sleep(0.02) end
        os.execute("kill -9 " .. pid)
        core.sleep(0.3) -- let the server log what was already on the wire
        local before = {}
        for _, e in ipairs(ledger_entries(run .. "/labels.jsonl")) do
            if e.answer then before[tonumber(e.prompt:match("pair%-(%d+)%-"))] = true end
        end
        local n_before, n_seen = 0, #s:requests()
        for _ in pairs(before) do n_before = n_before + 1 end
        T.ok(n_before >= 8 and n_before < 40, "killed mid-batch after " .. n_before .. " labels; " ..
            "its stderr: " .. tostring(read(run .. "/err1")))
        T.eq(read(run .. "/result.json"), nil, "the first run did not finish")

        T.ok(os.execute(cmd .. " >" .. run .. "/out2 2>" .. run .. "/err2"), read(run .. "/err2"))
        local result = cjson.decode(read(run .. "/result.json"))
        for i, l in ipairs(result.labels) do
            T.eq(l.preferred, expected(pair(i, i % 3, (i + 1) % 3)), "pair " .. i)
            T.eq(l.cached, before[i] == true, "pair " .. i .. " cached")
        end
        T.eq(result.stats.cached, n_before)
        local reqs = s:requests()
        for j = n_seen + 1, #reqs do
            local id = tonumber(reqs[j].user:match("pair%-(%d+)%-"))
            T.ok(not before[id], "pair " .. id .. " was ledgered but asked again")
        end
        T.ok(#reqs <= 40 + 4, #reqs .. " requests: at most the 4 in flight at the kill are repeated")
        T.ok(read(run .. "/err2"):find("oracle judge", 1, true), "progress line on stderr")

        -- The key went to the server in the Authorization header and nowhere else.
        for _, r in ipairs(reqs) do
            T.eq(r.auth, "Bearer " .. key)
            T.ok(not (cjson.encode(r.headers) .. r.body):find(key, 1, true), "key outside Authorization")
        end
        local files = T.sh("find " .. run .. " -type f")
        T.ok(files:find("labels.jsonl", 1, true) and files:find("err2", 1, true))
        T.eq(T.sh("grep -rl -- '" .. key .. "' " .. run .. " || true"), "", "files that hold the key")
    end)
end)

T.case("oracle openai: Ctrl-C stops a batch at once, cleanly", function()
    local run = T.tmpdir()
    write(run .. "/child.lua", CHILD)
    -- The server holds each answer for 30 s, so a child that ends before then stopped while its
    -- requests were in flight: no timing of the stop itself, which a loaded machine would stretch.
    with_server({ delay = 30, dir = T.tmpdir() }, function(s)
        os.execute(string.format("cd %s && (APL_TEST_ORACLE_KEY=k ./apl %s/child.lua %s %s 2>%s/err & " ..
            "echo $! >%s/pid; wait $!; echo $? >%s/status) &", root, run, run, s.url, run, run, run))
        local t0 = core.now()
        while #s:requests() < 4 and core.now() - t0 < 20 do core.sleep(0.02) end
        T.eq(#s:requests(), 4, "4 requests in flight")
        os.execute("kill -INT " .. read(run .. "/pid"))
        t0 = core.now()
        while not read(run .. "/status") and core.now() - t0 < 20 do core.sleep(0.02) end
        T.ok(core.now() - t0 < 25, "stopped after " .. (core.now() - t0) .. "s, before any answer came back")
        T.eq(read(run .. "/status"), "130\n")
        T.ok(read(run .. "/err"):find("interrupted"), read(run .. "/err"))
        T.eq(#s:requests(), 4)
    end)
end)

T.case("oracle openai: option errors, TLS failures reported", function()
    with_server({}, function(s)
        T.assert_error_match(function() oracle.openai { model = "m", template = "tldr" } end,
            "apl%.oracle%.openai: option 'base_url' is required")
        T.assert_error_match(function() judge(s, { template = "nope" }) end, "no template named")
        T.assert_error_match(function() judge(s, { api_key_env = "APL_TEST_UNSET_VARIABLE" }) end,
            "environment variable APL_TEST_UNSET_VARIABLE %(api_key_env%) is not set")
        T.assert_error_match(function() judge(s, { ca_file = "/nonexistent/ca.pem" }) end,
            "ca_file /nonexistent/ca%.pem is not readable")
        T.assert_error_match(function() judge(s, { max_in_flight = 0 }) end, "max_in_flight must be >= 1")
        T.assert_error_match(function() judge(s, { timeout = "fast" }) end, "option 'timeout' must be a number")
        local o = judge(s)
        T.assert_error_match(function() o:label { pair(1, 1, 0), { prompt = "p", a = "x" } } end,
            "apl%.oracle%.label: pairs%[2%]%.b must be a string, got nil")
        T.eq(o:label {}, {})
        -- Speaking TLS to a plain HTTP port fails verification-free handshakes: reported, once.
        local tls = judge(s, { base_url = s.url:gsub("^http:", "https:") })
        local l = tls:label { pair(1, 1, 0) }[1]
        T.eq(l.preferred, nil)
        T.ok(l.reason:find("SSL") or l.reason:find("TLS"), l.reason)
        T.eq(tls:stats().requests, 1)
    end)
end)

-- ------------------------------------------------------------------------------------------
-- Judge backends: one file each under lua/apl/judges/, chosen by the backend option

T.case("oracle backends: request bodies and reply parsing, table-driven", function()
    local openai, anthropic = require "apl.judges.openai", require "apl.judges.anthropic"
    local q = { model = "m", system = "sys", user = 'say "hi"\n', temperature = 0.05, max_tokens = 64 }
    T.eq(openai.request(q), { model = "m", temperature = 0.05, max_tokens = 64,
        messages = { { role = "system", content = "sys" }, { role = "user", content = 'say "hi"\n' } } })
    T.eq(anthropic.request(q), { model = "m", system = "sys", temperature = 0.05, max_tokens = 64,
        messages = { { role = "user", content = 'say "hi"\n' } } })
    q.system = ""
    T.eq(#openai.request(q).messages, 1, "no empty system message")
    T.eq(anthropic.request(q).system, nil, "no empty system field")
    -- backend, reply body, content (nil: refused), input tokens or the reason
    local rows = {
        { openai, '{"choices":[{"message":{"content":"Preferred: A"}}],"usage":{"prompt_tokens":12,"completion_tokens":3}}',
          "Preferred: A", 12, 3 },
        { openai, '{"choices":[{"message":{"content":""}}]}', "", nil, nil },
        -- A NUL reaches apl.oracle.parse, where it ends a line (a C string stopped at it).
        { openai, '{"choices":[{"message":{"content":"Preferred: A\\u0000Preferred: B"}}]}', "Preferred: A\0Preferred: B" },
        { openai, '{"error":{"message":"x"}}', nil, "reply has no choices[0].message.content string" },
        { openai, '{"choices":[{"message":{"content":null}}]}', nil, "reply has no choices[0].message.content string" },
        { openai, '{"choices":5}', nil, "reply has no choices[0].message.content string" },
        { openai, '{"choices":[5]}', nil, "reply has no choices[0].message.content string" },
        { anthropic, '{"type":"message","content":[{"type":"text","text":"Preferred: B"}],"usage":{"input_tokens":7,"output_tokens":2}}',
          "Preferred: B", 7, 2 },
        { anthropic, '{"content":[{"type":"thinking","thinking":"Preferred: A"},{"type":"text","text":"x\n"},' ..
          '{"type":"tool_use","text":"no"},{"type":"text","text":"Preferred: B"}]}', "x\nPreferred: B", nil, nil },
        { anthropic, '{"content":[]}', "", nil, nil },
        { anthropic, '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', nil,
          "the judge sent an error: overloaded_error: Overloaded" },
        { anthropic, '{"choices":[{"message":{"content":"Preferred: A"}}]}', nil, "reply has no content list" },
        { anthropic, '{"content":"Preferred: A"}', nil, "reply has no content list" },
    }
    for i, r in ipairs(rows) do
        local content, a, b = r[1].reply(cjson.decode(r[2]))
        T.eq(content, r[3], "row " .. i)
        if r[3] then T.eq({ a, b }, { r[4], r[5] }, "row " .. i .. " usage") else T.eq(a, r[4], "row " .. i) end
    end
end)

-- Options of a test judge speaking Anthropic's Messages API.
local function claude(s, extra)
    local o = { backend = "anthropic", model = "claude-test" }
    for k, v in pairs(extra or {}) do o[k] = v end
    return judge(s, o)
end

T.case("oracle anthropic: the Messages API request, labels from the text blocks, ledger replays", function()
    with_server({}, function(s)
        -- $PATH as the key: always set, its value known to the test (see "oracle keys" below).
        local key, path = os.getenv("PATH"), T.tmpdir() .. "/labels.jsonl"
        local list = pairs_n(12)
        list[13] = pair(13, 2, 0, "[fault:blocksx99]")
        local o = claude(s, { ledger = path, api_key_env = "PATH" })
        T.eq(tostring(o):match("^apl%.Oracle%(anthropic claude%-test"), "apl.Oracle(anthropic claude-test")
        local labels = o:label(list)
        for i, l in ipairs(labels) do
            T.eq({ l.preferred, l.cached }, { expected(list[i]), false }, "pair " .. i)
            T.ok(l.rationale:find("says good more often"), l.rationale)
        end
        -- The answer in two text blocks, after a thinking block that is not the answer.
        T.ok(not labels[13].raw:find("surely", 1, true) and labels[13].raw:find("^Comparison: [^\n]*\nPreferred: [AB]$"),
            labels[13].raw)
        local reqs = s:requests()
        T.eq(#reqs, 13)
        for _, r in ipairs(reqs) do
            T.ok(r.path:find("/v1/messages$"), r.path)
            T.eq({ r.api_key, r.auth, r.headers["anthropic-version"] }, { key, cjson.null, "2023-06-01" })
            local body = cjson.decode(r.body)
            T.eq({ body.system, body.max_tokens, body.temperature, body.model },
                { prompts.tldr.system, 256, 0.05, "claude-test" })
            T.eq(#body.messages, 1)
            T.eq(body.messages[1].role, "user")
        end
        local st = o:stats()
        T.eq({ st.requests, st.labels, st.failed }, { 13, 13, 0 })
        T.ok(st.prompt_tokens > 13 * 50 and st.completion_tokens > 0, "usage from input/output_tokens")
        for _, e in ipairs(ledger_entries(path)) do T.eq(e.kind, "anthropic") end
        o:close()
        o = claude(s, { ledger = path, api_key_env = "PATH" })
        T.eq(o:label(list)[1].cached, true)
        T.eq(#s:requests(), 13, "no request for ledgered pairs")
        o:close()
    end)
end)

T.case("oracle anthropic: 429 and 529 overloaded retried, error bodies reported, not charged", function()
    with_server({}, function(s)
        local rows = { -- marker, reason pattern (nil: labelled), requests the server sees
            { "[fault:overloadedx2]", nil, 3 }, { "[fault:429x1]", nil, 2 }, { "[fault:500x1]", nil, 2 },
            { "[fault:overloadedx9]", "HTTP 529: .*overloaded_error.*Overloaded.*%(3 tries%)", 3 },
            { "[fault:429x9]", "HTTP 429: .*rate_limit_error.*%(3 tries; the server's Retry%-After of 1 s was capped", 3 },
            { "[fault:wrongx2]", "'Preferred: C' is not A or B", 2 },
            { "[fault:badjsonx2]", "reply is not valid JSON", 2 },
        }
        local list = {}
        for i, r in ipairs(rows) do list[i] = pair(i, i % 2, (i + 1) % 2, r[1]) end
        local o = claude(s, { budget = #rows, backoff_max = 0.05 })
        local labels = o:label(list)
        local seen, n_ok = requests_per_pair(s), 0
        for i, r in ipairs(rows) do
            if r[2] then
                T.eq(labels[i].preferred, nil, r[1])
                T.ok(labels[i].reason and labels[i].reason:find(r[2]), r[1] .. ": " .. tostring(labels[i].reason))
            else
                T.eq(labels[i].preferred, expected(list[i]), r[1])
                n_ok = n_ok + 1
            end
            T.eq(seen[i], r[3], r[1] .. ": requests")
        end
        -- Failures used none of the budget.
        local more = {}
        for i = 1, #rows - n_ok do more[i] = pair(100 + i, 1, 0) end
        for _, l in ipairs(o:label(more)) do T.eq(l.preferred, 1) end
    end)
end)

T.case("oracle anthropic: preflight diagnoses (the key redaction is in \"oracle keys\" below)", function()
    with_server({}, function(s)
        local function fails(extra, pattern)
            T.assert_error_match(function() claude(s, extra):preflight() end, pattern)
        end
        local before = #s:requests()
        T.ok(claude(s):preflight(), "a working judge")
        T.eq(#s:requests(), before + 1, "one request")
        local body = cjson.decode(s:requests()[before + 1].body)
        T.ok(body.max_tokens == 16 and body.system, "a small Messages request")
        fails({ model = "fault:nomodel" }, "cannot be used: the judge does not know this model: HTTP 404")
        fails({ model = "fault:denied" }, "the API key was refused: HTTP 401.*authentication_error")
        fails({ base_url = s.url .. "/x" }, "/v1/x/messages.*no /messages endpoint there for the anthropic backend")
        -- An OpenAI reply where a Messages answer belongs: the backend says what it missed.
        package.loaded["apl.judges.test_mixed"] = {
            path = "/chat/completions", key_header = "x-api-key: ", headers = { "anthropic-version: 2023-06-01" },
            request = require("apl.judges.openai").request, reply = require("apl.judges.anthropic").reply }
        fails({ backend = "test_mixed" }, "unexpected reply: the reply is not a test_mixed answer %(reply has no content list%)")
        package.loaded["apl.judges.test_mixed"] = nil
    end)
end)

T.case("oracle backends: chosen by name; unknown or broken backends and bad max_tokens are errors", function()
    with_server({}, function(s)
        T.eq(judge(s).backend, "openai", "the default")
        T.eq(oracle.judge { base_url = s.url, model = "m", template = "tldr", backend = "anthropic" }.kind, "anthropic")
        T.assert_error_match(function() judge(s, { backend = "nope" }) end,
            "apl%.oracle%.openai: unknown backend 'nope': module 'apl%.judges%.nope' not found")
        T.assert_error_match(function() oracle.judge { base_url = s.url, model = "m", template = "tldr", backend = "../x" } end,
            "apl%.oracle%.judge: option 'backend' must be a backend's name %(\"openai\", \"anthropic\"%), got \"%.%./x\"")
        T.assert_error_match(function() judge(s, { backend = 5 }) end, "option 'backend' must be .*got number")
        package.loaded["apl.judges.test_broken"] = { path = "/x", key_header = "k: ", headers = {}, reply = print }
        T.assert_error_match(function() judge(s, { backend = "test_broken" }) end,
            "backend 'test_broken' %(apl/judges/test_broken%.lua%) has no request function")
        package.loaded["apl.judges.test_broken"] = { path = "/x", key_header = "k: ", headers = { "no colon" },
            request = print, reply = print }
        T.assert_error_match(function() judge(s, { backend = "test_broken" }) end,
            "apl%.oracle%.openai: header 1 must be a \"Name: value\" line")
        package.loaded["apl.judges.test_broken"] = nil
        for _, v in ipairs { 0, 2.5 } do
            T.assert_error_match(function() judge(s, { max_tokens = v }) end, "option 'max_tokens' must be an integer >= 1")
        end
    end)
end)

T.case("oracle backends: a third backend is one table; absurd token counts are not trusted", function()
    -- A backend written in the test, as a user would write lua/apl/judges/<name>.lua: OpenAI's
    -- protocol with an extra header, whose usage reports 1e300 and -5 tokens.
    local openai = require "apl.judges.openai"
    package.loaded["apl.judges.test_custom"] = {
        path = "/chat/completions", key_header = "Authorization: Bearer ", headers = { "X-Judge-Test: yes" },
        request = openai.request,
        reply = function(t)
            local content = openai.reply(t)
            return content, 1e300, -5
        end,
    }
    with_server({}, function(s)
        local list = pairs_n(4)
        local o = judge(s, { backend = "test_custom", price_in = 1, price_out = 1 })
        for i, l in ipairs(o:label(list)) do T.eq(l.preferred, expected(list[i]), "pair " .. i) end
        T.eq(s:requests()[1].headers["X-Judge-Test"], "yes")
        local st = o:stats()
        T.eq({ st.prompt_tokens, st.completion_tokens, st.cost }, { 0, 0, 0 })
    end)
    package.loaded["apl.judges.test_custom"] = nil
end)

-- ------------------------------------------------------------------------------------------
-- Local oracles

T.case("oracle lua: same interface, un-swapped, ledgered, bad answers reported", function()
    local path = T.tmpdir() .. "/labels.jsonl"
    local calls, swapped = 0, 0
    local function fn(prompt, first, second)
        calls = calls + 1
        if first:find("second", 1, true) then swapped = swapped + 1 end
        local _, ga = first:gsub("good", "")
        local _, gb = second:gsub("good", "")
        return ga > gb and "A" or "B", "counted " .. ga .. " vs " .. gb
    end
    local list = pairs_n(20)
    local o = oracle.lua(fn, { ledger = path, seed = 3 })
    local labels = o:label(list)
    for i, l in ipairs(labels) do
        T.eq({ l.preferred, l.cached }, { expected(list[i]), false })
        T.ok(l.rationale:find("^counted"))
    end
    T.ok(swapped > 2 and swapped < 18, "orders randomised: " .. swapped .. " swapped")
    o:close()
    o = oracle.lua(fn, { ledger = path, seed = 3 })
    labels = o:label(list)
    T.eq({ calls, labels[1].cached, o:stats().cached }, { 20, true, 20 })
    o:close()
    -- The ledger's faults surface through the oracle: a cut last line warns, others raise.
    write(path, read(path) .. '{"key":"cut')
    o = oracle.lua(fn, { ledger = path, seed = 3 })
    T.ok(o.ledger_warning:find("truncated last line skipped"), o.ledger_warning)
    T.eq(o:label(list)[20].cached, true)
    o:close()
    write(path, '{"key":"k1"}\n{"key":\n{"key":"k2"}\n')
    T.assert_error_match(function() oracle.lua(fn, { ledger = path }) end,
        "apl%.oracle%.lua: ledger: .*labels%.jsonl:2: corrupt ledger entry")
    local bad = oracle.lua(function() return "maybe" end)
    T.eq(bad:label { pair(1, 1, 0) }[1].reason, 'judge function returned "maybe", not "A" or "B"')
    T.assert_error_match(function() oracle.lua(function() error("boom") end):label { pair(1, 1, 0) } end,
        "apl%.oracle%.label: judge function failed: .*boom")
    T.assert_error_match(function() oracle.lua("fn") end, "apl%.oracle%.lua: expects a function")
end)

T.case("oracle model: the higher score wins, ties unlabelled", function()
    local function score(prompt, completion)
        local _, n = completion:gsub("good", "")
        return n + #prompt * 0
    end
    local list = pairs_n(9)
    list[10] = pair(10, 1, 1)
    local o = oracle.model { score = score, name = "good-counter" }
    local labels = o:label(list)
    for i = 1, 9 do T.eq(labels[i].preferred, expected(list[i])) end
    T.eq(labels[1].rationale, "score A 1, B 2")
    T.eq({ labels[10].preferred, labels[10].reason }, { nil, "tie: score A 1, B 1" })
    T.eq(o:stats().failed, 1)
    T.assert_error_match(function() oracle.model { score = function() return "x" end }:label(list) end,
        "score function returned x, not a number")
    T.assert_error_match(function() oracle.model {} end, "apl%.oracle%.model: expects {score")
end)

-- ------------------------------------------------------------------------------------------
-- The A/B order

-- The order the judge saw each of 2000 pairs in ("AB": a first), with the oracle's seed.
local function orders_seen(seed)
    local out = {}
    local o = oracle.lua(function(prompt, first)
        out[tonumber(prompt:match("pair%-(%d+)%-"))] = first:find("^first") and "AB" or "BA"
        return "A"
    end, { seed = seed })
    local list = {}
    for i = 1, 2000 do list[i] = pair(i, 0, 0) end
    o:label(list)
    return out
end

local function share(n, fn)
    local k = 0
    for i = 1, n do if fn(i) then k = k + 1 end end
    return k / n
end

T.case("oracle order: a fair coin per pair, another coin per seed, the same on a rerun", function()
    local s1, s2, s3 = orders_seen(1), orders_seen(2), orders_seen(3)
    for seed, o in pairs { [1] = s1, [2] = s2, [3] = s3 } do
        local ab = share(2000, function(i) return o[i] == "AB" end)
        T.ok(math.abs(ab - 0.5) < 0.04, string.format("seed %d: %.3f of pairs shown AB", seed, ab))
    end
    -- Independent coins agree on half the pairs (the parity of bytes gave 1.0 and 0.0 here).
    for _, c in ipairs { { 1, 2, s1, s2 }, { 1, 3, s1, s3 }, { 2, 3, s2, s3 } } do
        local agree = share(2000, function(i) return c[3][i] == c[4][i] end)
        T.ok(math.abs(agree - 0.5) < 0.04, string.format("seeds %d and %d agree on %.3f", c[1], c[2], agree))
    end
    T.eq(orders_seen(3), s3, "seed 3 again draws the same orders")
end)

T.case("oracle order: a pair ledgered in the other order is not paid for again", function()
    local path = T.tmpdir() .. "/labels.jsonl"
    local calls = 0
    local function fn(_, first, second)
        calls = calls + 1
        return #first > #second and "A" or "B"
    end
    local list = {}
    for i = 1, 40 do list[i] = pair(i, i % 2, (i + 1) % 2) end
    local o = oracle.lua(fn, { ledger = path, seed = 1 })
    o:label(list)
    o:close()
    -- Seed 2 draws other orders for about half the pairs; the ledger answers them all.
    o = oracle.lua(fn, { ledger = path, seed = 2 })
    local labels = o:label(list)
    o:close()
    T.eq(calls, 40)
    for i, l in ipairs(labels) do T.eq({ l.preferred, l.cached }, { expected(list[i]), true }, "pair " .. i) end
end)

-- ------------------------------------------------------------------------------------------
-- Measuring the judge

T.case("oracle consistency: the judge asked in both orders, against the HTTP judge", function()
    with_server({}, function(s)
        local list = pairs_n(6)
        for i = 7, 10 do list[i] = pair(i, i % 2, (i + 1) % 2, "[fault:alwaysAx99]") end
        list[11] = pair(11, 1, 0, "[fault:wrongx2]")
        local path = T.tmpdir() .. "/labels.jsonl"
        local o = judge(s, { ledger = path })
        local c = oracle.consistency(o, list)
        -- The honest judge (more "good" wins) agrees with itself; alwaysA never does.
        T.eq({ c.pairs, c.consistent, c.failed, c.rate }, { 10, 6, 1, 0.6 })
        T.eq(c.first, (6 + 2 * 4) / 20, "answers naming the first position")
        T.eq(#c.failures, 1)
        T.eq(c.failures[1].index, 11)
        T.ok(c.failures[1].reason:find("'Preferred: C' is not A or B", 1, true), c.failures[1].reason)
        local seen = requests_per_pair(s)
        T.eq({ seen[1], seen[7], seen[11] }, { 2, 2, 4 }, "both orders asked; each bad answer re-asked once")
        local orders = {}
        for _, e in ipairs(ledger_entries(path)) do orders[e.order] = (orders[e.order] or 0) + 1 end
        T.eq({ orders.AB, orders.BA }, { 12, 12 }, "every answer ledgered, in both orders")
        o:close()

        -- From the ledger, nothing is asked again; more repeats ask each order once more.
        local n = #s:requests()
        o = judge(s, { ledger = path })
        local again = oracle.consistency(o, pairs_n(6))
        T.eq({ again.rate, #s:requests() }, { 1.0, n })
        local four = oracle.consistency(o, { list[1], list[7] }, { repeats = 4 })
        T.eq({ four.pairs, four.consistent, four.first, #s:requests() }, { 2, 1, 6 / 8, n + 4 })
        local rounds = {}
        for _, e in ipairs(ledger_entries(path)) do rounds[e.round or 1] = (rounds[e.round or 1] or 0) + 1 end
        T.eq(rounds, { 24, 4 }, "the repeated orders are ledgered as round 2")
        o:close()
    end)
end)

T.case("oracle consistency: budget, empty lists and bad arguments", function()
    local o = oracle.lua(function() return "B" end, { budget = 3 })
    local c = oracle.consistency(o, { pair(1, 1, 0), pair(2, 1, 0) })
    T.eq({ c.pairs, c.answers, c.rate, c.first, c.failed }, { 1, 2, 0.0, 0.0, 1 })
    T.eq(c.failures[1], { index = 2, reason = "label budget exhausted" })
    local none = oracle.consistency(o, {})
    T.eq({ none.pairs, none.rate, none.first, none.failed }, { 0, nil, nil, 0 })
    T.assert_error_match(function() oracle.consistency({ label = print }, {}) end,
        "apl%.oracle%.consistency: expects an oracle made by apl%.oracle")
    T.assert_error_match(function() oracle.consistency(o, { { prompt = "p", a = "x" } }) end,
        "apl%.oracle%.consistency: pairs%[1%]%.b must be a string, got nil")
    T.assert_error_match(function() oracle.consistency(o, {}, { repeats = 1 }) end,
        "option 'repeats' must be an integer >= 2")
    T.assert_error_match(function() oracle.consistency(o, {}, { repeats = 2.5 }) end,
        "option 'repeats' must be an integer >= 2")
    T.assert_error_match(function() oracle.consistency(o, {}, { repeats = "2" }) end,
        "option 'repeats' must be a number, got string")
    T.assert_error_match(function() oracle.consistency(o, {}, 2) end, "opts must be a table")
end)

T.case("oracle consistency: examples/judge_consistency.lua on a run's acquired pairs", function()
    local run = T.tmpdir()
    write(run .. "/config.json", cjson.encode { oracle = { template = "tldr" } } .. "\n")
    local lines = {}
    for i = 1, 6 do
        local p = pair(i, i % 3, (i + 1) % 3, i > 4 and "[fault:alwaysAx99]" or nil)
        lines[i] = cjson.encode { step = 1, prompt = p.prompt, a = p.a, b = p.b, label = 1 }
    end
    write(run .. "/acquired.jsonl", table.concat(lines, "\n") .. "\n")
    with_server({}, function(s)
        local cmd = string.format("cd %s && APL_QUIET=1 ./apl examples/judge_consistency.lua --run %s " ..
            "--judge-url %s --judge-model test/judge --api-key-env HOME 2>&1", root, run, s.url)
        local out = T.sh(cmd)
        T.ok(out:find("test/judge (tldr template): 4 of 6 pairs consistent (67%); 67% of answers named " ..
            "the first position; 0 pairs unanswered; 12 requests", 1, true), out)
        T.eq(#ledger_entries(run .. "/consistency-test_judge.jsonl"), 12)
        T.ok(T.sh(cmd):find("; 0 requests", 1, true), "a second measurement reads the ledger")
    end)
    T.ok(T.sh(string.format("cd %s && ./apl examples/judge_consistency.lua 2>&1 || true", root))
        :find("missing --run DIR", 1, true))
end)

-- ------------------------------------------------------------------------------------------
-- Keys and a judge that cannot be used

local secrets = require "apl.secrets"

T.case("oracle keys: redacted from reasons and the ledger; a 401/403 stops labelling with a clear error", function()
    with_server({}, function(s)
        -- The key: $PATH, always set and nothing like a key (no "sk-", and ':' ends the "Bearer"
        -- pattern), so only lua/loracle.c, which knows the key, can take it out of what the server
        -- echoes back.
        local key = os.getenv("PATH")
        -- Each backend's key header: Authorization (OpenAI), x-api-key (Anthropic).
        for _, backend in ipairs { "openai", "anthropic" } do
            local n = #s:requests()
            for _, model in ipairs { "fault:echo", "fault:denied", "fault:forbidden" } do
                local path = T.tmpdir() .. "/labels.jsonl"
                local o = judge(s, { backend = backend, model = model, ledger = path, api_key_env = "PATH" })
                local err = T.assert_error_match(function() o:label { pair(1, 1, 0), pair(2, 0, 1) } end,
                    "apl%.oracle%.label: the judge at .* refused the request %(HTTP 40[13]")
                T.ok(err:find("$PATH", 1, true) and err:find("'" .. model .. "'", 1, true), err)
                T.ok(not err:find(key, 1, true), backend .. ": key in the error: " .. err)
                T.ok(not (read(path) or ""):find(key, 1, true), backend .. ": key in the ledger")
                o:close()
            end
            local echoed = s:requests()[n + 1]
            T.eq({ echoed.auth, echoed.api_key }, backend == "openai" and { "Bearer " .. key, cjson.null }
                or { cjson.null, key }, backend .. ": the server did receive the key, in its header only")
        end
    end)
end)

T.case("oracle keys: unknown options are errors; a key sent over plain http to another host is warned about", function()
    T.assert_error_match(function()
        oracle.openai { base_url = "http://127.0.0.1:9/v1", model = "m", template = "tldr", api_key = "sk-x" }
    end, "apl%.oracle%.openai: unknown option 'api_key' %(the key stays in the environment: api_key_env")
    T.assert_error_match(function() oracle.lua(function() return "A" end, { sed = 1 }) end, "apl%.oracle%.lua: unknown option 'sed'")
    local function warning(url)
        local out = T.tmpdir() .. "/err"
        local code = require("apl.core.sys").run({ T.root() .. "/apl", "-e", string.format(
            "apl.oracle.openai{base_url = %q, model = 'm', template = 'tldr', api_key_env = 'HOME'}", url) },
            { stderr = out })
        T.eq(code, 0, url)
        return read(out)
    end
    T.ok(warning("http://judge.example.com/v1"):find("sent unencrypted to http://judge%.example%.com/v1"), "warned")
    for _, url in ipairs { "https://judge.example.com/v1", "http://127.0.0.1:8000/v1", "http://localhost/v1", "http://[::1]:80/v1" } do
        T.eq(warning(url), "", url)
    end
end)

T.case("oracle keys: redact and looks_like_key", function()
    T.eq(secrets.redact("Authorization: Bearer abc.DEF-123_x== and sk-ant-api03-ABCDEFGHIJKLMNOPQRST end"),
        "Authorization: Bearer [redacted] and sk-[redacted] end")
    T.eq(secrets.redact("task-0123456789abcdefghijklmn sk-short"), "task-0123456789abcdefghijklmn sk-short")
    T.eq(secrets.redact('x-api-key: abc.123_Z and {"X-Api-Key": "q/w+e="}'),
        'x-api-key: [redacted] and {"X-Api-Key": "[redacted]"}')
    T.ok(secrets.looks_like_key("x-api-key: 0123abcd"))
    T.ok(not secrets.looks_like_key("api_key_env = ANTHROPIC_API_KEY"))
    T.ok(secrets.looks_like_key("sk-proj-0123456789abcdefghij"))
    T.ok(not secrets.looks_like_key("OPENAI_API_KEY"))
    T.eq(secrets.find_key { a = 1, oracle = { api_key_env = "OPENAI_API_KEY", headers = { "Bearer xyz" } } }, "oracle.headers.1")
end)

T.case("oracle preflight: one request; DNS, refused, TLS, 401, unknown model each named", function()
    with_server({}, function(s)
        local function fails(extra, pattern)
            T.assert_error_match(function() judge(s, extra):preflight() end, pattern)
        end
        local before = #s:requests()
        T.ok(judge(s):preflight(), "a working judge")
        T.eq(#s:requests(), before + 1, "one request")
        judge(s):preflight()
        T.eq(#s:requests(), before + 1, "asked once per process")
        fails({ model = "fault:nomodel" }, "cannot be used: the judge does not know this model: HTTP 404")
        fails({ model = "fault:denied" }, "%(model 'fault:denied'%) cannot be used: the API key was refused: HTTP 401")
        fails({ base_url = "http://127.0.0.1:9/v1" }, "http://127%.0%.0%.1:9/v1/chat/completions.*the connection was refused")
        fails({ base_url = "http://no-such-host.invalid/v1" }, "the host name does not resolve %(DNS%)")
        fails({ base_url = s.url:gsub("^http:", "https:"), model = "tls" }, "the TLS handshake or certificate check failed")
    end)
end)
