/*
 * Configuration lookup: environment > alias names > `.env` file.
 *
 * Existing deployments configure memory limits and caches with names such as
 * MAX_MEMORY_USAGE_MB; memfit reads its own MEMFIT_* names first and those
 * aliases after, so a deployment can switch without renaming its settings.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memfit/core.h"

struct alias {
    const char *name;
    const char *alias;
};

static const struct alias aliases[] = {
    {"MEMFIT_MAX_MEMORY_MB", "MAX_MEMORY_USAGE_MB"},
    {"MEMFIT_ENABLE_MODEL_UNLOADING", "ENABLE_MODEL_UNLOADING"},
    {"MEMFIT_CACHE_DIR", "LOCAL_CACHE_DIR"},
    {"MEMFIT_LOG_LEVEL", "LOG_LEVEL"},
    {"MEMFIT_OFFLINE", "HF_HUB_OFFLINE"},
};

struct entry {
    char *key;
    char *value;
};

static struct entry *dotenv;
static size_t n_dotenv;

static const char *dotenv_get(const char *key)
{
    for (size_t i = 0; i < n_dotenv; i++)
        if (strcmp(dotenv[i].key, key) == 0)
            return dotenv[i].value;
    return NULL;
}

static const char *alias_of(const char *name)
{
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strcmp(aliases[i].name, name) == 0)
            return aliases[i].alias;
    return NULL;
}

const char *memfit_config_find(const char *name, const char **found_name,
                               enum memfit_config_origin *origin)
{
    const char *alias = alias_of(name);
    struct {
        const char *name;
        enum memfit_config_origin origin;
    } const order[] = {{name, MEMFIT_CONFIG_ENVIRONMENT},
                       {alias, MEMFIT_CONFIG_ENVIRONMENT},
                       {name, MEMFIT_CONFIG_DOTENV},
                       {alias, MEMFIT_CONFIG_DOTENV}};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (!order[i].name)
            continue;
        const char *v = order[i].origin == MEMFIT_CONFIG_ENVIRONMENT ? getenv(order[i].name)
                                                                     : dotenv_get(order[i].name);
        if (v) {
            if (found_name)
                *found_name = order[i].name;
            if (origin)
                *origin = order[i].origin;
            return v;
        }
    }
    return NULL;
}

const char *memfit_config_get(const char *name)
{
    return memfit_config_find(name, NULL, NULL);
}

const char *memfit_config_origin_name(enum memfit_config_origin origin)
{
    return origin == MEMFIT_CONFIG_ENVIRONMENT ? "environment"
           : origin == MEMFIT_CONFIG_DOTENV    ? ".env"
                                               : "unset";
}

static void free_entries(struct entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        memfit_free(entries[i].key);
        memfit_free(entries[i].value);
    }
    memfit_free(entries);
}

void memfit_config_reset(void)
{
    free_entries(dotenv, n_dotenv);
    dotenv = NULL;
    n_dotenv = 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/*
 * Parses the value part of a line in place. Double quotes understand \n, \t,
 * \" and \\; single quotes are literal; an unquoted value ends at " #".
 * Returns NULL on an unterminated quote.
 */
static char *parse_value(char *v)
{
    if (*v == '"' || *v == '\'') {
        char quote = *v++;
        char *out = v, *in = v;
        while (*in && *in != quote) {
            if (quote == '"' && *in == '\\' && in[1]) {
                in++;
                *out++ = *in == 'n' ? '\n' : *in == 't' ? '\t' : *in;
                in++;
            } else {
                *out++ = *in++;
            }
        }
        if (*in != quote)
            return NULL;
        const char *rest = in + 1;
        while (*rest == ' ' || *rest == '\t')
            rest++;
        if (*rest && *rest != '#')
            return NULL;
        *out = '\0';
        return v;
    }
    char *hash = strstr(v, " #");
    if (hash)
        *hash = '\0';
    return trim(v);
}

static bool valid_key(const char *k)
{
    if (!(isalpha((unsigned char)*k) || *k == '_'))
        return false;
    for (; *k; k++)
        if (!(isalnum((unsigned char)*k) || *k == '_'))
            return false;
    return true;
}

enum memfit_status memfit_config_load_dotenv(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT) {
            memfit_config_reset();
            return MEMFIT_OK;
        }
        return memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(errno));
    }
    struct entry *entries = NULL;
    size_t n = 0, cap = 0;
    enum memfit_status st = MEMFIT_OK;
    char line[4096];
    unsigned lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            st = memfit_fail(MEMFIT_E_FORMAT, "%s:%u: line longer than %zu bytes", path, lineno,
                             sizeof(line) - 1);
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        if (strncmp(s, "export ", 7) == 0)
            s = trim(s + 7);
        char *eq = strchr(s, '=');
        if (!eq) {
            st = memfit_fail(MEMFIT_E_FORMAT, "%s:%u: expected KEY=VALUE", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = parse_value(trim(eq + 1));
        if (!valid_key(key)) {
            st = memfit_fail(MEMFIT_E_FORMAT, "%s:%u: invalid name '%s'", path, lineno, key);
            break;
        }
        if (!value) {
            st = memfit_fail(MEMFIT_E_FORMAT, "%s:%u: unterminated quote in value of %s", path,
                             lineno, key);
            break;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct entry *grown = memfit_realloc(entries, ncap * sizeof(*entries));
            if (!grown) {
                st = MEMFIT_E_NOMEM;
                break;
            }
            entries = grown;
            cap = ncap;
        }
        char *k = memfit_strdup(key);
        char *v = memfit_strdup(value);
        if (!k || !v) {
            memfit_free(k);
            memfit_free(v);
            st = MEMFIT_E_NOMEM;
            break;
        }
        entries[n].key = k;
        entries[n].value = v;
        n++;
    }
    if (st == MEMFIT_OK && ferror(f))
        st = memfit_fail(MEMFIT_E_IO, "%s: read error", path);
    fclose(f);
    if (st != MEMFIT_OK) {
        free_entries(entries, n);
        return st;
    }
    memfit_config_reset();
    dotenv = entries;
    n_dotenv = n;
    return MEMFIT_OK;
}
