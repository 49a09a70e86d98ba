/* Unit tests of the server's connection table (src/server/conn.c) without
 * libmicrohttpd: the count per client address (IPv4, IPv6 by /64) and the
 * over-limit mark at accept, the deadline decisions of each phase, the
 * watchdog's sweep over real sockets (a cut peer reads the end of the
 * stream; an answering one is never cut), and allocation failures (a
 * connection that cannot be recorded changes nothing). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "server/internal.h"
#include "test_util.h"

#define S 1000000000ull

static struct sockaddr_storage v4(const char *text)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, text, &a->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *text)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, text, &a->sin6_addr), 1);
    return ss;
}

static struct mf_conn *open_from(struct mf_conns *t, struct sockaddr_storage ss, int fd)
{
    struct mf_conn *c = mf_conns_open(t, (const struct sockaddr *)&ss, fd, 0);
    assert_non_null(c);
    return c;
}

static bool over(struct mf_conns *t, struct mf_conn *c, unsigned *n)
{
    return mf_conns_over_limit(t, c, n);
}

static void test_per_client(void **state)
{
    (void)state;
    uint64_t live = mf_alloc_live_count();
    struct mf_conns t;
    struct mf_conn_limits l = {.max_per_client = 2};
    assert_int_equal(mf_conns_init(&t, &l, 64), MEMFIT_OK);
    struct mf_conn *a[4];
    unsigned n;
    for (int i = 0; i < 4; i++)
        a[i] = open_from(&t, v4("127.0.0.1"), -1);
    assert_false(over(&t, a[0], &n));
    assert_false(over(&t, a[1], &n));
    assert_true(over(&t, a[2], &n)); /* the third and fourth of one address */
    assert_true(over(&t, a[3], &n));
    assert_int_equal(n, 4);
    assert_string_equal(mf_conn_address(a[3]), "127.0.0.1");
    struct mf_conn *b = open_from(&t, v4("127.0.0.2"), -1); /* another address: its own count */
    assert_false(over(&t, b, &n));
    assert_int_equal(n, 1);
    /* Counted at accept: a mark stays, and closed ones make room for new ones. */
    mf_conns_close(&t, a[0]);
    mf_conns_close(&t, a[1]);
    mf_conns_close(&t, a[2]);
    assert_true(over(&t, a[3], &n));
    assert_int_equal(n, 1);
    a[0] = open_from(&t, v4("127.0.0.1"), -1);
    assert_false(over(&t, a[0], &n));
    assert_int_equal(n, 2);
    /* IPv6: one client per /64; a v4-mapped address is its IPv4 client. */
    struct mf_conn *c1 = open_from(&t, v6("2001:db8::1"), -1);
    struct mf_conn *c2 = open_from(&t, v6("2001:db8::ffff:2"), -1);
    struct mf_conn *c3 = open_from(&t, v6("2001:db8::3"), -1);
    struct mf_conn *d = open_from(&t, v6("2001:db8:0:1::1"), -1);
    struct mf_conn *m = open_from(&t, v6("::ffff:127.0.0.2"), -1);
    assert_true(over(&t, c3, &n));
    assert_int_equal(n, 3);
    assert_false(over(&t, d, &n));
    assert_false(over(&t, m, &n));
    assert_int_equal(n, 2); /* with 127.0.0.2 */
    assert_int_equal(t.n_open, 8);
    /* A refused connection stops counting at once, and only once. */
    mf_conns_release(&t, c3);
    mf_conns_release(&t, c3);
    assert_false(over(&t, c1, &n));
    assert_int_equal(n, 2);
    mf_conns_close(&t, c3);
    assert_false(over(&t, c1, &n));
    assert_int_equal(n, 2);
    /* A released connection outlives the counted ones of its client: the
     * client stays until the last record is gone. */
    struct mf_conn *r1 = open_from(&t, v4("192.0.2.9"), -1);
    struct mf_conn *r2 = open_from(&t, v4("192.0.2.9"), -1);
    mf_conns_release(&t, r1);
    mf_conns_close(&t, r2);
    mf_conns_close(&t, r1);
    struct mf_conn *r3 = open_from(&t, v4("192.0.2.9"), -1);
    assert_false(over(&t, r3, &n));
    assert_int_equal(n, 1);
    mf_conns_close(&t, r3);
    mf_conns_close(&t, c1);
    mf_conns_close(&t, c2);
    mf_conns_close(&t, NULL);
    mf_conns_destroy(&t); /* closes the rest */
    assert_int_equal(mf_alloc_live_count(), live);

    /* No limit: nobody is over it. */
    l.max_per_client = 0;
    assert_int_equal(mf_conns_init(&t, &l, 64), MEMFIT_OK);
    for (int i = 0; i < 4; i++)
        a[i] = open_from(&t, v4("10.0.0.1"), -1);
    assert_false(over(&t, a[3], &n));
    assert_int_equal(n, 4);
    mf_conns_destroy(&t);
    assert_int_equal(mf_alloc_live_count(), live);
}

static void test_deadlines(void **state)
{
    (void)state;
    struct mf_conn_limits l = {.header_timeout_ns = 10 * S, .request_timeout_ns = 60 * S};
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_HEAD, false, 9 * S), MF_CONN_CUT_NONE);
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_HEAD, false, 10 * S), MF_CONN_CUT_HEADER);
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_BODY, false, 59 * S), MF_CONN_CUT_NONE);
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_BODY, false, 60 * S), MF_CONN_CUT_REQUEST);
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_ANSWER, false, 3600 * S), MF_CONN_CUT_NONE);
    /* Over its client's limit: 2 s for the head, the body as any other. */
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_HEAD, true, 1 * S), MF_CONN_CUT_NONE);
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_HEAD, true, 2 * S), MF_CONN_CUT_HEADER);
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_BODY, true, 30 * S), MF_CONN_CUT_NONE);
    /* A header timeout under 2 s is kept for them. */
    l.header_timeout_ns = 1 * S;
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_HEAD, true, 1 * S), MF_CONN_CUT_HEADER);
    /* A request timeout shorter than the head's cuts a head too. */
    l.header_timeout_ns = 10 * S;
    l.request_timeout_ns = 5 * S;
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_HEAD, false, 5 * S), MF_CONN_CUT_REQUEST);
    /* 0: no deadline (but the over-limit head's). */
    l.header_timeout_ns = l.request_timeout_ns = 0;
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_HEAD, false, 3600 * S), MF_CONN_CUT_NONE);
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_BODY, false, 3600 * S), MF_CONN_CUT_NONE);
    assert_int_equal(mf_conn_deadline(&l, MF_CONN_HEAD, true, 2 * S), MF_CONN_CUT_HEADER);
}

/* Whether the peer of a swept socket reads the end of the stream now. */
static bool peer_closed(int fd)
{
    char c;
    return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

static void test_sweep(void **state)
{
    (void)state;
    struct mf_conns t;
    struct mf_conn_limits l = {
        .header_timeout_ns = 10 * S, .request_timeout_ns = 60 * S, .max_per_client = 1};
    assert_int_equal(mf_conns_init(&t, &l, 16), MEMFIT_OK);
    int head[2], body[2], answer[2], idle[2], over_head[2];
    int *pairs[] = {head, body, answer, idle, over_head};
    for (int i = 0; i < 5; i++)
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]), 0);
    struct mf_conn *h = open_from(&t, v4("10.0.0.1"), head[0]);
    struct mf_conn *b = open_from(&t, v4("10.0.0.2"), body[0]);
    struct mf_conn *a = open_from(&t, v4("10.0.0.3"), answer[0]);
    struct mf_conn *k = open_from(&t, v4("10.0.0.4"), idle[0]);
    struct mf_conn *o = open_from(&t, v4("10.0.0.1"), over_head[0]); /* over the limit of 1 */
    mf_conns_mark(&t, b, MF_CONN_BODY, 1 * S);
    mf_conns_mark(&t, a, MF_CONN_ANSWER, 1 * S);
    mf_conns_mark(&t, k, MF_CONN_HEAD, 8 * S); /* a keep-alive request finished at 8 s */
    assert_int_equal(mf_conns_sweep(&t, 1 * S), 0);
    assert_int_equal(mf_conns_sweep(&t, 2 * S), 1); /* the over-limit head */
    assert_true(peer_closed(over_head[1]));
    assert_false(peer_closed(head[1]));
    assert_int_equal(mf_conns_sweep(&t, 10 * S), 1); /* the first head */
    assert_true(peer_closed(head[1]));
    assert_false(peer_closed(idle[1])); /* its clock restarted at 8 s */
    assert_int_equal(mf_conns_sweep(&t, 18 * S), 1);
    assert_true(peer_closed(idle[1]));
    assert_int_equal(mf_conns_sweep(&t, 59 * S), 0); /* cut ones are not cut again */
    assert_int_equal(mf_conns_sweep(&t, 60 * S), 1); /* the body */
    assert_true(peer_closed(body[1]));
    assert_int_equal(mf_conns_sweep(&t, 3600 * S), 0); /* an answer has no deadline */
    assert_false(peer_closed(answer[1]));
    uint64_t n_open, n_header, n_request;
    mf_conns_counts(&t, &n_open, &n_header, &n_request);
    assert_int_equal(n_open, 5);
    assert_int_equal(n_header, 3);
    assert_int_equal(n_request, 1);
    mf_conns_close(&t, h);
    mf_conns_close(&t, o);
    mf_conns_destroy(&t);
    for (int i = 0; i < 5; i++) {
        close(pairs[i][0]);
        close(pairs[i][1]);
    }
}

struct open_walk {
    struct mf_conns *t;
    struct mf_conn *c;
};

static enum memfit_status open_op(void *ctx)
{
    struct open_walk *w = ctx;
    size_t before = w->t->n_open;
    struct sockaddr_storage ss = v4("192.0.2.1");
    w->c = mf_conns_open(w->t, (const struct sockaddr *)&ss, -1, 0);
    if (!w->c) {
        assert_int_equal(w->t->n_open, before);
        return MEMFIT_E_NOMEM;
    }
    return MEMFIT_OK;
}

static void open_cleanup(void *ctx)
{
    struct open_walk *w = ctx;
    mf_conns_close(w->t, w->c);
}

static void test_fault_walk(void **state)
{
    (void)state;
    struct mf_conns t;
    struct mf_conn_limits l = {.max_per_client = 1};
    assert_int_equal(mf_conns_init(&t, &l, 16), MEMFIT_OK);
    struct open_walk w = {&t, NULL};
    /* Records come from the pools made at init: opening allocates nothing. */
    assert_int_equal(mf_test_alloc_failures(open_op, open_cleanup, &w), 1);
    /* A client already known: only the record is allocated, and the count is right. */
    struct sockaddr_storage ss = v4("192.0.2.1");
    struct mf_conn *first = mf_conns_open(&t, (const struct sockaddr *)&ss, -1, 0);
    assert_non_null(first);
    mf_test_alloc_failures(open_op, open_cleanup, &w);
    unsigned n;
    assert_false(mf_conns_over_limit(&t, first, &n));
    assert_int_equal(n, 1);
    mf_conns_destroy(&t);
    /* Past the pools the heap is used, and given back. */
    uint64_t live = mf_alloc_live_count();
    assert_int_equal(mf_conns_init(&t, &l, 2), MEMFIT_OK);
    struct mf_conn *c[4];
    const char *addrs[] = {"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.3"};
    for (int i = 0; i < 4; i++) {
        struct sockaddr_storage a = v4(addrs[i]);
        assert_non_null(c[i] = mf_conns_open(&t, (const struct sockaddr *)&a, -1, 0));
    }
    assert_true(mf_conns_over_limit(&t, c[3], &n));
    assert_int_equal(n, 2);
    for (int i = 0; i < 4; i++)
        mf_conns_close(&t, c[i]);
    mf_conns_destroy(&t);
    assert_int_equal(mf_alloc_live_count(), live);
    mf_alloc_fail_after(1, false);
    assert_int_equal(mf_conns_init(&t, &l, 16), MEMFIT_E_NOMEM);
    mf_alloc_fail_after(0, false);
    mf_conns_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_client),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_fault_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
