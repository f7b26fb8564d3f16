/* A mail server written from docs/protocol.md alone: C, POSIX, no libssl.
 *
 *   gcc -O2 -pthread -o server examples/server.c
 *   ./server PORT USERS_FILE MAIL_FILE
 *
 * USERS_FILE holds NAME:PASSWORD lines.  MAIL_FILE keeps the mail: each
 * `email` is appended and fsync'ed before its OK (an OK means it is on
 * disk).  One thread per connection, so a quiet client never holds up the
 * others.  Checked by `python -m mailkit conform server -- ./server {port}
 * {users} {db}` (tests/test_conform.py builds and runs it).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sha1.h"

#define MAX_REQUEST (1024 * 1024)  /* docs: a request is at most 1 MiB */
#define QUIET_MS 50                /* a handshake: 50 ms with nothing more */
#define SETTLE_MS 100              /* a frame whose checksum does not match: 100 ms */
#define IDLE_MS 2000               /* anything else: 2 s */
#define DEADLINE_MS 10000          /* a whole request */
#define RESEND_MS 2000             /* after KO: one resend on the same connection */
#define MAX_USERS 64
#define MAX_SESSIONS 1024

typedef struct { char *sender, *rcpt, *subject, *body; size_t body_len; long at; } Mail;
typedef struct { char name[40]; char pw[128]; } User;
typedef struct { char id[11]; char user[40]; } Session;

static User users[MAX_USERS];
static int n_users;
static Session sessions[MAX_SESSIONS];
static int n_sessions;
static Mail *mails;
static size_t n_mails, cap_mails;
static const char *mail_path;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* -- a growing buffer ---------------------------------------------------- */
typedef struct { char *p; size_t len, cap; } Buf;

static void put(Buf *b, const char *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void say(Buf *b, const char *text) { put(b, text, strlen(text)); }

static void putf(Buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* -- frames -------------------------------------------------------------- */

static int is_hex40(const char *p) {
    for (int i = 0; i < 40; i++)
        if (!isxdigit((unsigned char)p[i])) return 0;
    return 1;
}

/* Length of the frame in b once one trailing line end is dropped, if what
 * is left ends in '#' and 40 hex digits (either case); else 0. */
static size_t framed_len(const Buf *b) {
    size_t n = b->len;
    if (n >= 2 && b->p[n - 2] == '\r' && b->p[n - 1] == '\n') n -= 2;
    else if (n >= 1 && b->p[n - 1] == '\n') n -= 1;
    if (n > 41 && b->p[n - 41] == '#' && is_hex40(b->p + n - 40)) return n;
    return 0;
}

/* 1: the checksum matches; 0: it does not (KO); -1: it matches but is
 * written in uppercase hex, 2 letters or more (a client's %02X, never one
 * flipped bit): an error that says so. */
static int verifies(const char *p, size_t n) {  /* n: the frame's length, checksum included */
    char hex[41];
    int upper = 0;
    sha1_hex(p, n - 41, hex);
    if (strncmp(hex, p + n - 40, 40) == 0) return 1;
    for (int i = 0; i < 40; i++) upper += p[n - 40 + i] >= 'A' && p[n - 40 + i] <= 'F';
    return upper >= 2 && strncasecmp(hex, p + n - 40, 40) == 0 ? -1 : 0;
}

static int starts_with_session(const Buf *b) {
    if (b->len < 11) return 0;
    for (int i = 0; i < 10; i++)
        if (!isdigit((unsigned char)b->p[i])) return 0;
    return b->p[10] == ':';
}

/* How long to wait for more bytes (docs: "When is a request complete?"). */
static int patience(const Buf *b, int closed) {
    if (closed) return 0;
    if (b->len == 0) return IDLE_MS;
    size_t n = framed_len(b);
    if (n) return verifies(b->p, n) != 0 ? 0 : SETTLE_MS;
    if (!isdigit((unsigned char)b->p[0])) {
        if (b->p[b->len - 1] == '\n') return 0;
        if (memchr(b->p, ':', b->len)) return QUIET_MS;
    }
    return IDLE_MS;
}

/* Read one request; returns 0 if complete, -1 if nothing came.
 * *closed is set if the client half-closed. */
static int read_request(int fd, Buf *b, int *closed, int first_wait_ms) {
    long deadline = now_ms() + DEADLINE_MS;
    char chunk[65536];
    int wait;
    while ((wait = patience(b, *closed)) > 0) {
        if (b->len == 0) wait = first_wait_ms;
        long left = deadline - now_ms();
        if (left <= 0) break;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, wait < left ? wait : (int)left);
        if (r <= 0) break;                          /* quiet long enough: take what came */
        ssize_t got = recv(fd, chunk, sizeof chunk, 0);
        if (got < 0) return -1;
        if (got == 0) { *closed = 1; continue; }
        if (b->len + got > MAX_REQUEST) return -1;
        put(b, chunk, got);
    }
    return b->len ? 0 : -1;
}

/* -- the mail file ------------------------------------------------------- */

static void add_mail(const char *s, const char *r, const char *subj, const char *body, size_t blen, long at) {
    if (n_mails == cap_mails) {
        cap_mails = cap_mails ? cap_mails * 2 : 64;
        mails = realloc(mails, cap_mails * sizeof *mails);
    }
    Mail *m = &mails[n_mails++];
    m->sender = strdup(s); m->rcpt = strdup(r); m->subject = strdup(subj);
    m->body = malloc(blen + 1); memcpy(m->body, body, blen); m->body[blen] = 0;
    m->body_len = blen; m->at = at;
}

static void write_record(FILE *f, const Mail *m) {
    fprintf(f, "M %ld %zu %zu %zu %zu\n", m->at, strlen(m->sender), strlen(m->rcpt), strlen(m->subject), m->body_len);
    fputs(m->sender, f); fputs(m->rcpt, f); fputs(m->subject, f);
    fwrite(m->body, 1, m->body_len, f);
}

static int sync_file(FILE *f) { return fflush(f) == 0 && fsync(fileno(f)) == 0; }

static void load_mail(void) {
    FILE *f = fopen(mail_path, "rb");
    if (!f) return;
    long at; size_t a, b, c, d;
    while (fscanf(f, "M %ld %zu %zu %zu %zu\n", &at, &a, &b, &c, &d) == 5) {
        char *p = malloc(a + b + c + d + 4);
        if (fread(p, 1, a + b + c + d, f) != a + b + c + d) { free(p); break; }
        char *s = strndup(p, a), *r = strndup(p + a, b), *subj = strndup(p + a + b, c);
        add_mail(s, r, subj, p + a + b + c, d, at);
        free(s); free(r); free(subj); free(p);
    }
    fclose(f);
}

static int rewrite_mail(void) {             /* after a delete: a new file, then rename */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", mail_path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return 0;
    for (size_t i = 0; i < n_mails; i++) write_record(f, &mails[i]);
    int ok = sync_file(f);
    fclose(f);
    return ok && rename(tmp, mail_path) == 0;
}

/* -- the commands -------------------------------------------------------- */

static const char *session_user(const char *id) {
    for (int i = 0; i < n_sessions; i++)
        if (strcmp(sessions[i].id, id) == 0) return sessions[i].user;
    return NULL;
}

static int known_user(const char *name) {
    for (int i = 0; i < n_users; i++)
        if (strcmp(users[i].name, name) == 0) return 1;
    return 0;
}

/* '#3A' -> ':' and '#23' -> '#', but only in a field that holds '#3A'
 * (strictly: '#', any number of '23', then '3A'). */
static void unescape(char *f) {
    int marked = 0;
    for (char *p = strchr(f, '#'); p && !marked; p = strchr(p + 1, '#')) {
        char *q = p + 1;
        while (q[0] == '2' && q[1] == '3') q += 2;
        if (q[0] == '3' && q[1] == 'A') marked = 1;
    }
    if (!marked) return;
    char *out = f;
    for (char *in = f; *in;) {
        if (in[0] == '#' && in[1] == '3' && in[2] == 'A') { *out++ = ':'; in += 3; }
        else if (in[0] == '#' && in[1] == '2' && in[2] == '3') { *out++ = '#'; in += 3; }
        else *out++ = *in++;
    }
    *out = 0;
}

static void plural(Buf *out, size_t n, const char *what) {
    putf(out, "%zu %s%s", n, what, n == 1 ? "" : "s");
}

static void listing(Buf *out, const char *user, const char *sender) {
    size_t n = 0;
    for (size_t i = 0; i < n_mails; i++)
        if (!strcmp(mails[i].rcpt, user) && (!sender || !strcmp(mails[i].sender, sender))) n++;
    say(out, "OK: ");
    plural(out, n, "message");
    if (sender) putf(out, " from %s", sender);
    size_t k = 0;
    for (size_t i = 0; i < n_mails; i++) {
        Mail *m = &mails[i];
        if (strcmp(m->rcpt, user) || (sender && strcmp(m->sender, sender))) continue;
        char date[64];
        time_t t = m->at;
        strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
        putf(out, "\n--- message %zu of %zu ---\nFrom: %s\nTo: %s\nDate: %s\nSubject: ", ++k, n, m->sender, m->rcpt, date);
        for (char *c = m->subject; *c; c++) {
            if (*c == '\n') say(out, "\\n");
            else if (*c == '\\') say(out, "\\\\");
            else put(out, c, 1);
        }
        putf(out, "\nLength: %zu\n\n", m->body_len);
        put(out, m->body, m->body_len);
    }
}

static const int ARITY[] = {0, 3, 1, 0, 2, 0, 0};
static const char *NAMES[] = {"help", "email", "getmsg", "count", "delmsg", "dump", "logoff"};

static void command(Buf *out, char *frame, size_t n) {
    frame[n - 41] = 0;                                  /* the content, without '#' and checksum */
    char *sid = frame, *rest = frame + 11;
    frame[10] = 0;
    const char *user = session_user(sid);
    if (!user) { putf(out, "ERROR: unknown session id %s (log in again)", sid); return; }
    char *colon = strchr(rest, ':');
    size_t name_len = colon ? (size_t)(colon - rest) : strlen(rest);
    int cmd = -1;
    for (int i = 0; i < 7; i++)
        if (strlen(NAMES[i]) == name_len && !strncmp(rest, NAMES[i], name_len)) cmd = i;
    if (cmd < 0) { say(out, "ERROR: unknown command (send 'help' for the list)"); return; }
    char *field[3] = {0};
    int n_fields = 0;
    char *p = colon ? colon + 1 : NULL;
    while (p && n_fields < ARITY[cmd]) {                /* split by the command's arity */
        field[n_fields++] = p;
        char *next = n_fields < ARITY[cmd] ? strchr(p, ':') : NULL;
        if (next) *next = 0;
        p = next ? next + 1 : NULL;
    }
    if (n_fields != ARITY[cmd] || (ARITY[cmd] == 0 && colon)) {
        putf(out, "ERROR: %s takes %d field(s)", NAMES[cmd], ARITY[cmd]);
        return;
    }
    for (int i = 0; i + 1 < n_fields; i++) unescape(field[i]);
    switch (cmd) {
    case 0:
        say(out, "OK: commands (send each as SESSION_ID:COMMAND[:FIELD]...#SHA1):\n"
                 "  help\n  email:RECIPIENT:SUBJECT:BODY\n  getmsg:SENDER\n  count\n"
                 "  delmsg:SENDER:SUBJECT\n  dump\n  logoff");
        break;
    case 1: {
        if (!known_user(field[0])) { putf(out, "ERROR: unknown recipient '%.40s'", field[0]); break; }
        add_mail(user, field[0], field[1], field[2], strlen(field[2]), (long)time(NULL));
        FILE *f = fopen(mail_path, "ab");
        int ok = f != NULL;
        if (f) { write_record(f, &mails[n_mails - 1]); ok = sync_file(f); fclose(f); }
        if (ok) say(out, "OK: Email Sent");
        else { n_mails--; say(out, "ERROR: storage failed, nothing was stored"); }
        break;
    }
    case 2:
        if (!known_user(field[0])) { putf(out, "ERROR: unknown user '%.40s'", field[0]); break; }
        listing(out, user, field[0]);
        break;
    case 3: {
        size_t k = 0;
        for (size_t i = 0; i < n_mails; i++) k += !strcmp(mails[i].rcpt, user);
        say(out, "OK: ");
        plural(out, k, "message");
        break;
    }
    case 4: {
        size_t k = 0, j = 0;
        for (size_t i = 0; i < n_mails; i++) {
            Mail *m = &mails[i];
            if (!strcmp(m->rcpt, user) && !strcmp(m->sender, field[0]) && !strcmp(m->subject, field[1])) k++;
            else mails[j++] = *m;
        }
        n_mails = j;
        if (!k) { say(out, "ERROR: no such message"); break; }
        rewrite_mail();
        say(out, "OK: ");
        plural(out, k, "message");
        say(out, " deleted");
        break;
    }
    case 5:
        listing(out, user, NULL);
        break;
    case 6:
        for (int i = 0; i < n_sessions; i++)
            if (!strcmp(sessions[i].id, sid)) sessions[i] = sessions[--n_sessions];
        say(out, "OK: Logged off");
        break;
    }
}

static void login(Buf *out, char *req, size_t n) {
    while (n && (req[n - 1] == '\n' || req[n - 1] == '\r')) req[--n] = 0;
    char *colon = strchr(req, ':');
    if (!colon) { say(out, "ERROR: expected USERNAME:PASSWORD"); return; }
    *colon = 0;
    for (int i = 0; i < n_users; i++) {
        if (strcmp(users[i].name, req) || strcmp(users[i].pw, colon + 1)) continue;
        unsigned char r[8];
        int fd = open("/dev/urandom", O_RDONLY);   /* not rand(): ids must not be guessable */
        if (fd < 0 || read(fd, r, sizeof r) != sizeof r) { say(out, "ERROR: no randomness"); return; }
        close(fd);
        unsigned long long v = 0;
        memcpy(&v, r, sizeof v);
        if (n_sessions == MAX_SESSIONS) n_sessions = 0;   /* the oldest sessions go */
        Session *s = &sessions[n_sessions++];
        snprintf(s->id, sizeof s->id, "%010llu", 1000000000ULL + v % 9000000000ULL);
        snprintf(s->user, sizeof s->user, "%.39s", req);
        putf(out, "OK:%s", s->id);
        return;
    }
    say(out, "KO: wrong username or password");
}

static void respond(Buf *out, Buf *req) {
    size_t n = framed_len(req);
    pthread_mutex_lock(&lock);
    if (n) {
        int v = verifies(req->p, n);
        if (v == 0) say(out, "KO");
        else if (v < 0) say(out, "ERROR: checksum in uppercase hex: send its 40 hex digits in lowercase");
        else if (!starts_with_session(req)) say(out, "ERROR: a frame starts with a 10-digit session id");
        else command(out, req->p, n);
    } else if (req->len > 41 && (req->p[req->len - 41] == '#') != is_hex40(req->p + req->len - 40)) {
        say(out, "KO");                                 /* a damaged '#' or checksum digit */
    } else if (starts_with_session(req)) {
        say(out, "ERROR: incomplete frame: it should end in '#' and a 40-digit checksum");
    } else {
        login(out, req->p, req->len);
    }
    pthread_mutex_unlock(&lock);
}

/* -- connections --------------------------------------------------------- */

static void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return;
        p += k; n -= k;
    }
}

static void *serve(void *arg) {
    int fd = (int)(long)arg, closed = 0;
    for (int attempt = 0; attempt < 2; attempt++) {      /* a request, and one resend after KO */
        Buf req = {0}, out = {0};
        if (read_request(fd, &req, &closed, attempt ? RESEND_MS : IDLE_MS) < 0) { free(req.p); break; }
        respond(&out, &req);
        send_all(fd, out.p, out.len);
        int again = out.len == 2 && !memcmp(out.p, "KO", 2) && !closed && attempt == 0;
        free(req.p); free(out.p);
        if (!again) break;
    }
    shutdown(fd, SHUT_WR);                             /* "that was all" */
    struct pollfd p = {fd, POLLIN, 0};                  /* let the client read before we close */
    char sink[4096];
    while (poll(&p, 1, 1000) > 0 && recv(fd, sink, sizeof sink, 0) > 0) {}
    close(fd);
    return NULL;
}

static void read_users(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); exit(2); }
    char line[256];
    while (n_users < MAX_USERS && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *colon = strchr(line, ':');
        if (!colon || line[0] == '#') continue;
        *colon = 0;
        snprintf(users[n_users].name, sizeof users[n_users].name, "%.39s", line);
        snprintf(users[n_users].pw, sizeof users[n_users].pw, "%.127s", colon + 1);
        n_users++;
    }
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s PORT USERS_FILE MAIL_FILE\n", argv[0]); return 2; }
    read_users(argv[2]);
    mail_path = argv[3];
    load_mail();
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 128) < 0) { perror("bind"); return 1; }
    printf("listening on 127.0.0.1:%s\n", argv[1]);
    fflush(stdout);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, serve, (void *)(long)c) != 0) close(c);
        pthread_attr_destroy(&attr);
    }
}
