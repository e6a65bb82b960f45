# samples/mesh_seg/mesh_seg.mk - seed 000, movable-part segmentation. Included by the main Makefile
# (with samples/kit/kit.mk, whose KIT_CFLAGS / KIT_LDLIBS it uses, in either order); alone:
#   make -f samples/kit/kit.mk -f samples/mesh_seg/mesh_seg.mk mesh_seg
#
#   make mesh_seg         build/mesh_seg/{gen_data,mesh_seg}
#   make mesh-seg-cuda    build/mesh_seg/mesh_seg_cuda: the same program with nn.h's CUDA backend (nvcc; from the
#                         main Makefile, which builds build/nn_cuda.o); training.device=auto then picks the GPU
#   make mesh-seg-demo    a tiny data set, the tiny config trained ~75 s on the CPU, eval: about 2 minutes
#   make test-mesh-seg    tests/test_mesh_seg.sh (end to end: loss falls, resume, infer's .npy/.ply)

MESH_SEG_DIR    := samples/mesh_seg
MESH_SEG_BUILD  := build/mesh_seg
MESH_SEG_CFLAGS  = -std=c99 -Wall -Wextra -Wpedantic -O3 -march=native -fopenmp -I. -Imodels $(KIT_CFLAGS)
MESH_SEG_LIBS    = $(KIT_LDLIBS) -lm -pthread
MESH_SEG_DEPS   := nn.h models/mesh_seg.h models/mesh_attn.h models/common.h

.PHONY: mesh_seg mesh-seg-cuda mesh-seg-demo test-mesh-seg

mesh_seg: $(MESH_SEG_BUILD)/gen_data $(MESH_SEG_BUILD)/mesh_seg

$(MESH_SEG_BUILD)/gen_data: $(MESH_SEG_DIR)/gen_data.c $(MESH_SEG_DEPS)
	@mkdir -p $(MESH_SEG_BUILD)
	$(CC) $(MESH_SEG_CFLAGS) $< -o $@ $(MESH_SEG_LIBS)

$(MESH_SEG_BUILD)/mesh_seg: $(MESH_SEG_DIR)/mesh_seg.c $(MESH_SEG_DEPS) $(wildcard samples/kit/*.h)
	@mkdir -p $(MESH_SEG_BUILD)
	$(CC) $(MESH_SEG_CFLAGS) $< -o $@ $(MESH_SEG_LIBS)

mesh-seg-cuda: $(MESH_SEG_BUILD)/gen_data $(MESH_SEG_BUILD)/mesh_seg_cuda

$(MESH_SEG_BUILD)/mesh_seg_cuda: $(MESH_SEG_DIR)/mesh_seg.c $(MESH_SEG_DEPS) $(wildcard samples/kit/*.h) $(BUILD)/nn_cuda.o
	@mkdir -p $(MESH_SEG_BUILD)
	$(CC) $(MESH_SEG_CFLAGS) -DNN_CUDA $< $(BUILD)/nn_cuda.o -o $@ $(MESH_SEG_LIBS) $(CUDA_LDLIBS)

mesh-seg-demo: mesh_seg
	$(MESH_SEG_BUILD)/gen_data --out $(MESH_SEG_BUILD)/demo_data --train 10 --val 5 --min-faces 2000 --max-faces 4000 --seed 1
	$(MESH_SEG_BUILD)/mesh_seg train --config configs/mesh_seg_tiny.yaml
	$(MESH_SEG_BUILD)/mesh_seg eval --config configs/mesh_seg_tiny.yaml

test-mesh-seg: mesh_seg
	@sh tests/test_mesh_seg.sh $(MESH_SEG_BUILD)
