/**
 * @file frame.h
 * @brief Chapter 11's message framing, for the chapters after it, with the chat room's
 *        message types: a byte stream cut into messages, each a 5-byte header (a 4-byte
 *        big-endian payload length, then a 1-byte type) and its payload. Plain C, free of
 *        Winsock, so it also builds natively for its unit tests and fuzzing.
 */
#ifndef IOCP_TUTORIAL_FRAME_H
#define IOCP_TUTORIAL_FRAME_H

#include <stddef.h>

/** Bytes before every payload: the length (4, big-endian) and the type (1). */
#define FRAME_HEADER_SIZE 5

/** The message types: 1 to 4 are sent by clients, 16 to 18 only by the server. */
enum frame_type {
    FRAME_ECHO = 1,     /**< an echo: sent back to its sender alone, the same bytes */
    FRAME_JOIN = 2,     /**< join the chat room; the payload is the name */
    FRAME_SAY = 3,      /**< say the payload to everyone in the room */
    FRAME_LEAVE = 4,    /**< leave the room; no payload */
    FRAME_MESSAGE = 16, /**< a line said in the room: "name: text" */
    FRAME_NOTICE = 17,  /**< news of the room, such as "name joined" */
    FRAME_ERROR = 18    /**< a request refused, such as a name already taken */
};

/** What frame_parse found at the start of a buffer. */
enum frame_status {
    FRAME_INCOMPLETE,  /**< not a whole message yet: wait for more bytes */
    FRAME_READY,       /**< a whole message: the frame describes it */
    FRAME_TOO_LONG,    /**< its length is over the limit: end the connection */
    FRAME_UNKNOWN_TYPE /**< its type is none of enum frame_type: end the connection */
};

/** One message found in a buffer. */
struct frame {
    unsigned type;                /**< one of enum frame_type */
    const unsigned char *payload; /**< points into the buffer given to frame_parse */
    size_t length;                /**< payload bytes */
    size_t size;                  /**< FRAME_HEADER_SIZE + length: its bytes in the buffer */
};

/**
 * @brief Looks at the @p available bytes at @p data for one whole message whose payload is
 *        at most @p max_payload bytes, and describes it in @p frame when it is there; a too
 *        long or unknown header is refused as soon as its bytes are there.
 */
enum frame_status frame_parse(const unsigned char *data, size_t available, size_t max_payload,
                              struct frame *frame);

/** @brief Writes into @p header the header of a message of @p type with @p length payload bytes. */
void frame_header(unsigned char header[FRAME_HEADER_SIZE], unsigned type, size_t length);

#endif
