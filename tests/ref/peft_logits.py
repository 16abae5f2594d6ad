"""peft_logits.py — logits of a Hugging Face model with a LoRA adapter, as transformers and peft
compute them: the check that peft loads what apl writes (and means by it what apl does).

  python peft_logits.py probe                         exit 0 when torch, transformers and peft import
  python peft_logits.py MODEL_DIR ADAPTER_DIR IO      IO: a safetensors file holding "ids" (B, T) i64;
                                                      prints max_abs_diff against its "logits"

Runs on the CPU in float32 (the GPU check's Python has all three; CI's has none and skips)."""
import sys


def main():
    import torch
    import transformers
    import peft
    if sys.argv[1] == "probe":
        print("peft", peft.__version__, "transformers", transformers.__version__)
        return
    from safetensors.torch import load_file
    model_dir, adapter_dir, io_path = sys.argv[1:4]
    io = load_file(io_path)
    base = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    model = peft.PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=io["ids"]).logits
    diff = (logits - io["logits"].float()).abs().max().item()
    print("max_abs_diff %.3g" % diff)


if __name__ == "__main__":
    main()
