-- examples/inspect_run.lua — what a run acquired and how it evaluated, from its folder.
--
--   apl examples/inspect_run.lua runs/imdb-certainty-s1 [sort-field] [limit]
--   (in the REPL: r = apl.inspect.run(dir); r:pairs{sort = "score"}; r:evals())
local dir = arg[1]
if not dir then
    io.stderr:write("usage: apl examples/inspect_run.lua RUN_DIR [SORT_FIELD] [LIMIT]\n")
    os.exit(2)
end
local r = apl.inspect.run(dir)
r:evals()
r:pairs { sort = arg[2] or "score", limit = tonumber(arg[3]) or 20 }
