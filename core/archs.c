/* archs.c — the registry of model families (model_impl.h): a new family is a file like gpt2.c
 * and a line here. config.c finds a config.json's model_type in it; model.c takes the rest. */
#include "model_impl.h"

extern const apl_arch apl_arch_gpt2, apl_arch_neox, apl_arch_llama;

const apl_arch *const apl_archs[] = {&apl_arch_gpt2, &apl_arch_neox, &apl_arch_llama, NULL};
