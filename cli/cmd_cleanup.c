/*
 * `memfit cleanup`: asks a running `memfit serve` to give memory back
 * (POST /api/cleanup: unload idle models, trim the heap, drop the page cache
 * of weight files no model has loaded) and prints what it freed. A plain
 * HTTP/1.1 request over a socket: the command talks to its own server,
 * usually on loopback, and needs no HTTP library.
 */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"

const char cmd_cleanup_help[] =
    "Usage: memfit cleanup [--url URL] [--timeout DURATION]\n"
    "\n"
    "Asks a running `memfit serve` to free memory now: it unloads idle models,\n"
    "returns freed heap to the system (malloc_trim) and drops the page cache of\n"
    "weight files no loaded model uses. Prints the server's JSON answer.\n"
    "\n"
    "Options:\n"
    "  --url URL            the server (default http://127.0.0.1:8080; http only)\n"
    "  --timeout DURATION   give up after this long (default 30s)\n"
    "\n"
    "MEMFIT_API_KEY is sent as \"Authorization: Bearer KEY\" when set.\n"
    "\n"
    "Exit status: 0 success, 1 failure (no server, or an error answer), 2 usage error.\n";

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

int cmd_cleanup(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, cmd_cleanup_help))
        return CLI_EXIT_OK;
    const char *url = "http://127.0.0.1:8080";
    uint64_t timeout_ns = 30ull * 1000000000u;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strncmp(argv[i], "--url=", 6) == 0)
            url = argv[i] + 6;
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            if (!cli_opt_duration("cleanup", "--timeout", argv[++i], &timeout_ns))
                return CLI_EXIT_USAGE;
        } else
            return cli_usage("cleanup", "unknown argument '%s'", argv[i]);
    }
    char host[256], port[16];
    if (!parse_url(url, host, sizeof(host), port, sizeof(port)))
        return cli_usage("cleanup", "--url %s: expected http://HOST[:PORT]", url);

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0)
        return cli_fail("cleanup: %s: %s", host, gai_strerror(gai));
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
    if (fd < 0)
        return cli_fail("cleanup: cannot connect to %s: is `memfit serve` running?", url);
    const char *key = memfit_config_get("MEMFIT_API_KEY");
    char *request = memfit_asprintf("POST /api/cleanup HTTP/1.1\r\nHost: %s:%s\r\n"
                                    "Content-Type: application/json\r\nContent-Length: 0\r\n"
                                    "Connection: close\r\n%s%s%s\r\n",
                                    host, port, key && key[0] ? "Authorization: Bearer " : "",
                                    key && key[0] ? key : "", key && key[0] ? "\r\n" : "");
    if (!request) {
        close(fd);
        return cli_fail_status(MEMFIT_E_NOMEM);
    }
    size_t len = strlen(request), sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    memset(request, 0, len);
    memfit_free(request);
    char buf[65536];
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == sizeof(buf) - 1)
            break;
    }
    close(fd);
    buf[got] = '\0';
    int status = 0;
    if (sent < len || sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return cli_fail("cleanup: no answer from %s", url);
    const char *body = strstr(buf, "\r\n\r\n");
    body = body ? body + 4 : "";
    fputs(body, status == 200 ? stdout : stderr);
    if (status != 200)
        return cli_fail("cleanup: the server answered %d", status);
    return CLI_EXIT_OK;
}
