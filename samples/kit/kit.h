/* kit.h - the training kit shared by the sample programs (issue 8): everything around the model.

     kit_config.h    YAML configs with a declared schema, --set overrides, clear errors   (libyaml)
     kit_tblog.h     TensorBoard event files: scalars, PNG images, text
     kit_progress.h  progress bar on a terminal, plain lines in logs, a summary per epoch
     kit_image.h     PNG/JPEG load and PNG write, Pillow-exact resize, ImageNet normalisation,
                     torchvision colour jitter                                            (stb_image)
     kit_loader.h    datasets, seeded shuffling, batching with padding masks, worker threads (pthreads)
     kit_plot.h      PNG line charts of loss curves with a built-in bitmap font
     kit_base.h      error reporting (kit_err) and the seeded generator (kit_rng) they share

   Use: include kit.h (or only the headers you need) anywhere; in exactly one .c file write
       #define KIT_IMPLEMENTATION
       #include "kit.h"
   as the first include of that file (the implementation asks for POSIX declarations; compiling with
   $(KIT_CFLAGS) from samples/kit/kit.mk, which defines _POSIX_C_SOURCE, lifts that ordering rule).
   Link with $(KIT_LDLIBS): -lyaml -lstb -lm -pthread. C99; independent of nn.h. */
/* No include guard here on purpose: each header guards its declarations itself, and a later include
   with KIT_IMPLEMENTATION defined must still reach the implementation sections. */
#include "kit_base.h"
#include "kit_config.h"
#include "kit_tblog.h"
#include "kit_progress.h"
#include "kit_image.h"
#include "kit_loader.h"
#include "kit_plot.h"
