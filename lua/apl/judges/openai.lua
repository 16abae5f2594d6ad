-- apl.judges.openai — the OpenAI chat-completions protocol, as OpenAI, vLLM, llama.cpp's server
-- and Ollama speak it: POST {base_url}/chat/completions with "Authorization: Bearer <key>".
--
-- A judge backend maps Lua tables to Lua tables; apl.oracle encodes and decodes the JSON, and the
-- C transport (core/oracle_http.c) sends it with retries, rate limits and the key. The interface
-- (see CONTRIBUTING.md, "A judge backend"):
--   path        appended to base_url
--   key_header  the header line the key follows (the key itself never reaches Lua)
--   headers     other "Name: value" lines sent with every request
--   request(q)  q = {model, system (may be ""), user, temperature, max_tokens} -> body table
--   reply(t)    the decoded 2xx body -> content, input tokens, output tokens | nil, why
local M = {
    path = "/chat/completions",
    key_header = "Authorization: Bearer ",
    headers = {},
}

function M.request(q)
    local messages = {}
    if q.system ~= "" then messages[1] = { role = "system", content = q.system } end
    messages[#messages + 1] = { role = "user", content = q.user }
    return { model = q.model, messages = messages, temperature = q.temperature, max_tokens = q.max_tokens }
end

function M.reply(t)
    local choice = type(t.choices) == "table" and t.choices[1]
    local message = type(choice) == "table" and choice.message
    local content = type(message) == "table" and message.content
    if type(content) ~= "string" then return nil, "reply has no choices[0].message.content string" end
    local usage = type(t.usage) == "table" and t.usage or {}
    return content, usage.prompt_tokens, usage.completion_tokens
end

return M
