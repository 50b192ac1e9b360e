/**
 * @file quit.h
 * @brief One way to ask a server to stop: a "quit" line or the end of standard input,
 *        or Ctrl+C, Ctrl+Break or closing the console window.
 */
#ifndef IOCP_TUTORIAL_QUIT_H
#define IOCP_TUTORIAL_QUIT_H

/**
 * @brief Starts watching standard input and the console's control events for a stop
 *        request; returns 0, or -1 after reporting which call failed.
 */
int quit_watch_start(void);

/**
 * @brief Blocks until a stop request arrives and returns what it was: "quit",
 *        "end of input", "Ctrl+C", "Ctrl+Break" or "console closed".
 */
const char *quit_wait(void);

#endif
