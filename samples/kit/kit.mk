# samples/kit/kit.mk - build and test the samples' training kit. The main Makefile does `include
# samples/kit/kit.mk`; it also works alone: make -f samples/kit/kit.mk test-kit
#
#   make test-kit          build tests/kit_*.c and run them with tests/kit_run.sh (C tests, then the
#                          tensorboard reader check); the last line is the summed "N passed, M failed"
#   make test-kit SAN=1    the same under AddressSanitizer + UBSan (binaries in build/kit-san)
#   make kit-deps          install libyaml-dev, libstb-dev (apt, as root) and tensorboard, pillow, numpy, pyyaml (pip)
#
# Samples that use the kit compile with $(KIT_CFLAGS) and link with $(KIT_LDLIBS).

KIT_DIR      := samples/kit
KIT_CFLAGS   := -D_POSIX_C_SOURCE=200809L -I$(KIT_DIR)
KIT_LDLIBS   := -lyaml -lstb -lm -pthread
KIT_WARN     := -std=c99 -Wall -Wextra -Wpedantic -Werror -O2 -pthread
ifeq ($(SAN),1)
KIT_WARN     += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
KIT_BUILD    := build/kit-san
else
KIT_BUILD    := build/kit
endif
KIT_CC       ?= $(CC)
KIT_PYTHON   ?= python3
KIT_HEADERS  := $(wildcard $(KIT_DIR)/*.h)
KIT_TESTS    := $(patsubst tests/%.c,$(KIT_BUILD)/%,$(wildcard tests/kit_*.c))
KIT_APT      := libyaml-dev libstb-dev

.PHONY: test-kit kit-deps kit-clean

$(KIT_BUILD)/kit_%: tests/kit_%.c $(KIT_HEADERS) tests/test.h
	@mkdir -p $(KIT_BUILD)
	$(KIT_CC) $(KIT_WARN) $(KIT_CFLAGS) -Itests $< -o $@ $(KIT_LDLIBS)

# The whole kit's implementation as the first include of a file, as kit.h asks: as C99 without $(KIT_CFLAGS)
# (kit_base.h must set the POSIX feature macro itself) and as C++; a warning fails test-kit.
$(KIT_BUILD)/kit_hygiene.stamp: $(KIT_HEADERS)
	@mkdir -p $(KIT_BUILD)
	@printf '#define KIT_IMPLEMENTATION\n#include "kit.h"\n' | $(KIT_CC) $(KIT_WARN) -I$(KIT_DIR) -fsyntax-only -x c -
	@printf '#define KIT_IMPLEMENTATION\n#include "kit.h"\n' | $(CXX) -Wall -Wextra -Wpedantic -Werror -I$(KIT_DIR) -fsyntax-only -x c++ -
	@touch $@

test-kit: $(KIT_TESTS) $(KIT_BUILD)/kit_hygiene.stamp
	@KIT_PYTHON=$(KIT_PYTHON) sh tests/kit_run.sh $(KIT_TESTS)

# Installs what is missing, or prints the command to run when it cannot (not root, no apt-get).
kit-deps:
	@missing=""; \
	[ -f /usr/include/yaml.h ] || missing="$$missing libyaml-dev"; \
	[ -f /usr/include/stb/stb_image.h ] || missing="$$missing libstb-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "apt-get install -y$$missing"; apt-get install -y $$missing || \
	      { apt-get update && apt-get install -y $$missing; }; \
	  else echo "kit-deps: please run: sudo apt-get install -y$$missing"; fi; \
	fi; \
	pmissing=""; \
	for m in tensorboard:tensorboard pillow:PIL numpy:numpy pyyaml:yaml; do \
	  $(KIT_PYTHON) -c "import $${m#*:}" 2>/dev/null || pmissing="$$pmissing $${m%%:*}"; \
	done; \
	if [ -n "$$pmissing" ]; then \
	  echo "$(KIT_PYTHON) -m pip install -q$$pmissing"; \
	  $(KIT_PYTHON) -m pip install -q $$pmissing || echo "kit-deps: please run: $(KIT_PYTHON) -m pip install$$pmissing"; \
	fi

kit-clean:
	rm -rf build/kit build/kit-san
