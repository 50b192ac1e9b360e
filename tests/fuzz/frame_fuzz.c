/*
 * A libFuzzer target for the message parser, frame.c, in either of its copies: chapter
 * 11's and common/'s (`make fuzz`, and a few seconds of each in tests/test_frame.py).
 * Each input is an inbox: it is cut into messages the way the server's take_messages
 * does (parse at an offset, step over a whole message, stop at FRAME_INCOMPLETE or a
 * refused header), once for each of a few --max-message values, and every answer is
 * checked against the invariants of a message, the answer with no limit, the answer for
 * one byte fewer, and the types that copy knows; a wrong one aborts.
 *
 * The copies differ in the types they know, so the build says which:
 * -DFRAME_FUZZ_KNOWN_TYPES=1 for chapter 11, =1,2,3,4,16,17,18 for common/frame.c.
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

#ifndef FRAME_FUZZ_KNOWN_TYPES
#error "build with -DFRAME_FUZZ_KNOWN_TYPES=... (the types this frame.c knows, e.g. 1)"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The type bytes this copy of frame_parse takes; every other one is FRAME_UNKNOWN_TYPE. */
static const unsigned KNOWN_TYPES[] = {FRAME_FUZZ_KNOWN_TYPES};

static int type_known(unsigned type)
{
    size_t i;

    for (i = 0; i < sizeof KNOWN_TYPES / sizeof KNOWN_TYPES[0]; i++)
        if (KNOWN_TYPES[i] == type)
            return 1;
    return 0;
}

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
 * Checks the answer under `max_payload` against the answer with no limit at all, instead
 * of working the header out a second time: a limit may only turn a message that is there
 * (or on its way) into FRAME_TOO_LONG, and exactly when its length is over the limit.
 */
static void check_limit(const uint8_t *data, size_t available, size_t max_payload,
                        enum frame_status status, size_t offset)
{
    struct frame whole;
    enum frame_status unlimited = frame_parse(data, available, SIZE_MAX, &whole);

    check(unlimited != FRAME_TOO_LONG, "too long with no limit", max_payload, offset);
    if (unlimited == FRAME_READY)
        check(status == (whole.length <= max_payload ? FRAME_READY : FRAME_TOO_LONG),
              "the limit is not applied at exactly max_payload", max_payload, offset);
    else
        check(status == unlimited || status == FRAME_TOO_LONG,
              "the limit changed an answer other than to too long", max_payload, offset);
}

static void parse_inbox(const uint8_t *data, size_t available, size_t max_payload)
{
    size_t offset = 0;

    for (;;) {
        struct frame frame;
        struct frame shorter;
        unsigned char header[FRAME_HEADER_SIZE];
        enum frame_status status;

        memset(&frame, 0xA5, sizeof frame);
        status = frame_parse(data + offset, available - offset, max_payload, &frame);
        check_limit(data + offset, available - offset, max_payload, status, offset);
        /*
         * The type byte is looked at once it is there and the length has passed: then
         * it is refused exactly when this copy does not know it.
         */
        if (available - offset < FRAME_HEADER_SIZE)
            check(status != FRAME_UNKNOWN_TYPE, "unknown type before the type byte", max_payload,
                  offset);
        else if (status != FRAME_TOO_LONG)
            check((status == FRAME_UNKNOWN_TYPE) == !type_known(data[offset + 4]),
                  "a known type refused, or an unknown one taken", max_payload, offset);
        if (status != FRAME_READY)
            return; /* INCOMPLETE: wait for more bytes; an error: the client is ended */

        check(type_known(frame.type), "type is not a known type", max_payload, offset);
        check(frame.type == data[offset + 4], "type is not the type byte", max_payload, offset);
        check(frame.length <= max_payload, "length over max_payload", max_payload, offset);
        check(frame.size == FRAME_HEADER_SIZE + frame.length, "size is not 5 + length", max_payload,
              offset);
        check(frame.payload == data + offset + FRAME_HEADER_SIZE,
              "payload does not follow the header", max_payload, offset);
        check(frame.size <= available - offset, "the message runs past the bytes available",
              max_payload, offset);
        /* One byte fewer is not a whole message yet. */
        check(frame_parse(data + offset, frame.size - 1, max_payload, &shorter) == FRAME_INCOMPLETE,
              "a message one byte short is not incomplete", max_payload, offset);
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
