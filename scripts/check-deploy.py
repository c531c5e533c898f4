#!/usr/bin/env python3
"""Checks the deployment files under deploy/ against the acap-server they deploy.

    python3 scripts/check-deploy.py target/debug/acap-server

- Every YAML file parses (all documents), and every Containerfile is well formed: each FROM
  names a declared build argument or an image, `COPY --from` names an earlier stage, CMD is an
  exec-form JSON array.
- Every acap-server command line in them (Containerfile CMDs, the Kubernetes container's
  command and args, GPUStack's run commands with their placeholders filled in) is accepted by
  the acap-server binary given: it gets past flag parsing (clap exits with status 2 on a flag
  it does not know or a bad value; acap-server's own start-up errors exit with 1).
- The port agrees everywhere: EXPOSE, the command lines' --port, the container port, the
  Service, the probes, the InferencePool's target port; the Service, the pool and the
  Deployment select the same pod labels; probes ask /health.
Exits non-zero with one line per problem.
"""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PORT = 8080
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def load_yaml(path):
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        problem(path.relative_to(ROOT), f"not valid YAML: {e}")
        return []


def containerfile_commands(path):
    """Checks a Containerfile's structure; returns its CMD command lines."""
    rel = path.relative_to(ROOT)
    args, stages, cmds = set(), [], []
    text = re.sub(r"\\\n", " ", path.read_text())
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG":
            args.add(rest.split("=")[0].strip())
        elif word == "FROM":
            parts = rest.split()
            image = parts[0]
            m = re.fullmatch(r"\$\{(\w+)\}", image)
            if m and m.group(1) not in args:
                problem(rel, f"line {n}: FROM uses ${{{m.group(1)}}}, never declared by ARG")
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.append(parts[2])
        elif word == "COPY":
            m = re.search(r"--from=(\S+)", rest)
            if m and m.group(1) not in stages:
                problem(rel, f"line {n}: COPY --from={m.group(1)}: no earlier stage of that name")
        elif word == "CMD":
            try:
                cmd = json.loads(rest)
            except json.JSONDecodeError:
                problem(rel, f"line {n}: CMD is not an exec-form JSON array")
                continue
            cmds.append((f"{rel} CMD", cmd))
        elif word == "EXPOSE" and rest.strip() != str(PORT):
            problem(rel, f"line {n}: EXPOSE {rest.strip()}, the commands serve {PORT}")
    if not stages:
        problem(rel, "no named build stage")
    if not cmds:
        problem(rel, "no CMD")
    return cmds


def check_command(server, where, cmd):
    """The command line must start acap-server, serve PORT and pass its flag parsing."""
    if not cmd or Path(cmd[0]).name != "acap-server":
        problem(where, f"does not run acap-server: {cmd[:1]}")
        return
    args = cmd[1:]
    if "--port" not in args or args[args.index("--port") + 1] not in (str(PORT), "{{port}}"):
        problem(where, f"does not serve --port {PORT}: {shlex.join(cmd)}")
    # Port 0: any free port, should parsing succeed and the server get as far as listening.
    args = ["0" if a in (str(PORT), "{{port}}") else a for a in args]
    args = [a.replace("{{model_path}}", "/nonexistent/model.gguf")
             .replace("{{model_name}}", "model") for a in args]
    if any("{{" in a for a in args):
        problem(where, f"a placeholder GPUStack does not fill: {shlex.join(args)}")
    run = subprocess.run([server, *args], capture_output=True, text=True, timeout=60)
    if run.returncode == 0 or run.returncode == 2:
        problem(where, f"acap-server refused the flags (exit {run.returncode}): "
                       f"{run.stderr.strip()[-400:]}")


def pod_labels_and_containers(docs, rel):
    deployment = [d for d in docs if d.get("kind") == "Deployment"]
    if len(deployment) != 1:
        problem(rel, "expected one Deployment")
        return {}, []
    d = deployment[0]
    spec = d["spec"]
    labels = spec["template"]["metadata"]["labels"]
    if spec["selector"]["matchLabels"] != labels:
        problem(rel, "the Deployment's selector does not match its pod labels")
    return labels, spec["template"]["spec"]["containers"]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    server = sys.argv[1]
    commands = []
    for path in sorted(DEPLOY.glob("Containerfile*")):
        commands += containerfile_commands(path)

    k8s = DEPLOY / "k8s"
    server_docs = load_yaml(k8s / "acap-server.yaml")
    labels, containers = pod_labels_and_containers(server_docs, "deploy/k8s/acap-server.yaml")
    for c in containers:
        where = f"deploy/k8s/acap-server.yaml container {c['name']}"
        commands.append((where, c.get("command", []) + [str(a) for a in c.get("args", [])]))
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if ports.get("http") != PORT:
            problem(where, f"containerPort http is {ports.get('http')}, not {PORT}")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = c.get(probe, {}).get("httpGet")
            if not get or get.get("path") != "/health" or get.get("port") not in ("http", PORT):
                problem(where, f"{probe} must GET /health on the http port: {get}")
    for svc in (d for d in server_docs if d.get("kind") == "Service"):
        if svc["spec"]["selector"] != labels:
            problem("deploy/k8s/acap-server.yaml Service", "selects other pods than the Deployment")
        if svc["spec"]["ports"][0]["targetPort"] not in ("http", PORT):
            problem("deploy/k8s/acap-server.yaml Service", "targetPort is not the http port")

    values = load_yaml(k8s / "inferencepool-values.yaml")
    if values:
        pool = values[0]["inferencePool"]
        if pool["modelServers"]["matchLabels"] != labels:
            problem("deploy/k8s/inferencepool-values.yaml", "the pool selects other pods")
        if [p["number"] for p in pool["targetPorts"]] != [PORT]:
            problem("deploy/k8s/inferencepool-values.yaml", f"targetPorts is not [{PORT}]")
        if pool.get("modelServerType") != "vllm":
            problem("deploy/k8s/inferencepool-values.yaml",
                    "modelServerType must be vllm: acap-server exports vLLM's gauge names")
    for route in load_yaml(k8s / "httproute.yaml"):
        refs = [b for r in route["spec"]["rules"] for b in r["backendRefs"]]
        if not any(b.get("kind") == "InferencePool" and b.get("name") == "acap-pool" for b in refs):
            problem("deploy/k8s/httproute.yaml", "no backendRef to the InferencePool acap-pool")

    for doc in load_yaml(DEPLOY / "gpustack" / "acap-server.yaml"):
        where = "deploy/gpustack/acap-server.yaml"
        if doc.get("health_check_path") != "/health":
            problem(where, "health_check_path must be /health (503 while loading)")
        if doc.get("default_version") not in doc.get("version_configs", {}):
            problem(where, "default_version is not among version_configs")
        commands.append((f"{where} default_run_command", shlex.split(doc["default_run_command"])))
        for name, v in doc.get("version_configs", {}).items():
            if "run_command" in v:
                commands.append((f"{where} {name}.run_command", shlex.split(v["run_command"])))

    for where, cmd in commands:
        check_command(server, where, cmd)
    for p in problems:
        print(f"check-deploy: {p}", file=sys.stderr)
    print(f"check-deploy: {len(commands)} command lines, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
