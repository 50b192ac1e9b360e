#include "quit.h"

#include "errors.h"

#include <windows.h>
#include <process.h>
#include <string.h>

/*
 * Two threads can ask to stop at the same time: the console's control handler runs on a
 * thread the system creates, and standard input is read on a thread of ours. The first
 * one to swap its reason into stop_reason wins; the event then wakes quit_wait().
 * The Interlocked call is a full barrier, so the reason is visible before the event is set.
 */
enum stop_reason {
    STOP_NONE,
    STOP_QUIT,
    STOP_END_OF_INPUT,
    STOP_CTRL_C,
    STOP_CTRL_BREAK,
    STOP_CLOSE
};
static const char *const stop_reason_names[] = {
    "none", "quit", "end of input", "Ctrl+C", "Ctrl+Break", "console closed",
};
static HANDLE stop_event;
static volatile LONG stop_reason = STOP_NONE;

static void request_stop(enum stop_reason reason)
{
    InterlockedCompareExchange(&stop_reason, (LONG)reason, STOP_NONE);
    if (!SetEvent(stop_event))
        report_win_error("SetEvent");
}

static BOOL WINAPI on_console_event(DWORD event)
{
    switch (event) {
    case CTRL_C_EVENT:
        request_stop(STOP_CTRL_C);
        return TRUE;
    case CTRL_BREAK_EVENT:
        request_stop(STOP_CTRL_BREAK);
        return TRUE;
    case CTRL_CLOSE_EVENT:
        request_stop(STOP_CLOSE);
        /* The process ends when this returns; give main a moment to shut down first. */
        Sleep(2000);
        return TRUE;
    default:
        return FALSE;
    }
}

/* Compares one line, minus any trailing CR from Windows line ends, with "quit". */
static int is_quit_line(const char *line, size_t length)
{
    if (length > 0 && line[length - 1] == '\r')
        length--;
    return length == 4 && memcmp(line, "quit", 4) == 0;
}

/*
 * Reads standard input with ReadFile rather than fgets: the C runtime locks stdin for a
 * whole fgets call, and exit() may wait for that lock while this thread is still blocked
 * in a read, so the program could never end.
 */
static unsigned __stdcall watch_standard_input(void *unused)
{
    HANDLE input = GetStdHandle(STD_INPUT_HANDLE);
    char line[256];
    size_t used = 0;
    int overlong = 0;

    (void)unused;
    for (;;) {
        char chunk[256];
        DWORD got = 0;
        DWORD i;

        if (input == NULL || input == INVALID_HANDLE_VALUE ||
            !ReadFile(input, chunk, sizeof chunk, &got, NULL) || got == 0) {
            /*
             * In a console, Ctrl+C can also end a pending read with nothing read. Give the
             * control handler, which runs on a thread of its own, a moment to record the
             * real reason first; either way the server stops.
             */
            Sleep(100);
            request_stop(STOP_END_OF_INPUT);
            return 0;
        }
        for (i = 0; i < got; i++) {
            if (chunk[i] == '\n') {
                if (!overlong && is_quit_line(line, used)) {
                    request_stop(STOP_QUIT);
                    return 0;
                }
                used = 0;
                overlong = 0;
            } else if (used < sizeof line) {
                line[used++] = chunk[i];
            } else {
                overlong = 1; /* too long to be "quit": ignore the rest of this line */
            }
        }
    }
}

int quit_watch_start(void)
{
    HANDLE reader;

    stop_event = CreateEventA(NULL, TRUE, FALSE, NULL);
    if (stop_event == NULL) {
        report_win_error("CreateEvent");
        return -1;
    }
    if (!SetConsoleCtrlHandler(on_console_event, TRUE)) {
        report_win_error("SetConsoleCtrlHandler");
        return -1;
    }
    reader = (HANDLE)_beginthreadex(NULL, 0, watch_standard_input, NULL, 0, NULL);
    if (reader == NULL) {
        report_errno("_beginthreadex");
        return -1;
    }
    /* Nobody joins the reader: it may stay blocked in ReadFile until the process ends. */
    if (!CloseHandle(reader)) {
        report_win_error("CloseHandle");
        return -1;
    }
    return 0;
}

const char *quit_wait(void)
{
    if (WaitForSingleObject(stop_event, INFINITE) != WAIT_OBJECT_0) {
        report_win_error("WaitForSingleObject");
        return "wait failed";
    }
    return stop_reason_names[InterlockedCompareExchange(&stop_reason, STOP_NONE, STOP_NONE)];
}
