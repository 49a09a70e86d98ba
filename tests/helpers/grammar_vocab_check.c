/*
 * grammar_vocab_check TOKENIZER.gguf [SCHEMA.json|-] [WALKS] [STEPS] [CHECK_EVERY]
 *
 * Token-level masking of src/models/grammar.c on a real vocabulary: random
 * walks through the grammar (json_object, or the schema), each step taking
 * a token at random among those the matcher allows. Every CHECK_EVERY steps
 * the allowed set is compared with brute force: for every token, a fresh
 * matcher fed the bytes so far and then the token's bytes (end-of-generation
 * tokens: whether the bytes so far are complete). Prints the cost of the
 * allowed set per step (µs, mean and max, the state cache included) and of
 * building the vocabulary trie. Exit 1 on a mismatch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memfit/memfit.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = memfit_malloc(1 << 20);
    *len = buf ? fread(buf, 1, 1 << 20, f) : 0;
    fclose(f);
    return buf;
}

/* Whether token id may follow `hist` (n bytes), by brute force. */
static bool brute_allowed(const memfit_grammar *g, const memfit_tokenizer *tok, const char *hist,
                          size_t n, int32_t id)
{
    memfit_grammar_matcher *m;
    if (memfit_grammar_matcher_create(g, NULL, &m) != MEMFIT_OK)
        return false;
    bool ok = memfit_grammar_matcher_accept_bytes(m, hist, n) == MEMFIT_OK;
    if (memfit_tokenizer_is_eog(tok, id)) {
        ok = ok && memfit_grammar_matcher_is_complete(m);
    } else {
        const char *p;
        size_t len;
        ok = ok && memfit_tokenizer_piece(tok, id, false, &p, &len) == MEMFIT_OK && len > 0 &&
             memfit_grammar_matcher_accept_bytes(m, p, len) == MEMFIT_OK;
    }
    memfit_grammar_matcher_free(m);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s TOKENIZER.gguf [SCHEMA.json|-] [WALKS] [STEPS] [EVERY]\n",
                argv[0]);
        return 2;
    }
    int walks = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 5;
    int steps = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 200;
    int every = argc > 5 ? (int)strtol(argv[5], NULL, 10) : 10;
    memfit_tensors *set;
    memfit_tokenizer *tok;
    if (memfit_tensors_open(argv[1], NULL, &set) != MEMFIT_OK ||
        memfit_tokenizer_from_gguf(set, &tok) != MEMFIT_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], memfit_last_error());
        return 1;
    }
    memfit_grammar *g;
    enum memfit_status st;
    if (argc > 2 && strcmp(argv[2], "-") != 0) {
        size_t len;
        char *text = read_file(argv[2], &len);
        st = text ? memfit_grammar_from_json_schema(text, len, &g) : MEMFIT_E_IO;
        memfit_free(text);
    } else {
        st = memfit_grammar_json_object(&g);
    }
    if (st != MEMFIT_OK) {
        fprintf(stderr, "grammar: %s\n", memfit_last_error());
        return 1;
    }
    struct memfit_tokenizer_info info;
    memfit_tokenizer_get_info(tok, &info);
    struct memfit_alloc_stats before;
    memfit_alloc_get_stats(&before);
    uint64_t t0 = memfit_now_ns();
    memfit_grammar_vocab *v;
    if (memfit_grammar_vocab_create(tok, &v) != MEMFIT_OK) {
        fprintf(stderr, "vocab: %s\n", memfit_last_error());
        return 1;
    }
    uint64_t t_vocab = memfit_now_ns() - t0;
    struct memfit_alloc_stats as;
    memfit_alloc_get_stats(&as);
    /* The trie kept plus the sort's scratch (16 bytes a token, freed): what
     * a memory plan counts with memfit_grammar_vocab_plan_bytes. */
    uint64_t built = as.live_bytes[MEMFIT_ALLOC_MODEL] - before.live_bytes[MEMFIT_ALLOC_MODEL] +
                     16 * (uint64_t)info.n_vocab;
    uint64_t planned = memfit_grammar_vocab_plan_bytes(info.n_vocab);
    printf("vocabulary: %u tokens, trie built in %.1f ms, model-category memory %.1f MiB; "
           "trie at its peak %.1f MiB, planned %.1f MiB\n",
           info.n_vocab, (double)t_vocab / 1e6,
           (double)as.live_bytes[MEMFIT_ALLOC_MODEL] / (1 << 20), (double)built / (1 << 20),
           (double)planned / (1 << 20));
    if (built > planned) {
        fprintf(stderr, "the planned bytes of the trie (%llu) are below its peak (%llu)\n",
                (unsigned long long)planned, (unsigned long long)built);
        return 1;
    }

    /* The cost of a cache miss (a fresh matcher each time) in typical states. */
    static const char *const prefixes[] = {
        "", "{", "{\"a\": \"", "{\"a\": \"x\\", "{\"a\": 12", "{\"a\": [true, ", "{\"a\": 1}"};
    memfit_grammar *obj;
    if (memfit_grammar_json_object(&obj) != MEMFIT_OK)
        return 1;
    printf("json_object, cache miss:");
    for (size_t k = 0; k < sizeof(prefixes) / sizeof(prefixes[0]); k++) {
        double best = 1e30;
        size_t n_allowed = 0;
        for (int r = 0; r < 5; r++) {
            memfit_grammar_matcher *m;
            const uint64_t *bits;
            if (memfit_grammar_matcher_create(obj, v, &m) != MEMFIT_OK ||
                memfit_grammar_matcher_accept_bytes(m, prefixes[k], strlen(prefixes[k])) !=
                    MEMFIT_OK)
                return 1;
            uint64_t a = memfit_now_ns();
            if (memfit_grammar_matcher_allowed(m, &bits, &n_allowed) != MEMFIT_OK)
                return 1;
            double us = (double)(memfit_now_ns() - a) / 1e3;
            best = us < best ? us : best;
            memfit_grammar_matcher_free(m);
        }
        printf(" '%s' %.0f us (%zu tokens);", prefixes[k], best, n_allowed);
    }
    printf("\n");
    memfit_grammar_free(obj);

    char *hist = memfit_malloc(1 << 20);
    uint32_t *cand = memfit_malloc(info.n_vocab * sizeof(uint32_t));
    int mismatches = 0, n_steps = 0, n_checked = 0, completed = 0;
    double total_us = 0, max_us = 0;
    for (int w = 0; w < walks && hist && cand; w++) {
        memfit_grammar_matcher *m;
        if (memfit_grammar_matcher_create(g, v, &m) != MEMFIT_OK)
            return 1;
        size_t n_hist = 0;
        for (int s = 0; s < steps; s++) {
            const uint64_t *bits;
            size_t n_allowed;
            uint64_t a = memfit_now_ns();
            st = memfit_grammar_matcher_allowed(m, &bits, &n_allowed);
            double us = (double)(memfit_now_ns() - a) / 1e3;
            if (st != MEMFIT_OK) {
                printf("walk %d step %d: %s\n", w, s, memfit_last_error());
                return 1;
            }
            total_us += us;
            max_us = us > max_us ? us : max_us;
            n_steps++;
            if (s % every == 0) {
                n_checked++;
                for (uint32_t id = 0; id < info.n_vocab; id++) {
                    bool got = bits[id / 64] >> (id % 64) & 1;
                    if (got != brute_allowed(g, tok, hist, n_hist, (int32_t)id) &&
                        mismatches++ < 10)
                        printf("walk %d step %d: token %u: mask says %d, brute force %d\n", w, s,
                               id, got, !got);
                }
            }
            size_t n = 0;
            for (uint32_t id = 0; id < info.n_vocab; id++)
                if (bits[id / 64] >> (id % 64) & 1)
                    cand[n++] = id;
            if (n == 0 || memfit_grammar_matcher_is_complete(m)) {
                completed += memfit_grammar_matcher_is_complete(m);
                if (n == 0 || next_rand() % 2) /* complete: go on now and then (numbers) */
                    break;
            }
            int32_t id = (int32_t)cand[next_rand() % n];
            if (memfit_tokenizer_is_eog(tok, id))
                break;
            const char *p;
            size_t len;
            memfit_tokenizer_piece(tok, id, false, &p, &len);
            if (memfit_grammar_matcher_accept_token(m, id) != MEMFIT_OK) {
                printf("walk %d step %d: allowed token %d refused: %s\n", w, s, (int)id,
                       memfit_last_error());
                return 1;
            }
            if (n_hist + len < (1 << 20)) {
                memcpy(hist + n_hist, p, len);
                n_hist += len;
            }
        }
        memfit_grammar_matcher_free(m);
    }
    printf("%d walks, %d steps (%d reached a complete value), %d checked by brute force, "
           "%d mismatches\n",
           walks, n_steps, completed, n_checked, mismatches);
    printf("allowed set per token: %.1f us mean, %.1f us max\n", total_us / n_steps, max_us);
    memfit_free(cand);
    memfit_free(hist);
    memfit_grammar_vocab_free(v);
    memfit_grammar_free(g);
    memfit_tokenizer_free(tok);
    memfit_tensors_close(set);
    return mismatches ? 1 : 0;
}
