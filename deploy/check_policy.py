"""Reads deploy/k8s's ConfigMap, StatefulSet and NetworkPolicy together and fails when the
shipped policy would block what the shipped settings enable: replicas asking each other,
snapshots in the object store, Kafka, alert destinations, probes and the metrics scrape.

Run by .ci/run: python3 deploy/check_policy.py (needs PyYAML).
"""

import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import yaml

K8S = Path(__file__).parent / "k8s"


def load(name):
    return list(yaml.safe_load_all((K8S / name).read_text()))


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
# A Slack destination's URL is a secret (url_file): every incoming webhook is on this host.
SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/"


def destination_url(destination):
    """Where a destination's requests go, as far as the settings say."""
    if destination.get("url"):
        return destination["url"]
    return {"pagerduty": PAGERDUTY_EVENTS_URL, "slack": SLACK_WEBHOOK_URL}.get(destination["kind"])


def cluster_namespace(host):
    """The namespace of a Service host name (name.namespace.svc[.cluster.local]), else None."""
    labels = host.split(".")
    if len(labels) >= 3 and labels[2] == "svc":
        return labels[1]
    return None


def allowed(rules, port, peer_check):
    """True when some rule admits `port` and its peers pass `peer_check`."""
    for rule in rules:
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        peers = rule.get("from", rule.get("to", []))
        if not peers or any(peer_check(peer) for peer in peers):
            return True
    return False


def main():
    config_map = load("configmap.yaml")[0]
    settings = tomllib.loads(config_map["data"]["integration-health.toml"])
    stateful_set = load("statefulset.yaml")[0]
    policy = load("networkpolicy.yaml")[0]["spec"]
    pod = stateful_set["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
    app_labels = pod["metadata"]["labels"]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    problems = []

    def own_pods(peer):
        selector = peer.get("podSelector", {}).get("matchLabels", {})
        return "namespaceSelector" not in peer and selector and all(
            app_labels.get(k) == v for k, v in selector.items()
        )

    def namespace(name):
        return lambda peer: peer.get("namespaceSelector", {}).get("matchLabels", {}).get(
            "kubernetes.io/metadata.name"
        ) == name

    def outside_cluster(peer):
        return "ipBlock" in peer

    grpc = port_of(settings["grpc_addr"])
    if settings.get("advertise_addr") or "IH_ADVERTISE_ADDR" in env:
        if not allowed(policy["ingress"], grpc, own_pods):
            problems.append(f"replicas cannot reach each other's gRPC port {grpc} (ingress)")
        if not allowed(policy["egress"], grpc, own_pods):
            problems.append(f"replicas cannot call each other's gRPC port {grpc} (egress)")
    state_url = settings.get("state_url", "")
    if state_url.startswith(("s3://", "gs://", "az://")):
        if not allowed(policy["egress"], 443, outside_cluster):
            problems.append(f"state_url {state_url} needs egress to the object store on 443")
    for broker in settings["brokers"].split(","):
        if not allowed(policy["egress"], port_of(broker), namespace("kafka")):
            problems.append(f"broker {broker} is not reachable under the egress rules")

    for destination in settings.get("alert_destinations", []):
        url = urlsplit(destination_url(destination) or "")
        port = url.port or (443 if url.scheme == "https" else 80)
        inside = cluster_namespace(url.hostname or "")
        peers = namespace(inside) if inside else outside_cluster
        if not allowed(policy["egress"], port, peers):
            problems.append(
                f"alert destination {destination['name']} ({url.hostname}:{port}) "
                "is not reachable under the egress rules"
            )

    ops_addr = settings.get("ops_addr")
    tls = "tls_cert" in settings
    probe_port = port_of(ops_addr) if ops_addr else port_of(settings["http_addr"])
    probe_scheme = "HTTP" if ops_addr or not tls else "HTTPS"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        port = container_ports.get(get["port"], get["port"])
        if port != probe_port or get.get("scheme", "HTTP") != probe_scheme:
            problems.append(
                f"{probe} asks port {port} over {get.get('scheme', 'HTTP')}; "
                f"probes are served on {probe_port} over {probe_scheme}"
            )
    annotations = pod["metadata"].get("annotations", {})
    scrape_port = int(annotations.get("prometheus.io/port", 0))
    scrape_scheme = annotations.get("prometheus.io/scheme", "http")
    if scrape_port != probe_port or scrape_scheme != probe_scheme.lower():
        problems.append(
            f"Prometheus is told {scrape_scheme}://:{scrape_port}; metrics are served on "
            f"{probe_scheme.lower()}://:{probe_port}"
        )
    if not allowed(policy["ingress"], probe_port, namespace("monitoring")):
        problems.append(f"the monitoring namespace cannot scrape port {probe_port}")

    for problem in problems:
        print(f"deploy/k8s: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("deploy/k8s: the network policy admits everything the configuration uses")


if __name__ == "__main__":
    main()
