/*
 * A small C client for cofferd, on libprotobuf-c and libsodium.
 *
 * Every call returns 0 on success or a status code numbered as gRPC's (COFFER_NOT_FOUND, ...) and fills
 * `err` with a message for people. Values handed back are zeroed when freed; tokens and values never go
 * into an error message.
 */
#ifndef COFFER_H
#define COFFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum coffer_code {
    COFFER_OK = 0,
    COFFER_CANCELLED = 1,
    COFFER_UNKNOWN = 2,
    COFFER_INVALID_ARGUMENT = 3,
    COFFER_DEADLINE_EXCEEDED = 4,
    COFFER_NOT_FOUND = 5,
    COFFER_ALREADY_EXISTS = 6,
    COFFER_PERMISSION_DENIED = 7,
    COFFER_RESOURCE_EXHAUSTED = 8,
    COFFER_FAILED_PRECONDITION = 9,
    COFFER_ABORTED = 10,
    COFFER_OUT_OF_RANGE = 11,
    COFFER_UNIMPLEMENTED = 12,
    COFFER_INTERNAL = 13,
    COFFER_UNAVAILABLE = 14,
    COFFER_DATA_LOSS = 15,
    COFFER_UNAUTHENTICATED = 16
};

#define COFFER_PUBLIC_KEY_BYTES 32
#define COFFER_KEY_ID_CHARS 16
/* The largest request this client sends (cofferd's default limit) and the largest response it reads. */
#define COFFER_MAX_REQUEST_SIZE (2u * 1024u * 1024u)
#define COFFER_MAX_FRAME_SIZE (64u * 1024u * 1024u)

typedef struct {
    int code;
    char message[512];
} coffer_error;

typedef struct coffer_conn coffer_conn;

/* One field of a connection, as got. */
typedef struct {
    char *name;
    unsigned char *value;
    size_t value_len;
    /* Non-zero for a public field (configuration such as a base URL); zero for a secret one, to mask in logs. */
    int is_public;
} coffer_field;

typedef struct {
    uint64_t version;
    size_t n_fields;
    coffer_field *fields;
    /* The version of the type the connection was written under; 0 for one stored before types (generic). */
    uint32_t type_version;
    /* The type's variant ("access-key", "token", ...); empty when type_version is 0. */
    char *variant;
} coffer_values;

/* One field to put or overwrite: the plaintext, which is sealed before it leaves the process. */
typedef struct {
    const char *name;
    const unsigned char *value;
    size_t value_len;
    /* Non-zero to send the field in clear: only for fields the connection's type declares public (a base URL,
     * a region, a username); cofferd refuses a secret field sent so. */
    int is_public;
} coffer_field_input;

/* Connects to cofferd's socket at `socket_path` and checks that cofferd listens there (its uid, from the kernel,
 * is COFFER_SERVER_UID, or without it the owner of the socket's directory, or root) before anything is sent;
 * reads and writes give up after `timeout_seconds`. */
int coffer_connect(const char *socket_path, int timeout_seconds, coffer_conn **out, coffer_error *err);
void coffer_close(coffer_conn *conn);

/* Gets a connection's values on the worker socket with a workflow token. Free with coffer_values_free. */
int coffer_get(coffer_conn *conn, const char *connection, const char *token, coffer_values *out,
               coffer_error *err);
/* Zeroes and frees the values. */
void coffer_values_free(coffer_values *values);

/* The public key values are sealed to, and its id (16 hex digits and a NUL). Admin socket. */
int coffer_get_public_key(coffer_conn *conn, unsigned char public_key[COFFER_PUBLIC_KEY_BYTES],
                          char key_id[COFFER_KEY_ID_CHARS + 1], coffer_error *err);

/* Seals each value with crypto_box_seal to cofferd's public key and creates the connection. Admin socket. */
int coffer_put(coffer_conn *conn, const char *connection, const coffer_field_input *fields, size_t n_fields,
               uint64_t *version, coffer_error *err);

/* The same, for a typed connection: `variant` names the type's variant (NULL for its default, or on an
 * overwrite the connection's own), and fields marked is_public travel in clear. */
int coffer_put_typed(coffer_conn *conn, const char *connection, const char *variant,
                     const coffer_field_input *fields, size_t n_fields, uint64_t *version, coffer_error *err);
int coffer_overwrite_typed(coffer_conn *conn, const char *connection, const char *variant,
                           const coffer_field_input *fields, size_t n_fields, uint64_t expected_version,
                           uint64_t *version, coffer_error *err);
/* Seals each value and replaces all of the connection's fields; with a non-zero `expected_version`, only if
 * the connection is at that version. Admin socket. */
int coffer_overwrite(coffer_conn *conn, const char *connection, const coffer_field_input *fields,
                     size_t n_fields, uint64_t expected_version, uint64_t *version, coffer_error *err);

/* The status code's name: "NOT_FOUND". */
const char *coffer_code_name(int code);

/* The exit status the command-line tools use for a status code (the same as the Swift `coffer`). */
int coffer_exit_status(int code);

#ifdef __cplusplus
}
#endif

#endif
