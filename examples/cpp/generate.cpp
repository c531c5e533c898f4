// A small RAII wrapper over acap's C API and a streaming completion with it.
//
//   generate MODEL PROMPT [AXIS]
//
// Prints 24 greedily generated tokens of PROMPT (capped with AXIS's thresholds when given)
// to stdout as they stream. Build (see README, "Using acap from C/C++"):
//   c++ -std=c++17 generate.cpp $(pkg-config --cflags --libs acap) -o generate
#include <acap.h>

#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace acap {

// Every failed call becomes an exception carrying acap's message and status.
class Error : public std::runtime_error {
 public:
  Error(acap_result r, const char *what) : std::runtime_error(what), result(r) {}
  acap_result result;
};

inline void check(acap_result r) {
  if (r != ACAP_OK) {
    throw Error(r, acap_last_error_message());
  }
}

template <typename T, void (*Free)(T *)>
struct Deleter {
  void operator()(T *p) const { Free(p); }
};

class Model {
 public:
  explicit Model(const std::string &path) {
    acap_model *m = nullptr;
    check(acap_model_load(path.c_str(), nullptr, &m));
    ptr_.reset(m);
  }
  acap_model *get() const { return ptr_.get(); }

 private:
  std::unique_ptr<acap_model, Deleter<acap_model, acap_model_free>> ptr_;
};

class Axes {
 public:
  explicit Axes(const std::string &path) {
    acap_axes *a = nullptr;
    check(acap_axes_load_file(path.c_str(), &a));
    ptr_.reset(a);
  }
  const acap_axes *get() const { return ptr_.get(); }

 private:
  std::unique_ptr<acap_axes, Deleter<acap_axes, acap_axes_free>> ptr_;
};

class Session {
 public:
  Session(const Model &model, acap_session_params params) {
    acap_session *s = nullptr;
    check(acap_session_new(model.get(), &params, &s));
    ptr_.reset(s);
  }

  void cap(const Axes &axes, const acap_cap_params &params = acap_cap_params_default()) {
    check(acap_session_set_capping(ptr_.get(), axes.get(), &params));
  }

  // Streams pieces to `on_text`; return false from it to stop. An exception thrown by
  // `on_text` stops generation and is rethrown here, after acap has returned: exceptions
  // never unwind through acap's frames.
  acap_generation_stats generate(const std::string &prompt, const acap_generate_params &params,
                                 const std::function<bool(std::string_view)> &on_text) {
    Callback cb{on_text, nullptr};
    acap_generation_stats stats{};
    acap_result r =
        acap_session_generate(ptr_.get(), prompt.c_str(), &params, &trampoline, &cb, &stats);
    if (cb.error) std::rethrow_exception(cb.error);
    check(r);
    return stats;
  }

  // Safe from any thread while generate() runs.
  void cancel() const { check(acap_session_cancel(ptr_.get())); }

 private:
  struct Callback {
    const std::function<bool(std::string_view)> &fn;
    std::exception_ptr error;
  };

  static int32_t trampoline(void *user_data, const char *text, size_t len) {
    auto *cb = static_cast<Callback *>(user_data);
    try {
      return cb->fn(std::string_view(text, len)) ? 0 : 1;
    } catch (...) {
      cb->error = std::current_exception();
      return 1;
    }
  }

  std::unique_ptr<acap_session, Deleter<acap_session, acap_session_free>> ptr_;
};

}  // namespace acap

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    std::cerr << "usage: " << argv[0] << " MODEL PROMPT [AXIS]\n";
    return 2;
  }
  try {
    acap::Model model(argv[1]);
    acap_session_params sp = acap_session_params_default();
    sp.n_ctx = 256;
    sp.n_threads = 1;
    sp.n_threads_batch = 1;
    acap::Session session(model, sp);
    if (argc == 4) {
      session.cap(acap::Axes(argv[3]));
    }
    acap_generate_params gp = acap_generate_params_default();
    gp.max_tokens = 24;
    gp.sampling.temperature = 0.0f;
    acap_generation_stats st = session.generate(argv[2], gp, [](std::string_view piece) {
      std::cout << piece << std::flush;
      return true;
    });
    std::cerr << "\n[" << st.generated_tokens << " tokens, "
              << st.generated_tokens * 1000.0 / (st.generation_ms > 0 ? st.generation_ms : 1)
              << " tokens/s]\n";
  } catch (const acap::Error &e) {
    std::cerr << "error: " << e.what() << " (" << acap_result_name(e.result) << ")\n";
    return 1;
  }
  return 0;
}
