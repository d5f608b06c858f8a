"""The TaskStore contract: the same tests against every backend (SQLite, OpenSearch).

The OpenSearch half runs against a fresh clone of an in-memory osmem-server per test (the
server starts once per session, through osmem-server's pytest plugin), or against a real
cluster when OPENSEARCH_URL is set (each test then uses its own index prefix and deletes its
indices afterwards; OPENSEARCH_REGION and OPENSEARCH_SERVICE turn on SigV4 signing).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spotbot.core.errors import JobNotFoundError, StoreError
from spotbot.core.records import Job, JobStatus, Result, Task, TaskStatus, shard_of
from spotbot.core.sqlite_store import SqliteTaskStore
from spotbot.core.store import TaskStore

BOT = "ocr-zh"


# -- fixtures -----------------------------------------------------------------------------
def _opensearch_store(request: pytest.FixtureRequest, **options: Any) -> Iterator[TaskStore]:
    pytest.importorskip("opensearchpy")
    from spotbot.aws.opensearch_store import OpenSearchTaskStore

    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        pytest.importorskip("osmem_server")
        clone = request.getfixturevalue("osmem_clone")  # a private copy of the cluster
        store = OpenSearchTaskStore(clone.url, **options)
        yield store
        store.close()
        return
    region = os.environ.get("OPENSEARCH_REGION")
    service = os.environ.get("OPENSEARCH_SERVICE", "es")
    prefix = f"spotbot-test-{uuid.uuid4().hex[:10]}-"
    store = OpenSearchTaskStore(url, prefix=prefix, region=region, service=service, **options)
    yield store
    store._client.indices.delete(index=f"{prefix}*")
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("opensearch", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskStore]:
    if request.param == "sqlite":
        with SqliteTaskStore(tmp_path / "tasks.db") as sqlite_store:
            yield sqlite_store
    else:
        yield from _opensearch_store(request)


@pytest.fixture
def opensearch_store(request: pytest.FixtureRequest) -> Iterator[TaskStore]:
    yield from _opensearch_store(request)


# -- helpers ------------------------------------------------------------------------------
def make_job(
    store: TaskStore,
    job_id: str = "job-1",
    bot: str = BOT,
    shards: int = 1,
    created_at: str = "2025-01-01T00:00:00.000Z",
) -> Job:
    return store.create_job(
        Job(
            id=job_id,
            bot=bot,
            source="s3://in/",
            output="s3://out/",
            shards=shards,
            model_version="v1",
            created_at=created_at,
        )
    )


def make_tasks(job_id: str, n: int, shards: int = 1, prefix: str = "k") -> list[Task]:
    keys = [f"{prefix}{i:05d}.jpg" for i in range(n)]
    return [Task(job_id=job_id, key=k, shard=shard_of(k, shards)) for k in keys]


def done(job_id: str, key: str, labels: list[str], text: str = "", bot: str = BOT) -> Result:
    tags = [{"label": label, "score": 0.9} for label in labels]
    extra = {"text": text} if text else {}
    return Result(
        job_id=job_id,
        key=key,
        bot=bot,
        model_version="v1",
        status=TaskStatus.DONE,
        tags=tags,
        extra=extra,
    )


def failed(job_id: str, key: str, error: str = "cannot decode image") -> Result:
    return Result(
        job_id=job_id, key=key, bot=BOT, model_version="v1", status=TaskStatus.FAILED, error=error
    )


def claim_all(store: TaskStore, job_id: str, shard: int, page: int) -> list[Task]:
    claimed: list[Task] = []
    while batch := store.claim_tasks(job_id, shard, "w1", page):
        claimed.extend(batch)
    return claimed


# -- jobs ---------------------------------------------------------------------------------
def test_create_job_twice_keeps_the_first(store: TaskStore) -> None:
    # GIVEN a recorded job
    first = make_job(store)
    # WHEN a job with the same id is created again with other fields
    again = store.create_job(Job(id="job-1", bot="car-model", source="x", output="y"))
    # THEN the first one is kept and returned
    assert again == first
    assert store.get_job("job-1").bot == BOT


def test_get_unknown_job_raises_job_not_found(store: TaskStore) -> None:
    with pytest.raises(JobNotFoundError):
        store.get_job("job-nope")


def test_update_job_sets_fields_and_keeps_the_rest(store: TaskStore) -> None:
    make_job(store)
    job = store.update_job("job-1", status=JobStatus.RUNNING, options={"batch": 8})
    assert job.status is JobStatus.RUNNING
    stored = store.get_job("job-1")
    assert stored.status is JobStatus.RUNNING
    assert stored.options == {"batch": 8}
    assert stored.model_version == "v1"
    # options are replaced, not merged
    assert store.update_job("job-1", options={"other": 1}).options == {"other": 1}
    assert store.get_job("job-1").options == {"other": 1}


def test_update_job_rejects_unknown_jobs_and_fields(store: TaskStore) -> None:
    make_job(store)
    with pytest.raises(JobNotFoundError):
        store.update_job("job-nope", status=JobStatus.FAILED)
    with pytest.raises(StoreError):
        store.update_job("job-1", colour="red")


def test_list_jobs_newest_first(store: TaskStore) -> None:
    for i in range(5):
        make_job(store, f"job-{i}", created_at=f"2025-01-0{i + 1}T00:00:00.000Z")
    assert [j.id for j in store.list_jobs()] == ["job-4", "job-3", "job-2", "job-1", "job-0"]
    assert [j.id for j in store.list_jobs(limit=2)] == ["job-4", "job-3"]


# -- tasks --------------------------------------------------------------------------------
def test_put_tasks_counts_only_new_tasks(store: TaskStore) -> None:
    # GIVEN three tasks already written
    make_job(store)
    tasks = make_tasks("job-1", 4)
    assert store.put_tasks(tasks[:3]) == 3
    # WHEN the same tasks and one more are written again (a retried scan page)
    added = store.put_tasks(tasks)
    # THEN only the new one counts and nothing is duplicated
    assert added == 1
    assert store.put_tasks(tasks + tasks) == 0
    assert store.count_tasks("job-1")[TaskStatus.PENDING] == 4


def test_claim_pages_through_its_shard_once(store: TaskStore) -> None:
    # GIVEN tasks spread over two shards
    make_job(store, shards=2)
    tasks = make_tasks("job-1", 60, shards=2)
    store.put_tasks(tasks)
    shard0 = sorted(t.key for t in tasks if t.shard == 0)
    # WHEN shard 0 is claimed page by page until nothing is left
    pages = []
    while page := store.claim_tasks("job-1", 0, "w1", 7):
        pages.append(page)
    # THEN every task of shard 0 came exactly once, in key order within a page, nothing else
    claimed = [t.key for page in pages for t in page]
    assert sorted(claimed) == shard0
    assert len(set(claimed)) == len(claimed)
    assert all(len(page) <= 7 for page in pages)
    assert all([t.key for t in page] == sorted(t.key for t in page) for page in pages)
    assert all(
        t.status is TaskStatus.RUNNING
        and t.worker == "w1"
        and t.attempts == 0
        and t.shard == 0
        and t.job_id == "job-1"
        for page in pages
        for t in page
    )
    counts = store.count_tasks("job-1")
    assert counts[TaskStatus.RUNNING] == len(shard0)
    assert counts[TaskStatus.PENDING] == len(tasks) - len(shard0)


def test_claim_ignores_other_jobs(store: TaskStore) -> None:
    make_job(store, "job-1")
    make_job(store, "job-2")
    store.put_tasks(make_tasks("job-1", 3) + make_tasks("job-2", 5))
    assert len(claim_all(store, "job-2", 0, 100)) == 5
    assert store.count_tasks("job-1")[TaskStatus.PENDING] == 3


def test_claim_more_than_ten_thousand_tasks(store: TaskStore) -> None:
    # GIVEN more tasks in one shard than a search may page through with from+size
    make_job(store)
    tasks = make_tasks("job-1", 12_000)
    assert store.put_tasks(tasks) == 12_000
    # WHEN one claim asks for more than 10,000 and further claims take the rest
    first = store.claim_tasks("job-1", 0, "w1", 10_500)
    rest = claim_all(store, "job-1", 0, 1_000)
    # THEN every task is handed out exactly once
    assert len(first) == 10_500
    keys = [t.key for t in first + rest]
    assert len(keys) == len(set(keys)) == 12_000
    assert store.count_tasks("job-1")[TaskStatus.RUNNING] == 12_000


def test_claim_of_nothing_returns_nothing(store: TaskStore) -> None:
    make_job(store)
    store.put_tasks(make_tasks("job-1", 3))
    assert store.claim_tasks("job-1", 0, "w1", 0) == []
    assert store.claim_tasks("job-1", 0, "w1", -1) == []  # a computed limit that went negative
    assert store.claim_tasks("job-1", 5, "w1", 10) == []
    assert store.claim_tasks("job-nope", 0, "w1", 10) == []


def test_release_tasks_puts_them_back_without_an_attempt(store: TaskStore) -> None:
    # GIVEN three claimed tasks
    make_job(store)
    store.put_tasks(make_tasks("job-1", 3))
    claimed = store.claim_tasks("job-1", 0, "w1", 3)
    ids = [t.id for t in claimed[:2]]
    # WHEN two are released (the worker is shutting down before tagging them)
    assert store.release_tasks("job-1", ids) == 2
    # THEN they are PENDING again, a second release changes nothing, and the next claim
    # sees them as never attempted
    assert store.release_tasks("job-1", ids) == 0
    assert store.release_tasks("job-2", [claimed[2].id]) == 0
    counts = store.count_tasks("job-1")
    assert (counts[TaskStatus.PENDING], counts[TaskStatus.RUNNING]) == (2, 1)
    again = store.claim_tasks("job-1", 0, "w2", 10)
    assert sorted(t.id for t in again) == sorted(ids)
    assert all(t.attempts == 0 and t.worker == "w2" for t in again)


def test_complete_tasks_records_done_and_failed(store: TaskStore) -> None:
    make_job(store)
    store.put_tasks(make_tasks("job-1", 3))
    claimed = store.claim_tasks("job-1", 0, "w1", 3)
    store.complete_tasks(
        [
            done("job-1", claimed[0].key, ["sports car", "convertible"]),
            failed("job-1", claimed[1].key),
        ]
    )
    counts = store.count_tasks("job-1")
    assert (counts[TaskStatus.DONE], counts[TaskStatus.FAILED], counts[TaskStatus.RUNNING]) == (
        1,
        1,
        1,
    )
    results = {r.key: r for r in store.iter_results("job-1")}
    assert set(results) == {claimed[0].key, claimed[1].key}
    assert results[claimed[0].key].labels == ["sports car", "convertible"]
    assert results[claimed[0].key].model_version == "v1"
    assert results[claimed[1].key].status is TaskStatus.FAILED
    assert results[claimed[1].key].error == "cannot decode image"


def test_complete_unknown_task_raises(store: TaskStore) -> None:
    make_job(store)
    with pytest.raises(StoreError):
        store.complete_tasks([done("job-1", "never-scanned.jpg", ["x"])])
    assert store.search("x") == []


def test_search_finds_labels_and_chinese_text(store: TaskStore) -> None:
    # GIVEN results with labels and with Chinese OCR text
    make_job(store)
    store.put_tasks(make_tasks("job-1", 3))
    keys = [t.key for t in claim_all(store, "job-1", 0, 10)]
    store.complete_tasks(
        [
            done("job-1", keys[0], ["出口在左边"], text="出口在左边"),
            done("job-1", keys[1], ["入口"], text="入口在右边 EXIT"),
            done("job-1", keys[2], ["sports car"]),
        ]
    )
    # WHEN / THEN labels match by word, Chinese by any substring
    assert [h.key for h in store.search("car")] == [keys[2]]
    assert [h.key for h in store.search("出口")] == [keys[0]]
    assert [h.key for h in store.search("左边")] == [keys[0]]
    assert [h.key for h in store.search("口在左")] == [keys[0]]
    assert sorted(h.key for h in store.search("在")) == sorted(keys[:2])
    assert [h.key for h in store.search("exit")] == [keys[1]]
    assert store.search("边左") == []
    assert store.search("truck") == []
    assert store.search("   ") == []
    # every word must match
    assert [h.key for h in store.search("入口 右边")] == [keys[1]]
    assert store.search("入口 左边") == []
    hit = store.search("出口")[0]
    assert (hit.job_id, hit.bot, hit.text) == ("job-1", BOT, "出口在左边")
    assert hit.labels == ["出口在左边"]
    assert hit.tags == [{"label": "出口在左边", "score": 0.9}] and hit.model_version == "v1"


def test_search_filters_by_bot_and_job(store: TaskStore) -> None:
    make_job(store, "job-1", bot="ocr-zh")
    make_job(store, "job-2", bot="car-model")
    make_job(store, "job-3", bot="ocr-zh")
    for job_id, bot in (("job-1", "ocr-zh"), ("job-2", "car-model"), ("job-3", "ocr-zh")):
        store.put_tasks(make_tasks(job_id, 1))
        key = claim_all(store, job_id, 0, 10)[0].key
        store.complete_tasks([done(job_id, key, ["出口"], text="出口", bot=bot)])
    assert sorted(h.job_id for h in store.search("出口")) == ["job-1", "job-2", "job-3"]
    assert sorted(h.job_id for h in store.search("出口", bot="ocr-zh")) == ["job-1", "job-3"]
    assert [h.job_id for h in store.search("出口", job_id="job-3")] == ["job-3"]
    assert store.search("出口", bot="car-model", job_id="job-1") == []
    assert len(store.search("出口", limit=2)) == 2


def test_search_pages_through_every_hit_once(store: TaskStore) -> None:
    # GIVEN seven results that all match, some equally well
    make_job(store)
    store.put_tasks(make_tasks("job-1", 7))
    keys = [t.key for t in claim_all(store, "job-1", 0, 10)]
    store.complete_tasks(
        [done("job-1", k, ["出口"], text="出口" * (1 + i % 2)) for i, k in enumerate(keys)]
    )
    # WHEN it is read three at a time THEN the pages add up to the whole, in the same order
    whole = [h.key for h in store.search("出口", limit=100)]
    pages = [[h.key for h in store.search("出口", limit=3, offset=o)] for o in (0, 3, 6, 9)]
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    assert [k for p in pages for k in p] == whole and sorted(whole) == sorted(keys)


def test_shards_with_work_name_only_shards_that_have_tasks_left(store: TaskStore) -> None:
    # GIVEN a job whose 6 tasks are all in shards 0 and 2 of 4
    make_job(store)
    tasks = make_tasks("job-1", 6)
    for i, task in enumerate(tasks):
        task.shard = 0 if i < 4 else 2
    store.put_tasks(tasks)
    assert store.shards_with_work("job-1") == {0: 4, 2: 2}
    # WHEN shard 2's tasks are done THEN only shard 0 has work (a RUNNING task counts)
    done_keys = [t.key for t in claim_all(store, "job-1", 2, 10)]
    store.complete_tasks([done("job-1", k, ["x"]) for k in done_keys])
    claim_all(store, "job-1", 0, 1)
    assert store.shards_with_work("job-1") == {0: 4}


def test_search_skips_failed_results(store: TaskStore) -> None:
    make_job(store)
    store.put_tasks(make_tasks("job-1", 1))
    key = claim_all(store, "job-1", 0, 10)[0].key
    bad = failed("job-1", key)
    bad.tags = [{"label": "出口", "score": 0.1}]
    store.complete_tasks([bad])
    assert store.search("出口") == []
    # a result first recorded as DONE and then as FAILED leaves the search too
    store.complete_tasks([done("job-1", key, ["出口"])])
    assert len(store.search("出口")) == 1
    store.complete_tasks([bad])
    assert store.search("出口") == []


def test_reclaim_running_returns_tasks_then_fails_them(store: TaskStore) -> None:
    # GIVEN tasks left RUNNING by workers that died, in two shards
    make_job(store, shards=2)
    tasks = make_tasks("job-1", 20, shards=2)
    store.put_tasks(tasks)
    in_shard0 = sum(t.shard == 0 for t in tasks)
    first = store.claim_tasks("job-1", 0, "w1", 100)
    second = store.claim_tasks("job-1", 1, "w2", 100)
    store.begin_attempt("job-1", [t.id for t in first + second])
    # WHEN shard 0 is reclaimed
    assert store.reclaim_running("job-1", shard=0) == in_shard0
    # THEN only its tasks are PENDING again
    counts = store.count_tasks("job-1")
    assert (counts[TaskStatus.PENDING], counts[TaskStatus.RUNNING]) == (in_shard0, 20 - in_shard0)
    # AND a task that killed its worker max_attempts times fails with a reason
    again = store.claim_tasks("job-1", 0, "w3", 100)
    assert len(again) == in_shard0 and all(t.attempts == 1 for t in again)
    store.begin_attempt("job-1", [t.id for t in again])  # attempt 2
    assert store.reclaim_running("job-1", shard=0, max_attempts=3) == in_shard0
    third = store.claim_tasks("job-1", 0, "w4", 100)
    assert all(t.attempts == 2 for t in third)
    store.begin_attempt("job-1", [t.id for t in third])  # attempt 3
    assert store.reclaim_running("job-1", max_attempts=3) == 20
    counts = store.count_tasks("job-1")
    assert (counts[TaskStatus.FAILED], counts[TaskStatus.PENDING]) == (in_shard0, 20 - in_shard0)
    results = list(store.iter_results("job-1"))
    assert len(results) == in_shard0
    assert all(r.status is TaskStatus.FAILED and "3 times" in (r.error or "") for r in results)
    assert store.reclaim_running("job-1") == 0


def test_steal_takes_from_the_back_of_the_fullest_shard(store: TaskStore) -> None:
    # GIVEN a job whose shard 0 is done and whose other shards hold 3 and 30 tasks
    make_job(store, shards=3)
    full = [Task(job_id="job-1", key=f"f{i:03d}.jpg", shard=2) for i in range(30)]
    thin = [Task(job_id="job-1", key=f"t{i:03d}.jpg", shard=1) for i in range(3)]
    store.put_tasks(full + thin)
    # WHEN the idle worker of shard 0 takes over a batch, twice
    first = store.steal_tasks("job-1", "slot0/w", 4)
    second = store.steal_tasks("job-1", "slot0/w", 4)
    # THEN it gets the fullest shard's last keys, away from where that shard's worker claims
    assert [t.key for t in first] == [f"f{i:03d}.jpg" for i in range(26, 30)]
    assert [t.key for t in second] == [f"f{i:03d}.jpg" for i in range(22, 26)]
    assert all(t.status is TaskStatus.RUNNING and t.worker == "slot0/w" for t in first)
    # AND the shard's own worker, claiming from the front, never gets a stolen task
    own = claim_all(store, "job-1", 2, 5)
    assert sorted(t.key for t in own) == [f"f{i:03d}.jpg" for i in range(22)]
    # AND once nothing is PENDING anywhere, stealing returns nothing
    assert len(store.steal_tasks("job-1", "slot0/w", 10)) == 3
    assert store.steal_tasks("job-1", "slot0/w", 10) == []
    assert store.count_tasks("job-1")[TaskStatus.RUNNING] == 33


def test_reclaim_by_owner_leaves_other_slots_tasks_running(store: TaskStore) -> None:
    # GIVEN slot 0 took over tasks of shard 1 and died; slot 1 is still working its shard
    make_job(store, shards=2)
    store.put_tasks([Task(job_id="job-1", key=f"k{i:02d}.jpg", shard=1) for i in range(10)])
    mine = store.claim_tasks("job-1", 1, "slot1/host:2:1", 4)
    stolen = store.steal_tasks("job-1", "slot0/host:1:0", 3)
    # WHEN slot 0's next worker starts and reclaims what its predecessor left
    assert store.reclaim_running("job-1", owner="slot0/") == len(stolen) == 3
    # THEN the stolen tasks are PENDING again and slot 1's are still RUNNING, untouched
    counts = store.count_tasks("job-1")
    assert (counts[TaskStatus.RUNNING], counts[TaskStatus.PENDING]) == (len(mine), 10 - len(mine))
    # AND a prefix is a prefix: slot 1 does not reclaim slot 10's or slot 0's
    assert store.reclaim_running("job-1", owner="slot10/") == 0
    assert store.reclaim_running("job-1", owner="slot1/") == len(mine)


def test_requeue_failed_starts_them_over(store: TaskStore) -> None:
    make_job(store)
    store.put_tasks(make_tasks("job-1", 4))
    keys = [t.key for t in claim_all(store, "job-1", 0, 10)]
    store.complete_tasks(
        [failed("job-1", keys[0]), failed("job-1", keys[1]), done("job-1", keys[2], ["ok"])]
    )
    assert store.requeue_failed("job-1") == 2
    assert store.requeue_failed("job-1") == 0
    counts = store.count_tasks("job-1")
    assert (counts[TaskStatus.PENDING], counts[TaskStatus.DONE]) == (2, 1)
    again = store.claim_tasks("job-1", 0, "w2", 10)
    assert sorted(t.key for t in again) == keys[:2]
    assert all(t.attempts == 0 and t.error is None for t in again)
    assert [r.key for r in store.iter_results("job-1")] == [keys[2]]


def test_count_tasks_lists_every_status(store: TaskStore) -> None:
    make_job(store)
    assert store.count_tasks("job-1") == {s: 0 for s in TaskStatus}
    tasks = make_tasks("job-1", 6)
    tasks[5].status = TaskStatus.SKIPPED
    store.put_tasks(tasks)
    claimed = store.claim_tasks("job-1", 0, "w1", 3)
    store.complete_tasks([done("job-1", claimed[0].key, ["a"]), failed("job-1", claimed[1].key)])
    assert store.count_tasks("job-1") == {
        TaskStatus.PENDING: 2,
        TaskStatus.RUNNING: 1,
        TaskStatus.DONE: 1,
        TaskStatus.FAILED: 1,
        TaskStatus.SKIPPED: 1,
    }


def test_iter_results_is_ordered_by_key_across_pages(store: TaskStore) -> None:
    # GIVEN finished, skipped and unfinished tasks with keys that sort by code point
    make_job(store)
    keys = [f"img/{i:03d}.jpg" for i in range(23)] + ["Z.jpg", "a/é.jpg", "中文.jpg", "~x"]
    tasks = [Task(job_id="job-1", key=k) for k in keys]
    tasks[3].status = TaskStatus.SKIPPED
    store.put_tasks(tasks)
    claimed = claim_all(store, "job-1", 0, 5)
    finished = [t for t in claimed if t.key != keys[7]]  # one stays RUNNING
    store.complete_tasks([done("job-1", t.key, [t.key]) for t in finished])
    # WHEN results are read in small pages
    results = list(store.iter_results("job-1", page_size=4))
    # THEN every finished task comes once, ordered by key, skipped ones without tags
    expected = sorted(k for k in keys if k != keys[7])
    assert [r.key for r in results] == expected
    skipped = next(r for r in results if r.key == keys[3])
    assert skipped.status is TaskStatus.SKIPPED and skipped.tags == [] and skipped.bot == BOT
    assert all(r.labels == [r.key] for r in results if r.status is TaskStatus.DONE)


def test_iter_results_of_unknown_job_raises(store: TaskStore) -> None:
    with pytest.raises(JobNotFoundError):
        list(store.iter_results("job-nope"))


# -- OpenSearch only ----------------------------------------------------------------------
@pytest.mark.integration
def test_opensearch_stale_search_hit_is_never_claimed_twice(
    opensearch_store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a claim that saw its tasks before an index refresh made the claim visible
    store: Any = opensearch_store
    make_job(store)
    store.put_tasks(make_tasks("job-1", 6))
    seen: list[list[dict[str, Any]]] = []
    real_page = store._page

    def recording_page(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        hits = real_page(*args, **kwargs)
        seen.append(hits)
        return hits

    monkeypatch.setattr(store, "_page", recording_page)
    first = store.claim_tasks("job-1", 0, "w1", 4)
    stale = seen[0]
    pages = iter([stale])

    def stale_then_real(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return next(pages, None) or real_page(*args, **kwargs)

    # WHEN the next claim's search returns those stale hits first
    monkeypatch.setattr(store, "_page", stale_then_real)
    second = store.claim_tasks("job-1", 0, "w1", 4)
    # THEN it skips them and goes on to the tasks that are still PENDING
    assert {t.key for t in first}.isdisjoint(t.key for t in second)
    assert len(second) == 2


@pytest.mark.integration
def test_opensearch_claim_survives_a_retried_write(
    opensearch_store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a claim whose bulk write reached the cluster twice (a lost response, then a retry
    # that conflicts with the first write)
    store: Any = opensearch_store
    make_job(store)
    store.put_tasks(make_tasks("job-1", 3))
    real_bulk = store._bulk

    def twice(actions: list[dict[str, Any]], refresh: str = "false") -> Any:
        real_bulk(actions, refresh)
        return real_bulk(actions, refresh)

    monkeypatch.setattr(store, "_bulk", twice)
    # WHEN the claim sees only conflicts
    claimed = store.claim_tasks("job-1", 0, "w1", 10)
    # THEN it still recognises its own writes: the tasks are handed out, not lost as RUNNING
    assert len(claimed) == 3
    monkeypatch.setattr(store, "_bulk", real_bulk)
    assert store.claim_tasks("job-1", 0, "w1", 10) == []


@pytest.mark.integration
def test_opensearch_signs_requests_with_sigv4(request: pytest.FixtureRequest) -> None:
    if os.environ.get("OPENSEARCH_URL"):
        pytest.skip("signing is checked against osmem-server only")
    from botocore.credentials import Credentials

    from spotbot.aws.opensearch_store import OpenSearchTaskStore

    clone = request.getfixturevalue("osmem_clone")
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    with OpenSearchTaskStore(clone.url, region="eu-west-1", credentials=creds) as store:
        make_job(store)
        assert store.get_job("job-1").bot == BOT


@pytest.mark.integration
def test_opensearch_without_cjk_analyzer_still_finds_chinese(
    request: pytest.FixtureRequest,
) -> None:
    # GIVEN a cluster that lacks the CJK analyzer the store asks for
    it = _opensearch_store(request, cjk_analyzer="no_such_analyzer")
    store = next(it)
    try:
        make_job(store)
        store.put_tasks(make_tasks("job-1", 1))
        key = claim_all(store, "job-1", 0, 10)[0].key
        # WHEN Chinese text is recorded and searched
        store.complete_tasks([done("job-1", key, ["出口"], text="出口在左边")])
        # THEN substring search still works through the standard analyzer
        assert [h.key for h in store.search("左边")] == [key]
    finally:
        next(it, None)


@pytest.mark.integration
def test_opensearch_errors_become_store_errors() -> None:
    pytest.importorskip("opensearchpy")
    from spotbot.aws.opensearch_store import OpenSearchTaskStore

    with pytest.raises(StoreError):
        OpenSearchTaskStore("http://127.0.0.1:9", timeout=1)
    with pytest.raises(StoreError):
        OpenSearchTaskStore("http://127.0.0.1:9", prefix="Bad Prefix")


def test_only_tasks_being_tagged_count_an_attempt(store: TaskStore) -> None:
    # GIVEN a page of claimed tasks of which only the first batch started tagging
    make_job(store)
    store.put_tasks(make_tasks("job-1", 6))
    page = store.claim_tasks("job-1", 0, "w1", 6)
    store.begin_attempt("job-1", [t.id for t in page[:2]])
    # WHEN the worker dies three times that way
    for _ in range(2):
        store.reclaim_running("job-1", max_attempts=3)
        page = store.claim_tasks("job-1", 0, "w1", 6)
        store.begin_attempt("job-1", [t.id for t in page[:2]])
    # THEN only the two being tagged each time fail; the rest are still PENDING
    assert store.reclaim_running("job-1", max_attempts=3) == 6
    counts = store.count_tasks("job-1")
    assert (counts[TaskStatus.FAILED], counts[TaskStatus.PENDING]) == (2, 4)


def test_a_finished_job_is_not_revived_by_a_late_step(store: TaskStore) -> None:
    # GIVEN a job that cleanup has already failed
    make_job(store)
    store.update_job("job-1", status=JobStatus.FAILED, error="endpoint failed")
    # WHEN a step still in flight reports progress "unless final"
    job = store.update_job("job-1", unless_final=True, status=JobStatus.RUNNING)
    # THEN the job stays FAILED, while a deliberate update (a retry) still goes through
    assert job.status is JobStatus.FAILED and store.get_job("job-1").error == "endpoint failed"
    assert store.update_job("job-1", status=JobStatus.RUNNING).status is JobStatus.RUNNING
    assert store.update_job("job-1", unless_final=True, scan_complete=True).scan_complete
