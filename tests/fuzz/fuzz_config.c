/* The command line of `lakefuse mount`, argv split from the input at NUL
 * bytes: never crash or leak, whatever the options and values. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lakefuse/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
    setenv("HOME", "/nonexistent", 1);
    unsetenv("LAKECTL_SERVER_ENDPOINT_URL");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    char *argv[34];
    int argc = 0;
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    argv[argc++] = "mount";
    for (char *p = copy; argc < 33 && p <= copy + size; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    FILE *devnull = fopen("/dev/null", "w");
    struct lf_config cfg;
    optind = 0; /* getopt starts over */
    if (devnull) {
        lf_config_parse(&cfg, argc, argv, devnull);
        lf_config_free(&cfg);
        fclose(devnull);
    }
    free(copy);
    return 0;
}
