/*
 * libFuzzer target for the tokenizers (src/models/tokenizer*.c): arbitrary
 * bytes encoded with a small byte-level BPE and a small SentencePiece BPE
 * (tests/tokenizer_test.h, written once to a temporary GGUF). The first byte
 * picks the tokenizer and the flags. Any input must encode or be refused as
 * invalid UTF-8; every id must be in the vocabulary; valid UTF-8 must decode
 * back to itself when nothing special was added or parsed (and no
 * user-defined token text, after which SPM adds a prefix space; nor, for
 * SPM, U+2581, its own space mark).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tests/tokenizer_test.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static memfit_tokenizer *make(void (*fill)(struct tokv *), const char *model, const char *pre)
{
    static struct tokv v;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/memfit-fuzz-tok-%d-%s.gguf", (int)getpid(), model);
    fill(&v);
    memfit_tensors *set;
    memfit_tokenizer *tok;
    if (tokv_write(&v, path, model, pre, NULL, NULL) != MEMFIT_OK ||
        memfit_tensors_open(path, NULL, &set) != MEMFIT_OK)
        abort();
    if (memfit_tokenizer_from_gguf(set, &tok) != MEMFIT_OK)
        abort();
    memfit_tensors_close(set);
    unlink(path);
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static memfit_tokenizer *toks[2];
    if (!toks[0]) {
        toks[0] = make(tokv_bpe, "gpt2", "qwen2");
        toks[1] = make(tokv_spm, "llama", NULL);
    }
    if (size == 0)
        return 0;
    const memfit_tokenizer *tok = toks[data[0] & 1];
    bool add = data[0] & 2, parse = data[0] & 4;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int32_t *ids;
    size_t n;
    enum memfit_status st = memfit_tokenizer_encode(tok, text, len, add, parse, &ids, &n);
    if (st == MEMFIT_E_FORMAT)
        return 0; /* not UTF-8 */
    if (st != MEMFIT_OK)
        abort();
    struct memfit_tokenizer_info in;
    memfit_tokenizer_get_info(tok, &in);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= in.n_vocab)
            abort();
    char *back;
    size_t back_len;
    if (memfit_tokenizer_decode(tok, ids, n, true, &back, &back_len) != MEMFIT_OK)
        abort();
    bool check = !add && !parse && !memmem(text, len, "<tool>", 6);
    if (in.kind == MEMFIT_TOKENIZER_SPM) /* a U+2581 in the text decodes as a space */
        check = check && !memmem(text, len, "\xE2\x96\x81", 3);
    if (check && (back_len != len || memcmp(back, text, len) != 0))
        abort();
    memfit_free(back);
    memfit_free(ids);
    return 0;
}
