-- The library's modules stand on their own: each loads where the global `apl` does not exist (as
-- under plain lua5.4 with the C modules loaded) and reads no global `apl` in any function, since
-- they `require` what they use (CONTRIBUTING.md, "The layers").
local T = require "tests.lib.test"
local fs = require "apl.fs"

local root = T.root()

-- Every module of the library, acquisition/ and the recipes' and tests' lib/, by the name
-- `require` knows it by.
local function modules()
    local out = {}
    for _, d in ipairs { { "lua/apl", "apl." }, { "lua/apl/judges", "apl.judges." }, { "acquisition", "acquisition." },
                         { "recipes/lib", "recipes.lib." }, { "tests/lib", "tests.lib." } } do
        for _, path in ipairs(fs.files(root .. "/" .. d[1], ".lua")) do
            local base = path:match("([^/]+)%.lua$")
            out[#out + 1] = { path = path, name = base == "init" and "apl" or d[2] .. base }
        end
    end
    return out
end

-- require inside a sandbox: Lua modules are loaded afresh into an environment that raises on any
-- read of the global `apl`; C modules (preloaded or on package.cpath) are shared.
local function sandbox_require()
    local loaded = {}
    local env = setmetatable({}, { __index = function(_, k)
        if k == "apl" then error("reads the global apl", 2) end
        return _G[k]
    end })
    local function req(name)
        if loaded[name] ~= nil then return loaded[name] end
        local file = not package.preload[name] and package.searchpath(name, package.path)
        if not file then return require(name) end
        local chunk = assert(loadfile(file, "t", env))
        loaded[name] = chunk(name, file)
        if loaded[name] == nil then loaded[name] = true end
        return loaded[name]
    end
    env.require = req
    return req
end

-- The source with comments and strings blanked, so that only code remains.
local function code_of(src)
    local out, i = {}, 1
    while i <= #src do
        local c = src:sub(i, i)
        local long = src:match("^%-%-%[(=*)%[", i) or src:match("^%[(=*)%[", i)
        if long then
            local _, e = src:find("]" .. long .. "]", i, true)
            i = (e or #src) + 1
            out[#out + 1] = " "
        elseif src:sub(i, i + 1) == "--" then
            i = (src:find("\n", i, true) or #src + 1)
        elseif c == '"' or c == "'" then
            local j = i + 1
            while j <= #src and src:sub(j, j) ~= c do j = j + (src:sub(j, j) == "\\" and 2 or 1) end
            i = j + 1
            out[#out + 1] = '""'
        else
            out[#out + 1] = c
            i = i + 1
        end
    end
    return table.concat(out)
end

T.case("modules: each library, acquisition and lib/ module loads without the global apl", function()
    local list = modules()
    T.ok(#list > 30, "found " .. #list .. " modules")
    for _, m in ipairs(list) do
        local ok, err = pcall(sandbox_require(), m.name)
        T.ok(ok, m.name .. ": " .. tostring(err))
    end
end)

T.case("modules: no library, acquisition or lib/ function reads the global apl", function()
    T.eq(code_of('local a = "apl.x" -- apl.y\nlocal b = apl.z --[[ apl ]] .. [==[apl]==]'), 'local a = "" \nlocal b = apl.z   ..  ')
    for _, m in ipairs(modules()) do
        if m.name ~= "apl" then -- init.lua makes the table as a local named apl
            local code = code_of(fs.read(m.path))
            for line in code:gmatch("()[^%w_.:]apl%f[^%w_]") do
                local n = select(2, code:sub(1, line):gsub("\n", "")) + 1
                T.ok(false, m.path .. ":" .. n .. " reads the global apl")
            end
        end
    end
end)
