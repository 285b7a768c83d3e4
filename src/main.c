/* lakefuse: command-line entry point. */
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: lakefuse mount [OPTIONS] [lakefs://REPO[/REF]] MOUNTPOINT\n"
            "       lakefuse unmount MOUNTPOINT\n"
            "       lakefuse --version\n");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
        printf("lakefuse %s\n", LAKEFUSE_VERSION);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
