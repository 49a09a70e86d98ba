/* The table behind server/mhd.h: which symbols, from which library. */
#include "core/dynlib.h"
#include "server/mhd.h"

struct mf_mhd_api mf_mhd;

/* The macros of mhd.h would rename the strings below; spell them here. */
#undef MHD_add_response_header
#undef MHD_create_response_from_buffer
#undef MHD_create_response_from_buffer_with_free_callback
#undef MHD_create_response_from_callback
#undef MHD_destroy_response
#undef MHD_get_connection_info
#undef MHD_get_daemon_info
#undef MHD_lookup_connection_value
#undef MHD_get_connection_values
#undef MHD_queue_response
#undef MHD_quiesce_daemon
#undef MHD_start_daemon
#undef MHD_stop_daemon

static const struct mf_dl_symbol mhd_symbols[] = {
    {"MHD_add_response_header", &mf_mhd.add_response_header},
    {"MHD_create_response_from_buffer", &mf_mhd.create_response_from_buffer},
    {"MHD_create_response_from_buffer_with_free_callback",
     &mf_mhd.create_response_from_buffer_with_free_callback},
    {"MHD_create_response_from_callback", &mf_mhd.create_response_from_callback},
    {"MHD_destroy_response", &mf_mhd.destroy_response},
    {"MHD_get_connection_info", &mf_mhd.get_connection_info},
    {"MHD_get_daemon_info", &mf_mhd.get_daemon_info},
    {"MHD_lookup_connection_value", &mf_mhd.lookup_connection_value},
    {"MHD_get_connection_values", &mf_mhd.get_connection_values},
    {"MHD_queue_response", &mf_mhd.queue_response},
    {"MHD_quiesce_daemon", &mf_mhd.quiesce_daemon},
    {"MHD_start_daemon", &mf_mhd.start_daemon},
    {"MHD_stop_daemon", &mf_mhd.stop_daemon},
};

static struct mf_dl_library libmhd =
    MF_DL_LIBRARY("libmicrohttpd.so.12", "libmicrohttpd12", "to serve HTTP", mhd_symbols);

enum memfit_status mf_server_load_mhd(void)
{
    return mf_dl_load(&libmhd);
}
