-- apl.tokenizer — byte-level BPE tokenizers (GPT-2, GPT-NeoX, Llama-3 / Qwen style) that split
-- text exactly as Hugging Face's `tokenizers` does.
--
--   local tok <close> = apl.tokenizer.load("gpt2/")  -- tokenizer.json, or vocab.json + merges.txt
--   local ids = tok:encode("Hello world")            -- {15496, 995}; "<|endoftext|>" is one id
--   tok:decode(ids)                                  -- "Hello world" (U+FFFD for broken UTF-8)
--   local x, mask, lists = tok:encode_batch(prompts, {padding_side = "left", max_length = 512})
--   tok.eos_id, tok.pad_id, tok.bos_id, tok:vocab_size(), tok:id_to_token(995), tok:token_to_id("Ġworld")
--
-- encode options: add_special (default true: the post-processor's BOS / EOS, none for GPT-2).
-- decode options: skip_special (default false). encode_batch options: padding_side ("right"),
-- max_length (0: none), truncation_side ("right": keep the first ids), add_special; it returns
-- ids and attention mask as (B, T) i64 tensors padded with pad_id, and the unpadded id lists.
local core = require "apl.core.tokenizer"

local M = { load = core.load, from_files = core.from_files }

return M
