/* the wip/ fragments are included by nn.h itself now */
