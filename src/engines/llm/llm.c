/*
 * The LLM families: Qwen2 and LLaMA GGUF models, or Hugging Face directories
 * run in place (F16/BF16/F32 or bitsandbytes NF4 safetensors;
 * memfit_llm_open_set), planned from the header and generating for
 * completions and chat.
 *
 * A loaded model owns a fixed set of sessions, each with its KV cache and
 * workspace in one anonymous mapping, all of them reserved with the model:
 * a request never allocates, so a generation that was admitted cannot fail
 * half-way for memory, and unloading gives everything back. The number of
 * sessions is the model's max_concurrency, or its `parallel` option (1 when
 * both are unlimited: requests then take turns on the one session). Several
 * sessions are a memfit_llm_group: their decoding steps are batched
 * (continuous batching), the weights read once per step for all of them; a
 * generation joins the group when it takes a session and leaves when it
 * gives it back (ended or cancelled), so a step never waits for it.
 */
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "engines/family.h"

/* Sessions of one model at most (a group's limit). */
#define LLM_MAX_SESSIONS 64

extern const struct mf_family mf_family_qwen2;
extern const struct mf_family mf_family_llama;

struct llm_config {
    char *name; /* the model's, for messages */
    struct memfit_llm_options opts;
    uint32_t n_sessions;
    bool quantize; /* the `quantize` option: a copy in `target` is run */
    enum memfit_quantize_target target;
};

struct llm_loaded {
    char *path; /* the mapped file, for its page cache at unload */
    memfit_llm *model;
    memfit_tokenizer *tok;
    memfit_llm_group *group;       /* with more than one session: they are its */
    memfit_llm_session **sessions; /* n_sessions */
    bool *in_use;                  /* n_sessions; under lock */
    uint32_t n_sessions;
    uint32_t n_ctx; /* tokens each session holds */
    pthread_mutex_t lock;
    pthread_cond_t freed; /* a session was released */
    /* The vocabulary's trie for grammar-constrained generations, built on
     * the first one (under lock) and kept until the model unloads. */
    memfit_grammar_vocab *vocab;
};

/* A generation in progress: it holds one session until it ends. */
struct llm_gen {
    struct llm_loaded *loaded;
    memfit_llm_session *session;
    memfit_generation *gen;
    int32_t *ids;                    /* the prompt's tokens */
    memfit_grammar_matcher *matcher; /* with a grammar */
};

/* ---- Detection ---------------------------------------------------------------------------- */

/* True when the set's general.architecture is `arch`. */
static bool arch_is(const memfit_tensors *set, const char *arch)
{
    struct memfit_meta_value v;
    if (memfit_tensors_meta_find(set, "general.architecture", &v) != MEMFIT_OK) {
        memfit_clear_error(); /* no architecture: simply not ours */
        return false;
    }
    size_t n = strlen(arch);
    return v.type == MEMFIT_META_STRING && v.v.str.len == n && memcmp(v.v.str.data, arch, n) == 0;
}

static bool qwen2_detect(const memfit_tensors *set)
{
    return arch_is(set, "qwen2");
}

static bool llama_detect(const memfit_tensors *set)
{
    return arch_is(set, "llama");
}

/* ---- Configuration ------------------------------------------------------------------------ */

static void llm_config_free(void *config)
{
    struct llm_config *cfg = config;
    if (!cfg)
        return;
    memfit_free(cfg->name);
    memfit_free(cfg);
}

static enum memfit_status parse_option(struct llm_config *cfg, const struct mf_family_entry *e,
                                       const struct memfit_manifest_option *o,
                                       const struct mf_family *family)
{
    if (strcmp(o->key, "ctx") == 0)
        return mf_engine_option_u32(e, o, 1u << 24, &cfg->opts.n_ctx);
    if (strcmp(o->key, "batch") == 0)
        return mf_engine_option_u32(e, o, 4096, &cfg->opts.n_batch);
    if (strcmp(o->key, "parallel") == 0) {
        enum memfit_status st = mf_engine_option_u32(e, o, LLM_MAX_SESSIONS, &cfg->n_sessions);
        if (st == MEMFIT_OK && cfg->n_sessions == 0)
            st = memfit_fail(MEMFIT_E_FORMAT, "%s: model '%s': parallel 0: expected 1..%d",
                             e->where, e->name, LLM_MAX_SESSIONS);
        return st;
    }
    if (strcmp(o->key, "threads") == 0) {
        uint32_t n;
        enum memfit_status st = mf_engine_option_u32(e, o, 1024, &n);
        if (st == MEMFIT_OK)
            cfg->opts.n_threads = n;
        return st;
    }
    if (strcmp(o->key, "quantize") == 0) {
        enum memfit_quantize_target t;
        if (memfit_quantize_target_parse(o->value, &t) != MEMFIT_OK || t == MEMFIT_QUANTIZE_NF4) {
            memfit_clear_error();
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: model '%s': quantize '%s': expected f32, f16, bf16, q8_0, "
                               "q4_0, q4_k, q6_k or q4_k_m (nf4 is written as safetensors, which "
                               "the LLM engine does not run)",
                               e->where, e->name, o->value);
        }
        cfg->quantize = true;
        cfg->target = t;
        return MEMFIT_OK;
    }
    if (strcmp(o->key, "kv") == 0) {
        if (strcasecmp(o->value, "f16") == 0)
            cfg->opts.kv_type = MEMFIT_TYPE_F16;
        else if (strcasecmp(o->value, "q8_0") == 0)
            cfg->opts.kv_type = MEMFIT_TYPE_Q8_0;
        else
            return memfit_fail(MEMFIT_E_FORMAT, "%s: model '%s': kv '%s': expected f16 or q8_0",
                               e->where, e->name, o->value);
        return MEMFIT_OK;
    }
    return mf_engine_option_unknown(e, o, family);
}

static enum memfit_status config_create(const struct mf_family_entry *e,
                                        const struct mf_family *family, void **out)
{
    const struct memfit_manifest_model *model = e->model;
    struct llm_config *cfg = memfit_calloc(1, sizeof(*cfg));
    if (!cfg)
        return MEMFIT_E_NOMEM;
    memfit_llm_options_default(&cfg->opts);
    /* limits.max_context first: a `ctx` option overrides it. */
    if (model->limits.max_context)
        cfg->opts.n_ctx = model->limits.max_context > (1u << 24)
                              ? (1u << 24)
                              : (uint32_t)model->limits.max_context;
    /* max_concurrency first: a `parallel` option overrides it. Beyond a group's
     * sessions, requests wait for one. */
    cfg->n_sessions = model->max_concurrency ? model->max_concurrency : 1;
    if (cfg->n_sessions > LLM_MAX_SESSIONS)
        cfg->n_sessions = LLM_MAX_SESSIONS;
    cfg->name = memfit_strdup(e->name);
    enum memfit_status st = cfg->name ? MEMFIT_OK : MEMFIT_E_NOMEM;
    for (size_t i = 0; st == MEMFIT_OK && i < model->n_options; i++)
        st = parse_option(cfg, e, &model->options[i], family);
    if (st != MEMFIT_OK) {
        llm_config_free(cfg);
        return st;
    }
    *out = cfg;
    return MEMFIT_OK;
}

/* ---- The `quantize` copy (memfit_quantize_file: streaming, bounded memory) ------------------ */

static const char *llm_convert_type(const void *config)
{
    const struct llm_config *cfg = config;
    return cfg->quantize ? memfit_quantize_target_name(cfg->target) : NULL;
}

static enum memfit_status llm_convert(void *config, const char *src, const char *dst)
{
    const struct llm_config *cfg = config;
    struct memfit_quantize_options o;
    memfit_quantize_options_default(&o);
    o.target = cfg->target;
    o.format = MEMFIT_FORMAT_GGUF;
    o.overwrite = true; /* dst is the caller's fresh temporary file */
    o.n_threads = cfg->opts.n_threads;
    return memfit_quantize_file(src, dst, &o, NULL);
}

/* The copy's weights from the source's shapes, by the rule the copy is
 * written with (memfit_quantize_tensor_bytes); the rest of the plan (1-D
 * parameters, KV cache, workspace) is the source's. */
static enum memfit_status llm_convert_estimate(void *config, const char *src,
                                               struct memfit_engine_plan *plan)
{
    const struct llm_config *cfg = config;
    memfit_tensors *set;
    enum memfit_status st = memfit_tensors_open(src, NULL, &set);
    if (st != MEMFIT_OK)
        return st;
    uint32_t n_layers = memfit_quantize_layer_count(set);
    uint64_t bytes = 0;
    for (size_t i = 0; i < memfit_tensors_count(set) && st == MEMFIT_OK; i++) {
        struct memfit_tensor_info t;
        if ((st = memfit_tensors_get(set, i, &t)) == MEMFIT_OK)
            bytes += memfit_quantize_tensor_bytes(&t, cfg->target, n_layers);
    }
    memfit_tensors_close(set);
    if (st != MEMFIT_OK)
        return st;
    plan->cost.bytes[MEMFIT_BUDGET_WEIGHTS] = bytes;
    plan->file_bytes = bytes;
    return MEMFIT_OK;
}

/* One per family, so that an unknown option lists that family's options. */
static enum memfit_status qwen2_config_create(const struct mf_family_entry *e, void **out)
{
    return config_create(e, &mf_family_qwen2, out);
}

static enum memfit_status llama_config_create(const struct mf_family_entry *e, void **out)
{
    return config_create(e, &mf_family_llama, out);
}

/* ---- Plan, load, unload ------------------------------------------------------------------- */

static enum memfit_status llm_plan(void *config, const char *path, struct memfit_engine_plan *out)
{
    struct llm_config *cfg = config;
    memfit_tensors *set;
    enum memfit_status st = memfit_llm_open_set(path, &set); /* a file or an HF directory */
    if (st != MEMFIT_OK)
        return memfit_fail(st, "model '%s': %s", cfg->name, memfit_last_error());
    struct memfit_llm_info info;
    struct memfit_llm_plan plan;
    st = memfit_llm_detect(set, &info);
    memfit_tensors_close(set);
    if (st == MEMFIT_OK)
        st = memfit_llm_plan_group(&info, &cfg->opts, cfg->n_sessions, &plan);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "model '%s': %s", cfg->name, memfit_last_error());
    memset(&out->cost, 0, sizeof(out->cost));
    out->cost.bytes[MEMFIT_BUDGET_WEIGHTS] = plan.weight_bytes;
    out->cost.bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS] = plan.converted_bytes;
    out->cost.bytes[MEMFIT_BUDGET_KV_CACHE] = plan.kv_bytes * cfg->n_sessions;
    /* One session's workspace, or the group's that its sessions share, and
     * the grammar's vocabulary trie (built on the first constrained generation). */
    out->cost.bytes[MEMFIT_BUDGET_WORKSPACE] =
        plan.work_bytes + memfit_grammar_vocab_plan_bytes(info.n_vocab);
    out->max_batch = 0;
    out->max_image_size = 0;
    out->file_bytes = info.file_bytes;
    /* As memfit_llm_plan_for decides it (plan_for refused 0 above). */
    out->n_ctx =
        cfg->opts.n_ctx ? cfg->opts.n_ctx : (info.n_ctx_train < 4096 ? info.n_ctx_train : 4096);
    out->n_sessions = cfg->n_sessions;
    return MEMFIT_OK;
}

/* Frees what load made so far (the lock and condition are not part of it). */
static void loaded_free(struct llm_loaded *L)
{
    for (uint32_t i = 0; L->sessions && i < L->n_sessions; i++)
        memfit_llm_session_free(L->sessions[i]); /* a group's: no-op */
    memfit_llm_group_free(L->group);
    memfit_free(L->sessions);
    memfit_free(L->in_use);
    memfit_grammar_vocab_free(L->vocab); /* borrows the tokenizer: first */
    memfit_tokenizer_free(L->tok);
    memfit_llm_close(L->model);
    memfit_free(L->path);
    memfit_free(L);
}

static enum memfit_status llm_load(void *config, const char *path,
                                   const struct memfit_budget_cost *reserved, memfit_budget *budget,
                                   void **out)
{
    (void)reserved; /* the sessions are what the plan reserved; nothing more is taken */
    (void)budget;
    struct llm_config *cfg = config;
    struct llm_loaded *L = memfit_calloc(1, sizeof(*L));
    if (!L)
        return MEMFIT_E_NOMEM;
    L->path = memfit_strdup(path);
    enum memfit_status st = L->path ? MEMFIT_OK : MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = memfit_llm_open(path, &L->model);
    if (st == MEMFIT_OK)
        st = memfit_tokenizer_from_gguf(memfit_llm_tensors(L->model), &L->tok);
    if (st == MEMFIT_OK) {
        L->sessions = memfit_calloc(cfg->n_sessions, sizeof(*L->sessions));
        L->in_use = memfit_calloc(cfg->n_sessions, sizeof(*L->in_use));
        if (!L->sessions || !L->in_use)
            st = MEMFIT_E_NOMEM;
    }
    if (st == MEMFIT_OK && cfg->n_sessions > 1) {
        st = memfit_llm_group_create(L->model, &cfg->opts, cfg->n_sessions, &L->group);
        for (uint32_t i = 0; st == MEMFIT_OK && i < cfg->n_sessions; i++)
            L->sessions[L->n_sessions++] = memfit_llm_group_session(L->group, i);
    } else if (st == MEMFIT_OK) {
        st = memfit_llm_session_create(L->model, &cfg->opts, &L->sessions[0]);
        L->n_sessions += st == MEMFIT_OK;
    }
    if (st == MEMFIT_OK)
        L->n_ctx = memfit_llm_session_ctx(L->sessions[0]);
    if (st == MEMFIT_OK && pthread_mutex_init(&L->lock, NULL) != 0)
        st = memfit_fail(MEMFIT_E_NOMEM, "model '%s': cannot create a mutex", cfg->name);
    if (st == MEMFIT_OK && pthread_cond_init(&L->freed, NULL) != 0) {
        pthread_mutex_destroy(&L->lock);
        st = memfit_fail(MEMFIT_E_NOMEM, "model '%s': cannot create a condition", cfg->name);
    }
    if (st != MEMFIT_OK) {
        loaded_free(L);
        return st;
    }
    *out = L;
    return MEMFIT_OK;
}

static void llm_unload(void *config, void *loaded)
{
    (void)config;
    struct llm_loaded *L = loaded;
    char *path = L->path;
    L->path = NULL; /* kept past loaded_free: the file is unmapped only then */
    pthread_mutex_destroy(&L->lock);
    pthread_cond_destroy(&L->freed);
    loaded_free(L);
    mf_engine_drop_page_cache(path);
    memfit_free(path);
    memfit_heap_trim();
}

/* ---- Sessions ----------------------------------------------------------------------------- */

/* Takes a free session, waiting while all are in use; it comes back emptied. */
static memfit_llm_session *session_take(struct llm_loaded *L)
{
    pthread_mutex_lock(&L->lock);
    for (;;) {
        for (uint32_t i = 0; i < L->n_sessions; i++) {
            if (!L->in_use[i]) {
                L->in_use[i] = true;
                pthread_mutex_unlock(&L->lock);
                (void)memfit_llm_session_truncate(L->sessions[i], 0); /* 0 is always held */
                memfit_llm_session_join(L->sessions[i]);
                return L->sessions[i];
            }
        }
        pthread_cond_wait(&L->freed, &L->lock);
    }
}

static void session_give(struct llm_loaded *L, memfit_llm_session *s)
{
    memfit_llm_session_leave(s); /* the group's next step does not wait for it */
    pthread_mutex_lock(&L->lock);
    for (uint32_t i = 0; i < L->n_sessions; i++)
        if (L->sessions[i] == s)
            L->in_use[i] = false;
    pthread_cond_signal(&L->freed);
    pthread_mutex_unlock(&L->lock);
}

static enum memfit_status llm_llm(void *loaded, memfit_llm **model, const memfit_tokenizer **tok,
                                  uint32_t *n_ctx)
{
    struct llm_loaded *L = loaded;
    if (model)
        *model = L->model;
    if (tok)
        *tok = L->tok;
    if (n_ctx)
        *n_ctx = L->n_ctx;
    return MEMFIT_OK;
}

static enum memfit_status llm_session_acquire(void *loaded, memfit_llm_session **out)
{
    *out = session_take(loaded);
    return MEMFIT_OK;
}

static void llm_session_release(void *loaded, memfit_llm_session *s)
{
    if (s)
        session_give(loaded, s);
}

/* ---- Generation --------------------------------------------------------------------------- */

static void gen_free(struct llm_gen *g)
{
    memfit_generation_free(g->gen);
    if (g->session)
        session_give(g->loaded, g->session);
    memfit_grammar_matcher_free(g->matcher);
    memfit_free(g->ids);
    memfit_free(g);
}

/* The request's prompt as tokens: the conversation rendered with the model's
 * template (chat), or the prompt text with the BOS/EOS the model asks for. */
static enum memfit_status prompt_tokens(const memfit_tokenizer *tok,
                                        const struct memfit_generation_request *req, int32_t **ids,
                                        size_t *n_ids)
{
    if (!req->messages)
        return memfit_tokenizer_encode(tok, req->prompt ? req->prompt : "",
                                       req->prompt ? req->prompt_len : 0, true, true, ids, n_ids);
    enum memfit_chat_template tmpl;
    bool recognised; /* an unknown template falls back to ChatML */
    memfit_chat_template_detect(memfit_tokenizer_chat_template(tok), &tmpl, &recognised);
    char *text = NULL;
    enum memfit_status st = memfit_chat_render_tools(tmpl, req->messages, req->n_messages,
                                                     req->tools_json, true, &text);
    if (st == MEMFIT_OK)
        st = memfit_tokenizer_encode(tok, text, strlen(text), false, true, ids, n_ids);
    memfit_free(text);
    return st;
}

static enum memfit_status llm_generate_start(void *loaded,
                                             const struct memfit_generation_request *req,
                                             void **out_gen, uint32_t *out_prompt_tokens)
{
    struct llm_loaded *L = loaded;
    struct llm_gen *g = memfit_calloc(1, sizeof(*g));
    if (!g)
        return MEMFIT_E_NOMEM;
    g->loaded = L;
    size_t n_ids = 0;
    enum memfit_status st = prompt_tokens(L->tok, req, &g->ids, &n_ids);
    if (st == MEMFIT_E_FORMAT) /* text that is not UTF-8: the request's fault */
        st = memfit_fail(MEMFIT_E_INVALID, "%s", memfit_last_error());
    /* Checked before a session is taken: a request that cannot run never waits. */
    if (st == MEMFIT_OK && n_ids >= L->n_ctx)
        st = memfit_fail(MEMFIT_E_RANGE,
                         "the prompt is %zu tokens; the model's context holds %u (prompt and "
                         "completion)",
                         n_ids, L->n_ctx);
    if (st == MEMFIT_OK && n_ids == 0)
        st = memfit_fail(MEMFIT_E_INVALID, "the prompt is empty");
    if (st != MEMFIT_OK) {
        gen_free(g);
        return st;
    }
    if (req->grammar) {
        pthread_mutex_lock(&L->lock);
        if (!L->vocab)
            st = memfit_grammar_vocab_create(L->tok, &L->vocab);
        pthread_mutex_unlock(&L->lock);
        if (st == MEMFIT_OK)
            st = memfit_grammar_matcher_create(req->grammar, L->vocab, &g->matcher);
        if (st != MEMFIT_OK) {
            gen_free(g);
            return st;
        }
    }
    g->session = session_take(L);
    struct memfit_generate_params p = req->params;
    p.prompt = g->ids;
    p.n_prompt = n_ids;
    p.grammar = g->matcher;
    st = memfit_generation_start(g->session, L->tok, &p, &g->gen);
    if (st != MEMFIT_OK) {
        gen_free(g);
        return st;
    }
    if (out_prompt_tokens)
        *out_prompt_tokens = (uint32_t)n_ids;
    *out_gen = g;
    return MEMFIT_OK;
}

static enum memfit_status llm_generate_next(void *gen, const char **text, size_t *len, bool *done)
{
    return memfit_generation_next(((struct llm_gen *)gen)->gen, text, len, done);
}

static void llm_generate_tokens(const void *gen, const struct memfit_sampled_token **tokens,
                                size_t *n)
{
    memfit_generation_tokens(((const struct llm_gen *)gen)->gen, tokens, n);
}

static void llm_generate_prompt(const void *gen, const int32_t **tokens,
                                const struct memfit_token_score **scores, size_t *n)
{
    memfit_generation_prompt(((const struct llm_gen *)gen)->gen, tokens, scores, n);
}

static void llm_generate_end(void *gen, struct memfit_generate_result *result)
{
    struct llm_gen *g = gen;
    if (!g)
        return;
    if (result)
        memfit_generation_result(g->gen, result);
    gen_free(g);
}

/* ---- The families ------------------------------------------------------------------------- */

/* Qwen2 and LLaMA differ only in their names and what they detect. */
#define LLM_FAMILY(family_name, family_aliases, family_summary, detect_fn, config_create_fn)       \
    {                                                                                              \
        .info =                                                                                    \
            {                                                                                      \
                .name = family_name,                                                               \
                .aliases = family_aliases,                                                         \
                .summary = family_summary,                                                         \
                .options = "ctx, kv, threads, batch, parallel, quantize",                          \
                .ops = MEMFIT_ENGINE_OP_GENERATE,                                                  \
            },                                                                                     \
        .detect = detect_fn, .config_create = config_create_fn, .config_free = llm_config_free,    \
        .convert_type = llm_convert_type, .convert = llm_convert,                                  \
        .convert_estimate = llm_convert_estimate, .plan = llm_plan, .load = llm_load,              \
        .unload = llm_unload, .embed_size = NULL, .embed = NULL,                                   \
        .generate_start = llm_generate_start, .generate_next = llm_generate_next,                  \
        .generate_end = llm_generate_end, .generate_tokens = llm_generate_tokens, .llm = llm_llm,  \
        .llm_session_acquire = llm_session_acquire, .llm_session_release = llm_session_release,    \
        .generate_prompt = llm_generate_prompt, .vit = NULL,                                       \
    }

const struct mf_family mf_family_qwen2 = LLM_FAMILY(
    "qwen2", "llm", "Qwen2 / Qwen1.5 / Qwen2.5 chat and text models (GGUF): completions and chat",
    qwen2_detect, qwen2_config_create);

const struct mf_family mf_family_llama = LLM_FAMILY(
    "llama", "", "LLaMA 2 / 3 and other llama-architecture models (GGUF): completions and chat",
    llama_detect, llama_config_create);
