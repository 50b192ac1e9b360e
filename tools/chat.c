/*
 * chat.exe: a client for chapter 12's chat room that you type into.
 *
 *   chat.exe [--name NAME] [HOST] [PORT]   (defaults 127.0.0.1 9000; HOST may be ::1)
 *
 * It speaks chapter 12's messages (common/frame.h): each typed line becomes one message,
 * a command (/join NAME, /leave, /echo TEXT) or else a line said to the room, and each
 * message from the server is printed as one line. /quit, or the end of the input (Ctrl+Z
 * then Enter in a console, or the end of a piped file), half-closes the connection; the
 * server's last messages still print until it closes its side.
 *
 * Two threads, as in tools/client.c and for the same reason (common/connect.h): the
 * input thread reads what is typed and sends, and the main thread receives and prints.
 */
#include <winsock2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connect.h"
#include "errors.h"
#include "frame.h"
#include "inbox.h"
#include "options.h"

#define RECEIVE_SIZE 4096
/*
 * The longest payload taken from the server. A MESSAGE is "NAME: " and then the text,
 * which the server takes up to its --max-message; the margin covers the longest name.
 */
#define MAX_PAYLOAD (MAX_MAX_MESSAGE + 64)
/* A printed line goes out in one write while it fits in this many characters. */
#define OUTPUT_SIZE 4096
/* The protocol's longest name (JOIN). */
#define MAX_NAME 32

/* --- the command line ----------------------------------------------------------------- */

/* The NAME of --name, sent as a JOIN once connected; NULL without --name. */
static const char *join_name;

/* Prints how to run the program to @p out. */
static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: chat.exe [--name NAME] [HOST] [PORT]\n"
            "  --name NAME  join the room as NAME once connected: 1 to %d letters, digits, "
            "'-', '_' or '.'\n"
            "  HOST         server name or address; IPv6 literals such as ::1 work "
            "(default %s)\n"
            "  PORT         server port, 1-65535 (default %d)\n"
            "  --help       show this help and exit\n"
            "A client for chapter 12's chat room: once connected, /help lists the commands, "
            "and any other line you type is said to the room.\nEnd the input (/quit, Ctrl+Z "
            "then Enter in a Windows console, Ctrl+D through `make chat` under Wine) to "
            "finish.\n",
            MAX_NAME, DEFAULT_HOST, DEFAULT_PORT);
}

/* Whether @p name is one the server can accept: 1 to MAX_NAME letters, digits, '-', '_'
 * or '.'. Checked here only for --name, so that a mistyped one never gets connected. */
static int is_valid_name(const char *name)
{
    size_t i;

    for (i = 0; name[i] != '\0'; i++) {
        char c = name[i];

        if (i == MAX_NAME || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                               (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return i > 0;
}

/* The tool's one option, --name NAME; returns how many arguments it took (see connect.h). */
static int take_name_option(const struct tool *tool, int argc, char **argv, int index)
{
    if (strcmp(argv[index], "--name") != 0)
        return 0;
    if (join_name != NULL)
        tool_usage_error(tool, "--name given more than once", NULL);
    if (index + 1 >= argc)
        tool_usage_error(tool, "--name needs a NAME", NULL);
    if (!is_valid_name(argv[index + 1]))
        tool_usage_error(tool, "NAME must be 1 to 32 letters, digits, '-', '_' or '.', not",
                         argv[index + 1]);
    join_name = argv[index + 1];
    return 2;
}

/* --- sending what is typed ------------------------------------------------------------ */

/*
 * Sends one message, header and payload in one send: two small sends in a row can wait
 * for the server's delayed acknowledgement of the first (Nagle's algorithm), and a chat
 * line would show late. @p length is at most INPUT_LINE_SIZE: one typed line, or a name.
 */
static int send_message(SOCKET socket_handle, unsigned type, const char *payload, size_t length)
{
    char message[FRAME_HEADER_SIZE + INPUT_LINE_SIZE];

    frame_header((unsigned char *)message, type, length);
    memcpy(message + FRAME_HEADER_SIZE, payload, length);
    return send_all(socket_handle, message, FRAME_HEADER_SIZE + length);
}

/* The input thread's verdict after sending: read on, or stop (the failure is reported). */
static enum input_verdict sent(int result)
{
    return result == 0 ? INPUT_MORE : INPUT_FAILED;
}

/*
 * Whether @p line is the command /WORD, alone or followed by a space and an argument;
 * the argument (maybe empty) is then in @p argument and @p argument_length.
 */
static int is_command(const char *line, size_t length, const char *word, const char **argument,
                      size_t *argument_length)
{
    size_t word_length = strlen(word);

    if (length < 1 + word_length || line[0] != '/' || memcmp(line + 1, word, word_length) != 0)
        return 0;
    if (length == 1 + word_length) {
        *argument = line + length;
        *argument_length = 0;
        return 1;
    }
    if (line[1 + word_length] != ' ')
        return 0; /* "/joined" is a line to say, not /join */
    *argument = line + 2 + word_length;
    *argument_length = length - 2 - word_length;
    return 1;
}

/* Prints the commands; one call, so that a line the server sends cannot cut into them. */
static void print_help(void)
{
    fputs("commands:\n"
          "  /join NAME  enter the room as NAME\n"
          "  /leave      leave the room (you stay connected)\n"
          "  /echo TEXT  have the server send TEXT back to you alone\n"
          "  /quit       stop sending; the client ends when the server closes\n"
          "  /help       this list\n"
          "Any other line is said to the room; start it with // to say one that starts "
          "with /.\n",
          stdout);
}

/* Acts on one typed line, its line end removed: a command, or a line to say. */
static enum input_verdict act_on_line(SOCKET socket_handle, const char *line, size_t length)
{
    const char *argument;
    size_t argument_length;

    if (is_command(line, length, "join", &argument, &argument_length))
        return sent(send_message(socket_handle, FRAME_JOIN, argument, argument_length));
    if (is_command(line, length, "leave", &argument, &argument_length))
        return sent(send_message(socket_handle, FRAME_LEAVE, "", 0)); /* no payload */
    if (is_command(line, length, "echo", &argument, &argument_length))
        return sent(send_message(socket_handle, FRAME_ECHO, argument, argument_length));
    if (is_command(line, length, "quit", &argument, &argument_length))
        return INPUT_DONE;
    if (is_command(line, length, "help", &argument, &argument_length)) {
        print_help();
        return INPUT_MORE;
    }
    /* "//text" says "/text": the way to say a line that would read as a command. */
    if (length >= 2 && line[0] == '/' && line[1] == '/') {
        line++;
        length--;
    }
    return sent(send_message(socket_handle, FRAME_SAY, line, length));
}

/* Whether the input thread is in the middle of a line too long to send. */
struct typing {
    int skipping;
};

/*
 * The input thread's take_line (connect.h): strips the line end ("\n", and the "\r"
 * before it that a Windows console adds) and acts on the line. A line that does not fit
 * in INPUT_LINE_SIZE is refused whole: cut in pieces, its end would be said as a line of
 * its own, or its start taken for a command.
 */
static enum input_verdict take_typed_line(struct input_reader *reader, const char *line,
                                          size_t length, int whole)
{
    struct typing *typing = reader->context;

    if (!whole || typing->skipping) {
        if (!typing->skipping)
            fprintf(stderr, "chat: line not sent: longer than %d bytes\n", INPUT_LINE_SIZE - 1);
        typing->skipping = !whole; /* the piece that ends the line ends the skipping */
        return INPUT_MORE;
    }
    if (length > 0 && line[length - 1] == '\n')
        length--;
    if (length > 0 && line[length - 1] == '\r')
        length--;
    return act_on_line(reader->socket_handle, line, length);
}

/* --- printing what the server sends --------------------------------------------------- */

/* A line being printed, kept until it is full or done. */
struct output {
    char text[OUTPUT_SIZE];
    size_t used;
};

/* Writes out what @p output holds; returns 0, or -1 after reporting. */
static int flush_output(struct output *output)
{
    if (output->used > 0 && fwrite(output->text, 1, output->used, stdout) != output->used) {
        report_errno("fwrite");
        return -1;
    }
    output->used = 0;
    return 0;
}

/* Adds @p length (at most OUTPUT_SIZE) characters, writing out first if they do not fit. */
static int add_output(struct output *output, const char *text, size_t length)
{
    if (output->used + length > sizeof output->text && flush_output(output) != 0)
        return -1;
    memcpy(output->text + output->used, text, length);
    output->used += length;
    return 0;
}

/*
 * How many bytes at @p bytes make one character that is printed as it is: a printable
 * ASCII character other than the backslash, or a whole UTF-8 sequence of a character from
 * U+00A0 on, so that names and text in any script show. 0 for everything else, which is
 * escaped: control bytes (ESC above all, which drives a terminal), DEL, the C1 controls
 * U+0080 to U+009F (terminals obey those too), and bytes that are not UTF-8.
 */
static size_t printable_length(const unsigned char *bytes, size_t left)
{
    unsigned long code;
    size_t length;
    size_t i;

    if (bytes[0] >= 0x20 && bytes[0] < 0x7f)
        return bytes[0] == '\\' ? 0 : 1;
    if (bytes[0] >= 0xc2 && bytes[0] <= 0xdf)
        length = 2;
    else if (bytes[0] >= 0xe0 && bytes[0] <= 0xef)
        length = 3;
    else if (bytes[0] >= 0xf0 && bytes[0] <= 0xf4)
        length = 4;
    else
        return 0;
    if (left < length)
        return 0;
    code = bytes[0] & (0x7fu >> length); /* the lead byte's own bits */
    for (i = 1; i < length; i++) {
        if ((bytes[i] & 0xc0) != 0x80)
            return 0;
        code = code << 6 | (bytes[i] & 0x3fu);
    }
    /* The shortest form only, no UTF-16 surrogates, nothing past U+10FFFF. */
    if (code < 0xa0 || (length == 3 && code < 0x800) || (length == 4 && code < 0x10000) ||
        (code >= 0xd800 && code <= 0xdfff) || code > 0x10ffff)
        return 0;
    return length;
}

/* Adds one byte that is not printed as it is: a backslash as \\ (so that an escape always
 * means a byte), anything else as \xNN. */
static int add_escape(struct output *output, unsigned char byte)
{
    static const char hex[] = "0123456789abcdef";
    char escape[4];

    if (byte == '\\')
        return add_output(output, "\\\\", 2);
    escape[0] = '\\';
    escape[1] = 'x';
    escape[2] = hex[byte >> 4];
    escape[3] = hex[byte & 0xf];
    return add_output(output, escape, sizeof escape);
}

/*
 * Prints @p prefix and then the payload as one line, its characters as they are and
 * every other byte escaped, so that no peer can send the reader's terminal a control
 * sequence or break the line.
 */
static int print_line(const char *prefix, const unsigned char *payload, size_t length)
{
    struct output output;
    size_t i = 0;

    output.used = 0;
    if (add_output(&output, prefix, strlen(prefix)) != 0)
        return -1;
    while (i < length) {
        size_t printable = printable_length(payload + i, length - i);
        int result;

        if (printable > 0) {
            result = add_output(&output, (const char *)payload + i, printable);
            i += printable;
        } else {
            result = add_escape(&output, payload[i++]);
        }
        if (result != 0)
            return -1;
    }
    if (add_output(&output, "\n", 1) != 0)
        return -1;
    return flush_output(&output);
}

/* Prints one message from the server; returns 0, or -1 for a type only clients send. */
static int print_message(const struct frame *frame)
{
    switch (frame->type) {
    case FRAME_MESSAGE:
        return print_line("", frame->payload, frame->length); /* already "NAME: TEXT" */
    case FRAME_NOTICE:
        return print_line("* ", frame->payload, frame->length);
    case FRAME_ERROR:
        return print_line("! ", frame->payload, frame->length);
    case FRAME_ECHO:
        return print_line("echo: ", frame->payload, frame->length);
    default:
        fprintf(stderr, "chat: the server sent a message of type %u, which only clients send\n",
                frame->type);
        return -1;
    }
}

/* Says why the message at @p header cannot be taken; returns -1, to end the client. */
static int refuse_message(enum frame_status status, const unsigned char *header)
{
    if (status == FRAME_TOO_LONG)
        fprintf(stderr, "chat: the server sent a message longer than %lu bytes\n",
                (unsigned long)MAX_PAYLOAD);
    else
        fprintf(stderr, "chat: the server sent a message of unknown type %u\n",
                (unsigned)header[4]);
    return -1;
}

/*
 * Prints every whole message in @p inbox and drops it, keeping the start of the next one;
 * returns 0, or -1 after saying why the bytes are not messages this client can take.
 */
static int print_messages(struct inbox *inbox)
{
    size_t offset = 0;

    for (;;) {
        struct frame frame;
        enum frame_status status =
            frame_parse(inbox->bytes + offset, inbox->used - offset, MAX_PAYLOAD, &frame);

        if (status == FRAME_INCOMPLETE)
            break;
        if (status != FRAME_READY)
            return refuse_message(status, inbox->bytes + offset);
        if (print_message(&frame) != 0)
            return -1;
        offset += frame.size;
    }
    inbox_consume(inbox, offset); /* one move for all the messages of this receive */
    return 0;
}

/*
 * Prints the server's messages until it closes; returns 0 then, or -1 after reporting a
 * receive error or a message that cannot be taken. The inbox is never freed: the process
 * ends right after.
 */
static int print_until_closed(SOCKET socket_handle)
{
    struct inbox inbox = {NULL, 0, 0};
    unsigned char buffer[RECEIVE_SIZE];

    for (;;) {
        int got = recv(socket_handle, (char *)buffer, (int)sizeof buffer, 0);

        if (got == 0)
            break;
        if (got == SOCKET_ERROR) {
            report_wsa_error("recv");
            return -1;
        }
        /* At most one message not yet whole, and the rest of one receive. */
        if (inbox_append(&inbox, buffer, (size_t)got, RECEIVE_SIZE,
                         FRAME_HEADER_SIZE + MAX_PAYLOAD + RECEIVE_SIZE) != 0 ||
            print_messages(&inbox) != 0)
            return -1;
    }
    if (inbox.used > 0) {
        fprintf(stderr, "chat: the server closed the connection in the middle of a message\n");
        return -1;
    }
    fprintf(stderr, "connection closed by the server\n");
    return 0;
}

/* Connects, joins with --name, then prints the room until the server closes: exit 0, or
 * 1 on an error. */
int main(int argc, char **argv)
{
    static const struct tool tool = {"chat", print_usage, take_name_option};
    struct endpoint endpoint;
    char endpoint_text[ENDPOINT_TEXT_SIZE];
    /* static: the input thread may use them after main returns */
    static struct typing typing;
    static struct input_reader reader = {INVALID_SOCKET, take_typed_line, &typing};

    parse_tool_arguments(&tool, argc, argv, &endpoint);
    /* Unbuffered so each line shows at once; print_line writes a line in one piece. */
    setvbuf(stdout, NULL, _IONBF, 0);
    reader.socket_handle = connect_to_server(&endpoint);
    if (reader.socket_handle == INVALID_SOCKET)
        return EXIT_FAILURE;
    /* On stderr, like the other words of the client's own: stdout is what the room says. */
    fprintf(stderr, "connected to %s; /help lists the commands\n",
            format_endpoint(&endpoint, endpoint_text, sizeof endpoint_text));
    /* Before the input thread starts, so the JOIN goes before any typed line. */
    if (join_name != NULL &&
        send_message(reader.socket_handle, FRAME_JOIN, join_name, strlen(join_name)) != 0)
        return EXIT_FAILURE;
    if (start_input_thread(&reader) != 0)
        return EXIT_FAILURE;

    /* No closesocket or WSACleanup, for the reason tools/client.c gives. */
    return print_until_closed(reader.socket_handle) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
