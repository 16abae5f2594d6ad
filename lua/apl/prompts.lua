-- apl.prompts — the judge's prompt templates. A template is a table {name=, system=, user=} whose
-- texts hold the placeholders {{PROMPT}}, {{A}} and {{B}}; edit a copy to change what the judge
-- is asked. The judge must answer a rationale line and then "Preferred: A" or "Preferred: B".
--
-- Built in: "imdb" and "tldr" are the paper's judges (Appendix A, Figure 4), the ones to reproduce
-- its results with; "imdb_sentiment" and "tldr_dpo" are shorter alternatives (see below).
--
--   local t = apl.prompts.get("tldr")                    -- or "imdb", or your own table
--   local mine = apl.prompts.copy("imdb", {system = "You are a film critic."})
--   local sys, user = apl.prompts.render(t, post, summary1, summary2)
--   apl.prompts.names()                                  -- {"imdb", "imdb_sentiment", ...}
local M = {}

-- The paper's judges (Appendix A, Figure 4), word for word; the paper prints them on one line,
-- so the line breaks are those of the authors' code (direct/openai_ranking.py). The IMDB judge sees
-- whole reviews, prompt + completion, and grades grammar, consistency and repetition as well as
-- sentiment; both must choose even when neither text is good, so every pair teaches DPO something.
local PAPER_FORMAT = "\n\nYou must choose A or B for the preferred answer even if neither %s is very good.\n\n" .. [[
Your response should use the format:

Comparison: <one-sentence comparison and explanation>
Preferred: <"A" or "B">]]

M.imdb = {
    name = "imdb",
    system = "You are a helpful assistant that evaluates the quality and positive sentiment of movie reviews",
    user = [[
Which of the following movie reviews is better? The best one will be the one with the most positive sentiment, which also is grammatically correct, consistent, and avoids repetition.

Review A:
{{PROMPT}} {{A}}

Review B:
{{PROMPT}} {{B}}

First, provide a one-sentence comparison of the two reviews, explaining which is better and why. Second, on a new line, state only "A" or "B" to indicate your choice.]] .. PAPER_FORMAT:format("review"),
}

-- The post and the two summaries, laid out as both summary judges show them.
local SUMMARIES = "\n\n" .. [[
Post:
{{PROMPT}}

Summary A:
{{A}}

Summary B:
{{B}}

]]

M.tldr = {
    name = "tldr",
    system = "You are a helpful assistant that evaluates the quality of summaries for internet posts.",
    user = [[
Which of the following summaries does a better job of summarizing the most important points in the given forum post, without including unimportant or irrelevant details?]] .. SUMMARIES .. [[
First, provide a one-sentence comparison of the two summaries, which you prefer and why. Second, on a new line, state only "A" or "B" to indicate your choice.]] .. PAPER_FORMAT:format("summary"),
}

-- Alternatives, not the paper's. imdb_sentiment asks only which continuation is more positive (a
-- stand-in for the sentiment classifier of the DPO paper's IMDB task); it has no grammar or
-- repetition criteria and no must-choose line, so DPO learns a different preference from it.
M.imdb_sentiment = {
    name = "imdb_sentiment",
    system = "You are a careful annotator of movie-review sentiment.",
    user = [[
Here is the beginning of a movie review, followed by two possible continuations of it.

Review beginning:
{{PROMPT}}

Continuation A:
{{A}}

Continuation B:
{{B}}

Which continuation expresses the more positive sentiment about the movie? FIRST provide a one-sentence comparison of the two continuations, explaining which is more positive and why. SECOND, on a new line, state only "A" or "B" to indicate the more positive continuation. Your response should use the format:
Comparison: <one-sentence comparison and explanation>
Preferred: <"A" or "B">]],
}

-- tldr_dpo: the GPT-4 summarization judge of the DPO paper (Rafailov et al., 2023, appendix C.2),
-- which asks for precision and concision and has no must-choose line.
M.tldr_dpo = {
    name = "tldr_dpo",
    system = "You are a helpful assistant that judges the quality of summaries.",
    user = [[
Which of the following summaries does a better job of summarizing the most important points in the given forum post, without including unimportant or irrelevant details? A good summary is both precise and concise.]] .. SUMMARIES .. [[
FIRST provide a one-sentence comparison of the two summaries, explaining which you prefer and why. SECOND, on a new line, state only "A" or "B" to indicate your choice. Your response should use the format:
Comparison: <one-sentence comparison and explanation>
Preferred: <"A" or "B">]],
}

local function check(t, fname)
    if type(t) ~= "table" or type(t.user) ~= "string" then
        error(fname .. ": a template is a table with a 'user' string (and optional 'system')", 3)
    end
    if t.system ~= nil and type(t.system) ~= "string" then error(fname .. ": template.system must be a string", 3) end
    for _, ph in ipairs { "{{A}}", "{{B}}" } do
        if not ((t.system or "") .. t.user):find(ph, 1, true) then
            error(fname .. ": template has no " .. ph .. " placeholder", 3)
        end
    end
    return t
end

-- The built-in templates' names, sorted.
function M.names()
    local out = {}
    for k, v in pairs(M) do if type(v) == "table" then out[#out + 1] = k end end
    table.sort(out)
    return out
end

-- A template by name (see names()), or a table checked for the A and B placeholders.
function M.get(t)
    if type(t) == "string" then
        local found = M[t]
        if type(found) ~= "table" then
            error("apl.prompts.get: no template named '" .. t .. "' (" .. table.concat(M.names(), ", ") .. ")", 2)
        end
        return found
    end
    return check(t, "apl.prompts.get")
end

-- A new template: a copy of base (a name or table) with the fields of changes replaced.
function M.copy(base, changes)
    local t = {}
    for k, v in pairs(M.get(base)) do t[k] = v end
    for k, v in pairs(changes or {}) do t[k] = v end
    return check(t, "apl.prompts.copy")
end

-- Fills the placeholders in one pass, so a completion that itself contains "{{B}}" stays as is.
local function fill(text, vars)
    return (text:gsub("{{(%u+)}}", function(k) return vars[k] end))
end

-- system, user messages for one comparison (a and b in the order the judge should see them).
function M.render(t, prompt, a, b)
    local vars = { PROMPT = prompt, A = a, B = b }
    return fill(t.system or "", vars), fill(t.user, vars)
end

return M
