#include "frame.h"

/* Whether @p type is one of enum frame_type, whichever side sends it. */
static int type_known(unsigned type)
{
    switch (type) {
    case FRAME_ECHO:
    case FRAME_JOIN:
    case FRAME_SAY:
    case FRAME_LEAVE:
    case FRAME_MESSAGE:
    case FRAME_NOTICE:
    case FRAME_ERROR:
        return 1;
    default:
        return 0;
    }
}

enum frame_status frame_parse(const unsigned char *data, size_t available, size_t max_payload,
                              struct frame *frame)
{
    size_t length;

    if (available < 4)
        return FRAME_INCOMPLETE;
    length = (size_t)data[0] << 24 | (size_t)data[1] << 16 | (size_t)data[2] << 8 | data[3];
    if (length > max_payload)
        return FRAME_TOO_LONG;
    if (available < FRAME_HEADER_SIZE)
        return FRAME_INCOMPLETE;
    if (!type_known(data[4]))
        return FRAME_UNKNOWN_TYPE;
    if (available - FRAME_HEADER_SIZE < length)
        return FRAME_INCOMPLETE;
    frame->type = data[4];
    frame->payload = data + FRAME_HEADER_SIZE;
    frame->length = length;
    frame->size = FRAME_HEADER_SIZE + length;
    return FRAME_READY;
}

void frame_header(unsigned char header[FRAME_HEADER_SIZE], unsigned type, size_t length)
{
    header[0] = (unsigned char)(length >> 24);
    header[1] = (unsigned char)(length >> 16);
    header[2] = (unsigned char)(length >> 8);
    header[3] = (unsigned char)length;
    header[4] = (unsigned char)type;
}
