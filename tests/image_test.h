/*
 * Helpers shared by the image unit tests (header-only; include after
 * cmocka.h and test_util.h): reading fixtures of tests/fixtures/images, its
 * index.json (made by scripts/make_image_fixtures.py) and the reference
 * images it names.
 */
#ifndef MF_IMAGE_TEST_H
#define MF_IMAGE_TEST_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "memfit/models.h"

/* Reads tests/fixtures/images/<rel> into a memfit_malloc'ed buffer. */
static inline uint8_t *read_fixture(const char *rel, size_t *size)
{
    char name[256], path[512];
    snprintf(name, sizeof(name), "images/%s", rel);
    mf_test_fixture(name, path, sizeof(path));
    FILE *f = fopen(path, "rb");
    if (!f)
        fprintf(stderr, "cannot open %s\n", path);
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    uint8_t *buf = memfit_malloc(n ? (size_t)n : 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* Asserts that `out` holds the float32 file `rel` (n floats), bit for bit. */
static inline void assert_floats_fixture(const float *out, const char *rel, size_t n)
{
    size_t size, differ = 0;
    float *want = (float *)read_fixture(rel, &size);
    assert_int_equal(size, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        differ += memcmp(&out[i], &want[i], sizeof(float)) != 0;
    if (differ)
        fprintf(stderr, "%s: %zu floats differ\n", rel, differ);
    assert_int_equal(differ, 0);
    memfit_free(want);
}

/* Decodes a fixture; fails the test on error. */
static inline void load_fixture(const char *rel, struct memfit_image *img)
{
    size_t size;
    uint8_t *data = read_fixture(rel, &size);
    enum memfit_status st = memfit_image_decode(data, size, rel, NULL, img);
    if (st != MEMFIT_OK)
        fprintf(stderr, "%s: %s\n", rel, memfit_last_error());
    assert_int_equal(st, MEMFIT_OK);
    memfit_free(data);
}

/* A reference image: raw 8-bit RGB (.rgb, w x h given) or an 8-bit PNG. */
static inline void load_reference_rgb(const char *rel, uint32_t w, uint32_t h,
                                      struct memfit_image *img)
{
    size_t len = strlen(rel);
    if (len > 4 && strcmp(rel + len - 4, ".rgb") == 0) {
        size_t size;
        img->rgb = read_fixture(rel, &size);
        assert_int_equal(size, (size_t)w * h * 3);
        img->width = w;
        img->height = h;
        return;
    }
    load_fixture(rel, img);
    assert_int_equal(img->width, w);
    assert_int_equal(img->height, h);
}

/* tests/fixtures/images/index.json (json_decref it). */
static inline json_t *load_index(void)
{
    size_t size;
    uint8_t *text = read_fixture("index.json", &size);
    mf_json_init();
    json_error_t err;
    json_t *root = json_loadb((const char *)text, size, 0, &err);
    if (!root)
        fprintf(stderr, "index.json:%d: %s\n", err.line, err.text);
    assert_non_null(root);
    memfit_free(text);
    return root;
}

/* One case of an index.json section: its entry, the decoded input image and,
 * for sections whose "ref" is an image, the reference image. */
struct image_case {
    json_t *entry;
    const char *file, *ref;
    uint32_t width, height; /* of the reference */
    struct memfit_image img, want;
};

/* Runs fn on every case of `section` (which must hold at least min_cases),
 * freeing the images after each. */
static inline void for_each_image_case(const char *section, size_t min_cases, bool ref_is_image,
                                       void (*fn)(struct image_case *c))
{
    json_t *index = load_index();
    json_t *cases = json_object_get(index, section);
    assert_true(json_array_size(cases) >= min_cases);
    size_t i;
    json_t *entry;
    json_array_foreach(cases, i, entry)
    {
        struct image_case c = {.entry = entry};
        c.file = json_string_value(json_object_get(entry, "file"));
        c.ref = json_string_value(json_object_get(entry, "ref"));
        c.width = (uint32_t)json_integer_value(json_object_get(entry, "width"));
        c.height = (uint32_t)json_integer_value(json_object_get(entry, "height"));
        load_fixture(c.file, &c.img);
        if (ref_is_image)
            load_reference_rgb(c.ref, c.width, c.height, &c.want);
        fn(&c);
        memfit_image_free(&c.img);
        memfit_image_free(&c.want);
    }
    json_decref(index);
}

#endif
