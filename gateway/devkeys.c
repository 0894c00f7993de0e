/* devkeys.c — see devkeys.h. */
#include "devkeys.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int gw_write_keys(const char *private_path, const char *public_path)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    if (key == NULL) {
        return -1;
    }
    int status = -1;
    mode_t previous = umask(077); /* the private key is readable by its owner only */
    FILE *private_file = fopen(private_path, "w");
    umask(previous);
    FILE *public_file = fopen(public_path, "w");
    if (private_file != NULL && public_file != NULL &&
        PEM_write_PrivateKey(private_file, key, NULL, NULL, 0, NULL, NULL) == 1 &&
        PEM_write_PUBKEY(public_file, key) == 1) {
        status = 0;
    }
    if (private_file != NULL && fclose(private_file) != 0) {
        status = -1;
    }
    if (public_file != NULL && fclose(public_file) != 0) {
        status = -1;
    }
    EVP_PKEY_free(key);
    return status;
}

static int gw_ensure_app_id(const char *path, char *app_id, size_t capacity)
{
    FILE *file = fopen(path, "r");
    if (file != NULL) {
        char line[64] = {0};
        bool read = fgets(line, sizeof(line), file) != NULL;
        fclose(file);
        line[strcspn(line, "\r\n")] = '\0';
        if (read && line[0] != '\0') {
            snprintf(app_id, capacity, "%s", line);
            return 0;
        }
    }
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
        return -1;
    }
    bytes[6] = (unsigned char)((bytes[6] & 0x0F) | 0x40); /* UUID version 4 */
    bytes[8] = (unsigned char)((bytes[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    snprintf(app_id, capacity,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", bytes[0],
             bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8],
             bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]);
    file = fopen(path, "w");
    if (file == NULL) {
        return -1;
    }
    fprintf(file, "%s\n", app_id);
    return fclose(file) == 0 ? 0 : -1;
}

int gw_dev_keys_ensure(const char *dir, char *public_key_path, size_t path_capacity, char *app_id,
                       size_t app_id_capacity, char *error, size_t error_capacity)
{
    char private_path[1024], app_id_path[1024];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(error, error_capacity, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(private_path, sizeof(private_path), "%s/%s", dir, GW_DEV_PRIVATE_KEY_FILE);
    snprintf(public_key_path, path_capacity, "%s/%s", dir, GW_DEV_PUBLIC_KEY_FILE);
    snprintf(app_id_path, sizeof(app_id_path), "%s/%s", dir, GW_DEV_APP_ID_FILE);
    if ((access(private_path, R_OK) != 0 || access(public_key_path, R_OK) != 0) &&
        gw_write_keys(private_path, public_key_path) != 0) {
        snprintf(error, error_capacity, "cannot write a development key pair in %s", dir);
        return -1;
    }
    if (gw_ensure_app_id(app_id_path, app_id, app_id_capacity) != 0) {
        snprintf(error, error_capacity, "cannot write %s", app_id_path);
        return -1;
    }
    return 0;
}
