#!/usr/bin/env python3
"""A local fleet on loopback: acap-server replicas behind the LiteLLM proxy (router).

Run through scripts/fleet-test.sh, which builds the binaries and installs the pinned LiteLLM.

    fleet-test.py routing [--replicas 3] [--requests 200] [--clients 6] [--kill-at 80]
    fleet-test.py scaling [--model small] [--max-replicas 3] [--requests-per-replica 12]

`routing`: the replicas run in deterministic mode with default capping on (--acap), so every
greedy request has one right answer, whatever ran before or beside it: the reply the same
request gets alone. The references are taken from one replica directly; then the mixed
requests (capped and uncapped through the `acap` object in the OpenAI client's extra_body,
streaming and not) go through LiteLLM, and one replica is killed (SIGKILL) once `--kill-at`
replies are in. Reported: replies right / wrong for their capping, failures (split by whether
the request was in flight on the killed replica), requests each replica served. Exits 1 on a
wrong reply, on a failure of a request that was not in flight at the kill, or when the load
did not spread.

`scaling`: aggregate generation throughput (tokens/s) of 1, 2, ... replicas at -t 1 each,
driven directly (client-side round robin, two requests in flight per replica), to measure
what the machine gives, without the router's own CPU use.
"""

import argparse
import json
import os
import random
import secrets
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [
    "The lighthouse keeper climbed the stairs every night",
    "Tell me a story about a cat who",
    "What is the capital of France? The capital",
    "Write a poem about the sea and the sky",
    "Hello!",
    "List three colours of the rainbow.",
]
MAX_TOKENS = 16
MASTER_KEY = "sk-fleet-" + secrets.token_hex(16)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    """One acap-server process on a free loopback port."""

    def __init__(self, exe, model, flags, log_dir, index):
        self.index = index
        self.log = open(log_dir / f"replica-{index}.log", "w")
        self.proc = subprocess.Popen(
            [exe, "-m", model, "--port", "0", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = None

    def wait_ready(self):
        for line in self.proc.stderr:
            self.log.write(line)
            m = re.search(r"ready on http://[\d.]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            raise SystemExit(f"replica {self.index} exited before it was ready")
        # Keep draining its stderr so it never blocks on a full pipe.
        threading.Thread(target=lambda: [self.log.write(l) for l in self.proc.stderr],
                         daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def metric(self, name):
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            page = r.read().decode()
        for line in page.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_replicas(exe, model, flags, n, log_dir):
    replicas = [Replica(exe, model, flags, log_dir, i) for i in range(n)]
    for r in replicas:
        r.wait_ready()
    return replicas


def chat(base_url, prompt, capped, stream, model="acap"):
    """One greedy chat request; the generated text. `acap` goes as an extra body field."""
    client = openai.OpenAI(base_url=base_url, api_key=MASTER_KEY, max_retries=0,
                           timeout=300)
    kwargs = dict(model=model, messages=[{"role": "user", "content": prompt}],
                  max_tokens=MAX_TOKENS, temperature=0,
                  extra_body={"acap": {"enabled": capped}})
    if not stream:
        return client.chat.completions.create(**kwargs).choices[0].message.content or ""
    text = ""
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    return text


def start_litellm(litellm, replicas, log_dir):
    port = free_port()
    config = {
        "model_list": [
            {"model_name": "acap",
             "litellm_params": {"model": "openai/acap", "api_base": r.url + "/v1",
                                "api_key": "none"},
             "model_info": {"id": f"replica-{r.index}"}}
            for r in replicas],
        "router_settings": {
            "routing_strategy": "least-busy",
            # A replica that fails is taken out for a while; its requests are retried on
            # the others.
            "num_retries": 3,
            "allowed_fails": 1,
            "cooldown_time": 120,
            "timeout": 300,
        },
        "litellm_settings": {"drop_params": False, "request_timeout": 300},
        # The proxy refuses to start open; clients send this key.
        "general_settings": {"master_key": MASTER_KEY},
    }
    path = log_dir / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    log = open(log_dir / "litellm.log", "w")
    proc = subprocess.Popen([litellm, "--config", str(path), "--host", "127.0.0.1",
                             "--port", str(port), "--num_workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"litellm exited ({proc.returncode}); see {log_dir}/litellm.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness",
                                        timeout=2) as r:
                if r.status == 200:
                    return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.5)
    raise SystemExit("litellm did not come up in 180 s")


def fixture(bin_dir, model, tmp):
    out = subprocess.run([str(bin_dir / "examples" / "fixture"), str(tmp), "-m", model],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def routing(a, bin_dir, tmp):
    fx = fixture(bin_dir, a.model, tmp)
    flags = ["--alias", "acap", "--acap", fx["axis"], "-np", str(a.np), "-c",
             str(a.np * 512), "-t", "1", "--deterministic"]
    replicas = start_replicas(str(bin_dir / "acap-server"), fx["model"], flags, a.replicas,
                              tmp)
    router, proxy = start_litellm(a.litellm, replicas, tmp)
    try:
        probes = [(p, capped) for p in PROMPTS for capped in (True, False)]
        # Each probe's reply from replica 0 directly: deterministic mode makes it the reply
        # the request gets anywhere, whatever ran before or beside it.
        reference = {pr: chat(replicas[0].url + "/v1", *pr, stream=False) for pr in probes}
        differ = sum(reference[(p, True)] != reference[(p, False)] for p in PROMPTS)
        if differ == 0:
            raise SystemExit("capped and uncapped replies are all equal: the test cannot "
                             "tell whether capping reached the replica")
        served_before = [r.metric('acap_requests_total{endpoint="chat"}') for r in replicas]
        rng = random.Random(a.seed)
        jobs = [(rng.choice(probes), rng.random() < 0.5) for _ in range(a.requests)]
        victim = replicas[1]
        lock = threading.Lock()
        done = [0]
        killed_at = [None]
        served_victim = [0.0]
        victim_running = [0.0]
        results = []

        def run(i):
            (prompt, capped), stream = jobs[i]
            start = time.time()
            try:
                text = chat(proxy, prompt, capped, stream)
                outcome = "right" if text == reference[(prompt, capped)] else "wrong"
                detail = "" if outcome == "right" else f"{text!r} != {reference[(prompt, capped)]!r}"
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                outcome, detail = "failed", f"{type(e).__name__}: {e}"
            end = time.time()
            with lock:
                done[0] += 1
                if done[0] == a.kill_at and killed_at[0] is None:
                    # Killed while it runs a request, so that one is lost mid-flight.
                    deadline = time.time() + 10
                    while (victim.metric("vllm:num_requests_running") == 0
                           and time.time() < deadline):
                        time.sleep(0.005)
                    victim_running[0] = victim.metric("vllm:num_requests_running")
                    served_victim[0] = victim.metric('acap_requests_total{endpoint="chat"}')
                    victim.kill()
                    killed_at[0] = time.time()
            results.append(dict(i=i, capped=capped, stream=stream, outcome=outcome,
                                detail=detail, start=start, end=end))

        t0 = time.time()
        with ThreadPoolExecutor(a.clients) as pool:
            list(pool.map(run, range(len(jobs))))
        wall = time.time() - t0
        served = []
        for r, before in zip(replicas, served_before):
            after = served_victim[0] if r is victim else r.metric(
                'acap_requests_total{endpoint="chat"}')
            served.append(int(after - before))
        k = killed_at[0]
        in_flight = [r for r in results if k and r["start"] < k < r["end"]]
        failed = [r for r in results if r["outcome"] == "failed"]
        failed_in_flight = [r for r in failed if r in in_flight]
        wrong = [r for r in results if r["outcome"] == "wrong"]
        summary = {
            "requests": len(results),
            "right": sum(r["outcome"] == "right" for r in results),
            "wrong": len(wrong),
            "failed": len(failed),
            "failed_in_flight_at_kill": len(failed_in_flight),
            "failed_streams_in_flight_at_kill": sum(r["stream"] for r in failed_in_flight),
            "in_flight_at_kill": len(in_flight),
            "running_on_killed_replica_at_kill": int(victim_running[0]),
            "capped": sum(r["capped"] for r in results),
            "streamed": sum(r["stream"] for r in results),
            "probes_where_capping_changes_the_reply": f"{differ}/{len(PROMPTS)}",
            "served_per_replica": served,
            "killed_replica": victim.index,
            "wall_s": round(wall, 1),
        }
        print(json.dumps(summary, indent=2))
        for r in (wrong + failed)[:10]:
            print(f"  request {r['i']} ({'capped' if r['capped'] else 'uncapped'}, "
                  f"{'stream' if r['stream'] else 'plain'}): {r['outcome']}: {r['detail']}",
                  file=sys.stderr)
        bad = []
        if wrong:
            bad.append(f"{len(wrong)} replies wrong for their capping")
        if len(failed) > len(failed_in_flight):
            bad.append(f"{len(failed) - len(failed_in_flight)} requests failed that were not "
                       "in flight at the kill")
        if min(served) < a.requests // (4 * a.replicas):
            bad.append(f"load did not spread: {served}")
        if bad:
            raise SystemExit("fleet-test: " + "; ".join(bad))
    finally:
        router.terminate()
        for r in replicas:
            r.stop()


def scaling(a, bin_dir, tmp):
    fx = fixture(bin_dir, a.model, tmp)
    flags = ["-np", "2", "-c", "2048", "-t", "1", "--acap", fx["axis"]]
    rows = []
    for n in range(1, a.max_replicas + 1):
        replicas = start_replicas(str(bin_dir / "acap-server"), fx["model"], flags, n, tmp)
        try:
            total = n * a.requests_per_replica
            tokens = [0] * total

            def run(i):
                r = replicas[i % n]
                client = openai.OpenAI(base_url=r.url + "/v1", api_key="x", max_retries=0,
                                       timeout=600)
                reply = client.chat.completions.create(
                    model="acap", max_tokens=a.max_tokens, temperature=0.8, seed=i,
                    messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
                tokens[i] = reply.usage.completion_tokens

            t0 = time.time()
            with ThreadPoolExecutor(2 * n) as pool:
                list(pool.map(run, range(total)))
            wall = time.time() - t0
            rows.append({"replicas": n, "requests": total, "tokens": sum(tokens),
                         "wall_s": round(wall, 1),
                         "tokens_per_s": round(sum(tokens) / wall, 2)})
            print(json.dumps(rows[-1]), flush=True)
        finally:
            for r in replicas:
                r.stop()
    base = rows[0]["tokens_per_s"]
    for row in rows:
        print(f"{row['replicas']} replica(s): {row['tokens_per_s']} tokens/s "
              f"({row['tokens_per_s'] / base:.2f}x)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["routing", "scaling"])
    p.add_argument("--bin-dir", default=str(ROOT / "target" / "debug"))
    p.add_argument("--litellm", required=True, help="the litellm executable")
    p.add_argument("--model", default=None, help="a GGUF file or testkit preset")
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--np", type=int, default=2)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--kill-at", type=int, default=80)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=3)
    p.add_argument("--requests-per-replica", type=int, default=12)
    p.add_argument("--max-tokens", type=int, default=48)
    a = p.parse_args()
    if a.model is None:
        a.model = "tiny" if a.mode == "routing" else "small"
    bin_dir = Path(a.bin_dir)
    # Logs of the replicas and the proxy, and the axis file, stay here after the run.
    tmp = ROOT / "target" / "fleet-test" / a.mode
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"fleet-test: logs in {tmp}", file=sys.stderr)
    (routing if a.mode == "routing" else scaling)(a, bin_dir, tmp)


if __name__ == "__main__":
    main()
