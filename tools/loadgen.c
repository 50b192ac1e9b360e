/*
 * loadgen.exe: a load generator for the echo servers, on a completion port of its own.
 *
 *   loadgen.exe [options] [HOST] [PORT]       (defaults 127.0.0.1 9000; --help lists them)
 *
 * It opens --connections connections to the server, keeps --pipeline messages of --size
 * bytes in flight on each, compares every byte that comes back with the byte sent at that
 * place in the stream, and times each round trip. After --warmup seconds that are not
 * counted and --seconds that are, it stops sending, waits up to DRAIN_SECONDS for the last
 * echoes, closes every connection gracefully (its FIN, then the server's), and prints a
 * report: the connections opened, messages per second in the measured window, the round
 * trip's p50, p99 and max, the bytes verified, and the errors of each kind, with the first
 * of each kind. --json prints the same report as one JSON line. Exit code 0 when every echo
 * came back whole and equal and nothing failed, 1 on any error, 2 for a bad command line.
 *
 * It is the client side of what the chapters teach for the server side:
 *
 *  - Connections open with ConnectEx, the extension function WSAIoctl hands out
 *    (SIO_GET_EXTENSION_FUNCTION_POINTER), so a connect completes on the port like any
 *    other I/O. ConnectEx takes only a bound socket, so each is bound first to the wildcard
 *    address and port 0; once the connect has completed, SO_UPDATE_CONNECT_CONTEXT makes
 *    it an ordinary connected socket (shutdown needs that). At most CONNECTS_AT_ONCE are
 *    pending at a time, so that many connections do not overflow the server's listen
 *    backlog (a SYN dropped there is tried again only a second or more later).
 *  - One completion port and --workers threads on it, each taking up to BATCH completions
 *    per GetQueuedCompletionStatusEx: one call into the system for many completions.
 *  - A connection has three operations, each with an OVERLAPPED of its own: the connect,
 *    one send and one receive. A receive is always posted; one send at a time gathers
 *    every message made and not yet sent, with up to two buffers (WSASend).
 *
 * The bytes in flight. A connection's messages form one stream: message n is stream bytes
 * n*L to (n+1)*L-1 (L is --size, plus the 5-byte header with --framed), and the stream is
 * kept in a ring of --pipeline (K) messages, stream byte i at ring byte i % (K*L). What
 * comes back is compared with the ring at the same stream offset, so nothing is copied or
 * allocated per message. Message n takes the place of message n-K, and may take it only
 * once that one has come back whole (the check no longer needs it) AND its send has
 * completed: until the send's completion is dequeued the buffer belongs to the system, even
 * when the echo is already back. Each message's bytes are its own: its number and its
 * connection's in the first 8 bytes, then bytes drawn from both, so an echo of an older
 * message, or of another connection's, cannot pass (a message under 8 bytes holds only as
 * much of the numbers as fits).
 *
 * Threads, and what they share:
 *  - A connection has a lock (a critical section) of its own: two workers may run its send
 *    and its receive completion at the same time, and the main thread starts its traffic
 *    and times it out. Everything in struct connection is used under it.
 *  - Statistics: each worker counts what it verifies (messages, a latency histogram) in a
 *    struct of its own, so the hot path shares no counter and takes no lock but its
 *    connection's; the main thread adds them up after the workers have ended, and that
 *    end is what makes reading them safe.
 *  - The run's clock (when counting starts, when sending stops): written by the main
 *    thread before it takes the first connection's lock to start its traffic, and read by
 *    the workers only under the lock of a connection already started, so after the main
 *    thread has let go of that lock, and each reads what was written.
 *  - Errors are rare: one lock for their counts and the first text of each kind. Nothing
 *    is printed while the load runs, since console output serialises the threads (and
 *    under Wine takes up to milliseconds a line); the first error of each kind is printed
 *    at the end, with the report.
 *  - The counts of connects ended and of connections finished are Interlocked; the thread
 *    that brings one to --connections sets the event the main thread waits on.
 *
 * Lifetimes. A connection is finished when its socket is closed and every operation it
 * posted has had its completion dequeued (no operation pending). The connections, their
 * OVERLAPPEDs and their buffers are freed only when all are finished; if some are not
 * within the bounds below, the memory is kept and the program ends all the same.
 *
 * Bounds, so that it always ends: CONNECT_SECONDS for the connects, DRAIN_SECONDS after the
 * window for the last echoes and the server's FIN, CANCEL_SECONDS for cancelled I/O to
 * complete. A connection still busy at a bound is reset and counted as a timeout. The
 * connects, and with --idle the one echoes and the closes, get a second more for every
 * CONNECTS_PER_SECOND connections: a server takes them one after another.
 *
 * "bytes verified" counts the bytes of the messages that came back whole and equal,
 * headers included: messages x --size, or messages x (--size + 5) with --framed; a message
 * only partly back at the end is not counted (it is a timeout). When every connection
 * ended cleanly it equals a chapter's "bytes echoed".
 *
 * --idle measures what a connection costs a server while it does nothing: each connection
 * sends one message and checks its echo, so the server has surely accepted it and posted
 * its next receive; once every one is back the program prints "holding N connections" and
 * sends nothing for --seconds, so that whoever started it can read the server's memory
 * then; after that every connection closes gracefully as above. --warmup is not used.
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connect.h"
#include "connection.h"
#include "errors.h"
#include "frame.h"
#include "listener.h"
#include "options.h"
#include "port.h"
#include "teardown.h"
#include "workers.h"

/* --- limits and bounds ---------------------------------------------------------------- */

#define DEFAULT_CONNECTIONS 100
/* Each socket is a descriptor in wineserver, shared with a server in the same prefix. */
#define MAX_CONNECTIONS 10000
#define DEFAULT_SIZE    64
#define MAX_PIPELINE    1024
#define DEFAULT_SECONDS 5
#define DEFAULT_WARMUP  1
#define MAX_SECONDS     3600
/* connections x pipeline x message bytes: the rings, allocated before the run. */
#define MAX_RING_BYTES (256UL * 1024 * 1024)
/* Connects pending at once; each completion lets the next one go. */
#define CONNECTS_AT_ONCE 64
/* How long all the connects may take (plus a second per CONNECTS_PER_SECOND more: under
 * Wine here 10,000 took about 15 s), the last echoes after the window, and cancelled I/O
 * after a reset. */
#define CONNECT_SECONDS     20
#define CONNECTS_PER_SECOND 250
#define DRAIN_SECONDS       5
#define CANCEL_SECONDS      5
/* Completions taken per GetQueuedCompletionStatusEx. */
#define BATCH 64
/* A receive takes up to the bytes a connection has in flight, within these bounds. */
#define MIN_RECEIVE 4096
#define MAX_RECEIVE 65536
/* Room for the text of an error: a call's failure, or a mismatch and where it was. */
#define ERROR_TEXT_SIZE 512

/* --- the command line ----------------------------------------------------------------- */

/* What the command line asked for; the numbers have been checked against their ranges. */
struct settings {
    unsigned long connections;
    unsigned long workers; /* 0: one per processor */
    unsigned long size;    /* payload bytes per message */
    unsigned long pipeline;
    unsigned long seconds;
    unsigned long warmup;
    int framed;
    int json;
    int idle;
};

static struct settings settings = {
    DEFAULT_CONNECTIONS, 0, DEFAULT_SIZE, 1, DEFAULT_SECONDS, DEFAULT_WARMUP, 0, 0, 0};

/* Prints how to run the program to @p out. */
static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: loadgen.exe [options] [HOST] [PORT]\n"
            "  --connections N  connections to open, 1-%d (default %d)\n"
            "  --workers N      threads on the completion port, 1-%d (default: one per "
            "processor)\n"
            "  --size BYTES     payload bytes per message, 1-%lu (default %d)\n"
            "  --pipeline K     messages in flight per connection, 1-%d (default 1: "
            "ping-pong)\n"
            "  --seconds S      seconds measured, 1-%d (default %d)\n"
            "  --warmup W       seconds before them, not counted, 0-%d (default %d)\n"
            "  --framed         send each message as an echo message (chapter 11 on): a "
            "5-byte header, type 1\n"
            "  --json           print the report as one line of JSON\n"
            "  --idle           one message per connection, then hold them all --seconds "
            "without traffic\n"
            "  HOST             server name or address; IPv6 literals such as ::1 work "
            "(default %s)\n"
            "  PORT             server port, 1-65535 (default %d)\n"
            "  --help           show this help and exit\n"
            "Every byte that comes back is compared with what was sent. Exit code 0 when all "
            "came back equal,\n1 on any error (a mismatch, a reset, a connect that failed, a "
            "timeout), 2 for a bad command line.\n",
            MAX_CONNECTIONS, DEFAULT_CONNECTIONS, MAX_WORKERS, MAX_MAX_MESSAGE, DEFAULT_SIZE,
            MAX_PIPELINE, MAX_SECONDS, DEFAULT_SECONDS, MAX_SECONDS, DEFAULT_WARMUP, DEFAULT_HOST,
            DEFAULT_PORT);
}

/* Reads @p text as a whole decimal number from @p low to @p high into @p value; returns 1,
 * or 0 when it is not one. */
static int read_number(const char *text, unsigned long low, unsigned long high,
                       unsigned long *value)
{
    unsigned long long number = 0;
    size_t i;

    if (text[0] == '\0' || strlen(text) > 10)
        return 0;
    for (i = 0; text[i] != '\0'; i++) {
        if (text[i] < '0' || text[i] > '9')
            return 0;
        number = number * 10 + (unsigned long long)(text[i] - '0');
    }
    if (number < low || number > high)
        return 0;
    *value = (unsigned long)number;
    return 1;
}

/* An option that takes a number: its name, its range, and where it goes. */
struct number_option {
    const char *name;
    unsigned long low;
    unsigned long high;
    unsigned long *value;
};

/* An option that takes no value: its name, and the setting it turns on. */
struct flag_option {
    const char *name;
    int *value;
};

/* The tool's options; returns how many arguments one took, or 0 (see connect.h). */
static int take_option(const struct tool *tool, int argc, char **argv, int index)
{
    static const struct number_option numbers[] = {
        {"--connections", 1, MAX_CONNECTIONS, &settings.connections},
        {"--workers", 1, MAX_WORKERS, &settings.workers},
        {"--size", 1, MAX_MAX_MESSAGE, &settings.size},
        {"--pipeline", 1, MAX_PIPELINE, &settings.pipeline},
        {"--seconds", 1, MAX_SECONDS, &settings.seconds},
        {"--warmup", 0, MAX_SECONDS, &settings.warmup},
    };
    static const struct flag_option flags[] = {
        {"--framed", &settings.framed},
        {"--json", &settings.json},
        {"--idle", &settings.idle},
    };
    /* Which options were given, by their place in numbers[], then in flags[]. */
    static int given[sizeof numbers / sizeof numbers[0] + sizeof flags / sizeof flags[0]];
    static char problem[128];
    const size_t count = sizeof numbers / sizeof numbers[0];
    size_t i;

    for (i = 0; i < sizeof given / sizeof given[0]; i++) {
        const char *name = i < count ? numbers[i].name : flags[i - count].name;

        if (strcmp(argv[index], name) != 0)
            continue;
        if (given[i]) {
            snprintf(problem, sizeof problem, "%s given more than once", name);
            tool_usage_error(tool, problem, NULL);
        }
        given[i] = 1;
        if (i >= count) {
            *flags[i - count].value = 1;
            return 1;
        }
        if (index + 1 >= argc) {
            snprintf(problem, sizeof problem, "%s needs a number", name);
            tool_usage_error(tool, problem, NULL);
        }
        if (!read_number(argv[index + 1], numbers[i].low, numbers[i].high, numbers[i].value)) {
            snprintf(problem, sizeof problem, "%s must be a whole number from %lu to %lu, not",
                     name, numbers[i].low, numbers[i].high);
            tool_usage_error(tool, problem, argv[index + 1]);
        }
        return 2;
    }
    return 0;
}

/* --- the run's state ------------------------------------------------------------------ */

/* What a connection is doing. */
enum state {
    STATE_IDLE,       /* not started */
    STATE_CONNECTING, /* ConnectEx pending */
    STATE_OPEN,       /* connected: receiving, and sending once started */
    STATE_CLOSING,    /* all echoes back and our FIN sent: waiting for the server's */
    STATE_CLOSED      /* socket closed; finished once no operation is pending */
};

/* The three operations of a connection; each completion names its own. */
enum kind { OPERATION_CONNECT, OPERATION_SEND, OPERATION_RECEIVE };

/* One posted operation: the OVERLAPPED the system uses, and what it was. */
struct operation {
    OVERLAPPED overlapped;
    enum kind kind;
};

/* One connection; every field is used under its lock (see the header comment). */
struct connection {
    CRITICAL_SECTION lock;
    unsigned number; /* 0 to --connections - 1: in its messages and in error texts */
    SOCKET socket_handle;
    enum state state;
    int pending;       /* operations posted whose completion has not been dequeued */
    int sending;       /* the send is one of them */
    int started;       /* the main thread has started its traffic */
    int connect_ended; /* counted in run.connects_ended */
    int finished;      /* counted in run.finished */
    int settled;       /* --idle: counted in run.settled */
    struct operation connect, send, receive;
    unsigned char *ring;              /* K messages of L bytes: the stream in flight */
    unsigned char *inbox;             /* where the receive puts what arrives */
    LONGLONG *stamps;                 /* when each message in the ring was made */
    unsigned long long made;          /* messages made (written into the ring) */
    unsigned long long sent_bytes;    /* stream bytes whose sends have completed */
    unsigned long long checked_bytes; /* stream bytes that came back and were equal */
};

/*
 * The latency histogram, in microseconds: one bucket per microsecond under EXACT_BELOW,
 * then SUB_BUCKETS buckets per power of two (within about 1.6% of the value), up to
 * 2^(EXACT_BITS + OCTAVES) us, over an hour; anything longer counts in the last bucket.
 * Fixed, so a latency is counted without allocating.
 */
#define EXACT_BITS  7
#define EXACT_BELOW (1u << EXACT_BITS)
#define SUB_BITS    6
#define SUB_BUCKETS (1u << SUB_BITS)
#define OCTAVES     26
#define BUCKETS     (EXACT_BELOW + OCTAVES * SUB_BUCKETS)

/* What one worker verified; only that worker writes it (see the header comment). */
struct worker_stats {
    unsigned long long messages; /* messages back whole and equal, in the window or not */
    unsigned long long measured; /* ... of them back inside the measured window */
    LONGLONG longest;            /* the longest round trip in the window, in ticks */
    unsigned long long histogram[BUCKETS];
};

/* The kinds of error, each counted, the first of each kept to print. */
enum error_kind {
    FAILURE_CONNECT,
    FAILURE_RESET,
    FAILURE_MISMATCH,
    FAILURE_TIMEOUT,
    FAILURE_KINDS
};

static const char *const error_names[FAILURE_KINDS] = {"connect failures", "resets", "mismatches",
                                                       "timeouts"};
static const char *const error_keys[FAILURE_KINDS] = {"connect", "reset", "mismatch", "timeout"};

/* Everything the threads share, each part used as the header comment says. */
static struct {
    /* set before the workers start, then only read */
    struct sockaddr_storage address;
    int address_length;
    struct sockaddr_storage wildcard; /* the same family's any-address, port 0 */
    LPFN_CONNECTEX connect_ex;
    HANDLE port;
    HANDLE connect_slots; /* a semaphore of CONNECTS_AT_ONCE */
    HANDLE connects_done; /* set when every connect has ended */
    HANDLE all_finished;  /* set when every connection is finished */
    HANDLE all_settled;   /* --idle: set when every connection has echoed or ended */
    LONGLONG ticks_per_second;
    size_t message_bytes; /* L: --size, plus the header with --framed */
    size_t ring_bytes;    /* K x L */
    ULONG receive_bytes;
    struct connection *connections;
    struct worker_stats *stats; /* one per worker */
    unsigned workers;
    /* the clock: written by the main thread before any traffic starts (header comment) */
    LONGLONG measure_from;
    LONGLONG stop_at;
    /* Interlocked */
    volatile LONG connects_ended;
    volatile LONG finished;
    volatile LONG opened;
    volatile LONG closed_gracefully;
    volatile LONG workers_started;
    volatile LONG clock_failed;
    volatile LONG echoed_once; /* --idle: connections whose one echo is back */
    volatile LONG settled;     /* --idle: ... and those that ended before it */
    volatile LONG hold_over;   /* --idle: set once the hold has ended */
    /* under errors_lock */
    CRITICAL_SECTION errors_lock;
    unsigned long long error_counts[FAILURE_KINDS];
    char first_error[FAILURE_KINDS][ERROR_TEXT_SIZE];
} run;

/* --- errors --------------------------------------------------------------------------- */

/* Counts an error of @p kind, and keeps @p text when it is the first of its kind. */
static void record_error(enum error_kind kind, const char *text)
{
    EnterCriticalSection(&run.errors_lock);
    if (run.error_counts[kind]++ == 0)
        snprintf(run.first_error[kind], ERROR_TEXT_SIZE, "%s", text);
    LeaveCriticalSection(&run.errors_lock);
}

/* Counts the failure of @p call with error @p code, kept as "<call> failed: <code> <text>"
 * when it is the first of its kind (the system's text is looked up only then). */
static void record_call_error(enum error_kind kind, const char *call, unsigned long code)
{
    EnterCriticalSection(&run.errors_lock);
    if (run.error_counts[kind]++ == 0) {
        char text[ERROR_TEXT_SIZE - 64];

        snprintf(run.first_error[kind], ERROR_TEXT_SIZE, "%s failed: %lu %s", call, code,
                 error_text(code, text, sizeof text));
    }
    LeaveCriticalSection(&run.errors_lock);
}

/* The time now, in QueryPerformanceCounter ticks. Its page says it cannot fail from
 * Windows XP on; a failure is still noted, and ends the run with exit code 1. */
static LONGLONG clock_now(void)
{
    LARGE_INTEGER now;

    if (!QueryPerformanceCounter(&now)) {
        InterlockedExchange(&run.clock_failed, 1);
        return 0;
    }
    return now.QuadPart;
}

/* Milliseconds from now until @p deadline (in ticks), 0 once it has passed. */
static DWORD milliseconds_until(LONGLONG deadline)
{
    LONGLONG left = deadline - clock_now();

    return left <= 0 ? 0 : (DWORD)(left * 1000 / run.ticks_per_second + 1);
}

/* --- a connection's end --------------------------------------------------------------- */

/* --idle: counts the connection as settled, once: its echo is back, or it has ended
 * without it, so the hold need not wait for it (lock held). */
static void settle(struct connection *connection)
{
    if (!settings.idle || connection->settled)
        return;
    connection->settled = 1;
    if (InterlockedIncrement(&run.settled) == (LONG)settings.connections &&
        !SetEvent(run.all_settled))
        report_win_error("SetEvent");
}

/* Counts the connection as finished once it is closed with nothing pending (lock held). */
static void finish_if_done(struct connection *connection)
{
    if (connection->state != STATE_CLOSED || connection->pending > 0 || connection->finished)
        return;
    settle(connection);
    connection->finished = 1;
    if (InterlockedIncrement(&run.finished) == (LONG)settings.connections &&
        !SetEvent(run.all_finished))
        report_win_error("SetEvent");
}

/* Counts the connect as ended, once, whatever its outcome (lock held). */
static void end_connect(struct connection *connection)
{
    if (connection->connect_ended)
        return;
    connection->connect_ended = 1;
    if (InterlockedIncrement(&run.connects_ended) == (LONG)settings.connections &&
        !SetEvent(run.connects_done))
        report_win_error("SetEvent");
}

/*
 * Closes the connection with a reset (lock held): its pending operations are cancelled
 * first and each still completes, with an error (common/connection.h).
 */
static void reset_connection(struct connection *connection)
{
    if (connection->socket_handle != INVALID_SOCKET)
        close_connection(connection->socket_handle, 1);
    connection->socket_handle = INVALID_SOCKET;
    connection->state = STATE_CLOSED;
}

/* Counts the failure of @p call on the connection as @p kind, and resets it (lock held). */
static void fail_connection(struct connection *connection, enum error_kind kind, const char *call,
                            int code)
{
    record_call_error(kind, call, (unsigned long)code);
    reset_connection(connection);
    end_connect(connection);
}

/* --- messages ------------------------------------------------------------------------- */

/* A step of splitmix64: a different, well-mixed value for every @p *state. */
static unsigned long long next_random(unsigned long long *state)
{
    unsigned long long z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/*
 * Writes message @p number of the connection at @p at: with --framed an echo header, then
 * the payload: the message's number and the connection's (4 bytes each, little-endian),
 * then bytes drawn from both.
 */
static void make_message(const struct connection *connection, unsigned long long number,
                         unsigned char *at)
{
    unsigned long long state = (number << 20) ^ connection->number;
    unsigned char stamp[8];
    size_t i;

    if (settings.framed) {
        frame_header(at, FRAME_ECHO, settings.size);
        at += FRAME_HEADER_SIZE;
    }
    for (i = 0; i < 4; i++) {
        stamp[i] = (unsigned char)(number >> (8 * i));
        stamp[4 + i] = (unsigned char)(connection->number >> (8 * i));
    }
    for (i = 0; i < settings.size; i += 8) {
        unsigned long long bits = next_random(&state);
        size_t j;

        for (j = 0; j < 8 && i + j < settings.size; j++)
            at[i + j] = (unsigned char)(i + j < sizeof stamp ? stamp[i + j] : bits >> (8 * j));
    }
}

/* Which histogram bucket counts @p microseconds. */
static unsigned bucket_of(unsigned long long microseconds)
{
    unsigned octave = 0;

    if (microseconds < EXACT_BELOW)
        return (unsigned)microseconds;
    while (octave + 1 < OCTAVES && microseconds >> (EXACT_BITS + octave + 1) != 0)
        octave++;
    if (microseconds >> (EXACT_BITS + octave + 1) != 0)
        return BUCKETS - 1;
    return EXACT_BELOW + octave * SUB_BUCKETS +
           (unsigned)((microseconds >> (EXACT_BITS + octave - SUB_BITS)) & (SUB_BUCKETS - 1));
}

/* The longest latency, in microseconds, that bucket @p bucket counts. */
static unsigned long long bucket_top(unsigned bucket)
{
    unsigned octave;
    unsigned long long sub;

    if (bucket < EXACT_BELOW)
        return bucket;
    octave = (bucket - EXACT_BELOW) / SUB_BUCKETS;
    sub = (bucket - EXACT_BELOW) % SUB_BUCKETS;
    return ((SUB_BUCKETS + sub + 1) << (EXACT_BITS + octave - SUB_BITS)) - 1;
}

/* Counts one round trip of @p ticks that ended at @p now, if inside the window. */
static void count_round_trip(struct worker_stats *stats, LONGLONG ticks, LONGLONG now)
{
    stats->messages++;
    if (now < run.measure_from || now >= run.stop_at)
        return;
    stats->measured++;
    if (ticks > stats->longest)
        stats->longest = ticks;
    stats->histogram[bucket_of((unsigned long long)ticks * 1000000 /
                               (unsigned long long)run.ticks_per_second)]++;
}

/* --- posting -------------------------------------------------------------------------- */

/* Posts the receive (lock held); on a failure the connection is reset. */
static void post_receive(struct connection *connection)
{
    WSABUF buffer;
    DWORD flags = 0;

    buffer.len = run.receive_bytes;
    buffer.buf = (char *)connection->inbox;
    memset(&connection->receive.overlapped, 0, sizeof connection->receive.overlapped);
    connection->pending++;
    if (WSARecv(connection->socket_handle, &buffer, 1, NULL, &flags,
                &connection->receive.overlapped, NULL) == SOCKET_ERROR) {
        int error = WSAGetLastError();

        if (error != WSA_IO_PENDING) {
            connection->pending--; /* no completion will come */
            fail_connection(connection, FAILURE_RESET, "WSARecv", error);
        }
    }
}

/*
 * Posts one send of every byte made and not yet sent (lock held): a piece of the ring, or
 * two when it wraps. The WSABUFs may live on the stack: WSASend's page says the system
 * captures them before it returns; the bytes they point to stay the system's until the
 * completion. On a failure the connection is reset.
 */
static void post_send(struct connection *connection)
{
    unsigned long long from = connection->sent_bytes;
    size_t length = (size_t)(connection->made * run.message_bytes - from);
    size_t start = (size_t)(from % run.ring_bytes);
    size_t first = length < run.ring_bytes - start ? length : run.ring_bytes - start;
    WSABUF buffers[2];
    DWORD count = 1;

    buffers[0].len = (ULONG)first;
    buffers[0].buf = (char *)connection->ring + start;
    if (length > first) {
        buffers[1].len = (ULONG)(length - first);
        buffers[1].buf = (char *)connection->ring;
        count = 2;
    }
    memset(&connection->send.overlapped, 0, sizeof connection->send.overlapped);
    connection->pending++;
    connection->sending = 1;
    if (WSASend(connection->socket_handle, buffers, count, NULL, 0, &connection->send.overlapped,
                NULL) == SOCKET_ERROR) {
        int error = WSAGetLastError();

        if (error != WSA_IO_PENDING) {
            connection->pending--;
            connection->sending = 0;
            fail_connection(connection, FAILURE_RESET, "WSASend", error);
        }
    }
}

/* Whether the connection may still make messages at @p now: until the window ends, or
 * with --idle until the hold is over (lock held, or the clock's rule in the header). */
static int still_sending(LONGLONG now)
{
    if (settings.idle)
        return InterlockedCompareExchange(&run.hold_over, 0, 0) == 0;
    return now < run.stop_at;
}

/*
 * Moves the connection on at @p now (lock held): before the window ends, makes every
 * message whose place in the ring is free and sends what is unsent; after it, once every
 * echo is back and no send is pending, half-closes (FIN) to end the connection gracefully.
 */
static void pump(struct connection *connection, LONGLONG now)
{
    unsigned long long checked = connection->checked_bytes / run.message_bytes;
    unsigned long long made_bytes;

    int sending = still_sending(now);

    if (connection->state != STATE_OPEN || !connection->started)
        return;
    if (sending) {
        /* Message n takes the place of n-K: free once n-K is back and its send is over. */
        while ((!settings.idle || connection->made == 0) &&
               connection->made - checked < settings.pipeline &&
               (connection->made < settings.pipeline ||
                (connection->made - settings.pipeline + 1) * run.message_bytes <=
                    connection->sent_bytes)) {
            size_t slot = (size_t)(connection->made % settings.pipeline);

            make_message(connection, connection->made, connection->ring + slot * run.message_bytes);
            connection->stamps[slot] = now;
            connection->made++;
        }
    }
    made_bytes = connection->made * run.message_bytes;
    if (connection->sending)
        return;
    if (connection->sent_bytes < made_bytes) {
        post_send(connection);
    } else if (!sending && connection->checked_bytes == made_bytes) {
        /* Everything is back: our FIN, then the server's ends the connection. */
        if (shutdown(connection->socket_handle, SD_SEND) == SOCKET_ERROR)
            fail_connection(connection, FAILURE_RESET, "shutdown", WSAGetLastError());
        else
            connection->state = STATE_CLOSING;
    }
}

/* --- completions ---------------------------------------------------------------------- */

/*
 * Compares the @p length bytes that arrived with the stream at the same place, and counts
 * the messages they complete (lock held); returns 0, or -1 after counting a mismatch and
 * resetting the connection.
 */
static int check_echo(struct connection *connection, size_t length, LONGLONG now,
                      struct worker_stats *stats)
{
    unsigned long long from = connection->checked_bytes;
    unsigned long long made_bytes = connection->made * run.message_bytes;
    unsigned long long done, message;
    char text[ERROR_TEXT_SIZE];
    size_t i;

    if (length > made_bytes - from) {
        snprintf(text, sizeof text,
                 "loadgen: connection %u: %llu bytes came back of the %llu sent so far",
                 connection->number, from + length, made_bytes);
        record_error(FAILURE_MISMATCH, text);
        reset_connection(connection);
        return -1;
    }
    for (i = 0; i < length;) {
        size_t start = (size_t)((from + i) % run.ring_bytes);
        size_t piece = length - i < run.ring_bytes - start ? length - i : run.ring_bytes - start;

        if (memcmp(connection->inbox + i, connection->ring + start, piece) != 0) {
            size_t j = 0;
            unsigned long long at;

            while (connection->inbox[i + j] == connection->ring[start + j])
                j++;
            at = from + i + j;
            snprintf(text, sizeof text,
                     "loadgen: connection %u: message %llu, byte %llu: sent 0x%02x, got 0x%02x",
                     connection->number, at / run.message_bytes, at % run.message_bytes,
                     connection->ring[start + j], connection->inbox[i + j]);
            record_error(FAILURE_MISMATCH, text);
            reset_connection(connection);
            return -1;
        }
        i += piece;
    }
    connection->checked_bytes = from + length;
    done = connection->checked_bytes / run.message_bytes;
    for (message = from / run.message_bytes; message < done; message++)
        count_round_trip(stats, now - connection->stamps[message % settings.pipeline], now);
    if (settings.idle && from < run.message_bytes && done >= 1) {
        InterlockedIncrement(&run.echoed_once);
        settle(connection);
    }
    return 0;
}

/* The outcome of a completion (lock held, socket still open): 1 with the bytes moved, or
 * 0 with the Winsock error, as WSAGetOverlappedResult reads it from the OVERLAPPED. */
static int completion_result(struct connection *connection, struct operation *operation,
                             DWORD *bytes, int *error)
{
    DWORD flags = 0;

    if (WSAGetOverlappedResult(connection->socket_handle, &operation->overlapped, bytes, FALSE,
                               &flags))
        return 1;
    *error = WSAGetLastError();
    return 0;
}

/* A connect has completed: make the socket a connected one and start receiving. */
static void connect_completed(struct connection *connection)
{
    DWORD bytes = 0;
    int error = 0;

    if (!completion_result(connection, &connection->connect, &bytes, &error)) {
        fail_connection(connection, FAILURE_CONNECT, "ConnectEx", error);
        return;
    }
    /* Without it the socket does not know it is connected: shutdown would fail. */
    if (setsockopt(connection->socket_handle, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) ==
        SOCKET_ERROR) {
        fail_connection(connection, FAILURE_CONNECT, "setsockopt(SO_UPDATE_CONNECT_CONTEXT)",
                        WSAGetLastError());
        return;
    }
    connection->state = STATE_OPEN;
    InterlockedIncrement(&run.opened);
    end_connect(connection);
    post_receive(connection);
}

/* A send has completed: count its bytes (a partial send leaves the rest for the next). */
static void send_completed(struct connection *connection, LONGLONG now)
{
    DWORD bytes = 0;
    int error = 0;

    if (!completion_result(connection, &connection->send, &bytes, &error)) {
        fail_connection(connection, FAILURE_RESET, "WSASend", error);
        return;
    }
    connection->sent_bytes += bytes;
    pump(connection, now);
}

/* A receive has completed: check what came, move on, and receive again; or, for the end
 * of the server's stream, close (after our FIN) or count an early close. */
static void receive_completed(struct connection *connection, LONGLONG now,
                              struct worker_stats *stats)
{
    DWORD bytes = 0;
    int error = 0;

    if (!completion_result(connection, &connection->receive, &bytes, &error)) {
        fail_connection(connection, FAILURE_RESET, "WSARecv", error);
        return;
    }
    if (bytes == 0) {
        if (connection->state == STATE_CLOSING) {
            /* Both FINs: nothing is pending, so the socket just closes. */
            if (closesocket(connection->socket_handle) == SOCKET_ERROR)
                record_call_error(FAILURE_RESET, "closesocket", (unsigned long)WSAGetLastError());
            else
                InterlockedIncrement(&run.closed_gracefully);
            connection->socket_handle = INVALID_SOCKET;
            connection->state = STATE_CLOSED;
        } else {
            char text[ERROR_TEXT_SIZE];
            unsigned long long made_bytes = connection->made * run.message_bytes;

            snprintf(text, sizeof text,
                     "loadgen: connection %u: closed by the server before the end, with "
                     "%llu of %llu bytes back",
                     connection->number, connection->checked_bytes, made_bytes);
            record_error(FAILURE_RESET, text);
            reset_connection(connection);
        }
        return;
    }
    if (check_echo(connection, bytes, now, stats) != 0)
        return;
    pump(connection, now);
    if (connection->state == STATE_OPEN || connection->state == STATE_CLOSING)
        post_receive(connection);
}

/* Handles one completion of the connection, under its lock. */
static void completed(struct connection *connection, struct operation *operation,
                      struct worker_stats *stats)
{
    LONGLONG now = clock_now();

    EnterCriticalSection(&connection->lock);
    connection->pending--;
    if (operation->kind == OPERATION_SEND)
        connection->sending = 0;
    /* Closed under it (reset, or timed out): the operation is over, whatever its result. */
    if (connection->state != STATE_CLOSED) {
        if (operation->kind == OPERATION_CONNECT)
            connect_completed(connection);
        else if (operation->kind == OPERATION_SEND)
            send_completed(connection, now);
        else
            receive_completed(connection, now, stats);
    }
    finish_if_done(connection);
    LeaveCriticalSection(&connection->lock);
    /* Whatever the outcome, the connect's place is free for the next one. */
    if (operation->kind == OPERATION_CONNECT && !ReleaseSemaphore(run.connect_slots, 1, NULL))
        report_win_error("ReleaseSemaphore");
}

/*
 * A worker: takes completions in batches until it takes a stop packet (one posted with no
 * OVERLAPPED). A batch may hold several stop packets, one meant for each of the other
 * workers: the extra ones are posted again, so each worker still gets one.
 */
static unsigned __stdcall work(void *context)
{
    struct worker_stats *stats = &run.stats[InterlockedIncrement(&run.workers_started) - 1];
    OVERLAPPED_ENTRY entries[BATCH];

    (void)context;
    for (;;) {
        ULONG taken = 0;
        ULONG stops = 0;
        ULONG i;

        if (!GetQueuedCompletionStatusEx(run.port, entries, BATCH, &taken, INFINITE, FALSE)) {
            report_win_error("GetQueuedCompletionStatusEx");
            return 1;
        }
        for (i = 0; i < taken; i++) {
            if (entries[i].lpOverlapped == NULL) {
                stops++;
                continue;
            }
            completed((struct connection *)entries[i].lpCompletionKey,
                      CONTAINING_RECORD(entries[i].lpOverlapped, struct operation, overlapped),
                      stats);
        }
        if (stops > 0) {
            for (i = 1; i < stops; i++)
                if (!PostQueuedCompletionStatus(run.port, 0, 0, NULL))
                    report_win_error("PostQueuedCompletionStatus");
            return 0;
        }
    }
}

/* --- connecting ----------------------------------------------------------------------- */

/*
 * Starts the connection's connect (main thread, a connect slot taken): an overlapped
 * socket, bound to the wildcard address, on the port with the connection as its key, and
 * ConnectEx. On a failure the connect is counted as failed and the slot is given back.
 */
static void start_connect(struct connection *connection)
{
    SOCKET socket_handle;
    int failed = 0;
    static const BOOL no_delay = TRUE;

    EnterCriticalSection(&connection->lock);
    socket_handle =
        WSASocketW(run.address.ss_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (socket_handle == INVALID_SOCKET) {
        record_call_error(FAILURE_CONNECT, "WSASocketW", (unsigned long)WSAGetLastError());
        connection->state = STATE_CLOSED;
        end_connect(connection);
        failed = 1;
    } else {
        connection->socket_handle = socket_handle;
        connection->state = STATE_CONNECTING;
        if (bind(socket_handle, (const struct sockaddr *)&run.wildcard, run.address_length) ==
            SOCKET_ERROR) {
            fail_connection(connection, FAILURE_CONNECT, "bind", WSAGetLastError());
            failed = 1;
            /* Small messages go at once, not held back by Nagle's algorithm for an ACK. */
        } else if (setsockopt(socket_handle, IPPROTO_TCP, TCP_NODELAY, (const char *)&no_delay,
                              (int)sizeof no_delay) == SOCKET_ERROR) {
            fail_connection(connection, FAILURE_CONNECT, "setsockopt(TCP_NODELAY)",
                            WSAGetLastError());
            failed = 1;
        } else if (CreateIoCompletionPort((HANDLE)socket_handle, run.port, (ULONG_PTR)connection,
                                          0) == NULL) {
            fail_connection(connection, FAILURE_CONNECT, "CreateIoCompletionPort",
                            (int)GetLastError());
            failed = 1;
        } else {
            memset(&connection->connect.overlapped, 0, sizeof connection->connect.overlapped);
            connection->pending++;
            if (!run.connect_ex(socket_handle, (const struct sockaddr *)&run.address,
                                run.address_length, NULL, 0, NULL,
                                &connection->connect.overlapped)) {
                int error = WSAGetLastError();

                if (error != WSA_IO_PENDING) {
                    connection->pending--;
                    fail_connection(connection, FAILURE_CONNECT, "ConnectEx", error);
                    failed = 1;
                }
            }
        }
    }
    finish_if_done(connection);
    LeaveCriticalSection(&connection->lock);
    if (failed && !ReleaseSemaphore(run.connect_slots, 1, NULL))
        report_win_error("ReleaseSemaphore");
}

/* The seconds all the connects may take, which grows with their number. */
static LONGLONG connect_seconds(void)
{
    return CONNECT_SECONDS + (LONGLONG)settings.connections / CONNECTS_PER_SECOND;
}

/* --idle: the seconds the one echoes may take, and then the closes, as many at once. */
static LONGLONG settle_seconds(void)
{
    return DRAIN_SECONDS + (LONGLONG)settings.connections / CONNECTS_PER_SECOND;
}

/* Counts a connect that did not end by the deadline as a timeout, and ends it (lock held). */
static void connect_timed_out(struct connection *connection)
{
    char text[ERROR_TEXT_SIZE];

    snprintf(text, sizeof text, "loadgen: connection %u: %s within %lld s", connection->number,
             connection->state == STATE_IDLE ? "not started" : "ConnectEx did not complete",
             (long long)connect_seconds());
    record_error(FAILURE_TIMEOUT, text);
    reset_connection(connection);
    end_connect(connection);
}

/* Opens every connection, CONNECTS_AT_ONCE at a time, within connect_seconds(); returns
 * 0, or -1 after reporting a failure of the program's own. */
static int connect_all(void)
{
    LONGLONG deadline = clock_now() + connect_seconds() * run.ticks_per_second;
    unsigned long started = 0;
    unsigned long i;

    while (started < settings.connections) {
        DWORD waited = WaitForSingleObject(run.connect_slots, milliseconds_until(deadline));

        if (waited == WAIT_TIMEOUT)
            break;
        if (waited != WAIT_OBJECT_0) {
            report_win_error("WaitForSingleObject");
            return -1;
        }
        start_connect(&run.connections[started++]);
    }
    if (WaitForSingleObject(run.connects_done, milliseconds_until(deadline)) == WAIT_OBJECT_0)
        return 0;
    /* The rest time out: the ones never started, and the ones still pending. */
    for (i = 0; i < settings.connections; i++) {
        struct connection *connection = &run.connections[i];

        EnterCriticalSection(&connection->lock);
        if (!connection->connect_ended)
            connect_timed_out(connection);
        finish_if_done(connection);
        LeaveCriticalSection(&connection->lock);
    }
    return 0;
}

/* --- the load ------------------------------------------------------------------------- */

/* Counts a connection still busy at the end as a timeout, and resets it (lock held). */
static void end_timed_out(struct connection *connection)
{
    char text[ERROR_TEXT_SIZE];
    unsigned long long made_bytes = connection->made * run.message_bytes;

    if (connection->state == STATE_CLOSING)
        snprintf(text, sizeof text,
                 "loadgen: connection %u: the server did not close within %lld s of our FIN",
                 connection->number,
                 settings.idle ? (long long)settle_seconds() : (long long)DRAIN_SECONDS);
    else
        snprintf(text, sizeof text,
                 "loadgen: connection %u: %llu of %llu bytes back %d s after the window",
                 connection->number, connection->checked_bytes, made_bytes, DRAIN_SECONDS);
    record_error(FAILURE_TIMEOUT, text);
    reset_connection(connection);
}

/* Pumps every connection once at the main thread's clock, marking it @p started. */
static void pump_all(int started)
{
    unsigned long i;

    for (i = 0; i < settings.connections; i++) {
        struct connection *connection = &run.connections[i];

        EnterCriticalSection(&connection->lock);
        connection->started |= started;
        pump(connection, clock_now());
        finish_if_done(connection);
        LeaveCriticalSection(&connection->lock);
    }
}

/*
 * --idle: waits up to settle_seconds() for every connection's one echo (or its end), says
 * how many are held, holds them --seconds, then lets them close. Returns the deadline for
 * the closes.
 */
static LONGLONG hold_idle(void)
{
    if (WaitForSingleObject(run.all_settled, (DWORD)settle_seconds() * 1000) == WAIT_FAILED)
        report_win_error("WaitForSingleObject");
    /* Flushed at once: whoever started the program reads the server's memory now. */
    printf("holding %ld connections, each echoed once, for %lu s\n",
           (long)InterlockedCompareExchange(&run.echoed_once, 0, 0), settings.seconds);
    fflush(stdout);
    Sleep((DWORD)settings.seconds * 1000);
    InterlockedExchange(&run.hold_over, 1);
    /* Nothing arrives on an idle connection to pump it: its FIN goes from here. */
    pump_all(0);
    return clock_now() + settle_seconds() * run.ticks_per_second;
}

/*
 * Starts the traffic on every open connection, then waits for all to finish: until
 * DRAIN_SECONDS after the window (or the hold, with --idle), then resets the ones still
 * busy and waits up to CANCEL_SECONDS for their I/O. Returns 0 when every connection has
 * finished, or -1 when some I/O is still pending (its memory must then be kept).
 */
static int run_load(void)
{
    LONGLONG start = clock_now();
    LONGLONG deadline;
    unsigned long i;

    /* With --idle the one round trip of each connection is what is measured. */
    run.measure_from =
        start + (settings.idle ? 0 : (LONGLONG)settings.warmup) * run.ticks_per_second;
    run.stop_at = run.measure_from + (LONGLONG)settings.seconds * run.ticks_per_second;
    if (settings.idle)
        run.stop_at += connect_seconds() * run.ticks_per_second;
    pump_all(1);
    deadline = settings.idle ? hold_idle() : run.stop_at + DRAIN_SECONDS * run.ticks_per_second;
    if (WaitForSingleObject(run.all_finished, milliseconds_until(deadline)) == WAIT_OBJECT_0)
        return 0;
    for (i = 0; i < settings.connections; i++) {
        struct connection *connection = &run.connections[i];

        EnterCriticalSection(&connection->lock);
        if (connection->state != STATE_CLOSED)
            end_timed_out(connection);
        finish_if_done(connection);
        LeaveCriticalSection(&connection->lock);
    }
    return wait_for_drain(run.all_finished, CANCEL_SECONDS * 1000, "loadgen: cancelled I/O");
}

/* --- setting up ----------------------------------------------------------------------- */

/* Resolves the endpoint to its first address, and the wildcard address of its family;
 * returns 0, or -1 after reporting. */
static int resolve(const struct endpoint *endpoint)
{
    struct addrinfo hints;
    struct addrinfo *addresses;
    int error;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    error = getaddrinfo(endpoint->host, endpoint->port, &hints, &addresses);
    if (error != 0) {
        report_error("getaddrinfo", (unsigned long)error);
        return -1;
    }
    /* The first address only: every connection goes to the same place. */
    memcpy(&run.address, addresses->ai_addr, addresses->ai_addrlen);
    run.address_length = (int)addresses->ai_addrlen;
    freeaddrinfo(addresses);
    memset(&run.wildcard, 0, sizeof run.wildcard);
    run.wildcard.ss_family = run.address.ss_family; /* any address, port 0: all zeros */
    return 0;
}

/* Loads ConnectEx through a socket of the address's family; returns 0, or -1 after
 * reporting. Its page: the pointer is to be asked for at run time, not linked. */
static int load_connect_ex(void)
{
    GUID id = WSAID_CONNECTEX;
    DWORD bytes = 0;
    SOCKET probe =
        WSASocketW(run.address.ss_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    int result = 0;

    if (probe == INVALID_SOCKET) {
        report_wsa_error("WSASocketW");
        return -1;
    }
    if (WSAIoctl(probe, SIO_GET_EXTENSION_FUNCTION_POINTER, &id, (DWORD)sizeof id, &run.connect_ex,
                 (DWORD)sizeof run.connect_ex, &bytes, NULL, NULL) == SOCKET_ERROR) {
        report_wsa_error("WSAIoctl(ConnectEx)");
        result = -1;
    }
    close_socket(probe);
    return result;
}

/* Allocates the connections and their buffers, all before the run; returns 0, or -1
 * after reporting. */
static int allocate(void)
{
    size_t count = settings.connections;
    unsigned char *rings;
    unsigned char *inboxes;
    LONGLONG *stamps;
    size_t i;

    run.message_bytes = settings.size + (settings.framed ? FRAME_HEADER_SIZE : 0);
    run.ring_bytes = settings.pipeline * run.message_bytes;
    run.receive_bytes = (ULONG)(run.ring_bytes < MIN_RECEIVE   ? MIN_RECEIVE
                                : run.ring_bytes > MAX_RECEIVE ? MAX_RECEIVE
                                                               : run.ring_bytes);
    run.connections = calloc(count, sizeof *run.connections);
    run.stats = calloc(run.workers, sizeof *run.stats);
    rings = malloc(count * run.ring_bytes);
    inboxes = malloc(count * run.receive_bytes);
    stamps = malloc(count * settings.pipeline * sizeof *stamps);
    if (run.connections == NULL || run.stats == NULL || rings == NULL || inboxes == NULL ||
        stamps == NULL) {
        report_errno("malloc");
        return -1;
    }
    for (i = 0; i < count; i++) {
        struct connection *connection = &run.connections[i];

        InitializeCriticalSection(&connection->lock);
        connection->number = (unsigned)i;
        connection->socket_handle = INVALID_SOCKET;
        connection->connect.kind = OPERATION_CONNECT;
        connection->send.kind = OPERATION_SEND;
        connection->receive.kind = OPERATION_RECEIVE;
        connection->ring = rings + i * run.ring_bytes;
        connection->inbox = inboxes + i * run.receive_bytes;
        connection->stamps = stamps + i * settings.pipeline;
    }
    return 0;
}

/* Frees what allocate() made, once every connection has finished. */
static void release(void)
{
    unsigned long i;

    for (i = 0; i < settings.connections; i++)
        DeleteCriticalSection(&run.connections[i].lock);
    free(run.connections[0].ring);
    free(run.connections[0].inbox);
    free(run.connections[0].stamps);
    free(run.connections);
    free(run.stats);
}

/* Everything before the first connect: the clock, Winsock, the address, ConnectEx, the
 * memory, the port, the events; returns 0, or -1 after reporting. */
static int set_up(const struct endpoint *endpoint)
{
    LARGE_INTEGER frequency;

    if (!QueryPerformanceFrequency(&frequency)) {
        report_win_error("QueryPerformanceFrequency");
        return -1;
    }
    run.ticks_per_second = frequency.QuadPart;
    if (start_winsock_quietly() != 0 || resolve(endpoint) != 0 || load_connect_ex() != 0 ||
        allocate() != 0)
        return -1;
    run.port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, run.workers);
    if (run.port == NULL) {
        report_win_error("CreateIoCompletionPort");
        return -1;
    }
    run.connect_slots = CreateSemaphoreW(NULL, CONNECTS_AT_ONCE, CONNECTS_AT_ONCE, NULL);
    if (run.connect_slots == NULL) {
        report_win_error("CreateSemaphoreW");
        return -1;
    }
    /* Manual-reset: each is set once, and stays set for a wait that comes after. */
    run.connects_done = CreateEventW(NULL, TRUE, FALSE, NULL);
    run.all_finished = CreateEventW(NULL, TRUE, FALSE, NULL);
    run.all_settled = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (run.connects_done == NULL || run.all_finished == NULL || run.all_settled == NULL) {
        report_win_error("CreateEventW");
        return -1;
    }
    return 0;
}

/* --- the report ----------------------------------------------------------------------- */

/* The run's numbers, from every worker's statistics. */
struct totals {
    unsigned long long messages;
    unsigned long long measured;
    unsigned long long bytes;
    double per_second;
    double p50, p99, longest; /* milliseconds; all 0 when nothing was measured */
    unsigned long long histogram[BUCKETS];
    unsigned long long errors;
};

/* The latency in milliseconds below which a fraction @p share of the measured round trips
 * fall (the top of the bucket that holds that one), no more than the longest. */
static double percentile(const struct totals *totals, double share)
{
    unsigned long long rank = (unsigned long long)(share * (double)totals->measured + 0.999999);
    unsigned long long seen = 0;
    unsigned bucket;

    if (rank == 0)
        rank = 1;
    for (bucket = 0; bucket < BUCKETS; bucket++) {
        seen += totals->histogram[bucket];
        if (seen >= rank) {
            double top = (double)bucket_top(bucket) / 1000.0;

            return top < totals->longest ? top : totals->longest;
        }
    }
    return totals->longest;
}

/* Adds up the workers' statistics and the errors (after the workers have ended). */
static void add_up(struct totals *totals)
{
    LONGLONG longest = 0;
    unsigned w, b;
    int kind;

    memset(totals, 0, sizeof *totals);
    for (w = 0; w < run.workers; w++) {
        const struct worker_stats *stats = &run.stats[w];

        totals->messages += stats->messages;
        totals->measured += stats->measured;
        if (stats->longest > longest)
            longest = stats->longest;
        for (b = 0; b < BUCKETS; b++)
            totals->histogram[b] += stats->histogram[b];
    }
    totals->bytes = totals->messages * run.message_bytes;
    totals->per_second = (double)totals->measured / (double)settings.seconds;
    totals->longest = (double)longest * 1000.0 / (double)run.ticks_per_second;
    if (totals->measured > 0) {
        totals->p50 = percentile(totals, 0.50);
        totals->p99 = percentile(totals, 0.99);
    }
    EnterCriticalSection(&run.errors_lock);
    for (kind = 0; kind < FAILURE_KINDS; kind++)
        totals->errors += run.error_counts[kind];
    LeaveCriticalSection(&run.errors_lock);
}

/* Prints @p text as a JSON string: quoted, with quotes, backslashes and control bytes
 * escaped. */
static void print_json_string(const char *text)
{
    putchar('"');
    for (; *text != '\0'; text++) {
        unsigned char c = (unsigned char)*text;

        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* Prints the report as one JSON line. */
static void print_json(const struct endpoint *endpoint, const struct totals *totals)
{
    int kind;

    printf("{\"host\": ");
    print_json_string(endpoint->host);
    /* The port as a number: PORT is digits only, but may start with a 0, which JSON refuses. */
    printf(", \"port\": %d, \"connections\": %lu, \"opened\": %ld, \"closed_gracefully\": %ld, "
           "\"workers\": %u, \"size\": %lu, \"framed\": %s, \"pipeline\": %lu, \"warmup\": %lu, "
           "\"seconds\": %lu, \"messages\": %llu, \"measured\": %llu, \"per_second\": %.1f, "
           "\"idle\": %s, \"held\": %ld, ",
           atoi(endpoint->port), settings.connections, (long)run.opened,
           (long)run.closed_gracefully, run.workers, settings.size,
           settings.framed ? "true" : "false", settings.pipeline, settings.warmup, settings.seconds,
           totals->messages, totals->measured, totals->per_second, settings.idle ? "true" : "false",
           (long)run.echoed_once);
    if (totals->measured > 0)
        printf("\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, ", totals->p50, totals->p99,
               totals->longest);
    else
        printf("\"p50_ms\": null, \"p99_ms\": null, \"max_ms\": null, ");
    printf("\"message_bytes\": %lu, \"bytes_verified\": %llu, \"errors\": {",
           (unsigned long)run.message_bytes, totals->bytes);
    for (kind = 0; kind < FAILURE_KINDS; kind++)
        printf("%s\"%s\": %llu", kind > 0 ? ", " : "", error_keys[kind], run.error_counts[kind]);
    printf("}}\n");
}

/* Prints the report as text. */
static void print_text(const struct totals *totals)
{
    int kind;

    printf("connections opened: %ld of %lu, closed gracefully: %ld\n", (long)run.opened,
           settings.connections, (long)run.closed_gracefully);
    printf("messages per second: %.1f (%llu round trips in the %lu s measured)\n",
           totals->per_second, totals->measured, settings.seconds);
    if (totals->measured > 0)
        printf("round trip ms: p50 %.3f, p99 %.3f, max %.3f\n", totals->p50, totals->p99,
               totals->longest);
    else
        printf("round trip ms: none measured\n");
    if (settings.framed)
        printf("bytes verified: %llu (%llu messages of %lu bytes: a %d-byte header and %lu of "
               "payload)\n",
               totals->bytes, totals->messages, (unsigned long)run.message_bytes, FRAME_HEADER_SIZE,
               settings.size);
    else
        printf("bytes verified: %llu (%llu messages of %lu bytes)\n", totals->bytes,
               totals->messages, (unsigned long)run.message_bytes);
    printf("errors: %llu (", totals->errors);
    for (kind = 0; kind < FAILURE_KINDS; kind++)
        printf("%s%s %llu", kind > 0 ? ", " : "", error_names[kind], run.error_counts[kind]);
    printf(")\n");
}

/* Prints the first error of each kind to stderr, once. */
static void print_first_errors(void)
{
    int kind;

    for (kind = 0; kind < FAILURE_KINDS; kind++)
        if (run.error_counts[kind] > 0)
            fprintf(stderr, "%s\n", run.first_error[kind]);
}

/* --- main ----------------------------------------------------------------------------- */

/* Connects, runs the load, and reports: exit 0 when everything came back verified, 1 on
 * any error, 2 for a bad command line. */
int main(int argc, char **argv)
{
    static const struct tool tool = {"loadgen", print_usage, take_option};
    struct endpoint endpoint;
    char endpoint_text[ENDPOINT_TEXT_SIZE];
    static struct totals totals; /* static: its histogram is large for a stack */
    HANDLE *workers = NULL;
    unsigned started;
    int drained;
    int failed = 0;

    parse_tool_arguments(&tool, argc, argv, &endpoint);
    if ((unsigned long long)settings.connections * settings.pipeline *
            (settings.size + (settings.framed ? FRAME_HEADER_SIZE : 0)) >
        MAX_RING_BYTES)
        tool_usage_error(
            &tool, "--connections x --pipeline x the message size is over 256 MiB in flight", NULL);
    run.workers = settings.workers > 0 ? (unsigned)settings.workers : processor_count();
    if (run.workers > MAX_WORKERS)
        run.workers = MAX_WORKERS;
    InitializeCriticalSection(&run.errors_lock);
    if (set_up(&endpoint) != 0)
        return EXIT_FAILURE;
    started = run.workers;
    if (start_workers(&workers, &started, work, NULL) != 0) {
        stop_workers(run.port, workers, started);
        return EXIT_FAILURE;
    }
    if (!settings.json)
        printf("loadgen: %lu connections to %s, %lu-byte messages (%s), pipeline %lu, %u workers, "
               "%lu s warm-up, %lu s measured\n",
               settings.connections,
               format_endpoint(&endpoint, endpoint_text, sizeof endpoint_text), settings.size,
               settings.framed ? "framed: echo, type 1" : "raw", settings.pipeline, run.workers,
               settings.warmup, settings.seconds);

    if (connect_all() != 0)
        failed = 1;
    drained = run_load() == 0;
    if (stop_workers(run.port, workers, run.workers) != 0)
        failed = 1;

    add_up(&totals);
    if (settings.json)
        print_json(&endpoint, &totals);
    else
        print_text(&totals);
    fflush(stdout);
    print_first_errors();
    if (run.clock_failed) {
        fprintf(stderr, "QueryPerformanceCounter failed: the round trips were not timed\n");
        failed = 1;
    }
    if (drained) {
        /* Only now can nothing of the system's still point into them. */
        release();
        if (!CloseHandle(run.port) || !CloseHandle(run.connect_slots) ||
            !CloseHandle(run.connects_done) || !CloseHandle(run.all_finished) ||
            !CloseHandle(run.all_settled)) {
            report_win_error("CloseHandle");
            failed = 1;
        }
    } else {
        failed = 1;
    }
    if (WSACleanup() == SOCKET_ERROR) {
        report_wsa_error("WSACleanup");
        failed = 1;
    }
    return failed || totals.errors > 0 || run.opened != (LONG)settings.connections ? EXIT_FAILURE
                                                                                   : EXIT_SUCCESS;
}
