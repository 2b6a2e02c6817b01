"""Issue [first-hour] items 3, 4, 5 and the schema half of 19.

- Every tagged union of the schema reports an unknown tag as what it is, at
  the tag, with its valid values and a did-you-mean (the exact messages are
  in tests/test_config_errors.py; here: the schema has exactly the unions
  named, and each is exercised through ``fleetsim check``).
- A service's ``queue_limit: null`` is an unbounded queue; a client back-off
  with ``base_s: 0`` retries at once.
"""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from sim.cli import main
from sim.components.backend import BackendInstance
from sim.components.request import OK, Attempt
from sim.config import Experiment, Service, dump_resolved, json_schema, load_experiment
from sim.config.loader import TAG_WORDS, TAGGED_UNIONS, find_tagged_unions
from sim.engine import SimContext

from .fleet_builders import experiment, run_logged
from .test_config_errors import BASE_EXPERIMENT, BASE_TOPOLOGY

# Where each tagged union goes in the base pair, as an edit that writes a member
# with the given tag (``{tag}``), and the line that holds the tag.
PLACES = {
    "dist": ("topo", "{dist: lognormal,", "{{dist: {tag},", "topology.services.api.service_time_s.dist"),
    "kind": ("exp", "seed: 7\n", "seed: 7\nfaults:\n  - {{kind: {tag}, at_s: 1, for_s: 0.5, az: az2}}\n",
             "faults.0.kind"),
    "event": ("exp", "seed: 7\n", "seed: 7\ncontrol_plane:\n  events:\n    - {{event: {tag}, at_s: 1, down_s: 1}}\n",
              "control_plane.events.0.event"),
    "algorithm": ("topo", "services:\n", "rate_limit: {{algorithm: {tag}, limit: 10, burst: 5}}\nservices:\n",
                  "topology.rate_limit.algorithm"),
}


def test_the_schema_has_these_tagged_unions_and_each_has_its_words():
    unions = find_tagged_unions()
    assert {(u.key, u.tags) for u in unions} == {
        ("dist", ("constant", "empirical", "exponential", "gamma", "lognormal", "uniform")),
        ("kind", ("az_outage", "backend_slowdown", "error_burst", "instance_crash", "load_spike", "redis_down",
                  "redis_failover", "redis_slowdown", "rolling_restart")),
        ("event", ("deploy", "endpoint_churn", "replica_restart")),
        ("algorithm", ("fixed_window", "local", "redis_token_bucket")),
    }
    # One union per tag field: messages find a union's values by its tag field's name.
    assert len(TAGGED_UNIONS) == len(unions)
    # A new union needs its words (how messages name it) and a place in the tests below.
    assert set(TAG_WORDS) == set(TAGGED_UNIONS) == set(PLACES)


@pytest.mark.parametrize("key", sorted(TAGGED_UNIONS))
def test_each_tagged_union_reports_a_misspelled_tag_at_the_tag(key, tmp_path, capsys):
    union = TAGGED_UNIONS[key]
    good = union.tags[-1]
    bad = good[:-1] + good[-1] * 2  # one letter doubled: close enough for a hint
    which, old, new, path = PLACES[key]
    texts = {"exp": BASE_EXPERIMENT, "topo": BASE_TOPOLOGY}
    assert texts[which].count(old) == 1
    texts[which] = texts[which].replace(old, new.format(tag=bad))
    (tmp_path / "e.yaml").write_text(texts["exp"], encoding="utf-8")
    (tmp_path / "topo.yaml").write_text(texts["topo"], encoding="utf-8")
    assert main(["check", str(tmp_path / "e.yaml")]) == 2
    err = capsys.readouterr().err
    file = tmp_path / ("e.yaml" if which == "exp" else "topo.yaml")
    line = next(i for i, t in enumerate(texts[which].splitlines(), 1) if bad in t)
    noun, plural, _ = TAG_WORDS[key]
    assert err == (f"{file}:{line}: {path}: unknown {noun} {bad!r} "
                   f"(did you mean {good!r}? {plural}: {', '.join(union.tags)})\n")


# --------------------------------------------------------------------------- queue_limit: null


def test_queue_limit_null_loads_stays_null_and_resolves_back(tmp_path):
    (tmp_path / "topo.yaml").write_text(BASE_TOPOLOGY.replace("queue_limit: 50", "queue_limit: null"))
    (tmp_path / "e.yaml").write_text(BASE_EXPERIMENT)
    exp = load_experiment(tmp_path / "e.yaml").config
    assert exp.topology.services["api"].queue_limit is None
    text = dump_resolved(exp)
    data = YAML(typ="safe", pure=True).load(text)
    assert data["topology"]["services"]["api"]["queue_limit"] is None
    assert Experiment.model_validate(data) == exp
    # The default stays 1000 slots; the schema says what null means.
    assert Service(instances_per_az={"a": 1}, service_time_s=0.01).queue_limit == 1000
    prop = json_schema()["$defs"]["Service"]["properties"]["queue_limit"]
    assert {"type": "null"} in prop["anyOf"] and "null: unbounded" in prop["description"]


def test_a_backend_with_queue_limit_null_turns_nobody_away_even_after_a_restart():
    ctx = SimContext(1)
    b = BackendInstance(ctx, "api-a1-0", Service(instances_per_az={"a1": 1}, workers=1, service_time_s=1.0,
                                                 queue_limit=None), "api", "a1")
    answered = []
    for _ in range(10_000):
        a = Attempt(None, None, 0, b)
        a.on_reply = answered.append
        b.accept(a)
    assert (b.busy, len(b.queue), b.rejected, answered) == (1, 9_999, 0, [])
    b.crash()
    b.restart()
    for _ in range(5_000):
        a = Attempt(None, None, 0, b)
        a.on_reply = answered.append
        b.accept(a)
    assert (len(b.queue), b.rejected) == (4_999, 0)


def test_an_unbounded_queue_runs_as_a_bound_that_is_never_reached():
    # One worker, 1.5 s per attempt, an arrival a second: the queue grows all run long.
    def summary(limit):
        _, log, res = run_logged(experiment(topology__services__api__service_time_s=1.5,
                                            topology__services__api__queue_limit=limit, duration_s=8.0))
        return log, res["summary"]

    log, unbounded = summary(None)
    assert [out for _, _, out in log] == [OK] * len(log) and unbounded["backend"]["api"]["rejected"] == 0
    assert (log, unbounded) == summary(10**6)
    # With room for one waiting attempt, the same load overflows.
    assert summary(1)[1]["backend"]["api"]["rejected"] > 0


# --------------------------------------------------------------------------- client back-off base_s: 0


def test_client_backoff_base_zero_loads(tmp_path):
    (tmp_path / "topo.yaml").write_text(BASE_TOPOLOGY)
    (tmp_path / "e.yaml").write_text(BASE_EXPERIMENT.replace(
        "  rate_schedule:\n", "  client: {max_attempts: 3, backoff: {base_s: 0}}\n  rate_schedule:\n"))
    backoff = load_experiment(tmp_path / "e.yaml").config.workload.client.backoff
    assert (backoff.base_s, backoff.max_s) == (0.0, 20.0)


@pytest.mark.parametrize("jitter", ["full", "none"])
def test_client_backoff_base_zero_retries_at_once(jitter):
    exp = experiment(topology__services__api__error_probability=1.0,
                     workload__client={"max_attempts": 3, "backoff": {"base_s": 0, "max_s": 1.0, "jitter": jitter}})
    _, log, res = run_logged(exp)
    # Every try fails (500) and the next one leaves as the answer arrives: a call
    # takes exactly its three tries, 31.1 ms for the first (it opens the gateway's
    # connection), 29.1 ms for each other.
    assert log == [(1.0, 0.0893, "backend_error"), (2.0, 0.0873, "backend_error"), (3.0, 0.0873, "backend_error")]
    assert res["summary"]["retries"]["amplification"] == 3.0

