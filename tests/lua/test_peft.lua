-- PEFT itself loads an adapter apl saved and computes apl's logits (issue 15). Needs torch,
-- transformers and peft under APL_PYTHON: the GPU check's Python has them (tools/gpu-check.sh runs
-- this suite with it); elsewhere the case skips, saying so.
local T = require "tests.lib.test"
local tensor = require "apl.tensor"
local model = require "apl.model"

local REF = T.root() .. "/tests/ref/peft_logits.py"

local function has_peft()
    local ok = os.execute(T.PYTHON .. " " .. REF .. " probe >/dev/null 2>&1")
    return ok == true
end

for _, family in ipairs { "gpt2", "gpt_neox", "llama" } do
    T.case("peft loads apl's adapter and gives its logits: " .. family, function()
        if not has_peft() then T.skip("no torch + transformers + peft under " .. T.PYTHON) end
        local m = model.init(model.tiny_config(family), { seed = 3 })
        local dir, ad = T.tmpdir(), T.tmpdir() .. "/adapter"
        m:save(dir)
        apl.lora.attach(m, { r = 4, alpha = 8, seed = 5 })
        for _, a in ipairs(m:lora().adapters) do a.B:copy_(tensor.randn(a.B:shape()) * 0.05) end
        m:save_adapter(ad)
        local ids = tensor { { 1, 5, 9, 13, 17, 21 }, { 2, 4, 8, 16, 32, 64 } }
        local io = dir .. "/io.safetensors"
        model.save_tensors(io, { ids = ids, logits = m:forward(ids) })
        local out = T.python(REF, dir .. " " .. ad .. " " .. io)
        local diff = tonumber(out:match("max_abs_diff (%S+)"))
        T.ok(diff, "no result from peft:\n" .. out)
        print(string.format("    %s: apl vs peft logits max diff %.3g", family, diff))
        T.ok(diff < 1e-4, "apl and peft disagree: " .. diff)
    end)
end
