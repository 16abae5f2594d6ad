-- examples/compare.lua — the method's Table 2 from finished runs: rows = (dataset, labels
-- acquired), columns = acquisition functions, mean ± standard error over seeds; and Figure 2.
-- With --out, the whole report in that folder: table2.txt/.md/.csv, figure2.svg, figure3.svg and
-- report.html (Table 2, both figures, every acquired pair to sort and filter).
--
--   apl examples/compare.lua runs/imdb-*-s*                   # Figure 2: runs/compare.svg
--   apl examples/compare.lua --plot table2.svg runs/a runs/b
--   apl examples/compare.lua --out runs/report runs/sweep-imdb/*-s*
--
-- The paper's Table 2 was judged by gpt-4-1106-preview with the templates "imdb" and "tldr" (its
-- Appendix A): run the recipes with --judge-model gpt-4-1106-preview to compare with it. Another
-- judge gives other win-rates, and weaker judges are less self-consistent (the paper's Figure 1);
-- examples/judge_consistency.lua measures yours.
local dirs, plot, out = {}, nil, nil
local i = 1
while i <= #arg do
    if arg[i] == "--plot" then plot, i = arg[i + 1], i + 2
    elseif arg[i] == "--out" then out, i = arg[i + 1], i + 2
    else dirs[#dirs + 1], i = arg[i], i + 1 end
end
if #dirs == 0 then
    io.stderr:write("usage: apl examples/compare.lua [--plot FILE.svg | --out DIR] RUN_DIR...\n")
    os.exit(2)
end
if out then apl.report.write(dirs, out) else apl.report(dirs, { plot = plot }) end
