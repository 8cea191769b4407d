# lamina — build, test, demo and benchmark.
# `make` builds build/lamina; `make check` runs every test; `make run` the demo.
SHELL := /bin/bash
CC      := mpicc
BUILD   ?= build
PKGS    := hdf5-openmpi inih jansson openblas libutf8proc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# The layers of src/, lowest first (src/LAYERS.md): a file may include
# headers of its own layer and of the layers below it, never above
# (tests/layers.sh checks it in `make check`).
LAYERS  := core device io data dist obs model optim plan run app
LAYER_INC := $(patsubst %,-Isrc/%,$(filter-out io,$(LAYERS))) -Iio -Icuda
HDRS    := $(wildcard src/*/*.h io/*.h)
OPT     ?= -O3 -march=native
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wpointer-arith -Werror -fopenmp $(LAYER_INC) $(PKG_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lsde -lpapi -lm
VERSION := 0.1.0
PREFIX  ?= /usr/local
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
CFLAGS  += -DLAMINA_VERSION='"$(VERSION)"' -DLAMINA_GIT='"$(GIT_REV)"'

# CUDA: built into the same binary whenever nvcc is found (CUDA=0 leaves it out).
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA    ?= $(if $(NVCC),1,0)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
CU_SRC  := $(wildcard cuda/*.cu)
CUH_SRC := $(wildcard cuda/*.c)
ifeq ($(CUDA),1)
CFLAGS  += -DLAMINA_CUDA=1 -DLAMINA_CUDA_ARCH='"$(subst -gencode arch=,,$(subst code=,,$(CUDA_ARCH)))"'
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lnccl -lcudart -lstdc++ -ldl
LDLIBS  += $(CUDA_LIBS)
CU_OBJ  := $(patsubst cuda/%.cu,$(BUILD)/cuda/%.o,$(CU_SRC)) $(patsubst cuda/%.c,$(BUILD)/cudahost/%.o,$(CUH_SRC))
else
CUDA_LIBS :=
CU_OBJ  :=
endif
NVFLAGS := -O3 -std=c++17 $(CUDA_ARCH) --threads 2 -Xcompiler -Wall,-Wextra,-Werror -Werror all-warnings

LIB_SRC := $(filter-out src/app/main.c,$(wildcard src/*/*.c)) $(wildcard io/*.c)
LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
# SentencePiece has only a C++ API: src/*/*.cc (the wrapper spm_lib.cc) is
# built with g++ into the same library.
CXX_SRC  := $(wildcard src/*/*.cc)
CXXFLAGS_LM := -std=c++17 -O2 -g -Wall -Wextra -Werror $(LAYER_INC)
SPM_LIBS := -lsentencepiece -lsentencepiece_train -lstdc++
LIB_OBJ  += $(patsubst %.cc,$(BUILD)/%.o,$(CXX_SRC))
LDLIBS   += $(SPM_LIBS)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
SAN_BIN  := $(patsubst tests/unit/%.c,$(BUILD)/san/tests/%,$(UNIT_SRC))

.PHONY: all llama-demo stages-demo evalsets recipe deps check-deps check check-long check-unit check-san check-gpu gpu-tests run bench clean install
all: $(BUILD)/lamina $(BUILD)/liblamina-sde.so $(BUILD)/perf/host_adamw_bench $(BUILD)/perf/dedup_bench

$(BUILD)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cc $(HDRS)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_LM) -c $< -o $@

$(BUILD)/cuda/%.o: cuda/%.cu $(wildcard cuda/*.h cuda/*.cuh)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) $(LAYER_INC) -Icuda -c $< -o $@

# Host C of the CUDA backend (cuBLASLt, NCCL, runtime API): our C flags.
$(BUILD)/cudahost/%.o: cuda/%.c $(HDRS) $(wildcard cuda/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icuda -I$(CUDA_HOME)/include -c $< -o $@

$(BUILD)/liblamina.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/lamina: $(BUILD)/src/app/main.o $(BUILD)/liblamina.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# lamina's PAPI software-defined events for PAPI tools (src/obs/sde.h):
# `papi_native_avail -sde build/liblamina-sde.so` or LD_PRELOAD it.
$(BUILD)/liblamina-sde.so: src/obs/sde.c src/obs/sde_events.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -shared -DLM_SDE_HOOK_ONLY $< -o $@ -lsde

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/liblamina.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/liblamina.a $(LDLIBS) -lcmocka

# Sanitizer build of the library and unit tests (ASan + UBSan), CPU only.
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
$(BUILD)/san/liblamina.a: $(LIB_SRC) $(CXX_SRC) $(HDRS)
	@rm -rf $(BUILD)/san/obj; mkdir -p $(BUILD)/san/obj
	set -e; for f in $(LIB_SRC); do o=$(BUILD)/san/obj/$$(echo $$f | tr / _).o; \
	  $(CC) $(filter-out $(OPT) -DLAMINA_CUDA=1,$(CFLAGS)) $(SAN_FLAGS) -c $$f -o $$o; done
	set -e; for f in $(CXX_SRC); do $(CXX) $(filter-out -O2,$(CXXFLAGS_LM)) $(SAN_FLAGS) -c $$f -o $(BUILD)/san/obj/$$(echo $$f | tr / _).o; done
	rm -f $@; ar rcs $@ $(BUILD)/san/obj/*.o
$(BUILD)/san/tests/%: tests/unit/%.c $(BUILD)/san/liblamina.a
	@mkdir -p $(dir $@)
	$(CC) $(filter-out $(OPT) -DLAMINA_CUDA=1,$(CFLAGS)) $(SAN_FLAGS) $< -o $@ $(BUILD)/san/liblamina.a $(filter-out $(CUDA_LIBS),$(LDLIBS)) $(SPM_LIBS) -lcmocka

# Debian packages, by purpose; each target installs only what is missing.
# deps: building and running lamina (the demo corpus is Debian's fortunes).
# check-deps: the test and benchmark tools (cmocka, prove, the float64
# reference in PyTorch, h5py, plots, and Slurm for the job-script tests).
DEB_PKGS := build-essential pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools \
  libpapi-dev papi-tools libopenblas-dev libinih-dev libjansson-dev libutf8proc-dev libsentencepiece-dev fortunes fortunes-min fortunes-zh \
  manpages manpages-zh debian-reference-en debian-reference-zh-cn man-db python3
TEST_PKGS := libcmocka-dev perl python3-torch python3-h5py python3-numpy python3-matplotlib python3-sentencepiece slurm-wlm munge
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "make $@: installing $$missing"; \
	  SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	else echo "make $@: all packages present"; fi
endef
deps:
	$(call apt_install,$(DEB_PKGS))
check-deps: deps
	$(call apt_install,$(TEST_PKGS))

units: $(UNIT_BIN)
sans: $(SAN_BIN)

# The unit tests' TAP wrappers are generated into $(BUILD)/t
# (tests/gen_wrappers.sh); then every test, one after the other.
check: check-deps
	$(MAKE) all units sans $(if $(filter 1,$(CUDA)),gpu-tests)
	bash tests/gen_wrappers.sh $(BUILD)
	@mkdir -p $(BUILD) && touch $(BUILD)/.check.lock
	OMP_NUM_THREADS=1 prove -j2 -e bash --timer $(BUILD)/t/*.t tests/t/*.t

# The long randomised layout test (not part of `check`): tests/t/39-layouts.t
# on 40 seeds' shapes, each factorisation once with drawn ZeRO/sp/schedule,
# then every ZeRO x sp x schedule combination on the CI seeds and seed 3
# (8 layers: pp 8). LAYOUT_SEEDS=a,b,... picks other seeds for the first part.
LAYOUT_SEEDS ?= $(shell seq -s, 1 40)
check-long: check-deps all
	@mkdir -p $(BUILD) && touch $(BUILD)/.check.lock
	OMP_NUM_THREADS=1 LAMINA_CHECK_LONG=1 prove -e bash --timer tests/t/27-ckpt-write-faults.t tests/t/46-deck-sweep.t
	OMP_NUM_THREADS=1 LAYOUTS_SEEDS=$(LAYOUT_SEEDS) prove -e bash --timer tests/t/39-layouts.t
	OMP_NUM_THREADS=1 LAYOUTS_SEEDS=24,14,6,28,3 LAYOUTS_FULL=1 prove -e bash --timer tests/t/39-layouts.t

# GPU checks (a machine with an NVIDIA GPU, sm_80+): every kernel and the
# whole model against the CPU backend, training and checkpoints across them.
GPU_SRC := $(wildcard tests/gpu/test_*.c)
GPU_BIN := $(patsubst tests/gpu/%.c,$(BUILD)/gpu/%,$(GPU_SRC)) $(BUILD)/gpu/gpu_bench
$(BUILD)/gpu/%: tests/gpu/%.c $(wildcard tests/gpu/*.h) $(BUILD)/liblamina.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/liblamina.a $(LDLIBS)
$(BUILD)/gpu/gpu_bench: perf/gpu_bench.c $(BUILD)/liblamina.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/liblamina.a $(LDLIBS)
# The host AdamW against the memory bandwidth (perf/host_adamw_bench.sh).
$(BUILD)/perf/host_adamw_bench: perf/host_adamw_bench.c $(BUILD)/liblamina.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/liblamina.a $(LDLIBS)
# clean_doc's throughput on one core (perf/clean_bench.c).
$(BUILD)/perf/clean_bench: perf/clean_bench.c $(BUILD)/liblamina.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/liblamina.a $(LDLIBS)
# Exact and MinHash/LSH deduplication on one core over the fortunes corpora.
$(BUILD)/perf/dedup_bench: perf/dedup_bench.c $(BUILD)/liblamina.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/liblamina.a $(LDLIBS)
gpu-tests: all $(GPU_BIN)
check-gpu: check-deps
	@test "$(CUDA)" = 1 || { echo "make check-gpu: this build has no CUDA (nvcc not found or CUDA=0)"; exit 1; }
	$(MAKE) all gpu-tests
	prove -e bash --timer tests/gpu/*.t

check-unit: check-deps
	$(MAKE) all units sans
	bash tests/gen_wrappers.sh $(BUILD)
	prove -e bash $(BUILD)/t/*.t tests/t/05-layers.t

run: deps
	$(MAKE) all
	bash inputs/demo.sh

# The Colossal-LLaMA-2 path at small scale: a "released" model made here,
# vocabulary expansion, resize, warm-up, continued training, HF export.
llama-demo: deps
	$(MAKE) all
	bash inputs/llama_demo.sh

# The continual pre-training data path: cleaning, near-dedup, buckets, and
# the three-stage recipe with held-out bits per byte per category.
stages-demo: deps
	$(MAKE) all
	bash inputs/stages_demo.sh

# Evaluation sets from Debian text (inputs/EVALSETS.md): train, held-out and
# multiple-choice JSONL in $(EVALSETS_OUT); EVALSETS_ARGS passes options.
EVALSETS_OUT ?= out/evalsets
evalsets: deps
	/usr/bin/python3 inputs/evalsets.py --out $(EVALSETS_OUT) $(EVALSETS_ARGS)

# The Colossal-LLaMA-2 recipe end to end, measured: perf/RECIPE.md and its
# plots (inputs/recipe.sh; RECIPE_SCALE=tiny|small|large, default small;
# finished steps are kept in out/recipe/SCALE: RECIPE_ARGS="--from STEP").
recipe: check-deps
	$(MAKE) all
	bash inputs/recipe.sh $(RECIPE_ARGS)

bench: check-deps
	$(MAKE) all
	bash perf/bench_cpu.sh
	bash perf/bench_dp.sh
	bash perf/bench_tp.sh
	bash perf/bench_pp.sh
	bash perf/scaling_local.sh
	bash perf/plan_table.sh table
	bash perf/host_adamw_bench.sh
	$(MAKE) $(BUILD)/perf/clean_bench && $(BUILD)/perf/clean_bench $$(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort)
	OMP_NUM_THREADS=1 $(BUILD)/perf/dedup_bench
	bash perf/bench_prep.sh
	bash perf/bench_offload.sh
	bash perf/eval_bench.sh

install: all
	install -D -m 755 $(BUILD)/lamina $(PREFIX)/bin/lamina

clean:
	rm -rf $(BUILD)
