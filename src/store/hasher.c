/*
 * A SHA-256 that runs beside the download: the thread that receives bytes
 * copies them into a small ring and goes on writing, while a second thread
 * hashes them. On a machine with two cores the digest then costs almost no
 * download time, which is how a verified pull keeps up with a plain `curl`.
 * The ring is small (bounded memory); when the hasher falls behind, the
 * receiver waits. Without a thread (creation failed), hashing is inline.
 */
#include <pthread.h>
#include <string.h>

#include "core/alloc.h"
#include "store/internal.h"

/* Largest piece hashed at once, so the receiver gets room back steadily. */
#define HASH_PIECE (1u << 20)

static void *hash_loop(void *arg)
{
    struct mf_hasher *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->tail == h->head && !h->stop)
            pthread_cond_wait(&h->cv_data, &h->mu);
        if (h->tail == h->head && h->stop)
            break;
        uint64_t avail = h->head - h->tail;
        size_t off = (size_t)(h->tail % h->cap);
        size_t n = h->cap - off; /* contiguous up to the end of the ring */
        if (n > avail)
            n = (size_t)avail;
        if (n > HASH_PIECE)
            n = HASH_PIECE;
        pthread_mutex_unlock(&h->mu);
        /* [tail, tail + n) belongs to this thread until tail moves past it. */
        mf_sha256_update(&h->sha, h->ring + off, n);
        pthread_mutex_lock(&h->mu);
        h->tail += n;
        pthread_cond_broadcast(&h->cv_space);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

enum memfit_status mf_hasher_start(struct mf_hasher *h, size_t ring_bytes)
{
    memset(h, 0, sizeof(*h));
    enum memfit_status st = mf_sha256_init(&h->sha);
    if (st != MEMFIT_OK)
        return st;
    h->ring = memfit_malloc_in(MEMFIT_ALLOC_STORE, ring_bytes);
    if (!h->ring) {
        mf_sha256_free(&h->sha);
        return MEMFIT_E_NOMEM;
    }
    h->cap = ring_bytes;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv_data, NULL);
    pthread_cond_init(&h->cv_space, NULL);
    h->threaded = pthread_create(&h->thread, NULL, hash_loop, h) == 0;
    if (!h->threaded)
        memfit_log(MEMFIT_LOG_DEBUG, "no hashing thread: hashing inline");
    return MEMFIT_OK;
}

void mf_hasher_feed(struct mf_hasher *h, const void *data, size_t len)
{
    if (!h->threaded) {
        mf_sha256_update(&h->sha, data, len);
        return;
    }
    const unsigned char *p = data;
    while (len > 0) {
        pthread_mutex_lock(&h->mu);
        while (h->head - h->tail == h->cap)
            pthread_cond_wait(&h->cv_space, &h->mu);
        uint64_t space = h->cap - (h->head - h->tail);
        size_t off = (size_t)(h->head % h->cap);
        pthread_mutex_unlock(&h->mu);
        size_t n = h->cap - off;
        if (n > space)
            n = (size_t)space;
        if (n > len)
            n = len;
        /* Free space is only ever written by this thread. */
        memcpy(h->ring + off, p, n);
        pthread_mutex_lock(&h->mu);
        h->head += n;
        pthread_cond_signal(&h->cv_data);
        pthread_mutex_unlock(&h->mu);
        p += n;
        len -= n;
    }
}

void mf_hasher_drain(struct mf_hasher *h)
{
    if (!h->threaded)
        return;
    pthread_mutex_lock(&h->mu);
    while (h->tail != h->head)
        pthread_cond_wait(&h->cv_space, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

void mf_hasher_stop(struct mf_hasher *h)
{
    if (!h->ring)
        return;
    if (h->threaded) {
        pthread_mutex_lock(&h->mu);
        h->stop = true;
        pthread_cond_signal(&h->cv_data);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
    }
    pthread_cond_destroy(&h->cv_data);
    pthread_cond_destroy(&h->cv_space);
    pthread_mutex_destroy(&h->mu);
    memfit_free(h->ring);
    mf_sha256_free(&h->sha);
    memset(h, 0, sizeof(*h));
}
