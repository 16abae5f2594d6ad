# apl — build, test, demo, bench, install.
#   make                         ./apl against Debian's libtorch (CPU)
#   make LIBTORCH=/opt/libtorch  against another libtorch (CUDA zip or a pip wheel's torch/ folder)
#   make deps | test | demo | bench [QUICK=1] | install PREFIX=/usr/local
# New .c/.cpp files in core/ and lua/ are picked up by the globs below: nobody edits a file list.

PREFIX   ?= /usr/local
CC       ?= gcc
CXX      ?= g++
LIBTORCH ?=
OPT      ?= -O2

ifeq ($(LIBTORCH),)
TORCH_INC  := -I/usr/include/torch/csrc/api/include
TORCH_LIBS := -ltorch_cpu -lc10
else
TORCH_INC  := -isystem $(LIBTORCH)/include -isystem $(LIBTORCH)/include/torch/csrc/api/include
TORCH_LIBS := -L$(LIBTORCH)/lib -Wl,-rpath,$(abspath $(LIBTORCH))/lib -Wl,--no-as-needed \
              -ltorch -ltorch_cpu -lc10 $(if $(wildcard $(LIBTORCH)/lib/libtorch_cuda.so),-ltorch_cuda -lc10_cuda) \
              -Wl,--as-needed
# pip wheels record the C++ ABI they were built with; the shim must match it to link.
TORCH_ABI  := $(shell grep -ho '_GLIBCXX_USE_CXX11_ABI=[01]' $(LIBTORCH)/share/cmake/Torch/TorchConfig.cmake 2>/dev/null | head -n 1)
TORCH_INC  += $(if $(TORCH_ABI),-D$(TORCH_ABI))
endif

LUA_INC  := $(shell pkg-config --cflags lua5.4)
LUA_LIBS := $(shell pkg-config --libs lua5.4)
DEP_LIBS := $(LUA_LIBS) -lcjson -lpcre2-8 -lcurl -lreadline -lm -lpthread -ldl

# -fopenmp: core/smallm.c shares its columns among libtorch's OpenMP threads (libtorch already
# brings the runtime, so this adds no library).
CFLAGS   += $(OPT) -g -std=gnu11 -Wall -Wextra -fPIC -fopenmp -Icore $(LUA_INC) -I/usr/include/cjson
CXXFLAGS += $(OPT) -g -std=c++17 -Wall -Wextra -fPIC -Icore $(TORCH_INC) -Wno-unused-parameter
LDFLAGS  += -rdynamic -fopenmp

CORE_C   := $(sort $(wildcard core/*.c))
CORE_CXX := $(sort $(wildcard core/*.cpp))
LUA_C    := $(sort $(wildcard lua/*.c))
OBJ      := $(patsubst %.c,build/%.o,$(CORE_C) $(LUA_C)) $(patsubst %.cpp,build/%.o,$(CORE_CXX))
CORE_OBJ := $(patsubst %.c,build/%.o,$(CORE_C)) $(patsubst %.cpp,build/%.o,$(CORE_CXX))
CTESTS   := $(patsubst tests/c/%.c,build/tests/%,$(sort $(wildcard tests/c/test_*.c)))

.PHONY: all deps test demo bench install clean
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
	@sh tools/deps.sh

test: apl $(CTESTS)
	@./apl tests/run.lua $(TESTS)

demo: apl
	./apl recipes/demo.lua

bench: apl
	./apl bench/run.lua $(if $(QUICK),--quick)

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
