-- examples/judge_consistency.lua — how often a judge agrees with itself (the paper's Figure 1),
-- measured on pairs a run acquired: each pair is asked in both orders (AB, then BA, ...) and a
-- pair counts as consistent when every answer picks the same completion.
--
--   apl examples/judge_consistency.lua --run runs/imdb-certainty-s1 \
--       --judge-url https://api.openai.com/v1 [--judge-model gpt-4-1106-preview] [--pairs 50]
--
-- The paper labelled and evaluated with gpt-4-1106-preview (the default here), which agreed with
-- itself on over 90% of 50 pairs; gpt-3.5-turbo agreed on about 60%. Weaker or cheaper judges are
-- less self-consistent, and a judge that contradicts itself teaches DPO noise: measure a judge
-- before spending a labelling budget on it. Answers go to a ledger of their own in the run folder
-- (consistency-<model>.jsonl), so a second measurement, or one with more --repeats, pays only for
-- the new questions.
local cjson = require "cjson"
local rng = require "apl.rng"

local a = require("apl.args").parse(arg, {
    { "run", "DIR", "a run folder whose acquired pairs are judged", required = true, dir = true },
    { "judge-url", "URL", "OpenAI-compatible endpoint", env = "APL_JUDGE_URL", required = true },
    { "judge-model", "NAME", "judge model (the paper's: gpt-4-1106-preview)", env = "APL_JUDGE_MODEL",
      default = "gpt-4-1106-preview" },
    { "api-key-env", "VAR", "variable holding the API key", default = "OPENAI_API_KEY", env_var = true },
    { "template", "NAME", "judge prompt (default: the run's, else imdb)" },
    { "pairs", "N", "pairs drawn from the run's acquired pairs", default = 50, number = true },
    { "repeats", "N", "answers per pair, orders alternating", default = 2, number = true },
    { "seed", "N", "which pairs are drawn", default = 1, number = true },
})

local run = apl.runfolder.open(a.run)
local acquired = run:read("acquired")
if #acquired == 0 then
    io.stderr:write("apl examples/judge_consistency.lua: ", a.run, " has acquired no pairs yet\n")
    os.exit(1)
end
local list = {}
for i, r in ipairs(rng.new(a.seed, "judge consistency"):sample(acquired, a.pairs)) do
    list[i] = { prompt = r.prompt, a = r.a, b = r.b }
end

local template = a.template or (run.config.oracle or {}).template or "imdb"
local judge <close> = apl.oracle.openai {
    base_url = a.judge_url, model = a.judge_model, api_key_env = a.api_key_env, template = template,
    ledger = string.format("%s/consistency-%s.jsonl", a.run, a.judge_model:gsub("[^%w.-]", "_")),
}
local c = apl.oracle.consistency(judge, list, { repeats = a.repeats })
if not c.rate then
    io.stderr:write("no pair was answered every time: ", cjson.encode(c.failures), "\n")
    os.exit(1)
end
print(string.format("%s (%s template): %d of %d pairs consistent (%.0f%%); %.0f%% of answers named " ..
    "the first position; %d pairs unanswered; %d requests", a.judge_model, template, c.consistent,
    c.pairs, 100 * c.rate, 100 * c.first, c.failed, judge:stats().requests))
for _, f in ipairs(c.failures) do print(string.format("  pair %d: %s", f.index, f.reason)) end
