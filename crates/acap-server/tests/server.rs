//! acap-server over real HTTP on loopback, on the tiny model: every endpoint, streaming and
//! not, per-request capping under concurrency, every error path, disconnects, shutdown, and
//! the official `openai` Python client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use acap::{AxisWriter, QuantType};
use serde_json::{Value, json};

fn model() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| acap_testkit::tiny(QuantType::Q8_0))
}

/// An axis for the tiny model that caps every row on blocks 2..6.
fn axis(dir: &Path) -> PathBuf {
    let mut w = AxisWriter::new();
    for l in 2..=6u32 {
        w = w
            .with_direction(l, acap_testkit::random_vector(u64::from(l) + 7, 256))
            .with_threshold(l, -1e6);
    }
    let path = dir.join("axis.gguf");
    w.write_file(&path).unwrap();
    path
}

struct Server {
    child: Child,
    port: u16,
    /// What it printed before it was ready.
    startup: String,
}

/// `acap-server -m MODEL --port 0 -t 1 EXTRA..`, its stderr piped.
fn spawn_server(model: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_acap-server"))
        .arg("-m")
        .arg(model)
        .args(["--port", "0", "-t", "1"])
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads the server's stderr up to the line with `marker` (followed by `HOST:PORT`): the
/// port, and everything printed until then.
fn port_after(err: &mut BufReader<std::process::ChildStderr>, marker: &str) -> (u16, String) {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "server exited before printing {marker:?}: {seen}"
        );
        seen += &line;
        if let Some(rest) = line.split(marker).nth(1) {
            let addr = rest.split_whitespace().next().unwrap();
            return (addr.rsplit(':').next().unwrap().parse().unwrap(), seen);
        }
    }
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        Self::start_model(model(), extra)
    }

    fn start_model(model: &Path, extra: &[&str]) -> Self {
        let mut child = spawn_server(model, extra);
        let mut err = BufReader::new(child.stderr.take().unwrap());
        // "listening on http://.. (loading the model)", then "ready on http://..".
        let (port, startup) = port_after(&mut err, "ready on http://");
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        Self {
            child,
            port,
            startup,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    /// The status line and headers, as received.
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
fn request(port: u16, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req += "Content-Type: application/json\r\n";
    }
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    req += body;
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Reply {
        status,
        head: head.to_owned(),
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out += &rest[..n];
        s = &rest[n + 2..];
    }
    out
}

fn post(port: u16, path: &str, body: &Value) -> Reply {
    request(port, "POST", path, &body.to_string(), &[])
}

fn chat_body(content: &str, extra: Value) -> Value {
    let mut b = json!({"messages": [{"role": "user", "content": content}],
                       "max_tokens": 12, "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// The text of a streamed reply, and its final chunk.
fn streamed(body: &str, chat: bool) -> (String, Value) {
    let mut text = String::new();
    let mut last = Value::Null;
    let mut done = false;
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        let piece = if chat {
            v["choices"][0]["delta"]["content"].as_str()
        } else {
            v["choices"][0]["text"].as_str()
        };
        text += piece.unwrap_or("");
        last = v;
    }
    assert!(done, "no [DONE] in {body}");
    (text, last)
}

#[test]
fn endpoints_streaming_and_per_request_capping() {
    let dir = tempfile_dir();
    let ax = axis(dir.path());
    let srv = Server::start(&["-np", "2", "-c", "2048", "--acap", ax.to_str().unwrap()]);
    let port = srv.port;
    assert_eq!(
        request(port, "GET", "/health", "", &[]).json()["status"],
        "ok"
    );
    let models = request(port, "GET", "/v1/models", "", &[]).json();
    assert_eq!(models["object"], "list");
    assert!(models["data"][0]["id"].is_string());

    // Chat: capped by default, uncapped on request; streaming gives the same text.
    let capped = post(
        port,
        "/v1/chat/completions",
        &chat_body("Tell me about cats.", json!({})),
    );
    assert_eq!(capped.status, 200, "{}", capped.body);
    let capped = capped.json();
    let text = capped["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(capped["usage"]["completion_tokens"], 12);
    assert_eq!(capped["choices"][0]["finish_reason"], "length");
    assert_eq!(capped["acap"]["applied"]["enabled"], true);
    assert_eq!(capped["acap"]["applied"]["layers"], json!([2, 3, 4, 5, 6]));
    assert!(
        capped["acap"]["layers"]["4"]["rows_capped"]
            .as_u64()
            .unwrap()
            > 0
    );
    let uncapped = post(
        port,
        "/v1/chat/completions",
        &chat_body("Tell me about cats.", json!({"acap": {"enabled": false}})),
    )
    .json();
    let plain = uncapped["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert_ne!(plain, text, "capping must change the text");
    assert_eq!(uncapped["acap"]["layers"], json!({}));
    let s = post(
        port,
        "/v1/chat/completions",
        &chat_body("Tell me about cats.", json!({"stream": true})),
    );
    assert_eq!(s.status, 200);
    let (stext, last) = streamed(&s.body, true);
    assert_eq!(stext, text);
    assert_eq!(last["usage"]["completion_tokens"], 12);
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert!(last["acap"]["layers"]["2"]["rows_seen"].as_u64().unwrap() > 0);
    // Per-request parameters: alpha 0 caps nothing, so it equals the uncapped text.
    let a0 = post(
        port,
        "/v1/chat/completions",
        &chat_body("Tell me about cats.", json!({"acap": {"alpha": 0.0}})),
    )
    .json();
    assert_eq!(a0["choices"][0]["message"]["content"], plain);
    assert_eq!(a0["acap"]["applied"]["alpha"], 0.0);
    let ranged = post(
        port,
        "/v1/chat/completions",
        &chat_body(
            "Hi",
            json!({"acap": {"layer_range": [3, 4], "threshold": 3.5}}),
        ),
    )
    .json();
    assert_eq!(ranged["acap"]["applied"]["layers"], json!([3, 4]));

    // Completions, streamed and not.
    let c = post(
        port,
        "/v1/completions",
        &json!({"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}),
    );
    assert_eq!(c.status, 200, "{}", c.body);
    let ctext = c.json()["choices"][0]["text"].as_str().unwrap().to_owned();
    let cs = post(
        port,
        "/v1/completions",
        &json!({"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "stream": true}),
    );
    assert_eq!(streamed(&cs.body, false).0, ctext);
    // Stop strings and grammar.
    let g = post(
        port,
        "/v1/completions",
        &json!({"prompt": "Answer:", "max_tokens": 8, "temperature": 0, "grammar": "root ::= \"yes\" | \"no\""}),
    )
    .json();
    let answer = g["choices"][0]["text"].as_str().unwrap();
    assert!(answer == "yes" || answer == "no", "{answer}");

    // The evaluator: uncapped, parsed.
    let e = post(
        port,
        "/v1/evaluate",
        &json!({"prompt": "How do I bake bread?", "response": "Knead and bake.", "seed": 1}),
    );
    assert_eq!(e.status, 200, "{}", e.body);
    let e = e.json();
    assert_eq!(e["complete"], true, "{e}");
    assert_eq!(e["acap"]["applied"]["enabled"], false);
    assert_eq!(e["scores"].as_object().unwrap().len(), 6);

    // Metrics.
    let m = request(port, "GET", "/metrics", "", &[]);
    assert_eq!(m.status, 200);
    for needle in [
        "acap_requests_total{endpoint=\"chat\"}",
        "acap_generated_tokens_total",
        "acap_tokens_per_second",
        "acap_queue_depth 0",
        "acap_rows_capped_total{layer=\"4\"}",
    ] {
        assert!(m.body.contains(needle), "{needle} missing from {}", m.body);
    }
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn concurrent_mixed_requests_match_their_solo_texts() {
    let dir = tempfile_dir();
    let ax = axis(dir.path());
    let srv = Server::start(&["-np", "4", "-c", "2048", "--acap", ax.to_str().unwrap()]);
    let port = srv.port;
    let prompts = [
        "Tell me a story about a cat.",
        "What is the capital of France?",
        "Write a poem about the sea.",
        "How do I bake bread?",
        "Explain gravity to a child.",
        "List three colours.",
        "Why do birds sing?",
        "Hello there!",
    ];
    let body = |i: usize| chat_body(prompts[i], json!({"acap": {"enabled": i % 2 == 0}}));
    let solo: Vec<Value> = (0..8)
        .map(|i| post(port, "/v1/chat/completions", &body(i)).json())
        .collect();
    let together: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let b = body(i);
                s.spawn(move || post(port, "/v1/chat/completions", &b).json())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for i in 0..8 {
        assert_eq!(
            together[i]["choices"][0]["message"]["content"],
            solo[i]["choices"][0]["message"]["content"],
            "request {i} (capped {})",
            i % 2 == 0
        );
        if i % 2 == 1 {
            assert_eq!(
                together[i]["acap"]["layers"],
                json!({}),
                "uncapped request {i}"
            );
        } else {
            assert!(
                together[i]["acap"]["layers"]["3"]["rows_capped"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
        }
    }
}

#[test]
fn error_paths() {
    let dir = tempfile_dir();
    let ax = axis(dir.path());
    let srv = Server::start(&[
        "-np",
        "1",
        "-c",
        "256",
        "--api-key",
        "sekret",
        "--acap",
        ax.to_str().unwrap(),
    ]);
    let port = srv.port;
    let auth = [("Authorization", "Bearer sekret")];
    let chat = |body: &str| request(port, "POST", "/v1/chat/completions", body, &auth);
    // 401: missing and wrong key; /health stays open.
    let r = request(
        port,
        "POST",
        "/v1/chat/completions",
        &chat_body("Hi", json!({})).to_string(),
        &[],
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = request(
        port,
        "POST",
        "/v1/chat/completions",
        &chat_body("Hi", json!({})).to_string(),
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(r.status, 401);
    assert_eq!(request(port, "GET", "/health", "", &[]).status, 200);
    // 400s naming the field.
    for (body, param) in [
        ("{not json".to_owned(), "body"),
        (json!({"messages": "hi"}).to_string(), "messages"),
        (
            json!({"messages": [{"content": "x"}]}).to_string(),
            "messages[0].role",
        ),
        (
            chat_body("Hi", json!({"temperature": "hot"})).to_string(),
            "temperature",
        ),
        (
            chat_body("Hi", json!({"max_tokens": -3})).to_string(),
            "max_tokens",
        ),
        (chat_body("Hi", json!({"top_p": 7})).to_string(), "sampling"),
        (
            chat_body("Hi", json!({"grammar": "root ::= ("})).to_string(),
            "grammar",
        ),
        (chat_body("Hi", json!({"stop": 5})).to_string(), "stop"),
        (
            chat_body("Hi", json!({"stream": "yes"})).to_string(),
            "stream",
        ),
        (
            chat_body("Hi", json!({"acap": {"layer_range": [1]}})).to_string(),
            "acap.layer_range",
        ),
        (
            chat_body("Hi", json!({"acap": {"alpha": 3}})).to_string(),
            "acap",
        ),
        // A misspelt key never runs as the default capping.
        (
            chat_body("Hi", json!({"acap": {"alhpa": 0.5}})).to_string(),
            "acap.alhpa",
        ),
        (
            chat_body(&"word ".repeat(400), json!({})).to_string(),
            "messages",
        ),
    ] {
        let r = chat(&body);
        assert_eq!(r.status, 400, "{param}: {}", r.body);
        assert_eq!(r.json()["error"]["param"], param, "{}", r.body);
    }
    // A client that disconnects mid-stream is cancelled and frees its slot (-np 1). The same
    // request run to its end generates `full` tokens; the dropped one must stop well short,
    // as the generated-token counter shows once the next request (which needs the slot) is
    // done.
    let story = |extra: Value| {
        let mut b = chat_body("Tell me a long story.", json!({"max_tokens": 200}));
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b.to_string()
    };
    let whole = chat(&story(json!({})));
    assert_eq!(whole.status, 200, "{}", whole.body);
    let full = whole.json()["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(
        full >= 100,
        "the uncancelled reply is too short to tell: {full}"
    );
    let before = generated_total(port);
    {
        let body = story(json!({"stream": true}));
        let mut s = open_stream(port, &body, &auth);
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("200"));
        // Dropped here: the connection closes mid-stream.
    }
    let r = chat(&chat_body("Hi", json!({"max_tokens": 4})).to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let next = r.json()["usage"]["completion_tokens"].as_u64().unwrap();
    let dropped = generated_total(port) - before - next;
    assert!(
        dropped < full,
        "the dropped stream generated {dropped} tokens, as many as a whole reply ({full})"
    );
}

/// `acap_generated_tokens_total` from `/metrics` (behind the key `sekret`).
fn generated_total(port: u16) -> u64 {
    let m = request(
        port,
        "GET",
        "/metrics",
        "",
        &[("Authorization", "Bearer sekret")],
    );
    m.body
        .lines()
        .find_map(|l| l.strip_prefix("acap_generated_tokens_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no acap_generated_tokens_total in {}", m.body))
}

/// The value of one sample (`name` with its labels) on a `/metrics` page.
fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {page}"))
}

/// Sends a chat request (with `headers`) and returns the open connection without reading
/// the reply: dropping it hangs up, mid-stream for a streamed request.
fn open_stream(port: u16, body: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

/// Polls `/metrics` until `ok` holds for the page, for at most 10 s.
fn metrics_until(port: u16, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = request(port, "GET", "/metrics", "", &[]).body;
        if ok(&page) {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never showed on /metrics: {page}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Routers and probes see 503 "Loading model" from the moment the port is open until the
/// model is loaded. The model here is a named pipe nobody writes to, so loading blocks on
/// opening it for as long as the test needs.
#[test]
fn health_is_503_while_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.gguf");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut child = spawn_server(&fifo, &[]);
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (port, _) = port_after(&mut err, "listening on http://");
    for path in ["/health", "/v1/health", "/v1/models", "/metrics", "/slots"] {
        let r = request(port, "GET", path, "", &[]);
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert!(r.body.contains("Loading model"), "{path}: {}", r.body);
    }
    let r = request(
        port,
        "POST",
        "/v1/chat/completions",
        &chat_body("Hi", json!({})).to_string(),
        &[],
    );
    assert_eq!(r.status, 503, "{}", r.body);
    let _ = child.kill();
    let _ = child.wait();
}

/// What a router (the Inference Extension's endpoint picker, llm-d) reads off a replica:
/// queued and running requests and the KV cache running requests hold, live.
#[test]
fn router_gauges_follow_running_and_queued_requests() {
    let srv = Server::start(&["-np", "1", "-c", "2048"]);
    let port = srv.port;
    let idle = request(port, "GET", "/metrics", "", &[]).body;
    assert_eq!(sample(&idle, "vllm:num_requests_running"), 0.0);
    assert_eq!(sample(&idle, "vllm:num_requests_waiting"), 0.0);
    assert_eq!(sample(&idle, "vllm:kv_cache_usage_perc"), 0.0);
    assert_eq!(
        sample(
            &idle,
            "vllm:cache_config_info{block_size=\"1\",num_gpu_blocks=\"2048\"}"
        ),
        1.0
    );
    // A long reply holds the one slot; a second request waits behind it.
    let long = chat_body(
        "Tell me a very long story.",
        json!({"max_tokens": 1900, "stream": true}),
    )
    .to_string();
    let first = open_stream(port, &long, &[]);
    // The gauges are read between engine steps: the running count moves when a request
    // starts, its cache usage after the step that decodes its prompt.
    let busy = metrics_until(port, "a running request holding cache", |p| {
        sample(p, "vllm:num_requests_running") == 1.0 && sample(p, "vllm:kv_cache_usage_perc") > 0.0
    });
    let usage = sample(&busy, "vllm:kv_cache_usage_perc");
    assert!(usage <= 1.0, "{usage}");
    let second = open_stream(port, &long, &[]);
    metrics_until(port, "a queued request", |p| {
        sample(p, "vllm:num_requests_waiting") == 1.0
            && sample(p, "llamacpp:requests_deferred") == 1.0
    });
    drop((first, second));
    // Both cancelled: nothing runs, and the prefix the idle slot keeps is not "in use" for a
    // router, though llama-server's ratio still counts it.
    let after = metrics_until(port, "the slot freed", |p| {
        sample(p, "vllm:num_requests_running") == 0.0
            && sample(p, "vllm:num_requests_waiting") == 0.0
    });
    assert_eq!(sample(&after, "vllm:kv_cache_usage_perc"), 0.0);
    assert!(
        sample(&after, "llamacpp:kv_cache_usage_ratio") > 0.0,
        "{after}"
    );
}

#[test]
fn queue_limit_gives_503_and_sigterm_exits_cleanly() {
    let srv = Server::start(&["-np", "1", "-c", "1024", "--queue", "1"]);
    let port = srv.port;
    let long = chat_body("Tell me a very long story.", json!({"max_tokens": 400}));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                let b = long.clone();
                s.spawn(move || post(port, "/v1/chat/completions", &b).status)
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    // SIGTERM: finishes and exits 0.
    let mut srv = srv;
    let pid = srv.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    // The server drains and exits by itself (its --shutdown-timeout bounds the wait).
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The official `openai` Python client (installed into `target/openai-venv` by
/// `scripts/setup.sh`) runs a chat completion, a streamed one and a completion.
#[test]
fn official_openai_python_client() {
    let python = venv_python();
    if !python.exists() {
        // CI installs it (scripts/setup.sh); a developer without it is told, not failed.
        eprintln!(
            "skipped: {} not found; run scripts/setup.sh to install the openai client",
            python.display()
        );
        return;
    }
    let srv = Server::start(&["-np", "2", "-c", "2048", "--api-key", "k"]);
    let script = r#"
import sys, openai
c = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="k")
r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0)
full = r.choices[0].message.content
assert r.usage.completion_tokens == 6, r.usage
parts = []
for ch in c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0, stream=True):
    if ch.choices and ch.choices[0].delta.content:
        parts.append(ch.choices[0].delta.content)
assert "".join(parts) == full, (parts, full)
t = c.completions.create(model="tiny", prompt="Once upon a time", max_tokens=5, temperature=0)
assert t.choices[0].text, t
# response_format through the schema converter; acap's fields through extra_body.
j = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=16,
    temperature=0, response_format={"type": "json_object"}, extra_body={"acap": {"enabled": False}})
assert j.choices[0].message.content.lstrip().startswith("{"), j
assert j.model_extra["acap"]["applied"] == {"enabled": False}, j.model_extra
# Refused, naming the field, never ignored.
for kwargs, field in [({"n": 2}, "n"), ({"logprobs": True}, "logprobs"),
                      ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools")]:
    try:
        c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2, **kwargs)
        raise SystemExit(f"{field} was not refused")
    except openai.BadRequestError as e:
        assert e.body["param"] == field, e.body
try:
    c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], extra_body={"acap": {"alhpa": 0.5}})
    raise SystemExit("acap.alhpa was not refused")
except openai.BadRequestError as e:
    assert e.body["param"] == "acap.alhpa", e.body
print("OPENAI OK")
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(srv.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OPENAI OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A path that is not UTF-8 reaches the loader (and is named in its error); text that must
/// be UTF-8 is refused naming the flag, exit 2, not a panic.
#[test]
fn non_utf8_arguments_are_refused_by_name() {
    use std::os::unix::ffi::OsStrExt;
    let o = Command::new(env!("CARGO_BIN_EXE_acap-server"))
        .arg("-m")
        .arg(std::ffi::OsStr::from_bytes(b"/no/caf\xe9.gguf"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("/no/caf"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_acap-server"))
        .arg("-m")
        .arg(model())
        .arg("--alias")
        .arg(std::ffi::OsStr::from_bytes(b"caf\xe9"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--alias: the value is not valid UTF-8"),
        "{err}"
    );
}

/// The events of a llama-server `/completion` stream: the text, and the last event.
fn native_streamed(body: &str) -> (String, Value) {
    assert!(
        !body.contains("[DONE]"),
        "llama-server's native stream has no [DONE]"
    );
    let mut text = String::new();
    let mut last = Value::Null;
    for data in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let v: Value = serde_json::from_str(data).unwrap();
        text += v["content"].as_str().unwrap();
        last = v;
    }
    (text, last)
}

/// llama-server's own endpoints with its shapes, as the users' scripts call them.
#[test]
fn llama_server_endpoints() {
    let dir = tempfile_dir();
    let axis = axis(dir.path());
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, "first-key\n\nsecond-key\n").unwrap();
    let srv = Server::start(&[
        "--acap",
        axis.to_str().unwrap(),
        "-np",
        "2",
        "-c",
        "1024",
        "--api-key-file",
        keys.to_str().unwrap(),
        "--metrics",
        "-cb",
        "--slots",
        "--threads-http",
        "2",
        "-fa",
        "off",
        "--no-webui",
        "-a",
        "my-alias",
        "--log-disable",
    ]);
    let auth = [("Authorization", "Bearer second-key")];
    let call = |path: &str, body: &Value| request(srv.port, "POST", path, &body.to_string(), &auth);
    let get = |path: &str| request(srv.port, "GET", path, "", &auth);

    // /completion, whole: llama-server's fields; the same text as /v1/completions.
    let body = json!({"prompt": "Once upon a time", "n_predict": 8, "temperature": 0,
                      "cache_prompt": true, "id_slot": -1});
    let r = call("/completion", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let content = v["content"].as_str().unwrap().to_owned();
    assert!(!content.is_empty());
    assert_eq!(v["stop"], true);
    assert_eq!(v["tokens_predicted"], 8);
    assert_eq!(v["stop_type"], "limit");
    assert_eq!(v["timings"]["predicted_n"], 8);
    assert!(v["tokens_evaluated"].as_u64().unwrap() > 0);
    assert_eq!(v["model"], "my-alias");
    assert_eq!(v["acap"]["applied"]["enabled"], true);
    assert_eq!(v["generation_settings"]["n_predict"], 8);
    let oai = call(
        "/v1/completions",
        &json!({"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}),
    )
    .json();
    assert_eq!(oai["choices"][0]["text"], content.as_str());
    // The prompt as token ids (from /tokenize) gives the same reply.
    let t = call(
        "/tokenize",
        &json!({"content": "Once upon a time", "add_special": true}),
    )
    .json();
    let tokens = t["tokens"].as_array().unwrap().clone();
    assert!(tokens.len() > 1);
    let v = call(
        "/completion",
        &json!({"prompt": tokens, "n_predict": 8, "temperature": 0}),
    )
    .json();
    assert_eq!(v["content"], content.as_str());
    // Streaming: pieces, then a last event with stop true and the statistics.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let r = call("/completion", &sbody);
    assert_eq!(r.status, 200);
    let (text, last) = native_streamed(&r.body);
    assert_eq!(text, content);
    assert_eq!(last["stop"], true);
    assert_eq!(last["tokens_predicted"], 8);
    // A stop word.
    let first_word = content.split_whitespace().next().unwrap().to_owned();
    let v = call(
        "/completion",
        &json!({"prompt": "Once upon a time", "n_predict": 8, "temperature": 0,
                "stop": [first_word]}),
    )
    .json();
    assert_eq!(v["stop_type"], "word", "{v}");
    assert_eq!(v["stopping_word"], first_word.as_str());

    // /tokenize with pieces, /detokenize back.
    let t = call(
        "/tokenize",
        &json!({"content": "Hello world", "with_pieces": true}),
    )
    .json();
    let pieces = t["tokens"].as_array().unwrap();
    let ids: Vec<Value> = pieces.iter().map(|p| p["id"].clone()).collect();
    let joined: String = pieces
        .iter()
        .map(|p| p["piece"].as_str().unwrap())
        .collect();
    assert_eq!(joined, "Hello world");
    let d = call("/detokenize", &json!({"tokens": ids})).json();
    assert_eq!(d["content"], "Hello world");
    let bad = call("/detokenize", &json!({"tokens": [1, 99999999]}));
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["param"], "tokens[1]");

    // /apply-template: the text a chat request decodes.
    let p = call(
        "/apply-template",
        &json!({"messages": [{"role": "user", "content": "Hi there"}]}),
    )
    .json();
    assert!(p["prompt"].as_str().unwrap().contains("Hi there"), "{p}");

    // /props and /slots.
    let props = get("/props").json();
    assert_eq!(props["total_slots"], 2);
    assert_eq!(props["default_generation_settings"]["n_ctx"], 512);
    assert_eq!(props["acap"]["enabled"], true);
    assert_eq!(props["acap"]["layers"], json!([2, 3, 4, 5, 6]));
    let slots = get("/slots").json();
    let slots = slots.as_array().unwrap();
    assert_eq!(slots.len(), 2);
    assert!(
        slots
            .iter()
            .any(|s| s["tokens_cached"].as_u64().unwrap() > 0)
    );
    assert!(slots.iter().all(|s| s["is_processing"] == false));
    assert_eq!(get("/v1/models").json()["data"][0]["id"], "my-alias");

    // Metrics: llama-server's names, behind the key; /health is open.
    let m = get("/metrics");
    assert_eq!(m.status, 200);
    for name in [
        "llamacpp:prompt_tokens_total",
        "llamacpp:tokens_predicted_total",
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
        "llamacpp:kv_cache_usage_ratio",
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "acap_rows_capped_total",
    ] {
        assert!(m.body.contains(name), "{name} missing in {}", m.body);
    }
    for path in ["/metrics", "/slots", "/props"] {
        assert_eq!(
            request(srv.port, "GET", path, "", &[]).status,
            401,
            "{path}"
        );
    }
    let wrong = [("Authorization", "Bearer first-keyX")];
    assert_eq!(request(srv.port, "GET", "/metrics", "", &wrong).status, 401);
    let first = [("Authorization", "Bearer first-key")];
    assert_eq!(request(srv.port, "GET", "/metrics", "", &first).status, 200);
    assert_eq!(request(srv.port, "GET", "/health", "", &[]).status, 200);

    // Fields acap does not do are refused by name, never ignored.
    let chat = |extra: Value| call("/v1/chat/completions", &chat_body("Hi", extra));
    for (extra, param) in [
        (json!({"n": 2}), "n"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"top_logprobs": 3}), "top_logprobs"),
        (json!({"n_probs": 3}), "n_probs"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tools",
        ),
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format.type",
        ),
        (json!({"id_slot": 7}), "id_slot"),
        (
            json!({"response_format": {"type": "json_object"}, "grammar": "root ::= \"a\""}),
            "response_format",
        ),
    ] {
        let r = chat(extra.clone());
        assert_eq!(r.status, 400, "{extra}: {}", r.body);
        assert_eq!(r.json()["error"]["param"], param, "{extra}");
    }
    assert_eq!(chat(json!({"n": 1})).status, 200);
    // A request threshold on an axis with per-layer keys: said to be without effect.
    let v = chat(json!({"acap": {"threshold": 3.0}})).json();
    let applied = &v["acap"]["applied"];
    assert_eq!(
        applied["threshold_sources"]["2"], "file key acap.threshold.2",
        "{applied}"
    );
    assert!(
        applied["note"].as_str().unwrap().contains("does not apply"),
        "{applied}"
    );
    let v = chat(json!({})).json();
    assert!(v["acap"]["applied"].get("note").is_none());
    // response_format through llama.cpp's schema converter: the reply is JSON-shaped.
    let r = chat(json!({"response_format": {"type": "json_object"}, "max_tokens": 24}));
    assert_eq!(r.status, 200, "{}", r.body);
    let text = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.trim_start().starts_with('{'), "{text}");
    let schema =
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let r = chat(json!({"response_format": {"type": "json_schema",
                        "json_schema": {"name": "x", "schema": schema}}, "max_tokens": 24}));
    let text = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let compact: String = text.split_whitespace().collect();
    assert!(compact.starts_with("{\"n\":"), "{text}");

    // A body that is not declared JSON does not start work (browsers send text/plain freely).
    let r = request(
        srv.port,
        "POST",
        "/completion",
        &body.to_string(),
        &[auth[0], ("Content-Type", "text/plain")],
    );
    assert_eq!(r.status, 415, "{}", r.body);

    // CORS as llama-server: a pre-flight is answered for any origin, which is echoed back.
    let r = request(
        srv.port,
        "OPTIONS",
        "/v1/chat/completions",
        "",
        &[("Origin", "http://example.test")],
    );
    assert_eq!(r.status, 204);
    let head = r.head.to_ascii_lowercase();
    assert!(
        head.contains("access-control-allow-origin: http://example.test"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-headers: content-type, authorization"),
        "{head}"
    );
}

/// A client that sends half a request's headers is disconnected after `--timeout` seconds
/// (a kept-alive idle connection too); a whole request on time is answered.
#[test]
fn half_sent_requests_are_cut_off() {
    let srv = Server::start(&["--timeout", "1"]);
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    // An idle kept-alive connection is closed the same way; the server still answers.
    let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(request(srv.port, "GET", "/health", "", &[]).status, 200);
}

/// `/apply-template` on one user message gives exactly chatml.
fn assert_renders_chatml(port: u16) {
    let p = post(
        port,
        "/apply-template",
        &json!({"messages": [{"role": "user", "content": "Hi"}]}),
    )
    .json();
    assert_eq!(
        p["prompt"],
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

/// A template file (Jinja) renders chat requests; start-up values llama.cpp would abort on
/// are refused before the model loads.
#[test]
fn start_up_flags_and_refusals() {
    let dir = tempfile_dir();
    let tmpl = dir.path().join("chatml.jinja");
    std::fs::write(
        &tmpl,
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
         {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    )
    .unwrap();
    let srv = Server::start(&["--chat-template-file", tmpl.to_str().unwrap(), "--no-slots"]);
    assert_renders_chatml(srv.port);
    assert_eq!(request(srv.port, "GET", "/slots", "", &[]).status, 501);
    drop(srv);
    // A model without a chat template: chat requests are rendered as chatml (llama-server's
    // fallback), not refused.
    let bare = acap_testkit::without_chat_template(model(), dir.path());
    let srv = Server::start_model(&bare, &[]);
    assert!(
        srv.startup.contains("no chat template; using chatml"),
        "{}",
        srv.startup
    );
    assert_renders_chatml(srv.port);
    let r = post(
        srv.port,
        "/v1/chat/completions",
        &chat_body("Hi", json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    drop(srv);
    for (args, named) in [
        (vec!["-np", "0"], "--parallel 0"),
        (
            vec!["-np", "4", "-b", "1", "-ub", "1"],
            "must be at least --parallel 4",
        ),
        (vec!["-c", "16", "-np", "8"], "tokens per slot"),
        (vec!["--temp", "nan"], "--temp"),
        (vec!["-nocb"], "--no-cont-batching"),
        (vec!["-b", "0"], "--batch-size 0"),
        (
            vec!["--chat-template-file", "/no/such.jinja"],
            "--chat-template-file /no/such.jinja",
        ),
        (
            vec!["--api-key-file", "/no/keys"],
            "--api-key-file /no/keys",
        ),
        (
            vec!["--chat-template", "no-such-template"],
            "--chat-template",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_acap-server"))
            .arg("-m")
            .arg(model())
            .args(["--port", "0"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
}

/// The Python of `target/openai-venv` (`scripts/setup.sh` installs the openai client and
/// Playwright into it), or `ACAP_OPENAI_PYTHON`.
fn venv_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::var_os("ACAP_OPENAI_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/openai-venv/bin/python"))
}

/// The chat page at `/` in a real browser (the Debian package's headless Chromium, driven by
/// Playwright): it loads, a message is typed and sent, the reply streams in (the same text
/// as the API gives), the blocks' telemetry is shown, and a screenshot is taken (kept in
/// target/ for a look). Runs in CI; `scripts/setup.sh` installs what it needs.
#[test]
fn chat_page_works_in_a_real_browser() {
    let python = venv_python();
    assert!(
        python.exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs {} with Playwright and /usr/bin/chromium: run scripts/setup.sh",
        python.display()
    );
    let dir = tempfile_dir();
    let axis = axis(dir.path());
    let srv = Server::start(&["--acap", axis.to_str().unwrap(), "--temp", "0"]);
    let page = request(srv.port, "GET", "/", "", &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>acap-server</title>"));
    let question = "Tell me about cats.";
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chat-page.png");
    let _ = std::fs::remove_file(&shot);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser_chat.py");
    let o = Command::new(&python)
        .arg(&script)
        .arg(format!("{}/", srv.url()))
        .arg(question)
        .arg(&shot)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "browser: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let seen: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(seen["error"], "", "{seen}");
    assert_eq!(seen["page_errors"], json!([]), "{seen}");
    let api = post(
        srv.port,
        "/v1/chat/completions",
        &chat_body(question, json!({"acap": {"alpha": 1.0}})),
    )
    .json();
    let want = api["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        seen["reply"].as_str().unwrap().trim(),
        want.trim(),
        "{seen}"
    );
    // A header row and one row per capped block (2..=6).
    assert_eq!(seen["telemetry_rows"], 6, "{seen}");
    assert!(
        seen["telemetry"]
            .as_str()
            .unwrap()
            .contains("last reply: capped, alpha 1"),
        "{seen}"
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    // --no-webui switches the page off.
    drop(srv);
    let off = Server::start(&["--no-webui"]);
    assert_eq!(request(off.port, "GET", "/", "", &[]).status, 404);
}

#[test]
fn h_suppress_by_default_and_per_request() {
    let dir = tempfile_dir();
    let half: Vec<f32> = (0..768)
        .map(|j| if j % 2 == 0 { 0.0 } else { 1.0 })
        .collect();
    let h = acap::HSuppress::from_vectors((0..8).map(|b| (b, half.clone()))).unwrap();
    let hp = dir.path().join("h.gguf");
    h.write_file(&hp).unwrap();
    // The library's greedy texts, with and without the file (flash attention off, as the
    // server's batch engine runs).
    let m = acap::Model::load(model(), acap::ModelParams::default()).unwrap();
    let gp = acap::GenerateParams::default()
        .with_max_tokens(12)
        .with_sampling(acap::SamplingParams::greedy());
    let text = |h: Option<std::sync::Arc<acap::HSuppress>>| {
        let mut p = acap::SessionParams::default().with_threads(1);
        p.flash_attention = Some(false);
        p.h_suppress = h;
        acap::Session::new(&m, p)
            .unwrap()
            .complete("The river", &gp)
            .unwrap()
            .0
    };
    let (plain, suppressed) = (text(None), text(Some(std::sync::Arc::new(h))));
    assert_ne!(plain, suppressed);

    let srv = Server::start(&["--h-suppress", hp.to_str().unwrap(), "-np", "2"]);
    let body = |extra: Value| {
        let mut b = json!({"prompt": "The river", "temperature": 0, "n_predict": 12});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let r = post(srv.port, "/completion", &body(json!({}))).json();
    assert_eq!(r["content"], suppressed.as_str(), "{r}");
    assert_eq!(r["acap"]["applied"]["h_suppress"]["enabled"], true, "{r}");
    assert_eq!(r["acap"]["applied"]["h_suppress"]["neurons"], 3072, "{r}");
    let r = post(srv.port, "/completion", &body(json!({"h_suppress": false}))).json();
    assert_eq!(r["content"], plain.as_str(), "{r}");
    assert_eq!(r["acap"]["applied"]["h_suppress"]["enabled"], false, "{r}");
    // Chat requests take the switch too.
    let on = post(
        srv.port,
        "/v1/chat/completions",
        &chat_body("Hi", json!({})),
    );
    let off = post(
        srv.port,
        "/v1/chat/completions",
        &chat_body("Hi", json!({"h_suppress": false})),
    );
    assert_eq!(on.status, 200, "{}", on.body);
    assert_ne!(
        on.json()["choices"][0]["message"]["content"],
        off.json()["choices"][0]["message"]["content"]
    );
    let props = request(srv.port, "GET", "/props", "", &[]).json();
    assert_eq!(props["acap"]["h_suppress"]["enabled"], true, "{props}");
    drop(srv);

    // Without a file, asking for suppression is refused by name.
    let srv = Server::start(&[]);
    let r = post(srv.port, "/completion", &body(json!({"h_suppress": true})));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("h_suppress"), "{}", r.body);
    drop(srv);

    // A file that does not fit the model stops the server at start-up.
    let short = dir.path().join("short.gguf");
    acap::HSuppress::from_vectors([(1, vec![0.0; 100])])
        .unwrap()
        .write_file(&short)
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_acap-server"))
        .arg("-m")
        .arg(model())
        .args(["--port", "0", "--h-suppress"])
        .arg(&short)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--h-suppress") && err.contains("n_ff = 768"),
        "{err}"
    );
}

/// Sends a streamed request and hangs up after its first bytes (a client that goes away).
fn hang_up_early(port: u16, path: &str, body: &Value) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let body = body.to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let _ = s.read(&mut buf);
}

#[test]
fn deterministic_replies_do_not_depend_on_history() {
    let dir = tempfile_dir();
    let ax = axis(dir.path());
    // A small batch, so prompts span several batches and shared prefixes end mid-batch.
    let flags = [
        "-np",
        "3",
        "-c",
        "1536",
        "-b",
        "16",
        "--deterministic",
        "--acap",
        ax.to_str().unwrap(),
    ];
    let base = "The lighthouse keeper climbed the stairs every night to watch the sea, and one \
                evening a small boat appeared near the rocks";
    let prompts: Vec<String> = (0..6)
        .map(|i| {
            let cut = base.len() * (i + 3) / 9;
            let cut = base[..cut].rfind(' ').unwrap();
            format!(
                "{}{}",
                &base[..cut],
                [" so", " then", "", " and he", ".", " but"][i]
            )
        })
        .collect();
    let body = |i: usize| {
        json!({"prompt": prompts[i], "n_predict": 20, "temperature": 0,
               "acap": {"enabled": i % 2 == 0}})
    };
    let text = |r: Reply| r.json()["content"].as_str().unwrap().to_owned();
    let alone: Vec<String> = (0..prompts.len())
        .map(|i| {
            let fresh = Server::start(&flags);
            text(post(fresh.port, "/completion", &body(i)))
        })
        .collect();
    let srv = Server::start(&flags);
    let port = srv.port;
    assert_eq!(
        request(port, "GET", "/props", "", &[]).json()["deterministic"],
        true
    );
    // History: overlapping requests with shared prefixes, chat requests, clients that hang up.
    std::thread::scope(|s| {
        for i in 0..prompts.len() {
            let b = body(i);
            s.spawn(move || {
                if i % 3 == 1 {
                    hang_up_early(port, "/completion", &b);
                } else {
                    post(port, "/completion", &b);
                }
            });
            s.spawn(move || post(port, "/v1/chat/completions", &chat_body("Hi", json!({}))));
        }
    });
    // Then every prompt again, all at once and beside other traffic.
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..prompts.len())
            .rev()
            .map(|i| {
                let b = body(i);
                s.spawn(move || {
                    post(port, "/v1/chat/completions", &chat_body(base, json!({})));
                    (i, text(post(port, "/completion", &b)))
                })
            })
            .collect();
        let mut out: Vec<(usize, String)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        out.sort();
        out.into_iter().map(|(_, t)| t).collect()
    });
    for (i, (got, want)) in together.iter().zip(&alone).enumerate() {
        assert_eq!(
            got, want,
            "prompt {i} differs from its reply on a fresh server"
        );
    }
}
