/**
 * @file options.h
 * @brief The command-line options every chapter shares: --port, --bind, --workers,
 *        --max-clients, --accepts, --max-queued, --max-message, --idle-timeout,
 *        --keepalive, --batch, --verbose and --help.
 *
 * Each chapter accepts only the options it has a use for, so `--workers` is an error
 * for a chapter that has no worker threads yet.
 */
#ifndef IOCP_TUTORIAL_OPTIONS_H
#define IOCP_TUTORIAL_OPTIONS_H

/** Port used when --port is not given. */
#define DEFAULT_PORT 9000
/** Client slots used when --max-clients is not given. */
#define DEFAULT_MAX_CLIENTS 64
/** Upper bound for --max-clients: each slot holds its buffers for the life of the server. */
#define MAX_MAX_CLIENTS 10000
/** Upper bound for --workers: the threads are waited for with one WaitForMultipleObjects. */
#define MAX_WORKERS 64
/** Accepts kept outstanding per worker when --accepts is not given. */
#define DEFAULT_ACCEPTS_PER_WORKER 4
/** Upper bound for --accepts: each outstanding accept holds a socket made beforehand. */
#define MAX_ACCEPTS 1024
/** Bytes a client's send queue may hold before its receives pause, without --max-queued. */
#define DEFAULT_MAX_QUEUED 65536
/** Bounds for --max-queued: at least one receive's worth, at most 64 MiB per client. */
#define MIN_MAX_QUEUED 4096
#define MAX_MAX_QUEUED (64UL * 1024 * 1024) /**< upper bound for --max-queued */
/** The longest message payload a client may send, without --max-message. */
#define DEFAULT_MAX_MESSAGE 65536
/** Upper bound for --max-message: a whole message waits in its client's inbox. */
#define MAX_MAX_MESSAGE (16UL * 1024 * 1024)
/** Seconds a client may stay idle, or in the middle of a message, without --idle-timeout. */
#define DEFAULT_IDLE_TIMEOUT 300
/** Completions a worker takes per wait without --batch, and the most it may take. */
#define DEFAULT_BATCH 16
#define MAX_BATCH     64 /**< upper bound for --batch: the entries live on each worker's stack */
/** Upper bound for --idle-timeout and --keepalive, in seconds: a day. */
#define MAX_TIMEOUT_SECONDS 86400UL

/** Bit flags naming the options a chapter accepts. */
enum option_flags {
    OPTION_PORT = 1 << 0,         /**< --port N (0 lets the system choose) */
    OPTION_BIND = 1 << 1,         /**< --bind ADDRESS (IPv4 or IPv6 literal) */
    OPTION_WORKERS = 1 << 2,      /**< --workers N */
    OPTION_MAX_CLIENTS = 1 << 3,  /**< --max-clients N */
    OPTION_ACCEPTS = 1 << 4,      /**< --accepts N */
    OPTION_MAX_QUEUED = 1 << 5,   /**< --max-queued BYTES */
    OPTION_MAX_MESSAGE = 1 << 6,  /**< --max-message BYTES */
    OPTION_IDLE_TIMEOUT = 1 << 7, /**< --idle-timeout SECONDS */
    OPTION_KEEPALIVE = 1 << 8,    /**< --keepalive SECONDS (0: off) */
    OPTION_BATCH = 1 << 9,        /**< --batch N */
    OPTION_VERBOSE = 1 << 10,     /**< --verbose, which takes no value */
};

/** The parsed options; fields of options a chapter does not accept keep their defaults. */
struct options {
    unsigned short port;        /**< port to listen on, 0 for any free port */
    const char *bind_address;   /**< address literal to listen on, NULL for IPv4 loopback */
    unsigned workers;           /**< worker threads, 0 for one per processor */
    unsigned max_clients;       /**< client slots in the pool */
    unsigned accepts;           /**< AcceptEx calls kept outstanding, 0 for 4 per worker */
    unsigned long max_queued;   /**< cap on a client's queued send bytes */
    unsigned long max_message;  /**< the longest message payload a client may send */
    unsigned long idle_timeout; /**< seconds a client may be idle or mid-message */
    unsigned long keepalive;    /**< seconds of silence before TCP keep-alive probes, 0 off */
    unsigned batch;             /**< completions a worker takes per wait */
    int verbose;                /**< print a line for every connection and disconnection */
};

/**
 * @brief Fills @p options from the command line, accepting only the options in
 *        @p accepted; prints usage and exits 0 on --help, and prints the problem and
 *        usage to stderr and exits 2 on anything it cannot accept: an unknown option,
 *        a missing or bad value, or an option given more than once.
 */
void parse_options(int argc, char **argv, unsigned accepted, struct options *options);

#endif
