#include "workers.h"

#include <process.h>

#include <stdlib.h>

#include "errors.h"

int start_workers(HANDLE **workers, unsigned *count, worker_function run, void *context)
{
    unsigned wanted = *count;
    unsigned i;

    *workers = calloc(wanted, sizeof **workers);
    if (*workers == NULL) {
        report_errno("calloc");
        *count = 0;
        return -1;
    }
    for (i = 0; i < wanted; i++) {
        (*workers)[i] = (HANDLE)_beginthreadex(NULL, 0, run, context, 0, NULL);
        if ((*workers)[i] == NULL) {
            report_errno("_beginthreadex");
            *count = i; /* the workers that are running, each to be stopped */
            return -1;
        }
    }
    return 0;
}
