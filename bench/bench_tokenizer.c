/*
 * bench_tokenizer [MODEL.gguf|tokenizer.json] [MB]: encode throughput of a
 * tokenizer on English text. With a GGUF (or a Hugging Face tokenizer.json,
 * converted in memory's stead to a temporary GGUF) it measures that real
 * vocabulary; without, the small test vocabulary of tests/tokenizer_test.h.
 * The text is MB megabytes (default 1) of English prose with punctuation,
 * numbers and newlines. Prints MB/s and tokens/s, best and median of 7 runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tests/tokenizer_test.h"
#include "memfit/memfit.h"

static const char *const SENTENCES[] = {
    "The quick brown fox jumps over the lazy dog. ",
    "In 2023, the committee approved a budget of $1,250,000 for the new library. ",
    "She said, \"I'm not sure we'll make it before the storm,\" and closed the door.\n",
    "Memory is the product: every buffer is planned before the first request arrives. ",
    "Tokenizers split text into pieces that a language model has learned to predict. ",
    "Yesterday's meeting ran long; nobody wanted to discuss the quarterly numbers.\n\n",
    "It was the best of times, it was the worst of times, it was the age of wisdom. ",
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *src = argc > 1 ? argv[1] : NULL;
    double mb = argc > 2 ? atof(argv[2]) : 1.0;
    size_t len = (size_t)(mb * 1024 * 1024);
    char *text = memfit_malloc(len + 256);
    if (!text)
        return 1;
    size_t n = 0;
    for (size_t i = 0; n < len; i++) {
        const char *s = SENTENCES[(i * 7 + i / 3) % (sizeof(SENTENCES) / sizeof(SENTENCES[0]))];
        size_t k = strlen(s);
        memcpy(text + n, s, k);
        n += k;
    }
    len = n;

    char path[64];
    snprintf(path, sizeof(path), "/tmp/memfit-bench-tok-%d.gguf", (int)getpid());
    const char *gguf = src;
    enum memfit_status st = MEMFIT_OK;
    if (!src) {
        static struct tokv v;
        tokv_bpe(&v);
        st = tokv_write(&v, path, "gpt2", "qwen2", NULL, NULL);
        gguf = path;
    } else if (strstr(src, ".json")) {
        memfit_writer *w;
        st = memfit_writer_create(path, MEMFIT_FORMAT_GGUF, &w);
        if (st == MEMFIT_OK) {
            st = memfit_tokenizer_json_to_gguf(src, NULL, w);
            if (st == MEMFIT_OK)
                st = memfit_writer_commit(w);
            memfit_writer_destroy(w);
        }
        gguf = path;
    }
    memfit_tensors *set = NULL;
    memfit_tokenizer *tok = NULL;
    if (st == MEMFIT_OK)
        st = memfit_tensors_open(gguf, NULL, &set);
    uint64_t t0 = memfit_now_ns();
    if (st == MEMFIT_OK)
        st = memfit_tokenizer_from_gguf(set, &tok);
    uint64_t load_ns = memfit_now_ns() - t0;
    if (gguf == path)
        unlink(path);
    if (st != MEMFIT_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", memfit_last_error());
        return 1;
    }
    struct memfit_tokenizer_info in;
    memfit_tokenizer_get_info(tok, &in);
    uint64_t ns[7];
    size_t n_ids = 0;
    for (int r = 0; r < 7; r++) {
        int32_t *ids;
        t0 = memfit_now_ns();
        st = memfit_tokenizer_encode(tok, text, len, false, true, &ids, &n_ids);
        ns[r] = memfit_now_ns() - t0;
        if (st != MEMFIT_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", memfit_last_error());
            return 1;
        }
        memfit_free(ids);
    }
    qsort(ns, 7, sizeof(ns[0]), cmp_u64);
    double mbytes = (double)len / (1024.0 * 1024.0);
    printf("tokenizer: %s (%s/%s, %u tokens), loaded in %.1f ms\n", src ? src : "test vocabulary",
           in.model, in.pre, in.n_vocab, (double)load_ns / 1e6);
    printf("encode %.2f MB of English: %zu tokens; best %.1f ms (%.1f MB/s, %.2f M tokens/s), "
           "median %.1f ms (%.1f MB/s)\n",
           mbytes, n_ids, (double)ns[0] / 1e6, mbytes / ((double)ns[0] / 1e9),
           (double)n_ids * 1e3 / (double)ns[0], (double)ns[3] / 1e6,
           mbytes / ((double)ns[3] / 1e9));
    memfit_tokenizer_free(tok);
    memfit_tensors_close(set);
    memfit_free(text);
    return 0;
}
