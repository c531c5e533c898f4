// llama-reference: the measuring loop of `acap bench`, written against plain llama.cpp (no eval
// callback), so that acap and llama.cpp are compared on the same model, tokens and settings.
//
//   llama-reference -m MODEL [-p 512] [-n 128] [-r 1] [-t THREADS] [-b 2048] [-ub 512]
//
// pp: the prompt's first p tokens decoded from an empty cache in batches of -b; tg: n
// single-token decode steps after one token, no sampling (as llama-bench). One warm-up of each
// first. Prints one JSON object: {"pp": [t/s per repetition], "tg": [...], "peak_rss_kib": N}.
#include "llama.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <thread>
#include <algorithm>

#include <sys/resource.h>

namespace {

struct Options {
    std::string model;
    int n_prompt = 512;
    int n_gen = 128;
    int reps = 1;
    int threads = 0;
    int n_batch = 2048;
    int n_ubatch = 512;
};

[[noreturn]] void die(const std::string & msg) {
    std::fprintf(stderr, "llama-reference: %s\n", msg.c_str());
    std::exit(1);
}

Options parse(int argc, char ** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) die(a + " needs a value");
            return argv[++i];
        };
        if (a == "-m") o.model = value();
        else if (a == "-p") o.n_prompt = std::stoi(value());
        else if (a == "-n") o.n_gen = std::stoi(value());
        else if (a == "-r") o.reps = std::stoi(value());
        else if (a == "-t") o.threads = std::stoi(value());
        else if (a == "-b") o.n_batch = std::stoi(value());
        else if (a == "-ub") o.n_ubatch = std::stoi(value());
        else die("unknown argument " + a);
    }
    if (o.model.empty()) die("no model (-m)");
    return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void decode(llama_context * ctx, llama_batch & batch, const std::vector<llama_token> & tokens,
            int from, int to, int n_batch) {
    for (int start = from; start < to; start += n_batch) {
        int end = std::min(to, start + n_batch);
        batch.n_tokens = 0;
        for (int i = start; i < end; i++) {
            int k = batch.n_tokens++;
            batch.token[k] = tokens[i];
            batch.pos[k] = i;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = 0;
            batch.logits[k] = i + 1 == end;
        }
        if (llama_decode(ctx, batch) != 0) die("llama_decode failed");
    }
}

}  // namespace

int main(int argc, char ** argv) {
    Options o = parse(argc, argv);
    llama_log_set([](ggml_log_level level, const char * text, void *) {
        if (level >= GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
    }, nullptr);
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(o.model.c_str(), mp);
    if (!model) die("cannot load " + o.model);
    const llama_vocab * vocab = llama_model_get_vocab(model);

    // The text and context size acap bench uses.
    std::string unit = "Once upon a time there was a small cat who lived in a house with a big dog. ";
    std::string text;
    for (int i = 0; i < o.n_prompt / 8 + 8; i++) text += unit;
    std::vector<llama_token> tokens(text.size() + 8);
    int n = llama_tokenize(vocab, text.c_str(), (int) text.size(), tokens.data(),
                           (int) tokens.size(), true, true);
    if (n < 0) die("tokenize failed");
    tokens.resize(n);
    int want = std::max(o.n_prompt, o.n_gen + 1);
    if ((int) tokens.size() < want) die("text too short");
    tokens.resize(want);

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) (want + 16);
    cp.n_batch = (uint32_t) o.n_batch;
    cp.n_ubatch = (uint32_t) std::min(o.n_ubatch, o.n_batch);
    int threads = o.threads > 0 ? o.threads : (int) std::thread::hardware_concurrency();
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) die("cannot create a context");
    llama_batch batch = llama_batch_init(o.n_batch, 0, 1);
    llama_memory_t mem = llama_get_memory(ctx);

    auto pp = [&]() {
        llama_memory_clear(mem, true);
        auto t0 = std::chrono::steady_clock::now();
        decode(ctx, batch, tokens, 0, o.n_prompt, o.n_batch);
        return o.n_prompt / seconds_since(t0);
    };
    auto tg = [&](int steps) {
        llama_memory_clear(mem, true);
        decode(ctx, batch, tokens, 0, 1, o.n_batch);
        auto t0 = std::chrono::steady_clock::now();
        for (int k = 1; k <= steps; k++) decode(ctx, batch, tokens, k, k + 1, o.n_batch);
        return steps / seconds_since(t0);
    };

    std::vector<double> pps, tgs;
    if (o.n_prompt > 0) {
        pp();
        for (int r = 0; r < o.reps; r++) pps.push_back(pp());
    }
    if (o.n_gen > 0) {
        tg(std::min(o.n_gen, 16));
        for (int r = 0; r < o.reps; r++) tgs.push_back(tg(o.n_gen));
    }
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    auto list = [](const std::vector<double> & v) {
        std::string s = "[";
        for (size_t i = 0; i < v.size(); i++) s += (i ? "," : "") + std::to_string(v[i]);
        return s + "]";
    };
    std::printf("{\"pp\": %s, \"tg\": %s, \"peak_rss_kib\": %ld}\n", list(pps).c_str(),
                list(tgs).c_str(), ru.ru_maxrss);

    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
