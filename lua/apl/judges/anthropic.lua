-- apl.judges.anthropic — Anthropic's Messages API: POST {base_url}/messages (base_url
-- "https://api.anthropic.com/v1") with the key in "x-api-key", "anthropic-version: 2023-06-01",
-- the system prompt as a top-level field and max_tokens required. The answer is the text of the
-- reply's content blocks of type "text" (thinking and tool blocks are not the answer). Errors come
-- as {"type": "error", "error": {"type": ..., "message": ...}}; 429 and 529 (overloaded) are
-- retried by the transport like 503. The interface is described in apl/judges/openai.lua.
local M = {
    path = "/messages",
    key_header = "x-api-key: ",
    headers = { "anthropic-version: 2023-06-01" },
}

function M.request(q)
    return { model = q.model, system = q.system ~= "" and q.system or nil, max_tokens = q.max_tokens,
             temperature = q.temperature, messages = { { role = "user", content = q.user } } }
end

-- "overloaded_error: Overloaded" from an error body, or nil.
local function error_text(t)
    local e = t.error
    if type(e) ~= "table" or type(e.message) ~= "string" then return nil end
    return type(e.type) == "string" and e.type .. ": " .. e.message or e.message
end

function M.reply(t)
    if t.type == "error" then return nil, "the judge sent an error: " .. (error_text(t) or "no message") end
    if type(t.content) ~= "table" then return nil, "reply has no content list" end
    local parts = {}
    for _, block in ipairs(t.content) do
        if type(block) == "table" and block.type == "text" and type(block.text) == "string" then
            parts[#parts + 1] = block.text
        end
    end
    local usage = type(t.usage) == "table" and t.usage or {}
    return table.concat(parts), usage.input_tokens, usage.output_tokens
end

return M
