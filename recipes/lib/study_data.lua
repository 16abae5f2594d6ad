-- recipes/lib/study_data.lua — the study's task (recipes/study.lua): movie reviews whose opening
-- leaves the sentiment open, a corpus with both sentiments, and the study's prepared pieces
-- (tokenizer, SFT policy) cached under build/study/. Study scaffolding, not the library.
--
--   local sd = require "recipes.lib.study_data"
--   local rows = sd.prompts { n = 2000, seed = 11 }     -- { {prompt = "i saw the film on tv and it was"}, ... }
--   local revs = sd.reviews { n = 6000, seed = 1 }      -- { {prompt =, completion =, sentiment = "pos"|"neg"}, ... }
--   local paths = sd.prepare("build/study")             -- {tok =, model =}: made once, then reused
--
-- A prompt is a neutral opening ending in a copula ("... the acting was"); the completion is two
-- or three short sentences (about 12–20 tokens) whose words carry the sentiment, half positive,
-- half negative, a fifth with a contrary detail. The sentiment words are apl.sentiment's, which is
-- what lets the study's judge (recipes/lib/study_judge.lua) score the policy's completions.
local bpe_train = require "recipes.lib.bpe_train"
local demo_data = require "recipes.lib.demo_data"
local rng = require "apl.rng"
local runfolder = require "apl.runfolder"

local M = {}

-- The demo's word lists (apl.sentiment's words) and the slots the openings add.
local W = demo_data.words {
    subj = { "this movie", "the film", "this film", "the new movie", "this sequel", "the remake" },
    when = { "last night", "on sunday", "yesterday", "this week", "at the festival", "on tv" },
    who = { "friends", "wife", "brother", "parents", "kids" },
}

-- Openings: no sentiment word, each ends where an adjective phrase must follow.
local OPENINGS = {
    "{subj} {when} was",
    "i saw {subj} {when} and it was",
    "my {who} and i saw {subj} {when} . the {noun} was",
    "i went to see {subj} {when} . i thought it was",
    "i finally watched {subj} {when} . the {noun} is",
}

local SENTENCES = {
    "i {verb} the {noun} .",
    "the {noun} was {adj} and the {noun} was {adv} {adj} .",
    "overall a {adj} {noun} .",
    "the {noun} felt {adv} {adj} .",
    "my {who} {verb} it too .",
    "{end}",
}
local CONTRARY = "the {noun} was {other} but the {noun} was {adv} {adj} ."

local function fill(template, r, mood) return demo_data.fill(template, r, mood, W) end

function M.prompt(r) return fill(OPENINGS[r:int(1, #OPENINGS)], r, "pos") end

-- n prompt rows, drawn by seed.
function M.prompts(opts)
    local r = rng.new(opts.seed, "study-prompts")
    local out = {}
    for i = 1, opts.n do out[i] = { prompt = M.prompt(r) } end
    return out
end

-- One completion: "{adv} {adj} ." then one or two sentences, sometimes a contrary detail.
local function completion(r, mood)
    local parts = { fill("{adv} {adj} .", r, mood) }
    if r:uniform() < 0.2 then parts[#parts + 1] = fill(CONTRARY, r, mood) end
    for _ = 1, r:int(1, 2) do parts[#parts + 1] = fill(SENTENCES[r:int(1, #SENTENCES)], r, mood) end
    return " " .. table.concat(parts, " ")
end

-- n reviews, alternating positive and negative.
function M.reviews(opts)
    local r = rng.new(opts.seed, "study-reviews")
    local out = {}
    for i = 1, opts.n do
        local mood = i % 2 == 1 and "pos" or "neg"
        out[i] = { prompt = M.prompt(r), completion = completion(r, mood), sentiment = mood }
    end
    return out
end

------------------------------------------------------------------------------------------------
-- The prepared pieces, made once and cached.

M.MODEL = { model_type = "gpt2", n_layer = 4, n_embd = 128, n_head = 4, n_positions = 64 }
M.SFT = { reviews = 6000, epochs = 2, lr = 1e-3, batch_size = 32, merges = 400 }
M.SMALL = { reviews = 600, epochs = 1 }   -- prepare{small = true}: the smoke's policy, in seconds

-- Makes (or finds) dir/tok and dir/sft. opts.small: M.SMALL's corpus and epochs (the smoke).
function M.prepare(dir, opts)
    opts = opts or {}
    runfolder.mkdir(dir)
    local n = opts.small and M.SMALL.reviews or M.SFT.reviews
    local reviews = M.reviews { n = n, seed = 1 }
    local texts = {}
    for i, rv in ipairs(reviews) do texts[i] = rv.prompt .. rv.completion end
    local tok = demo_data.cached(dir, "tok", function(tmp)
        io.write(string.format("study: learning a %d-merge byte-level BPE tokenizer on %d reviews\n",
            M.SFT.merges, #texts))
        bpe_train.write(tmp, texts, { merges = M.SFT.merges })
    end)
    local model = demo_data.cached(dir, "sft", function(tmp)
        io.write(string.format("study: SFT of the policy (%d layers, %d wide) on %d reviews\n", M.MODEL.n_layer,
            M.MODEL.n_embd, #texts))
        local examples = {}
        for i, rv in ipairs(reviews) do examples[i] = { prompt = rv.prompt, completion = rv.completion } end
        demo_data.train_sft(tmp, tok, examples, { model = M.MODEL, lr = M.SFT.lr, batch_size = M.SFT.batch_size,
            epochs = opts.small and M.SMALL.epochs or M.SFT.epochs, who = "study" })
    end)
    return { tok = tok, model = model }
end

return M
