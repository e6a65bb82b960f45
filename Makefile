# nn.h - build, test and benchmark.   make test | make demo | make test-asan | make bench | make deps
#
# nn.h needs nothing but a C compiler; the samples' kit needs libyaml and libstb, the tests PyTorch-free
# Python (tensorboard, numpy, safetensors, pillow) for cross-checks: `make deps` installs them when it can.

CC      ?= gcc
CXX     ?= g++
NVCC    ?= nvcc
WARN     = -std=c99 -Wall -Wextra -Wpedantic -Werror
WARN_T   = -std=c99 -Wall -Wextra -Wpedantic   # test programs: warnings shown, not fatal (nn.h itself: see hygiene)
OPT      = -O3 -march=native
OMP      = -fopenmp
CFLAGS_T = $(WARN_T) $(OPT) $(OMP) -I. -Itests $(WIPFLAGS)
WIPFLAGS =
SANFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDLIBS   = -lm
BUILD   ?= build

# every C test program: tests/<name>.c -> $(BUILD)/<name>
CORE_TESTS = test_core test_conv test_index_loss gemm_test test_train test_io test_seed_blocks test_sdpa test_amp test_mesh_seg_parity
TEST_BINS  = $(CORE_TESTS:%=$(BUILD)/%)
ASAN_BINS  = $(CORE_TESTS:%=$(BUILD)/asan/%)

HAVE_NVCC := $(shell command -v $(NVCC) >/dev/null 2>&1 && echo 1)

.PHONY: all test test-fast test-asan hygiene deps bench clean cuda-build test-cuda bench-cuda demo

# ---- CUDA: nn_cuda.cu for sm_80, sm_90 and sm_90a (the wgmma kernels; + sm_90 PTX); programs built with -DNN_CUDA
# link it and cuBLAS.
# CI has nvcc but no GPU: `make test` builds (cuda-build) and counts that as one test; `make test-cuda` runs
# the GPU-vs-CPU suite on a machine with a GPU.
CUDA_GENCODE = -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90,code=compute_90
NVCCFLAGS   ?= -O3 -std=c++17 --threads 0 -Xcompiler -Wall,-Wextra -I.
CUDA_LIBDIR ?= $(abspath $(dir $(shell command -v $(NVCC) 2>/dev/null))../lib64)
CUDA_LDLIBS  = -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublas -lcublasLt -lcudart -lstdc++ -lm
CUDA_BINS    = $(BUILD)/test_cuda $(BUILD)/test_amp_cuda $(BUILD)/cuda_bench $(BUILD)/flash_bench $(BUILD)/vit_train_bench_cuda

$(BUILD)/nn_cuda.o: nn_cuda.cu nn.h
	@mkdir -p $(BUILD)
	$(NVCC) $(NVCCFLAGS) $(CUDA_GENCODE) -c $< -o $@

$(BUILD)/test_cuda: tests/test_cuda.c nn.h tests/test.h $(BUILD)/nn_cuda.o
	$(CC) $(CFLAGS_T) -DNN_CUDA $< $(BUILD)/nn_cuda.o -o $@ $(CUDA_LDLIBS)

# tests/test_amp.c's checkpoint, memory and training sections on the GPU (AMP_DEVICE=cuda)
$(BUILD)/test_amp_cuda: tests/test_amp.c nn.h tests/test.h $(BUILD)/nn_cuda.o
	$(CC) $(CFLAGS_T) -DNN_CUDA $< $(BUILD)/nn_cuda.o -o $@ $(CUDA_LDLIBS)

$(BUILD)/vit_train_bench_cuda: bench/vit_train_bench.c nn.h models/dinov2.h models/part_location.h $(BUILD)/nn_cuda.o
	$(CC) $(CFLAGS_T) -DNN_CUDA $< $(BUILD)/nn_cuda.o -o $@ $(CUDA_LDLIBS)

$(BUILD)/cuda_bench: bench/cuda_bench.c nn.h $(BUILD)/nn_cuda.o
	$(CC) $(CFLAGS_T) -DNN_CUDA $< $(BUILD)/nn_cuda.o -o $@ $(CUDA_LDLIBS)

$(BUILD)/flash_bench: bench/flash_bench.c nn.h $(BUILD)/nn_cuda.o
	$(CC) $(CFLAGS_T) -DNN_CUDA $< $(BUILD)/nn_cuda.o -o $@ $(CUDA_LDLIBS)

cuda-build: $(CUDA_BINS)
	@echo "1 passed, 0 failed"

test-cuda: $(BUILD)/test_cuda $(BUILD)/test_amp_cuda
	@tests/run.sh $(BUILD)/test_cuda "AMP_DEVICE=cuda AMP_ONLY=cde $(BUILD)/test_amp_cuda"

bench-cuda: $(BUILD)/cuda_bench
	$(BUILD)/cuda_bench
all: $(TEST_BINS)

$(BUILD)/%: tests/%.c nn.h $(wildcard models/*.h) tests/test.h tests/gradcheck.h tests/fixture.h tests/expect_error.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_T) $< -o $@ $(LDLIBS)

$(BUILD)/asan/%: tests/%.c nn.h $(wildcard models/*.h) tests/test.h tests/gradcheck.h tests/fixture.h tests/expect_error.h
	@mkdir -p $(BUILD)/asan
	$(CC) $(WARN_T) $(SANFLAGS) $(OMP) -I. -Itests $(WIPFLAGS) $< -o $@ $(LDLIBS)

# nn.h alone must compile warning-free as C99 under gcc and clang (at -O2: the optimiser's warnings too), and as C++
hygiene:
	@fail=0; for cc in gcc clang; do command -v $$cc >/dev/null || continue; \
	  printf '#define NN_IMPLEMENTATION\n#include "nn.h"\n' | $$cc $(WARN) -O2 -c -o /dev/null -I. -x c - || fail=1; \
	  printf '#define NN_IMPLEMENTATION\n#include "nn.h"\n' | $$cc $(WARN) -fopenmp -fsyntax-only -I. -x c - 2>/dev/null || \
	    { [ $$cc = clang ] || fail=1; }; done; \
	printf '#define NN_IMPLEMENTATION\n#include "nn.h"\n' | $(CXX) -Wall -Wextra -Werror -fsyntax-only -I. -x c++ - || fail=1; \
	if [ $$fail = 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; exit 1; fi

# the whole suite: build hygiene, every test at -O3, and again under AddressSanitizer + UBSan
test: $(TEST_BINS) $(ASAN_BINS)
	@OMP_WAIT_POLICY=passive ASAN_OPTIONS=detect_leaks=1 tests/run.sh "$(MAKE) -s hygiene" tests/readme_example.sh $(TEST_BINS) "python3 tests/check_io.py build/test_io_out" $(ASAN_BINS) \
	  "$(MAKE) -s test-kit" "$(MAKE) -s test-kit SAN=1" \
	  "$(MAKE) -s part-location >/dev/null && sh tests/test_part_location.sh build/part_location" \
	  "$(MAKE) -s mesh_seg >/dev/null && sh tests/test_mesh_seg.sh build/mesh_seg" $(if $(HAVE_NVCC),"$(MAKE) -s cuda-build")

test-fast: $(TEST_BINS)
	@tests/run.sh $(TEST_BINS)

test-asan: $(ASAN_BINS)
	@ASAN_OPTIONS=detect_leaks=1 tests/run.sh $(ASAN_BINS)

deps: kit-deps
	@need=""; \
	[ -f /usr/include/yaml.h ] || need="$$need libyaml-dev"; \
	[ -f /usr/include/stb/stb_image.h ] || need="$$need libstb-dev"; \
	command -v clang >/dev/null || need="$$need clang"; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	  else echo "please run: sudo apt-get install -y$$need"; fi; fi
	@python3 -c "import numpy, safetensors, tensorboard, PIL, yaml" 2>/dev/null || \
	  python3 -m pip install -q numpy safetensors tensorboard pillow pyyaml || \
	  echo "please run: python3 -m pip install numpy safetensors tensorboard pillow pyyaml"

# The demo (README): seed 001's part_location end to end on generated data: training with a progress bar,
# the test-split evaluation, one inference printed as JSON, TensorBoard logs and a loss plot. On the GPU when
# nvcc is installed and nvidia-smi sees a GPU (the same program built with -DNN_CUDA), else on the CPU.
demo: deps
	@if command -v $(NVCC) >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory part-location-demo PL_DEMO_BIN=$(PL_BUILD)/part_location_cuda; \
	else $(MAKE) --no-print-directory part-location-demo; fi

# loss curves from a "series,x,y" CSV to PNG with the kit's plotter (bench/plot_csv.c)
$(BUILD)/plot_csv: bench/plot_csv.c samples/kit/kit_plot.h samples/kit/kit_image.h
	@mkdir -p $(BUILD)
	$(CC) -std=c99 -Wall -Wextra -Wpedantic -O2 -D_POSIX_C_SOURCE=200809L -Isamples/kit $< -o $@ -lstb -lm

clean:
	rm -rf $(BUILD)

include samples/kit/kit.mk
include samples/part_location/part_location.mk
include samples/mesh_seg/mesh_seg.mk
