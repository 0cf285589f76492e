"""Accuracy: the deployed model against PyTorch on the same samples (always: a complete gate of
the deployment whatever the weights), and against the seed's published figure when the real
checkpoint and the complete dataset are given."""
from __future__ import annotations

import pytest

from harness import gate, verdicts

pytestmark = pytest.mark.accuracy


def test_deployed_model_matches_pytorch(model, batch_size, backend, reference_outputs, deployed_outputs,
                                        weights, run, record, baseline, divergence):
    row = verdicts.accuracy_row(model, backend.precision, reference_outputs, deployed_outputs,
                                run.accept_bad_items, run.accept_missing)
    published = verdicts.published_verdict(model, weights, row["data"], run.profile, deployed_outputs.metrics)
    key = (model.name, backend.name, backend.precision, batch_size)
    findings = gate.compare_row(key, {"accuracy": row["accuracy"], "profile": run.profile}, baseline.get(key),
                                run.fps_regression) if baseline else []
    diverged = not (deployed_outputs.elementwise.passed and all(a["passed"] for a in row["agreement"].values()))
    localised = divergence.localise() if diverged and deployed_outputs.sample_ids else ""
    record(accuracy=row["accuracy"], accuracy_verdict=row["verdict"], failures=row["failures"],
           notes=row["notes"], elementwise=row["elementwise"], agreement=row["agreement"],
           published=published, weights=weights.provenance, data=row["data"], environment=backend.environment(),
           worst_sample_picture=divergence.picture(), localisation=localised,
           **({"gate": {"accuracy": gate.findings_record(findings)}} if baseline else {}))
    where = f"{model.name} bs{batch_size} on {backend.name} ({backend.precision})"
    assert not row["failures"], f"{where}: " + "; ".join(row["failures"]) + (f"\n{localised}" if localised else "")
    failing = [str(f) for f in findings if f.failing]
    assert not failing, f"{where}: against the baseline: " + "; ".join(failing)


@pytest.mark.smallest_batch_size
def test_published_figure(model, batch_size, weights, run, request):
    """Judged at the smallest batch size, as the seeds publish accuracy at batch size 1."""
    if weights.seeded:  # decided before any data is read: say what is missing at once
        pytest.skip(verdicts.published_not_applicable(model, weights, None, run.profile))
    deployed = request.getfixturevalue("deployed_outputs")
    verdict = verdicts.published_verdict(model, weights, deployed.dataset, run.profile, deployed.metrics)
    if not verdict["applies"]:
        pytest.skip(f"published figures do not apply: {verdict['reason']}")
    failed = {n: m for n, m in verdict["metrics"].items() if m["verdict"] == "fail"}
    assert not failed, f"{model.name}: " + "; ".join(f"{n} {m['value']:.4g}: {m['why']}" for n, m in failed.items())
