-- apl.entropy — see apl.score (loaded as a top-level apl function by apl/init.lua).
return require("apl.score").entropy
