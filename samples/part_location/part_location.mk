# samples/part_location/part_location.mk - seed 001 (Part Location). The main Makefile includes it; it
# also works alone: make -f samples/part_location/part_location.mk part-location-demo
#
#   make part-location          build gen_data, part_location and the DINOv2 test driver
#   make part-location-cuda     build part_location_cuda: the same program with -DNN_CUDA, linked with
#                               build/nn_cuda.o and cuBLAS (needs nvcc; training.device: auto picks the GPU)
#   make part-location-demo     generate data, train the tiny config on the CPU (~3.5 min on 2 cores),
#                               evaluate on the test split, infer one pair (prints the JSON)
#   make test-part-location     tests/test_part_location.sh (small end-to-end: loss, resume, eval, infer)
#   make check-dinov2-hf        tests/check_dinov2_hf.py: our encoder vs transformers' Dinov2Model
#
# OpenMP threads spin only briefly (GOMP_SPINCOUNT=3000) before they sleep. With more runnable threads than
# cores (a shared 2-core machine), GOMP's default spinning made a training step ~20x slower (7 s vs 0.35 s
# measured); waiting passively (OMP_WAIT_POLICY=passive, no spinning) avoids that but wakes the threads so
# late that 2 threads ran the tiny config no faster than 1 (11.8 it/s). A short spin gives 15.5 it/s on an
# idle machine and the same as passive beside two busy processes (6.5 vs 6.4 it/s) (README, 2026-12-06).

ifndef KIT_CFLAGS
include samples/kit/kit.mk
endif

# used alone (make -f ...), the CUDA settings and build/nn_cuda.o's rule that the main Makefile has
ifndef CUDA_LDLIBS
NVCC        ?= nvcc
CUDA_GENCODE = -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS   ?= -O3 -std=c++17 --threads 0 -Xcompiler -Wall,-Wextra -I.
CUDA_LIBDIR ?= $(abspath $(dir $(shell command -v $(NVCC) 2>/dev/null))../lib64)
CUDA_LDLIBS  = -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublas -lcublasLt -lcudart -lstdc++ -lm
build/nn_cuda.o: nn_cuda.cu nn.h
	@mkdir -p build
	$(NVCC) $(NVCCFLAGS) $(CUDA_GENCODE) -c $< -o $@
endif

PL_DIR     = samples/part_location
PL_BUILD   = build/part_location
PL_CC     ?= $(CC)
PL_CFLAGS  = -std=c99 -Wall -Wextra -Wpedantic -O3 -march=native -fopenmp -D_POSIX_C_SOURCE=200809L -Isamples/kit -I.
PL_LIBS    = -lyaml -lstb -lm -pthread
PL_DEPS    = nn.h $(wildcard models/*.h) $(wildcard samples/kit/*.h)
PL_ENV     = GOMP_SPINCOUNT=$${GOMP_SPINCOUNT:-3000}
# the program the demo runs; `make demo` passes part_location_cuda when there is a GPU
PL_DEMO_BIN ?= $(PL_BUILD)/part_location

.PHONY: part-location part-location-cuda part-location-demo test-part-location check-dinov2-hf

$(PL_BUILD)/gen_data: $(PL_DIR)/gen_data.c $(wildcard samples/kit/*.h)
	@mkdir -p $(PL_BUILD)
	$(PL_CC) $(PL_CFLAGS) $< -o $@ $(PL_LIBS)

$(PL_BUILD)/part_location: $(PL_DIR)/part_location.c $(PL_DEPS)
	@mkdir -p $(PL_BUILD)
	$(PL_CC) $(PL_CFLAGS) $< -o $@ $(PL_LIBS)

$(PL_BUILD)/part_location_cuda: $(PL_DIR)/part_location.c $(PL_DEPS) build/nn_cuda.o
	@mkdir -p $(PL_BUILD)
	$(PL_CC) $(PL_CFLAGS) -DNN_CUDA $< build/nn_cuda.o -o $@ $(PL_LIBS) $(CUDA_LDLIBS)

part-location-cuda: $(PL_BUILD)/gen_data $(PL_BUILD)/part_location_cuda

$(PL_BUILD)/dinov2_forward: tests/dinov2_forward.c $(PL_DEPS)
	@mkdir -p $(PL_BUILD)
	$(PL_CC) $(PL_CFLAGS) $< -o $@ $(PL_LIBS)

part-location: $(PL_BUILD)/gen_data $(PL_BUILD)/part_location $(PL_BUILD)/dinov2_forward

# the demo's data set; data/gen_args records the arguments it was made with (made again when they change)
PL_GEN_ARGS = --models 6000 --size 112 --seed 1 --min-visible 0.5

part-location-demo: $(PL_BUILD)/gen_data $(PL_DEMO_BIN)
	@if [ "$$(cat $(PL_BUILD)/data/gen_args 2>/dev/null)" != "$(PL_GEN_ARGS)" ]; then \
	  rm -rf $(PL_BUILD)/data && $(PL_BUILD)/gen_data --out $(PL_BUILD)/data/images $(PL_GEN_ARGS) && \
	  echo "$(PL_GEN_ARGS)" > $(PL_BUILD)/data/gen_args; fi
	rm -rf $(PL_BUILD)/run_tiny
	$(PL_ENV) $(PL_DEMO_BIN) train --config configs/part_location_tiny.yaml
	$(PL_ENV) $(PL_DEMO_BIN) eval --checkpoint $(PL_BUILD)/run_tiny/best_model.safetensors --split test
	@echo "infer model0000-whole.png + model0000-$$(ls $(PL_BUILD)/data/images/model0000 | grep json | head -1 | sed 's/^model0000-//; s/.json$$//').png:"
	@p=$$(ls $(PL_BUILD)/data/images/model0000/*.json | head -1); \
	$(PL_ENV) $(PL_DEMO_BIN) infer --checkpoint $(PL_BUILD)/run_tiny/best_model.safetensors \
	  --whole $(PL_BUILD)/data/images/model0000/model0000-whole.png --part $${p%.json}.png; \
	echo "label:"; grep -E '"(translation|scale)"' $$p
	@echo "TensorBoard logs: $(PL_BUILD)/run_tiny/tb   loss plot: $(PL_BUILD)/run_tiny/loss.png"

test-part-location: $(PL_BUILD)/gen_data $(PL_BUILD)/part_location
	@$(PL_ENV) sh tests/test_part_location.sh $(PL_BUILD)

check-dinov2-hf: $(PL_BUILD)/dinov2_forward
	@$(PL_ENV) python3 tests/check_dinov2_hf.py --bin $(PL_BUILD)/dinov2_forward
