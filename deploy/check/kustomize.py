#!/usr/bin/env python3
"""Renders a kustomization the way `kubectl kustomize` does, for the
features deploy/kubernetes uses and no others.

Why a renderer of our own: scripts/check-deploy.sh validates the rendered
manifests on machines that have no kubectl and no kustomize binary (neither
is packaged where CI installs from). Where kubectl is present the check
renders with both and requires the same documents, which keeps this file
honest. Supported: `resources` (files and directories holding a
kustomization), `namespace`, `images`, `replicas`, `configMapGenerator` and
`secretGenerator` (literals and env files; create and merge; the content
hash in the name, and references to it rewritten), `patches` (strategic
merge for the lists used here, and JSON 6902 add/replace/remove) selected by
kind and name. Anything else in a kustomization is refused, so a new feature
in the manifests cannot be skipped silently.

Usage: kustomize.py DIR > rendered.yaml
"""

import base64
import copy
import hashlib
import json
import os
import sys

import yaml

SUPPORTED_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "replicas",
    "configMapGenerator",
    "secretGenerator",
    "patches",
}

CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
}

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

# Strategic merge: the lists merged item by item, by these keys (the
# Kubernetes API's patchMergeKey); every other list is replaced whole.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}


class Unsupported(Exception):
    pass


def load_yaml_documents(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def build(directory):
    """The resources a kustomization directory renders, in order, with the
    generated ones marked for hashing (done once, at the top)."""
    path = os.path.join(directory, "kustomization.yaml")
    with open(path, encoding="utf-8") as f:
        kustomization = yaml.safe_load(f) or {}
    unknown = set(kustomization) - SUPPORTED_KEYS
    if unknown:
        raise Unsupported(f"{path}: {', '.join(sorted(unknown))} not supported by this renderer")

    resources = []  # list of [document, generated: bool]
    for entry in kustomization.get("resources", []):
        target = os.path.normpath(os.path.join(directory, entry))
        if os.path.isdir(target):
            resources.extend(build(target))
        else:
            resources.extend([doc, False] for doc in load_yaml_documents(target))

    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in kustomization.get(key, []):
            generate(directory, kind, generator, resources)

    for patch in kustomization.get("patches", []):
        apply_patch(directory, patch, resources)

    namespace = kustomization.get("namespace")
    if namespace:
        for doc, _ in resources:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace

    for replica in kustomization.get("replicas", []):
        for doc, _ in resources:
            if doc["kind"] in WORKLOADS and doc["metadata"]["name"] == replica["name"]:
                doc["spec"]["replicas"] = replica["count"]

    for image in kustomization.get("images", []):
        for doc, _ in resources:
            for container in pod_containers(doc):
                container["image"] = retag(container["image"], image)

    return resources


def pod_spec(doc):
    if doc["kind"] == "Pod":
        return doc.get("spec")
    if doc["kind"] in WORKLOADS:
        return doc.get("spec", {}).get("template", {}).get("spec")
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_containers(doc):
    spec = pod_spec(doc) or {}
    return spec.get("initContainers", []) + spec.get("containers", [])


def retag(reference, image):
    """An `images` entry applied to one container image reference."""
    name, tag, digest = reference, None, None
    if "@" in name:
        name, digest = name.split("@", 1)
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    if name != image["name"]:
        return reference
    name = image.get("newName", name)
    if "digest" in image:
        return f"{name}@{image['digest']}"
    if "newTag" in image:
        return f"{name}:{image['newTag']}"
    if digest:
        return f"{name}@{digest}"
    return f"{name}:{tag}" if tag else name


def key_values(directory, generator):
    data = {}
    for literal in generator.get("literals", []):
        key, sep, value = literal.partition("=")
        if not sep:
            raise Unsupported(f"literal {literal!r} has no '='")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        data[key] = value
    for env in generator.get("envs", []):
        with open(os.path.join(directory, env), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.rstrip("\n").lstrip()
                if not line or line.startswith("#"):
                    continue
                key, sep, value = line.partition("=")
                if not sep:
                    # kustomize would read the value from its own
                    # environment; a deployment should not depend on that.
                    raise Unsupported(f"{env}:{number}: a line without '='")
                data[key] = value
    unknown = set(generator) - {"name", "behavior", "literals", "envs"}
    if unknown:
        raise Unsupported(f"generator {generator['name']}: {', '.join(sorted(unknown))} not supported")
    return data


def encode_secret_value(value):
    """Secret data as kustomize writes it: base64, in lines of 70."""
    encoded = base64.b64encode(value.encode()).decode()
    if len(encoded) <= 70:
        return encoded
    return "\n".join(encoded[i : i + 70] for i in range(0, len(encoded), 70)) + "\n"


def generate(directory, kind, generator, resources):
    data = key_values(directory, generator)
    if kind == "Secret":
        data = {k: encode_secret_value(v) for k, v in data.items()}
    behavior = generator.get("behavior", "create")
    name = generator["name"]
    existing = [r for r in resources if r[0]["kind"] == kind and r[0]["metadata"]["name"] == name]
    if behavior == "create":
        if existing:
            raise Unsupported(f"{kind} {name} generated twice")
        doc = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "data": data}
        if kind == "Secret":
            doc["type"] = "Opaque"
        resources.append([doc, True])
    elif behavior == "merge":
        if len(existing) != 1:
            raise Unsupported(f"merge into {kind} {name}: not found once in the resources")
        existing[0][0].setdefault("data", {}).update(data)
        existing[0][1] = True
    else:
        raise Unsupported(f"generator behavior {behavior!r}")


def go_json(value):
    """json.Marshal of Go: sorted keys, no spaces, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def content_hash(doc):
    """kustomize's name suffix for a generated ConfigMap or Secret. Its
    hasher looks the name up as a top-level field, which no resource has, so
    the name always enters the hash as "" (the same content under two names
    gets the same suffix)."""
    encoded = {"kind": doc["kind"], "name": "", "data": doc.get("data", {})}
    if doc["kind"] == "Secret":
        encoded["type"] = doc.get("type", "")
    digest = hashlib.sha256(go_json(encoded).encode()).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def rename_references(doc, kind, namespace, old, new):
    """Points a resource's references to a ConfigMap or Secret at its
    hashed name (the reference fields deploy/kubernetes can use)."""
    if doc["metadata"].get("namespace") != namespace:
        return
    field = "configMapRef" if kind == "ConfigMap" else "secretRef"
    key_field = "configMapKeyRef" if kind == "ConfigMap" else "secretKeyRef"
    spec = pod_spec(doc) or {}
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        for source in container.get("envFrom", []):
            if source.get(field, {}).get("name") == old:
                source[field]["name"] = new
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get(key_field)
            if ref and ref.get("name") == old:
                ref["name"] = new
    for volume in spec.get("volumes", []):
        if kind == "ConfigMap" and volume.get("configMap", {}).get("name") == old:
            volume["configMap"]["name"] = new
        if kind == "Secret" and volume.get("secret", {}).get("secretName") == old:
            volume["secret"]["secretName"] = new
    if kind == "Secret" and doc["kind"] == "Ingress":
        for tls in doc["spec"].get("tls", []):
            if tls.get("secretName") == old:
                tls["secretName"] = new


def select(resources, target):
    unknown = set(target) - {"kind", "name", "group", "version"}
    if unknown:
        raise Unsupported(f"patch target fields {', '.join(sorted(unknown))} not supported")
    chosen = []
    for doc, _ in resources:
        group, _, version = doc["apiVersion"].rpartition("/")
        if "kind" in target and doc["kind"] != target["kind"]:
            continue
        if "name" in target and doc["metadata"]["name"] != target["name"]:
            continue
        if "group" in target and group != target["group"]:
            continue
        if "version" in target and version != target["version"]:
            continue
        chosen.append(doc)
    if not chosen:
        raise Unsupported(f"patch target {target} matches nothing")
    return chosen


def apply_patch(directory, entry, resources):
    unknown = set(entry) - {"path", "patch", "target"}
    if unknown:
        raise Unsupported(f"patch fields {', '.join(sorted(unknown))} not supported")
    if "path" in entry:
        with open(os.path.join(directory, entry["path"]), encoding="utf-8") as f:
            text = f.read()
    else:
        text = entry["patch"]
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    if len(documents) == 1 and isinstance(documents[0], list):
        if "target" not in entry:
            raise Unsupported("a JSON 6902 patch needs a target")
        for doc in select(resources, entry["target"]):
            for operation in documents[0]:
                json_patch(doc, operation)
        return
    for patch in documents:
        target = entry.get("target") or {"kind": patch["kind"], "name": patch["metadata"]["name"]}
        for doc in select(resources, target):
            strategic_merge(doc, patch)


def json_patch(doc, operation):
    op = operation["op"]
    if op not in ("add", "replace", "remove"):
        raise Unsupported(f"JSON patch op {op!r}")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
    parent = doc
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            parent[index] = copy.deepcopy(operation["value"])
        else:
            del parent[index]
    else:
        if op != "add" and last not in parent:
            raise Unsupported(f"JSON patch {op} of missing {operation['path']}")
        if op == "remove":
            del parent[last]
        else:
            parent[last] = copy.deepcopy(operation["value"])


def strategic_merge(base, patch, field=None):
    if isinstance(patch, dict) and isinstance(base, dict):
        for key in patch:
            if key.startswith("$"):
                raise Unsupported(f"strategic merge directive {key}")
        for key, value in patch.items():
            if value is None:
                base.pop(key, None)
            elif key in base:
                base[key] = strategic_merge(base[key], value, key)
            else:
                base[key] = copy.deepcopy(value)
        return base
    if isinstance(patch, list) and isinstance(base, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        for item in patch:
            match = next((b for b in base if b.get(key) == item.get(key)), None)
            if match is None:
                base.append(copy.deepcopy(item))
            else:
                strategic_merge(match, item)
        return base
    return copy.deepcopy(patch)


def render(directory):
    resources = build(directory)
    for doc, generated in resources:
        if not generated:
            continue
        old = doc["metadata"]["name"]
        new = f"{old}-{content_hash(doc)}"
        doc["metadata"]["name"] = new
        for other, _ in resources:
            rename_references(other, doc["kind"], doc["metadata"].get("namespace"), old, new)
    return [doc for doc, _ in resources]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: kustomize.py DIR")
    try:
        documents = render(sys.argv[1])
    except Unsupported as error:
        sys.exit(f"kustomize.py: {error}")
    yaml.safe_dump_all(documents, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
