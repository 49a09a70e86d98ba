/*
 * The server's connections: a table of the open ones, kept through
 * libmicrohttpd's connection notifications, with the count per client
 * address and the deadlines of each connection's current request, which a
 * watchdog thread enforces (docs/server.md, "Slow clients and limits").
 *
 * libmicrohttpd knows only an idle timeout, which a client resets with every
 * byte: one header line every few seconds held a connection, and its
 * thread, forever, and max_connections such clients locked everyone out.
 * Here the request line and headers must be complete within
 * header_timeout_s of the connection's start (or of the end of its previous
 * request), head and body within request_timeout_s; answers, streams
 * included, have no deadline. A late connection is cut with
 * shutdown(SHUT_RDWR): its thread sees the end of the stream and closes it.
 *
 * The table's lock guards the list, the clients and every record's phase
 * and clock. libmicrohttpd 0.9.75 reports a connection CLOSED before it
 * closes the socket (MHD_cleanup_connections), and the record leaves the
 * table under the lock in that callback: the watchdog never shuts down a
 * descriptor that was closed and reused. The connection's thread has ended
 * before CLOSED, so its request callbacks may hold the record unlocked.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "server/internal.h"

/* The connections of one client address (an IPv6 client: its /64). */
struct mf_conn_client {
    struct mf_conn_client *next; /* the bucket's chain */
    uint8_t key[16];             /* IPv4 as ::ffff:a.b.c.d */
    unsigned n_conns;            /* counted against its limit (not released) */
    unsigned n_refs;             /* records pointing at it, released ones too: freed at 0 */
};

struct mf_conn {
    struct mf_conn *prev, *next;
    struct mf_conn_client *client;
    int fd;
    bool over_limit; /* beyond its client's limit when accepted: its requests get 429 */
    bool cut;        /* shut down by the watchdog */
    bool released;   /* refused: no longer counted for its client */
    enum mf_conn_phase phase;
    uint64_t since_ns;   /* the start of the current request's clock */
    unsigned n_requests; /* finished on this connection */
    char addr[INET6_ADDRSTRLEN];
};

#define NS_PER_S          1000000000ull
#define WATCHDOG_NS       (250ull * 1000000u)
#define REFUSALS_LOG_NS   (10ull * NS_PER_S)
#define MAX_BUCKETS       4096
#define MIN_BUCKETS       16
#define BURST_CONNECTIONS 64 /* open at once: the heap is trimmed when they are gone */
#define FD_LIMIT_HEADROOM 64 /* descriptors beside the connections: listener, models, logs */

/* ---- The table ------------------------------------------------------------------ */

enum memfit_status mf_conns_init(struct mf_conns *t, const struct mf_conn_limits *limits,
                                 unsigned max_open)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    mf_server_cond_init(&t->wake);
    t->limits = *limits;
    size_t n = MIN_BUCKETS;
    while (n < MAX_BUCKETS && n < max_open / 2)
        n *= 2;
    t->buckets = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*t->buckets));
    t->conn_pool =
        memfit_calloc_in(MEMFIT_ALLOC_SERVER, max_open ? max_open : 1, sizeof(*t->conn_pool));
    t->client_pool =
        memfit_calloc_in(MEMFIT_ALLOC_SERVER, max_open ? max_open : 1, sizeof(*t->client_pool));
    if (!t->buckets || !t->conn_pool || !t->client_pool)
        return MEMFIT_E_NOMEM;
    t->n_buckets = n;
    t->pool_size = max_open;
    for (size_t i = max_open; i-- > 0;) {
        t->conn_pool[i].next = t->free_conns;
        t->free_conns = &t->conn_pool[i];
        t->client_pool[i].next = t->free_clients;
        t->free_clients = &t->client_pool[i];
    }
    return MEMFIT_OK;
}

/* A zeroed record from the pool, else the heap (lock held); NULL: no memory. */
static struct mf_conn *conn_get(struct mf_conns *t)
{
    struct mf_conn *c = t->free_conns;
    if (!c)
        return memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*c));
    t->free_conns = c->next;
    memset(c, 0, sizeof(*c));
    return c;
}

static void conn_put(struct mf_conns *t, struct mf_conn *c)
{
    if (c >= t->conn_pool && c < t->conn_pool + t->pool_size) {
        c->next = t->free_conns;
        t->free_conns = c;
    } else {
        memfit_free(c);
    }
}

static struct mf_conn_client *client_get(struct mf_conns *t)
{
    struct mf_conn_client *cl = t->free_clients;
    if (!cl)
        return memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*cl));
    t->free_clients = cl->next;
    memset(cl, 0, sizeof(*cl));
    return cl;
}

static void client_put(struct mf_conns *t, struct mf_conn_client *cl)
{
    if (cl >= t->client_pool && cl < t->client_pool + t->pool_size) {
        cl->next = t->free_clients;
        t->free_clients = cl;
    } else {
        memfit_free(cl);
    }
}

void mf_conns_destroy(struct mf_conns *t)
{
    while (t->head)
        mf_conns_close(t, t->head);
    memfit_free(t->buckets);
    memfit_free(t->conn_pool);
    memfit_free(t->client_pool);
    t->buckets = NULL;
    t->conn_pool = NULL;
    t->client_pool = NULL;
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->lock);
}

/* The client's key and the address as text for the log; an IPv6 client is
 * its /64 (one host commonly holds a whole /64). */
static void client_key(const struct sockaddr *sa, uint8_t key[16], char *text, size_t cap)
{
    memset(key, 0, 16);
    snprintf(text, cap, "unknown");
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &v4->sin_addr, 4);
        inet_ntop(AF_INET, &v4->sin_addr, text, (socklen_t)cap);
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        memcpy(key, &v6->sin6_addr, 16);
        if (!IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr))
            memset(key + 8, 0, 8);
        inet_ntop(AF_INET6, &v6->sin6_addr, text, (socklen_t)cap);
    }
}

static struct mf_conn_client **bucket(struct mf_conns *t, const uint8_t key[16])
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return &t->buckets[h & (t->n_buckets - 1)];
}

/*
 * Stops counting the client's connections that its peer has closed (lock
 * held). libmicrohttpd reports a closed connection only when its polling
 * thread cleans up, up to a second later, and accepts new ones first: a
 * client that closes its connections and opens as many again (a benchmark's
 * next round, a pool's reconnect) would meet its own closed connections and
 * be refused — those idle, and those whose request still runs after the
 * client left (it is cancelled). Only run when the client is over its
 * limit. The descriptors
 * are still open (CLOSED is reported before libmicrohttpd closes them).
 */
static void release_closed(struct mf_conns *t, struct mf_conn_client *cl)
{
    for (struct mf_conn *o = t->head; o; o = o->next) {
        char byte;
        if (o->client != cl || o->released || o->fd < 0)
            continue;
        if (recv(o->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
            o->released = true;
            cl->n_conns--;
        }
    }
}

struct mf_conn *mf_conns_open(struct mf_conns *t, const struct sockaddr *addr, int fd,
                              uint64_t now_ns)
{
    pthread_mutex_lock(&t->lock);
    struct mf_conn *c = conn_get(t);
    if (!c) {
        pthread_mutex_unlock(&t->lock);
        return NULL;
    }
    uint8_t key[16];
    client_key(addr, key, c->addr, sizeof(c->addr));
    c->fd = fd;
    c->since_ns = now_ns;
    struct mf_conn_client **head = bucket(t, key), *cl = *head;
    while (cl && memcmp(cl->key, key, 16) != 0)
        cl = cl->next;
    if (!cl) {
        cl = client_get(t);
        if (!cl) {
            conn_put(t, c);
            pthread_mutex_unlock(&t->lock);
            return NULL;
        }
        memcpy(cl->key, key, 16);
        cl->next = *head;
        *head = cl;
    }
    c->client = cl;
    cl->n_conns++;
    cl->n_refs++;
    if (t->limits.max_per_client && cl->n_conns > t->limits.max_per_client)
        release_closed(t, cl);
    c->over_limit = t->limits.max_per_client && cl->n_conns > t->limits.max_per_client;
    c->next = t->head;
    if (t->head)
        t->head->prev = c;
    t->head = c;
    if (++t->n_open > t->n_peak)
        t->n_peak = t->n_open;
    pthread_mutex_unlock(&t->lock);
    return c;
}

void mf_conns_close(struct mf_conns *t, struct mf_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&t->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    t->n_open--;
    struct mf_conn_client *cl = c->client;
    if (!c->released)
        cl->n_conns--;
    if (--cl->n_refs == 0) {
        struct mf_conn_client **p = bucket(t, cl->key);
        while (*p != cl)
            p = &(*p)->next;
        *p = cl->next;
        client_put(t, cl);
    }
    conn_put(t, c);
    pthread_mutex_unlock(&t->lock);
}

void mf_conns_mark(struct mf_conns *t, struct mf_conn *c, enum mf_conn_phase phase, uint64_t now_ns)
{
    if (!c)
        return;
    pthread_mutex_lock(&t->lock);
    if (phase == MF_CONN_HEAD) { /* a request finished: the next one's clock starts */
        c->since_ns = now_ns;
        c->n_requests++;
    }
    c->phase = phase;
    pthread_mutex_unlock(&t->lock);
}

void mf_conns_release(struct mf_conns *t, struct mf_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&t->lock);
    if (!c->released) {
        c->released = true;
        c->client->n_conns--;
    }
    pthread_mutex_unlock(&t->lock);
}

bool mf_conns_over_limit(struct mf_conns *t, struct mf_conn *c, unsigned *n_client)
{
    pthread_mutex_lock(&t->lock);
    bool over = c->over_limit;
    *n_client = c->client->n_conns;
    pthread_mutex_unlock(&t->lock);
    return over;
}

const char *mf_conn_address(const struct mf_conn *c)
{
    return c->addr; /* written once, before the record is shared */
}

/* The head deadline; 0 for none. */
static uint64_t head_deadline_ns(const struct mf_conn_limits *limits, bool over_limit)
{
    uint64_t head = limits->header_timeout_ns;
    if (over_limit && (head == 0 || head > MF_CONN_OVER_LIMIT_HEADER_NS))
        head = MF_CONN_OVER_LIMIT_HEADER_NS;
    return head;
}

enum mf_conn_cut mf_conn_deadline(const struct mf_conn_limits *limits, enum mf_conn_phase phase,
                                  bool over_limit, uint64_t elapsed_ns)
{
    if (phase == MF_CONN_ANSWER)
        return MF_CONN_CUT_NONE;
    uint64_t head = head_deadline_ns(limits, over_limit);
    if (phase == MF_CONN_HEAD && head && elapsed_ns >= head)
        return MF_CONN_CUT_HEADER;
    if (limits->request_timeout_ns && elapsed_ns >= limits->request_timeout_ns)
        return MF_CONN_CUT_REQUEST;
    return MF_CONN_CUT_NONE;
}

static unsigned seconds(uint64_t ns)
{
    return (unsigned)(ns / NS_PER_S);
}

/*
 * One line per cut. A keep-alive connection left idle after its answers is
 * cut by the head deadline too, which is how HTTP clients' connection pools
 * normally end: that one goes to the debug level (the metric counts it).
 */
static void log_cut(const struct mf_conns *t, const struct mf_conn *c, enum mf_conn_cut why)
{
    const char *after = c->n_requests ? " after its previous request" : "";
    if (why == MF_CONN_CUT_REQUEST) {
        memfit_log(MEMFIT_LOG_INFO,
                   "connection from %s cut: its request (head and body) was not complete "
                   "within %u s%s (request_timeout_s)",
                   c->addr, seconds(t->limits.request_timeout_ns), after);
    } else if (c->over_limit) {
        memfit_log(MEMFIT_LOG_INFO,
                   "connection from %s cut: no complete request head within %u s (the deadline "
                   "of a connection beyond max_client_connections %u)",
                   c->addr, seconds(head_deadline_ns(&t->limits, true)), t->limits.max_per_client);
    } else {
        memfit_log(c->n_requests ? MEMFIT_LOG_DEBUG : MEMFIT_LOG_INFO,
                   "connection from %s cut: no complete request head within %u s%s "
                   "(header_timeout_s)",
                   c->addr, seconds(t->limits.header_timeout_ns), after);
    }
}

size_t mf_conns_sweep(struct mf_conns *t, uint64_t now_ns)
{
    size_t n = 0;
    pthread_mutex_lock(&t->lock);
    for (struct mf_conn *c = t->head; c; c = c->next) {
        if (c->cut)
            continue;
        uint64_t elapsed = now_ns > c->since_ns ? now_ns - c->since_ns : 0;
        enum mf_conn_cut why = mf_conn_deadline(&t->limits, c->phase, c->over_limit, elapsed);
        if (why == MF_CONN_CUT_NONE)
            continue;
        shutdown(c->fd, SHUT_RDWR); /* the fd is open: CLOSED takes this lock first */
        c->cut = true;
        if (why == MF_CONN_CUT_HEADER)
            t->n_cut_header++;
        else
            t->n_cut_request++;
        log_cut(t, c, why);
        n++;
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

void mf_conns_counts(struct mf_conns *t, uint64_t *n_open, uint64_t *n_cut_header,
                     uint64_t *n_cut_request)
{
    pthread_mutex_lock(&t->lock);
    *n_open = t->n_open;
    *n_cut_header = t->n_cut_header;
    *n_cut_request = t->n_cut_request;
    pthread_mutex_unlock(&t->lock);
}

/* ---- The server's side: notifications, marks, admission, the watchdog ------------ */

static struct mf_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void mf_server_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode code)
{
    memfit_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        mf_conns_close(&srv->conns, *socket_context);
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *fd =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *addr =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!fd)
        return;
    *socket_context = mf_conns_open(&srv->conns, addr ? addr->client_addr : NULL, fd->connect_fd,
                                    memfit_now_ns());
    if (!*socket_context) {
        /* Without a record no deadline could cut it: refuse it before its thread reads. */
        memfit_log(MEMFIT_LOG_WARN, "connection refused: no memory for its record");
        shutdown(fd->connect_fd, SHUT_RDWR);
    }
}

void mf_server_conn_mark(memfit_server *srv, struct MHD_Connection *conn, enum mf_conn_phase phase)
{
    mf_conns_mark(&srv->conns, conn_of(conn), phase, memfit_now_ns());
}

enum mf_conn_verdict mf_server_conn_admit(memfit_server *srv, struct MHD_Connection *conn,
                                          enum mf_route route, char *msg, size_t cap)
{
    if (mf_route_is_probe(route))
        return MF_CONN_SERVE; /* probes never fail because of load */
    struct mf_conn *c = conn_of(conn);
    unsigned n_client;
    if (c && mf_conns_over_limit(&srv->conns, c, &n_client)) {
        snprintf(msg, cap,
                 "too many connections from %s: %u open, at most %u per client address "
                 "(max_client_connections); retry once some have closed",
                 mf_conn_address(c), n_client, srv->conns.limits.max_per_client);
        atomic_fetch_add_explicit(&srv->conns.n_refused_client, 1, memory_order_relaxed);
        mf_conns_release(&srv->conns, c); /* the 429 closes it */
        return MF_CONN_CLIENT_LIMIT;
    }
    /* `active` counts this request, and probes in progress that do not count */
    unsigned active = atomic_load(&srv->active), probes = atomic_load(&srv->probes);
    unsigned others = active > probes ? active - probes - 1 : 0;
    if (others >= srv->opt.max_connections) {
        snprintf(msg, cap,
                 "the server is busy: %u requests in progress, at most %u at once "
                 "(max_connections); retry in a second",
                 others, srv->opt.max_connections);
        atomic_fetch_add_explicit(&srv->conns.n_refused_busy, 1, memory_order_relaxed);
        mf_conns_release(&srv->conns, c); /* the 503 closes it */
        return MF_CONN_BUSY;
    }
    return MF_CONN_SERVE;
}

/* One line per REFUSALS_LOG_NS for the 429s and 503s above, which come in
 * floods; `elapsed_ns` since the last one. */
static void log_refusals(struct mf_conns *t, uint64_t elapsed_ns)
{
    uint64_t client = atomic_exchange(&t->n_refused_client, 0);
    uint64_t busy = atomic_exchange(&t->n_refused_busy, 0);
    if (client || busy)
        memfit_log(MEMFIT_LOG_INFO,
                   "connections: %" PRIu64 " request(s) answered 429 too_many_connections (over "
                   "max_client_connections %u), %" PRIu64
                   " answered 503 server_busy (over max_connections) in the last %u s",
                   client, t->limits.max_per_client, busy, seconds(elapsed_ns + NS_PER_S / 2));
}

static void *watchdog_main(void *arg)
{
    struct mf_conns *t = arg;
    uint64_t logged = memfit_now_ns();
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        uint64_t at = memfit_now_ns() + WATCHDOG_NS;
        struct timespec ts = {(time_t)(at / NS_PER_S), (long)(at % NS_PER_S)};
        pthread_cond_timedwait(&t->wake, &t->lock, &ts);
        if (t->stop)
            break;
        bool trim = t->n_peak >= BURST_CONNECTIONS && t->n_open <= t->n_peak / 8;
        if (trim)
            t->n_peak = t->n_open;
        pthread_mutex_unlock(&t->lock);
        if (trim) /* a burst is over: its threads' malloc arenas keep its pages */
            memfit_heap_trim();
        uint64_t now = memfit_now_ns();
        mf_conns_sweep(t, now);
        if (now - logged >= REFUSALS_LOG_NS) {
            log_refusals(t, now - logged);
            logged = now;
        }
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    log_refusals(t, memfit_now_ns() - logged);
    return NULL;
}

enum memfit_status mf_server_conns_start(memfit_server *srv)
{
    struct mf_conns *t = &srv->conns;
    struct rlimit rl;
    rlim_t need = (rlim_t)mf_server_connection_cap(&srv->opt) + FD_LIMIT_HEADROOM;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        memfit_log(MEMFIT_LOG_WARN,
                   "the open file limit (%llu) is below the %u connections accepted (2 x "
                   "max_connections) and %u more: connections past it wait to be accepted "
                   "(raise it with ulimit -n)",
                   (unsigned long long)rl.rlim_cur, mf_server_connection_cap(&srv->opt),
                   FD_LIMIT_HEADROOM);
    int err = pthread_create(&t->watchdog, NULL, watchdog_main, t);
    if (err)
        return memfit_fail(MEMFIT_E_IO, "cannot start the connection watchdog: %s", strerror(err));
    t->watchdog_started = true;
    return MEMFIT_OK;
}

void mf_server_conns_stop(memfit_server *srv)
{
    struct mf_conns *t = &srv->conns;
    if (!t->watchdog_started)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->watchdog, NULL);
    t->watchdog_started = false;
}

unsigned mf_server_connection_cap(const struct memfit_server_options *o)
{
    return o->max_connections > UINT32_MAX / 2 ? UINT32_MAX : 2 * o->max_connections;
}
