/*
 * libmicrohttpd for the server, loaded on first use (core/dynlib.h).
 *
 * Debian's libmicrohttpd links gnutls and six more libraries; linked
 * normally they would be mapped into every memfit process (about 3 MB of
 * RSS for `memfit monitor`), which never serves HTTP. The server includes
 * this header instead of <microhttpd.h>: the names below call through
 * pointers that mf_server_load_mhd() fills, so the code reads as plain
 * libmicrohttpd calls.
 */
#ifndef MF_SERVER_MHD_H
#define MF_SERVER_MHD_H

#include <microhttpd.h>

#include "memfit/core.h"

struct mf_mhd_api {
    __typeof__(MHD_add_response_header) *add_response_header;
    __typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
    __typeof__(MHD_create_response_from_buffer_with_free_callback)
        *create_response_from_buffer_with_free_callback;
    __typeof__(MHD_create_response_from_callback) *create_response_from_callback;
    __typeof__(MHD_destroy_response) *destroy_response;
    __typeof__(MHD_get_connection_info) *get_connection_info;
    __typeof__(MHD_get_daemon_info) *get_daemon_info;
    __typeof__(MHD_lookup_connection_value) *lookup_connection_value;
    __typeof__(MHD_get_connection_values) *get_connection_values;
    __typeof__(MHD_queue_response) *queue_response;
    __typeof__(MHD_quiesce_daemon) *quiesce_daemon;
    __typeof__(MHD_start_daemon) *start_daemon;
    __typeof__(MHD_stop_daemon) *stop_daemon;
};

extern struct mf_mhd_api mf_mhd;

/* Loads the library once; E_UNSUPPORTED naming the package when it is missing. */
enum memfit_status mf_server_load_mhd(void);

#define MHD_add_response_header         mf_mhd.add_response_header
#define MHD_create_response_from_buffer mf_mhd.create_response_from_buffer
#define MHD_create_response_from_buffer_with_free_callback                                         \
    mf_mhd.create_response_from_buffer_with_free_callback
#define MHD_create_response_from_callback mf_mhd.create_response_from_callback
#define MHD_destroy_response              mf_mhd.destroy_response
#define MHD_get_connection_info           mf_mhd.get_connection_info
#define MHD_get_daemon_info               mf_mhd.get_daemon_info
#define MHD_lookup_connection_value       mf_mhd.lookup_connection_value
#define MHD_get_connection_values         mf_mhd.get_connection_values
#define MHD_queue_response                mf_mhd.queue_response
#define MHD_quiesce_daemon                mf_mhd.quiesce_daemon
#define MHD_start_daemon                  mf_mhd.start_daemon
#define MHD_stop_daemon                   mf_mhd.stop_daemon

#endif
