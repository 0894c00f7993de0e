/* Unit tests for watch.c (included, to reach the hub's state): a commit never waits for the
 * watchers, and a watcher's lag counts only what it still has to receive. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <time.h>

#include "../../daemon/watch.c"
#include "test_helpers.h"

static _Atomic bool commit_returned;

static void *commit_thread(void *argument)
{
    sd_watch_hub_on_commit(argument, 42);
    atomic_store(&commit_returned, true);
    return NULL;
}

/* Regression: the commit callback took the hub's mutex, which the hub thread holds across
 * RocksDB scans and stream sends, so a slow scan stalled every writer. Holding that mutex
 * here stands for a hub busy with watchers: the commit must still return at once. */
static void test_commit_never_waits_for_watchers(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    sd_storage_t *storage = th_open_storage(dir);
    sd_watch_hub_t *hub = sd_watch_hub_new(storage, 0, 1000);
    assert_non_null(hub);
    pthread_mutex_lock(&hub->mutex);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, commit_thread, hub), 0);
    for (int i = 0; i < 2000 && !atomic_load(&commit_returned); i++) {
        struct timespec pause = {0, 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    bool returned = atomic_load(&commit_returned);
    pthread_mutex_unlock(&hub->mutex);
    pthread_join(thread, NULL);
    assert_true(returned);
    assert_int_equal(atomic_load(&hub->committed_seq), 42);
    sd_watch_hub_free(hub);
    sd_storage_close(storage);
    th_remove_tree(dir);
    free(dir);
}

/* Lag is measured from the oldest entry not yet sent, not from the last one sent: a quiet
 * tenant's watcher whose cursor is far behind the daemon's seq is not behind at all. */
static void test_lag_counts_only_unsent_entries(void **state)
{
    (void)state;
    sd_watcher_t watcher;
    memset(&watcher, 0, sizeof(watcher));
    watcher.cursor = 5;             /* the last entry of its tenant it was sent */
    watcher.pending_seqs[0] = 1000; /* its next one, committed after 995 of other tenants */
    watcher.pending_count = 1;
    assert_int_equal(sd_watcher_lag(&watcher, 1000), 1);
    assert_int_equal(sd_watcher_lag(&watcher, 1009), 10);
    watcher.scanned_through = 990; /* nothing of its tenant up to 990 */
    assert_int_equal(sd_watcher_position(&watcher), 990);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_never_waits_for_watchers),
        cmocka_unit_test(test_lag_counts_only_unsent_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
