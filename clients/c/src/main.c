/*
 * coffer-c: get a connection's values on cofferd's worker socket, or put and overwrite one on the admin
 * socket, from C.
 *
 *   coffer-c get TYPE/NAME [--field NAME]            token from COFFER_TOKEN
 *   coffer-c put TYPE/NAME [--variant V] [--public NAME]... [--field-file NAME=PATH]...
 *   coffer-c overwrite TYPE/NAME [--variant V] [--public NAME]... [--expect-version N] [--field-file NAME=PATH]...
 *
 * Without --field-file, put and overwrite read NAME=VALUE lines on stdin (a value runs to the end of its
 * line). --public names a field the connection's type declares public (a base URL, a region), sent in clear;
 * every other field is sealed. get prints the connection typed: its type, variant, fields and which are secret. Sockets come from --admin-socket and --worker-socket, or COFFER_ADMIN_SOCKET and
 * COFFER_WORKER_SOCKET, or /run/coffer/{admin,worker}.sock. Values are never taken from argv.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "coffer.h"

#define USAGE_EXIT 64
#define MAX_FIELDS 64
#define COFFER_MAX_INPUT (8u * 1024u * 1024u)

static void usage(void) {
    fputs("usage: coffer-c get TYPE/NAME [--field NAME] [--worker-socket PATH]\n"
          "       coffer-c put TYPE/NAME [--variant V] [--public NAME]... [--field-file NAME=PATH]... [--admin-socket PATH]\n"
          "       coffer-c overwrite TYPE/NAME [--variant V] [--public NAME]... [--expect-version N]\n"
          "                [--field-file NAME=PATH]... [--admin-socket PATH]\n"
          "put and overwrite read NAME=VALUE lines on stdin unless --field-file is given;\n"
          "get reads the workflow token from COFFER_TOKEN.\n",
          stderr);
}

static int report(const coffer_error *err) {
    fprintf(stderr, "coffer-c: error: %s (%s)\n", err->message, coffer_code_name(err->code));
    if (err->code == COFFER_UNAVAILABLE) {
        fputs("coffer-c: hint: start cofferd, or point COFFER_ADMIN_SOCKET / COFFER_WORKER_SOCKET at its sockets\n",
              stderr);
    }
    return coffer_exit_status(err->code);
}

static int usage_error(const char *message) {
    fprintf(stderr, "coffer-c: error: %s\n", message);
    usage();
    return USAGE_EXIT;
}

static const char *socket_path(const char *given, const char *variable, const char *fallback) {
    if (given != NULL) {
        return given;
    }
    const char *from_environment = getenv(variable);
    return from_environment != NULL && from_environment[0] != '\0' ? from_environment : fallback;
}

/* Prints `bytes` as a JSON string. */
static void print_json_string(const unsigned char *bytes, size_t length) {
    putchar('"');
    for (size_t i = 0; i < length; i++) {
        unsigned char c = bytes[i];
        switch (c) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (c < 0x20) {
                printf("\\u%04x", c);
            } else {
                putchar(c);
            }
        }
    }
    putchar('"');
}

static int run_get(const char *connection, const char *field, const char *socket) {
    const char *token = getenv("COFFER_TOKEN");
    if (token == NULL || token[0] == '\0') {
        coffer_error err = {.code = COFFER_UNAUTHENTICATED};
        snprintf(err.message, sizeof err.message, "no workflow token: set COFFER_TOKEN");
        return report(&err);
    }
    coffer_error err;
    coffer_conn *conn = NULL;
    if (coffer_connect(socket, 30, &conn, &err) != COFFER_OK) {
        return report(&err);
    }
    coffer_values values;
    int status = coffer_get(conn, connection, token, &values, &err);
    coffer_close(conn);
    if (status != COFFER_OK) {
        return report(&err);
    }
    int exit_status = 0;
    if (field != NULL) {
        size_t i = 0;
        while (i < values.n_fields && strcmp(values.fields[i].name, field) != 0) {
            i++;
        }
        if (i == values.n_fields) {
            err.code = COFFER_NOT_FOUND;
            snprintf(err.message, sizeof err.message, "connection %s has no field %s", connection, field);
            exit_status = report(&err);
        } else {
            fwrite(values.fields[i].value, 1, values.fields[i].value_len, stdout);
        }
    } else {
        /* The connection typed, as the Swift coffer prints it. */
        size_t type_length = strcspn(connection, "/");
        fputs("{\"connection\":", stdout);
        print_json_string((const unsigned char *)connection, strlen(connection));
        fputs(",\"type\":", stdout);
        if (values.type_version > 0) {
            print_json_string((const unsigned char *)connection, type_length);
        } else {
            fputs("\"generic\"", stdout);
        }
        fputs(",\"variant\":", stdout);
        const char *variant = values.variant != NULL && values.variant[0] != '\0' ? values.variant : "default";
        print_json_string((const unsigned char *)variant, strlen(variant));
        printf(",\"version\":%llu,\"fields\":{", (unsigned long long)values.version);
        for (size_t i = 0; i < values.n_fields; i++) {
            if (i > 0) {
                putchar(',');
            }
            print_json_string((const unsigned char *)values.fields[i].name, strlen(values.fields[i].name));
            putchar(':');
            print_json_string(values.fields[i].value, values.fields[i].value_len);
        }
        fputs("},\"secret\":[", stdout);
        int first = 1;
        for (size_t i = 0; i < values.n_fields; i++) {
            if (!values.fields[i].is_public) {
                if (!first) {
                    putchar(',');
                }
                first = 0;
                print_json_string((const unsigned char *)values.fields[i].name, strlen(values.fields[i].name));
            }
        }
        puts("]}");
    }
    fflush(stdout);
    coffer_values_free(&values);
    return exit_status;
}

/* Reads all of `file` into a new buffer, up to COFFER_MAX_INPUT bytes. */
static unsigned char *read_all(FILE *file, size_t *length, const char *what, coffer_error *err) {
    size_t capacity = 4096, used = 0;
    unsigned char *buffer = malloc(capacity);
    while (buffer != NULL) {
        if (used == capacity) {
            if (capacity >= COFFER_MAX_INPUT) {
                sodium_memzero(buffer, used);
                free(buffer);
                err->code = COFFER_INVALID_ARGUMENT;
                snprintf(err->message, sizeof err->message, "%s is larger than %u bytes", what, COFFER_MAX_INPUT);
                return NULL;
            }
            unsigned char *bigger = malloc(capacity * 2);
            if (bigger != NULL) {
                memcpy(bigger, buffer, used);
            }
            sodium_memzero(buffer, used);
            free(buffer);
            buffer = bigger;
            capacity *= 2;
            continue;
        }
        size_t n = fread(buffer + used, 1, capacity - used, file);
        used += n;
        if (n == 0) {
            if (ferror(file)) {
                break;
            }
            *length = used;
            return buffer;
        }
    }
    free(buffer);
    err->code = buffer == NULL ? COFFER_INTERNAL : COFFER_INVALID_ARGUMENT;
    snprintf(err->message, sizeof err->message, "cannot read %s", what);
    return NULL;
}

static int is_named(const char *name, char **names, size_t n_names) {
    for (size_t i = 0; i < n_names; i++) {
        if (strcmp(name, names[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static int run_write(int overwrite, const char *connection, const char *variant, char **public_names,
                     size_t n_public, unsigned long long expected_version, char **field_files, size_t n_field_files,
                     const char *socket) {
    coffer_field_input fields[MAX_FIELDS];
    unsigned char *buffers[MAX_FIELDS];
    size_t lengths[MAX_FIELDS];
    size_t n_fields = 0, n_buffers = 0;
    coffer_error err = {0};
    int exit_status = 0;

    if (n_field_files > 0) {
        for (size_t i = 0; i < n_field_files && exit_status == 0; i++) {
            char *equals = strchr(field_files[i], '=');
            if (equals == NULL || equals == field_files[i] || equals[1] == '\0') {
                exit_status = usage_error("--field-file takes NAME=PATH");
                break;
            }
            *equals = '\0';
            FILE *file = fopen(equals + 1, "rb");
            if (file == NULL) {
                err.code = COFFER_INVALID_ARGUMENT;
                snprintf(err.message, sizeof err.message, "cannot open %s: %s", equals + 1, strerror(errno));
                exit_status = report(&err);
                break;
            }
            unsigned char *value = read_all(file, &lengths[n_buffers], equals + 1, &err);
            fclose(file);
            if (value == NULL) {
                exit_status = report(&err);
                break;
            }
            buffers[n_buffers++] = value;
            fields[n_fields++] = (coffer_field_input){field_files[i], value, lengths[n_buffers - 1],
                                                      is_named(field_files[i], public_names, n_public)};
        }
    } else {
        size_t length = 0;
        unsigned char *input = read_all(stdin, &length, "stdin", &err);
        if (input == NULL) {
            return report(&err);
        }
        buffers[n_buffers] = input;
        lengths[n_buffers++] = length;
        /* NAME=VALUE lines; the names are cut in place, so `input` holds every value. */
        size_t start = 0;
        while (start < length && exit_status == 0) {
            size_t end = start;
            while (end < length && input[end] != '\n') {
                end++;
            }
            size_t line_end = end > start && input[end - 1] == '\r' ? end - 1 : end;
            if (line_end > start) {
                unsigned char *equals = memchr(input + start, '=', line_end - start);
                if (equals == NULL || equals == input + start) {
                    err.code = COFFER_INVALID_ARGUMENT;
                    /* Never quote the line: it may hold a value. */
                    snprintf(err.message, sizeof err.message, "stdin line %zu is not NAME=VALUE", n_fields + 1);
                    exit_status = report(&err);
                } else if (n_fields == MAX_FIELDS) {
                    err.code = COFFER_INVALID_ARGUMENT;
                    snprintf(err.message, sizeof err.message, "more than %d fields", MAX_FIELDS);
                    exit_status = report(&err);
                } else {
                    *equals = '\0';
                    input[line_end] = '\0';
                    const char *name = (const char *)input + start;
                    fields[n_fields++] = (coffer_field_input){name, equals + 1,
                                                              (size_t)(input + line_end - (equals + 1)),
                                                              is_named(name, public_names, n_public)};
                }
            }
            start = end + 1;
        }
        if (exit_status == 0 && n_fields == 0) {
            err.code = COFFER_INVALID_ARGUMENT;
            snprintf(err.message, sizeof err.message, "stdin names no fields: give NAME=VALUE lines");
            exit_status = report(&err);
        }
    }

    if (exit_status == 0) {
        coffer_conn *conn = NULL;
        uint64_t version = 0;
        int status = coffer_connect(socket, 30, &conn, &err);
        if (status == COFFER_OK) {
            status = overwrite ? coffer_overwrite_typed(conn, connection, variant, fields, n_fields, expected_version,
                                                        &version, &err)
                               : coffer_put_typed(conn, connection, variant, fields, n_fields, &version, &err);
            coffer_close(conn);
        }
        if (status != COFFER_OK) {
            exit_status = report(&err);
        } else {
            printf("%s %s, now version %llu\n", overwrite ? "overwrote" : "put", connection,
                   (unsigned long long)version);
        }
    }
    for (size_t i = 0; i < n_buffers; i++) {
        sodium_memzero(buffers[i], lengths[i]);
        free(buffers[i]);
    }
    return exit_status;
}

int main(int argc, char **argv) {
    if (sodium_init() < 0) {
        fputs("coffer-c: error: libsodium could not be initialised\n", stderr);
        return 1;
    }
    if (argc < 3) {
        return usage_error("a command and a connection are required");
    }
    const char *command = argv[1];
    const char *connection = argv[2];
    const char *field = NULL, *admin_socket = NULL, *worker_socket = NULL, *variant = NULL;
    char *public_names[MAX_FIELDS];
    size_t n_public = 0;
    unsigned long long expected_version = 0;
    char *field_files[MAX_FIELDS];
    size_t n_field_files = 0;
    for (int i = 3; i < argc; i++) {
        const char *option = argv[i];
        if (i + 1 >= argc) {
            return usage_error("an option is missing its value");
        }
        const char *value = argv[++i];
        if (strcmp(option, "--field") == 0) {
            field = value;
        } else if (strcmp(option, "--admin-socket") == 0) {
            admin_socket = value;
        } else if (strcmp(option, "--worker-socket") == 0) {
            worker_socket = value;
        } else if (strcmp(option, "--expect-version") == 0) {
            char *end = NULL;
            errno = 0;
            expected_version = strtoull(value, &end, 10);
            if (errno != 0 || end == value || *end != '\0' || value[0] == '-') {
                return usage_error("--expect-version takes a version number");
            }
        } else if (strcmp(option, "--variant") == 0) {
            variant = value;
        } else if (strcmp(option, "--public") == 0 && n_public < MAX_FIELDS) {
            public_names[n_public++] = argv[i];
        } else if (strcmp(option, "--field-file") == 0 && n_field_files < MAX_FIELDS) {
            field_files[n_field_files++] = argv[i];
        } else {
            return usage_error("unknown option");
        }
    }
    int writes = strcmp(command, "put") == 0 || strcmp(command, "overwrite") == 0;
    if (writes && field != NULL) {
        return usage_error("--field is for get");
    }
    if (!writes && (variant != NULL || n_public > 0)) {
        return usage_error("--variant and --public are for put and overwrite");
    }
    if (strcmp(command, "get") == 0) {
        return run_get(connection, field, socket_path(worker_socket, "COFFER_WORKER_SOCKET", "/run/coffer/worker.sock"));
    }
    if (writes) {
        return run_write(strcmp(command, "overwrite") == 0, connection, variant, public_names, n_public,
                         expected_version, field_files, n_field_files,
                         socket_path(admin_socket, "COFFER_ADMIN_SOCKET", "/run/coffer/admin.sock"));
    }
    return usage_error("unknown command");
}
