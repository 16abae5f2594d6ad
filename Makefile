# apl — build, test, demo, bench, install.
#   make                         ./apl against Debian's libtorch (CPU)
#   make LIBTORCH=/opt/libtorch  against another libtorch (CUDA zip or a pip wheel's torch/ folder)
#   make deps | test | demo | bench [QUICK=1] [ONLY=dist,lora] | install PREFIX=/usr/local
# New .c/.cpp files in core/ and lua/ are picked up by the globs below: nobody edits a file list.

PREFIX   ?= /usr/local
CC       ?= gcc
CXX      ?= g++
LIBTORCH ?=
OPT      ?= -O2

SYSROOT  ?=
TRIPLET  := $(shell $(CC) -dumpmachine 2>/dev/null)

ifeq ($(LIBTORCH),)
# Debian's libtorch-dev, or libtorch-cuda-dev from contrib: headers under /usr/include, libraries
# in the multiarch folder.
TORCH_LIBDIR := $(SYSROOT)/usr/lib/$(TRIPLET)
TORCH_INC    := -I$(SYSROOT)/usr/include/torch/csrc/api/include
TORCH_LIBS   := -ltorch_cpu -lc10
else
TORCH_LIBDIR := $(LIBTORCH)/lib
TORCH_INC    := -isystem $(LIBTORCH)/include -isystem $(LIBTORCH)/include/torch/csrc/api/include
TORCH_LIBS   := -L$(LIBTORCH)/lib -Wl,-rpath,$(abspath $(LIBTORCH))/lib -ltorch -ltorch_cpu -lc10
# pip wheels record the C++ ABI they were built with; the shim must match it to link.
TORCH_ABI  := $(shell grep -ho '_GLIBCXX_USE_CXX11_ABI=[01]' $(LIBTORCH)/share/cmake/Torch/TorchConfig.cmake 2>/dev/null | head -n 1)
TORCH_INC  += $(if $(TORCH_ABI),-D$(TORCH_ABI))
endif
# A CUDA libtorch registers its CUDA hooks from static constructors: apl refers to no symbol of
# these libraries, so they are linked even though they look unneeded.
TORCH_CUDA := -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed
TORCH_LIBS += $(if $(wildcard $(TORCH_LIBDIR)/libtorch_cuda.so),$(TORCH_CUDA))

# apl.dist (core/torch_dist.cpp): the c10d headers declare the Gloo process group only with
# USE_C10D_GLOO, and it needs Gloo's own headers (Debian: libgloo-dev, which make deps installs);
# the NCCL one only with USE_C10D_NCCL, on a CUDA libtorch with the headers of NCCL and of the
# CUDA toolkit (make deps CUDA=1: libnccl-dev, nvidia-cuda-dev; elsewhere CUDA_HOME). A build
# without them runs single-process and says why when asked for more.
CUDA_HOME ?= /usr/local/cuda
GLOO_H   := $(wildcard $(SYSROOT)/usr/include/gloo/algorithm.h $(if $(LIBTORCH),$(LIBTORCH)/include/gloo/algorithm.h))
NCCL_H   := $(wildcard $(SYSROOT)/usr/include/nccl.h $(if $(LIBTORCH),$(LIBTORCH)/include/nccl.h) $(CUDA_HOME)/include/nccl.h)
CUDA_H   := $(wildcard $(SYSROOT)/usr/include/cuda.h $(CUDA_HOME)/include/cuda.h)
DIST_DEFS := $(if $(GLOO_H),-DUSE_C10D_GLOO) \
             $(if $(and $(NCCL_H),$(CUDA_H),$(wildcard $(TORCH_LIBDIR)/libtorch_cuda.so)),-DUSE_C10D_NCCL \
                $(if $(filter $(CUDA_HOME)/%,$(CUDA_H)),-isystem $(CUDA_HOME)/include))

# Evaluated once, when first used (not for `make deps`, which runs before pkg-config exists).
PKG_ENV  := $(if $(SYSROOT),PKG_CONFIG_SYSROOT_DIR=$(SYSROOT) PKG_CONFIG_LIBDIR=$(SYSROOT)/usr/lib/$(TRIPLET)/pkgconfig:$(SYSROOT)/usr/share/pkgconfig)
LUA_INC   = $(eval LUA_INC := $(shell $(PKG_ENV) pkg-config --cflags lua5.4))$(LUA_INC)
LUA_LIBS  = $(eval LUA_LIBS := $(shell $(PKG_ENV) pkg-config --libs lua5.4))$(LUA_LIBS)
DEP_LIBS  = $(LUA_LIBS) -lcjson -lpcre2-8 -lcurl -lreadline -lm -lpthread -ldl

# -fopenmp: core/smallm.c shares its columns among libtorch's OpenMP threads (libtorch already
# brings the runtime, so this adds no library).
CFLAGS   += $(OPT) -g -std=gnu11 -Wall -Wextra -fPIC -fopenmp -Icore $(LUA_INC) -I$(SYSROOT)/usr/include/cjson
CXXFLAGS += $(OPT) -g -std=c++17 -Wall -Wextra -fPIC -Icore $(TORCH_INC) -Wno-unused-parameter $(DIST_DEFS)
LDFLAGS  += -rdynamic -fopenmp

# Cross builds (make CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ SYSROOT=/path/to/arm64/root):
# the target's headers and libraries come from its root, and the libraries that libtorch needs
# are looked up there too. The root's absolute symbolic links must be made relative first (the
# linker would follow them out of the root): tools/platform.sh arm64 does.
ifneq ($(SYSROOT),)
SYSROOT_FLAGS := --sysroot=$(SYSROOT)
CFLAGS   += $(SYSROOT_FLAGS)
CXXFLAGS += $(SYSROOT_FLAGS)
LDFLAGS  += $(SYSROOT_FLAGS) -Wl,-rpath-link,$(SYSROOT)/usr/lib/$(TRIPLET)
endif

# The AVX-512 kernels are x86-64 code. Elsewhere (arm64) core/noarch/kernels.c answers that they
# are unusable and every op takes libtorch's path, as on x86 CPUs without AVX-512.
X86_KERNELS := core/activation.c core/attention.c core/rowsoftmax.c core/smallm.c
CORE_C   := $(sort $(wildcard core/*.c))
ifeq ($(filter x86_64-%,$(TRIPLET)),)
CORE_C   := $(filter-out $(X86_KERNELS),$(CORE_C)) core/noarch/kernels.c
endif
CORE_CXX := $(sort $(wildcard core/*.cpp))
LUA_C    := $(sort $(wildcard lua/*.c))
OBJ      := $(patsubst %.c,build/%.o,$(CORE_C) $(LUA_C)) $(patsubst %.cpp,build/%.o,$(CORE_CXX))
CORE_OBJ := $(patsubst %.c,build/%.o,$(CORE_C)) $(patsubst %.cpp,build/%.o,$(CORE_CXX))
CTESTS   := $(patsubst tests/c/%.c,build/tests/%,$(sort $(wildcard tests/c/test_*.c)))

.PHONY: all deps c-tests test demo study bench install clean
# a failed link or compile leaves no half-written target that a later make would take as built
.DELETE_ON_ERROR:
all: apl

apl: $(OBJ)
	$(CXX) $(LDFLAGS) -o $@ $(OBJ) $(TORCH_LIBS) $(DEP_LIBS)

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

build/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c $< -o $@

# C unit tests link the core as an archive, so each pulls in only the modules it uses.
build/libaplcore.a: $(CORE_OBJ)
	rm -f $@
	ar rcs $@ $(CORE_OBJ)

build/tests/%: tests/c/%.c build/libaplcore.a $(wildcard tests/c/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/c -o $@ $< build/libaplcore.a -lstdc++ $(TORCH_LIBS) $(DEP_LIBS)

deps:
	@CUDA='$(CUDA)' sh tools/deps.sh

c-tests: $(CTESTS)

test: apl $(CTESTS)
	@./apl tests/run.lua $(TESTS)

demo: apl
	./apl recipes/demo.lua

# the CPU-scale study of issue 17 (recipes/study.lua): ~45 minutes on 2 cores, run it alone
study: apl
	./apl recipes/study.lua

bench: apl
	./apl bench/run.lua $(if $(QUICK),--quick) $(if $(ONLY),--only $(ONLY))

install: apl
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/apl
	cp -r lua acquisition recipes $(DESTDIR)$(PREFIX)/share/apl/
	install -m 755 apl $(DESTDIR)$(PREFIX)/share/apl/apl
	ln -sf ../share/apl/apl $(DESTDIR)$(PREFIX)/bin/apl

clean:
	rm -rf build apl

# Debs + source for tools/gpu-check.sh on an offline GPU machine: build/apl-gpu-bundle.tar.gz.
.PHONY: gpu-bundle
gpu-bundle:
	@bash tools/gpu-bundle.sh

-include $(OBJ:.o=.d)

# ------------------------------------------------------------------------------------------------
# Fuzzing and sanitizers (issue 19). Needs clang and libclang-rt-14-dev (Debian: apt-get install
# clang libclang-rt-14-dev). Each harness links only the C modules it tests, never libtorch.
#   make fuzz                     builds tests/fuzz/fuzz_*.c and runs each FUZZ_SECONDS (60)
#   make fuzz FUZZ_SECONDS=10     shorter; make fuzz-build only builds them
#   make asan-test                the test suite (C unit tests and Lua) under ASan + UBSan
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer -Icore -Itests/fuzz -I/usr/include/cjson
FUZZ_NAMES   := safetensors config tokenizer http_header ledger
FUZZ_BINS    := $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_NAMES))
FUZZ_SRC_safetensors := core/safetensors.c core/fileio.c core/status.c tests/fuzz/shim_stub.c
# The families' config parsers live beside their forward code, which the config harness never
# runs: its libtorch symbols are left unresolved rather than stubbed (-no-pie: a PIE refuses
# to load with unresolved PLT slots).
FUZZ_SRC_config      := core/config.c core/archs.c core/gpt2.c core/neox.c core/llama.c core/status.c
FUZZ_LDFLAGS_config  := -no-pie -Wl,--unresolved-symbols=ignore-in-object-files
FUZZ_SRC_tokenizer   := core/tokenizer.c core/tokenizer_load.c core/tokenizer_text.c core/fileio.c core/status.c
FUZZ_SRC_http_header := core/oracle_http.c core/status.c
FUZZ_SRC_ledger      := core/journal.c core/fileio.c core/status.c
FUZZ_LIBS := -lcjson -lpcre2-8 -lcurl -ldl -lm -lpthread

define FUZZ_RULE
build/fuzz/fuzz_$(1): tests/fuzz/fuzz_$(1).c tests/fuzz/fuzz.h $(FUZZ_SRC_$(1)) $(wildcard core/*.h)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $$@ $$< $(FUZZ_SRC_$(1)) $(FUZZ_LDFLAGS_$(1)) $(FUZZ_LIBS)
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call FUZZ_RULE,$(n))))

.PHONY: fuzz fuzz-build asan-test
fuzz-build: $(FUZZ_BINS)

# Each harness runs on a working corpus under build/fuzz/corpus (new inputs land there), seeded
# from the tree's tests/fuzz/corpus/NAME; a crash leaves build/fuzz/crash-NAME-* and fails make.
fuzz: fuzz-build
	@failed=; for n in $(FUZZ_NAMES); do \
	    mkdir -p build/fuzz/corpus/$$n || exit 1; \
	    echo "fuzz $$n: $(FUZZ_SECONDS) s"; \
	    if build/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	        -max_len=65536 -print_final_stats=1 -artifact_prefix=build/fuzz/crash-$$n- \
	        -dict=tests/fuzz/json.dict build/fuzz/corpus/$$n tests/fuzz/corpus/$$n \
	        > build/fuzz/$$n.log 2>&1; then \
	        grep -E '^stat::(number_of_executed_units|peak_rss_mb)' build/fuzz/$$n.log | tr -s ' \n' ' '; echo; \
	    else \
	        grep -B2 -A12 -E 'ERROR|runtime error|invariant failed|Test unit written' build/fuzz/$$n.log | head -n 40; \
	        failed="$$failed $$n"; \
	    fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: findings in$$failed (inputs in build/fuzz/crash-*, logs in build/fuzz/*.log)"; exit 1; fi

# The sanitizer build: every C and C++ file of apl and the C unit tests with AddressSanitizer and
# UndefinedBehaviorSanitizer, in build/asan (objects in build/asan/obj), run from there. libtorch,
# Lua and the other libraries stay uninstrumented; the options they need at run time:
#   detect_leaks=0        libtorch and OpenMP keep allocations until exit (thread pools, caches)
#   protect_shadow_gap=0  CUDA maps memory in ASan's shadow gap (CPU-only runs do not need it)
#   alloc_dealloc_mismatch=0  libtorch frees some operator-new memory through c10's allocator
#   verify_asan_link_order=0  a test runs apl with LD_PRELOAD=libblas.so.3 (the BLAS warning):
#                         a library preloaded before libasan is fine when it is not instrumented
# No LD_PRELOAD of libasan is needed: the binaries are linked with -fsanitize=address, so it is
# loaded first. build/asan is laid out as the tree is: the project root is the binary's folder,
# which links back to the tree's lua, tests, ... folders, and the C unit tests are in its
# build/tests. So `make asan-test` runs what `make test` runs, through tests/run.lua: the C unit
# tests and every tests/lua/test_*.lua, and Lua tests that start ./apl start build/asan/apl.
# ~10 min on 2 cores after the first build (~6 min). A few cases cannot hold there and skip
# themselves, saying why, when the process has libasan loaded: the RSS checks of test_tensor.lua
# (ASan's shadow memory and quarantine make RSS meaningless) and test_gpu_check.lua's bundle and
# unpacking cases (shell scripts that need the git checkout itself; no apl code runs in them).
# ASAN_LUA_TESTS="tests/lua/test_model.lua ..." runs only those files.
ASAN_FLAGS   := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer
ASAN_OPTIONS_RUN  := detect_leaks=0:protect_shadow_gap=0:alloc_dealloc_mismatch=0:verify_asan_link_order=0:abort_on_error=1
UBSAN_OPTIONS_RUN := halt_on_error=1:print_stacktrace=1
ASAN_LUA_TESTS ?=
ASAN_OBJ     := $(patsubst build/%,build/asan/obj/%,$(OBJ))
ASAN_CORE    := $(patsubst build/%,build/asan/obj/%,$(CORE_OBJ))
ASAN_CTESTS  := $(patsubst build/tests/%,build/asan/build/tests/%,$(CTESTS))
ASAN_LINKS   := lua acquisition recipes tests bench examples tools

build/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -MMD -MP -c $< -o $@

build/asan/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(ASAN_FLAGS) -MMD -MP -c $< -o $@

build/asan/apl: $(ASAN_OBJ)
	$(CXX) $(LDFLAGS) $(ASAN_FLAGS) -o $@ $(ASAN_OBJ) $(TORCH_LIBS) $(DEP_LIBS)
	@for d in $(ASAN_LINKS); do ln -sfn ../../$$d build/asan/$$d; done

build/asan/libaplcore.a: $(ASAN_CORE)
	rm -f $@
	ar rcs $@ $(ASAN_CORE)

build/asan/build/tests/%: tests/c/%.c build/asan/libaplcore.a $(wildcard tests/c/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -Itests/c -o $@ $< build/asan/libaplcore.a -lstdc++ $(TORCH_LIBS) $(DEP_LIBS)

asan-test: build/asan/apl $(ASAN_CTESTS)
	@ASAN_OPTIONS=$(ASAN_OPTIONS_RUN) UBSAN_OPTIONS=$(UBSAN_OPTIONS_RUN) build/asan/apl tests/run.lua $(ASAN_LUA_TESTS)

-include $(ASAN_OBJ:.o=.d)
