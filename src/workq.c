/* workq: mutex + condition variable FIFO; jobs are small heap nodes. */
#include "lakefuse/workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

struct job {
    lf_job_fn fn;
    void *arg;
    struct job *next;
};

struct lf_workq {
    pthread_mutex_t lock;
    pthread_cond_t more;
    struct job *head, *tail;
    unsigned pending;
    bool stopping;
    unsigned nthreads;
    pthread_t *threads;
};

static void *worker(void *arg)
{
    struct lf_workq *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->head && !q->stopping)
            pthread_cond_wait(&q->more, &q->lock);
        struct job *j = q->head;
        if (!j)
            break; /* stopping and drained */
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        q->pending--;
        pthread_mutex_unlock(&q->lock);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

struct lf_workq *lf_workq_new(unsigned nthreads, const char *name)
{
    struct lf_workq *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->threads = calloc(nthreads ? nthreads : 1, sizeof(*q->threads));
    if (!q->threads) {
        free(q);
        return NULL;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->more, NULL);
    for (unsigned i = 0; i < (nthreads ? nthreads : 1); i++) {
        if (pthread_create(&q->threads[i], NULL, worker, q) != 0)
            break;
        if (name) {
            char tname[16];
            snprintf(tname, sizeof(tname), "%.8s-%u", name, i % 1000);
            pthread_setname_np(q->threads[i], tname);
        }
        q->nthreads++;
    }
    if (q->nthreads == 0) {
        lf_workq_free(q);
        return NULL;
    }
    return q;
}

void lf_workq_free(struct lf_workq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->more);
    pthread_mutex_unlock(&q->lock);
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->more);
    free(q->threads);
    free(q);
}

int lf_workq_submit(struct lf_workq *q, lf_job_fn fn, void *arg)
{
    struct job *j = malloc(sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->fn = fn;
    j->arg = arg;
    j->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->pending++;
    pthread_cond_signal(&q->more);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

unsigned lf_workq_pending(struct lf_workq *q)
{
    pthread_mutex_lock(&q->lock);
    unsigned n = q->pending;
    pthread_mutex_unlock(&q->lock);
    return n;
}

struct lf_latch {
    pthread_mutex_t lock;
    pthread_cond_t zero;
    unsigned count;
};

struct lf_latch *lf_latch_new(unsigned count)
{
    struct lf_latch *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->zero, NULL);
    l->count = count;
    return l;
}

void lf_latch_done(struct lf_latch *l)
{
    pthread_mutex_lock(&l->lock);
    if (l->count > 0 && --l->count == 0)
        pthread_cond_broadcast(&l->zero);
    pthread_mutex_unlock(&l->lock);
}

void lf_latch_wait(struct lf_latch *l)
{
    pthread_mutex_lock(&l->lock);
    while (l->count > 0)
        pthread_cond_wait(&l->zero, &l->lock);
    pthread_mutex_unlock(&l->lock);
}

void lf_latch_free(struct lf_latch *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->zero);
    free(l);
}
