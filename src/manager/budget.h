/*
 * Internal side of the memory budget, shared by the manager: waking waiters
 * when something other than a release may have made room (a model became
 * idle, so the evictor may now take it), monotonic deadlines for condition
 * waits, and the size format used in every budget message ("250.0 MiB").
 */
#ifndef MF_MANAGER_BUDGET_H
#define MF_MANAGER_BUDGET_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/manager.h"

/* Wakes reservations waiting for room so they ask the evictor again. Cheap
 * (one atomic load) when nobody waits. */
void mf_budget_notify(memfit_budget *budget);

/*
 * MEMFIT_OK when `cost` fits in the whole budget (once enough is released);
 * else E_TOO_LARGE, counted as a refusal, with a message naming both figures:
 *   "<what> needs 1.2 GiB (weights 900.0 MiB, workspace 300.0 MiB) but the
 *    whole budget is 512.0 MiB: it can never load; raise the budget or use a
 *    smaller quantization".
 * `what` names the requester ("model sam"). Reserves nothing.
 */
enum memfit_status mf_budget_check_whole(memfit_budget *budget,
                                         const struct memfit_budget_cost *cost, const char *what);

/* "37 B", "12.0 KiB", "250.0 MiB", "1.5 GiB" (one decimal); returns buf. */
char *mf_format_bytes(uint64_t bytes, char *buf, size_t size);

/* An absolute deadline on the monotonic clock for a timeout in ms
 * (negative: none, returned as UINT64_MAX). */
uint64_t mf_deadline_ns(int64_t timeout_ms);

/* Milliseconds left until `deadline_ns` (-1 for none, 0 when passed). */
int64_t mf_remaining_ms(uint64_t deadline_ns);

/* A condition variable on the monotonic clock; 0 or an errno value. */
int mf_cond_init(pthread_cond_t *cond);

/* Waits on `cond` until `deadline_ns` (UINT64_MAX: no limit); false once
 * the deadline has passed. Spurious wake-ups return true. */
bool mf_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, uint64_t deadline_ns);

/* The moment a wait for `deadline_ns` should wake to ask a cancel callback:
 * at most MF_CANCEL_POLL_MS away (the deadline itself without a callback). */
#define MF_CANCEL_POLL_MS 100
uint64_t mf_wake_ns(uint64_t deadline_ns, memfit_cancel_fn cancelled);

/* memfit_budget_reserve_cost, waiting cancellably: E_CANCELLED (no refusal
 * counted) when `cancelled` says so while it waits. */
enum memfit_status mf_budget_reserve_cancellable(memfit_budget *budget,
                                                 const struct memfit_budget_cost *cost,
                                                 const char *owner, int64_t timeout_ms,
                                                 memfit_cancel_fn cancelled, void *cancel_user,
                                                 memfit_reservation **out);

#endif
