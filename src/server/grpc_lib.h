/*
 * gRPC's C core (Debian's libgrpc29) for the server's gRPC front end,
 * loaded on first use (core/dynlib.h), as libmicrohttpd is (server/mhd.h).
 *
 * Why at run time: libgrpc brings abseil, re2, c-ares, OpenSSL and its own
 * threads — about 10 MB of code — which `memfit report`, `monitor` or a
 * `serve` without --grpc-port never call. The names below call through
 * pointers mf_grpc_load() fills, so the code reads as plain C-core calls.
 */
#ifndef MF_SERVER_GRPC_LIB_H
#define MF_SERVER_GRPC_LIB_H

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>

#include "memfit/core.h"

struct mf_grpc_api {
    __typeof__(grpc_init) *init;
    __typeof__(grpc_shutdown) *shutdown;
    __typeof__(grpc_version_string) *version_string;
    __typeof__(grpc_completion_queue_create_for_next) *cq_create_for_next;
    __typeof__(grpc_completion_queue_next) *cq_next;
    __typeof__(grpc_completion_queue_shutdown) *cq_shutdown;
    __typeof__(grpc_completion_queue_destroy) *cq_destroy;
    __typeof__(grpc_server_create) *server_create;
    __typeof__(grpc_server_register_completion_queue) *server_register_cq;
    __typeof__(grpc_server_add_http2_port) *server_add_http2_port;
    __typeof__(grpc_insecure_server_credentials_create) *insecure_server_credentials_create;
    __typeof__(grpc_server_credentials_release) *server_credentials_release;
    __typeof__(grpc_server_start) *server_start;
    __typeof__(grpc_server_request_call) *server_request_call;
    __typeof__(grpc_server_shutdown_and_notify) *server_shutdown_and_notify;
    __typeof__(grpc_server_cancel_all_calls) *server_cancel_all_calls;
    __typeof__(grpc_server_destroy) *server_destroy;
    __typeof__(grpc_call_start_batch) *call_start_batch;
    __typeof__(grpc_call_unref) *call_unref;
    __typeof__(grpc_call_details_init) *call_details_init;
    __typeof__(grpc_call_details_destroy) *call_details_destroy;
    __typeof__(grpc_metadata_array_init) *metadata_array_init;
    __typeof__(grpc_metadata_array_destroy) *metadata_array_destroy;
    __typeof__(grpc_byte_buffer_reader_init) *byte_buffer_reader_init;
    __typeof__(grpc_byte_buffer_reader_readall) *byte_buffer_reader_readall;
    __typeof__(grpc_byte_buffer_reader_destroy) *byte_buffer_reader_destroy;
    __typeof__(grpc_byte_buffer_destroy) *byte_buffer_destroy;
    __typeof__(grpc_raw_byte_buffer_create) *raw_byte_buffer_create;
    __typeof__(grpc_slice_from_copied_buffer) *slice_from_copied_buffer;
    __typeof__(grpc_slice_unref) *slice_unref;
};

extern struct mf_grpc_api mf_grpc;

/* Loads the library once; E_UNSUPPORTED naming the package when it is missing. */
enum memfit_status mf_grpc_load(void);

#endif
