//! What the server's examples share: flags, the model, an axis file, starting `acap-server`
//! from the same target directory, and a one-request-per-connection HTTP client.

#![allow(dead_code)] // each example uses its own part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use acap::AxisWriter;

/// The value after `flag`, or `default`.
pub fn arg(args: &[String], flag: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == flag)
        .map_or(default.to_owned(), |w| w[1].clone())
}

/// A model file, or a testkit preset (`small`, `tiny`, with an ignored `:q8_0` suffix).
pub fn model(spec: &str) -> PathBuf {
    if Path::new(spec).is_file() {
        return PathBuf::from(spec);
    }
    let (name, _) = spec.split_once(':').unwrap_or((spec, ""));
    let preset = acap_testkit::ModelSpec::by_name(name).expect("a model file or testkit preset");
    acap_testkit::model_path(&preset, Some(acap::QuantType::Q8_0)).expect("model")
}

/// Writes an axis file at `path` for `blocks` of a model with `n_embd`, every block at
/// threshold `tau`.
pub fn write_axis(path: &Path, blocks: impl Iterator<Item = u32>, n_embd: usize, tau: f32) {
    let mut w = AxisWriter::new();
    for l in blocks {
        w = w
            .with_direction(l, acap_testkit::random_vector(u64::from(l), n_embd))
            .with_threshold(l, tau);
    }
    w.write_file(path).expect("axis");
}

/// A running `acap-server`, killed on drop.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Server {
    /// Starts `acap-server -m MODEL --port 0 ARGS..` and waits until it is ready.
    pub fn start(model: &Path, args: &[&str]) -> Self {
        let exe = std::env::current_exe()
            .expect("exe")
            .parent()
            .and_then(|p| p.parent())
            .expect("target dir")
            .join("acap-server");
        let mut child = Command::new(&exe)
            .arg("-m")
            .arg(model)
            .args(["--port", "0"])
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let port = loop {
            line.clear();
            assert!(
                err.read_line(&mut line).expect("stderr") > 0,
                "server exited"
            );
            if let Some(rest) = line.split("ready on http://").nth(1) {
                let addr = rest.split_whitespace().next().expect("addr");
                break addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("port");
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        Self { child, port }
    }

    /// The server's resident memory in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one request (`Connection: close`) and reads the whole reply: status and body, or
/// why it failed.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no reply")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    Ok((status, body))
}

/// The payload of a chunked body (what arrived of it).
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}
