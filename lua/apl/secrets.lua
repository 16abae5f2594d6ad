-- apl.secrets — keeping API keys out of everything apl keeps or prints.
--
--   local secrets = require "apl.secrets"
--   secrets.redact("HTTP 401: Authorization: Bearer sk-abc...")  -- "HTTP 401: Authorization: Bearer [redacted]"
--   secrets.redact("x-api-key: abc123")                         -- "x-api-key: [redacted]"
--   secrets.looks_like_key("sk-proj-0123456789abcdef")           -- true
--   secrets.find_key(config)           -- "oracle.api_key" when a value there looks like a key, else nil
--
-- The key itself never becomes a Lua value (lua/loracle.c reads it with getenv and also removes it
-- from what a server sends back); these patterns catch what a server or a user wrote elsewhere.
local M = {}

-- OpenAI ("sk-", "sk-proj-") and Anthropic ("sk-ant-") keys: "sk-" and at least 20 characters of
-- a key's alphabet, starting a word (so "task-..." is not one).
local SK = "%f[%w]sk%-[%w_%-]+"
local MIN_SK = 20

-- What comes before a key in the headers the judge backends send, as a server may echo them:
-- "Bearer <key>" (OpenAI) and "x-api-key: <key>" (Anthropic; also as JSON, "x-api-key": "<key>").
local LEADS = { "[Bb][Ee][Aa][Rr][Ee][Rr]%s+", "[Xx]%-[Aa][Pp][Ii]%-[Kk][Ee][Yy]\"?%s*:%s*\"?" }
local VALUE = "[%w%-%._~%+/]+=*"

-- s with keys after those leads and sk-... keys replaced by [redacted]; other values as they are.
function M.redact(s)
    if type(s) ~= "string" then return s end
    for _, lead in ipairs(LEADS) do s = s:gsub("(" .. lead .. ")" .. VALUE, "%1[redacted]") end
    return (s:gsub(SK, function(k) if #k >= MIN_SK then return "sk-[redacted]" end end))
end

function M.looks_like_key(s)
    if type(s) ~= "string" then return false end
    for _, lead in ipairs(LEADS) do if s:find(lead .. VALUE) then return true end end
    for k in s:gmatch(SK) do if #k >= MIN_SK then return true end end
    return false
end

-- The dotted path of the first string in t (nested tables too) that looks like a key, or nil.
function M.find_key(t, prefix, seen)
    seen = seen or {}
    if seen[t] then return nil end
    seen[t] = true
    for k, v in pairs(t) do
        local path = (prefix and prefix .. "." or "") .. tostring(k)
        if type(v) == "table" then
            local found = M.find_key(v, path, seen)
            if found then return found end
        elseif M.looks_like_key(v) or (type(k) == "string" and M.looks_like_key(k)) then
            return path
        end
    end
    return nil
end

return M
