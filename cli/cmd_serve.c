/*
 * `memfit serve`: the HTTP daemon (include/memfit/server.h). This file
 * parses the options, blocks the signals the server waits for, prints the
 * address it listens on (tests read it when --port 0 picks a free one) and
 * serves until SIGTERM or SIGINT.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__ /* defined by the headers above */
#include <malloc.h>
#endif

#include "cli.h"

const char cmd_serve_help[] =
    "Usage: memfit serve [OPTIONS] [MODEL...]\n"
    "\n"
    "Serves models over HTTP within a memory budget: OpenAI embeddings\n"
    "(POST /v1/embeddings), completions and chat (POST /v1/completions,\n"
    "/v1/chat/completions), SAM segmentation (POST /api/segment), GET\n"
    "/v1/models[/NAME], model control (GET /api/models,\n"
    "POST /api/models/NAME/load|unload), memory (GET /api/memory, POST\n"
    "/api/cleanup, GET /api/events), GET /health, GET /ready, GET /metrics\n"
    "(Prometheus), a dashboard at GET /, and KServe's Open Inference Protocol v2\n"
    "(GET /v2, /v2/health/live|ready, /v2/models/NAME[/ready], POST\n"
    "/v2/models/NAME/infer, /v2/repository/index, .../models/NAME/load|unload).\n"
    "See docs/server.md.\n"
    "\n"
    "Models come from the manifest (--manifest, or ./memfit.yaml when present;\n"
    "docs/manifest.md) and from MODEL arguments: paths or source URIs (s3://,\n"
    "https://, hf://ORG/REPO/FILE, file://), each served under its file name\n"
    "without the extension (s3://bucket/dino.pth -> \"dino\"), the family\n"
    "detected from its header (read with Range requests for a remote file).\n"
    "Every model is fetched into the cache and loaded on first use, within the\n"
    "budget. Families:\n"
    "@FAMILIES@\n"
    "\n"
    "Options:\n"
    "  --host ADDR            address to listen on (default 127.0.0.1; MEMFIT_HOST)\n"
    "  --port N               port (default 8080; 0 = any free port; MEMFIT_PORT, else\n"
    "                         PORT as Render/Cloud Run/Heroku set it, then on 0.0.0.0)\n"
    "  --manifest FILE        the manifest (default memfit.yaml when present)\n"
    "  --budget SIZE          memory budget (default: manifest, MEMFIT_MAX_MEMORY_MB,\n"
    "                         or 80% of the container limit / physical memory)\n"
    "  --max-body SIZE        largest request body (default 32MiB; larger: 413)\n"
    "  --max-header SIZE      memory per connection for headers (default 32KiB)\n"
    "  --timeout DURATION     close connections idle that long (default 30s)\n"
    "  --header-timeout S     a request's line and headers must arrive within S\n"
    "                         seconds of the connection's start or of the previous\n"
    "                         request's end (default 10; slow clients are closed)\n"
    "  --request-timeout S    its head and body within S seconds (default 60;\n"
    "                         answers and streams have no deadline)\n"
    "  --max-connections N    requests in progress at once (default 256); up to 2N\n"
    "                         connections are accepted, requests beyond N get 503\n"
    "                         (/health, /ready, /metrics are always answered)\n"
    "  --max-client-connections N\n"
    "                         connections of one client address (default 64; 0 = no\n"
    "                         limit, e.g. behind a proxy); requests beyond get 429\n"
    "  --max-queue N          model requests admitted at once (default 64;\n"
    "                         more get 429 with Retry-After)\n"
    "  --max-inputs N         inputs per embedding request (default 256)\n"
    "  --parallel N           requests each model named on the command line runs at\n"
    "                         once (its max_concurrency; default unlimited): for an\n"
    "                         LLM, N sessions whose decoding steps are batched\n"
    "  --max-pixels N         pixels of all the images of one request (default\n"
    "                         64000000; decoded images take 3 bytes a pixel)\n"
    "  --max-decode-time T    wall-clock budget of decoding one image (default 2s;\n"
    "                         0: none); past it: 400 invalid_image\n"
    "  --grace DURATION       on SIGTERM/SIGINT, time to finish requests (default 10s)\n"
    "  --drain-delay D        on SIGTERM/SIGINT, first answer /ready 503 and keep serving\n"
    "                         for D (default 0; MEMFIT_DRAIN_DELAY), then --grace\n"
    "  --grpc-port N          also serve gRPC on --host:N (0 = any free port): KServe\n"
    "                         ModelMesh's model runtime (mmesh.ModelRuntime) and the\n"
    "                         v2 inference service (inference.GRPCInferenceService);\n"
    "                         needs libgrpc29 (docs/server.md, \"ModelMesh (gRPC)\")\n"
    "  --grpc-socket PATH     the same on a unix socket (ModelMesh's sidecar)\n"
    "  --gpu                  include GPUs (NVML) in /api/memory and /metrics\n"
    "  --allow-host NAME      also answer Host: NAME when bound to loopback (repeatable;\n"
    "                         MEMFIT_ALLOW_HOSTS=a,b); others get 403 (DNS rebinding)\n"
    "  --allow-origin ORIGIN  let pages of ORIGIN (e.g. http://app.example:3000, or *)\n"
    "                         call the API with CORS (repeatable; MEMFIT_ALLOW_ORIGINS=a,b);\n"
    "                         other cross-site Origins get 403\n"
    "  --require-key          refuse to start on a non-loopback --host without\n"
    "                         MEMFIT_API_KEY (otherwise: a warning)\n"
    "\n"
    "MEMFIT_API_KEY set: every route but /health and /v2/health/live needs\n"
    "\"Authorization: Bearer KEY\".\n"
    "POST routes need \"Content-Type: application/json\" (otherwise 415).\n"
    "The log goes to stderr, at MEMFIT_LOG_LEVEL (default info for serve: the\n"
    "budget and where it came from, downloads with their progress, loads, unloads).\n"
    "SIGHUP reloads the manifest. Prints \"listening on http://HOST:PORT\" once ready\n"
    "(with MEMFIT_LOG_FORMAT=json: a JSON log record whose \"msg\" is that line).\n"
    "MEMFIT_FAULT_ALLOC=every=N|after=N|random=PERCENT[,seed=S] (testing only) makes\n"
    "allocations fail on that schedule once the server listens; SIGUSR2 turns it\n"
    "off and on (docs/server.md).\n"
    "\n"
    "Exit status: 0 after a graceful stop, 1 failure, 2 usage error.\n";

/*
 * Appends the comma-separated names of the environment variable `name` to
 * `list` (a copy of the value is kept in `*owned`, split in place).
 */
static bool env_list(const char *name, const char **list, size_t *n, char **owned)
{
    const char *v = memfit_config_get(name);
    if (!v || !v[0])
        return true;
    if (!(*owned = memfit_strdup(v)))
        return false;
    for (char *p = *owned, *next; p; p = next) {
        next = strchr(p, ',');
        if (next)
            *next++ = '\0';
        while (*p == ' ')
            p++;
        size_t len = strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            p[--len] = '\0';
        if (*p)
            list[(*n)++] = p;
    }
    return true;
}

static size_t count_commas(const char *name)
{
    const char *v = memfit_config_get(name);
    size_t n = 0;
    for (; v && *v; v++)
        n += *v == ',';
    return n;
}

static void on_sigusr2(int sig)
{
    (void)sig;
    memfit_alloc_faults_toggle();
}

/*
 * MEMFIT_FAULT_ALLOC, the allocation failure schedule for testing the daemon:
 * 0 when unset, 1 when set (*faults filled), -1 when malformed (reported).
 */
static int fault_schedule(struct memfit_alloc_faults *faults)
{
    const char *v = memfit_config_get("MEMFIT_FAULT_ALLOC");
    if (!v || !v[0])
        return 0;
    if (memfit_alloc_faults_parse(v, faults) != MEMFIT_OK) {
        cli_usage("serve", "MEMFIT_FAULT_ALLOC: %s", memfit_last_error());
        return -1;
    }
    return 1;
}

/* Arms the schedule once the server listens, so that the start itself succeeds. */
static void arm_faults(const struct memfit_alloc_faults *faults)
{
    memfit_log(MEMFIT_LOG_WARN,
               "MEMFIT_FAULT_ALLOC=%s: allocation failure injection is ON (testing only): "
               "allocations fail on purpose from now on; SIGUSR2 toggles it",
               memfit_config_get("MEMFIT_FAULT_ALLOC"));
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigusr2;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
    memfit_alloc_faults_arm(faults);
}

/*
 * Where to listen, from the environment (flags still win): MEMFIT_HOST and
 * MEMFIT_PORT, else PORT, which Render, Cloud Run and Heroku set for the
 * one port they route to. A platform that sets PORT routes from outside the
 * container, so then the default address is 0.0.0.0 rather than loopback.
 */
static int listen_from_env(struct memfit_server_options *o)
{
    const char *host = memfit_config_get("MEMFIT_HOST");
    const char *port = memfit_config_get("MEMFIT_PORT");
    const char *platform_port = getenv("PORT");
    const char *name = "MEMFIT_PORT";
    if ((!port || !port[0]) && platform_port && platform_port[0]) {
        port = platform_port;
        name = "PORT";
        o->host = "0.0.0.0";
    }
    if (host && host[0])
        o->host = host;
    if (port && port[0]) {
        long long n;
        char what[32];
        snprintf(what, sizeof(what), "%s (environment)", name);
        if (!cli_opt_int("serve", what, port, 0, 65535, &n))
            return CLI_EXIT_USAGE;
        o->port = (uint16_t)n;
    }
    return CLI_EXIT_OK;
}

enum {
    OPT_GPU = 1,
    OPT_REQUIRE_KEY,
    OPT_ALLOW_HOST,
    OPT_ALLOW_ORIGIN,
    OPT_HOST,
    OPT_PORT,
    OPT_GRPC_PORT,
    OPT_GRPC_SOCKET,
    OPT_MANIFEST,
    OPT_BUDGET,
    OPT_MAX_BODY,
    OPT_MAX_HEADER,
    OPT_TIMEOUT,
    OPT_HEADER_TIMEOUT,
    OPT_REQUEST_TIMEOUT,
    OPT_MAX_CLIENT_CONNECTIONS,
    OPT_MAX_CONNECTIONS,
    OPT_MAX_QUEUE,
    OPT_MAX_INPUTS,
    OPT_MAX_PIXELS,
    OPT_MAX_DECODE_TIME,
    OPT_GRACE,
    OPT_DRAIN_DELAY,
    OPT_PARALLEL,
};

static const struct cli_option options[] = {
    {"gpu", 0, CLI_ARG_NONE, OPT_GPU},
    {"require-key", 0, CLI_ARG_NONE, OPT_REQUIRE_KEY},
    {"allow-host", 0, CLI_ARG_REQUIRED, OPT_ALLOW_HOST},
    {"allow-origin", 0, CLI_ARG_REQUIRED, OPT_ALLOW_ORIGIN},
    {"host", 0, CLI_ARG_REQUIRED, OPT_HOST},
    {"port", 0, CLI_ARG_REQUIRED, OPT_PORT},
    {"grpc-port", 0, CLI_ARG_REQUIRED, OPT_GRPC_PORT},
    {"grpc-socket", 0, CLI_ARG_REQUIRED, OPT_GRPC_SOCKET},
    {"manifest", 0, CLI_ARG_REQUIRED, OPT_MANIFEST},
    {"budget", 0, CLI_ARG_REQUIRED, OPT_BUDGET},
    {"max-body", 0, CLI_ARG_REQUIRED, OPT_MAX_BODY},
    {"max-header", 0, CLI_ARG_REQUIRED, OPT_MAX_HEADER},
    {"timeout", 0, CLI_ARG_REQUIRED, OPT_TIMEOUT},
    {"header-timeout", 0, CLI_ARG_REQUIRED, OPT_HEADER_TIMEOUT},
    {"request-timeout", 0, CLI_ARG_REQUIRED, OPT_REQUEST_TIMEOUT},
    {"max-client-connections", 0, CLI_ARG_REQUIRED, OPT_MAX_CLIENT_CONNECTIONS},
    {"max-connections", 0, CLI_ARG_REQUIRED, OPT_MAX_CONNECTIONS},
    {"max-queue", 0, CLI_ARG_REQUIRED, OPT_MAX_QUEUE},
    {"max-inputs", 0, CLI_ARG_REQUIRED, OPT_MAX_INPUTS},
    {"max-pixels", 0, CLI_ARG_REQUIRED, OPT_MAX_PIXELS},
    {"max-decode-time", 0, CLI_ARG_REQUIRED, OPT_MAX_DECODE_TIME},
    {"grace", 0, CLI_ARG_REQUIRED, OPT_GRACE},
    {"drain-delay", 0, CLI_ARG_REQUIRED, OPT_DRAIN_DELAY},
    {"parallel", 0, CLI_ARG_REQUIRED, OPT_PARALLEL},
    {0},
};

int cmd_serve(int argc, char **argv)
{
    struct memfit_alloc_faults faults;
    int with_faults = fault_schedule(&faults);
    if (with_faults < 0)
        return CLI_EXIT_USAGE;
    struct memfit_server_options o;
    memfit_server_options_default(&o);
    if (listen_from_env(&o) != CLI_EXIT_OK)
        return CLI_EXIT_USAGE;
    uint64_t drain_ns = 0;
    const char *drain = memfit_config_get("MEMFIT_DRAIN_DELAY");
    if (drain && !cli_opt_duration("serve", "MEMFIT_DRAIN_DELAY", drain, &drain_ns))
        return CLI_EXIT_USAGE;
    uint64_t grace_ns = 10ull * 1000000000u;
    const char **sources = memfit_calloc((size_t)argc, sizeof(*sources));
    char **owned = memfit_calloc((size_t)argc + 3, sizeof(*owned));
    const char **hosts =
        memfit_calloc((size_t)argc + count_commas("MEMFIT_ALLOW_HOSTS") + 1, sizeof(*hosts));
    const char **origins =
        memfit_calloc((size_t)argc + count_commas("MEMFIT_ALLOW_ORIGINS") + 1, sizeof(*origins));
    if (!sources || !owned || !hosts || !origins) {
        memfit_free(sources);
        memfit_free(owned);
        memfit_free(hosts);
        memfit_free(origins);
        return cli_fail_status(MEMFIT_E_NOMEM);
    }
    size_t n_sources = 0, n_owned = 0, n_hosts = 0, n_origins = 0;
    bool require_key = false;
    int grpc_port = -1;
    const char *grpc_socket = NULL;
    int rc = CLI_EXIT_USAGE;
    struct cli_args a;
    cli_args_init(&a, "serve", cmd_serve_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        const char *v = a.value, *name = a.name;
        long long n;
        uint64_t size, ns;
        switch (id) {
        case OPT_GPU:
            o.gpu = true;
            break;
        case OPT_REQUIRE_KEY:
            require_key = true;
            break;
        case OPT_ALLOW_HOST:
            hosts[n_hosts++] = v;
            break;
        case OPT_ALLOW_ORIGIN:
            origins[n_origins++] = v;
            break;
        case OPT_HOST:
            o.host = v;
            break;
        case OPT_PORT:
            if (!cli_opt_int("serve", name, v, 0, 65535, &n))
                goto out;
            o.port = (uint16_t)n;
            break;
        case OPT_GRPC_PORT:
            if (!cli_opt_int("serve", name, v, 0, 65535, &n))
                goto out;
            grpc_port = (int)n;
            break;
        case OPT_GRPC_SOCKET:
            grpc_socket = v;
            break;
        case OPT_MANIFEST:
            o.manifest_path = v;
            break;
        case OPT_BUDGET:
            if (!cli_opt_size("serve", name, v, &o.budget_bytes))
                goto out;
            break;
        case OPT_MAX_BODY:
            if (!cli_opt_size("serve", name, v, &o.max_body_bytes))
                goto out;
            break;
        case OPT_MAX_HEADER:
            if (!cli_opt_size("serve", name, v, &size))
                goto out;
            if (size < 4096 || size > 16u * 1024 * 1024) {
                cli_usage("serve", "--max-header: %s is outside 4KiB..16MiB", v);
                goto out;
            }
            o.max_header_bytes = (size_t)size;
            break;
        case OPT_TIMEOUT:
            if (!cli_opt_duration("serve", name, v, &ns))
                goto out;
            o.connection_timeout_s =
                (unsigned)(ns / 1000000000u) ? (unsigned)(ns / 1000000000u) : 1;
            break;
        case OPT_HEADER_TIMEOUT:
            if (!cli_opt_int("serve", name, v, 1, 3600, &n))
                goto out;
            o.header_timeout_s = (unsigned)n;
            break;
        case OPT_REQUEST_TIMEOUT:
            if (!cli_opt_int("serve", name, v, 1, 86400, &n))
                goto out;
            o.request_timeout_s = (unsigned)n;
            break;
        case OPT_MAX_CLIENT_CONNECTIONS:
            if (!cli_opt_int("serve", name, v, 0, 1000000, &n))
                goto out;
            o.max_client_connections = (unsigned)n;
            break;
        case OPT_MAX_CONNECTIONS:
            if (!cli_opt_int("serve", name, v, 1, 100000, &n))
                goto out;
            o.max_connections = (unsigned)n;
            break;
        case OPT_MAX_QUEUE:
            if (!cli_opt_int("serve", name, v, 1, 1000000, &n))
                goto out;
            o.max_queue = (unsigned)n;
            break;
        case OPT_PARALLEL:
            if (!cli_opt_int("serve", name, v, 1, 64, &n))
                goto out;
            o.model_parallel = (unsigned)n;
            break;
        case OPT_MAX_INPUTS:
            if (!cli_opt_int("serve", name, v, 1, 100000, &n))
                goto out;
            o.max_inputs = (unsigned)n;
            break;
        case OPT_MAX_PIXELS:
            if (!cli_opt_int("serve", name, v, 1, 1000000000000LL, &n))
                goto out;
            o.max_request_pixels = (uint64_t)n;
            break;
        case OPT_MAX_DECODE_TIME:
            if (!cli_opt_duration("serve", name, v, &ns))
                goto out;
            if (ns / 1000000u > 3600000u) {
                cli_usage("serve", "--max-decode-time: %s is more than an hour", v);
                goto out;
            }
            o.max_decode_ms = (uint32_t)(ns / 1000000u);
            if (ns > 0 && o.max_decode_ms == 0)
                o.max_decode_ms = 1;
            break;
        case OPT_DRAIN_DELAY:
            if (!cli_opt_duration("serve", name, v, &drain_ns))
                goto out;
            break;
        default: /* OPT_GRACE */
            if (!cli_opt_duration("serve", name, v, &grace_ns))
                goto out;
            break;
        }
    }
    if (id < 0) {
        rc = a.status;
        goto out;
    }
    for (int k = 0; k < a.n_operands; k++)
        sources[n_sources++] = a.operands[k];
    if (o.request_timeout_s < o.header_timeout_s) {
        cli_usage("serve",
                  "--request-timeout %u is shorter than --header-timeout %u: the whole request "
                  "(head and body) cannot have less time than its head",
                  o.request_timeout_s, o.header_timeout_s);
        goto out;
    }
    if (grpc_port >= 0 && grpc_socket) {
        cli_usage("serve", "--grpc-port and --grpc-socket: give one of them");
        goto out;
    }
    if (grpc_port >= 0 || grpc_socket) {
        bool v6 = strchr(o.host, ':') != NULL && o.host[0] != '[';
        char *address = grpc_socket ? memfit_asprintf("unix:%s", grpc_socket)
                                    : memfit_asprintf("%s%s%s:%d", v6 ? "[" : "", o.host,
                                                      v6 ? "]" : "", grpc_port);
        if (!address) {
            rc = cli_fail_status(MEMFIT_E_NOMEM);
            goto out;
        }
        owned[n_owned++] = address;
        o.grpc_address = address;
    }
    if (!o.manifest_path && access(MEMFIT_MANIFEST_DEFAULT_PATH, F_OK) == 0)
        o.manifest_path = MEMFIT_MANIFEST_DEFAULT_PATH;
    /* Model files named here are relative to this directory, not the manifest's. */
    char *cwd = NULL;
    for (size_t i = 0; i < n_sources; i++) {
        const char *s = sources[i];
        if (s[0] == '/' || strstr(s, "://"))
            continue;
        if (!cwd && !(cwd = getcwd(NULL, 0))) /* lint: allow: getcwd's buffer, freed with free() */
            break;
        char *abs = memfit_asprintf("%s/%s", cwd, s);
        if (!abs) {
            rc = cli_fail_status(MEMFIT_E_NOMEM);
            goto out;
        }
        owned[n_owned++] = abs;
        sources[i] = abs;
    }
    free(cwd); /* lint: allow: getcwd's buffer */
    o.model_sources = sources;
    o.n_model_sources = n_sources;
    o.api_key = memfit_config_get("MEMFIT_API_KEY");
    if (!env_list("MEMFIT_ALLOW_HOSTS", hosts, &n_hosts, &owned[n_owned++]) ||
        !env_list("MEMFIT_ALLOW_ORIGINS", origins, &n_origins, &owned[n_owned++])) {
        rc = cli_fail_status(MEMFIT_E_NOMEM);
        goto out;
    }
    o.allow_hosts = hosts;
    o.n_allow_hosts = n_hosts;
    o.allow_origins = origins;
    o.n_allow_origins = n_origins;
    if (require_key && (!o.api_key || !o.api_key[0]) && !memfit_server_host_is_loopback(o.host)) {
        cli_usage("serve",
                  "--require-key: --host %s is not a loopback address and MEMFIT_API_KEY is not "
                  "set: anyone who can reach it could run and unload models",
                  o.host);
        goto out;
    }

    rc = CLI_EXIT_FAILURE;
    /* A daemon's log says what it does: the budget and where it came from,
     * downloads with their progress, loads, unloads, refusals. */
    const char *level = memfit_config_get("MEMFIT_LOG_LEVEL");
    if (!level || !level[0])
        memfit_log_set_level(MEMFIT_LOG_INFO);
#ifdef __GLIBC__
    /* Each connection thread allocates in one of glibc's arenas, which keep
     * freed blocks; with the default sliding mmap threshold the buffers of an
     * embedding request (pixels, decoded images, bodies: 100 KB to MBs) end
     * up there after the first free, and RSS grew ~4 MB over 100k requests.
     * A fixed threshold maps such blocks and unmaps them on free: RSS stays
     * flat under load (tests/integration/serve_load.sh). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    o.drain_delay_ms = drain_ns / 1000000u;
    enum memfit_status st = memfit_server_block_signals();
    memfit_server *srv = NULL;
    if (st == MEMFIT_OK)
        st = memfit_server_create(&o, &srv);
    if (st != MEMFIT_OK) {
        cli_fail_status(st);
        goto out;
    }
    bool v6 = strchr(o.host, ':') != NULL;
    cli_print_record("listening on http://%s%s%s:%u", v6 ? "[" : "", o.host, v6 ? "]" : "",
                     (unsigned)memfit_server_port(srv));
    if (grpc_socket)
        cli_print_record("grpc on unix:%s", grpc_socket);
    else if (grpc_port >= 0)
        cli_print_record("grpc on %s%s%s:%u", v6 ? "[" : "", o.host, v6 ? "]" : "",
                         (unsigned)memfit_server_grpc_port(srv));
    fflush(stdout);
    if (with_faults)
        arm_faults(&faults);
    memfit_server_run(srv, grace_ns / 1000000u);
    memfit_server_destroy(srv);
    if (with_faults) {
        uint64_t injected = memfit_alloc_faults_injected();
        memfit_alloc_faults_arm(NULL);
        memfit_log(MEMFIT_LOG_INFO, "MEMFIT_FAULT_ALLOC: %llu allocation(s) failed on purpose",
                   (unsigned long long)injected);
    }
    rc = CLI_EXIT_OK;
out:
    for (size_t i = 0; i < n_owned; i++)
        memfit_free(owned[i]);
    memfit_free(owned);
    memfit_free(sources);
    memfit_free(hosts);
    memfit_free(origins);
    return rc;
}
