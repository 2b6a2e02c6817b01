"""User errors end in one located line each, ``FILE:LINE: dotted.path: reason``, and exit 2.

Every case writes a valid experiment and topology pair into ``tmp_path``,
breaks one thing with a textual edit (the edit must apply exactly once, so a
change to the base pair cannot silently turn a case into a no-op), runs
``fleetsim check`` (and for some ``fleetsim run``) in-process and compares
stderr line by line: the file, the line number, the dotted path and a word of
the reason. Expected lines are given by a unique snippet of the offending
line, so every line number is exact without being counted by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sim.cli import main

ROOT = Path(__file__).resolve().parents[1]
CLI = "<command line>"

BASE_EXPERIMENT = """\
name: base-exp
description: A valid experiment that each case breaks in one place.
topology: topo.yaml
overrides:
  gateways.gw-a.workers: 3
workload:
  rate_schedule:
    - {at_s: 0, rate_per_s: 20}
duration_s: 2
warmup_s: 0.5
seed: 7
"""

BASE_TOPOLOGY = """\
name: base
regions:
  r1:
    azs: [az1, az2]
clients:
  r1: {share: 1.0}
balancers:
  r1: {policy: round_robin, cross_zone: true}
gateways:
  gw-a:
    az: az1
    instances: 2
    workers: 2
    route: {timeout_s: 1.0}
  gw-b:
    az: az2
    instances: 2
services:
  api:
    instances_per_az: {az1: 2, az2: 2}
    workers: 4
    queue_limit: 50
    service_time_s: {dist: lognormal, median: 0.010, p99: 0.050}
"""

# The fault the fault cases break (the base experiment has none).
FAULT = ("seed: 7\n", "seed: 7\nfaults:\n  - kind: az_outage\n    az: az2\n    at_s: 1\n    for_s: 0.5\n")
KINDS = ("kinds: az_outage, backend_slowdown, error_burst, instance_crash, load_spike, redis_down, redis_failover, "
         "redis_slowdown, rolling_restart")
DISTS = "distributions: constant, empirical, exponential, gamma, lognormal, uniform"
RULE = ("names are ASCII letters, digits, '-' and '_' (no '.': dots separate the parts of dotted paths), "
        "starting with a letter or digit, at most 63 characters: they become directory names, metric keys "
        "and random-stream keys")

SECOND_REGION = ("  r1:\n    azs: [az1, az2]\n", "  r1:\n    azs: [az1, az2]\n  r2:\n    azs: [az3]\n")

LINE = re.compile(r"^(?P<file>.+?)(?::(?P<line>\d+))?: (?P<path>\S+): (?P<reason>.+)$")


@dataclass
class Case:
    """One malformed input.

    ``exp``/``topo`` are ``(old, new)`` edits applied to the base files (or
    ``None`` to leave a file out; a string replaces it whole). ``expect`` rows
    are ``(file, where, path, word)``: ``where`` is a snippet found on exactly
    one line of that file, an int line number, or None for no line. With
    ``exact`` the ``word`` is the whole reason.
    """

    exp: list[tuple[str, str]] | str | None = field(default_factory=list)
    topo: list[tuple[str, str]] | str | None = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    expect: list[tuple[str, str | int | None, str, str]] = field(default_factory=list)
    target: str = "e.yaml"
    exact: bool = False


CASES: dict[str, Case] = {
    "unknown-key-did-you-mean": Case(
        exp=[("duration_s: 2\n", "duratoin_s: 2\n")],
        expect=[("e.yaml", 1, "duration_s", "required"),
                ("e.yaml", "duratoin_s:", "duratoin_s", "did you mean 'duration_s'")],
    ),
    "unknown-key-in-topology": Case(
        topo=[("    workers: 4\n", "    wokers: 4\n")],
        expect=[("topo.yaml", "wokers:", "topology.services.api.wokers", "did you mean 'workers'")],
    ),
    "unknown-key-in-distribution": Case(
        topo=[("median: 0.010, p99: 0.050}", "median: 0.010, p99: 0.050, p95: 0.03}")],
        expect=[("topo.yaml", "service_time_s:", "topology.services.api.service_time_s.p95", "did you mean 'p99'")],
    ),
    "string-where-int": Case(
        topo=[("    instances: 2\n    workers: 2\n", "    instances: two\n    workers: 2\n")],
        expect=[("topo.yaml", "instances: two", "topology.gateways.gw-a.instances", "integer")],
    ),
    "negative-count": Case(
        topo=[("    instances: 2\n    workers: 2\n", "    instances: -1\n    workers: 2\n")],
        expect=[("topo.yaml", "instances: -1", "topology.gateways.gw-a.instances", "got -1")],
    ),
    "shares-not-one": Case(
        topo=[("  r1: {share: 1.0}", "  r1: {share: 0.5}")],
        expect=[("topo.yaml", "clients:", "topology.clients", "sum to 0.5")],
    ),
    "missing-topology-file": Case(
        exp=[("topology: topo.yaml", "topology: nowhere.yaml")],
        expect=[("e.yaml", "topology: nowhere.yaml", "topology", "no such file")],
    ),
    "override-path-unknown-field": Case(
        exp=[("  gateways.gw-a.workers: 3", "  gateways.gw-a.wrokers: 3")],
        expect=[("e.yaml", "gw-a.wrokers", "topology.gateways.gw-a.wrokers", "did you mean 'workers'")],
    ),
    "override-path-unknown-entry": Case(
        exp=[("  gateways.gw-a.workers: 3", "  gateways.gw-z.workers: 3")],
        expect=[("e.yaml", "gw-z.workers", "topology.gateways.gw-z.workers", "no entry 'gw-z'")],
    ),
    "bad-value-via-override": Case(
        exp=[("  gateways.gw-a.workers: 3", "  gateways.gw-a.workers: 0")],
        expect=[("e.yaml", "gw-a.workers: 0", "topology.gateways.gw-a.workers", "greater than")],
    ),
    "override-breaks-distribution": Case(
        # The p99 comes from the override, the median from the topology: blame the override.
        exp=[("  gateways.gw-a.workers: 3\n", "  gateways.gw-a.workers: 3\n  services.api.service_time_s.p99: 0.005\n")],
        expect=[("e.yaml", "p99: 0.005", "topology.services.api.service_time_s", "p99")],
    ),
    "override-breaks-shares": Case(
        exp=[("  gateways.gw-a.workers: 3\n", "  gateways.gw-a.workers: 3\n  clients.r1.share: 0.25\n")],
        expect=[("e.yaml", "clients.r1.share", "topology.clients", "sum to 0.25")],
    ),
    "set-unknown-path": Case(
        args=["--set", "topology.gateways.gw-a.instancez=3"],
        expect=[(CLI, None, "topology.gateways.gw-a.instancez", "did you mean 'instances'")],
    ),
    "set-bad-value": Case(
        args=["--set", "duration_s=soon"],
        expect=[(CLI, None, "duration_s", "number")],
    ),
    "set-empty-value": Case(
        args=["--set", "duration_s="],
        expect=[(CLI, None, "duration_s", "no value")],
    ),
    "set-without-equals": Case(
        args=["--set", "duration_s"],
        expect=[(CLI, None, "duration_s", "dotted.path=value")],
    ),
    "yaml-unclosed-bracket": Case(
        exp=[("warmup_s: 0.5\n", "warmup_s: [0.5\n")],
        expect=[("e.yaml", "warmup_s: [0.5", "(document)", "YAML syntax error")],
    ),
    "yaml-unclosed-quote-at-end": Case(
        exp=[("seed: 7\n", "seed: '7\n")],
        expect=[("e.yaml", "seed: '7", "(document)", "end of the file")],
    ),
    "yaml-bad-indentation": Case(
        topo=[("    queue_limit: 50\n", "   queue_limit: 50\n")],
        expect=[("topo.yaml", "queue_limit: 50", "(document)", "YAML syntax error")],
    ),
    "yaml-syntax-in-topology": Case(
        topo=[("  r1: {share: 1.0}\n", "  r1: {share: 1.0\n")],
        expect=[("topo.yaml", "r1: {share: 1.0", "(document)", "flow mapping started here")],
    ),
    "empty-experiment": Case(
        exp="",
        expect=[("e.yaml", 1, "(document)", "empty file")],
    ),
    "empty-topology": Case(
        topo="# nothing here\n",
        expect=[("topo.yaml", 1, "(document)", "empty file")],
    ),
    "top-level-list": Case(
        exp="- name: base-exp\n- duration_s: 2\n",
        expect=[("e.yaml", 1, "(document)", "got a list")],
    ),
    "missing-experiment-file": Case(
        target="nope.yaml",
        expect=[("nope.yaml", None, "(document)", "no such file")],
    ),
    "unknown-az-in-gateway": Case(
        topo=[("    az: az2\n", "    az: az9\n")],
        expect=[("topo.yaml", "az: az9", "topology.gateways.gw-b.az", "unknown AZ 'az9'")],
    ),
    "lognormal-p99-equals-median": Case(
        topo=[("median: 0.010, p99: 0.050", "median: 0.010, p99: 0.010")],
        expect=[("topo.yaml", "service_time_s:", "topology.services.api.service_time_s", "greater than median")],
    ),
    "lognormal-p99-below-median": Case(
        topo=[("median: 0.010, p99: 0.050", "median: 0.010, p99: 0.002")],
        expect=[("topo.yaml", "service_time_s:", "topology.services.api.service_time_s", "p99")],
    ),
    "bad-distribution-tag": Case(
        topo=[("{dist: lognormal,", "{dist: lognormale,")],
        expect=[("topo.yaml", "service_time_s:", "topology.services.api.service_time_s.dist",
                 f"unknown distribution 'lognormale' (did you mean 'lognormal'? {DISTS})")],
        exact=True,
    ),
    "distribution-tag-in-the-wrong-case": Case(
        topo=[("{dist: lognormal,", "{dist: LogNormal,")],
        expect=[("topo.yaml", "service_time_s:", "topology.services.api.service_time_s.dist",
                 f"unknown distribution 'LogNormal' (did you mean 'lognormal'? {DISTS})")],
        exact=True,
    ),
    "distribution-tag-far-from-any": Case(
        topo=[("{dist: lognormal,", "{dist: pareto,")],
        expect=[("topo.yaml", "service_time_s:", "topology.services.api.service_time_s.dist",
                 f"unknown distribution 'pareto' ({DISTS})")],
        exact=True,
    ),
    "distribution-without-tag": Case(
        topo=[("{dist: lognormal, median", "{median")],
        expect=[("topo.yaml", "service_time_s:", "topology.services.api.service_time_s",
                 f"a distribution needs 'dist: KIND' or is a bare number ({DISTS})")],
        exact=True,
    ),
    "distribution-given-as-its-name": Case(
        topo=[("    workers: 2\n    route:", "    workers: 2\n    cpu_time_s: exponentail\n    route:")],
        expect=[("topo.yaml", "cpu_time_s:", "topology.gateways.gw-a.cpu_time_s",
                 f"a distribution needs 'dist: KIND' or is a bare number ({DISTS}), got 'exponentail' "
                 "(did you mean {dist: exponential, ...}?)")],
        exact=True,
    ),
    "fault-kind-misspelled": Case(
        exp=[FAULT, ("  - kind: az_outage\n", "  - kind: az_outtage\n")],
        expect=[("e.yaml", "kind: az_outtage", "faults.0.kind",
                 f"unknown fault kind 'az_outtage' (did you mean 'az_outage'? {KINDS})")],
        exact=True,
    ),
    "fault-kind-unknown": Case(
        exp=[FAULT, ("  - kind: az_outage\n", "  - kind: reboot\n")],
        expect=[("e.yaml", "kind: reboot", "faults.0.kind", f"unknown fault kind 'reboot' ({KINDS})")],
        exact=True,
    ),
    "fault-kind-not-a-string": Case(
        exp=[FAULT, ("  - kind: az_outage\n", "  - kind: 3\n")],
        expect=[("e.yaml", "kind: 3", "faults.0.kind", f"unknown fault kind 3 ({KINDS})")],
        exact=True,
    ),
    "fault-without-kind": Case(
        exp=[FAULT, ("  - kind: az_outage\n    az: az2\n", "  - az: az2\n")],
        expect=[("e.yaml", "- az: az2", "faults.0", f"a fault needs 'kind: KIND' ({KINDS})")],
        exact=True,
    ),
    "fault-given-as-its-kind": Case(
        exp=[("seed: 7\n", "seed: 7\nfaults: [az_outage]\n")],
        expect=[("e.yaml", "faults:", "faults.0",
                 f"a fault needs 'kind: KIND' ({KINDS}), got 'az_outage' (did you mean {{kind: az_outage, ...}}?)")],
        exact=True,
    ),
    "fault-field-is-named-without-its-kind": Case(
        # The kind selects the model; the path is the field's (pydantic's has the kind in it).
        exp=[FAULT, ("    for_s: 0.5\n", "    for_s: -1\n")],
        expect=[("e.yaml", "for_s: -1", "faults.0.for_s", "Input should be greater than 0, got -1")],
        exact=True,
    ),
    "fault-unknown-field-did-you-mean": Case(
        exp=[("seed: 7\n", "seed: 7\nfaults:\n  - {kind: load_spike, at_s: 1, for_s: 0.5, factr: 2}\n")],
        expect=[("e.yaml", "factr", "faults.0.factor", "required field is missing"),
                ("e.yaml", "factr", "faults.0.factr", "unknown field (did you mean 'factor'?)")],
        exact=True,
    ),
    "literal-did-you-mean": Case(
        topo=[("{policy: round_robin,", "{policy: round-robin,")],
        expect=[("topo.yaml", "policy: round-robin", "topology.balancers.r1.policy",
                 "Input should be 'round_robin', 'random' or 'least_connections', got 'round-robin' "
                 "(did you mean 'round_robin'?)")],
        exact=True,
    ),
    "name-not-ascii": Case(
        topo=[("    azs: [az1, az2]\n", "    azs: [az1, zürich]\n")],
        expect=[("topo.yaml", "zürich", "topology.regions.r1.azs.1", f"invalid name 'zürich': 'ü' is not ASCII; {RULE}")],
        exact=True,
    ),
    "name-not-ascii-as-a-key": Case(
        topo=[("  gw-b:\n", "  gw-ß:\n")],
        expect=[("topo.yaml", "gw-ß:", "topology.gateways.gw-ß", f"invalid name 'gw-ß': 'ß' is not ASCII; {RULE}")],
        exact=True,
    ),
    "name-with-a-dot": Case(
        exp=[("name: base-exp\n", "name: base.exp\n")],
        expect=[("e.yaml", "name: base.exp", "name", f"invalid name 'base.exp': '.' is not allowed; {RULE}")],
        exact=True,
    ),
    "name-with-a-leading-dash": Case(
        topo=[("{az1: 2, az2: 2}", "{az1: 2, -az2: 2}")],
        expect=[("topo.yaml", "-az2", "topology.services.api.instances_per_az.-az2",
                 f"invalid name '-az2': it starts with '-'; {RULE}")],
        exact=True,
    ),
    "name-too-long": Case(
        exp=[("name: base-exp\n", f"name: {'x' * 64}\n")],
        expect=[("e.yaml", "name: xxx", "name", f"invalid name '{'x' * 64}': it has 64 characters; {RULE}")],
        exact=True,
    ),
    "client-backoff-base-negative": Case(
        exp=[("  rate_schedule:\n", "  client: {max_attempts: 2, backoff: {base_s: -0.1}}\n  rate_schedule:\n")],
        expect=[("e.yaml", "base_s: -0.1", "workload.client.backoff.base_s",
                 "Input should be greater than or equal to 0, got -0.1")],
        exact=True,
    ),
    "client-backoff-max-below-base": Case(
        exp=[("  rate_schedule:\n", "  client:\n    backoff:\n      base_s: 2\n      max_s: 1\n  rate_schedule:\n")],
        expect=[("e.yaml", "max_s: 1", "workload.client.backoff.max_s", "must be at least base_s (2)")],
        exact=True,
    ),
    "queue-limit-negative": Case(
        topo=[("    queue_limit: 50\n", "    queue_limit: -1\n")],
        expect=[("topo.yaml", "queue_limit: -1", "topology.services.api.queue_limit",
                 "Input should be greater than or equal to 0, got -1")],
        exact=True,
    ),
    "variants-every-problem-of-every-variant": Case(
        exp=[("seed: 7\n", "seed: 7\nvariants:\n  ok: {seed: 8}\n  fast: {duration_s: 0}\n  slow:\n"
                           "    topology.services.api.wrokers: 3\n    seed: -1\n  short: {duration_s: 0.4}\n")],
        expect=[("e.yaml", "fast:", "variants.fast.duration_s", "Input should be greater than 0, got 0"),
                ("e.yaml", "wrokers", "variants.slow.topology.services.api.wrokers",
                 "topology.services.api has no field 'wrokers' (did you mean 'workers'?)"),
                ("e.yaml", "seed: -1", "variants.slow.seed", "Input should be greater than or equal to 0, got -1"),
                # The warm-up is the base's; the variant's duration makes it too long: the variant's line.
                ("e.yaml", "short:", "variants.short.warmup_s",
                 "warm-up (0.5 s) must be shorter than duration_s (0.4 s)")],
        exact=True,
    ),
    "variants-checked-with-a-broken-base": Case(
        # The base's own problem is reported once, not again for each variant.
        exp=[("seed: 7\n", "seed: -7\nvariants:\n  a: {duration_s: 0}\n  b: {replications: 0}\n")],
        expect=[("e.yaml", "seed: -7", "seed", "Input should be greater than or equal to 0, got -7"),
                ("e.yaml", "a: {", "variants.a.duration_s", "Input should be greater than 0, got 0"),
                ("e.yaml", "b: {", "variants.b.replications", "Input should be greater than or equal to 1, got 0")],
        exact=True,
    ),
    "warmup-not-shorter": Case(
        exp=[("warmup_s: 0.5", "warmup_s: 2")],
        expect=[("e.yaml", "warmup_s: 2", "warmup_s", "shorter than duration_s")],
    ),
    "rate-schedule-not-at-zero": Case(
        exp=[("{at_s: 0, rate_per_s: 20}", "{at_s: 1, rate_per_s: 20}")],
        expect=[("e.yaml", "at_s: 1", "workload.rate_schedule.0.at_s", "start at 0")],
    ),
    "duplicate-key": Case(
        exp=[("seed: 7\n", "seed: 7\nseed: 8\n")],
        expect=[("e.yaml", "seed: 8", "seed", "duplicate key (first given on line 11)")],
    ),
    "duplicate-key-in-topology": Case(
        topo=[("    queue_limit: 50\n", "    queue_limit: 50\n    queue_limit: 60\n")],
        expect=[("topo.yaml", "queue_limit: 60", "topology.services.api.queue_limit", "duplicate key")],
    ),
    "instances-in-region-without-gateways": Case(
        topo=[SECOND_REGION, ("{az1: 2, az2: 2}", "{az1: 2, az2: 2, az3: 1}")],
        expect=[("topo.yaml", "az3: 1", "topology.services.api.instances_per_az.az3", "unconnected")],
    ),
    "gateways-in-region-without-clients": Case(
        topo=[SECOND_REGION, ("services:\n", "  gw-c:\n    az: az3\n    instances: 1\nservices:\n"),
              ("{az1: 2, az2: 2}", "{az1: 2, az2: 2, az3: 1}")],
        expect=[("topo.yaml", "gw-c:", "topology.gateways.gw-c", "no client reaches region 'r2'")],
    ),
    "instance-name-clash-gateway-backend": Case(
        # Pool 'api-az1' instance 0 and service 'api' in AZ 'az1' instance 0 are both 'api-az1-0'.
        topo=[("services:\n", "  api-az1:\n    az: az1\n    instances: 1\nservices:\n")],
        expect=[("topo.yaml", "instances_per_az:", "topology.services.api.instances_per_az.az1", "clash")],
    ),
    "instance-name-clash-between-services": Case(
        # Service 'api' in AZ 'x-az1' and service 'api-x' in AZ 'az1' both name 'api-x-az1-0'.
        exp=[("workload:\n", "workload:\n  services: {api: 0.5, api-x: 0.5}\n")],
        topo=[("azs: [az1, az2]", "azs: [az1, az2, x-az1]"), ("{az1: 2, az2: 2}", "{az1: 2, az2: 2, x-az1: 1}"),
              ("p99: 0.050}\n", "p99: 0.050}\n  api-x:\n    instances_per_az: {az1: 1}\n    service_time_s: 0.01\n")],
        expect=[("topo.yaml", "instances_per_az: {az1: 1}", "topology.services.api-x.instances_per_az.az1", "clash")],
    ),
    "two-problems-two-lines": Case(
        exp=[("seed: 7", "seed: -7"), ("duration_s: 2", "duration_s: 0")],
        expect=[("e.yaml", "duration_s: 0", "duration_s", "greater than 0"),
                ("e.yaml", "seed: -7", "seed", "got -7")],
    ),
}

RUN_CASES = [
    "unknown-key-did-you-mean", "bad-value-via-override", "set-unknown-path", "missing-topology-file",
    "gateways-in-region-without-clients", "yaml-unclosed-bracket", "fault-kind-misspelled",
    "variants-every-problem-of-every-variant",
]


def _edit(text: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        assert text.count(old) == 1, f"edit target {old!r} must occur exactly once"
        text = text.replace(old, new)
    return text


def _write(tmp_path: Path, case: Case) -> dict[str, str]:
    texts = {}
    for name, base, spec in (("e.yaml", BASE_EXPERIMENT, case.exp), ("topo.yaml", BASE_TOPOLOGY, case.topo)):
        if spec is None:
            continue
        text = spec if isinstance(spec, str) else _edit(base, spec)
        (tmp_path / name).write_text(text, encoding="utf-8")
        texts[name] = text
    return texts


def _line_of(text: str, snippet: str) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if snippet in line]
    assert len(hits) == 1, f"snippet {snippet!r} is on lines {hits}, expected exactly one"
    return hits[0]


def _check_stderr(err: str, tmp_path: Path, texts: dict[str, str], expect: list, exact: bool = False) -> None:
    lines = err.splitlines()
    assert len(lines) == len(expect), err
    for got, (file, where, path, word) in zip(lines, expect, strict=True):
        m = LINE.match(got)
        assert m, f"not FILE[:LINE]: path: reason: {got!r}"
        assert "Traceback" not in got
        want_file = file if file == CLI else str(tmp_path / file)
        assert m["file"] == want_file, got
        if where is None:
            assert m["line"] is None, got
        else:
            want_line = where if isinstance(where, int) else _line_of(texts[file], where)
            assert m["line"] is not None and int(m["line"]) == want_line, got
        assert m["path"] == path, got
        assert m["reason"] == word if exact else word in m["reason"], got


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_reports_each_problem_on_one_line(name, tmp_path, capsys):
    case = CASES[name]
    texts = _write(tmp_path, case)
    code = main(["check", str(tmp_path / case.target), *case.args])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert out == ""
    _check_stderr(err, tmp_path, texts, case.expect, case.exact)


@pytest.mark.parametrize("name", RUN_CASES)
def test_run_reports_the_same_lines_and_writes_nothing(name, tmp_path, capsys):
    case = CASES[name]
    texts = _write(tmp_path, case)
    out_dir = tmp_path / "results"
    code = main(["run", str(tmp_path / case.target), *case.args, "--out", str(out_dir), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 2, err
    _check_stderr(err, tmp_path, texts, case.expect, case.exact)
    assert not out_dir.exists()


def test_base_pair_is_valid(tmp_path, capsys):
    """The cases above each break this pair in one place; unbroken, it checks and runs."""
    _write(tmp_path, Case())
    assert main(["check", str(tmp_path / "e.yaml")]) == 0
    code = main(["run", str(tmp_path / "e.yaml"), "--out", str(tmp_path / "results"), "--quiet",
                 "--no-report", "--jobs", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1])
    summary = json.loads((run_dir / "summary.json").read_text())
    req = summary["requests"]
    assert req["offered"] == req["succeeded"] + sum(req["failed"].values()) + req["in_flight"]


def test_override_inside_a_part_the_fleet_refuses_is_named(tmp_path, capsys):
    """A fleet-builder refusal points at the part's declaration and names the override in it."""
    case = Case(
        exp=[("  gateways.gw-a.workers: 3\n", "  gateways.gw-a.workers: 3\n  gateways.gw-b.az: az3\n")],
        topo=[SECOND_REGION],
    )
    texts = _write(tmp_path, case)
    assert main(["check", str(tmp_path / "e.yaml")]) == 2
    err = capsys.readouterr().err
    _check_stderr(err, tmp_path, texts, [("topo.yaml", "gw-b:", "topology.gateways.gw-b", "unconnected")])
    assert f"overridden at {tmp_path / 'e.yaml'}:{_line_of(texts['e.yaml'], 'gw-b.az')}" in err


def test_schema_is_json_with_topology(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "topology" in schema["properties"]
    assert {"name", "workload", "duration_s"} <= set(schema["properties"])


SHIPPED = sorted([*ROOT.glob("experiments/*.yaml"), *ROOT.glob("experiments/validation/*.yaml")])


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_shipped_experiments_check(path, capsys):
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    assert out.startswith(f"{path}: ok")
