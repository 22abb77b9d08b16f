// Load client for the cold GetAppKey rows of `npm run bench` (bench/workers-scaling.ts): every
// request goes over a new TCP + TLS connection that presents a client certificate of its own, which
// is what one guest boot costs the KMS. wrk cannot present a client certificate, and the Node
// client costs ~2.3 ms of CPU per such request, taking a large share of the two cores the KMS
// worker needs; this client does the same handshake and request from C threads.
//
// usage: cold_client HOST PORT PATH BODY_FILE CREDENTIALS_FILE CONCURRENCY DURATION_MS MODE
//   CREDENTIALS_FILE  per credential: its PEM certificate chain (leaf first), then its PEM key
//   MODE              fresh: each credential used once, the run ends when they are used up
//                     cycle: credentials reused round-robin until DURATION_MS
//
// Every credential is parsed before the run. Then "ready <OpenSSL version>" is printed on stdout
// and the client waits for a line on stdin, so that the caller starts its CPU readings of the
// server when the requests start, not while the client parses PEM. At the end one JSON line goes
// to stdout: requests (answers with status 200), errors, firstError, elapsedMs, p50Ms, p99Ms,
// meanMs (null without answers), clientCpuMs (this process's user + system CPU over the run).
//
// Build: cc -O2 -std=c11 cold_client.c -o cold_client -lssl -lcrypto -lpthread

#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONCURRENCY 1024
#define ERROR_TEXT 320
// a hung server turns into an error instead of a run that never ends
#define SOCKET_TIMEOUT_S 30

struct credential {
  X509 *leaf;
  STACK_OF(X509) * chain;  // certificates after the leaf, in file order
  EVP_PKEY *key;
};

struct run {
  const struct addrinfo *addr;
  const char *sni;  // NULL for an IP literal: Node's client sends no SNI then either
  SSL_CTX *ctx;
  const char *request;
  size_t request_len;
  const struct credential *creds;
  size_t cred_count;
  int fresh;
  double deadline_ms;
  atomic_size_t next;  // the next credential to use
  pthread_mutex_t first_error_lock;
  char first_error[ERROR_TEXT];
  int has_first_error;
};

struct worker {
  pthread_t thread;
  struct run *run;
  double *latencies;
  size_t count;
  size_t cap;
  size_t errors;
};

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("cold_client: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(2);
}

// The oldest OpenSSL error of this thread, or `fallback` when the queue is empty.
static const char *openssl_error(char *buf, size_t len, const char *fallback) {
  unsigned long e = ERR_get_error();
  if (e == 0) return fallback;
  ERR_error_string_n(e, buf, len);
  ERR_clear_error();
  return buf;
}

static double now_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) die("clock_gettime: %s", strerror(errno));
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double cpu_ms(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) die("getrusage: %s", strerror(errno));
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) die("%s: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  if (buf == NULL) die("out of memory");
  for (;;) {
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (n < cap) break;
    cap *= 2;
    buf = realloc(buf, cap + 1);
    if (buf == NULL) die("out of memory");
  }
  if (ferror(f)) die("%s: read error", path);
  fclose(f);
  buf[n] = '\0';
  *len = n;
  return buf;
}

// Parses every credential up front: a credential is the certificates read since the previous key,
// closed by its key (the chain the Node client passes as `cert`, then `key`).
static struct credential *load_credentials(const char *path, size_t *count) {
  size_t len;
  char *text = read_file(path, &len);
  BIO *bio = BIO_new_mem_buf(text, (int)len);
  if (bio == NULL) die("BIO_new_mem_buf failed");
  size_t cap = 256, n = 0;
  struct credential *creds = malloc(cap * sizeof *creds);
  if (creds == NULL) die("out of memory");
  X509 *leaf = NULL;
  STACK_OF(X509) *chain = NULL;
  char err[ERROR_TEXT];
  for (;;) {
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
      unsigned long e = ERR_peek_last_error();
      // "no start line" at the end of the input is the normal end
      if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        break;
      }
      die("%s: %s", path, openssl_error(err, sizeof err, "PEM read failed"));
    }
    const unsigned char *p = data;
    if (strcmp(name, "CERTIFICATE") == 0) {
      X509 *x = d2i_X509(NULL, &p, dlen);
      if (x == NULL) die("%s: certificate %zu: %s", path, n, openssl_error(err, sizeof err, "?"));
      if (leaf == NULL) {
        leaf = x;
        chain = sk_X509_new_null();
        if (chain == NULL) die("out of memory");
      } else if (sk_X509_push(chain, x) <= 0) {
        die("out of memory");
      }
    } else if (strcmp(name, "PRIVATE KEY") == 0 || strcmp(name, "EC PRIVATE KEY") == 0) {
      if (leaf == NULL) die("%s: key %zu has no certificate before it", path, n);
      EVP_PKEY *key = d2i_AutoPrivateKey(NULL, &p, dlen);
      if (key == NULL) die("%s: key %zu: %s", path, n, openssl_error(err, sizeof err, "?"));
      if (X509_check_private_key(leaf, key) != 1) {
        die("%s: key %zu does not match its certificate", path, n);
      }
      if (n == cap) {
        cap *= 2;
        creds = realloc(creds, cap * sizeof *creds);
        if (creds == NULL) die("out of memory");
      }
      creds[n++] = (struct credential){.leaf = leaf, .chain = chain, .key = key};
      leaf = NULL;
      chain = NULL;
    } else {
      die("%s: unexpected PEM block %s", path, name);
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
  }
  if (leaf != NULL) die("%s: the last certificate has no key after it", path);
  if (n == 0) die("%s: no credentials", path);
  BIO_free(bio);
  free(text);
  *count = n;
  return creds;
}

static void free_credentials(struct credential *creds, size_t count) {
  for (size_t i = 0; i < count; i++) {
    X509_free(creds[i].leaf);
    sk_X509_pop_free(creds[i].chain, X509_free);
    EVP_PKEY_free(creds[i].key);
  }
  free(creds);
}

static void note_error(struct run *r, struct worker *w, const char *fmt, ...) {
  w->errors++;
  if (pthread_mutex_lock(&r->first_error_lock) != 0) die("pthread_mutex_lock failed");
  if (!r->has_first_error) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->first_error, sizeof r->first_error, fmt, ap);
    va_end(ap);
    r->has_first_error = 1;
  }
  if (pthread_mutex_unlock(&r->first_error_lock) != 0) die("pthread_mutex_unlock failed");
}

// Why an SSL call failed: the OpenSSL error, or errno for a socket error underneath.
static const char *ssl_failure(SSL *ssl, int ret, char *buf, size_t len) {
  int code = SSL_get_error(ssl, ret);
  if (code == SSL_ERROR_SYSCALL) {
    if (ERR_peek_error() != 0) return openssl_error(buf, len, "?");
    return errno != 0 ? strerror(errno) : "connection closed by the server";
  }
  if (code == SSL_ERROR_ZERO_RETURN) return "connection closed by the server";
  // on a blocking socket these mean SO_RCVTIMEO / SO_SNDTIMEO ran out
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
    snprintf(buf, len, "no progress for %d s", SOCKET_TIMEOUT_S);
    return buf;
  }
  snprintf(buf, len, "SSL error %d", code);
  return openssl_error(buf, len, buf);
}

// Replaces OpenSSL's chain building for the server's certificate: with SSL_VERIFY_NONE its result
// is ignored anyway (as the Node client's rejectUnauthorized: false ignores it), and skipping it
// keeps that work off the client. The server sees the same handshake.
static int accept_server_chain(X509_STORE_CTX *store, void *arg) {
  (void)store;
  (void)arg;
  return 1;
}

static int connect_tcp(const struct addrinfo *a, struct run *r, struct worker *w) {
  int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
  if (fd < 0) {
    note_error(r, w, "socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  struct timeval tv = {.tv_sec = SOCKET_TIMEOUT_S};
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
    note_error(r, w, "setsockopt: %s", strerror(errno));
    close(fd);
    return -1;
  }
  if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
    note_error(r, w, "connect: %s", strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

// The status code and the expected total length (head + Content-Length body; 0 when the answer
// has no Content-Length and ends with the connection), once the head is complete; -1 before.
static int parse_head(const char *buf, size_t n, int *status, size_t *total) {
  const char *end = NULL;
  for (size_t i = 3; i < n; i++) {
    if (buf[i - 3] == '\r' && buf[i - 2] == '\n' && buf[i - 1] == '\r' && buf[i] == '\n') {
      end = buf + i + 1;
      break;
    }
  }
  if (end == NULL) return -1;
  if (n < 12 || strncmp(buf, "HTTP/1.", 7) != 0) {
    *status = 0;
    return 0;
  }
  *status = atoi(buf + 9);
  *total = 0;
  for (const char *line = strstr(buf, "\r\n") + 2; line < end - 2;
       line = strstr(line, "\r\n") + 2) {
    if (strncasecmp(line, "content-length:", 15) == 0) {
      *total = (size_t)(end - buf) + (size_t)strtoull(line + 15, NULL, 10);
    }
  }
  return 0;
}

// One request on its own connection: the latency in ms, or a negative value after noting an error.
static double one_request(struct run *r, struct worker *w, const struct credential *c) {
  char err[ERROR_TEXT];
  double t0 = now_ms();
  int fd = connect_tcp(r->addr, r, w);
  if (fd < 0) return -1;
  double latency = -1;
  ERR_clear_error();
  SSL *ssl = SSL_new(r->ctx);
  if (ssl == NULL) {
    note_error(r, w, "SSL_new: %s", openssl_error(err, sizeof err, "?"));
    close(fd);
    return -1;
  }
  // what the Node client presents: the certificate, the chain after it, the key
  if (SSL_set_fd(ssl, fd) != 1 || SSL_use_certificate(ssl, c->leaf) != 1 ||
      SSL_use_PrivateKey(ssl, c->key) != 1) {
    note_error(r, w, "credential: %s", openssl_error(err, sizeof err, "?"));
    goto done;
  }
  for (int i = 0; i < sk_X509_num(c->chain); i++) {
    if (SSL_add1_chain_cert(ssl, sk_X509_value(c->chain, i)) != 1) {
      note_error(r, w, "chain: %s", openssl_error(err, sizeof err, "?"));
      goto done;
    }
  }
  if (r->sni != NULL && SSL_set_tlsext_host_name(ssl, r->sni) != 1) {
    note_error(r, w, "SNI: %s", openssl_error(err, sizeof err, "?"));
    goto done;
  }
  errno = 0;
  int ret = SSL_connect(ssl);
  if (ret != 1) {
    note_error(r, w, "TLS handshake: %s", ssl_failure(ssl, ret, err, sizeof err));
    goto done;
  }
  errno = 0;
  ret = SSL_write(ssl, r->request, (int)r->request_len);
  if (ret <= 0) {
    note_error(r, w, "write: %s", ssl_failure(ssl, ret, err, sizeof err));
    goto done;
  }
  char buf[16384];
  size_t n = 0, total = 0;
  int status = -1;
  for (;;) {
    if (status >= 0 && total > 0 && n >= total) break;
    if (n == sizeof buf - 1) {
      note_error(r, w, "answer larger than %zu bytes", sizeof buf - 1);
      goto done;
    }
    errno = 0;
    ret = SSL_read(ssl, buf + n, (int)(sizeof buf - 1 - n));
    if (ret <= 0) {
      // an answer without Content-Length ends with the connection
      if (status >= 0 && total == 0 && SSL_get_error(ssl, ret) == SSL_ERROR_ZERO_RETURN) break;
      note_error(r, w, "read: %s", ssl_failure(ssl, ret, err, sizeof err));
      goto done;
    }
    n += (size_t)ret;
    buf[n] = '\0';
    if (status < 0 && parse_head(buf, n, &status, &total) == 0 && status == 0) {
      note_error(r, w, "not an HTTP answer: %.80s", buf);
      goto done;
    }
  }
  double t1 = now_ms();
  if (status != 200) {
    const char *body = strstr(buf, "\r\n\r\n");
    note_error(r, w, "HTTP %d: %.200s", status, body == NULL ? "" : body + 4);
    goto done;
  }
  latency = t1 - t0;
  // Close as the Node client does after a `Connection: close` answer: our close_notify, then
  // the server's, so that neither side sees a reset. Failures here do not change the answer.
  if (SSL_shutdown(ssl) == 0) SSL_shutdown(ssl);
  ERR_clear_error();
done:
  SSL_free(ssl);
  close(fd);
  return latency;
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct run *r = w->run;
  while (now_ms() < r->deadline_ms) {
    size_t i = atomic_fetch_add(&r->next, 1);
    if (r->fresh && i >= r->cred_count) break;
    double latency = one_request(r, w, &r->creds[i % r->cred_count]);
    if (latency < 0) continue;
    if (w->count == w->cap) {
      w->cap = w->cap == 0 ? 1024 : w->cap * 2;
      w->latencies = realloc(w->latencies, w->cap * sizeof *w->latencies);
      if (w->latencies == NULL) die("out of memory");
    }
    w->latencies[w->count++] = latency;
  }
  return NULL;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// the same rank as bench/load.ts percentile()
static double percentile(const double *sorted, size_t n, double p) {
  double rank = p / 100 * (double)n;
  size_t idx = (size_t)rank;
  if ((double)idx < rank) idx++;
  idx = idx == 0 ? 0 : idx - 1;
  return sorted[idx < n ? idx : n - 1];
}

static void print_json_string(const char *s) {
  putchar('"');
  for (; *s != '\0'; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      printf("\\%c", ch);
    } else if (ch < 0x20) {
      printf("\\u%04x", ch);
    } else {
      putchar(ch);
    }
  }
  putchar('"');
}

static long parse_long(const char *s, const char *what, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || end == s || v < min || v > max) {
    die("%s must be an integer in [%ld, %ld], got \"%s\"", what, min, max, s);
  }
  return v;
}

int main(int argc, char **argv) {
  if (argc != 9) {
    die("usage: cold_client HOST PORT PATH BODY_FILE CREDENTIALS_FILE CONCURRENCY DURATION_MS "
        "fresh|cycle");
  }
  const char *host = argv[1], *port = argv[2], *path = argv[3];
  parse_long(port, "PORT", 1, 65535);
  long concurrency = parse_long(argv[6], "CONCURRENCY", 1, MAX_CONCURRENCY);
  long duration = parse_long(argv[7], "DURATION_MS", 1, 86400000L);
  int fresh = strcmp(argv[8], "fresh") == 0;
  if (!fresh && strcmp(argv[8], "cycle") != 0) die("MODE must be fresh or cycle");

  // a write to a connection the server has closed must be an error, not the end of the process
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) die("signal: %s", strerror(errno));

  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo *addr;
  int gai = getaddrinfo(host, port, &hints, &addr);
  if (gai != 0) die("%s: %s", host, gai_strerror(gai));
  unsigned char ip[sizeof(struct in6_addr)];
  int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;

  size_t body_len;
  char *body = read_file(argv[4], &body_len);
  size_t cap = strlen(path) + strlen(host) + strlen(port) + body_len + 256;
  char *request = malloc(cap);
  if (request == NULL) die("out of memory");
  // the headers the Node client sends (no Content-Type: guests send none)
  int head = snprintf(request, cap,
                      "POST %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      path, strchr(host, ':') != NULL ? "[" : "", host,
                      strchr(host, ':') != NULL ? "]" : "", port, body_len);
  if (head < 0 || (size_t)head + body_len >= cap) die("request too long");
  memcpy(request + head, body, body_len);

  char err[ERROR_TEXT];
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) die("SSL_CTX_new: %s", openssl_error(err, sizeof err, "?"));
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    die("SSL_CTX_set_min_proto_version: %s", openssl_error(err, sizeof err, "?"));
  }
  // like the Node client's rejectUnauthorized: false; no session is ever resumed (a guest boots
  // once per certificate)
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_cert_verify_callback(ctx, accept_server_chain, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

  size_t cred_count;
  struct credential *creds = load_credentials(argv[5], &cred_count);

  struct run r = {
      .addr = addr,
      .sni = is_ip ? NULL : host,
      .ctx = ctx,
      .request = request,
      .request_len = (size_t)head + body_len,
      .creds = creds,
      .cred_count = cred_count,
      .fresh = fresh,
  };
  atomic_init(&r.next, 0);
  if (pthread_mutex_init(&r.first_error_lock, NULL) != 0) die("pthread_mutex_init failed");

  if (printf("ready %s\n", OpenSSL_version(OPENSSL_VERSION)) < 0 || fflush(stdout) != 0) {
    die("stdout: %s", strerror(errno));
  }
  char go[16];
  if (fgets(go, sizeof go, stdin) == NULL) die("stdin closed before the start");

  struct worker *workers = calloc((size_t)concurrency, sizeof *workers);
  if (workers == NULL) die("out of memory");
  double cpu0 = cpu_ms();
  double start = now_ms();
  r.deadline_ms = start + (double)duration;
  for (long i = 0; i < concurrency; i++) {
    workers[i].run = &r;
    int e = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
    if (e != 0) die("pthread_create: %s", strerror(e));
  }
  size_t requests = 0, errors = 0;
  for (long i = 0; i < concurrency; i++) {
    int e = pthread_join(workers[i].thread, NULL);
    if (e != 0) die("pthread_join: %s", strerror(e));
    requests += workers[i].count;
    errors += workers[i].errors;
  }
  double elapsed = now_ms() - start;
  double cpu = cpu_ms() - cpu0;

  double *all = malloc((requests == 0 ? 1 : requests) * sizeof *all);
  if (all == NULL) die("out of memory");
  double sum = 0;
  for (long i = 0, k = 0; i < concurrency; i++) {
    for (size_t j = 0; j < workers[i].count; j++) {
      all[k++] = workers[i].latencies[j];
      sum += workers[i].latencies[j];
    }
    free(workers[i].latencies);
  }
  qsort(all, requests, sizeof *all, by_value);

  printf("{\"requests\":%zu,\"errors\":%zu,\"firstError\":", requests, errors);
  if (r.has_first_error) {
    print_json_string(r.first_error);
  } else {
    fputs("null", stdout);
  }
  printf(",\"elapsedMs\":%.3f,\"clientCpuMs\":%.3f", elapsed, cpu);
  if (requests == 0) {
    fputs(",\"p50Ms\":null,\"p99Ms\":null,\"meanMs\":null}\n", stdout);
  } else {
    printf(",\"p50Ms\":%.3f,\"p99Ms\":%.3f,\"meanMs\":%.3f}\n", percentile(all, requests, 50),
           percentile(all, requests, 99), sum / (double)requests);
  }
  if (fflush(stdout) != 0) die("stdout: %s", strerror(errno));

  free(all);
  free(workers);
  free_credentials(creds, cred_count);
  SSL_CTX_free(ctx);
  freeaddrinfo(addr);
  free(request);
  free(body);
  pthread_mutex_destroy(&r.first_error_lock);
  return 0;
}
