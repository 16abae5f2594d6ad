-- recipes/lib/demo_data.lua — short movie-review-like texts for the demo, from templates and word
-- lists, and the demo's prepared folders. Demo scaffolding beside the recipes, not the library.
--
--   local demo_data = require "recipes.lib.demo_data"
--   local reviews = demo_data.reviews{ n = 3000, seed = 1 }   -- { {text=, sentiment="pos"}, ... }
--   demo_data.write_imdb("build/demo/aclImdb", { train = 400, test = 100, seed = 2 })
--   local paths = demo_data.prepare("build/demo")   -- tokenizer, prompt folders, tiny SFT model
--
-- Half the reviews are positive, half negative; some mention a contrary detail, so sentiment is
-- learnable but not a single word. The sentiment words come from apl.sentiment's lists, which is
-- what lets the demo's word-list oracle judge the tiny model's completions.
local bpe_train = require "recipes.lib.bpe_train"
local fs = require "apl.fs"
local apl_model = require "apl.model"
local tokenizer = require "apl.tokenizer"
local sft = require "apl.sft"
local rng = require "apl.rng"
local runfolder = require "apl.runfolder"
local sentiment = require "apl.sentiment"

local M = {}

-- The word lists templates draw from ({slot}: W[slot], or {adj}, {other}, {verb}, {end} by mood).
local W = {
    noun = { "movie", "film", "story", "plot", "acting", "cast", "ending", "script", "music",
             "director", "hero", "villain", "dialogue", "camera work", "pacing", "first half" },
    adv = { "very", "really", "quite", "truly", "so", "rather", "pretty" },
    opener = { "this movie", "the film", "this film", "the movie", "the story", "this one" },
    pos_adj = { "good", "great", "wonderful", "brilliant", "funny", "beautiful", "moving",
                "charming", "clever", "delightful", "superb", "fresh", "excellent", "touching",
                "lovely", "enjoyable", "warm", "gripping", "fun", "smart", "sweet", "strong" },
    neg_adj = { "bad", "boring", "dull", "awful", "terrible", "slow", "silly", "weak", "poor",
                "messy", "predictable", "lifeless", "painful", "bland", "tedious", "clumsy",
                "forgettable", "flat", "cheap", "annoying", "mediocre", "wooden" },
    pos_verb = { "loved", "enjoyed", "adored", "liked" },
    neg_verb = { "hated", "disliked", "regretted" },
    pos_end = { "i would recommend it .", "a real gem .", "one of the best this year .",
                "i want to see it again .", "worth every minute ." },
    neg_end = { "skip this one .", "a waste of time .", "one of the worst this year .",
                "i want my money back .", "not worth a minute ." },
}

-- Every template word the oracle should react to must be in its lists.
for _, w in ipairs(W.pos_adj) do assert(sentiment.score(w) > 0, w) end
for _, w in ipairs(W.neg_adj) do assert(sentiment.score(w) < 0, w) end

local TEMPLATES = {
    "{opener} was {adv} {adj} .",
    "i {verb} the {noun} .",
    "the {noun} was {adj} and the {noun} was {adv} {adj} .",
    "{opener} is {adj} from start to finish .",
    "overall a {adj} {noun} .",
    "the {noun} felt {adv} {adj} .",
    "my friends {verb} it too .",
    "{end}",
}

local CONTRARY = "the {noun} was {other} but the {noun} was {adv} {adj} ."

-- A template with each {slot} drawn from words (default W) for mood "pos" or "neg": {adj},
-- {verb} and {end} of the mood, {other} an adjective of the other one.
function M.fill(template, r, mood, words)
    words = words or W
    local other = mood == "pos" and "neg" or "pos"
    return (template:gsub("{(%w+)}", function(slot)
        local list = words[slot] or (slot == "adj" and words[mood .. "_adj"])
            or (slot == "other" and words[other .. "_adj"]) or (slot == "verb" and words[mood .. "_verb"])
            or (slot == "end" and words[mood .. "_end"])
        return list[r:int(1, #list)]
    end))
end
local fill = M.fill

-- W and extra slots, for a task that needs more (recipes/lib/study_data.lua).
function M.words(extra)
    local out = {}
    for k, v in pairs(W) do out[k] = v end
    for k, v in pairs(extra) do out[k] = v end
    return out
end

-- One review: an opening sentence, one or two more, sometimes a contrary detail.
local function review(r, mood)
    local parts = { fill(TEMPLATES[r:int(1, 4)], r, mood) }
    for _ = 1, r:int(1, 2) do parts[#parts + 1] = fill(TEMPLATES[r:int(2, #TEMPLATES)], r, mood) end
    if r:uniform() < 0.2 then table.insert(parts, 2, fill(CONTRARY, r, mood)) end
    return table.concat(parts, " ")
end

-- opts: n (reviews), seed. Alternates positive and negative.
function M.reviews(opts)
    local r = rng.new(opts.seed or 0, "demo-reviews")
    local out = {}
    for i = 1, opts.n do
        local mood = i % 2 == 1 and "pos" or "neg"
        out[i] = { text = review(r, mood), sentiment = mood }
    end
    return out
end

-- Writes reviews in the aclImdb layout ({train,test}/{pos,neg}/<i>_<rating>.txt), so the demo
-- reads its prompt pool through the same loader as the IMDB recipe.
function M.write_imdb(dir, opts)
    local all = M.reviews { n = opts.train + opts.test, seed = opts.seed }
    for _, split in ipairs { "train", "test" } do
        for _, mood in ipairs { "pos", "neg" } do
            fs.mkdir_p(string.format("%s/%s/%s", dir, split, mood))
        end
    end
    for i, rv in ipairs(all) do
        local split = i <= opts.train and "train" or "test"
        local path = string.format("%s/%s/%s/%d_%d.txt", dir, split, rv.sentiment, i, rv.sentiment == "pos" and 9 or 2)
        fs.write(path, rv.text)
    end
    return dir
end

------------------------------------------------------------------------------------------------
-- The demo's prepared pieces, made once and cached.

M.MODEL = { model_type = "gpt2", n_layer = 2, n_embd = 64, n_head = 4, n_positions = 64 }
M.SFT = { reviews = 3000, epochs = 3, lr = 2e-3, batch_size = 32, merges = 300 }

local function say(fmt, ...) io.write(string.format(fmt, ...), "\n"); io.flush() end

-- Builds dir/<name> with make(tmp) unless it is there; a half-made one (an interrupted first
-- run) is never mistaken for a finished one, because only a complete folder gets its name.
function M.cached(dir, name, make)
    local final = dir .. "/" .. name
    if runfolder.exists(final) then return final end
    local tmp = final .. ".tmp"
    fs.rmtree(tmp, dir)
    runfolder.mkdir(tmp)
    make(tmp)
    assert(os.rename(tmp, final))
    return final
end
local cached = M.cached

-- SFT examples: each review split after its first 1–3 words, so the model learns to continue
-- review openings like the loop's prompts.
local function sft_examples(reviews, seed)
    local r = rng.new(seed, "sft-split")
    local out = {}
    for i, rv in ipairs(reviews) do
        local words = {}
        for w in rv.text:gmatch("%S+") do words[#words + 1] = w end
        local k = math.min(r:int(1, 3), #words - 1)
        out[i] = { prompt = table.concat(words, " ", 1, k), completion = " " .. table.concat(words, " ", k + 1) }
    end
    return out
end

-- A GPT-2 of config o.model (seed 1) SFT-trained on examples {prompt=, completion=} with the
-- tokenizer in tok_dir (o.lr, o.batch_size, o.epochs), saved in tmp with the tokenizer's files;
-- o.who prefixes the progress lines. One process trains it, also in a run of several (the
-- trainer's dist = false): a cached folder is made once, by rank 0 (see prepare).
function M.train_sft(tmp, tok_dir, examples, o)
    local tok = tokenizer.load(tok_dir)
    local cfg = {}
    for k, v in pairs(o.model) do cfg[k] = v end
    cfg.vocab_size = tok:vocab_size()
    local model = apl_model.init(cfg, { seed = 1 })
    local tr = sft.new { model = model, tok = tok, lr = o.lr, batch_size = o.batch_size, dist = false }
    for e = 1, o.epochs do
        local m = tr:epoch(examples, { shuffle_seed = e })
        say("%s: SFT epoch %d/%d  loss %.3f", o.who, e, o.epochs, m.loss)
    end
    model:save(tmp)
    model:free()
    -- A model folder carries its tokenizer, as Hugging Face folders do.
    for _, name in ipairs { "vocab.json", "merges.txt" } do
        fs.write(tmp .. "/" .. name, assert(fs.read(tok_dir .. "/" .. name)))
    end
end

-- Makes (or finds) under dir: tok/ (vocab.json + merges.txt), aclImdb/ (prompt folders) and
-- sft/ (the tiny GPT-2 fine-tuned on the corpus). Returns their paths {tok=, data=, model=}. In a
-- run of several processes call it through apl.dist's from_root: rank 0 makes the folders (the
-- same files one process makes) while the others wait, then all read them.
function M.prepare(dir)
    runfolder.mkdir(dir)
    local reviews = M.reviews { n = M.SFT.reviews, seed = 1 }
    local texts = {}
    for i, rv in ipairs(reviews) do texts[i] = rv.text end
    local tok = cached(dir, "tok", function(tmp)
        say("demo: learning a %d-merge byte-level BPE tokenizer on %d reviews", M.SFT.merges, #texts)
        bpe_train.write(tmp, texts, { merges = M.SFT.merges })
    end)
    local data = cached(dir, "aclImdb", function(tmp)
        M.write_imdb(tmp, { train = 600, test = 100, seed = 2 })
    end)
    local model = cached(dir, "sft", function(tmp)
        say("demo: training the tiny model (%d layers, %d wide) on %d reviews", M.MODEL.n_layer, M.MODEL.n_embd, #texts)
        M.train_sft(tmp, tok, sft_examples(reviews, 1), { model = M.MODEL, lr = M.SFT.lr,
            batch_size = M.SFT.batch_size, epochs = M.SFT.epochs, who = "demo" })
    end)
    return { tok = tok, data = data, model = model }
end

return M
