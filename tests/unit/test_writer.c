/* Unit tests for writer.c, the write pipeline, over a real RocksDB: deadlines are checked
 * before applying, a full queue answers RESOURCE_EXHAUSTED, stopping drains the queue, and
 * racing restricted decrements from many threads never oversell. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "test_helpers.h"
#include "util.h"
#include "writer.h"

typedef struct {
    sd_write_job_t job;
    Stockd__V1__ItemRef item;
    Stockd__V1__Line line;
    Stockd__V1__Line *line_pointer;
    sem_t done;
    sd_status_t status;
    char message[SD_ERROR_MESSAGE_BYTES_MAX];
    bool replayed;
    sem_t *gate; /* when set, completion waits on it (to hold the writer thread) */
} test_job_t;

static void on_complete(sd_write_job_t *job)
{
    test_job_t *t = job->context;
    t->status = job->result.error.status;
    t->replayed = job->result.replayed;
    snprintf(t->message, sizeof(t->message), "%s", job->result.error.message);
    sd_write_result_free(&job->result);
    if (t->gate != NULL) {
        sem_wait(t->gate);
    }
    sem_post(&t->done);
}

static void job_init(test_job_t *t, sd_write_kind_t kind, const char *sku, int64_t quantity,
                     bool restrict_inventory)
{
    memset(t, 0, sizeof(*t));
    stockd__v1__item_ref__init(&t->item);
    t->item.app_id = "app";
    t->item.catalog_item_id = (char *)sku;
    stockd__v1__line__init(&t->line);
    t->line.item = &t->item;
    t->line.quantity = quantity;
    t->line_pointer = &t->line;
    t->job.request = (sd_write_request_t){.kind = kind,
                                          .tenant_id = "t",
                                          .lines_count = 1,
                                          .lines = &t->line_pointer,
                                          .restrict_inventory = restrict_inventory,
                                          .order_id = "",
                                          .reason_text = "",
                                          .request_id = ""};
    t->job.deadline_us = INT64_MAX;
    t->job.complete = on_complete;
    t->job.context = t;
    sem_init(&t->done, 0, 0);
}

static sd_status_t submit_and_wait(sd_writer_t *writer, test_job_t *t)
{
    sd_status_t status = sd_writer_submit(writer, &t->job);
    if (status != SD_OK) {
        return status;
    }
    sem_wait(&t->done);
    return t->status;
}

typedef struct {
    char *dir;
    sd_storage_t *storage;
    sd_writer_t *writer;
} env_t;

static _Atomic int storage_failed_calls;

static void on_storage_failed(void *context)
{
    (void)context;
    atomic_fetch_add(&storage_failed_calls, 1);
}

static env_t *env_start(size_t queue_depth)
{
    env_t *env = calloc(1, sizeof(*env));
    env->dir = th_temp_dir();
    env->storage = th_open_storage(env->dir);
    sd_writer_options_t options = {.storage = env->storage,
                                   .sync = true,
                                   .queue_depth_max = queue_depth,
                                   .batch_jobs_max = 64,
                                   .batch_lines_max = 1024,
                                   .idempotency_ttl_s = 3600,
                                   .on_storage_failed = on_storage_failed};
    atomic_store(&storage_failed_calls, 0);
    assert_int_equal(sd_writer_start(&options, &env->writer), SD_OK);
    return env;
}

static void env_stop(env_t *env)
{
    sd_writer_stop(env->writer);
    sd_storage_close(env->storage);
    th_remove_tree(env->dir);
    free(env->dir);
    free(env);
}

static void test_deadline_passed_is_not_applied(void **state)
{
    (void)state;
    env_t *env = env_start(16);
    test_job_t t;
    job_init(&t, SD_WRITE_INCREMENT, "a", 5, false);
    t.job.deadline_us = util_now_us() - 1;
    assert_int_equal(submit_and_wait(env->writer, &t), SD_DEADLINE_EXCEEDED);
    assert_int_equal(sd_writer_committed_seq(env->writer), 0);
    job_init(&t, SD_WRITE_INCREMENT, "a", 5, false);
    t.job.deadline_us = util_now_us() + 10 * 1000000;
    assert_int_equal(submit_and_wait(env->writer, &t), SD_OK);
    assert_int_equal(sd_writer_committed_seq(env->writer), 1);
    env_stop(env);
}

static void test_full_queue_is_resource_exhausted(void **state)
{
    (void)state;
    env_t *env = env_start(1);
    sem_t gate;
    sem_init(&gate, 0, 0);
    test_job_t held, queued, rejected;
    job_init(&held, SD_WRITE_INCREMENT, "a", 1, false);
    held.gate = &gate; /* the writer thread stays in this completion until we post */
    assert_int_equal(sd_writer_submit(env->writer, &held.job), SD_OK);
    while (sd_writer_queue_depth(env->writer) != 0) {
        usleep(1000);
    }
    job_init(&queued, SD_WRITE_INCREMENT, "a", 1, false);
    job_init(&rejected, SD_WRITE_INCREMENT, "a", 1, false);
    assert_int_equal(sd_writer_submit(env->writer, &queued.job), SD_OK);
    assert_int_equal(sd_writer_submit(env->writer, &rejected.job), SD_RESOURCE_EXHAUSTED);
    sem_post(&gate);
    sem_wait(&held.done);
    sem_wait(&queued.done);
    assert_int_equal(held.status, SD_OK);
    assert_int_equal(queued.status, SD_OK);
    assert_int_equal(sd_writer_committed_seq(env->writer), 2);
    env_stop(env);
}

static void test_stop_drains_queue(void **state)
{
    (void)state;
    env_t *env = env_start(64);
    test_job_t jobs[20];
    for (int i = 0; i < 20; i++) {
        job_init(&jobs[i], SD_WRITE_INCREMENT, "a", 1, false);
        assert_int_equal(sd_writer_submit(env->writer, &jobs[i].job), SD_OK);
    }
    sd_writer_t *writer = env->writer;
    sd_writer_stop(writer);
    for (int i = 0; i < 20; i++) {
        sem_wait(&jobs[i].done);
        assert_int_equal(jobs[i].status, SD_OK);
    }
    assert_int_equal(sd_storage_last_seq(env->storage), 0); /* loaded at open only */
    sd_storage_close(env->storage);
    env->storage = th_open_storage(env->dir);
    assert_int_equal(sd_storage_last_seq(env->storage), 20);
    sd_storage_close(env->storage);
    th_remove_tree(env->dir);
    free(env->dir);
    free(env);
}

#define RACE_THREADS 8
#define RACE_CALLS 40
static _Atomic int race_successes;
static _Atomic int race_unexpected; /* cmocka asserts must stay on the test's own thread */

static void *race_worker(void *argument)
{
    sd_writer_t *writer = argument;
    for (int i = 0; i < RACE_CALLS; i++) {
        test_job_t t;
        job_init(&t, SD_WRITE_DECREMENT, "hot", 1, true);
        sd_status_t status = submit_and_wait(writer, &t);
        if (status == SD_OK) {
            atomic_fetch_add(&race_successes, 1);
        } else if (status != SD_FAILED_PRECONDITION) {
            atomic_fetch_add(&race_unexpected, 1);
        }
    }
    return NULL;
}

static void test_racing_restricted_decrements_never_oversell(void **state)
{
    (void)state;
    env_t *env = env_start(1024);
    test_job_t t;
    job_init(&t, SD_WRITE_INCREMENT, "hot", 100, false);
    assert_int_equal(submit_and_wait(env->writer, &t), SD_OK);
    pthread_t threads[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_create(&threads[i], NULL, race_worker, env->writer);
    }
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    assert_int_equal(atomic_load(&race_unexpected), 0);
    assert_int_equal(atomic_load(&race_successes), 100);
    assert_int_equal(sd_writer_committed_seq(env->writer), 101);
    env_stop(env);
}

static int64_t stored_level(sd_storage_t *storage, const char *sku, uint64_t *version_out)
{
    sd_item_key_t parts = {sd_bytes_of("t"), sd_bytes_of(""), sd_bytes_of("app"), sd_bytes_of(sku),
                           sd_bytes_of("")};
    uint8_t key[SD_ITEM_KEY_BYTES_MAX];
    size_t length = sd_key_encode_item(&parts, key, sizeof(key));
    sd_level_t level;
    bool found = false;
    assert_int_equal(sd_storage_get_level(storage, key, length, &level, &found), SD_OK);
    *version_out = level.version;
    return level.available;
}

/* Closes the writer and storage, and opens the storage again as a restart would. */
static void env_restart_storage(env_t *env)
{
    sd_writer_stop(env->writer);
    env->writer = NULL;
    sd_storage_close(env->storage);
    env->storage = th_open_storage(env->dir);
}

static void env_free(env_t *env)
{
    sd_storage_close(env->storage);
    th_remove_tree(env->dir);
    free(env->dir);
    free(env);
}

/* Fault injection in a loop: the Nth commit fails, for N = 1..6. The writes before it are
 * acknowledged and stored; the failing one is answered "outcome unknown" (UNAVAILABLE), never
 * "not applied"; storage failure is reported once and the writer takes no more writes
 * (fail-stop); after a restart every acknowledged write is there, the seq is gap-free, and
 * nothing leaks (valgrind/ASan runs). */
static void test_failed_commits_in_a_loop(void **state)
{
    (void)state;
    for (int failing = 1; failing <= 6; failing++) {
        env_t *env = env_start(16);
        sd_storage_fail_write_after(env->storage, failing);
        int64_t acknowledged = 0;
        for (int i = 0; i < failing; i++) {
            test_job_t t;
            job_init(&t, SD_WRITE_INCREMENT, "f", i + 1, false);
            sd_status_t status = submit_and_wait(env->writer, &t);
            if (i + 1 < failing) {
                assert_int_equal(status, SD_OK);
                acknowledged += i + 1;
                continue;
            }
            assert_int_equal(status, SD_UNAVAILABLE);
            assert_non_null(strstr(t.message, "outcome unknown"));
            assert_non_null(strstr(t.message, "same request_id"));
        }
        assert_true(sd_writer_failed(env->writer));
        assert_int_equal(atomic_load(&storage_failed_calls), 1);
        test_job_t after;
        job_init(&after, SD_WRITE_INCREMENT, "f", 100, false);
        assert_int_equal(sd_writer_submit(env->writer, &after.job), SD_UNAVAILABLE);
        assert_int_equal(sd_writer_committed_seq(env->writer), (uint64_t)failing - 1);
        env_restart_storage(env);
        assert_int_equal(sd_storage_last_seq(env->storage), (uint64_t)failing - 1);
        uint64_t version = 0;
        assert_int_equal(stored_level(env->storage, "f", &version), acknowledged);
        assert_int_equal(version, (uint64_t)failing - 1);
        env_free(env);
    }
}

/* A batch whose commit fails answers nothing from it as settled: an applied request, a replay
 * of it from the same (never stored) batch, a refusal judged against it, and an
 * ALREADY_EXISTS all get "outcome unknown"; after a restart the request_id is unknown and
 * its retry applies once, fresh. */
static void test_failed_batch_answers_nothing_as_settled(void **state)
{
    (void)state;
    env_t *env = env_start(16);
    sem_t gate;
    sem_init(&gate, 0, 0);
    test_job_t held, applied, replay, refused, conflict;
    job_init(&held, SD_WRITE_INCREMENT, "s", 1, false);
    held.gate = &gate; /* the writer waits in this completion while the batch is queued */
    assert_int_equal(sd_writer_submit(env->writer, &held.job), SD_OK);
    while (sd_writer_queue_depth(env->writer) != 0) {
        usleep(1000);
    }
    job_init(&applied, SD_WRITE_DECREMENT, "s", 1, true);
    applied.job.request.request_id = "r1";
    job_init(&replay, SD_WRITE_DECREMENT, "s", 1, true);
    replay.job.request.request_id = "r1";
    job_init(&refused, SD_WRITE_DECREMENT, "s", 1, true); /* the level is 0 after r1 */
    job_init(&conflict, SD_WRITE_DECREMENT, "s", 2, true);
    conflict.job.request.request_id = "r1";
    test_job_t *batch[] = {&applied, &replay, &refused, &conflict};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(sd_writer_submit(env->writer, &batch[i]->job), SD_OK);
    }
    sd_storage_fail_write_after(env->storage, 1);
    sem_post(&gate);
    sem_wait(&held.done);
    assert_int_equal(held.status, SD_OK);
    for (size_t i = 0; i < 4; i++) {
        sem_wait(&batch[i]->done);
        assert_int_equal(batch[i]->status, SD_UNAVAILABLE);
        assert_false(batch[i]->replayed);
        assert_non_null(strstr(batch[i]->message, "outcome unknown"));
    }
    env_restart_storage(env);
    uint64_t version = 0;
    assert_int_equal(stored_level(env->storage, "s", &version), 1);
    sd_writer_options_t options = {.storage = env->storage,
                                   .sync = true,
                                   .queue_depth_max = 4,
                                   .batch_jobs_max = 4,
                                   .batch_lines_max = 64,
                                   .idempotency_ttl_s = 3600};
    assert_int_equal(sd_writer_start(&options, &env->writer), SD_OK);
    job_init(&applied, SD_WRITE_DECREMENT, "s", 1, true);
    applied.job.request.request_id = "r1";
    assert_int_equal(submit_and_wait(env->writer, &applied), SD_OK);
    assert_false(applied.replayed);
    job_init(&replay, SD_WRITE_DECREMENT, "s", 1, true);
    replay.job.request.request_id = "r1";
    assert_int_equal(submit_and_wait(env->writer, &replay), SD_OK);
    assert_true(replay.replayed);
    sd_writer_stop(env->writer);
    assert_int_equal(stored_level(env->storage, "s", &version), 0);
    env_free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_passed_is_not_applied),
        cmocka_unit_test(test_full_queue_is_resource_exhausted),
        cmocka_unit_test(test_stop_drains_queue),
        cmocka_unit_test(test_racing_restricted_decrements_never_oversell),
        cmocka_unit_test(test_failed_commits_in_a_loop),
        cmocka_unit_test(test_failed_batch_answers_nothing_as_settled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
