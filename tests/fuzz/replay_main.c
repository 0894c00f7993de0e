/* replay_main.c — runs a libFuzzer target over every file of the given corpus directories,
 * so the checked-in corpus is an ordinary test (and a crash found by fuzzing, once added to
 * the corpus, stays fixed). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_FILE_BYTES_MAX (1024 * 1024)

static int replay_file(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        return -1;
    }
    uint8_t *data = malloc(REPLAY_FILE_BYTES_MAX);
    size_t size = data ? fread(data, 1, REPLAY_FILE_BYTES_MAX, file) : 0;
    fclose(file);
    if (data == NULL) {
        return -1;
    }
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
    int replayed = 0;
    for (int i = 1; i < argc; i++) {
        DIR *dir = opendir(argv[i]);
        struct dirent *entry;
        while (dir != NULL && (entry = readdir(dir)) != NULL) {
            if (entry->d_name[0] == '.') {
                continue;
            }
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], entry->d_name);
            if (replay_file(path) == 0) {
                replayed++;
            }
        }
        if (dir != NULL) {
            closedir(dir);
        }
    }
    printf("replayed %d inputs\n", replayed);
    return replayed > 0 ? 0 : 1;
}
