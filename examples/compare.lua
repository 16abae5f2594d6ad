-- examples/compare.lua — the method's Table 2 from finished runs: rows = labels acquired,
-- columns = acquisition functions, mean ± standard error over seeds; and the comparison plot.
--
--   apl examples/compare.lua runs/imdb-*-s*                 # plot: runs/compare.svg
--   apl examples/compare.lua --plot table2.svg runs/a runs/b
local dirs, plot = {}, nil
local i = 1
while i <= #arg do
    if arg[i] == "--plot" then plot, i = arg[i + 1], i + 2
    else dirs[#dirs + 1], i = arg[i], i + 1 end
end
if #dirs == 0 then
    io.stderr:write("usage: apl examples/compare.lua [--plot FILE.svg] RUN_DIR...\n")
    os.exit(2)
end
apl.report(dirs, { plot = plot })
