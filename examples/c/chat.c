/*
 * A minimal capped chat on acap's C API, like `llama-cli -cnv` with the acap flags.
 *
 *   chat -m MODEL [--acap AXIS]... [--acap-threshold T] [--acap-layer-range A B]
 *        [--acap-alpha X] [-sys TEXT] [-n N] [--temp T] [-c N] [-t N]
 *
 * Each line on stdin is a user turn; the reply streams to stdout; capping telemetry of each
 * turn goes to stderr. EOF or "/exit" quits. Build (see README, "Using acap from C/C++"):
 *   cc -std=c11 chat.c $(pkg-config --cflags --libs acap) -o chat
 */
#include <acap.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TURNS 64

static char *dup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static int fail(const char *what, acap_result r) {
  fprintf(stderr, "error: %s: %s (%s)\n", what, acap_last_error_message(), acap_result_name(r));
  return 1;
}

static int32_t print_piece(void *user_data, const char *text, size_t len) {
  (void)user_data;
  fwrite(text, 1, len, stdout);
  fflush(stdout);
  return 0;
}

/* Appends a reply piece to a growing buffer as well as printing it. */
typedef struct {
  char *buf;
  size_t len, cap;
} text_buf;

static int32_t print_and_keep(void *user_data, const char *text, size_t len) {
  text_buf *b = (text_buf *)user_data;
  if (b->len + len + 1 > b->cap) {
    size_t cap = (b->cap + len + 1) * 2;
    char *p = realloc(b->buf, cap);
    if (!p) return 1;
    b->buf = p;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, text, len);
  b->len += len;
  b->buf[b->len] = '\0';
  return print_piece(NULL, text, len);
}

int main(int argc, char **argv) {
  const char *model_path = NULL, *system = NULL, *chat_template = NULL, *template_file = NULL;
  bool jinja = false;
  const char *axis_paths[16];
  int n_axes = 0;
  acap_cap_params cap = acap_cap_params_default();
  acap_session_params sp = acap_session_params_default();
  acap_generate_params gp = acap_generate_params_default();
  gp.max_tokens = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "-m") && more) model_path = argv[++i];
    else if (!strcmp(a, "--acap") && more && n_axes < 16) axis_paths[n_axes++] = argv[++i];
    else if (!strcmp(a, "--acap-threshold") && more) {
      cap.has_threshold = true;
      cap.threshold = strtof(argv[++i], NULL);
    } else if (!strcmp(a, "--acap-layer-range") && i + 2 < argc) {
      cap.layer_start = atoi(argv[++i]);
      cap.layer_end = atoi(argv[++i]);
    } else if (!strcmp(a, "--acap-alpha") && more) cap.alpha = strtof(argv[++i], NULL);
    else if (!strcmp(a, "-sys") && more) system = argv[++i];
    else if (!strcmp(a, "--chat-template") && more) chat_template = argv[++i];
    else if (!strcmp(a, "--chat-template-file") && more) template_file = argv[++i];
    else if (!strcmp(a, "--jinja")) jinja = true;
    else if (!strcmp(a, "-n") && more) gp.max_tokens = atoi(argv[++i]);
    else if (!strcmp(a, "--temp") && more) gp.sampling.temperature = strtof(argv[++i], NULL);
    else if (!strcmp(a, "-c") && more) sp.n_ctx = (uint32_t)atoi(argv[++i]);
    else if (!strcmp(a, "-t") && more) sp.n_threads = (uint32_t)atoi(argv[++i]);
    else {
      fprintf(stderr, "error: unknown or incomplete argument '%s'\n", a);
      return 2;
    }
  }
  if (!model_path) {
    fprintf(stderr, "usage: %s -m MODEL [--acap AXIS]... [--chat-template NAME | --chat-template-file F] [--jinja] [options]\n", argv[0]);
    return 2;
  }

  /* Axes are checked before the model loads: a bad file fails fast. */
  acap_axes *axes = NULL;
  acap_result r;
  for (int i = 0; i < n_axes; i++) {
    r = i == 0 ? acap_axes_load_file(axis_paths[0], &axes) : acap_axes_add_file(axes, axis_paths[i]);
    if (r != ACAP_OK) return fail(axis_paths[i], r);
  }
  acap_model *model = NULL;
  if ((r = acap_model_load(model_path, NULL, &model)) != ACAP_OK) return fail("load", r);
  /* The template is resolved once, as acap-cli does; chatml when the model has none. */
  acap_chat_template *tmpl = NULL;
  r = acap_chat_template_new(model, chat_template, template_file, jinja, &tmpl);
  if (r != ACAP_OK) {
    acap_model_free(model);
    return fail("chat template", r);
  }
  if (acap_chat_template_is_fallback(tmpl))
    fprintf(stderr, "warning: the model has no chat template; using chatml "
                    "(pass --chat-template NAME or --chat-template-file FILE)\n");
  acap_session *session = NULL;
  r = acap_session_new(model, &sp, &session);
  acap_model_free(model); /* the session keeps its own reference */
  if (r != ACAP_OK) {
    acap_chat_template_free(tmpl);
    return fail("session", r);
  }
  if (axes) {
    /* Capping was asked for: never run uncapped. */
    r = acap_session_set_capping(session, axes, &cap);
    acap_axes_free(axes);
    if (r != ACAP_OK) {
      acap_session_free(session);
      acap_chat_template_free(tmpl);
      return fail("capping", r);
    }
  }

  acap_chat_message msgs[2 * MAX_TURNS + 1];
  char *owned[2 * MAX_TURNS + 1] = {0};
  size_t n = 0;
  if (system) msgs[n++] = (acap_chat_message){"system", system};
  char line[4096];
  int status = 0;
  while (n + 2 <= 2 * MAX_TURNS && fputs("> ", stderr) >= 0 && fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = '\0';
    if (!strcmp(line, "/exit")) break;
    owned[n] = dup(line);
    msgs[n] = (acap_chat_message){"user", owned[n]};
    n++;
    text_buf reply = {0};
    acap_generation_stats st;
    r = acap_session_chat_with(session, msgs, n, tmpl, &gp, print_and_keep, &reply, &st);
    printf("\n");
    if (r != ACAP_OK) {
      free(reply.buf);
      status = fail("generation", r);
      break;
    }
    owned[n] = reply.buf ? reply.buf : dup("");
    msgs[n] = (acap_chat_message){"assistant", owned[n]};
    n++;
    acap_layer_stats stats[256];
    size_t n_stats = 0;
    if (acap_session_cap_stats(session, stats, 256, &n_stats) == ACAP_OK && n_stats > 0) {
      unsigned long long seen = 0, capped = 0;
      for (size_t i = 0; i < n_stats; i++) {
        seen += stats[i].rows_seen;
        capped += stats[i].rows_capped;
      }
      fprintf(stderr, "[acap] %zu blocks, %llu of %llu capped rows\n", n_stats, capped, seen);
      acap_session_reset_cap_stats(session);
    }
  }
  for (size_t i = 0; i < n; i++) free(owned[i]);
  acap_session_free(session);
  acap_chat_template_free(tmpl);
  return status;
}
