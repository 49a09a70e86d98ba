/*
 * A minimal HTTP/1.1 client for the commands that talk to `memfit serve`
 * (server_client.h): one request per connection (Connection: close), the
 * answer read to its end, a chunked body decoded.
 */
#include "server_client.h"

#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"

/* At most this much of an answer is read: the server's answers are small. */
#define ANSWER_MAX (16u << 20)

const char *cli_server_default_url(void)
{
    const char *url = memfit_config_get("MEMFIT_URL");
    return url && url[0] ? url : "http://127.0.0.1:8080";
}

/* Splits "http://host[:port][/...]" into host and port. */
static bool parse_url(const char *url, char *host, size_t host_size, char *port, size_t port_size)
{
    if (strncmp(url, "http://", 7) != 0)
        return false;
    const char *h = url + 7, *end = h + strcspn(h, "/");
    const char *colon = NULL;
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close)
            return false;
        colon = close[1] == ':' ? close + 1 : NULL;
        if ((size_t)(close - h - 1) >= host_size)
            return false;
        memcpy(host, h + 1, (size_t)(close - h - 1));
        host[close - h - 1] = '\0';
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        const char *hend = colon ? colon : end;
        if (hend == h || (size_t)(hend - h) >= host_size)
            return false;
        memcpy(host, h, (size_t)(hend - h));
        host[hend - h] = '\0';
    }
    if (colon) {
        size_t n = (size_t)(end - colon - 1);
        if (n == 0 || n >= port_size)
            return false;
        memcpy(port, colon + 1, n);
        port[n] = '\0';
    } else {
        snprintf(port, port_size, "80");
    }
    return true;
}

static int connect_to(const char *host, const char *port, uint64_t timeout_ns)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {(time_t)(timeout_ns / 1000000000u),
                             (suseconds_t)(timeout_ns % 1000000000u / 1000u)};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

static bool send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads to the end of the stream; NULL on a read error or no memory. */
static char *read_all(int fd, size_t *out_len)
{
    size_t cap = 65536, len = 0;
    char *buf = memfit_malloc(cap);
    while (buf) {
        if (len + 1 == cap) {
            if (cap >= ANSWER_MAX)
                break;
            char *grown = memfit_realloc(buf, cap * 2);
            if (!grown) {
                memfit_free(buf);
                return NULL;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n < 0) {
            memfit_free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (buf)
        buf[len] = '\0';
    *out_len = len;
    return buf;
}

/* Decodes a chunked body in place; false when it is malformed. */
static bool dechunk(char *body, size_t *len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long n = strtoul(body + in, &end, 16);
        char *line_end = strstr(body + in, "\r\n");
        if (end == body + in || !line_end)
            return false;
        in = (size_t)(line_end - body) + 2;
        if (n == 0)
            break;
        if (n > *len - in)
            return false;
        memmove(body + out, body + in, n);
        out += n;
        in += n + 2;
        if (in > *len)
            return false;
    }
    body[out] = '\0';
    *len = out;
    return true;
}

int cli_server_call(const char *command, const char *url, const char *method, const char *path,
                    const char *json_body, uint64_t timeout_ns, struct cli_answer *out)
{
    *out = (struct cli_answer){0};
    char host[256], port[16];
    if (!parse_url(url, host, sizeof(host), port, sizeof(port)))
        return cli_usage(command, "--url %s: expected http://HOST[:PORT]", url);
    int fd = connect_to(host, port, timeout_ns);
    if (fd < 0)
        return cli_fail("%s: cannot connect to %s: is `memfit serve` running?", command, url);
    const char *key = memfit_config_get("MEMFIT_API_KEY");
    bool with_key = key && key[0];
    size_t body_len = json_body ? strlen(json_body) : 0;
    bool v6 = strchr(host, ':') != NULL;
    char *request = memfit_asprintf(
        "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nAccept: application/json\r\n"
        "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n%s%s%s\r\n",
        method, path, v6 ? "[" : "", host, v6 ? "]" : "", port, body_len,
        with_key ? "Authorization: Bearer " : "", with_key ? key : "", with_key ? "\r\n" : "");
    if (!request) {
        close(fd);
        return cli_fail_status(MEMFIT_E_NOMEM);
    }
    size_t request_len = strlen(request);
    bool sent = send_all(fd, request, request_len) && send_all(fd, json_body, body_len);
    memset(request, 0, request_len); /* it holds the API key */
    memfit_free(request);
    size_t len = 0;
    char *answer = sent ? read_all(fd, &len) : NULL;
    close(fd);
    int status = 0;
    char *head_end = answer ? strstr(answer, "\r\n\r\n") : NULL;
    if (!answer || !head_end || sscanf(answer, "HTTP/1.%*d %d", &status) != 1) {
        memfit_free(answer);
        return cli_fail("%s: no answer from %s", command, url);
    }
    *head_end = '\0';
    bool chunked = strcasestr(answer, "\r\ntransfer-encoding: chunked") != NULL;
    size_t body_at = (size_t)(head_end - answer) + 4;
    len -= body_at;
    memmove(answer, answer + body_at, len + 1);
    if (chunked && !dechunk(answer, &len)) {
        memfit_free(answer);
        return cli_fail("%s: a malformed chunked answer from %s", command, url);
    }
    *out = (struct cli_answer){.status = status, .body = answer, .length = len};
    return CLI_EXIT_OK;
}

int cli_server_failed(const char *command, const char *url, const struct cli_answer *a)
{
    json_t *root = json_loadb(a->body ? a->body : "", a->length, 0, NULL);
    json_t *error = json_object_get(root, "error");
    const char *message = json_string_value(json_object_get(error, "message"));
    if (!message)
        message = json_string_value(error); /* the v2 protocol's {"error": "..."} */
    int rc = cli_fail("%s: %s answered %d: %s", command, url, a->status,
                      message ? message : (a->body && a->body[0] ? a->body : "(no body)"));
    json_decref(root);
    return rc;
}

const struct cli_option cli_server_options[] = {
    {"url", 0, CLI_ARG_REQUIRED, CLI_SERVER_OPT_URL},
    {"json", 0, CLI_ARG_NONE, CLI_SERVER_OPT_JSON},
    {"timeout", 0, CLI_ARG_REQUIRED, CLI_SERVER_OPT_TIMEOUT},
    {0},
};

int cli_server_option(const char *command, const struct cli_args *a, int id,
                      struct cli_server_opts *o)
{
    switch (id) {
    case CLI_SERVER_OPT_URL:
        o->url = a->value;
        return CLI_EXIT_OK;
    case CLI_SERVER_OPT_JSON:
        o->json = true;
        return CLI_EXIT_OK;
    case CLI_SERVER_OPT_TIMEOUT:
        return cli_opt_duration(command, a->name, a->value, &o->timeout_ns) ? CLI_EXIT_OK
                                                                            : CLI_EXIT_USAGE;
    default:
        return cli_usage(command, "internal error: option %d", id);
    }
}

/* PATH-safe copy of a model name: unreserved characters kept, the rest %XX. */
static char *escape_name(const char *name)
{
    char *out = memfit_malloc(strlen(name) * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p))
            *o++ = (char)*p;
        else
            o += sprintf(o, "%%%02X", *p); /* lint: allow: 3 bytes, room counted above */
    }
    *o = '\0';
    return out;
}

int cli_model_control(const char *command, const char *action, const char *help, int argc,
                      char **argv)
{
    /* a load may download first */
    struct cli_server_opts o = {cli_server_default_url(), 600ull * 1000000000u, false};
    struct cli_args args;
    cli_args_init(&args, command, help, argc, argv, 0, CLI_TABLES(cli_server_options));
    int id;
    while ((id = cli_args_next(&args)) > 0)
        if (cli_server_option(command, &args, id, &o) != CLI_EXIT_OK)
            return CLI_EXIT_USAGE;
    if (id < 0)
        return args.status;
    if (args.n_operands > 1)
        return cli_usage(command, "one model at a time ('%s' and '%s')", args.operands[0],
                         args.operands[1]);
    const char *name = cli_args_operand(&args, 0);
    if (!name || !name[0])
        return cli_usage(command, "which model? (memfit ps lists them)");
    char *escaped = escape_name(name);
    char *path = escaped ? memfit_asprintf("/api/models/%s/%s", escaped, action) : NULL;
    memfit_free(escaped);
    if (!path)
        return cli_fail_status(MEMFIT_E_NOMEM);
    uint64_t t0 = memfit_now_ns();
    struct cli_answer a;
    int rc = cli_server_call(command, o.url, "POST", path, NULL, o.timeout_ns, &a);
    memfit_free(path);
    if (rc != CLI_EXIT_OK)
        return rc;
    json_t *root = a.status == 200 ? json_loadb(a.body, a.length, 0, NULL) : NULL;
    if (a.status != 200) {
        rc = cli_server_failed(command, o.url, &a);
    } else if (o.json) {
        printf("%s\n", a.body);
    } else {
        const char *state = json_string_value(json_object_get(root, "state"));
        json_t *bytes = json_object_get(root, "bytes");
        char size[32];
        printf("%s: %s, %s reserved (%.2f s)\n", name, state ? state : "?",
               memfit_format_size(json_is_integer(bytes) ? (uint64_t)json_integer_value(bytes) : 0,
                                  size, sizeof(size)),
               (double)(memfit_now_ns() - t0) / 1e9);
    }
    json_decref(root);
    memfit_free(a.body);
    return rc;
}
