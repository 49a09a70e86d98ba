/* The table behind server/grpc_lib.h: which symbols, from which library. */
#include "core/dynlib.h"
#include "server/grpc_lib.h"

struct mf_grpc_api mf_grpc;

static const struct mf_dl_symbol grpc_symbols[] = {
    {"grpc_init", &mf_grpc.init},
    {"grpc_shutdown", &mf_grpc.shutdown},
    {"grpc_version_string", &mf_grpc.version_string},
    {"grpc_completion_queue_create_for_next", &mf_grpc.cq_create_for_next},
    {"grpc_completion_queue_next", &mf_grpc.cq_next},
    {"grpc_completion_queue_shutdown", &mf_grpc.cq_shutdown},
    {"grpc_completion_queue_destroy", &mf_grpc.cq_destroy},
    {"grpc_server_create", &mf_grpc.server_create},
    {"grpc_server_register_completion_queue", &mf_grpc.server_register_cq},
    {"grpc_server_add_http2_port", &mf_grpc.server_add_http2_port},
    {"grpc_insecure_server_credentials_create", &mf_grpc.insecure_server_credentials_create},
    {"grpc_server_credentials_release", &mf_grpc.server_credentials_release},
    {"grpc_server_start", &mf_grpc.server_start},
    {"grpc_server_request_call", &mf_grpc.server_request_call},
    {"grpc_server_shutdown_and_notify", &mf_grpc.server_shutdown_and_notify},
    {"grpc_server_cancel_all_calls", &mf_grpc.server_cancel_all_calls},
    {"grpc_server_destroy", &mf_grpc.server_destroy},
    {"grpc_call_start_batch", &mf_grpc.call_start_batch},
    {"grpc_call_unref", &mf_grpc.call_unref},
    {"grpc_call_details_init", &mf_grpc.call_details_init},
    {"grpc_call_details_destroy", &mf_grpc.call_details_destroy},
    {"grpc_metadata_array_init", &mf_grpc.metadata_array_init},
    {"grpc_metadata_array_destroy", &mf_grpc.metadata_array_destroy},
    {"grpc_byte_buffer_reader_init", &mf_grpc.byte_buffer_reader_init},
    {"grpc_byte_buffer_reader_readall", &mf_grpc.byte_buffer_reader_readall},
    {"grpc_byte_buffer_reader_destroy", &mf_grpc.byte_buffer_reader_destroy},
    {"grpc_byte_buffer_destroy", &mf_grpc.byte_buffer_destroy},
    {"grpc_raw_byte_buffer_create", &mf_grpc.raw_byte_buffer_create},
    {"grpc_slice_from_copied_buffer", &mf_grpc.slice_from_copied_buffer},
    {"grpc_slice_unref", &mf_grpc.slice_unref},
};

static struct mf_dl_library libgrpc =
    MF_DL_LIBRARY("libgrpc.so.29", "libgrpc29", "to serve gRPC (--grpc-port)", grpc_symbols);

enum memfit_status mf_grpc_load(void)
{
    return mf_dl_load(&libgrpc);
}
