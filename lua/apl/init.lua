-- apl — the standard library, loaded as the global `apl`.
-- Submodules load on first use (apl.model -> require "apl.model"), so a script pays only for
-- what it touches and a missing optional module fails where it is used, with its own message.
local tensor = require "apl.tensor"

local apl = { tensor = tensor, version = "0.1.0" }

setmetatable(apl, {
    __index = function(t, k)
        local ok, mod = pcall(require, "apl." .. k)
        if not ok then
            if tostring(mod):find("module 'apl%." .. k .. "' not found") then return nil end
            error(mod, 2)
        end
        rawset(t, k, mod)
        return mod
    end,
})

return apl
