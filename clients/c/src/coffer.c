#define _GNU_SOURCE
#include "coffer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "coffer/v1/coffer.pb-c.h"

struct coffer_conn {
    int fd;
    uint64_t next_id;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static int fail(coffer_error *err, int code, const char *format, ...) __attribute__((format(printf, 3, 4)));

static int fail(coffer_error *err, int code, const char *format, ...) {
    if (err != NULL) {
        va_list args;
        va_start(args, format);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, format, args);
        va_end(args);
    }
    return code;
}

const char *coffer_code_name(int code) {
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    };
    if (code < 0 || code >= (int)(sizeof names / sizeof names[0])) {
        return "UNKNOWN";
    }
    return names[code];
}

int coffer_exit_status(int code) {
    switch (code) {
    case COFFER_OK: return 0;
    case COFFER_INVALID_ARGUMENT: return 2;
    case COFFER_NOT_FOUND: return 3;
    case COFFER_ALREADY_EXISTS: return 4;
    case COFFER_PERMISSION_DENIED: return 5;
    case COFFER_UNAUTHENTICATED: return 6;
    case COFFER_FAILED_PRECONDITION: return 7;
    case COFFER_RESOURCE_EXHAUSTED: return 8;
    case COFFER_UNAVAILABLE: return 9;
    case COFFER_DATA_LOSS: return 10;
    case COFFER_DEADLINE_EXCEEDED: return 11;
    default: return 1;
    }
}

/* Before anything is sent: the listener's uid, from the kernel (SO_PEERCRED), must be COFFER_SERVER_UID, or
 * without it the owner of the socket's directory; root is always taken. An impostor bound in a directory others
 * can write never sees a token or a sealed value. */
static int verify_server(int fd, const char *socket_path, coffer_error *err) {
    struct ucred peer;
    socklen_t length = sizeof peer;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0) {
        return fail(err, COFFER_UNAVAILABLE, "cannot learn who listens on %s: %s", socket_path, strerror(errno));
    }
    if (peer.uid == 0) {
        return COFFER_OK;
    }
    const char *configured = getenv("COFFER_SERVER_UID");
    unsigned long expected;
    char source[sizeof(((struct sockaddr_un *)0)->sun_path) + 32];
    if (configured != NULL && configured[0] != '\0') {
        char *end = NULL;
        errno = 0;
        expected = strtoul(configured, &end, 10);
        if (errno != 0 || *end != '\0' || configured[0] < '0' || configured[0] > '9') {
            return fail(err, COFFER_INVALID_ARGUMENT, "COFFER_SERVER_UID must be a numeric uid");
        }
        snprintf(source, sizeof source, "COFFER_SERVER_UID");
    } else {
        char copy[sizeof(((struct sockaddr_un *)0)->sun_path)];
        snprintf(copy, sizeof copy, "%s", socket_path);
        const char *directory = dirname(copy);
        struct stat info;
        if (stat(directory, &info) != 0) {
            return fail(err, COFFER_UNAVAILABLE, "cannot read %s: %s", directory, strerror(errno));
        }
        expected = info.st_uid;
        snprintf(source, sizeof source, "the owner of %s", directory);
    }
    if ((unsigned long)peer.uid != expected) {
        return fail(err, COFFER_FAILED_PRECONDITION,
                    "the process listening on %s runs as uid %lu, not %lu (%s): it is not cofferd, or cofferd runs as "
                    "another user (then set COFFER_SERVER_UID); nothing was sent to it",
                    socket_path, (unsigned long)peer.uid, expected, source);
    }
    return COFFER_OK;
}

int coffer_connect(const char *socket_path, int timeout_seconds, coffer_conn **out, coffer_error *err) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    size_t length = strlen(socket_path);
    if (length == 0 || length >= sizeof address.sun_path) {
        return fail(err, COFFER_INVALID_ARGUMENT, "socket path %s is empty or longer than %zu bytes", socket_path,
                    sizeof address.sun_path - 1);
    }
    memcpy(address.sun_path, socket_path, length);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return fail(err, COFFER_UNAVAILABLE, "cannot create a socket: %s", strerror(errno));
    }
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        int saved = errno;
        close(fd);
        if (saved == EACCES || saved == EPERM) {
            return fail(err, COFFER_PERMISSION_DENIED, "cannot connect to cofferd at %s: permission denied",
                        socket_path);
        }
        return fail(err, COFFER_UNAVAILABLE, "cannot connect to cofferd at %s: %s; is cofferd running?",
                    socket_path, strerror(saved));
    }
    int verified = verify_server(fd, socket_path, err);
    if (verified != COFFER_OK) {
        close(fd);
        return verified;
    }
    struct timeval timeout = {.tv_sec = timeout_seconds > 0 ? timeout_seconds : 30, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    coffer_conn *conn = calloc(1, sizeof *conn);
    if (conn == NULL) {
        close(fd);
        return fail(err, COFFER_INTERNAL, "out of memory");
    }
    conn->fd = fd;
    conn->next_id = 1;
    memcpy(conn->path, socket_path, length);
    *out = conn;
    return COFFER_OK;
}

void coffer_close(coffer_conn *conn) {
    if (conn == NULL) {
        return;
    }
    close(conn->fd);
    free(conn);
}

static int transport_error(coffer_conn *conn, const char *what, int saved, coffer_error *err) {
    if (saved == EAGAIN || saved == EWOULDBLOCK) {
        return fail(err, COFFER_DEADLINE_EXCEEDED, "cofferd did not answer in time");
    }
    return fail(err, COFFER_UNAVAILABLE, "cannot %s on %s: %s", what, conn->path, strerror(saved));
}

static int write_all(coffer_conn *conn, const uint8_t *bytes, size_t length, coffer_error *err) {
    size_t written = 0;
    while (written < length) {
        ssize_t n = send(conn->fd, bytes + written, length - written, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return transport_error(conn, "write", errno, err);
        }
        written += (size_t)n;
    }
    return COFFER_OK;
}

static int read_all(coffer_conn *conn, uint8_t *bytes, size_t length, coffer_error *err) {
    size_t got = 0;
    while (got < length) {
        ssize_t n = recv(conn->fd, bytes + got, length - got, 0);
        if (n == 0) {
            return fail(err, COFFER_UNAVAILABLE, "cofferd closed the connection");
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return transport_error(conn, "read", errno, err);
        }
        got += (size_t)n;
    }
    return COFFER_OK;
}

/* Sends one request (its id assigned here) and reads its response, checking the id. The packed request
 * and the response's bytes are zeroed before they are freed: they may hold a token or values. */
static int call(coffer_conn *conn, Coffer__V1__Request *request, Coffer__V1__Response **out, coffer_error *err) {
    request->id = conn->next_id++;
    size_t body = coffer__v1__request__get_packed_size(request);
    if (body > COFFER_MAX_REQUEST_SIZE) {
        return fail(err, COFFER_INVALID_ARGUMENT, "the request is larger than %u bytes", COFFER_MAX_REQUEST_SIZE);
    }
    uint8_t *frame = malloc(body + 10);
    if (frame == NULL) {
        return fail(err, COFFER_INTERNAL, "out of memory");
    }
    size_t prefix = 0;
    for (uint64_t rest = body;; rest >>= 7) {
        uint8_t byte = rest & 0x7f;
        if (rest >> 7) {
            frame[prefix++] = byte | 0x80;
        } else {
            frame[prefix++] = byte;
            break;
        }
    }
    coffer__v1__request__pack(request, frame + prefix);
    int status = write_all(conn, frame, prefix + body, err);
    sodium_memzero(frame, prefix + body);
    free(frame);
    if (status != COFFER_OK) {
        return status;
    }

    uint64_t length = 0;
    for (int shift = 0;; shift += 7) {
        uint8_t byte;
        if ((status = read_all(conn, &byte, 1, err)) != COFFER_OK) {
            return status;
        }
        if (shift > 63) {
            return fail(err, COFFER_INTERNAL, "cofferd sent a malformed frame length");
        }
        length |= (uint64_t)(byte & 0x7f) << shift;
        if (length > COFFER_MAX_FRAME_SIZE) {
            return fail(err, COFFER_INTERNAL, "cofferd sent a frame over %u bytes", COFFER_MAX_FRAME_SIZE);
        }
        if (!(byte & 0x80)) {
            break;
        }
    }
    uint8_t *bytes = malloc(length > 0 ? length : 1);
    if (bytes == NULL) {
        return fail(err, COFFER_INTERNAL, "out of memory");
    }
    if ((status = read_all(conn, bytes, length, err)) != COFFER_OK) {
        free(bytes);
        return status;
    }
    Coffer__V1__Response *response = coffer__v1__response__unpack(NULL, length, bytes);
    sodium_memzero(bytes, length);
    free(bytes);
    if (response == NULL) {
        return fail(err, COFFER_INTERNAL, "cofferd sent a response that is not a coffer.v1.Response");
    }
    int code = response->status != NULL ? (int)response->status->code : COFFER_OK;
    if (code != COFFER_OK) {
        const char *message = response->status->message != NULL ? response->status->message : "";
        fail(err, code, "%s", message[0] != '\0' ? message : coffer_code_name(code));
        coffer__v1__response__free_unpacked(response, NULL);
        return code;
    }
    if (response->id != request->id) {
        coffer__v1__response__free_unpacked(response, NULL);
        return fail(err, COFFER_INTERNAL, "cofferd answered another request");
    }
    *out = response;
    return COFFER_OK;
}

int coffer_get(coffer_conn *conn, const char *connection, const char *token, coffer_values *out,
               coffer_error *err) {
    memset(out, 0, sizeof *out);
    Coffer__V1__GetRequest get = COFFER__V1__GET_REQUEST__INIT;
    get.connection = (char *)connection;
    get.token = (char *)token;
    Coffer__V1__Request request = COFFER__V1__REQUEST__INIT;
    request.operation_case = COFFER__V1__REQUEST__OPERATION_GET;
    request.get = &get;
    Coffer__V1__Response *response = NULL;
    int status = call(conn, &request, &response, err);
    if (status != COFFER_OK) {
        return status;
    }
    if (response->result_case != COFFER__V1__RESPONSE__RESULT_GET || response->get == NULL) {
        coffer__v1__response__free_unpacked(response, NULL);
        return fail(err, COFFER_INTERNAL, "cofferd answered with a result of another operation");
    }
    Coffer__V1__GetResponse *result = response->get;
    out->version = result->version;
    out->type_version = result->type_version;
    out->variant = strdup(result->variant != NULL ? result->variant : "");
    out->fields = calloc(result->n_fields > 0 ? result->n_fields : 1, sizeof *out->fields);
    if (out->fields == NULL) {
        coffer__v1__response__free_unpacked(response, NULL);
        return fail(err, COFFER_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < result->n_fields; i++) {
        Coffer__V1__Field *field = result->fields[i];
        coffer_field *copy = &out->fields[out->n_fields++];
        copy->name = strdup(field->name != NULL ? field->name : "");
        copy->value = malloc(field->value.len + 1);
        if (copy->name == NULL || copy->value == NULL) {
            coffer_values_free(out);
            coffer__v1__response__free_unpacked(response, NULL);
            return fail(err, COFFER_INTERNAL, "out of memory");
        }
        if (field->value.len > 0) {
            memcpy(copy->value, field->value.data, field->value.len);
            sodium_memzero(field->value.data, field->value.len);
        }
        copy->value[field->value.len] = '\0';
        copy->value_len = field->value.len;
        copy->is_public = field->public_;
    }
    coffer__v1__response__free_unpacked(response, NULL);
    return COFFER_OK;
}

void coffer_values_free(coffer_values *values) {
    if (values == NULL) {
        return;
    }
    free(values->variant);
    values->variant = NULL;
    if (values->fields == NULL) {
        return;
    }
    for (size_t i = 0; i < values->n_fields; i++) {
        free(values->fields[i].name);
        if (values->fields[i].value != NULL) {
            sodium_memzero(values->fields[i].value, values->fields[i].value_len);
            free(values->fields[i].value);
        }
    }
    free(values->fields);
    memset(values, 0, sizeof *values);
}

int coffer_get_public_key(coffer_conn *conn, unsigned char public_key[COFFER_PUBLIC_KEY_BYTES],
                          char key_id[COFFER_KEY_ID_CHARS + 1], coffer_error *err) {
    Coffer__V1__GetPublicKeyRequest get = COFFER__V1__GET_PUBLIC_KEY_REQUEST__INIT;
    Coffer__V1__Request request = COFFER__V1__REQUEST__INIT;
    request.operation_case = COFFER__V1__REQUEST__OPERATION_GET_PUBLIC_KEY;
    request.get_public_key = &get;
    Coffer__V1__Response *response = NULL;
    int status = call(conn, &request, &response, err);
    if (status != COFFER_OK) {
        return status;
    }
    Coffer__V1__GetPublicKeyResponse *result = response->get_public_key;
    if (response->result_case != COFFER__V1__RESPONSE__RESULT_GET_PUBLIC_KEY || result == NULL ||
        result->public_key.len != COFFER_PUBLIC_KEY_BYTES || result->key_id == NULL ||
        strlen(result->key_id) != COFFER_KEY_ID_CHARS) {
        coffer__v1__response__free_unpacked(response, NULL);
        return fail(err, COFFER_INTERNAL, "cofferd sent a malformed public key");
    }
    memcpy(public_key, result->public_key.data, COFFER_PUBLIC_KEY_BYTES);
    memcpy(key_id, result->key_id, COFFER_KEY_ID_CHARS + 1);
    coffer__v1__response__free_unpacked(response, NULL);
    return COFFER_OK;
}

/* Seals every field to cofferd's public key. On success the caller frees `sealed` with free_sealed. */
static int seal_fields(coffer_conn *conn, const coffer_field_input *fields, size_t n_fields,
                       Coffer__V1__SealedField **sealed, Coffer__V1__SealedField ***pointers,
                       char key_id[COFFER_KEY_ID_CHARS + 1], coffer_error *err) {
    unsigned char public_key[COFFER_PUBLIC_KEY_BYTES];
    int status = coffer_get_public_key(conn, public_key, key_id, err);
    if (status != COFFER_OK) {
        return status;
    }
    *sealed = calloc(n_fields > 0 ? n_fields : 1, sizeof **sealed);
    *pointers = calloc(n_fields > 0 ? n_fields : 1, sizeof **pointers);
    if (*sealed == NULL || *pointers == NULL) {
        free(*sealed);
        free(*pointers);
        return fail(err, COFFER_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < n_fields; i++) {
        Coffer__V1__SealedField *field = &(*sealed)[i];
        coffer__v1__sealed_field__init(field);
        field->name = (char *)fields[i].name;
        field->sealed_value.len = fields[i].value_len + crypto_box_sealbytes();
        field->sealed_value.data = malloc(field->sealed_value.len);
        if (field->sealed_value.data == NULL ||
            crypto_box_seal(field->sealed_value.data, fields[i].value, fields[i].value_len, public_key) != 0) {
            for (size_t j = 0; j <= i; j++) {
                free((*sealed)[j].sealed_value.data);
            }
            free(*sealed);
            free(*pointers);
            return fail(err, COFFER_INTERNAL, "crypto_box_seal failed");
        }
        (*pointers)[i] = field;
    }
    return COFFER_OK;
}

static void free_sealed(Coffer__V1__SealedField *sealed, Coffer__V1__SealedField **pointers, size_t n_fields) {
    for (size_t i = 0; i < n_fields; i++) {
        free(sealed[i].sealed_value.data);
    }
    free(sealed);
    free(pointers);
}

static int write_connection(coffer_conn *conn, const char *connection, const char *variant,
                            const coffer_field_input *fields, size_t n_fields, int overwrite,
                            uint64_t expected_version, uint64_t *version, coffer_error *err) {
    if (sodium_init() < 0) {
        return fail(err, COFFER_INTERNAL, "libsodium could not be initialised");
    }
    /* Secret fields are sealed; public ones travel in clear. */
    coffer_field_input *secret = calloc(n_fields > 0 ? n_fields : 1, sizeof *secret);
    Coffer__V1__PublicField *clear = calloc(n_fields > 0 ? n_fields : 1, sizeof *clear);
    Coffer__V1__PublicField **clear_pointers = calloc(n_fields > 0 ? n_fields : 1, sizeof *clear_pointers);
    if (secret == NULL || clear == NULL || clear_pointers == NULL) {
        free(secret);
        free(clear);
        free(clear_pointers);
        return fail(err, COFFER_INTERNAL, "out of memory");
    }
    size_t n_secret = 0, n_clear = 0;
    char **clear_values = calloc(n_fields > 0 ? n_fields : 1, sizeof *clear_values);
    int status = clear_values == NULL ? fail(err, COFFER_INTERNAL, "out of memory") : COFFER_OK;
    for (size_t i = 0; i < n_fields && status == COFFER_OK; i++) {
        if (!fields[i].is_public) {
            secret[n_secret++] = fields[i];
            continue;
        }
        if (memchr(fields[i].value, '\0', fields[i].value_len) != NULL) {
            status = fail(err, COFFER_INVALID_ARGUMENT, "a public field holds a NUL byte");
            break;
        }
        clear_values[n_clear] = strndup((const char *)fields[i].value, fields[i].value_len);
        if (clear_values[n_clear] == NULL) {
            status = fail(err, COFFER_INTERNAL, "out of memory");
            break;
        }
        coffer__v1__public_field__init(&clear[n_clear]);
        clear[n_clear].name = (char *)fields[i].name;
        clear[n_clear].value = clear_values[n_clear];
        clear_pointers[n_clear] = &clear[n_clear];
        n_clear++;
    }
    Coffer__V1__SealedField *sealed = NULL;
    Coffer__V1__SealedField **pointers = NULL;
    char key_id[COFFER_KEY_ID_CHARS + 1] = "";
    if (status == COFFER_OK) {
        status = seal_fields(conn, secret, n_secret, &sealed, &pointers, key_id, err);
    }
    Coffer__V1__Response *response = NULL;
    if (status == COFFER_OK) {
        Coffer__V1__Request request = COFFER__V1__REQUEST__INIT;
        Coffer__V1__PutRequest put = COFFER__V1__PUT_REQUEST__INIT;
        Coffer__V1__OverwriteRequest replace = COFFER__V1__OVERWRITE_REQUEST__INIT;
        if (overwrite) {
            replace.connection = (char *)connection;
            replace.key_id = key_id;
            replace.n_fields = n_secret;
            replace.fields = pointers;
            replace.n_public_fields = n_clear;
            replace.public_fields = clear_pointers;
            replace.variant = (char *)(variant != NULL ? variant : "");
            replace.expected_version = expected_version;
            request.operation_case = COFFER__V1__REQUEST__OPERATION_OVERWRITE;
            request.overwrite = &replace;
        } else {
            put.connection = (char *)connection;
            put.key_id = key_id;
            put.n_fields = n_secret;
            put.fields = pointers;
            put.n_public_fields = n_clear;
            put.public_fields = clear_pointers;
            put.variant = (char *)(variant != NULL ? variant : "");
            request.operation_case = COFFER__V1__REQUEST__OPERATION_PUT;
            request.put = &put;
        }
        status = call(conn, &request, &response, err);
        free_sealed(sealed, pointers, n_secret);
    }
    for (size_t i = 0; i < n_clear; i++) {
        free(clear_values[i]);
    }
    free(clear_values);
    free(clear);
    free(clear_pointers);
    free(secret);
    if (status != COFFER_OK) {
        return status;
    }
    Coffer__V1__ConnectionInfo *info = NULL;
    if (overwrite && response->result_case == COFFER__V1__RESPONSE__RESULT_OVERWRITE && response->overwrite) {
        info = response->overwrite->connection;
    } else if (!overwrite && response->result_case == COFFER__V1__RESPONSE__RESULT_PUT && response->put) {
        info = response->put->connection;
    }
    if (info == NULL) {
        coffer__v1__response__free_unpacked(response, NULL);
        return fail(err, COFFER_INTERNAL, "cofferd answered with a result of another operation");
    }
    if (version != NULL) {
        *version = info->version;
    }
    coffer__v1__response__free_unpacked(response, NULL);
    return COFFER_OK;
}

int coffer_put(coffer_conn *conn, const char *connection, const coffer_field_input *fields, size_t n_fields,
               uint64_t *version, coffer_error *err) {
    return write_connection(conn, connection, NULL, fields, n_fields, 0, 0, version, err);
}

int coffer_put_typed(coffer_conn *conn, const char *connection, const char *variant,
                     const coffer_field_input *fields, size_t n_fields, uint64_t *version, coffer_error *err) {
    return write_connection(conn, connection, variant, fields, n_fields, 0, 0, version, err);
}

int coffer_overwrite_typed(coffer_conn *conn, const char *connection, const char *variant,
                           const coffer_field_input *fields, size_t n_fields, uint64_t expected_version,
                           uint64_t *version, coffer_error *err) {
    return write_connection(conn, connection, variant, fields, n_fields, 1, expected_version, version, err);
}

int coffer_overwrite(coffer_conn *conn, const char *connection, const coffer_field_input *fields,
                     size_t n_fields, uint64_t expected_version, uint64_t *version, coffer_error *err) {
    return write_connection(conn, connection, NULL, fields, n_fields, 1, expected_version, version, err);
}
