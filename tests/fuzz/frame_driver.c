/*
 * A native driver of frame.c (chapter 11's, or common/'s: the same interface) for
 * tests/test_frame.py: one command a line on standard input, one answer a line on
 * standard output.
 *
 *   parse MAX HEX [FILL]  frame_parse of the bytes HEX ("-" for none) followed by FILL
 *                         bytes 'x', with max_payload MAX ("max" for SIZE_MAX); answers
 *                         INCOMPLETE, TOO_LONG, UNKNOWN_TYPE, or
 *                         READY TYPE PAYLOAD_OFFSET LENGTH SIZE
 *   header TYPE LENGTH    frame_header; answers its 5 bytes in hex
 *
 * The bytes of each parse are in a heap block of exactly their size, so that a build with
 * AddressSanitizer stops at the first byte read past `available`.
 */
#include "frame.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_SIZE (1 << 20)

static void fail(const char *what)
{
    fprintf(stderr, "frame_driver: %s\n", what);
    exit(2);
}

static unsigned long long number(const char *text)
{
    char *end;
    unsigned long long value;

    if (text == NULL)
        fail("a number is missing");
    if (strcmp(text, "max") == 0)
        return SIZE_MAX;
    value = strtoull(text, &end, 0);
    if (*end != '\0')
        fail("not a number");
    return value;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    fail("not a hex digit");
    return 0;
}

/* Prints a size_t in decimal (without printf's length modifiers, which vary on Windows). */
static void print_size(size_t value)
{
    char digits[32];
    size_t i = sizeof digits;

    digits[--i] = '\0';
    do {
        digits[--i] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    fputs(digits + i, stdout);
}

static void parse(const char *max_text, const char *hex, const char *fill_text)
{
    size_t max_payload = (size_t)number(max_text);
    size_t hex_bytes, fill, size, i;
    unsigned char *data;
    struct frame frame;
    enum frame_status status;

    if (hex == NULL)
        fail("parse: no bytes");
    if (strcmp(hex, "-") == 0)
        hex = "";
    if (strlen(hex) % 2 != 0)
        fail("parse: an odd number of hex digits");
    hex_bytes = strlen(hex) / 2;
    fill = fill_text != NULL ? (size_t)number(fill_text) : 0;
    size = hex_bytes + fill;
    data = malloc(size);
    if (data == NULL && size != 0)
        fail("parse: no memory");
    for (i = 0; i < hex_bytes; i++)
        data[i] = (unsigned char)(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
    if (fill != 0)
        memset(data + hex_bytes, 'x', fill);

    memset(&frame, 0, sizeof frame);
    status = frame_parse(data, size, max_payload, &frame);
    switch (status) {
    case FRAME_INCOMPLETE:
        printf("INCOMPLETE\n");
        break;
    case FRAME_TOO_LONG:
        printf("TOO_LONG\n");
        break;
    case FRAME_UNKNOWN_TYPE:
        printf("UNKNOWN_TYPE\n");
        break;
    case FRAME_READY:
        printf("READY %u ", frame.type);
        /* Where the payload starts, as an offset into the bytes ("outside" if not in them). */
        if ((uintptr_t)frame.payload >= (uintptr_t)data &&
            (uintptr_t)frame.payload <= (uintptr_t)data + size)
            print_size((size_t)((uintptr_t)frame.payload - (uintptr_t)data));
        else
            fputs("outside", stdout);
        putchar(' ');
        print_size(frame.length);
        putchar(' ');
        print_size(frame.size);
        putchar('\n');
        break;
    default:
        printf("STATUS %d\n", (int)status);
    }
    free(data);
}

static void header(const char *type_text, const char *length_text)
{
    unsigned char bytes[FRAME_HEADER_SIZE];
    unsigned type = (unsigned)number(type_text);
    size_t length = (size_t)number(length_text);
    int i;

    memset(bytes, 0xA5, sizeof bytes);
    frame_header(bytes, type, length);
    for (i = 0; i < FRAME_HEADER_SIZE; i++)
        printf("%02x", bytes[i]);
    printf("\n");
}

int main(void)
{
    static char line[LINE_SIZE];

    while (fgets(line, sizeof line, stdin) != NULL) {
        char *command;

        if (strchr(line, '\n') == NULL && !feof(stdin))
            fail("a line too long");
        command = strtok(line, " \r\n");
        if (command == NULL)
            continue;
        if (strcmp(command, "parse") == 0) {
            char *max_text = strtok(NULL, " \r\n");
            char *hex = strtok(NULL, " \r\n");

            parse(max_text, hex, strtok(NULL, " \r\n"));
        } else if (strcmp(command, "header") == 0) {
            char *type_text = strtok(NULL, " \r\n");

            header(type_text, strtok(NULL, " \r\n"));
        } else {
            fail("unknown command");
        }
        fflush(stdout);
    }
    return 0;
}
