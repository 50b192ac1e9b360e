/*
 * epoll-echo: the native Linux reference of `make bench`, an echo server with no Wine
 * under it, so the benchmark can show what Wine costs the chapters.
 *
 *   epoll-echo [--workers N] [--port P]     (defaults: 2 workers, port 0: any free one)
 *
 * It prints "listening on 127.0.0.1:PORT", echoes every byte each client sends, and on a
 * "quit" line or the end of standard input prints "connections served: N, bytes echoed: B"
 * and exits 0. Each worker is a thread with an epoll set of its own on one shared
 * listener (EPOLLEXCLUSIVE, so a connection wakes one worker); a client belongs to the
 * worker that accepted it, so no lock is taken per message. A client whose echo the
 * socket does not take at once is waited on with EPOLLOUT before more is read from it:
 * the same back-pressure the chapters' send queues give. Linux only; it is not a chapter
 * and is built with the host compiler, not MinGW.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_WORKERS 64
#define BUFFER_SIZE 65536
#define EVENTS      256

/* One client: its socket and the bytes received but not yet sent back. */
struct client {
    int fd;
    size_t unsent;
    size_t offset;
    unsigned char buffer[BUFFER_SIZE];
};

static int listener = -1;
static atomic_ulong served;
static atomic_ulong echoed;
static atomic_int stopping;

/* Prints "<call> failed: <errno> <text>" to stderr, the shape of common/errors.h. */
static void report(const char *call)
{
    fprintf(stderr, "%s failed: %d %s\n", call, errno, strerror(errno));
}

/* Closes the client and frees it (its worker only). */
static void drop(struct client *client)
{
    close(client->fd);
    free(client);
}

/* Sends what is unsent; returns 1 when all went, 0 when the socket is full, -1 to drop. */
static int flush_client(struct client *client)
{
    while (client->unsent > 0) {
        ssize_t sent =
            send(client->fd, client->buffer + client->offset, client->unsent, MSG_NOSIGNAL);

        if (sent < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        client->offset += (size_t)sent;
        client->unsent -= (size_t)sent;
        atomic_fetch_add(&echoed, (unsigned long)sent);
    }
    return 1;
}

/* Reads and echoes until the socket is drained or full; returns 0, or -1 to drop. */
static int serve(int poller, struct client *client)
{
    struct epoll_event change = {.data.ptr = client};
    int flushed = flush_client(client);
    int reads;

    /* Bounded so one busy client cannot starve the others of its worker. */
    for (reads = 0; flushed == 1 && reads < 16; reads++) {
        ssize_t got = recv(client->fd, client->buffer, BUFFER_SIZE, 0);

        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return -1;
        if (got < 0)
            break;
        client->offset = 0;
        client->unsent = (size_t)got;
        flushed = flush_client(client);
    }
    if (flushed < 0)
        return -1;
    change.events = (flushed == 0 ? EPOLLOUT : EPOLLIN) | EPOLLRDHUP;
    if (epoll_ctl(poller, EPOLL_CTL_MOD, client->fd, &change) != 0) {
        report("epoll_ctl(EPOLL_CTL_MOD)");
        return -1;
    }
    return 0;
}

/* Accepts every pending connection onto this worker's epoll set. */
static void accept_all(int poller)
{
    static const int on = 1;

    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
        struct client *client;
        struct epoll_event added = {.events = EPOLLIN | EPOLLRDHUP};

        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                report("accept4");
            return;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        client = calloc(1, sizeof *client);
        if (client == NULL) {
            report("calloc");
            close(fd);
            continue;
        }
        client->fd = fd;
        added.data.ptr = client;
        if (epoll_ctl(poller, EPOLL_CTL_ADD, fd, &added) != 0) {
            report("epoll_ctl(EPOLL_CTL_ADD)");
            drop(client);
            continue;
        }
        atomic_fetch_add(&served, 1);
    }
}

/* A worker: its own epoll set with the listener in it, until the main thread stops it.
 * Clients still open at the end are left to the process's exit. */
static void *work(void *unused)
{
    struct epoll_event events[EVENTS];
    struct epoll_event listening = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
    int poller = epoll_create1(0);

    (void)unused;
    if (poller < 0 || epoll_ctl(poller, EPOLL_CTL_ADD, listener, &listening) != 0) {
        report(poller < 0 ? "epoll_create1" : "epoll_ctl(listener)");
        return NULL;
    }
    while (!atomic_load(&stopping)) {
        int ready = epoll_wait(poller, events, EVENTS, 100);
        int i;

        if (ready < 0 && errno != EINTR)
            report("epoll_wait");
        for (i = 0; i < ready; i++) {
            struct client *client = events[i].data.ptr;

            if (client == NULL)
                accept_all(poller);
            else if (serve(poller, client) != 0)
                drop(client);
        }
    }
    close(poller);
    return NULL;
}

/* Opens the non-blocking listener on 127.0.0.1:@p port and prints its address; returns 0,
 * or -1 after reporting. */
static int listen_on(unsigned port)
{
    struct sockaddr_in address = {.sin_family = AF_INET};
    socklen_t length = sizeof address;

    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons((unsigned short)port);
    listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (listener < 0) {
        report("socket");
        return -1;
    }
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 ||
        listen(listener, SOMAXCONN) != 0 ||
        getsockname(listener, (struct sockaddr *)&address, &length) != 0) {
        report("bind/listen/getsockname");
        return -1;
    }
    printf("listening on 127.0.0.1:%u\n", (unsigned)ntohs(address.sin_port));
    fflush(stdout);
    return 0;
}

/* Reads @p text as a whole number from @p low to @p high; returns it, or exits 2 with the
 * usage when it is not one. */
static unsigned long number_or_usage(const char *name, const char *text, unsigned long low,
                                     unsigned long high)
{
    char *end = NULL;
    unsigned long value;

    errno = 0;
    value = text == NULL ? 0 : strtoul(text, &end, 10);
    if (text == NULL || *text == '\0' || *end != '\0' || errno != 0 || value < low ||
        value > high) {
        fprintf(stderr,
                "epoll-echo: %s must be a whole number from %lu to %lu\n"
                "usage: epoll-echo [--workers N] [--port P]\n",
                name, low, high);
        exit(2);
    }
    return value;
}

/* Starts the workers, waits for "quit" or the end of stdin, stops them and reports. */
int main(int argc, char **argv)
{
    pthread_t workers[MAX_WORKERS];
    unsigned long count = 2, port = 0, started = 0, i;
    char line[64];
    int code = 0;

    for (i = 1; i < (unsigned long)argc; i += 2) {
        if (strcmp(argv[i], "--workers") == 0)
            count = number_or_usage("--workers", argv[i + 1], 1, MAX_WORKERS);
        else if (strcmp(argv[i], "--port") == 0)
            port = number_or_usage("--port", argv[i + 1], 0, 65535);
        else
            number_or_usage(argv[i], NULL, 0, 0);
    }
    if (listen_on((unsigned)port) != 0)
        return 1;
    for (; started < count; started++)
        if (pthread_create(&workers[started], NULL, work, NULL) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            code = 1;
            break;
        }
    while (code == 0 && fgets(line, sizeof line, stdin) != NULL && strcmp(line, "quit\n") != 0)
        continue;
    atomic_store(&stopping, 1);
    for (i = 0; i < started; i++)
        pthread_join(workers[i], NULL);
    printf("connections served: %lu, bytes echoed: %lu\n", atomic_load(&served),
           atomic_load(&echoed));
    return code;
}
