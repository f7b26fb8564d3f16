/* A mail client written from docs/protocol.md alone: C, POSIX, no libssl.
 *
 *   gcc -O2 -o client examples/client.c
 *   ./client HOST PORT < commands.txt
 *
 * Standard input, as the 2017 client's menu reads it: a user name line, a
 * password line, then per command its name and one line per field.
 * One connection per request; the request goes out whole, then a
 * half-close; the reply is everything until the server closes, or bytes
 * and then 0.25 s of nothing (a 2017 server never closes).  Exactly KO:
 * the same frame again on a new connection, at most 3 more times.  No
 * reply in 5 s: help, getmsg, count and dump are sent again (they change
 * nothing); the others are reported and not sent again.
 */
#define _GNU_SOURCE
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sha1.h"

#define RETRIES 3
#define TIMEOUT_MS 5000
#define QUIET_MS 250
#define MAX_REPLY (64 * 1024 * 1024)

static const char *host, *port;

/* One request on a new connection.  Returns the reply (malloc'ed, NUL
 * terminated, length in *len), or NULL if nothing came in time (*len = 0)
 * or the connection failed (*len = 1). */
static char *exchange(const char *req, size_t req_len, size_t *len) {
    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_STREAM;
    *len = 1;
    if (getaddrinfo(host, port, &hints, &ai) != 0) return NULL;
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        freeaddrinfo(ai);
        if (fd >= 0) close(fd);
        return NULL;
    }
    freeaddrinfo(ai);
    for (size_t sent = 0; sent < req_len;) {
        ssize_t k = send(fd, req + sent, req_len - sent, MSG_NOSIGNAL);
        if (k <= 0) { close(fd); return NULL; }
        sent += k;
    }
    shutdown(fd, SHUT_WR);                      /* "that was all" */
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, n ? QUIET_MS : TIMEOUT_MS) <= 0) break;   /* quiet: the reply is complete */
        if (cap - n < 65536) buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0) break;                      /* the server closed */
        n += k;
        if (n > MAX_REPLY) break;
    }
    close(fd);
    buf[n] = 0;
    *len = n;
    if (!n) { free(buf); return NULL; }
    return buf;
}

static void send_command(const char *name, const char *frame, size_t frame_len) {
    int safe = !strcmp(name, "help") || !strcmp(name, "getmsg") || !strcmp(name, "count") || !strcmp(name, "dump");
    for (int attempt = 0; attempt <= RETRIES; attempt++) {
        size_t len;
        char *reply = exchange(frame, frame_len, &len);
        if (!reply) {
            if (safe) continue;
            printf("failed: no reply (the server may still have done it)\n");
            return;
        }
        int ko = !strcmp(reply, "KO") || !strcmp(reply, "KO\n");
        if (!ko) { printf("%s\n", reply); free(reply); return; }
        free(reply);
    }
    printf("failed after %d attempts (KO every time)\n", RETRIES + 1);
}

/* A field that is not the last one: ':' travels as #3A and '#' as #23,
 * when it holds a ':' or the mark "#3A" (docs: "#, : and % inside fields"). */
static void append_field(char **out, size_t *len, const char *f, int escape) {
    escape = escape && (strchr(f, ':') || strstr(f, "#3A"));
    for (const char *c = f; *c; c++) {
        const char *piece = escape && *c == ':' ? "#3A" : escape && *c == '#' ? "#23" : NULL;
        size_t k = piece ? 3 : 1;
        *out = realloc(*out, *len + k + 1);
        memcpy(*out + *len, piece ? piece : c, k);
        *len += k;
    }
    (*out)[*len] = 0;
}

static int read_line(char **line, size_t *cap) {
    ssize_t n = getline(line, cap, stdin);
    if (n < 0) return 0;
    while (n && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = 0;
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s HOST PORT < commands\n", argv[0]); return 2; }
    host = argv[1]; port = argv[2];
    char *user = NULL, *pw = NULL, *line = NULL;
    size_t ucap = 0, pcap = 0, lcap = 0, len;
    if (!read_line(&user, &ucap) || !read_line(&pw, &pcap)) return 1;
    char login[1024];
    int n = snprintf(login, sizeof login, "%s:%s", user, pw);
    char *reply = exchange(login, (size_t)n, &len);
    printf("%s\n", reply ? reply : "(no reply)");
    if (!reply || strncmp(reply, "OK:", 3) || strlen(reply) < 13) return 1;
    char session[11];
    memcpy(session, reply + 3, 10);
    session[10] = 0;
    free(reply);

    static const struct { const char *name; int fields; } commands[] = {
        {"help", 0}, {"email", 3}, {"getmsg", 1}, {"count", 0}, {"delmsg", 2}, {"dump", 0}, {"logoff", 0}};
    while (read_line(&line, &lcap)) {
        int fields = -1;
        for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
            if (!strcmp(line, commands[i].name)) fields = commands[i].fields;
        if (fields < 0) { printf("unknown command '%s'\n", line); continue; }
        char *name = strdup(line), *content = NULL;
        size_t clen = 0;
        append_field(&content, &clen, session, 0);
        append_field(&content, &clen, ":", 0);
        append_field(&content, &clen, name, 0);
        for (int i = 0; i < fields; i++) {
            if (!read_line(&line, &lcap)) line[0] = 0;
            append_field(&content, &clen, ":", 0);
            append_field(&content, &clen, line, i < fields - 1);
        }
        char hex[41];
        sha1_hex(content, clen, hex);
        append_field(&content, &clen, "#", 0);
        append_field(&content, &clen, hex, 0);
        send_command(name, content, clen);
        fflush(stdout);
        int done = !strcmp(name, "logoff");
        free(content);
        free(name);
        if (done) break;
    }
    free(user); free(pw); free(line);
    return 0;
}
