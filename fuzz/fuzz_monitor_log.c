/*
 * libFuzzer target for the monitor log reader: arbitrary bytes as a log,
 * through memfit_analysis_open_stream(), the text and JSON reports and the
 * SVG chart. Anything but a clean status or a crash-free failure is a bug;
 * so is a leak (ASan checks at exit).
 */
#include <stdint.h>
#include <stdio.h>

#include "memfit/memfit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (!sink)
        sink = fopen("/dev/null", "w");
    if (size == 0 || !sink)
        return 0; /* fmemopen refuses an empty buffer */
    FILE *f = fmemopen((void *)data, size, "r");
    if (!f)
        return 0;
    struct memfit_analyze_options o = memfit_analyze_options_default();
    o.all_runs = size % 2 == 0;
    memfit_analysis *a = NULL;
    enum memfit_status st = memfit_analysis_open_stream(f, "fuzz", &o, &a);
    fclose(f);
    if (st != MEMFIT_OK)
        return 0;
    memfit_analysis_write_report(a, sink);
    memfit_analysis_write_json(a, sink);
    char *svg = NULL;
    size_t len = 0;
    if (memfit_plot_svg(a, NULL, &svg, &len) == MEMFIT_OK)
        memfit_free(svg);
    memfit_analysis_close(a);
    return 0;
}
