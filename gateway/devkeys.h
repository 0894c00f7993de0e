/* devkeys.h — development mode: with no Wix key configured, the gateway makes a local RSA
 * key pair and app id (kept in a directory, reused on later runs), so a newcomer can sign
 * calls with `stockctl wix-sign` and try the whole flow without a Wix account. */
#ifndef STOCKD_GW_DEVKEYS_H
#define STOCKD_GW_DEVKEYS_H

#include <stddef.h>

#define GW_DEV_PRIVATE_KEY_FILE "wix-private.pem"
#define GW_DEV_PUBLIC_KEY_FILE "wix-public.pem"
#define GW_DEV_APP_ID_FILE "app-id"

/* Ensures dir holds a key pair and an app id; writes the public key path and the app id
 * (a UUID) into the outputs. Returns 0, or -1 with a reason in error. */
int gw_dev_keys_ensure(const char *dir, char *public_key_path, size_t path_capacity, char *app_id,
                       size_t app_id_capacity, char *error, size_t error_capacity);

#endif
