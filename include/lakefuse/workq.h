/* workq: a fixed set of worker threads running submitted jobs in order.
 *
 * Used for everything that must overlap with the caller: readahead GETs,
 * multipart part uploads, the two requests of a cold lookup. Jobs must not
 * block on other jobs of the same queue (a full queue would deadlock).
 */
#ifndef LAKEFUSE_WORKQ_H
#define LAKEFUSE_WORKQ_H

struct lf_workq;

typedef void (*lf_job_fn)(void *arg);

struct lf_workq *lf_workq_new(unsigned nthreads, const char *name);
/* Runs the jobs still queued, then joins the threads. */
void lf_workq_free(struct lf_workq *q);
/* Returns 0, or -ENOMEM (the job was not queued). */
int lf_workq_submit(struct lf_workq *q, lf_job_fn fn, void *arg);
/* Jobs queued and not yet started. */
unsigned lf_workq_pending(struct lf_workq *q);

/* A countdown a caller waits on for the jobs it submitted. */
struct lf_latch;
struct lf_latch *lf_latch_new(unsigned count);
void lf_latch_done(struct lf_latch *l);
void lf_latch_wait(struct lf_latch *l);
void lf_latch_free(struct lf_latch *l);

#endif
