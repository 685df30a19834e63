"""The worker's own Prometheus endpoint, served by the worker's main process while retrains run in
its pool's child process (prometheus_client's multiprocess mode)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cncwear.core.choices import CandidateName
from cncwear.core.settings import Settings
from cncwear.jobs.queue import make_celery
from cncwear.jobs.store import JobState, JobStore, RetrainRequest
from tests.helpers import free_port

from .conftest import Worker, wait_for


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        sample.name + str(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def run(jobs: JobStore, settings: Settings, request: RetrainRequest) -> JobState:
    job, _ = jobs.enqueue(request, make_celery(settings))
    wait_for(
        lambda: jobs.get(job.job_id).state in {JobState.SUCCEEDED, JobState.FAILED},
        timeout=180,
        what="the retrain",
    )
    return jobs.get(job.job_id).state


def test_the_worker_exports_retrains_failures_stage_durations_and_last_success(
    queue_settings: Settings, start_worker: Callable[[Settings], Worker]
) -> None:
    port = free_port()
    settings = queue_settings.model_copy(update={"worker_metrics_port": port})
    start_worker(settings)
    before = scrape(port)
    assert "cncwear_worker_last_success_timestamp_seconds[]" not in before or (
        before["cncwear_worker_last_success_timestamp_seconds[]"] == 0
    )
    jobs = JobStore(settings)

    missing = str(settings.home / "data" / "nowhere")
    failing = RetrainRequest(reason="test", data_dir=missing, candidates=[CandidateName.BASELINE])
    assert run(jobs, settings, failing) is JobState.FAILED
    after_failure = scrape(port)
    assert after_failure["cncwear_worker_retrains_total[('outcome', 'failed')]"] == 1
    assert after_failure["cncwear_worker_retrain_failures_total[('kind', 'error')]"] == 1

    tree = RetrainRequest(reason="test", candidates=[CandidateName.DECISION_TREE])
    assert run(jobs, settings, tree) is JobState.SUCCEEDED
    metrics = scrape(port)
    assert metrics["cncwear_worker_retrains_total[('outcome', 'promoted')]"] == 1
    assert metrics["cncwear_worker_retrain_duration_seconds_count[]"] == 2
    stage = "cncwear_worker_retrain_stage_duration_seconds_count"
    assert metrics[f"{stage}[('stage', 'training decision_tree')]"] == 1
    assert metrics[f"{stage}[('stage', 'registering')]"] == 1
    assert metrics["cncwear_worker_last_success_timestamp_seconds[]"] > 0
