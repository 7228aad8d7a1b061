#!/usr/bin/env python3
"""The checks of scripts/check-deploy.sh that no off-the-shelf tool does:
what the Dockerfile copies, whether the files of deploy/ agree with each
other and with the code, and the parts Debian's promtool cannot read.

Each subcommand exits non-zero with a message naming the file and the
problem, or prints one line saying what it checked.

  checks.py image-context DIR       copy what the Dockerfile's `binary` stage
                                    copies (less .dockerignore) into DIR
  checks.py healthcheck BINARY      the image's HEALTHCHECK against a node
                                    run from BINARY: 0 while it serves, not
                                    0 once it stopped
  checks.py same-documents A B      two renders hold the same documents
  checks.py manifests RENDERED [--complete]
                                    rules across the rendered manifests, the
                                    Dockerfile, the code and prometheus.yml
  checks.py promtool-config SRC OUT SRC with its Kubernetes discovery
                                    checked here and replaced for promtool
  checks.py dashboard-rules OUT     the dashboard's queries as a rule file,
                                    for promtool to parse
  checks.py metric-names            every metric the dashboard and alerts
                                    read is one the code records
  checks.py compose                 compose.yaml against the files it mounts
                                    and the node's drain time
"""

import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "chatstream.json")
ALERTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
PROMETHEUS_KUBERNETES = os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")
PROMETHEUS_COMPOSE = os.path.join(ROOT, "deploy", "prometheus", "compose.yml")
COMPOSE = os.path.join(ROOT, "compose.yaml")
NODE_RS = os.path.join(ROOT, "src", "node.rs")


def fail(message):
    sys.exit(f"check-deploy: {message}")


# ---- the Dockerfile ----


def dockerfile_instructions():
    """(instruction, arguments) pairs, continuation lines joined."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        result.append((instruction.upper(), arguments.strip()))
    return result


def stage(name):
    """The instructions of the stage `FROM … AS name`."""
    inside, found = False, []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            words = arguments.split()
            inside = len(words) >= 3 and words[-2].upper() == "AS" and words[-1] == name
            continue
        if inside:
            found.append((instruction, arguments))
    if not found:
        fail(f"Dockerfile: no stage named {name!r}")
    return found


def dockerignore_patterns():
    path = os.path.join(ROOT, ".dockerignore")
    patterns = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    negated = line.startswith("!")
                    pattern = line.lstrip("!").strip("/")
                    patterns.append((negated, os.path.normpath(pattern)))
    return patterns


def glob_regex(pattern):
    """A .dockerignore pattern as a regular expression: `*` and `?` stay
    within one path element, `**` spans any number of them."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def ignored(relative, patterns):
    """Docker's rule: the last pattern matching the path, or one of its
    parent directories, decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negated, pattern in patterns:
        if any(glob_regex(pattern).match(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def image_context(destination):
    """Copies into `destination` the files the `binary` stage's COPY lines
    bring, as the builder would see them, at the paths they get under the
    stage's WORKDIR."""
    patterns = dockerignore_patterns()
    workdir = "/"
    copied = []
    for instruction, arguments in stage("binary"):
        if instruction == "WORKDIR":
            workdir = os.path.join(workdir, arguments)
        if instruction in ("ADD",):
            fail("Dockerfile: ADD in the binary stage; use COPY (this check reads COPY only)")
        if instruction != "COPY":
            continue
        words = shlex.split(arguments)
        flags = [w for w in words if w.startswith("--")]
        words = [w for w in words if not w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        *sources, target = words
        target_dir = os.path.normpath(os.path.join(workdir, target))
        for source in sources:
            matches = glob.glob(os.path.join(ROOT, source))
            if not matches:
                fail(f"Dockerfile: COPY {source}: no such file in the build context")
            for match in matches:
                relative = os.path.relpath(match, ROOT)
                if ignored(relative, patterns):
                    fail(f"Dockerfile: COPY {source}: excluded by .dockerignore")
                if os.path.isdir(match):
                    # A directory's contents go to the target.
                    out = target_dir
                    for directory, subdirs, files in os.walk(match):
                        rel_dir = os.path.relpath(directory, ROOT)
                        subdirs[:] = [d for d in subdirs if not ignored(os.path.join(rel_dir, d), patterns)]
                        for file in files:
                            rel_file = os.path.normpath(os.path.join(rel_dir, file))
                            if ignored(rel_file, patterns):
                                continue
                            inside = os.path.relpath(os.path.join(directory, file), match)
                            place(destination, os.path.join(out, inside), os.path.join(directory, file))
                else:
                    if target.endswith("/") or len(sources) > 1:
                        out = os.path.join(target_dir, os.path.basename(match))
                    else:
                        out = target_dir
                    place(destination, out, match)
                copied.append(source)
    if workdir == "/":
        fail("Dockerfile: the binary stage has no WORKDIR")
    return workdir, copied


def place(destination, image_path, source):
    path = os.path.join(destination, image_path.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Contents and mode, not times: every file is newer than any earlier
    # build, so cargo compiles the crate from these files rather than
    # trusting artifacts of an earlier copy.
    shutil.copyfile(source, path)
    shutil.copymode(source, path)


def cmd_image_context(destination):
    if os.path.exists(destination):
        shutil.rmtree(destination)
    os.makedirs(destination)
    workdir, copied = image_context(destination)
    # The crate is built where the stage's WORKDIR is; print that directory.
    print(os.path.join(destination, workdir.lstrip("/")))
    print(f"image context: {', '.join(copied)} (the binary stage's COPY lines)", file=sys.stderr)


def runtime_user():
    """The final stage's USER, as uid and gid numbers."""
    user = None
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            user = None
        if instruction == "USER":
            user = arguments
    if not user or not re.fullmatch(r"\d+:\d+", user):
        fail(f"Dockerfile: the runtime stage's USER is {user!r}, not uid:gid numbers "
             "(Kubernetes' runAsNonRoot needs a number)")
    uid, gid = (int(n) for n in user.split(":"))
    if uid == 0:
        fail("Dockerfile: the runtime stage runs as root")
    return uid, gid


def healthcheck_command():
    command = None
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            command = None
        if instruction == "HEALTHCHECK":
            _, _, rest = arguments.partition("CMD")
            rest = rest.strip()
            if not rest.startswith("["):
                fail("Dockerfile: write HEALTHCHECK CMD in exec form (a JSON list)")
            command = json.loads(rest)
    if not command:
        fail("Dockerfile: the runtime stage has no HEALTHCHECK")
    return command


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_healthchecks():
    """The healthcheck commands compose.yaml gives containers of the image."""
    with open(COMPOSE, encoding="utf-8") as f:
        compose = yaml.safe_load(f)
    found = []
    for name, service in compose["services"].items():
        test = service.get("healthcheck", {}).get("test")
        if service.get("image") != "chatstream:local" or not test:
            continue
        if test[0] != "CMD":
            fail(f"compose.yaml: service {name}: write its healthcheck as [\"CMD\", …]")
        found.append((f"compose.yaml service {name}", test[1:]))
    return found


def cmd_healthcheck(binary):
    """Runs the image's HEALTHCHECK, and compose.yaml's healthchecks of
    nodes, as Docker would, with the image's binary first on PATH, against
    a node of that binary: each must succeed while the node serves and fail
    once the node is gone."""
    checks = [("Dockerfile HEALTHCHECK", healthcheck_command())] + compose_healthchecks()
    for where, command in checks:
        if command[0] != "chatstream":
            fail(f"{where} runs {command[0]!r}; the runtime image has only chatstream")
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="chatstream-healthcheck-")
    env = dict(os.environ)
    # An embedded node in a directory of its own, whatever this shell
    # points nodes at.
    for name in ("REDIS_URL", "REDIS_CLUSTER_NODES", "DATABASE_URL", "CONFIG_FILE"):
        env.pop(name, None)
    env.update(
        BIND=f"127.0.0.1:{port}",
        DATA_DIR=data_dir,
        PATH=os.path.dirname(os.path.abspath(binary)) + os.pathsep + env.get("PATH", ""),
        RUST_LOG="warn",
    )
    log_path = os.path.join(data_dir, "node.log")
    log = open(log_path, "w")
    node = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log)

    def run(command):
        return subprocess.run(command, env=env, timeout=10,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode

    try:
        for where, command in checks:
            deadline = time.monotonic() + 30
            while run(command) != 0:
                if node.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    with open(log_path, encoding="utf-8", errors="replace") as f:
                        output = f.read()[-2000:]
                    fail(f"{where}: {' '.join(command)} never succeeded against a node on port {port}:\n{output}")
                time.sleep(0.2)
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
    for where, command in checks:
        if run(command) == 0:
            fail(f"{where}: {' '.join(command)} succeeded with no node listening")
    shutil.rmtree(data_dir, ignore_errors=True)
    print("healthcheck: " + "; ".join(f"{where} ({' '.join(c)})" for where, c in checks)
          + ": 0 while a node serves, non-zero once it stopped")


# ---- Kubernetes ----


def load_documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def document_key(doc):
    return (doc["apiVersion"], doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])


def cmd_same_documents(first, second):
    a = {document_key(d): d for d in load_documents(first)}
    b = {document_key(d): d for d in load_documents(second)}
    problems = [f"only in {first}: {k}" for k in sorted(set(a) - set(b))]
    problems += [f"only in {second}: {k}" for k in sorted(set(b) - set(a))]
    problems += [f"differs: {k}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    if problems:
        fail("the two renders differ (deploy/check/kustomize.py no longer renders as kustomize does):\n  "
             + "\n  ".join(problems))
    print(f"same documents: {len(a)} in both renders")


def drain_bound():
    """Seconds a stopping node may take: the deadlines of Node::stop
    (every `*_DEADLINE` of src/node.rs) and 2 s for the actor tree."""
    with open(NODE_RS, encoding="utf-8") as f:
        text = f.read()
    deadlines = re.findall(r"const (\w+_DEADLINE): Duration = Duration::from_secs\((\d+)\)", text)
    if not deadlines:
        fail("src/node.rs: no `const *_DEADLINE: Duration = Duration::from_secs(N)`; "
             "update drain_bound() in deploy/check/checks.py to how the node's drain is bounded now")
    return sum(int(seconds) for _, seconds in deadlines) + 2, deadlines


def pod_templates(documents):
    for doc in documents:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            yield doc, doc["spec"]["template"]


def discovery_keeps(labels, port_name, relabel_configs):
    """Whether prometheus.yml's `keep` rules keep this pod's port, with the
    meta labels Kubernetes pod discovery gives a running pod."""
    meta = {
        "__meta_kubernetes_pod_container_port_name": port_name,
        "__meta_kubernetes_pod_phase": "Running",
    }
    for name, value in labels.items():
        meta["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)] = value
    for rule in relabel_configs:
        if rule.get("action") not in ("keep", "drop"):
            continue
        value = rule.get("separator", ";").join(meta.get(s, "") for s in rule["source_labels"])
        matched = re.fullmatch(rule.get("regex", "(.*)"), value) is not None
        if matched != (rule["action"] == "keep"):
            return False
    return True


def cmd_manifests(rendered, complete):
    documents = load_documents(rendered)
    uid, gid = runtime_user()
    bound, deadlines = drain_bound()
    names = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in documents}
    scrape = yaml.safe_load(open(PROMETHEUS_KUBERNETES, encoding="utf-8"))
    relabel = scrape["scrape_configs"][0]["relabel_configs"]
    problems = []
    scraped = []
    for doc, template in pod_templates(documents):
        where = f"{doc['kind']} {doc['metadata']['name']}"
        namespace = doc["metadata"].get("namespace")
        spec = template["spec"]
        security = spec.get("securityContext", {})
        if security.get("runAsNonRoot") is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if (security.get("runAsUser"), security.get("runAsGroup")) != (uid, gid):
            problems.append(f"{where}: runs as {security.get('runAsUser')}:{security.get('runAsGroup')}, "
                            f"the image's user is {uid}:{gid}")
        for container in spec["containers"]:
            context = container.get("securityContext", {})
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}/{container['name']}: the root filesystem is writable")
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in container:
                    problems.append(f"{where}/{container['name']}: no {probe}")
            for source in container.get("envFrom", []):
                for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if field in source and complete and (kind, namespace, source[field]["name"]) not in names:
                        problems.append(f"{where}: {kind} {source[field]['name']} is not among the manifests")
            if container.get("args", [None])[0] == "serve":
                if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
                    problems.append(f"{where}: the readiness probe is not /readyz")
                if container.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
                    problems.append(f"{where}: the liveness probe is not /healthz (a Redis outage "
                                    "would restart every node)")
                sleep = 0
                command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
                if command[:1] == ["sleep"]:
                    sleep = int(command[1])
                else:
                    problems.append(f"{where}: no preStop sleep")
                grace = spec.get("terminationGracePeriodSeconds", 30)
                if grace <= sleep + bound:
                    problems.append(
                        f"{where}: terminationGracePeriodSeconds {grace} does not cover the preStop sleep "
                        f"({sleep} s) and the drain ({bound} s: {deadlines} + 2 s for the actor tree)")
                if "http" not in ports:
                    problems.append(f"{where}: no port named http")
            for port_name in ports:
                if discovery_keeps(template["metadata"].get("labels", {}), port_name, relabel):
                    scraped.append((doc["metadata"]["name"], container.get("args", [None])[0], port_name))
    serving = [s for s in scraped if s[1] == "serve" and s[2] == "http"]
    if not serving or len(serving) != len(scraped):
        problems.append(f"deploy/prometheus/prometheus.yml keeps {scraped or 'no port'}; it should keep "
                        "the chat nodes' http port and nothing else")
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    for doc in documents:
        if doc["kind"] != "Ingress":
            continue
        for rule in doc["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = services.get(backend["name"])
                if service is None:
                    problems.append(f"Ingress {doc['metadata']['name']}: no Service {backend['name']}")
                elif backend["port"].get("name") not in [p.get("name") for p in service["spec"]["ports"]]:
                    problems.append(f"Ingress {doc['metadata']['name']}: Service {backend['name']} "
                                    f"has no port {backend['port']}")
    if problems:
        fail(f"{rendered}:\n  " + "\n  ".join(problems))
    print(f"manifests: {len(documents)} documents agree with the image (user {uid}:{gid}), "
          f"the drain ({bound} s) and the scrape configuration")


# ---- Prometheus and Grafana ----

# What Kubernetes pod discovery accepts and gives; Debian's promtool is
# built without Kubernetes discovery and refuses the whole file.
KUBERNETES_SD_FIELDS = {"role", "namespaces", "selectors", "api_server", "kubeconfig_file",
                        "attach_metadata", "follow_redirects", "enable_http2", "tls_config"}
POD_META = re.compile(
    r"__meta_kubernetes_(namespace|pod_(name|ip|uid|node_name|host_ip|ready|phase|"
    r"container_(name|id|image|init|port_name|port_number|port_protocol)|"
    r"controller_(kind|name)|(label|labelpresent|annotation|annotationpresent)_[a-zA-Z0-9_]+))"
)


def cmd_promtool_config(source, output):
    with open(source, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    problems = []
    for job in config.get("scrape_configs", []):
        discoveries = job.pop("kubernetes_sd_configs", None)
        if discoveries is None:
            continue
        for sd in discoveries:
            unknown = set(sd) - KUBERNETES_SD_FIELDS
            if unknown:
                problems.append(f"job {job['job_name']}: kubernetes_sd_configs field(s) {sorted(unknown)}")
            if sd.get("role") != "pod":
                problems.append(f"job {job['job_name']}: role {sd.get('role')!r}, the labels checked are pod's")
            if set(sd.get("namespaces", {})) - {"names", "own_namespace"}:
                problems.append(f"job {job['job_name']}: unknown namespaces field")
        for rule in job.get("relabel_configs", []):
            for label in rule.get("source_labels", []):
                if label.startswith("__meta_kubernetes_") and not POD_META.fullmatch(label):
                    problems.append(f"job {job['job_name']}: {label} is not a pod discovery label")
        job["static_configs"] = [{"targets": []}]
    if problems:
        fail(f"{source}:\n  " + "\n  ".join(problems))
    os.makedirs(os.path.dirname(output), exist_ok=True)
    for rule_file in config.get("rule_files", []):
        shutil.copy(os.path.join(os.path.dirname(source), rule_file), os.path.join(os.path.dirname(output), rule_file))
    with open(output, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)


def dashboard_queries():
    with open(DASHBOARD, encoding="utf-8") as f:
        dashboard = json.load(f)
    queries = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                queries.append((panel["title"], target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            match = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["definition"])
            if not match:
                fail(f"{DASHBOARD}: variable {variable['name']}: only label_values(metric, label) is checked")
            queries.append((f"variable {variable['name']}", match.group(1)))
    if not queries:
        fail(f"{DASHBOARD}: no queries")
    return queries


def grafana_to_promql(expr):
    """A dashboard query with Grafana's variables replaced by values
    Prometheus accepts."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    expr = expr.replace("$instance", ".*")
    if "$" in expr:
        fail(f"{DASHBOARD}: a query uses a variable this check does not know: {expr}")
    return expr


def cmd_dashboard_rules(output):
    rules = [{"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
             for i, (_, expr) in enumerate(dashboard_queries())]
    with open(output, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)


def recorded_metrics():
    """Metric name -> kind, for every metric the code records with
    metrics::counter!/gauge!/histogram!, by literal or through a const."""
    constants, calls = {}, []
    for path in glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        constants.update(re.findall(r'const\s+([A-Z0-9_]+)\s*:\s*&str\s*=\s*"(chatstream_[a-z0-9_]+)"', text))
        calls += re.findall(r'(?<![\w_])(counter|gauge|histogram)!\(\s*("chatstream_[a-z0-9_]+"|[A-Za-z_][\w:]*)', text)
    metrics = {}
    for kind, name in calls:
        if name.startswith('"'):
            metrics[name.strip('"')] = kind
        elif name.split("::")[-1] in constants:
            metrics[constants[name.split("::")[-1]]] = kind
    return metrics


def cmd_metric_names():
    metrics = recorded_metrics()
    if len(metrics) < 10:
        fail(f"found only {len(metrics)} metrics in src/: the pattern in recorded_metrics() is out of date")
    used = [(f"{DASHBOARD} ({title})", expr) for title, expr in dashboard_queries()]
    with open(ALERTS, encoding="utf-8") as f:
        for group in yaml.safe_load(f)["groups"]:
            for rule in group["rules"]:
                used.append((f"{ALERTS} ({rule.get('alert') or rule.get('record')})", rule["expr"]))
    problems = []
    seen = set()
    for where, expr in used:
        for name in re.findall(r"\bchatstream_[a-z0-9_]+", expr):
            seen.add(name)
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name in metrics and metrics[name] != "histogram":
                continue
            if base != name and metrics.get(base) == "histogram":
                continue
            if name in metrics:
                problems.append(f"{where}: {name} is a histogram; read {name}_bucket, _sum or _count")
            else:
                problems.append(f"{where}: the code records no metric {name}")
    if problems:
        fail("\n  ".join(["metric names:"] + list(dict.fromkeys(problems))))
    print(f"metric names: the {len(seen)} metrics the dashboard and alerts read are recorded by the code")


def duration_seconds(text):
    """A compose duration (`15s`, `1m30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        fail(f"compose.yaml: cannot read the duration {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def cmd_compose():
    with open(COMPOSE, encoding="utf-8") as f:
        compose = yaml.safe_load(f)
    problems = []
    bound, _ = drain_bound()
    nodes = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                if not os.path.exists(os.path.join(ROOT, source)):
                    problems.append(f"service {name}: mounts {source}, which does not exist")
        if service.get("image") == "chatstream:local":
            command = service.get("command", ["serve"])
            if isinstance(command, str):
                command = command.split()
            test = json.dumps(service.get("healthcheck", {}).get("test", ""))
            if "curl" in test or "wget" in test:
                problems.append(f"service {name}: its healthcheck runs a tool the image does not have")
            if command[:1] == ["serve"]:
                nodes.append(name)
                grace = service.get("stop_grace_period", "10s")
                if duration_seconds(grace) <= bound:
                    problems.append(f"service {name}: stop_grace_period {grace} does not cover the drain ({bound} s)")
    with open(PROMETHEUS_COMPOSE, encoding="utf-8") as f:
        scrape = yaml.safe_load(f)
    targets = sorted(t.split(":")[0] for c in scrape["scrape_configs"][0]["static_configs"] for t in c["targets"])
    if targets != sorted(nodes):
        problems.append(f"deploy/prometheus/compose.yml scrapes {targets}, compose.yaml runs nodes {sorted(nodes)}")
    if problems:
        fail(f"{COMPOSE}:\n  " + "\n  ".join(problems))
    print(f"compose: {len(nodes)} nodes, all scraped; mounted files present; grace above the drain ({bound} s)")


def main():
    args = sys.argv[1:]
    commands = {
        "image-context": (cmd_image_context, 1),
        "healthcheck": (cmd_healthcheck, 1),
        "same-documents": (cmd_same_documents, 2),
        "promtool-config": (cmd_promtool_config, 2),
        "dashboard-rules": (cmd_dashboard_rules, 1),
        "metric-names": (cmd_metric_names, 0),
        "compose": (cmd_compose, 0),
    }
    if args[:1] == ["manifests"] and len(args) in (2, 3):
        return cmd_manifests(args[1], args[2:] == ["--complete"])
    if not args or args[0] not in commands or len(args) - 1 != commands[args[0]][1]:
        sys.exit(__doc__)
    command, _ = commands[args[0]]
    command(*args[1:])


if __name__ == "__main__":
    main()
