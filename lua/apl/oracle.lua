-- apl.oracle — preference labels: which of two completions of a prompt is better. Labels are the
-- expensive part of active preference learning, so every answer is written to a ledger (JSONL,
-- fsynced) before it is returned, a pair already in the ledger is never paid for again, and a
-- flaky API is retried with backoff until a bounded number of tries.
--
--   local o = apl.oracle.judge{backend = "openai", base_url = "https://api.openai.com/v1",
--       model = "gpt-4-1106-preview", api_key_env = "OPENAI_API_KEY", template = "tldr",
--       ledger = run .. "/labels.jsonl", seed = 1, max_in_flight = 16, price_in = 0.01,
--       price_out = 0.03, budget = 5000}
--   -- backend = "anthropic": base_url = "https://api.anthropic.com/v1", api_key_env =
--   -- "ANTHROPIC_API_KEY"; each backend is one file, lua/apl/judges/<backend>.lua.
--   -- apl.oracle.openai{...} is the same function (backend "openai" unless one is given).
--   local labels = o:label{{prompt = post, a = s1, b = s2}, ...}
--   -- labels[i] = {preferred = 1|2 (a or b) or nil, reason = why unlabelled, rationale = "...",
--   --              raw = judge's text, cached = true when it came from the ledger}
--   print(o:stats().cost)
--   local c = apl.oracle.consistency(o, some_pairs, {repeats = 2})  -- c.rate: the judge's self-agreement
--
-- The judge: the paper labelled and evaluated with gpt-4-1106-preview at temperature 0.05 and the
-- templates "imdb" and "tldr" (apl.prompts); use them to reproduce its results. Weaker judges are
-- less self-consistent (the paper's Figure 1: GPT-4 over 90%, gpt-3.5-turbo about 60% on the same
-- pair asked twice), and a judge that contradicts itself teaches DPO noise: measure yours with
-- apl.oracle.consistency before spending a budget on it.
--
-- Local oracles have the same interface:
--   apl.oracle.lua(function(prompt, a, b) return "A", "why" end, {ledger = path, seed = 1})
--   apl.oracle.model{score = function(prompt, completion) return reward end, ledger = path}
--
-- Position bias: each pair is shown in the order AB or BA by a fair coin drawn from (seed, pair),
-- a different coin for every seed (so a restarted run asks the same question and finds it in the
-- ledger), and the answer is mapped back to the caller's a/b. both_orders = true asks both and
-- keeps consistent answers.
-- budget: the most judge answers with a label the ledger may hold (both_orders uses two per
-- pair); pairs over it come back unlabelled, "label budget exhausted". Failures are not charged.
local core = require "apl.core.oracle"
local sys = require "apl.core.sys"
local cjson = require "cjson"
local prompts = require "apl.prompts"
local rng = require "apl.rng"
local secrets = require "apl.secrets"

local M = {}
local Oracle = {}
Oracle.__index = Oracle

-- ------------------------------------------------------------------------------------------
-- The judge's answer

-- s without the leading bytes in class left and the trailing ones in class right (Lua classes
-- such as "%s"). Linear: a pattern like "^%s*(.-)%s*$" backtracks over every run of spaces inside
-- s, which made a 40 kB answer take 20 s.
local function trim(s, left, right)
    local i = s:find("[^" .. left .. "]")
    if not i then return "" end
    local j, keep = #s, "^[^" .. right .. "]"
    while j > i and not s:find(keep, j) do j = j - 1 end
    return s:sub(i, j)
end

-- answer ("A" or "B"), rationale | nil, reason. The last "Preferred:" line decides; the
-- rationale is the "Comparison:" text, or what precedes the decision when there is none. A NUL
-- ends a line like a line break (a C reader would stop at it; the last line must still decide).
-- Linear in the answer's length, which may be megabytes.
function M.parse(content)
    if type(content) ~= "string" or not content:find("%S") then return nil, "empty answer" end
    local value, n_before, rationale
    local seen = {}
    for line in (content:gsub("%z", "\n") .. "\n"):gmatch("(.-)\r?\n") do
        local at = line:match("^[%s%*#_]*[Pp]referred[%*_]*%s*:()")
        if at then
            value, n_before = trim(line:sub(at), "%s", "%s"), #seen
        else
            seen[#seen + 1] = line
            local c = not rationale and line:match("^[%s%*_]*Comparison[%*_]*%s*:()")
            if c then rationale = trim(line:sub(c), "%s%*_", "%s") end
        end
    end
    if not value then return nil, "no 'Preferred:' line in the answer" end
    local letter = trim(value, "%*_\"'<%s", "%*_\"'>%.%s"):upper()
    if letter ~= "A" and letter ~= "B" then
        return nil, string.format("'Preferred: %s' is not A or B", value)
    end
    if not rationale or rationale == "" then rationale = trim(table.concat(seen, "\n", 1, n_before), "%s", "%s") end
    return letter, rationale
end

-- ------------------------------------------------------------------------------------------
-- Options

local function opt(opts, k, kind, default, fname)
    local v = opts[k]
    if v == nil then return default end
    if type(v) ~= kind then
        error(string.format("%s: option '%s' must be a %s, got %s", fname, k, kind, type(v)), 3)
    end
    return v
end

-- Options every oracle takes (see new), and those of each kind on top.
local COMMON = { "model", "seed", "both_orders", "budget", "price_in", "price_out", "progress", "ledger" }
local KNOWN = {
    http = { "backend", "base_url", "template", "temperature", "max_tokens", "api_key_env", "ca_file", "timeout",
               "max_in_flight", "rpm", "tpm", "max_tries", "backoff", "backoff_max" },
    lua = { "name" },
    model = { "name", "score" },
}

-- A misspelt or invented option would be ignored silently (api_key = "sk-..." sent requests
-- without a key and wrote the key into config.json): each unknown one is an error.
local function check_known(opts, kind, fname)
    local ok = {}
    for _, k in ipairs(COMMON) do ok[k] = true end
    for _, k in ipairs(KNOWN[kind]) do ok[k] = true end
    for k in pairs(opts) do
        if not ok[k] then
            local hint = type(k) == "string" and k:find("key") and kind == "http"
                and " (the key stays in the environment: api_key_env = \"VARIABLE\")" or ""
            error(string.format("%s: unknown option '%s'%s", fname, tostring(k), hint), 3)
        end
    end
end

-- The ledger is a journal (apl.core.sys) that this oracle alone holds (an exclusive lock): each
-- line on disk before its label is handed out; a torn last line (a killed run) skipped and reported.
local function open_ledger(self, path, fname)
    local ok, l, lines, warning = pcall(sys.journal_open, path, { lock = true, noun = "ledger entry" })
    if not ok then error(fname .. ": ledger: " .. tostring(l):gsub("^apl%.sys%.journal_open: ", ""), 3) end
    if warning then io.stderr:write(fname, ": ", warning, "\n") end
    for i, line in ipairs(lines) do
        local ok, e = pcall(cjson.decode, line) -- the C reader checked the JSON; this is belt and braces
        if not ok or type(e) ~= "table" or type(e.key) ~= "string" then
            l:close()
            error(string.format("%s: %s: entry %d has no key or is not JSON that Lua reads", fname, path, i), 3)
        end
        if e.answer == "A" or e.answer == "B" then
            if not self._cache[e.key] then self._paid = self._paid + 1 end
            self._cache[e.key] = e
        end
    end
    self._ledger, self.ledger, self.ledger_warning = l, path, warning
end

local function new(kind, opts, fname, judge)
    local self = setmetatable({
        kind = kind,
        model = opt(opts, "model", "string", kind, fname),
        seed = math.tointeger(opt(opts, "seed", "number", 0, fname)),
        both_orders = opt(opts, "both_orders", "boolean", false, fname),
        budget = opt(opts, "budget", "number", nil, fname),
        price_in = opt(opts, "price_in", "number", 0, fname),
        price_out = opt(opts, "price_out", "number", 0, fname),
        progress = opt(opts, "progress", "boolean", true, fname),
        randomize = true,
        _judge = judge, _cache = {}, _paid = 0,
        _stats = { requests = 0, labels = 0, cached = 0, failed = 0, retries = 0,
                   prompt_tokens = 0, completion_tokens = 0, cost = 0 },
    }, Oracle)
    if not self.seed then error(fname .. ": option 'seed' must be an integer", 3) end
    local ledger = opt(opts, "ledger", "string", nil, fname)
    if ledger then open_ledger(self, ledger, fname) end
    return self
end

-- ------------------------------------------------------------------------------------------
-- Labelling: plan which questions to ask, ask them, then answer each pair

-- A fair coin per (seed, pair): apl.rng's splitmix64 mix of the seed and the pair's hash. (A bit
-- of the FNV hash itself is only the parity of the texts' bytes: seeds 1 and 3 drew the same
-- orders.) It depends on nothing else, so a resumed run asks what its ledger holds.
function Oracle:_orders(p)
    if self.both_orders then return { "AB", "BA" } end
    if not self.randomize then return { "AB" } end
    local coin = rng.new(self.seed, "oracle order", core.key(p.prompt, p.a, p.b)):uniform()
    return { coin < 0.5 and "BA" or "AB" }
end

-- The completions in the order the judge sees them.
local function shown(q)
    if q.order == "BA" then return q.pair.b, q.pair.a end
    return q.pair.a, q.pair.b
end

local function preferred(e)
    local first = e.answer == "A"
    if e.order == "BA" then first = not first end
    return first and 1 or 2
end

local function check_pairs(list, fname)
    if type(list) ~= "table" then error(fname .. ": pairs must be a list of {prompt=, a=, b=}", 3) end
    for i, p in ipairs(list) do
        if type(p) ~= "table" then error(string.format("%s: pairs[%d] must be a table", fname, i), 3) end
        for _, k in ipairs { "prompt", "a", "b" } do
            if type(p[k]) ~= "string" then
                error(string.format("%s: pairs[%d].%s must be a string, got %s", fname, i, k, type(p[k])), 3)
            end
        end
    end
end

-- One ledger line per answered request, on disk before anything else sees the answer.
-- ans = {answer=, rationale=, raw=, error=, prompt_tokens=, completion_tokens=}
function Oracle:_record(q, ans)
    local p = q.pair
    local e = {
        key = q.key, kind = self.kind, model = self.model, template = self._template_name,
        order = q.order, round = q.round, prompt = p.prompt, a = p.a, b = p.b, answer = ans.answer,
        rationale = ans.rationale, raw = ans.raw, error = ans.error,
        prompt_tokens = ans.prompt_tokens, completion_tokens = ans.completion_tokens, time = os.time(),
    }
    if self._ledger then self._ledger:append(cjson.encode(e)) end
    local s = self._stats
    s.prompt_tokens = s.prompt_tokens + (ans.prompt_tokens or 0)
    s.completion_tokens = s.completion_tokens + (ans.completion_tokens or 0)
    s.cost = s.cost + (ans.prompt_tokens or 0) / 1000 * self.price_in
        + (ans.completion_tokens or 0) / 1000 * self.price_out
    if ans.answer then
        self._cache[q.key] = e
        self._paid = self._paid + 1
    else
        q.error = ans.error
    end
end

-- The ledger entries that answer a plan's questions, or nil and why not.
function Oracle:_answers(plan, asked)
    if plan.reason then return nil, plan.reason end
    local got = {}
    for i, q in ipairs(plan) do
        got[i] = self._cache[q.key]
        if not got[i] then return nil, asked[q.key] and asked[q.key].error or "not answered" end
    end
    return got
end

function Oracle:_resolve(plan, asked)
    local s = self._stats
    local got, why = self:_answers(plan, asked)
    if not got then
        s.failed = s.failed + 1
        return { reason = why, cached = false }
    end
    local cached = true
    for _, q in ipairs(plan) do if asked[q.key] then cached = false end end
    local pref = preferred(got[1])
    if got[2] and preferred(got[2]) ~= pref then
        s.failed = s.failed + 1
        return { reason = "inconsistent: the judge chose the same position in both orders",
                 rationale = got[1].rationale, raw = got[1].raw, cached = cached }
    end
    if cached then s.cached = s.cached + 1 else s.labels = s.labels + 1 end
    return { preferred = pref, rationale = got[1].rationale, raw = got[1].raw, cached = cached }
end

-- The question: pair p shown in order "AB" or "BA". A round past the first asks the same
-- question again under its own ledger key (consistency() repeats an order).
function Oracle:_question(p, order, round)
    if round == 1 then round = nil end
    local key = round
        and core.key(self._template_id, self.model, p.prompt, p.a, p.b, order, "round " .. round)
        or core.key(self._template_id, self.model, p.prompt, p.a, p.b, order)
    return { key = key, order = order, round = round, pair = p }
end

-- Asks the judge every question of the plans (lists of questions, one list a pair) that the
-- ledger does not hold yet. A plan whose new questions do not fit the budget is not asked and
-- gets plan.reason. Returns the questions asked, by key.
function Oracle:_ask(plans)
    local queries, asked = {}, {}
    local budget_left = self.budget and self.budget - self._paid or math.huge
    for _, plan in ipairs(plans) do
        local new_qs = {}
        for _, q in ipairs(plan) do
            if not self._cache[q.key] and not asked[q.key] then new_qs[#new_qs + 1] = q end
        end
        if #new_qs > budget_left then
            plan.reason = "label budget exhausted"
        else
            budget_left = budget_left - #new_qs
            for _, q in ipairs(new_qs) do
                asked[q.key] = q
                queries[#queries + 1] = q
            end
        end
    end
    if #queries > 0 then self:_judge(queries) end
    return asked
end

-- The questions that label pair p. One order's answer already in the ledger in the other
-- order (a ledger written under another seed, or before the coin was a proper mix) is used
-- rather than paid for again.
function Oracle:_plan(p)
    local orders = self:_orders(p)
    if #orders == 1 then
        local q = self:_question(p, orders[1])
        local other = self:_question(p, orders[1] == "AB" and "BA" or "AB")
        return { (not self._cache[q.key] and self._cache[other.key]) and other or q }
    end
    local plan = {}
    for j, order in ipairs(orders) do plan[j] = self:_question(p, order) end
    return plan
end

-- labels for a list of {prompt=, a=, b=}; see the top of this file.
function Oracle:label(list)
    check_pairs(list, "apl.oracle.label")
    local plans = {}
    for i, p in ipairs(list) do plans[i] = self:_plan(p) end
    local asked = self:_ask(plans)
    local labels = {}
    for i, plan in ipairs(plans) do labels[i] = self:_resolve(plan, asked) end
    return labels
end

-- {requests, labels, cached, failed, retries, prompt_tokens, completion_tokens, cost} so far.
function Oracle:stats()
    local t = {}
    for k, v in pairs(self._stats) do t[k] = v end
    return t
end

-- Releases the ledger (and its lock); the oracle can no longer label.
function Oracle:close()
    if self._ledger then self._ledger:close() end
    self._judge = function() error("apl.oracle.label: the oracle is closed", 3) end
end
Oracle.__close = Oracle.close

function Oracle:__tostring()
    return string.format("apl.Oracle(%s %s%s)", self.kind, self.model,
        self.ledger and ", ledger " .. self.ledger or "")
end

function Oracle:_progress(total)
    if not self.progress then return nil end
    return require("apl.progress").new("oracle " .. self.model, total)
end

-- ------------------------------------------------------------------------------------------
-- The HTTP judge

-- A token count from a reply: a whole number, 0 when absent or absurd (a hostile 1e300).
local function count(v)
    if type(v) ~= "number" or not (v > 0 and v < 2 ^ 53) then return 0 end
    return math.tointeger(math.floor(v))
end

-- The judge's text in an HTTP answer body, read by the backend: content, prompt tokens,
-- completion tokens | nil, why.
local function content_of(backend, body)
    local ok, t = pcall(cjson.decode, body)
    if not ok then return nil, "reply is not valid JSON" end
    if type(t) ~= "table" then return nil, "reply is not a JSON object" end
    local ok2, content, pt, ct = pcall(backend.reply, t)
    if not ok2 then return nil, "the backend could not read the reply: " .. tostring(content) end
    if type(content) ~= "string" then return nil, tostring(pt) end
    return content, count(pt), count(ct)
end

-- What an HTTP answer body means: ans for _record. Whatever the server sent is redacted first:
-- it goes to the ledger.
local function read_reply(backend, body)
    local content, pt, ct = content_of(backend, body)
    if not content then
        return { error = "unparseable reply: " .. secrets.redact(pt), raw = secrets.redact(body:sub(1, 2000)) }
    end
    content = secrets.redact(content) -- before parsing: the reason may quote it
    local answer, why = M.parse(content)
    local ans = { raw = content, prompt_tokens = pt, completion_tokens = ct }
    if answer then ans.answer, ans.rationale = answer, why
    else ans.error = "unparseable answer: " .. why end
    return ans
end

-- The JSON body of one question to the judge.
local function request_body(self, system, user, max_tokens)
    return cjson.encode(self._backend.request { model = self.model, system = system or "", user = user,
        temperature = self.temperature, max_tokens = max_tokens or self.max_tokens })
end

-- A request the server refused for its credentials: no other request of the run can succeed.
local function denied(r) return r.status == 401 or r.status == 403 end

local function denied_error(self, r)
    return string.format("apl.oracle.label: the judge at %s refused the request (%s). Check the API key in %s "
        .. "and that it may use model '%s'; answers already paid for are kept in the ledger", self._http.url,
        r.error, self.api_key_env and "$" .. self.api_key_env or "the environment (no api_key_env was given)",
        self.model)
end

local function http_judge(self, queries)
    local h <close> = core.http_new(self._http)
    for id, q in ipairs(queries) do
        q.body = request_body(self, prompts.render(self.template, q.pair.prompt, shown(q)))
        q.est = #q.body // 4 + self.max_tokens -- ~4 bytes a token: enough for a rate limit
        h:submit(id, q.body, q.est)
    end
    local s = self._stats
    local base_requests, base_retries, reasks = s.requests, s.retries, 0
    local left, prog = #queries, self:_progress(#queries)
    local refused -- the first 401/403: raised after the batch
    while left > 0 do
        local results = h:wait(0.25)
        for _, r in ipairs(results) do
            local q = queries[r.id]
            if r.error then
                q.error = secrets.redact(r.error)
                if denied(r) then refused = refused or { status = r.status, error = q.error } end
                left = left - 1
            else
                local ans = read_reply(self._backend, r.body)
                self:_record(q, ans)
                if ans.answer or q.reasked then
                    left = left - 1
                else -- an unparseable answer gets one more chance
                    q.reasked, reasks = true, reasks + 1
                    h:submit(r.id, q.body, q.est)
                end
            end
        end
        local hs = h:stats()
        s.requests, s.retries = base_requests + hs.requests, base_retries + hs.retries + reasks
        if prog then
            prog:update(#queries - left, string.format("%d in flight  %d retries  $%.4f",
                hs.in_flight, s.retries - base_retries, s.cost))
        end
    end
    if prog then prog:done() end
    -- Raised once the batch has ended, so every answer that came back is in the ledger.
    if refused then error(denied_error(self, refused), 0) end
end

-- Whether url's host is this machine (127.0.0.0/8, ::1, localhost).
local function loopback(url)
    local host = url:match("^%a+://%[([^%]]+)%]") or url:match("^%a+://([^/:?#]+)") or ""
    host = host:gsub("^.*@", ""):lower()
    return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- A key sent over plain http:// to another machine can be read on the way: say so.
local function warn_plain_http(url, key_env, fname)
    if key_env and url:lower():match("^http://") and not loopback(url) then
        io.stderr:write(string.format("%s: warning: the API key in $%s is sent unencrypted to %s (plain http:// to "
            .. "another machine); use https://\n", fname, key_env, url))
    end
end

-- The backend module named by opts.backend: lua/apl/judges/<name>.lua (see openai.lua there).
local function load_backend(name, fname)
    if type(name) ~= "string" or not name:match("^[%w_]+$") then
        error(string.format("%s: option 'backend' must be a backend's name (\"openai\", \"anthropic\"), got %s",
            fname, type(name) == "string" and string.format("%q", name) or type(name)), 3)
    end
    local ok, b = pcall(require, "apl.judges." .. name)
    if not ok then
        error(string.format("%s: unknown backend '%s': %s", fname, name, tostring(b):match("^[^\n]*")), 3)
    end
    local bad = type(b) ~= "table" and "is not a table"
        or type(b.request) ~= "function" and "has no request function"
        or type(b.reply) ~= "function" and "has no reply function"
        or type(b.path) ~= "string" and "has no path string"
        or type(b.key_header) ~= "string" and "has no key_header string"
        or type(b.headers) ~= "table" and "has no headers list"
    if bad then error(string.format("%s: backend '%s' (apl/judges/%s.lua) %s", fname, name, name, bad), 3) end
    return b
end

-- The transport's options, checked now (bad options and a missing key fail here, not mid-run).
local function http_options(self, opts, fname)
    local b = self._backend
    local o = {
        url = self.base_url:gsub("/+$", "") .. b.path, headers = b.headers, key_header = b.key_header,
        api_key_env = self.api_key_env, ca_file = opt(opts, "ca_file", "string", nil, fname),
        timeout = opt(opts, "timeout", "number", 60, fname),
        max_in_flight = opt(opts, "max_in_flight", "number", 16, fname),
        rpm = opt(opts, "rpm", "number", 0, fname), tpm = opt(opts, "tpm", "number", 0, fname),
        max_tries = opt(opts, "max_tries", "number", 6, fname),
        backoff = opt(opts, "backoff", "number", 1, fname),
        backoff_max = opt(opts, "backoff_max", "number", 60, fname), seed = self.seed,
    }
    -- Redacted: api_key_env = "sk-..." is a key where the variable's name belongs.
    local ok, h = pcall(core.http_new, o)
    if not ok then error(fname .. ": " .. secrets.redact(tostring(h):gsub("^apl%.core%.oracle%.http_new: ", "")), 3) end
    h:free()
    return o
end

-- An HTTP judge speaking opts.backend's protocol ("openai" by default); see the top of this file.
-- Called in tail position, so level 2 of its own errors is the caller's line.
local function http_oracle(opts, fname)
    if type(opts) ~= "table" then error(fname .. ": expects an options table", 2) end
    check_known(opts, "http", fname)
    for _, k in ipairs { "base_url", "model", "template" } do
        if opts[k] == nil then error(fname .. ": option '" .. k .. "' is required", 2) end
    end
    local backend_name = opts.backend == nil and "openai" or opts.backend
    local backend = load_backend(backend_name, fname)
    local base_url = opt(opts, "base_url", "string", nil, fname)
    local template = prompts.get(opts.template)
    local self = new(backend_name, opts, fname, http_judge)
    self._backend, self.backend = backend, backend_name
    self.template, self._template_name = template, template.name or "custom"
    self._template_id = (template.system or "") .. "\0" .. template.user
    self.temperature = opt(opts, "temperature", "number", 0.05, fname)
    self.max_tokens = math.tointeger(opt(opts, "max_tokens", "number", 256, fname))
    if not self.max_tokens or self.max_tokens < 1 then
        error(fname .. ": option 'max_tokens' must be an integer >= 1", 2)
    end
    self.base_url, self.api_key_env = base_url, opt(opts, "api_key_env", "string", nil, fname)
    self._http = http_options(self, opts, fname)
    warn_plain_http(base_url, self.api_key_env, fname)
    return self
end

function M.judge(opts) return http_oracle(opts, "apl.oracle.judge") end
function M.openai(opts) return http_oracle(opts, "apl.oracle.openai") end

-- What a failed preflight request means, for a person: DNS, refused, TLS, the key, the model.
local function diagnose(self, r)
    local e, body = r.error or "", r.body or ""
    if denied(r) then return "the API key was refused" end
    if r.status == 404 and body:lower():find("model") then return "the judge does not know this model" end
    if r.status == 404 then
        return string.format("no %s endpoint there for the %s backend (a base URL usually ends in /v1)",
            self._backend.path, self.backend)
    end
    if r.status > 0 then return "the judge answered with an error" end
    local l = e:lower()
    if l:find("resolve") then return "the host name does not resolve (DNS)" end
    -- TLS first: newer libcurl (Debian 13's 8.14) reports a failed handshake as "TLS connect error"
    if l:find("ssl") or l:find("tls") or l:find("certificate") then return "the TLS handshake or certificate check failed" end
    if l:find("refused") or l:find("connect") then return "the connection was refused (is the server running?)" end
    if l:find("timed out") then return "the request timed out" end
    return "the request failed"
end

local preflighted = {} -- url/model/key variable -> true: one check per process

-- One small request with the oracle's URL, key and model, before a run spends anything on
-- models: a judge that is down, a wrong key or an unknown model is an error naming the URL and
-- what failed, instead of a run that retries for hours and learns nothing. Not recorded in the
-- ledger. Raises on failure; returns the oracle.
function Oracle:preflight()
    if not self._http then return self end
    local id = self._http.url .. "\0" .. self.model .. "\0" .. (self.api_key_env or "")
    if preflighted[id] then return self end
    local o = {}
    for k, v in pairs(self._http) do o[k] = v end
    o.max_tries, o.max_in_flight = math.min(o.max_tries, 2), 1
    local h <close> = core.http_new(o)
    local system, user = prompts.render(self.template, "A connectivity check.", "First text.", "Second text.")
    h:submit(1, request_body(self, system, user, math.min(self.max_tokens, 16)), 64)
    local r
    repeat r = h:wait(0.25)[1] until r
    local detail
    if r.error then detail = secrets.redact(r.error)
    else
        local content, why = content_of(self._backend, r.body)
        if not content then
            detail = string.format("the reply is not a %s answer (%s): %s", self.backend, secrets.redact(why),
                secrets.redact(r.body:sub(1, 200)))
        end
    end
    if detail then
        error(string.format("apl.oracle.preflight: the judge at %s (model '%s') cannot be used: %s: %s",
            self._http.url, self.model, r.error and diagnose(self, r) or "unexpected reply", detail), 0)
    end
    preflighted[id] = true
    return self
end

-- ------------------------------------------------------------------------------------------
-- Local oracles

local function lua_judge(self, queries)
    for _, q in ipairs(queries) do
        local ok, answer, rationale = pcall(self._fn, q.pair.prompt, shown(q))
        if not ok then error("apl.oracle.label: judge function failed: " .. tostring(answer), 0) end
        if answer == "A" or answer == "B" then
            self:_record(q, { answer = answer, rationale = rationale and tostring(rationale) })
        else
            self:_record(q, { error = string.format("judge function returned %s, not \"A\" or \"B\"",
                type(answer) == "string" and string.format("%q", answer) or tostring(answer)) })
        end
    end
end

-- An oracle that asks fn(prompt, first, second) -> "A"|"B"[, rationale]. opts: ledger, seed,
-- name (keeps ledgers of different functions apart), budget, both_orders.
function M.lua(fn, opts)
    local fname = "apl.oracle.lua"
    if type(fn) ~= "function" then error(fname .. ": expects a function(prompt, a, b)", 2) end
    opts = opts or {}
    check_known(opts, "lua", fname)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.model, o.progress = opt(opts, "name", "string", "lua", fname), false
    local self = new("lua", o, fname, lua_judge)
    self._fn, self._template_id, self._template_name = fn, "lua", "lua"
    return self
end

local function score_of(self, prompt, completion)
    local ok, v = pcall(self._score, prompt, completion)
    if not ok then error("apl.oracle.label: score function failed: " .. tostring(v), 0) end
    if type(v) ~= "number" or v ~= v then
        error("apl.oracle.label: score function returned " .. tostring(v) .. ", not a number", 0)
    end
    return v
end

local function model_judge(self, queries)
    for _, q in ipairs(queries) do
        local sa = score_of(self, q.pair.prompt, q.pair.a)
        local sb = score_of(self, q.pair.prompt, q.pair.b)
        local why = string.format("score A %.6g, B %.6g", sa, sb)
        if sa == sb then self:_record(q, { error = "tie: " .. why })
        else self:_record(q, { answer = sa > sb and "A" or "B", rationale = why }) end
    end
end

-- An oracle that scores each completion with score(prompt, completion) -> number (a reward or
-- sentiment model); the higher score wins, a tie is unlabelled. opts: score, ledger, name, budget.
function M.model(opts)
    local fname = "apl.oracle.model"
    if type(opts) ~= "table" or type(opts.score) ~= "function" then
        error(fname .. ": expects {score = function(prompt, completion) return number end}", 2)
    end
    check_known(opts, "model", fname)
    local o = {}
    for k, v in pairs(opts) do if k ~= "score" then o[k] = v end end
    o.model, o.progress, o.both_orders = opt(opts, "name", "string", "model", fname), false, false
    local self = new("model", o, fname, model_judge)
    self._score, self._template_id, self._template_name = opts.score, "model", "model"
    self.randomize = false -- scores do not depend on the order they are asked in
    return self
end

-- ------------------------------------------------------------------------------------------
-- Measuring the judge

local function repeat_plans(oracle, list, repeats)
    local plans = {}
    for i, p in ipairs(list) do
        plans[i] = {}
        for r = 1, repeats do
            plans[i][r] = oracle:_question(p, r % 2 == 1 and "AB" or "BA", (r + 1) // 2)
        end
    end
    return plans
end

-- Adds one pair's answers (ledger entries) to consistency()'s counts.
local function tally(out, got)
    local same = true
    for _, e in ipairs(got) do
        same = same and preferred(e) == preferred(got[1])
        if e.answer == "A" then out.first = out.first + 1 end
    end
    out.answers, out.pairs = out.answers + #got, out.pairs + 1
    if same then out.consistent = out.consistent + 1 end
end

-- How self-consistent a judge is, as the paper's Figure 1 measured it: each pair is asked
-- `repeats` times (default 2) in the orders AB, BA, AB, ..., so a judge swayed by position
-- contradicts itself. Answers go to the ledger like labels (and count against the budget); a
-- repeated order is a separate question (its entry has a round), so it is really asked again.
-- Returns {rate = consistent / pairs (nil when none was answered), consistent = pairs whose
-- answers all chose the same completion, pairs = pairs answered every time, answers = their
-- answers, failed = pairs that were not, failures = {{index =, reason =}}, first = share of the
-- answers naming the position shown first (nil when none)}.
function M.consistency(oracle, list, opts)
    local fname = "apl.oracle.consistency"
    if getmetatable(oracle) ~= Oracle then error(fname .. ": expects an oracle made by apl.oracle", 2) end
    check_pairs(list, fname)
    if opts ~= nil and type(opts) ~= "table" then error(fname .. ": opts must be a table", 2) end
    local repeats = math.tointeger(opt(opts or {}, "repeats", "number", 2, fname))
    if not repeats or repeats < 2 then error(fname .. ": option 'repeats' must be an integer >= 2", 2) end
    local plans = repeat_plans(oracle, list, repeats)
    local asked = oracle:_ask(plans)
    local out = { consistent = 0, pairs = 0, answers = 0, first = 0, failed = 0, failures = {} }
    for i, plan in ipairs(plans) do
        local got, why = oracle:_answers(plan, asked)
        if got then tally(out, got)
        else
            out.failed = out.failed + 1
            out.failures[#out.failures + 1] = { index = i, reason = why }
        end
    end
    if out.pairs > 0 then out.rate, out.first = out.consistent / out.pairs, out.first / out.answers
    else out.first = nil end
    return out
end

return M
