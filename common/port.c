#include "port.h"

#include <stdio.h>

#include "errors.h"

HANDLE create_completion_port(unsigned concurrency)
{
    /*
     * No file yet (INVALID_HANDLE_VALUE, no existing port, key 0): this only creates the
     * port. Concurrency: how many threads the port lets run at once.
     */
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, concurrency);

    if (port == NULL)
        report_win_error("CreateIoCompletionPort");
    else
        printf("completion port %p created\n", (void *)port);
    return port;
}

unsigned processor_count(void)
{
    SYSTEM_INFO info;

    GetSystemInfo(&info);
    return info.dwNumberOfProcessors > 0 ? info.dwNumberOfProcessors : 1;
}
