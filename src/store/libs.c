/* The tables behind store/libs.h: which symbols, from which library. */
#include "core/dynlib.h"
#include "store/libs.h"

struct mf_curl_api mf_curl;
struct mf_crypto_api mf_crypto;

/* The macros of libs.h would rename the strings below; spell them here. */
#undef curl_global_init
#undef curl_easy_init
#undef curl_easy_setopt
#undef curl_easy_perform
#undef curl_easy_getinfo
#undef curl_easy_cleanup
#undef curl_easy_strerror
#undef curl_slist_append
#undef curl_slist_free_all
#undef EVP_MD_CTX_new
#undef EVP_MD_CTX_free
#undef EVP_DigestInit_ex
#undef EVP_DigestUpdate
#undef EVP_DigestFinal_ex
#undef EVP_sha256

static const struct mf_dl_symbol curl_symbols[] = {
    {"curl_global_init", &mf_curl.global_init},       {"curl_easy_init", &mf_curl.easy_init},
    {"curl_easy_setopt", &mf_curl.easy_setopt},       {"curl_easy_perform", &mf_curl.easy_perform},
    {"curl_easy_getinfo", &mf_curl.easy_getinfo},     {"curl_easy_cleanup", &mf_curl.easy_cleanup},
    {"curl_easy_strerror", &mf_curl.easy_strerror},   {"curl_slist_append", &mf_curl.slist_append},
    {"curl_slist_free_all", &mf_curl.slist_free_all},
};

static const struct mf_dl_symbol crypto_symbols[] = {
    {"EVP_MD_CTX_new", &mf_crypto.md_ctx_new},
    {"EVP_MD_CTX_free", &mf_crypto.md_ctx_free},
    {"EVP_DigestInit_ex", &mf_crypto.digest_init_ex},
    {"EVP_DigestUpdate", &mf_crypto.digest_update},
    {"EVP_DigestFinal_ex", &mf_crypto.digest_final_ex},
    {"EVP_sha256", &mf_crypto.sha256},
};

static struct mf_dl_library libcurl =
    MF_DL_LIBRARY("libcurl.so.4", "libcurl4", "to fetch over HTTP(S) and S3", curl_symbols);
static struct mf_dl_library libcrypto =
    MF_DL_LIBRARY("libcrypto.so.3", "libssl3", "to compute SHA-256 digests", crypto_symbols);

enum memfit_status mf_store_load_curl(void)
{
    return mf_dl_load(&libcurl);
}

enum memfit_status mf_store_load_crypto(void)
{
    return mf_dl_load(&libcrypto);
}
