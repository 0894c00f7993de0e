/* status.c — see status.h. The switches have no default so -Wswitch flags a missing case. */
#include "status.h"

const char *sd_status_name(sd_status_t status)
{
    switch (status) {
#define SD_STATUS_NAME(name, code, message)                                                        \
    case SD_##name:                                                                                \
        return #name;
        SD_STATUS_MAP(SD_STATUS_NAME)
#undef SD_STATUS_NAME
    }
    return "UNKNOWN";
}

const char *sd_status_message(sd_status_t status)
{
    switch (status) {
#define SD_STATUS_MESSAGE(name, code, message)                                                     \
    case SD_##name:                                                                                \
        return message;
        SD_STATUS_MAP(SD_STATUS_MESSAGE)
#undef SD_STATUS_MESSAGE
    }
    return "unknown error";
}

int sd_status_grpc_code(sd_status_t status)
{
    switch (status) {
#define SD_STATUS_CODE(name, code, message)                                                        \
    case SD_##name:                                                                                \
        return code;
        SD_STATUS_MAP(SD_STATUS_CODE)
#undef SD_STATUS_CODE
    }
    return 2;
}

sd_status_t sd_status_from_grpc_code(int code)
{
#define SD_STATUS_FROM(name, grpc_code, message)                                                   \
    if (code == grpc_code) {                                                                       \
        return SD_##name;                                                                          \
    }
    SD_STATUS_MAP(SD_STATUS_FROM)
#undef SD_STATUS_FROM
    return SD_UNKNOWN;
}
