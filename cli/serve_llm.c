/*
 * The LLM engines of `memfit serve` (serve_engines.h): Qwen2 and LLaMA
 * models through the manager's LLM driver, generating for the completions
 * and chat routes.
 *
 * A request takes one of the loaded model's sessions (its KV cache was
 * reserved with the model, so an admitted request never waits for memory),
 * renders and tokenizes its prompt, and steps a memfit_generation as the
 * server pulls text. The session goes back when the generation ends,
 * finished or cancelled.
 */
#include <string.h>
#include <strings.h>

#include "serve_engines.h"

/* ---- Configuration ------------------------------------------------------------------ */

/* The file's general.architecture, or "" (E_* from opening it). */
static enum memfit_status file_arch(const char *path, char *out, size_t cap)
{
    memfit_tensors *set;
    enum memfit_status st = memfit_tensors_open(path, NULL, &set);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_meta_value v;
    out[0] = '\0';
    if (memfit_tensors_meta_find(set, "general.architecture", &v) == MEMFIT_OK &&
        v.type == MEMFIT_META_STRING) {
        size_t n = v.v.str.len < cap - 1 ? (size_t)v.v.str.len : cap - 1;
        memcpy(out, v.v.str.data, n);
        out[n] = '\0';
    }
    memfit_clear_error();
    memfit_tensors_close(set);
    return MEMFIT_OK;
}

static enum memfit_status llm_config_create(const struct memfit_manifest *manifest,
                                            const struct memfit_manifest_model *model, void *user,
                                            void **out)
{
    const char *family = user;
    struct memfit_manifest_model entry = *model;
    if (entry.family && strcasecmp(entry.family, "auto") == 0) {
        const char *src = entry.n_sources ? entry.sources[0] : "";
        if (strstr(src, "://") && strncmp(src, "file://", 7) != 0)
            return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: remote LLM sources need a manifest", src);
        char arch[32];
        enum memfit_status st =
            file_arch(src + (strncmp(src, "file://", 7) ? 0 : 7), arch, sizeof(arch));
        if (st != MEMFIT_OK)
            return st;
        if (strcmp(arch, family) != 0)
            return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: not a %s model (architecture '%s')", src,
                               family, arch[0] ? arch : "none");
        entry.family = (char *)family;
    } else if (!entry.family ||
               (strcasecmp(entry.family, family) != 0 && strcasecmp(entry.family, "llm") != 0)) {
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "model '%s': family '%s' is not %s", entry.name,
                           entry.family ? entry.family : "", family);
    }
    memfit_llm_driver_config *cfg;
    enum memfit_status st = memfit_llm_driver_config_create(manifest, &entry, &cfg);
    if (st == MEMFIT_OK)
        *out = cfg;
    return st;
}

static void llm_config_destroy(void *config, void *user)
{
    (void)user;
    memfit_llm_driver_config_free(config);
}

/* ---- Generation ------------------------------------------------------------------------ */

struct llm_gen {
    void *loaded;
    memfit_llm_session *session;
    memfit_generation *gen;
    int32_t *ids;
};

static void llm_gen_free(struct llm_gen *g)
{
    memfit_generation_free(g->gen);
    if (g->session)
        memfit_llm_driver_session_release(g->loaded, g->session);
    memfit_free(g->ids);
    memfit_free(g);
}

static enum memfit_status llm_generate_start(void *model,
                                             const struct memfit_generation_request *req,
                                             void **out_gen, uint32_t *out_prompt_tokens)
{
    const memfit_tokenizer *tok = memfit_llm_driver_tokenizer(model);
    struct llm_gen *g = memfit_calloc(1, sizeof(*g));
    if (!g)
        return MEMFIT_E_NOMEM;
    g->loaded = model;
    enum memfit_status st;
    size_t n_ids = 0;
    if (req->messages) {
        enum memfit_chat_template tmpl;
        bool recognised;
        memfit_chat_template_detect(memfit_tokenizer_chat_template(tok), &tmpl, &recognised);
        char *text = NULL;
        st = memfit_chat_render(tmpl, req->messages, req->n_messages, true, &text);
        if (st == MEMFIT_OK)
            st = memfit_tokenizer_encode(tok, text, strlen(text), false, true, &g->ids, &n_ids);
        memfit_free(text);
    } else {
        st =
            memfit_tokenizer_encode(tok, req->prompt, req->prompt_len, true, true, &g->ids, &n_ids);
    }
    uint32_t n_ctx = memfit_llm_driver_context(model);
    if (st == MEMFIT_OK && n_ids >= n_ctx)
        st = memfit_fail(MEMFIT_E_RANGE,
                         "the prompt is %zu tokens; the model's context holds %u (prompt and "
                         "completion)",
                         n_ids, n_ctx);
    if (st == MEMFIT_OK && n_ids == 0)
        st = memfit_fail(MEMFIT_E_INVALID, "the prompt is empty");
    if (st != MEMFIT_OK) {
        llm_gen_free(g);
        return st;
    }
    g->session = memfit_llm_driver_session_acquire(model);
    struct memfit_generate_params p = req->params;
    p.prompt = g->ids;
    p.n_prompt = n_ids;
    st = memfit_generation_start(g->session, tok, &p, &g->gen);
    if (st != MEMFIT_OK) {
        llm_gen_free(g);
        return st;
    }
    *out_prompt_tokens = (uint32_t)n_ids;
    *out_gen = g;
    return MEMFIT_OK;
}

static enum memfit_status llm_generate_next(void *gen, const char **text, size_t *len, bool *done)
{
    return memfit_generation_next(((struct llm_gen *)gen)->gen, text, len, done);
}

static void llm_generate_end(void *gen, struct memfit_generate_result *result)
{
    struct llm_gen *g = gen;
    memfit_generation_result(g->gen, result);
    llm_gen_free(g);
}

#define LLM_ENGINE(fam)                                                                            \
    {                                                                                              \
        .family = fam, .input_kind = MEMFIT_EMBED_INPUT_TEXT, .driver = &memfit_llm_driver,        \
        .config_create = llm_config_create, .config_destroy = llm_config_destroy,                  \
        .dimension = NULL, .embed = NULL, .generate_start = llm_generate_start,                    \
        .generate_next = llm_generate_next, .generate_end = llm_generate_end,                      \
        .user = (void *)(fam)                                                                      \
    }

const struct memfit_embed_engine cli_qwen2_engine = LLM_ENGINE("qwen2");
const struct memfit_embed_engine cli_llama_engine = LLM_ENGINE("llama");
