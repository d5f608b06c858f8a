"""The TaskStore contract for only-new jobs, on every backend: fingerprints kept, results found."""

from __future__ import annotations

import pytest

from spotbot.core.records import Job, Result, Task, TaskStatus
from spotbot.core.store import TaskStore
from tests.core.test_store_contract import store  # noqa: F401  (the fixture, every backend)

TAGS = [{"label": "x", "score": 1.0}]


def _done(store: TaskStore, job_id: str, version: str, key: str, fingerprint: str) -> None:  # noqa: F811
    store.create_job(Job(id=job_id, bot="words", source="s", output="o", model_version=version))
    store.put_tasks([Task(job_id, key, size=3, fingerprint=fingerprint)])
    store.complete_tasks([Result(job_id, key, "words", version, TaskStatus.DONE, TAGS)])


@pytest.mark.parametrize(
    ("bot", "version", "size", "fingerprint", "found"),
    [
        ("words", "v1", 3, "f1", True),
        ("words", "v2", 3, "f1", False),  # another model version
        ("other", "v1", 3, "f1", False),  # another bot
        ("words", "v1", 4, "f1", False),  # another size
        ("words", "v1", 3, "f2", False),  # another fingerprint (ETag, mtime)
    ],
)
def test_find_reusable_matches_bot_version_key_size_and_fingerprint(
    store: TaskStore,  # noqa: F811
    bot: str,
    version: str,
    size: int,
    fingerprint: str,
    found: bool,
) -> None:
    # GIVEN a DONE result of job "old" (words, v1) for a.txt, 3 bytes, fingerprint f1
    _done(store, "old", "v1", "a.txt", "f1")
    # WHEN a new job asks for a.txt as it is now
    task = Task("new", "a.txt", size=size, fingerprint=fingerprint)
    hits = store.find_reusable(bot, version, [task], exclude_job="new")
    # THEN it is found only when everything matches
    assert ("a.txt" in hits) is found
    if found:
        assert hits["a.txt"].tags == TAGS and hits["a.txt"].job_id == "old"


def test_find_reusable_ignores_failed_results_and_the_job_itself(store: TaskStore) -> None:  # noqa: F811
    store.create_job(Job(id="old", bot="words", source="s", output="o", model_version="v1"))
    store.put_tasks([Task("old", "bad.txt", size=3, fingerprint="f1")])
    store.complete_tasks([Result("old", "bad.txt", "words", "v1", TaskStatus.FAILED, error="x")])
    _done(store, "same", "v1", "a.txt", "f1")
    tasks = [
        Task("same", "a.txt", size=3, fingerprint="f1"),
        Task("same", "bad.txt", 0, size=3, fingerprint="f1"),
    ]
    assert store.find_reusable("words", "v1", tasks, exclude_job="same") == {}


def test_find_reusable_takes_the_newest_of_several_jobs(store: TaskStore) -> None:  # noqa: F811
    _done(store, "job-1", "v1", "a.txt", "f1")
    _done(store, "job-2", "v1", "a.txt", "f1")
    task = Task("job-3", "a.txt", size=3, fingerprint="f1")
    hits = store.find_reusable("words", "v1", [task], exclude_job="job-3")
    assert hits["a.txt"].job_id in ("job-1", "job-2")


def test_find_reusable_answers_a_page_of_a_thousand_keys(store: TaskStore) -> None:  # noqa: F811
    store.create_job(Job(id="old", bot="words", source="s", output="o", model_version="v1"))
    keys = [f"k{i:04d}" for i in range(1000)]
    store.put_tasks([Task("old", k, size=1, fingerprint=f"f{k}") for k in keys])
    store.complete_tasks([Result("old", k, "words", "v1", TaskStatus.DONE, TAGS) for k in keys])
    tasks = [Task("new", k, size=1, fingerprint=f"f{k}") for k in keys]
    assert set(store.find_reusable("words", "v1", tasks, exclude_job="new")) == set(keys)
