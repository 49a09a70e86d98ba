/*
 * Text generation: the loop that evaluates a prompt, samples tokens and
 * streams their text (memfit_llm_generate), and the same loop a step at a
 * time (memfit_generation_*) for callers that pull text, such as an HTTP
 * response written while the client reads it.
 *
 * Memory: everything a generation needs is allocated at its start (the
 * logits row, the prompt's scores when asked, the sampler's scratch, the
 * token history for the repetition penalty, the text filter's buffers), so
 * the loop itself allocates only when the text filter holds back a long
 * possible stop string, or when one step samples more tokens than the token
 * list holds (text held back).
 */
#include <string.h>

#include "memfit/models.h"
#include "models/textstream.h"

struct memfit_generation {
    memfit_llm_session *s;
    const memfit_tokenizer *tok;
    struct memfit_generate_params p;
    int32_t *prompt;
    uint32_t n_vocab;
    uint32_t n_ctx;
    float *logits;
    struct memfit_token_score *scores; /* prompt_logprobs: tokens 1.. of the prompt */
    memfit_token_sampler *smp;
    int32_t *history; /* the last repeat_last_n tokens, oldest first */
    size_t n_history, cap_history;
    struct mf_textstream ts;
    char *out; /* text made final by the current step */
    size_t out_len, out_cap;
    bool out_failed;
    bool prompt_done, done;
    struct memfit_sampled_token *toks; /* sampled by the current step */
    size_t n_toks, cap_toks;
    uint64_t t_start, t_prompt_end;
    struct memfit_generate_result result;
};

static bool collect(void *ctx, const char *text, size_t len)
{
    struct memfit_generation *g = ctx;
    if (g->out_len + len > g->out_cap) {
        size_t cap = (g->out_len + len) * 2;
        char *grown = memfit_realloc(g->out, cap);
        if (!grown) {
            g->out_failed = true;
            return false;
        }
        g->out = grown;
        g->out_cap = cap;
    }
    memcpy(g->out + g->out_len, text, len);
    g->out_len += len;
    return true;
}

void memfit_generation_free(memfit_generation *g)
{
    if (!g)
        return;
    mf_textstream_free(&g->ts);
    memfit_token_sampler_free(g->smp);
    memfit_free(g->prompt);
    memfit_free(g->logits);
    memfit_free(g->scores);
    memfit_free(g->history);
    memfit_free(g->out);
    memfit_free(g->toks);
    memfit_free(g);
}

enum memfit_status memfit_generation_start(memfit_llm_session *s, const memfit_tokenizer *tok,
                                           const struct memfit_generate_params *params,
                                           memfit_generation **out)
{
    enum memfit_status st = memfit_sampling_check(&params->sampling);
    if (st != MEMFIT_OK)
        return st;
    if (params->n_prompt == 0)
        return memfit_fail(MEMFIT_E_INVALID, "generate: the prompt has no tokens");
    if (params->top_logprobs > MEMFIT_MAX_TOP_LOGPROBS ||
        (params->top_logprobs && !params->sampling.logprobs && !params->prompt_logprobs))
        return memfit_fail(MEMFIT_E_RANGE,
                           "generate: top_logprobs %u needs logprobs (or prompt_logprobs) and is "
                           "at most %d",
                           params->top_logprobs, MEMFIT_MAX_TOP_LOGPROBS);
    struct memfit_llm_info info;
    memfit_llm_get_info(memfit_llm_session_model(s), &info);
    struct memfit_tokenizer_info ti;
    memfit_tokenizer_get_info(tok, &ti);
    if (ti.n_vocab > info.n_vocab)
        return memfit_fail(MEMFIT_E_INVALID,
                           "generate: the tokenizer has %u tokens, the model's embedding %u",
                           ti.n_vocab, info.n_vocab);
    uint32_t n_ctx = memfit_llm_session_ctx(s);
    uint32_t pos = memfit_llm_session_pos(s);
    if (params->n_prompt > (size_t)(n_ctx - pos))
        return memfit_fail(MEMFIT_E_RANGE,
                           "generate: the prompt is %zu tokens; the context holds %u (%u in use)",
                           params->n_prompt, n_ctx, pos);
    memfit_generation *g = memfit_calloc_in(MEMFIT_ALLOC_MODEL, 1, sizeof(*g));
    if (!g)
        return MEMFIT_E_NOMEM;
    g->s = s;
    g->tok = tok;
    g->p = *params;
    g->p.stop = NULL;
    g->p.n_stop = 0;
    g->n_vocab = info.n_vocab;
    g->n_ctx = n_ctx;
    g->cap_history = params->sampling.repeat_last_n ? params->sampling.repeat_last_n : 1;
    g->prompt = memfit_malloc_in(MEMFIT_ALLOC_MODEL, params->n_prompt * sizeof(int32_t));
    g->logits = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (size_t)info.n_vocab * sizeof(float));
    g->history = memfit_malloc_in(MEMFIT_ALLOC_MODEL, g->cap_history * sizeof(int32_t));
    g->cap_toks = 8;
    g->toks = memfit_malloc_in(MEMFIT_ALLOC_MODEL, g->cap_toks * sizeof(*g->toks));
    if (params->prompt_logprobs && params->n_prompt > 1) /* the one allocation scoring needs */
        g->scores =
            memfit_malloc_in(MEMFIT_ALLOC_MODEL, (params->n_prompt - 1) * sizeof(*g->scores));
    st = g->prompt && g->logits && g->history && g->toks &&
                 (g->scores || !params->prompt_logprobs || params->n_prompt == 1)
             ? MEMFIT_OK
             : MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = memfit_token_sampler_create(&params->sampling, info.n_vocab, &g->smp);
    if (st == MEMFIT_OK)
        st = mf_textstream_init(&g->ts, params->stop, params->n_stop);
    if (st != MEMFIT_OK) {
        memfit_generation_free(g);
        return st;
    }
    memcpy(g->prompt, params->prompt, params->n_prompt * sizeof(int32_t));
    g->p.prompt = g->prompt;
    /* The penalty looks back over the prompt's end too. */
    size_t from = params->n_prompt > g->cap_history ? params->n_prompt - g->cap_history : 0;
    for (size_t i = from; i < params->n_prompt; i++)
        g->history[g->n_history++] = params->prompt[i];
    g->result.finish = MEMFIT_FINISH_CANCELLED;
    *out = g;
    return MEMFIT_OK;
}

static void remember(memfit_generation *g, int32_t id)
{
    if (g->n_history == g->cap_history) {
        memmove(g->history, g->history + 1, (g->n_history - 1) * sizeof(int32_t));
        g->n_history--;
    }
    g->history[g->n_history++] = id;
}

static enum memfit_status finish(memfit_generation *g, enum memfit_finish why)
{
    bool stopped = false;
    enum memfit_status st = mf_textstream_finish(&g->ts, collect, g, &stopped);
    g->done = true;
    g->result.finish = stopped ? MEMFIT_FINISH_STOP : why;
    g->result.generate_seconds = (double)(memfit_now_ns() - g->t_prompt_end) / 1e9;
    return st == MEMFIT_E_CANCELLED && g->out_failed ? MEMFIT_E_NOMEM : st;
}

/* Lists a sampled token, with its logprobs when asked (the logits as the sampler left them). */
static enum memfit_status record(memfit_generation *g, int32_t id)
{
    if (g->n_toks == g->cap_toks) {
        size_t cap = g->cap_toks * 2;
        struct memfit_sampled_token *grown = memfit_realloc(g->toks, cap * sizeof(*grown));
        if (!grown)
            return MEMFIT_E_NOMEM;
        g->toks = grown;
        g->cap_toks = cap;
    }
    struct memfit_sampled_token *t = &g->toks[g->n_toks];
    t->token = id;
    t->t_ns = memfit_now_ns();
    t->logprob = 0.0f;
    t->n_top = 0;
    if (g->p.sampling.logprobs) {
        enum memfit_status st = memfit_token_sampler_logprobs(
            g->smp, g->logits, id, g->p.top_logprobs, &t->logprob, t->top, &t->n_top);
        if (st != MEMFIT_OK)
            return st;
    }
    g->n_toks++;
    return MEMFIT_OK;
}

/* One token: sample it, stream its text, and evaluate it unless the end came. */
static enum memfit_status step(memfit_generation *g)
{
    int32_t id;
    enum memfit_status st;
    if (g->p.grammar) { /* the grammar hook: forbidden tokens at -inf before sampling */
        bool must_end;
        st = memfit_grammar_matcher_mask_logits(g->p.grammar, g->logits, g->n_vocab, &must_end);
        if (st != MEMFIT_OK)
            return st;
        if (must_end)
            return finish(g, MEMFIT_FINISH_STOP);
    }
    st = memfit_token_sampler_sample(g->smp, g->logits, g->history, g->n_history, &id);
    if (st != MEMFIT_OK)
        return st;
    if (memfit_tokenizer_is_eog(g->tok, id))
        return finish(g, MEMFIT_FINISH_STOP);
    if (g->p.grammar && (st = memfit_grammar_matcher_accept_token(g->p.grammar, id)) != MEMFIT_OK)
        return st;
    if ((st = record(g, id)) != MEMFIT_OK)
        return st;
    g->result.n_generated++;
    remember(g, id);
    const char *piece;
    size_t len;
    if ((st = memfit_tokenizer_piece(g->tok, id, false, &piece, &len)) != MEMFIT_OK)
        return st;
    bool stopped = false;
    st = mf_textstream_push(&g->ts, piece, len, collect, g, &stopped);
    if (st != MEMFIT_OK)
        return g->out_failed ? MEMFIT_E_NOMEM : st;
    if (stopped) {
        g->done = true;
        g->result.finish = MEMFIT_FINISH_STOP;
        g->result.generate_seconds = (double)(memfit_now_ns() - g->t_prompt_end) / 1e9;
        return MEMFIT_OK;
    }
    if (g->p.max_tokens && g->result.n_generated >= g->p.max_tokens)
        return finish(g, MEMFIT_FINISH_LENGTH);
    if (memfit_llm_session_pos(g->s) >= g->n_ctx)
        return finish(g, MEMFIT_FINISH_LENGTH);
    return memfit_llm_eval(g->s, &id, 1, g->logits, false);
}

enum memfit_status memfit_generation_next(memfit_generation *g, const char **text, size_t *len,
                                          bool *done)
{
    g->out_len = 0;
    g->n_toks = 0;
    enum memfit_status st = MEMFIT_OK;
    if (!g->prompt_done && !g->done) {
        g->t_start = memfit_now_ns();
        if (g->p.prompt_logprobs)
            st = memfit_llm_eval_score(g->s, g->p.prompt, g->p.n_prompt, g->logits,
                                       g->p.top_logprobs, g->scores);
        else
            st = memfit_llm_eval(g->s, g->p.prompt, g->p.n_prompt, g->logits, false);
        g->t_prompt_end = memfit_now_ns();
        if (st != MEMFIT_OK)
            return st;
        g->prompt_done = true;
        g->result.n_prompt = (uint32_t)g->p.n_prompt;
        g->result.prompt_seconds = (double)(g->t_prompt_end - g->t_start) / 1e9;
        if (g->p.prompt_only)
            st = finish(g, MEMFIT_FINISH_LENGTH);
    }
    while (st == MEMFIT_OK && !g->done && g->out_len == 0)
        st = step(g);
    if (st != MEMFIT_OK)
        return st;
    *text = g->out ? g->out : "";
    *len = g->out_len;
    *done = g->done;
    return MEMFIT_OK;
}

void memfit_generation_result(const memfit_generation *g, struct memfit_generate_result *out)
{
    *out = g->result;
}

void memfit_generation_tokens(const memfit_generation *g,
                              const struct memfit_sampled_token **tokens, size_t *n)
{
    *tokens = g->toks;
    *n = g->n_toks;
}

void memfit_generation_prompt(const memfit_generation *g, const int32_t **tokens,
                              const struct memfit_token_score **scores, size_t *n_prompt)
{
    *tokens = g->prompt;
    *scores = g->prompt_done ? g->scores : NULL;
    *n_prompt = g->p.n_prompt;
}

enum memfit_status memfit_llm_generate(memfit_llm_session *s, const memfit_tokenizer *tok,
                                       const struct memfit_generate_params *params,
                                       memfit_generate_fn fn, void *ctx,
                                       struct memfit_generate_result *result)
{
    memfit_generation *g;
    enum memfit_status st = memfit_generation_start(s, tok, params, &g);
    if (st != MEMFIT_OK)
        return st;
    for (bool done = false; !done && st == MEMFIT_OK;) {
        const char *text;
        size_t len;
        st = memfit_generation_next(g, &text, &len, &done);
        if (st == MEMFIT_OK && len && !fn(ctx, text, len))
            break; /* cancelled: the result says so */
    }
    if (result)
        memfit_generation_result(g, result);
    memfit_generation_free(g);
    return st;
}
