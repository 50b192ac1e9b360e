/*
 * A libFuzzer target for chapter 11's frame.c (`make fuzz`, and a few seconds of it in
 * tests/test_frame.py). Each input is an inbox: it is cut into messages the way the
 * server's take_messages does (parse at an offset, step over a whole message, stop at
 * FRAME_INCOMPLETE or a refused header), once for each of a few --max-message values,
 * and every answer is checked against the header format itself; a wrong one aborts.
 *
 * libFuzzer hands over the input in a heap block of exactly its size, so with
 * AddressSanitizer a read past `available` stops the run at once.
 */
#include "frame.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The max_payload values each input is parsed with: the edges of short lengths, those of
 * --max-message's default (65536) and of its largest (16 MiB), and no limit at all.
 */
static const size_t MAX_PAYLOADS[] = {0,     1,     2,        5,        255,     256,
                                      65535, 65536, 16777215, 16777216, SIZE_MAX};

static void check(int ok, const char *what, size_t max_payload, size_t offset)
{
    if (!ok) {
        fprintf(stderr, "frame_fuzz: %s (max_payload %zu, message at offset %zu)\n", what,
                max_payload, offset);
        abort();
    }
}

/*
 * What frame_parse must answer for the `available` bytes at `data`, worked out from the
 * header format: a 4-byte big-endian length, then the type byte.
 */
static enum frame_status expected_status(const uint8_t *data, size_t available, size_t max_payload)
{
    uint64_t length;

    if (available < 4)
        return FRAME_INCOMPLETE;
    length = (uint64_t)data[0] << 24 | (uint64_t)data[1] << 16 | (uint64_t)data[2] << 8 |
             (uint64_t)data[3];
    if (length > max_payload)
        return FRAME_TOO_LONG;
    if (available < FRAME_HEADER_SIZE)
        return FRAME_INCOMPLETE;
    if (data[4] != FRAME_ECHO)
        return FRAME_UNKNOWN_TYPE;
    if (available - FRAME_HEADER_SIZE < length)
        return FRAME_INCOMPLETE;
    return FRAME_READY;
}

static void parse_inbox(const uint8_t *data, size_t available, size_t max_payload)
{
    size_t offset = 0;

    for (;;) {
        struct frame frame;
        unsigned char header[FRAME_HEADER_SIZE];
        enum frame_status status;

        memset(&frame, 0xA5, sizeof frame);
        status = frame_parse(data + offset, available - offset, max_payload, &frame);
        check(status == expected_status(data + offset, available - offset, max_payload),
              "frame_parse's answer is not what the header says", max_payload, offset);
        if (status != FRAME_READY)
            return; /* INCOMPLETE: wait for more bytes; an error: the client is ended */

        check(frame.type == FRAME_ECHO, "type is not FRAME_ECHO", max_payload, offset);
        check(frame.length <= max_payload, "length over max_payload", max_payload, offset);
        check(frame.size == FRAME_HEADER_SIZE + frame.length, "size is not 5 + length", max_payload,
              offset);
        check(frame.payload == data + offset + FRAME_HEADER_SIZE,
              "payload does not follow the header", max_payload, offset);
        check(frame.size <= available - offset, "the message runs past the bytes available",
              max_payload, offset);
        frame_header(header, frame.type, frame.length);
        check(memcmp(header, data + offset, FRAME_HEADER_SIZE) == 0,
              "frame_header of the parsed type and length differs from the header parsed",
              max_payload, offset);

        offset += frame.size;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t i;

    for (i = 0; i < sizeof MAX_PAYLOADS / sizeof MAX_PAYLOADS[0]; i++)
        parse_inbox(data, size, MAX_PAYLOADS[i]);
    return 0;
}
