/*
 * libcurl and libcrypto for the store, loaded on first use (core/dynlib.h).
 *
 * Linked normally, libcurl brings about 30 libraries (TLS, HTTP/2, Kerberos,
 * LDAP, ...) into every memfit process, the memory tools included, which
 * never fetch anything. The store includes this header instead of
 * <curl/curl.h> and <openssl/evp.h>: the names below then call through
 * pointers that mf_store_load_curl() / mf_store_load_crypto() fill, so the
 * store's code reads as plain libcurl and EVP calls.
 */
#ifndef MF_STORE_LIBS_H
#define MF_STORE_LIBS_H

/* curl's gcc type-checking wraps curl_easy_setopt in macros; our calls go
 * through a pointer of the same prototype instead. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <openssl/evp.h>

#include "memfit/core.h"

struct mf_curl_api {
    __typeof__(curl_global_init) *global_init;
    __typeof__(curl_easy_init) *easy_init;
    __typeof__(curl_easy_setopt) *easy_setopt;
    __typeof__(curl_easy_perform) *easy_perform;
    __typeof__(curl_easy_getinfo) *easy_getinfo;
    __typeof__(curl_easy_cleanup) *easy_cleanup;
    __typeof__(curl_easy_strerror) *easy_strerror;
    __typeof__(curl_slist_append) *slist_append;
    __typeof__(curl_slist_free_all) *slist_free_all;
};

struct mf_crypto_api {
    __typeof__(EVP_MD_CTX_new) *md_ctx_new;
    __typeof__(EVP_MD_CTX_free) *md_ctx_free;
    __typeof__(EVP_DigestInit_ex) *digest_init_ex;
    __typeof__(EVP_DigestUpdate) *digest_update;
    __typeof__(EVP_DigestFinal_ex) *digest_final_ex;
    __typeof__(EVP_sha256) *sha256;
};

extern struct mf_curl_api mf_curl;
extern struct mf_crypto_api mf_crypto;

/* Load the library once; E_UNSUPPORTED naming the package when it is missing. */
enum memfit_status mf_store_load_curl(void);
enum memfit_status mf_store_load_crypto(void);

/* curl.h keeps arity-checking macros for these two even without type checks. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init    mf_curl.global_init
#define curl_easy_init      mf_curl.easy_init
#define curl_easy_setopt    mf_curl.easy_setopt
#define curl_easy_perform   mf_curl.easy_perform
#define curl_easy_getinfo   mf_curl.easy_getinfo
#define curl_easy_cleanup   mf_curl.easy_cleanup
#define curl_easy_strerror  mf_curl.easy_strerror
#define curl_slist_append   mf_curl.slist_append
#define curl_slist_free_all mf_curl.slist_free_all
#define EVP_MD_CTX_new      mf_crypto.md_ctx_new
#define EVP_MD_CTX_free     mf_crypto.md_ctx_free
#define EVP_DigestInit_ex   mf_crypto.digest_init_ex
#define EVP_DigestUpdate    mf_crypto.digest_update
#define EVP_DigestFinal_ex  mf_crypto.digest_final_ex
#define EVP_sha256          mf_crypto.sha256

#endif
