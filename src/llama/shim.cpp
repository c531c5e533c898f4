// Exception barrier between Rust and llama.cpp's C API.
//
// Several entry points of llama.cpp's C API run C++ that throws on hostile input (a vocabulary
// whose tokenizer type does not match its tokens makes `llama_tokenize` throw
// std::out_of_range, a grammar that dead-ends makes `llama_sampler_accept` throw, ...) and do
// not catch it. An exception that unwinds into Rust aborts the whole process, a C program
// embedding acap included. Each wrapper here calls one such entry point inside try/catch,
// returns a sentinel when it threw, and keeps the exception's message for the caller
// (`acap_llama_exception`, per thread).

#include "llama.h"

#include <climits>
#include <cstdint>
#include <exception>
#include <string>

namespace {
thread_local std::string last_exception;

void remember(const char * what) {
    try {
        last_exception = what ? what : "unknown C++ exception";
    } catch (...) {
        // Out of memory while copying the message: keep what was there.
    }
}
}  // namespace

#define ACAP_BARRIER(sentinel, call)                 \
    last_exception.clear();                          \
    try {                                            \
        return call;                                 \
    } catch (const std::exception & e) {             \
        remember(e.what());                          \
    } catch (...) {                                  \
        remember("unknown C++ exception");           \
    }                                                \
    return sentinel;

extern "C" {

// The message of the exception the last wrapper called on this thread caught ("" if none).
const char * acap_llama_exception(void) {
    return last_exception.c_str();
}

// INT32_MIN when llama.cpp threw.
int32_t acap_llama_tokenize(const struct llama_vocab * vocab, const char * text, int32_t text_len,
                            llama_token * tokens, int32_t n_tokens_max, bool add_special,
                            bool parse_special) {
    ACAP_BARRIER(INT32_MIN, llama_tokenize(vocab, text, text_len, tokens, n_tokens_max,
                                           add_special, parse_special))
}

// INT32_MIN when llama.cpp threw.
int32_t acap_llama_token_to_piece(const struct llama_vocab * vocab, llama_token token, char * buf,
                                  int32_t length, int32_t lstrip, bool special) {
    ACAP_BARRIER(INT32_MIN, llama_token_to_piece(vocab, token, buf, length, lstrip, special))
}

// INT32_MIN when llama.cpp threw.
int32_t acap_llama_detokenize(const struct llama_vocab * vocab, const llama_token * tokens,
                              int32_t n_tokens, char * text, int32_t text_len_max,
                              bool remove_special, bool unparse_special) {
    ACAP_BARRIER(INT32_MIN, llama_detokenize(vocab, tokens, n_tokens, text, text_len_max,
                                             remove_special, unparse_special))
}

// INT32_MIN when llama.cpp threw.
int32_t acap_llama_decode(struct llama_context * ctx, struct llama_batch batch) {
    ACAP_BARRIER(INT32_MIN, llama_decode(ctx, batch))
}

// INT32_MIN when llama.cpp threw.
int32_t acap_llama_chat_apply_template(const char * tmpl, const struct llama_chat_message * chat,
                                       size_t n_msg, bool add_ass, char * buf, int32_t length) {
    ACAP_BARRIER(INT32_MIN, llama_chat_apply_template(tmpl, chat, n_msg, add_ass, buf, length))
}

// LLAMA_TOKEN_NULL when llama.cpp threw.
llama_token acap_llama_sampler_sample(struct llama_sampler * smpl, struct llama_context * ctx,
                                      int32_t idx) {
    ACAP_BARRIER(LLAMA_TOKEN_NULL, llama_sampler_sample(smpl, ctx, idx))
}

// false when llama.cpp threw.
bool acap_llama_sampler_accept(struct llama_sampler * smpl, llama_token token) {
    ACAP_BARRIER(false, (llama_sampler_accept(smpl, token), true))
}

}  // extern "C"
