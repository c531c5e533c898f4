/*
 * Exercises every function of include/acap.h, including its error paths, against the tiny
 * test model. Run by ffi/tests/c_api.rs, which passes the files below and compares the
 * greedy outputs printed as `OUT <name> <hex>` lines with the Rust API's.
 *
 * usage: api_test MODEL AXIS AXIS_NO_THRESHOLDS AXIS_WRONG_EMBD NOT_AN_AXIS CONTROL_VECTOR
 */
#include "acap.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                                     \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, \
              #cond, acap_last_error_message());                                        \
      failures++;                                                                       \
    }                                                                                   \
  } while (0)

/* A call must return `expected`, and a failure must come with a message. */
#define EXPECT(expected, call)                                                              \
  do {                                                                                      \
    acap_result r_ = (call);                                                                \
    if (r_ != (expected)) {                                                                 \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__,    \
              __LINE__, #call, acap_result_name(r_), acap_result_name(expected),            \
              acap_last_error_message());                                                   \
      failures++;                                                                           \
    } else if (r_ != ACAP_OK && acap_last_error_message()[0] == '\0') {                     \
      fprintf(stderr, "%s:%d: %s failed without a message\n", __FILE__, __LINE__, #call);   \
      failures++;                                                                           \
    }                                                                                       \
  } while (0)

#define OK(call) EXPECT(ACAP_OK, call)

/* Out-parameter sentinel: must survive failed calls. */
#define SENTINEL ((void *)0x5a5a)

static void print_out(const char *name, const char *text) {
  printf("OUT %s ", name);
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) printf("%02x", *p);
  printf("\n");
}

static acap_generate_params greedy(int32_t n) {
  acap_generate_params p = acap_generate_params_default();
  p.max_tokens = n;
  p.sampling.temperature = 0.0f;
  return p;
}

static const char *PROMPT = "You are a helpful assistant. Tell me a story about a cat and a dog.";

/* The session still gives `expected` for PROMPT (after failed or unrelated calls). */
static void expect_text(acap_session *s, const char *expected, int line) {
  acap_generate_params gp = greedy(24);
  char *text = NULL;
  acap_result r = acap_session_complete(s, PROMPT, &gp, &text, NULL);
  if (r != ACAP_OK || strcmp(text, expected) != 0) {
    fprintf(stderr, "%s:%d: the session's text changed (%s)\n", __FILE__, line, acap_result_name(r));
    failures++;
  }
  acap_string_free(text);
}
#define EXPECT_TEXT(s, expected) expect_text((s), (expected), __LINE__)

/* ---- streaming ---------------------------------------------------------------------- */

typedef struct {
  char text[4096];
  size_t len;
  int pieces;
  int stop_after; /* stop (return 1) after this many pieces; 0 = never */
  acap_session *session;
  acap_result reentrant; /* what a re-entrant call returned */
} collector;

static int32_t collect(void *user_data, const char *text, size_t len) {
  collector *c = (collector *)user_data;
  if (strlen(text) != len) failures++; /* NUL-terminated and `len` agree */
  if (c->len + len < sizeof c->text) {
    memcpy(c->text + c->len, text, len);
    c->len += len;
    c->text[c->len] = '\0';
  }
  c->pieces++;
  if (c->session) c->reentrant = acap_session_clear(c->session);
  return c->stop_after && c->pieces >= c->stop_after;
}

/* ---- cancel from another thread ----------------------------------------------------- */

typedef struct {
  acap_session *session;
  atomic_int started;
  atomic_int cancelled;
} cancel_state;

static int32_t wait_for_cancel(void *user_data, const char *text, size_t len) {
  (void)text;
  (void)len;
  cancel_state *st = (cancel_state *)user_data;
  atomic_store(&st->started, 1);
  /* Hold the first piece until the other thread has cancelled (bounded wait). */
  for (long i = 0; i < 200000000L && !atomic_load(&st->cancelled); i++) sched_yield();
  return 0;
}

static void *canceller(void *arg) {
  cancel_state *st = (cancel_state *)arg;
  while (!atomic_load(&st->started)) sched_yield();
  if (acap_session_cancel(st->session) != ACAP_OK) failures++;
  atomic_store(&st->cancelled, 1);
  return NULL;
}

/* ---- sections ----------------------------------------------------------------------- */

static void test_version(void) {
  CHECK(strlen(acap_version()) > 0);
  acap_version_triple v = acap_version_numbers();
  char buf[64];
  snprintf(buf, sizeof buf, "%u.%u.%u", v.major, v.minor, v.patch);
  CHECK(strcmp(buf, acap_version()) == 0);
  CHECK(v.major == ACAP_VERSION_MAJOR && v.minor == ACAP_VERSION_MINOR &&
        v.patch == ACAP_VERSION_PATCH);
  CHECK(strstr(acap_llama_cpp_version(), "llama-cpp-sys-2") != NULL);
  CHECK(strstr(acap_build_info(), acap_version()) != NULL);
  CHECK(strcmp(acap_result_name(ACAP_AXIS_MISMATCH), "ACAP_AXIS_MISMATCH") == 0);
  CHECK(strcmp(acap_result_name(9999), "ACAP_UNKNOWN") == 0);
  /* NULL-tolerant frees. */
  acap_model_free(NULL);
  acap_session_free(NULL);
  acap_axes_free(NULL);
  acap_control_vector_free(NULL);
  acap_string_free(NULL);
  acap_tokens_free(NULL, 0);
}

static acap_model *test_model(const char *path) {
  acap_model *model = SENTINEL;
  EXPECT(ACAP_NULL_ARGUMENT, acap_model_load(NULL, NULL, &model));
  CHECK(strstr(acap_last_error_message(), "path") != NULL);
  EXPECT(ACAP_NULL_ARGUMENT, acap_model_load(path, NULL, NULL));
  EXPECT(ACAP_MODEL_LOAD, acap_model_load("/nonexistent/model.gguf", NULL, &model));
  CHECK(strstr(acap_last_error_message(), "/nonexistent/model.gguf") != NULL);
  EXPECT(ACAP_INVALID_UTF8, acap_model_load("\xff\xfe.gguf", NULL, &model));
  CHECK(model == SENTINEL); /* untouched by the failures */

  acap_model_params mp = acap_model_params_default();
  CHECK(mp.use_mmap && !mp.use_mlock && mp.n_gpu_layers == 0);
  OK(acap_model_load(path, &mp, &model));
  CHECK(model != SENTINEL && model != NULL);
  CHECK(acap_last_error_message()[0] == '\0'); /* cleared by the success */

  acap_model_info info;
  OK(acap_model_get_info(model, &info));
  CHECK(info.n_layer == 8 && info.n_embd == 256 && info.n_vocab > 256);
  CHECK(info.n_params > 0 && info.size_bytes > 0 && info.file_size >= info.size_bytes);
  CHECK(info.token_bos >= 0 && info.token_eos >= 0);
  EXPECT(ACAP_NULL_ARGUMENT, acap_model_get_info(NULL, &info));
  EXPECT(ACAP_NULL_ARGUMENT, acap_model_get_info(model, NULL));
  CHECK(strcmp(acap_model_architecture(model), "llama") == 0);
  CHECK(acap_model_architecture(NULL) == NULL);
  CHECK(acap_model_name(model) != NULL);
  CHECK(acap_model_name(NULL) == NULL);
  CHECK(acap_model_chat_template(model) != NULL);
  CHECK(acap_model_chat_template(NULL) == NULL);

  /* tokenize / detokenize round trip */
  acap_token *toks = SENTINEL;
  size_t n = 12345;
  EXPECT(ACAP_NULL_ARGUMENT, acap_model_tokenize(model, NULL, true, true, &toks, &n));
  EXPECT(ACAP_NULL_ARGUMENT, acap_model_tokenize(model, "x", true, true, NULL, &n));
  EXPECT(ACAP_NULL_ARGUMENT, acap_model_tokenize(model, "x", true, true, &toks, NULL));
  CHECK(toks == SENTINEL && n == 12345);
  OK(acap_model_tokenize(model, "Hello world", true, true, &toks, &n));
  CHECK(n >= 2 && toks[0] == info.token_bos);
  char *text = SENTINEL;
  OK(acap_model_detokenize(model, toks + 1, n - 1, false, &text));
  CHECK(strcmp(text, "Hello world") == 0);
  acap_string_free(text);
  acap_tokens_free(toks, n);
  acap_token bad = 999999;
  text = SENTINEL;
  EXPECT(ACAP_TOKENIZE, acap_model_detokenize(model, &bad, 1, false, &text));
  CHECK(text == SENTINEL);
  EXPECT(ACAP_NULL_ARGUMENT, acap_model_detokenize(model, NULL, 3, false, &text));
  OK(acap_model_detokenize(model, NULL, 0, false, &text)); /* empty is fine */
  CHECK(text[0] == '\0');
  acap_string_free(text);

  /* chat template */
  acap_chat_message msgs[2] = {{"system", "Be brief."}, {"user", "Hi there"}};
  char *prompt = SENTINEL;
  OK(acap_model_apply_chat_template(model, msgs, 2, NULL, true, &prompt));
  CHECK(strstr(prompt, "Hi there") != NULL && strstr(prompt, "Be brief.") != NULL);
  acap_string_free(prompt);
  prompt = SENTINEL;
  EXPECT(ACAP_CHAT_TEMPLATE,
         acap_model_apply_chat_template(model, msgs, 2, "no-such-template", true, &prompt));
  acap_chat_message broken[1] = {{"user", NULL}};
  EXPECT(ACAP_NULL_ARGUMENT, acap_model_apply_chat_template(model, broken, 1, NULL, true, &prompt));
  CHECK(strstr(acap_last_error_message(), "messages[0].content") != NULL);
  CHECK(prompt == SENTINEL);
  return model;
}

/* Templates resolved once (acap-cli's --chat-template, --chat-template-file, --jinja); returns
 * the chatml-as-Jinja file's template for the session tests. */
static acap_chat_template *test_templates(acap_model *model, const char *jinja_file,
                                          const char *bad_file) {
  acap_chat_message msgs[2] = {{"system", "Be brief."}, {"user", "Hi there"}};
  acap_chat_template *own = SENTINEL, *chatml = NULL, *file = NULL;
  OK(acap_chat_template_new(model, NULL, NULL, false, &own));
  CHECK(!acap_chat_template_is_fallback(own) && !acap_chat_template_is_jinja(own));
  CHECK(strcmp(acap_chat_template_origin(own), "the model's chat template") == 0);
  char *a = NULL, *b = NULL;
  OK(acap_chat_template_apply(own, model, msgs, 2, true, &a));
  OK(acap_model_apply_chat_template(model, msgs, 2, NULL, true, &b));
  CHECK(strcmp(a, b) == 0);
  acap_string_free(a);
  acap_string_free(b);
  /* chatml built in and chatml written as Jinja in a file render the same text. */
  OK(acap_chat_template_new(model, "chatml", NULL, false, &chatml));
  OK(acap_chat_template_new(model, NULL, jinja_file, false, &file));
  CHECK(acap_chat_template_is_jinja(file) && !acap_chat_template_is_jinja(chatml));
  CHECK(strstr(acap_chat_template_origin(file), jinja_file) != NULL);
  OK(acap_chat_template_apply(chatml, model, msgs, 2, true, &a));
  OK(acap_chat_template_apply(file, model, msgs, 2, true, &b));
  CHECK(strcmp(a, b) == 0 && strstr(a, "<|im_start|>assistant") != NULL);
  acap_string_free(a);
  acap_string_free(b);
  /* The model's own template forced through Jinja. */
  acap_chat_template *forced = NULL;
  OK(acap_chat_template_new(model, NULL, NULL, true, &forced));
  CHECK(acap_chat_template_is_jinja(forced));
  acap_chat_template_free(forced);
  /* Errors name the parameter; the out-parameter stays untouched. */
  acap_chat_template *t = SENTINEL;
  EXPECT(ACAP_CHAT_TEMPLATE, acap_chat_template_new(model, "no-such-template", NULL, false, &t));
  CHECK(strstr(acap_last_error_message(), "name") != NULL);
  EXPECT(ACAP_CHAT_TEMPLATE, acap_chat_template_new(model, NULL, bad_file, false, &t));
  CHECK(strstr(acap_last_error_message(), "file_path") != NULL &&
        strstr(acap_last_error_message(), bad_file) != NULL);
  EXPECT(ACAP_CHAT_TEMPLATE, acap_chat_template_new(model, NULL, "/no/such.jinja", false, &t));
  CHECK(strstr(acap_last_error_message(), "file_path /no/such.jinja") != NULL);
  EXPECT(ACAP_INVALID_ARGUMENT, acap_chat_template_new(model, "chatml", jinja_file, false, &t));
  EXPECT(ACAP_NULL_ARGUMENT, acap_chat_template_new(NULL, NULL, NULL, false, &t));
  EXPECT(ACAP_NULL_ARGUMENT, acap_chat_template_new(model, NULL, NULL, false, NULL));
  EXPECT(ACAP_NULL_ARGUMENT, acap_chat_template_apply(NULL, model, msgs, 2, true, &a));
  CHECK(t == SENTINEL);
  CHECK(!acap_chat_template_is_fallback(NULL) && !acap_chat_template_is_jinja(NULL));
  CHECK(acap_chat_template_origin(NULL) == NULL);
  acap_chat_template_free(NULL);
  acap_chat_template_free(own);
  acap_chat_template_free(chatml);
  return file;
}

static acap_axes *test_axes(const char *axis, const char *axis_no_thr, const char *axis_wrong,
                            const char *not_axis) {
  acap_axes *axes = SENTINEL;
  EXPECT(ACAP_NULL_ARGUMENT, acap_axes_load_file(NULL, &axes));
  EXPECT(ACAP_AXIS_FILE, acap_axes_load_file(not_axis, &axes));
  CHECK(strstr(acap_last_error_message(), not_axis) != NULL);
  EXPECT(ACAP_AXIS_FILE, acap_axes_load_file("/nonexistent/axis.gguf", &axes));
  EXPECT(ACAP_NULL_ARGUMENT, acap_axes_load_memory(NULL, 10, &axes));
  unsigned char junk[16] = "GGUF not really";
  EXPECT(ACAP_AXIS_FILE, acap_axes_load_memory(junk, sizeof junk, &axes));
  CHECK(axes == SENTINEL);

  OK(acap_axes_load_file(axis, &axes));
  acap_axes_info ai;
  OK(acap_axes_get_info(axes, &ai));
  CHECK(ai.n_embd == 256 && ai.n_files == 1 && ai.n_layers == 5 && ai.first_layer == 2 &&
        ai.last_layer == 6 && ai.n_thresholds == 5);
  EXPECT(ACAP_NULL_ARGUMENT, acap_axes_get_info(NULL, &ai));

  /* A file of another length does not join the set; the set is unchanged. */
  EXPECT(ACAP_AXIS_MISMATCH, acap_axes_add_file(axes, axis_wrong));
  EXPECT(ACAP_AXIS_FILE, acap_axes_add_file(axes, not_axis));
  EXPECT(ACAP_NULL_ARGUMENT, acap_axes_add_file(NULL, axis));
  OK(acap_axes_get_info(axes, &ai));
  CHECK(ai.n_files == 1);

  /* From memory, and summing a second file. */
  FILE *f = fopen(axis_no_thr, "rb");
  CHECK(f != NULL);
  static unsigned char bytes[1 << 16];
  size_t len = f ? fread(bytes, 1, sizeof bytes, f) : 0;
  if (f) fclose(f);
  acap_axes *mem = NULL;
  OK(acap_axes_load_memory(bytes, len, &mem));
  OK(acap_axes_get_info(mem, &ai));
  CHECK(ai.n_thresholds == 0 && ai.n_layers == 5);
  OK(acap_axes_add_memory(mem, bytes, len));
  OK(acap_axes_add_file(mem, axis));
  OK(acap_axes_get_info(mem, &ai));
  CHECK(ai.n_files == 3 && ai.n_thresholds == 0); /* thresholds from the first file only */
  EXPECT(ACAP_AXIS_FILE, acap_axes_add_memory(mem, junk, sizeof junk));
  acap_axes_free(mem);
  return axes;
}

static void test_session(acap_model *model, acap_axes *axes, const char *axis_no_thr,
                         const char *axis_wrong, const char *cvec_path,
                         acap_chat_template *chatml_file) {
  acap_session_params sp = acap_session_params_default();
  CHECK(sp.n_ctx == 4096 && sp.n_ubatch <= sp.n_batch);
  sp.n_ctx = 256;
  sp.n_threads = 1;
  sp.n_threads_batch = 1;
  acap_session *s = SENTINEL;
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_new(NULL, &sp, &s));
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_new(model, &sp, NULL));
  acap_session_params bad = sp;
  bad.n_ubatch = 0;
  EXPECT(ACAP_INVALID_ARGUMENT, acap_session_new(model, &bad, &s));
  CHECK(strstr(acap_last_error_message(), "n_ubatch") != NULL);
  CHECK(s == SENTINEL);
  OK(acap_session_new(model, &sp, &s));
  uint32_t n_ctx = 0;
  OK(acap_session_n_ctx(s, &n_ctx));
  CHECK(n_ctx == 256);
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_n_ctx(NULL, &n_ctx));

  acap_generate_params gp = greedy(24);
  acap_generation_stats st;

  /* Uncapped greedy completion. */
  char *uncapped = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &uncapped, &st));
  CHECK(st.generated_tokens == 24 && st.stop_reason == ACAP_STOP_MAX_TOKENS);
  CHECK(st.prompt_tokens > 10 && st.prompt_ms >= 0.0 && st.generation_ms > 0.0);
  print_out("uncapped", uncapped);
  bool on = true;
  OK(acap_session_capping_enabled(s, &on));
  CHECK(!on);
  size_t n_layers = 99;
  OK(acap_session_cap_layer_count(s, &n_layers));
  CHECK(n_layers == 0);

  /* The same through the streaming callback, which must agree piece by piece. */
  collector c;
  memset(&c, 0, sizeof c);
  OK(acap_session_generate(s, PROMPT, &gp, collect, &c, &st));
  CHECK(strcmp(c.text, uncapped) == 0 && c.pieces > 0);
  CHECK(st.cached_tokens > 0); /* the prompt came from the KV cache */
  OK(acap_session_generate(s, PROMPT, &gp, NULL, NULL, NULL)); /* no callback, no stats */

  /* Capping: error paths first, each leaving the session uncapped. */
  acap_cap_params cp = acap_cap_params_default();
  CHECK(cp.alpha == 1.0f && !cp.has_threshold && cp.layer_start == 0 && cp.layer_end == 0);
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_set_capping(s, NULL, &cp));
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_set_capping(NULL, axes, &cp));
  acap_axes *wrong = NULL, *no_thr = NULL;
  OK(acap_axes_load_file(axis_wrong, &wrong));
  EXPECT(ACAP_AXIS_MISMATCH, acap_session_set_capping(s, wrong, &cp));
  CHECK(strstr(acap_last_error_message(), "n_embd") != NULL);
  OK(acap_axes_load_file(axis_no_thr, &no_thr));
  EXPECT(ACAP_THRESHOLD, acap_session_set_capping(s, no_thr, &cp));
  acap_cap_params nothing = cp;
  nothing.layer_start = 7;
  nothing.layer_end = 7;
  EXPECT(ACAP_CAP_CONFIG, acap_session_set_capping(s, axes, &nothing));
  acap_cap_params bad_alpha = cp;
  bad_alpha.alpha = 1.5f;
  EXPECT(ACAP_INVALID_ARGUMENT, acap_session_set_capping(s, axes, &bad_alpha));
  OK(acap_session_capping_enabled(s, &on));
  CHECK(!on);

  /* Capped with the file's thresholds. */
  OK(acap_session_set_capping(s, axes, NULL));
  OK(acap_session_capping_enabled(s, &on));
  CHECK(on);
  char *capped = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &capped, &st));
  print_out("capped", capped);
  CHECK(strcmp(capped, uncapped) != 0);
  OK(acap_session_cap_layer_count(s, &n_layers));
  CHECK(n_layers == 5);
  acap_layer_stats stats[8];
  size_t n_stats = 99;
  EXPECT(ACAP_BUFFER_TOO_SMALL, acap_session_cap_stats(s, stats, 2, &n_stats));
  CHECK(n_stats == 99);
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_cap_stats(s, NULL, 8, &n_stats));
  OK(acap_session_cap_stats(s, stats, 8, &n_stats));
  CHECK(n_stats == 5);
  for (size_t i = 0; i < n_stats; i++) {
    CHECK(stats[i].layer == 2 + i);
    CHECK(stats[i].rows_seen > 0 && stats[i].rows_capped > 0 &&
          stats[i].rows_capped <= stats[i].rows_seen);
    CHECK(stats[i].mean_excess > 0.0 && stats[i].max_excess > 0.0f);
  }

  /* A failed reconfiguration keeps the working one: same output as before. */
  EXPECT(ACAP_AXIS_MISMATCH, acap_session_set_capping(s, wrong, &cp));
  char *again = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &again, NULL));
  CHECK(strcmp(again, capped) == 0);
  acap_string_free(again);

  /* Telemetry reset; disabling gives the uncapped text and sees no rows. */
  OK(acap_session_reset_cap_stats(s));
  OK(acap_session_cap_stats(s, stats, 8, &n_stats));
  CHECK(n_stats == 5 && stats[0].rows_seen == 0);
  OK(acap_session_set_capping_enabled(s, false));
  OK(acap_session_capping_enabled(s, &on));
  CHECK(!on);
  char *disabled = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &disabled, NULL));
  CHECK(strcmp(disabled, uncapped) == 0);
  acap_string_free(disabled);
  OK(acap_session_cap_stats(s, stats, 8, &n_stats));
  CHECK(stats[0].rows_seen == 0);
  OK(acap_session_set_capping_enabled(s, true));

  /* Alpha 0 is a no-op cap; bad alpha is refused and keeps the old one. */
  OK(acap_session_set_cap_alpha(s, 0.0f));
  EXPECT(ACAP_INVALID_ARGUMENT, acap_session_set_cap_alpha(s, -1.0f));
  char *alpha0 = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &alpha0, NULL));
  CHECK(strcmp(alpha0, uncapped) == 0);
  acap_string_free(alpha0);
  OK(acap_session_set_cap_alpha(s, 1.0f));

  /* Per-layer and CLI-style thresholds. */
  EXPECT(ACAP_CAP_CONFIG, acap_session_set_layer_threshold(s, 1, 0.0f));
  EXPECT(ACAP_THRESHOLD, acap_session_set_layer_threshold(s, 3, 1.0f / 0.0f));
  for (uint32_t l = 2; l <= 6; l++) OK(acap_session_set_layer_threshold(s, l, 1e6f));
  OK(acap_session_reset_cap_stats(s));
  char *loose = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &loose, NULL));
  CHECK(strcmp(loose, uncapped) == 0); /* nothing reaches tau = 1e6 */
  acap_string_free(loose);
  OK(acap_session_cap_stats(s, stats, 8, &n_stats));
  CHECK(stats[0].rows_seen > 0 && stats[0].rows_capped == 0 && stats[0].tau == 1e6f);
  OK(acap_session_set_cap_threshold(s, false, 0.0f)); /* back to the file's thresholds */
  char *refile = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &refile, NULL));
  CHECK(strcmp(refile, capped) == 0);
  acap_string_free(refile);
  EXPECT(ACAP_THRESHOLD, acap_session_set_cap_threshold(s, true, 0.0f / 0.0f));

  /* CLI threshold with a file that has none: tau = -T. */
  acap_cap_params cli = cp;
  cli.has_threshold = true;
  cli.threshold = 2.5f;
  OK(acap_session_set_capping(s, no_thr, &cli));
  OK(acap_session_cap_stats(s, stats, 8, &n_stats));
  CHECK(n_stats == 5 && stats[0].tau == -2.5f);
  OK(acap_session_set_capping(s, axes, NULL));
  OK(acap_session_clear_capping(s));
  OK(acap_session_cap_layer_count(s, &n_layers));
  CHECK(n_layers == 0);
  OK(acap_session_set_capping(s, axes, NULL));

  /* Streaming: stop from the callback; re-entrant calls are refused. */
  memset(&c, 0, sizeof c);
  c.stop_after = 3;
  c.session = s;
  OK(acap_session_generate(s, PROMPT, &gp, collect, &c, &st));
  CHECK(c.pieces == 3 && st.stop_reason == ACAP_STOP_CANCELLED);
  CHECK(c.reentrant == ACAP_BUSY);

  /* Cancel from another thread. */
  cancel_state cs;
  cs.session = s;
  atomic_init(&cs.started, 0);
  atomic_init(&cs.cancelled, 0);
  pthread_t th;
  CHECK(pthread_create(&th, NULL, canceller, &cs) == 0);
  acap_generate_params unlimited = greedy(-1);
  OK(acap_session_generate(s, PROMPT, &unlimited, wait_for_cancel, &cs, &st));
  pthread_join(th, NULL);
  CHECK(st.stop_reason == ACAP_STOP_CANCELLED && st.generated_tokens < 10);
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_cancel(NULL));
  OK(acap_session_cancel(s)); /* nothing running: harmless, next call unaffected */
  char *after_cancel = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &after_cancel, &st));
  CHECK(strcmp(after_cancel, capped) == 0 && st.stop_reason == ACAP_STOP_MAX_TOKENS);
  acap_string_free(after_cancel);

  EXPECT_TEXT(s, capped);
  /* Stop strings, grammar, bad parameters. */
  acap_generate_params stopping = gp;
  char stop_at[8] = {0};
  strncpy(stop_at, capped + 4, 3); /* a string that does occur */
  const char *stops[1] = {stop_at};
  stopping.stop = stops;
  stopping.n_stop = 1;
  char *stopped = NULL;
  OK(acap_session_complete(s, PROMPT, &stopping, &stopped, &st));
  CHECK(st.stop_reason == ACAP_STOP_STRING && strstr(stopped, stop_at) == NULL);
  CHECK(strncmp(stopped, capped, strlen(stopped)) == 0);
  acap_string_free(stopped);
  EXPECT_TEXT(s, capped);
  acap_generate_params yn = gp;
  yn.sampling.grammar = "root ::= \"yes\" | \"no\"";
  char *answer = NULL;
  OK(acap_session_complete(s, "Answer:", &yn, &answer, &st));
  CHECK(strcmp(answer, "yes") == 0 || strcmp(answer, "no") == 0);
  acap_string_free(answer);
  EXPECT_TEXT(s, capped);
  yn.sampling.grammar = "root ::= (";
  answer = SENTINEL;
  EXPECT(ACAP_GRAMMAR, acap_session_complete(s, "Answer:", &yn, &answer, &st));
  CHECK(answer == SENTINEL);
  EXPECT_TEXT(s, capped);
  acap_generate_params badp = gp;
  badp.sampling.top_p = 2.0f;
  EXPECT(ACAP_INVALID_ARGUMENT, acap_session_generate(s, PROMPT, &badp, NULL, NULL, NULL));
  CHECK(strstr(acap_last_error_message(), "top_p") != NULL);
  badp = gp;
  badp.max_tokens = -5;
  EXPECT(ACAP_INVALID_ARGUMENT, acap_session_generate(s, PROMPT, &badp, NULL, NULL, NULL));
  badp = gp;
  badp.n_stop = 2; /* stop is NULL */
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_generate(s, PROMPT, &badp, NULL, NULL, NULL));
  EXPECT_TEXT(s, capped);
  EXPECT(ACAP_INVALID_UTF8, acap_session_generate(s, "\xc3\x28", &gp, NULL, NULL, NULL));
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_generate(s, NULL, &gp, NULL, NULL, NULL));
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_complete(s, PROMPT, &gp, NULL, NULL));
  OK(acap_session_generate(s, "", &gp, NULL, NULL, NULL)); /* BOS alone is a prompt */
  EXPECT_TEXT(s, capped);
  static char longp[8192];
  for (size_t i = 0; i + 4 < sizeof longp; i += 4) memcpy(longp + i, "cat ", 4);
  EXPECT(ACAP_CONTEXT_FULL, acap_session_generate(s, longp, &gp, NULL, NULL, NULL));
  char *after_errors = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &after_errors, NULL));
  CHECK(strcmp(after_errors, capped) == 0); /* use after failed calls */
  acap_string_free(after_errors);

  /* Chat, with the model's template, two turns reusing the cache. */
  OK(acap_session_set_capping_enabled(s, false));
  acap_chat_message turn1[1] = {{"user", "Tell me about cats."}};
  memset(&c, 0, sizeof c);
  OK(acap_session_chat(s, turn1, 1, NULL, &gp, collect, &c, &st));
  print_out("chat", c.text);
  acap_chat_message turn2[3] = {
      {"user", "Tell me about cats."}, {"assistant", c.text}, {"user", "And dogs?"}};
  collector c2;
  memset(&c2, 0, sizeof c2);
  OK(acap_session_chat(s, turn2, 3, "llama3", &gp, collect, &c2, &st));
  CHECK(st.cached_tokens > 0 && c2.pieces > 0);
  EXPECT(ACAP_CHAT_TEMPLATE, acap_session_chat(s, turn1, 1, "bogus", &gp, NULL, NULL, NULL));
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_chat(s, NULL, 1, NULL, &gp, NULL, NULL, NULL));
  /* A resolved template (here chatml from a Jinja file) replies as the built-in chatml. */
  collector c3, c4;
  memset(&c3, 0, sizeof c3);
  memset(&c4, 0, sizeof c4);
  OK(acap_session_chat(s, turn1, 1, "chatml", &gp, collect, &c3, &st));
  OK(acap_session_chat_with(s, turn1, 1, chatml_file, &gp, collect, &c4, &st));
  CHECK(c3.pieces > 0 && strcmp(c3.text, c4.text) == 0);
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_chat_with(s, turn1, 1, NULL, &gp, NULL, NULL, NULL));
  acap_chat_template_free(chatml_file);
  OK(acap_session_set_capping_enabled(s, true));

  /* Reward evaluator, on a session with room for the rubric; capped, to see it switched off. */
  acap_session_params big = sp;
  big.n_ctx = 2048;
  acap_session *judge = NULL;
  OK(acap_session_new(model, &big, &judge));
  OK(acap_session_set_capping(judge, axes, NULL));
  acap_evaluator_params ep = acap_evaluator_params_default();
  CHECK(ep.dimensions == 6 && ep.max_tokens == 1000 && ep.temperature == 0.3f &&
        ep.system_prompt == NULL && ep.seed == ACAP_SEED_RANDOM);
  ep.seed = 5;
  acap_evaluation *ev = SENTINEL;
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_evaluate(judge, NULL, "r", &ep, &ev));
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_evaluate(judge, "p", "r", &ep, NULL));
  acap_evaluator_params bad_ep = ep;
  bad_ep.dimensions = 4;
  EXPECT(ACAP_INVALID_ARGUMENT, acap_session_evaluate(judge, "p", "r", &bad_ep, &ev));
  CHECK(ev == SENTINEL);
  OK(acap_session_evaluate(judge, "How do I bake bread?", "Knead and bake.", &ep, &ev));
  CHECK(acap_evaluation_dimension_count(ev) == 6);
  CHECK(strcmp(acap_evaluation_dimension_name(ev, 0), "Acknowledgment") == 0);
  CHECK(acap_evaluation_dimension_name(ev, 6) == NULL);
  for (size_t i = 0; i < 6; i++) {
    float v = acap_evaluation_score(ev, i);
    CHECK(v >= 1.0f && v <= 10.0f);
  }
  CHECK(isnan(acap_evaluation_score(ev, 6)));
  CHECK(acap_evaluation_overall(ev) >= 1.0f && acap_evaluation_overall(ev) <= 10.0f);
  CHECK(!acap_evaluation_is_fallback(ev));
  CHECK(acap_evaluation_red_flags(ev) != NULL);
  CHECK(strncmp(acap_evaluation_raw(ev), "EVALUATION\n\n", 12) == 0);
  acap_evaluation_free(ev);
  OK(acap_session_capping_enabled(judge, &on));
  CHECK(on); /* restored */
  OK(acap_session_cap_stats(judge, stats, 8, &n_stats));
  CHECK(n_stats == 5 && stats[0].rows_seen == 0); /* nothing capped while evaluating */
  acap_session_free(judge);
  /* Parsing evaluator text from elsewhere. */
  ev = NULL;
  OK(acap_evaluation_parse("Acknowledgment: 8/10\nRed flags: none\n\nOverall: 7/10", 5, &ev));
  CHECK(acap_evaluation_dimension_count(ev) == 5 && acap_evaluation_score(ev, 0) == 8.0f);
  CHECK(isnan(acap_evaluation_score(ev, 1)) && acap_evaluation_overall(ev) == 7.0f);
  CHECK(strcmp(acap_evaluation_red_flags(ev), "none") == 0);
  acap_evaluation_free(ev);
  OK(acap_evaluation_parse("no scores here", 6, &ev));
  CHECK(isnan(acap_evaluation_overall(ev)) && acap_evaluation_is_fallback(ev));
  CHECK(acap_evaluation_red_flags(ev) == NULL);
  acap_evaluation_free(ev);
  EXPECT(ACAP_INVALID_ARGUMENT, acap_evaluation_parse("x", 7, &ev));
  EXPECT(ACAP_NULL_ARGUMENT, acap_evaluation_parse(NULL, 6, &ev));
  CHECK(acap_evaluation_dimension_count(NULL) == 0 && isnan(acap_evaluation_overall(NULL)));
  CHECK(acap_evaluation_raw(NULL) == NULL && acap_evaluation_dimension_name(NULL, 0) == NULL);
  CHECK(isnan(acap_evaluation_score(NULL, 0)) && acap_evaluation_is_fallback(NULL));
  CHECK(acap_evaluation_red_flags(NULL) == NULL);
  acap_evaluation_free(NULL);

  /* Axis extraction. */
  const char *ex_prompts[3] = {"How do I make a cup of tea properly?",
                               "Tell me about the history of Rome.",
                               "Why is the sky blue during the day?"};
  const char *generic[2] = {"", "You are a helpful assistant."};
  acap_extract_params xp = acap_extract_params_default();
  CHECK(xp.max_tokens == 512 && xp.percentile == 25.0f && xp.batch_sequences == 8);
  xp.persona_system = "You are Sage.";
  xp.generic_systems = generic;
  xp.n_generic_systems = 2;
  xp.layer_start = 2;
  xp.layer_end = 6;
  xp.threads = 1;
  char out_path[4200];
  snprintf(out_path, sizeof out_path, "%s.extracted.gguf", cvec_path);
  OK(acap_axis_extract(model, ex_prompts, 3, &xp, out_path));
  acap_axes *extracted = NULL;
  OK(acap_axes_load_file(out_path, &extracted));
  acap_axes_info xi;
  OK(acap_axes_get_info(extracted, &xi));
  CHECK(xi.n_layers == 5 && xi.first_layer == 2 && xi.last_layer == 6 && xi.n_thresholds == 5);
  acap_axes_free(extracted);
  remove(out_path);
  acap_extract_params bad_xp = xp;
  bad_xp.layer_start = 9;
  bad_xp.layer_end = 12;
  EXPECT(ACAP_INVALID_ARGUMENT, acap_axis_extract(model, ex_prompts, 3, &bad_xp, out_path));
  CHECK(strstr(acap_last_error_message(), "9 12") != NULL);
  EXPECT(ACAP_INVALID_ARGUMENT, acap_axis_extract(model, ex_prompts, 0, &xp, out_path));
  bad_xp = xp;
  bad_xp.persona_system = NULL;
  EXPECT(ACAP_NULL_ARGUMENT, acap_axis_extract(model, ex_prompts, 3, &bad_xp, out_path));
  FILE *gone = fopen(out_path, "rb");
  CHECK(gone == NULL); /* nothing written on failure */
  if (gone) fclose(gone);

  /* Control vectors. */
  acap_control_vector *cv = SENTINEL;
  const char *bad_paths[1] = {"/nonexistent/cvec.gguf"};
  EXPECT(ACAP_CONTROL_VECTOR, acap_control_vector_load(bad_paths, NULL, 1, 0, 0, &cv));
  EXPECT(ACAP_NULL_ARGUMENT, acap_control_vector_load(NULL, NULL, 1, 0, 0, &cv));
  float nan_scale = 0.0f / 0.0f;
  const char *paths[1] = {cvec_path};
  EXPECT(ACAP_CONTROL_VECTOR, acap_control_vector_load(paths, &nan_scale, 1, 0, 0, &cv));
  CHECK(cv == SENTINEL);
  float scale = 4.0f;
  OK(acap_control_vector_load(paths, &scale, 1, 1, 4, &cv));
  OK(acap_session_set_control_vector(s, cv));
  acap_control_vector_free(cv); /* the session keeps its copy */
  char *steered = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &steered, NULL));
  CHECK(strcmp(steered, capped) != 0);
  acap_string_free(steered);
  OK(acap_session_set_control_vector(s, NULL));
  OK(acap_session_clear(s));
  char *unsteered = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &unsteered, NULL));
  CHECK(strcmp(unsteered, capped) == 0);
  acap_string_free(unsteered);
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_clear(NULL));

  /* Free in any order: the model goes first, the session keeps working. */
  acap_model_free(model);
  char *orphan = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &orphan, NULL));
  CHECK(strcmp(orphan, capped) == 0);
  acap_string_free(orphan);

  acap_axes_free(wrong);
  acap_axes_free(no_thr);
  acap_string_free(uncapped);
  acap_string_free(capped);
  acap_session_free(s);
}

/* H-neuron suppression: strict loading, a fit check against the model, on/off. */
static void test_h_suppress(acap_model *model, const char *h_path, const char *h_short,
                            const char *not_h) {
  acap_h_suppress *h = SENTINEL;
  EXPECT(ACAP_H_SUPPRESS, acap_h_suppress_load(not_h, &h));
  CHECK(strstr(acap_last_error_message(), "is not h_suppress.N") != NULL);
  CHECK(h == SENTINEL);
  EXPECT(ACAP_NULL_ARGUMENT, acap_h_suppress_load(NULL, &h));
  EXPECT(ACAP_NULL_ARGUMENT, acap_h_suppress_load(h_path, NULL));
  OK(acap_h_suppress_load(h_path, &h));
  CHECK(acap_h_suppress_neurons(h) == 8 * 384);
  CHECK(acap_h_suppress_neurons(NULL) == 0);

  acap_session_params sp = acap_session_params_default();
  sp.n_ctx = 256;
  sp.n_threads = 1;
  acap_session *s = NULL;
  OK(acap_session_new(model, &sp, &s));
  acap_generate_params gp = greedy(16);
  char *plain = NULL, *suppressed = NULL, *off = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &plain, NULL));
  OK(acap_session_set_h_suppress(s, h));
  acap_h_suppress_free(h); /* the session keeps its reference */
  OK(acap_session_complete(s, PROMPT, &gp, &suppressed, NULL));
  CHECK(strcmp(plain, suppressed) != 0);
  OK(acap_session_set_h_suppress_enabled(s, false));
  OK(acap_session_complete(s, PROMPT, &gp, &off, NULL));
  CHECK(strcmp(plain, off) == 0);
  OK(acap_session_set_h_suppress_enabled(s, true));

  acap_h_suppress *short_h = NULL;
  OK(acap_h_suppress_load(h_short, &short_h));
  EXPECT(ACAP_H_SUPPRESS, acap_session_set_h_suppress(s, short_h));
  CHECK(strstr(acap_last_error_message(), "h_suppress.1") != NULL);
  CHECK(strstr(acap_last_error_message(), "n_ff = 768") != NULL);
  acap_h_suppress_free(short_h);
  /* The failed call kept the previous suppression. */
  char *kept = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &kept, NULL));
  CHECK(strcmp(kept, suppressed) == 0);
  OK(acap_session_set_h_suppress(s, NULL));
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_set_h_suppress(NULL, NULL));
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_set_h_suppress_enabled(NULL, true));
  acap_h_suppress_free(NULL);
  acap_string_free(plain);
  acap_string_free(suppressed);
  acap_string_free(off);
  acap_string_free(kept);
  acap_session_free(s);
}

/* Deterministic mode: a session's second call (its cache reused where that cannot change
 * the result) gives the same text as the first; switching it on or off is NULL-checked. */
static void test_deterministic(acap_model *model) {
  acap_session_params sp = acap_session_params_default();
  sp.n_ctx = 256;
  sp.n_batch = 8;
  sp.n_ubatch = 8;
  sp.n_threads = 1;
  acap_session *s = NULL;
  OK(acap_session_new(model, &sp, &s));
  OK(acap_session_set_deterministic(s, true));
  acap_generate_params gp = greedy(16);
  char *first = NULL, *again = NULL;
  OK(acap_session_complete(s, PROMPT, &gp, &first, NULL));
  OK(acap_session_complete(s, PROMPT, &gp, &again, NULL));
  CHECK(strcmp(first, again) == 0);
  OK(acap_session_set_deterministic(s, false));
  EXPECT(ACAP_NULL_ARGUMENT, acap_session_set_deterministic(NULL, true));
  acap_string_free(first);
  acap_string_free(again);
  acap_session_free(s);
}

int main(int argc, char **argv) {
  if (argc != 11) {
    fprintf(stderr,
            "usage: %s MODEL AXIS AXIS_NO_THRESHOLDS AXIS_WRONG_EMBD NOT_AN_AXIS CONTROL_VECTOR "
            "CHATML_JINJA BAD_JINJA H_SUPPRESS H_SUPPRESS_SHORT\n",
            argv[0]);
    return 2;
  }
  test_version();
  acap_model *model = test_model(argv[1]);
  test_h_suppress(model, argv[9], argv[10], argv[2]);
  test_deterministic(model);
  acap_chat_template *chatml_file = test_templates(model, argv[7], argv[8]);
  acap_axes *axes = test_axes(argv[2], argv[3], argv[4], argv[5]);
  test_session(model, axes, argv[3], argv[4], argv[6], chatml_file); /* frees both */
  acap_axes_free(axes);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("ALL OK\n");
  return 0;
}
