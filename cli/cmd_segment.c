/*
 * `memfit segment MODEL IMAGE`: SAM masks of an image, from prompts (points,
 * a box) or automatic. MODEL goes through the engines and the manager as in
 * `serve` (the cache, the `quantize` copy, the budget and its refusals).
 * Results: a summary (default), JSON records (--json), mask and overlay
 * PNGs (--out), and numpy files of the raw outputs (--dump) for comparing
 * numbers with another implementation.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "embed_common.h"
#include "engines_common.h"

const char cmd_segment_help[] =
    "Usage: memfit segment MODEL IMAGE [options]\n"
    "\n"
    "Segments a JPEG/PNG image with a SAM model (segment-anything v1 ViT-B/L/H:\n"
    "the original sam_vit_*.pth, transformers' facebook/sam-vit-* files, or a\n"
    "memfit GGUF; F32, F16, Q8_0, Q4_0, ...). With prompts it prints the masks\n"
    "of that prompt; with --auto, every mask the automatic mask generator finds\n"
    "(the reference's parameters and defaults). The model is loaded through the\n"
    "model manager within the memory budget; MODEL is a path, a source URI\n"
    "(s3://, https://, hf://ORG/REPO/PATH) or a manifest model's name.\n"
    "\n"
    "Prompts (image pixels, x right, y down):\n"
    "  --point X,Y[,LABEL]    a point; LABEL 1 foreground (default) or 0 background\n"
    "                         (repeat for more points)\n"
    "  --box X0,Y0,X1,Y1      a box\n"
    "  --multimask            three masks rather than one (the reference's\n"
    "                         multimask_output; the default for a single point)\n"
    "  --single               one mask (the default with a box or several points)\n"
    "\n"
    "Automatic masks:\n"
    "  --auto                 run the automatic mask generator\n"
    "  --points-per-side N    default 32\n"
    "  --points-per-batch N|auto\n"
    "                         prompts decoded per batch (default: the model's plan,\n"
    "                         16; auto: the largest the budget allows)\n"
    "  --pred-iou-thresh F    default 0.88\n"
    "  --stability-score-thresh F   default 0.95\n"
    "  --stability-score-offset F   default 1.0\n"
    "  --box-nms-thresh F     default 0.7\n"
    "  --crop-n-layers N      default 0\n"
    "  --crop-nms-thresh F    default 0.7\n"
    "  --crop-overlap-ratio F default 512/1500\n"
    "  --crop-n-points-downscale-factor N   default 1\n"
    "  --min-mask-region-area N   default 0\n"
    "  --output-mode MODE     binary_mask (default), uncompressed_rle or coco_rle:\n"
    "                         how --json writes each segmentation\n"
    "\n"
    "Output:\n"
    "  --json                 the records as JSON (the reference's fields:\n"
    "                         segmentation, area, bbox, predicted_iou, point_coords,\n"
    "                         stability_score, crop_box)\n"
    "  --out DIR              mask_N.png for each mask and overlay.png (the masks\n"
    "                         coloured over the image)\n"
    "  --dump DIR             image_embeddings.npy (float32 1 x C x G x G) and, for\n"
    "                         prompts, low_res_masks.npy (1 x M x 4G x 4G) and\n"
    "                         iou_predictions.npy (1 x M)\n"
    "  --stats                the budget, timings, peak memory and the plan on stderr\n"
    "\n"
    "Model and memory:\n"
    "  --manifest FILE        the manifest to look NAME up in (default ./memfit.yaml)\n"
    "  --budget SIZE          the memory budget (default: MEMFIT_MAX_MEMORY_MB, else the\n"
    "                         manifest's, else 80% of the memory limit)\n"
    "  --threads N            threads (default: the CPUs this process may use)\n"
    "  -h, --help\n";

enum output_mode { OUT_BINARY, OUT_RLE, OUT_COCO };

struct seg_opts {
    const char *model, *image, *manifest, *budget_text, *out_dir, *dump_dir;
    uint64_t budget;
    bool json, stats, multimask_set, multimask;
    enum output_mode mode;
    struct memfit_segment_params p;
    float *points;
    int32_t *labels;
    char option_text[48];
    const char *options[1];
    size_t n_options;
};

/* "X,Y[,LABEL]" or "X0,Y0,X1,Y1": n_min..n_max numbers. */
static int parse_numbers(const char *flag, const char *text, double *v, int n_min, int n_max)
{
    int n = 0;
    const char *p = text;
    while (n < n_max) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x))
            break;
        v[n++] = x;
        if (*end == '\0')
            return n >= n_min ? n : -1;
        if (*end != ',')
            break;
        p = end + 1;
    }
    cli_usage("segment", "%s '%s': expected %d%s numbers separated by commas", flag, text, n_min,
              n_min == n_max ? "" : " or more");
    return -1;
}

static bool amg_float(const char *flag, const char *v, double min, double max, double *out)
{
    float x;
    if (!cli_opt_float("segment", flag, v, min, max, &x))
        return false;
    *out = x;
    return true;
}

enum {
    OPT_JSON = 1,
    OPT_STATS,
    OPT_AUTO,
    OPT_MULTIMASK,
    OPT_SINGLE,
    OPT_POINT,
    OPT_BOX,
    OPT_POINTS_PER_SIDE,
    OPT_POINTS_PER_BATCH,
    OPT_PRED_IOU_THRESH,
    OPT_STABILITY_SCORE_THRESH,
    OPT_STABILITY_SCORE_OFFSET,
    OPT_BOX_NMS_THRESH,
    OPT_CROP_N_LAYERS,
    OPT_CROP_NMS_THRESH,
    OPT_CROP_OVERLAP_RATIO,
    OPT_CROP_N_POINTS_DOWNSCALE_FACTOR,
    OPT_MIN_MASK_REGION_AREA,
    OPT_OUTPUT_MODE,
    OPT_OUT,
    OPT_DUMP,
    OPT_MANIFEST,
    OPT_BUDGET,
    OPT_THREADS,
};

static const struct cli_option options[] = {
    {"json", 0, CLI_ARG_NONE, OPT_JSON},
    {"stats", 0, CLI_ARG_NONE, OPT_STATS},
    {"auto", 0, CLI_ARG_NONE, OPT_AUTO},
    {"multimask", 0, CLI_ARG_NONE, OPT_MULTIMASK},
    {"single", 0, CLI_ARG_NONE, OPT_SINGLE},
    {"point", 0, CLI_ARG_REQUIRED, OPT_POINT},
    {"box", 0, CLI_ARG_REQUIRED, OPT_BOX},
    {"points-per-side", 0, CLI_ARG_REQUIRED, OPT_POINTS_PER_SIDE},
    {"points-per-batch", 0, CLI_ARG_REQUIRED, OPT_POINTS_PER_BATCH},
    {"pred-iou-thresh", 0, CLI_ARG_REQUIRED, OPT_PRED_IOU_THRESH},
    {"stability-score-thresh", 0, CLI_ARG_REQUIRED, OPT_STABILITY_SCORE_THRESH},
    {"stability-score-offset", 0, CLI_ARG_REQUIRED, OPT_STABILITY_SCORE_OFFSET},
    {"box-nms-thresh", 0, CLI_ARG_REQUIRED, OPT_BOX_NMS_THRESH},
    {"crop-n-layers", 0, CLI_ARG_REQUIRED, OPT_CROP_N_LAYERS},
    {"crop-nms-thresh", 0, CLI_ARG_REQUIRED, OPT_CROP_NMS_THRESH},
    {"crop-overlap-ratio", 0, CLI_ARG_REQUIRED, OPT_CROP_OVERLAP_RATIO},
    {"crop-n-points-downscale-factor", 0, CLI_ARG_REQUIRED, OPT_CROP_N_POINTS_DOWNSCALE_FACTOR},
    {"min-mask-region-area", 0, CLI_ARG_REQUIRED, OPT_MIN_MASK_REGION_AREA},
    {"output-mode", 0, CLI_ARG_REQUIRED, OPT_OUTPUT_MODE},
    {"out", 0, CLI_ARG_REQUIRED, OPT_OUT},
    {"dump", 0, CLI_ARG_REQUIRED, OPT_DUMP},
    {"manifest", 0, CLI_ARG_REQUIRED, OPT_MANIFEST},
    {"budget", 0, CLI_ARG_REQUIRED, OPT_BUDGET},
    {"threads", 0, CLI_ARG_REQUIRED, OPT_THREADS},
    {0},
};

/* --point X,Y[,LABEL] */
static int add_point(struct seg_opts *o, const char *v, size_t *n_points)
{
    double xyz[3] = {0, 0, 1};
    int k = parse_numbers("--point", v, xyz, 2, 3);
    if (k < 0)
        return CLI_EXIT_USAGE;
    if (k == 3 && xyz[2] != 0 && xyz[2] != 1)
        return cli_usage("segment", "--point '%s': the label is 1 (foreground) or 0 (background)",
                         v);
    o->points[2 * *n_points] = (float)xyz[0];
    o->points[2 * *n_points + 1] = (float)xyz[1];
    o->labels[(*n_points)++] = (int32_t)xyz[2];
    return CLI_EXIT_OK;
}

/* One option of the automatic mask generator (--points-per-side ... --min-mask-region-area). */
static bool amg_option(int id, const char *f, const char *v, struct seg_opts *o)
{
    struct memfit_sam_amg_params *a = &o->p.amg;
    long long n = 0;
    switch (id) {
    case OPT_POINTS_PER_SIDE:
        if (!cli_opt_int("segment", f, v, 1, 1024, &n))
            return false;
        a->points_per_side = (uint32_t)n;
        return true;
    case OPT_POINTS_PER_BATCH:
        if (strcmp(v, "auto") == 0) {
            o->p.batch_auto = true;
            return true;
        }
        if (!cli_opt_int("segment", f, v, 1, 1 << 20, &n))
            return false;
        a->points_per_batch = (uint32_t)n;
        return true;
    case OPT_PRED_IOU_THRESH:
        return amg_float(f, v, -1e9, 1e9, &a->pred_iou_thresh);
    case OPT_STABILITY_SCORE_THRESH:
        return amg_float(f, v, -1e9, 1e9, &a->stability_score_thresh);
    case OPT_STABILITY_SCORE_OFFSET:
        return amg_float(f, v, -1e9, 1e9, &a->stability_score_offset);
    case OPT_BOX_NMS_THRESH:
        return amg_float(f, v, 0, 1, &a->box_nms_thresh);
    case OPT_CROP_N_LAYERS:
        if (!cli_opt_int("segment", f, v, 0, 8, &n))
            return false;
        a->crop_n_layers = (uint32_t)n;
        return true;
    case OPT_CROP_NMS_THRESH:
        return amg_float(f, v, 0, 1, &a->crop_nms_thresh);
    case OPT_CROP_OVERLAP_RATIO:
        return amg_float(f, v, 0, 1, &a->crop_overlap_ratio);
    case OPT_CROP_N_POINTS_DOWNSCALE_FACTOR:
        if (!cli_opt_int("segment", f, v, 1, 1024, &n))
            return false;
        a->crop_n_points_downscale_factor = (uint32_t)n;
        return true;
    default: /* OPT_MIN_MASK_REGION_AREA */
        if (!cli_opt_int("segment", f, v, 0, 1LL << 40, &n))
            return false;
        a->min_mask_region_area = (uint64_t)n;
        return true;
    }
}

/* Returns -1 to go on, else the exit code (after the help or a usage error). */
static int parse_opts(int argc, char **argv, struct seg_opts *o)
{
    memfit_segment_params_default(&o->p);
    o->p.multimask = false;
    size_t n_points = 0;
    struct cli_args a;
    cli_args_init(&a, "segment", cmd_segment_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        const char *f = a.name, *v = a.value;
        long long n;
        switch (id) {
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_STATS:
            o->stats = true;
            break;
        case OPT_AUTO:
            o->p.automatic = true;
            break;
        case OPT_MULTIMASK:
        case OPT_SINGLE:
            o->multimask_set = true;
            o->multimask = id == OPT_MULTIMASK;
            break;
        case OPT_POINT:
            if (add_point(o, v, &n_points) != CLI_EXIT_OK)
                return CLI_EXIT_USAGE;
            break;
        case OPT_BOX: {
            double b[4];
            if (parse_numbers("--box", v, b, 4, 4) < 0)
                return CLI_EXIT_USAGE;
            o->p.has_box = true;
            for (int k = 0; k < 4; k++)
                o->p.box[k] = (float)b[k];
            break;
        }
        case OPT_OUTPUT_MODE:
            if (strcmp(v, "binary_mask") == 0)
                o->mode = OUT_BINARY;
            else if (strcmp(v, "uncompressed_rle") == 0)
                o->mode = OUT_RLE;
            else if (strcmp(v, "coco_rle") == 0)
                o->mode = OUT_COCO;
            else
                return cli_usage("segment",
                                 "--output-mode '%s': expected binary_mask, "
                                 "uncompressed_rle or coco_rle",
                                 v);
            break;
        case OPT_OUT:
            o->out_dir = v;
            break;
        case OPT_DUMP:
            o->dump_dir = v;
            break;
        case OPT_MANIFEST:
            o->manifest = v;
            break;
        case OPT_BUDGET:
            if (!cli_opt_size("segment", f, v, &o->budget))
                return CLI_EXIT_USAGE;
            o->budget_text = v;
            break;
        case OPT_THREADS:
            if (!cli_opt_int("segment", f, v, 0, 1024, &n))
                return CLI_EXIT_USAGE;
            if (n > 0 && !o->n_options) {
                snprintf(o->option_text, sizeof(o->option_text), "threads=%s", v);
                o->options[o->n_options++] = o->option_text;
            }
            break;
        default:
            if (!amg_option(id, f, v, o))
                return CLI_EXIT_USAGE;
        }
    }
    if (id < 0)
        return a.status;
    if (a.n_operands > 2)
        return cli_usage("segment", "one MODEL and one IMAGE (extra '%s')", a.operands[2]);
    o->model = cli_args_operand(&a, 0);
    o->image = cli_args_operand(&a, 1);
    if (!o->model || !o->image)
        return cli_usage("segment", "needs MODEL and IMAGE");
    o->p.n_points = n_points;
    o->p.points = n_points ? o->points : NULL;
    o->p.labels = n_points ? o->labels : NULL;
    if (o->p.automatic && (n_points || o->p.has_box))
        return cli_usage("segment", "--auto takes no --point or --box");
    if (!o->p.automatic && !n_points && !o->p.has_box)
        return cli_usage("segment", "give --point or --box, or --auto for automatic masks");
    /* The reference's advice: three masks for an ambiguous single point. */
    o->p.multimask = o->multimask_set ? o->multimask : (n_points == 1 && !o->p.has_box);
    o->p.want_low_res = o->dump_dir != NULL;
    o->p.want_embedding = o->dump_dir != NULL;
    return -1;
}

/* ---- Files ------------------------------------------------------------------------------ */

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return cli_fail("segment: cannot create %s: %s", dir, strerror(errno));
    return CLI_EXIT_OK;
}

/* Writes `len` bytes to dir/name through a temporary file renamed into place. */
static int write_file(const char *dir, const char *name, const void *head, size_t head_len,
                      const void *data, size_t len)
{
    char *path = memfit_asprintf("%s/%s", dir, name);
    char *tmp = memfit_asprintf("%s/.%s.tmp", dir, name);
    int rc = CLI_EXIT_OK;
    if (!path || !tmp) {
        rc = cli_fail_status(MEMFIT_E_NOMEM);
    } else {
        FILE *f = fopen(tmp, "wbe");
        bool ok = f && (head_len == 0 || fwrite(head, 1, head_len, f) == head_len) &&
                  (len == 0 || fwrite(data, 1, len, f) == len);
        if (f && fclose(f) != 0)
            ok = false;
        if (!ok || rename(tmp, path) != 0) {
            rc = cli_fail("segment: cannot write %s: %s", path, strerror(errno));
            remove(tmp);
        }
    }
    memfit_free(path);
    memfit_free(tmp);
    return rc;
}

/* A float32 C-order .npy (format 1.0) of `shape`. */
static int write_npy(const char *dir, const char *name, const float *v, const size_t *shape,
                     int n_dims)
{
    char dims[96] = "";
    size_t n = 1, used = 0;
    for (int i = 0; i < n_dims; i++) {
        used += (size_t)snprintf(dims + used, sizeof(dims) - used, "%zu,%s", shape[i],
                                 i + 1 < n_dims ? " " : "");
        n *= shape[i];
    }
    if (n_dims > 1)
        dims[used - 1] = '\0'; /* numpy writes (1, 3) but (3,) */
    char head[128];
    int len =
        snprintf(head, sizeof(head),
                 "\x93NUMPY\x01%c%c%c{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", 0,
                 0, 0, dims);
    size_t total = (size_t)len + 1, pad = (64 - total % 64) % 64;
    memset(head + len, ' ', pad);
    head[len + pad] = '\n';
    size_t hl = total + pad - 10;
    head[8] = (char)(hl & 0xff);
    head[9] = (char)(hl >> 8);
    return write_file(dir, name, head, total + pad, v, n * sizeof(float));
}

static int write_png(const char *dir, const char *name, const uint8_t *px, uint32_t w, uint32_t h,
                     uint32_t channels)
{
    uint8_t *png = NULL;
    size_t len = 0;
    enum memfit_status st = memfit_image_encode_png(px, w, h, channels, &png, &len);
    if (st != MEMFIT_OK)
        return cli_fail("segment: %s: %s", name, memfit_last_error());
    int rc = write_file(dir, name, NULL, 0, png, len);
    memfit_free(png);
    return rc;
}

/* The masks (row-major 0/1 bytes each) coloured over the image at half strength. */
static int write_outputs(const char *dir, const struct memfit_image *img,
                         const uint8_t *const *masks, size_t n)
{
    static const uint8_t colours[8][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25},
                                          {0, 130, 200},  {245, 130, 48}, {145, 30, 180},
                                          {70, 240, 240}, {240, 50, 230}};
    size_t px = (size_t)img->width * img->height;
    int rc = make_dir(dir);
    uint8_t *gray = rc == CLI_EXIT_OK ? memfit_malloc(px) : NULL;
    uint8_t *over = rc == CLI_EXIT_OK ? memfit_malloc(px * 3) : NULL;
    if (rc == CLI_EXIT_OK && (!gray || !over))
        rc = cli_fail_status(MEMFIT_E_NOMEM);
    if (rc == CLI_EXIT_OK)
        memcpy(over, img->rgb, px * 3);
    for (size_t k = 0; k < n && rc == CLI_EXIT_OK; k++) {
        const uint8_t *c = colours[k % 8];
        for (size_t i = 0; i < px; i++) {
            gray[i] = masks[k][i] ? 255 : 0;
            if (masks[k][i])
                for (int j = 0; j < 3; j++)
                    over[3 * i + j] = (uint8_t)((over[3 * i + j] + c[j]) / 2);
        }
        char name[32];
        snprintf(name, sizeof(name), "mask_%zu.png", k);
        rc = write_png(dir, name, gray, img->width, img->height, 1);
    }
    if (rc == CLI_EXIT_OK)
        rc = write_png(dir, "overlay.png", over, img->width, img->height, 3);
    memfit_free(gray);
    memfit_free(over);
    return rc;
}

/* ---- Printing ---------------------------------------------------------------------------- */

static void print_rle_json(const uint32_t *counts, size_t n, uint32_t h, uint32_t w,
                           enum output_mode mode, const uint8_t *mask)
{
    if (mode == OUT_BINARY) {
        /* Rows of 0/1, as the reference's boolean array. */
        printf("[");
        for (uint32_t y = 0; y < h; y++) {
            printf("%s[", y ? "," : "");
            for (uint32_t x = 0; x < w; x++)
                printf("%s%d", x ? "," : "", mask[(size_t)y * w + x] ? 1 : 0);
            printf("]");
        }
        printf("]");
        return;
    }
    printf("{\"size\":[%u,%u],\"counts\":", h, w);
    char *coco = NULL;
    if (mode == OUT_COCO && memfit_sam_rle_to_coco(counts, n, &coco) == MEMFIT_OK) {
        cli_print_json_string(coco); /* its alphabet (48..111) holds a backslash */
        printf("}");
        memfit_free(coco);
        return;
    }
    printf("[");
    for (size_t i = 0; i < n; i++)
        printf("%s%u", i ? "," : "", counts[i]);
    printf("]}");
}

static int print_prompt_result(const struct seg_opts *o, const struct memfit_segment_result *r)
{
    size_t px = (size_t)r->width * r->height;
    for (uint32_t k = 0; k < r->n_masks; k++) {
        const uint8_t *mask = r->masks + k * px;
        uint32_t *counts = NULL;
        size_t n = 0;
        int32_t box[4];
        enum memfit_status st = memfit_sam_mask_to_rle(mask, r->height, r->width, &counts, &n);
        if (st == MEMFIT_OK)
            st = memfit_sam_mask_to_box(mask, r->height, r->width, box);
        if (st != MEMFIT_OK) {
            memfit_free(counts);
            return cli_fail("segment: %s", memfit_last_error());
        }
        uint64_t area = memfit_sam_rle_area(counts, n);
        if (o->json) {
            printf("{\"mask\":%u,\"predicted_iou\":%.6g,\"area\":%llu,\"bbox\":[%d,%d,%d,%d],"
                   "\"segmentation\":",
                   k, r->iou[k], (unsigned long long)area, box[0], box[1], box[2] - box[0],
                   box[3] - box[1]);
            print_rle_json(counts, n, r->height, r->width, o->mode, mask);
            printf("}\n");
        } else {
            printf("mask %u: predicted_iou %.4f, area %llu, bbox %d,%d,%d,%d (x,y,w,h)\n", k,
                   r->iou[k], (unsigned long long)area, box[0], box[1], box[2] - box[0],
                   box[3] - box[1]);
        }
        memfit_free(counts);
    }
    return CLI_EXIT_OK;
}

static int print_records(const struct seg_opts *o, const struct memfit_segment_result *r)
{
    const struct memfit_sam_masks *rec = &r->records;
    uint8_t *mask = NULL;
    if (o->json && o->mode == OUT_BINARY && !(mask = memfit_malloc((size_t)r->width * r->height)))
        return cli_fail_status(MEMFIT_E_NOMEM);
    if (o->json)
        printf("[");
    for (size_t i = 0; i < rec->n_masks; i++) {
        const struct memfit_sam_mask *m = &rec->masks[i];
        if (!o->json) {
            printf("mask %zu: predicted_iou %.4f, stability %.4f, area %llu, bbox %d,%d,%d,%d, "
                   "point %.1f,%.1f\n",
                   i, m->predicted_iou, m->stability_score, (unsigned long long)m->area, m->bbox[0],
                   m->bbox[1], m->bbox[2], m->bbox[3], m->point_coords[0], m->point_coords[1]);
            continue;
        }
        if (mask)
            memfit_sam_rle_to_mask(m->counts, m->n_counts, m->height, m->width, mask);
        printf("%s\n{\"segmentation\":", i ? "," : "");
        print_rle_json(m->counts, m->n_counts, m->height, m->width, o->mode, mask);
        printf(",\"area\":%llu,\"bbox\":[%d,%d,%d,%d],\"predicted_iou\":%.6g,"
               "\"point_coords\":[[%.6g,%.6g]],\"stability_score\":%.6g,"
               "\"crop_box\":[%d,%d,%d,%d]}",
               (unsigned long long)m->area, m->bbox[0], m->bbox[1], m->bbox[2], m->bbox[3],
               m->predicted_iou, m->point_coords[0], m->point_coords[1], m->stability_score,
               m->crop_box[0], m->crop_box[1], m->crop_box[2], m->crop_box[3]);
    }
    if (o->json)
        printf("%s]\n", rec->n_masks ? "\n" : "");
    memfit_free(mask);
    return CLI_EXIT_OK;
}

/* --out for automatic records: each decoded from its RLE. */
static int write_record_pngs(const char *dir, const struct memfit_image *img,
                             const struct memfit_sam_masks *rec)
{
    size_t px = (size_t)img->width * img->height;
    uint8_t *all = rec->n_masks ? memfit_malloc(rec->n_masks * px) : NULL;
    const uint8_t **ptrs = rec->n_masks ? memfit_calloc(rec->n_masks, sizeof(*ptrs)) : NULL;
    int rc = CLI_EXIT_OK;
    if (rec->n_masks && (!all || !ptrs))
        rc = cli_fail_status(MEMFIT_E_NOMEM);
    for (size_t i = 0; i < rec->n_masks && rc == CLI_EXIT_OK; i++) {
        const struct memfit_sam_mask *m = &rec->masks[i];
        if (memfit_sam_rle_to_mask(m->counts, m->n_counts, m->height, m->width, all + i * px) !=
            MEMFIT_OK)
            rc = cli_fail("segment: mask %zu: %s", i, memfit_last_error());
        ptrs[i] = all + i * px;
    }
    if (rc == CLI_EXIT_OK)
        rc = write_outputs(dir, img, ptrs, rec->n_masks);
    memfit_free(all);
    memfit_free(ptrs);
    return rc;
}

static int dump(const struct seg_opts *o, const struct memfit_segment_result *r)
{
    int rc = make_dir(o->dump_dir);
    size_t e_shape[4] = {1, r->embedding_dim, r->grid, r->grid};
    if (rc == CLI_EXIT_OK && r->embedding)
        rc = write_npy(o->dump_dir, "image_embeddings.npy", r->embedding, e_shape, 4);
    if (rc == CLI_EXIT_OK && r->low_res) {
        size_t m_shape[4] = {1, r->n_masks, r->mask_size, r->mask_size};
        rc = write_npy(o->dump_dir, "low_res_masks.npy", r->low_res, m_shape, 4);
    }
    if (rc == CLI_EXIT_OK && r->iou && !o->p.automatic) {
        size_t i_shape[2] = {1, r->n_masks};
        rc = write_npy(o->dump_dir, "iou_predictions.npy", r->iou, i_shape, 2);
    }
    return rc;
}

static void print_stats(memfit_engines *e, memfit_engine_model *m, memfit_handle *h,
                        const struct memfit_segment_result *r, double open_s)
{
    struct memfit_sam_info in;
    memfit_sam_get_info(memfit_engine_sam(h), &in);
    char a[32], b[32], c[32];
    fprintf(stderr,
            "model: SAM %s, D=%u depth=%u heads=%u window %u, %u global blocks, weights %s (%s), "
            "%u threads\n",
            in.variant, in.dim, in.depth, in.heads, in.window, in.n_global,
            memfit_type_get_info(in.weight_type)->name,
            memfit_format_size(in.weight_bytes, a, sizeof(a)), in.n_threads);
    fprintf(stderr, "time: open %.3f s, encoder %.3f s%s, %s %.3f s\n", open_s, r->encode_seconds,
            r->embedding_cached ? " (cached)" : "", r->points_per_batch ? "masks" : "decoder",
            r->decode_seconds);
    struct memfit_engine_plan p;
    if (memfit_engine_model_plan(m, &p) == MEMFIT_OK)
        fprintf(stderr,
                "memory: planned workspace %s (images to %u px, %u points per batch), "
                "this request %s, peak RSS (VmHWM) %s\n",
                memfit_format_size(p.cost.bytes[MEMFIT_BUDGET_WORKSPACE], a, sizeof(a)),
                p.max_image_size, p.max_batch, memfit_format_size(r->work_bytes, b, sizeof(b)),
                memfit_format_size(cli_peak_rss_bytes(), c, sizeof(c)));
    if (r->points_per_batch)
        fprintf(stderr, "automatic: %zu masks, %u points per batch\n", r->records.n_masks,
                r->points_per_batch);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(memfit_engines_manager(e)), &u);
    fprintf(stderr, "budget: peak reserved %s of %s\n",
            memfit_format_size(u.peak_reserved_bytes, a, sizeof(a)),
            memfit_format_size(u.size_bytes, b, sizeof(b)));
}

int cmd_segment(int argc, char **argv)
{
    struct seg_opts o = {0};
    o.points = memfit_calloc((size_t)argc * 2 + 2, sizeof(float));
    o.labels = memfit_calloc((size_t)argc + 1, sizeof(int32_t));
    if (!o.points || !o.labels) {
        memfit_free(o.points);
        memfit_free(o.labels);
        return cli_fail_status(MEMFIT_E_NOMEM);
    }
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0) {
        memfit_free(o.points);
        memfit_free(o.labels);
        return rc;
    }
    rc = CLI_EXIT_OK;
    struct memfit_image img = {0};
    struct memfit_image_limits limits = memfit_image_limits_default();
    if (rc == CLI_EXIT_OK && memfit_image_load(o.image, &limits, &img) != MEMFIT_OK)
        rc = cli_fail("segment: %s", memfit_last_error());
    struct cli_model_spec spec = {
        .command = "segment",
        .model = o.model,
        .manifest = o.manifest,
        .family = "sam",
        .options = o.options,
        .n_options = o.n_options,
        .option_flags = "--threads",
        .budget_bytes = o.budget,
        .budget_flag = o.budget_text,
    };
    memfit_engines *e = NULL;
    memfit_engine_model *m = NULL;
    memfit_handle *h = NULL;
    uint64_t t0 = memfit_now_ns();
    if (rc == CLI_EXIT_OK)
        rc = cli_open_model(&spec, &e, &m);
    if (rc == CLI_EXIT_OK && !(memfit_engine_model_family(m)->ops & MEMFIT_ENGINE_OP_SEGMENT))
        rc = cli_fail("segment: model '%s' is of family '%s', which does not segment images",
                      memfit_engine_model_name(m), memfit_engine_model_family(m)->name);
    if (rc == CLI_EXIT_OK && o.stats)
        cli_print_budget(e);
    if (rc == CLI_EXIT_OK)
        rc = cli_acquire("segment", e, m, "a smaller --points-per-batch, or --budget", &h);
    double open_s = (double)(memfit_now_ns() - t0) / 1e9;
    struct memfit_segment_result r;
    memset(&r, 0, sizeof(r));
    if (rc == CLI_EXIT_OK && memfit_engine_segment(h, &img, &o.p, &r) != MEMFIT_OK)
        rc = cli_fail("segment: %s", memfit_last_error());
    if (rc == CLI_EXIT_OK)
        rc = o.p.automatic ? print_records(&o, &r) : print_prompt_result(&o, &r);
    if (rc == CLI_EXIT_OK && o.out_dir) {
        if (o.p.automatic) {
            rc = write_record_pngs(o.out_dir, &img, &r.records);
        } else {
            const uint8_t *masks[3];
            size_t px = (size_t)img.width * img.height;
            for (uint32_t k = 0; k < r.n_masks && k < 3; k++)
                masks[k] = r.masks + k * px;
            rc = write_outputs(o.out_dir, &img, masks, r.n_masks < 3 ? r.n_masks : 3);
        }
    }
    if (rc == CLI_EXIT_OK && o.dump_dir)
        rc = dump(&o, &r);
    if (rc == CLI_EXIT_OK && o.stats)
        print_stats(e, m, h, &r, open_s);
    memfit_segment_result_free(&r);
    memfit_manager_release(h);
    memfit_engines_close(e);
    memfit_image_free(&img);
    memfit_free(o.points);
    memfit_free(o.labels);
    return rc;
}
