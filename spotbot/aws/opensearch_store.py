"""The OpenSearch TaskStore: jobs, tasks and searchable results in three indices (cloud mode).

Built for Amazon OpenSearch Service (SigV4) and anything that speaks its REST API, including
the in-memory osmem-server the tests run against. Nothing here uses scripts: every
read-modify-write (attempt counters, claims) is a read followed by a conditional write with
`if_seq_no`/`if_primary_term`, so a stale read can never win.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from opensearchpy import OpenSearch, RequestsHttpConnection, Transport, helpers
from opensearchpy.exceptions import (
    ConflictError,
    ConnectionError,
    ImproperlyConfigured,
    NotFoundError,
    OpenSearchException,
    RequestError,
    TransportError,
)

from spotbot.core.errors import JobNotFoundError, StoreError
from spotbot.core.records import (
    FINAL_TASK_STATUSES,
    Job,
    JobStatus,
    Result,
    Task,
    TaskStatus,
    utcnow,
)
from spotbot.core.store import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_SEARCH_DEPTH,
    SearchHit,
    TaskStore,
    empty_counts,
)

log = logging.getLogger(__name__)

Refresh = Literal["wait_for", "true", "false"]

# OpenSearch refuses from+size beyond index.max_result_window (10,000 by default); every page
# here is a search_after page no larger than this.
MAX_PAGE = 10_000
_WORD = re.compile(r"\w+", re.UNICODE)
_UPDATE_JOB_TRIES = 5

_KEYWORD = {"type": "keyword"}
_DATE = {"type": "date"}
_STORED_ONLY = {"type": "object", "enabled": False}

JOBS_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "id": _KEYWORD,
        "bot": _KEYWORD,
        "status": _KEYWORD,
        "model_version": _KEYWORD,
        "source": {"type": "keyword", "ignore_above": 2048},
        "output": {"type": "keyword", "ignore_above": 2048},
        "shards": {"type": "integer"},
        "max_failure_pct": {"type": "float"},
        "scan_complete": {"type": "boolean"},
        "created_at": _DATE,
        "started_at": _DATE,
        "finished_at": _DATE,
        "error": {"type": "text"},
        "options": _STORED_ONLY,
    },
}

TASKS_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "id": _KEYWORD,
        "job_id": _KEYWORD,
        # The claim and iter_results cursors sort on key: no ignore_above, or long keys would
        # drop out of the sort. S3 keys are at most 1,024 bytes, far under Lucene's term limit.
        "key": _KEYWORD,
        "shard": {"type": "integer"},
        "status": _KEYWORD,
        "attempts": {"type": "integer"},
        "size": {"type": "long"},
        "worker": _KEYWORD,
        "claim": {"type": "keyword", "index": False},
        "error": {"type": "text"},
        "updated_at": _DATE,
    },
}


def results_mapping(cjk_analyzer: str | None) -> dict[str, Any]:
    """The results index: keyword fields to filter on, text fields to search.

    The `standard` analyzer makes every CJK character its own token, so a phrase query finds a
    Chinese substring of any length (the same trick as the SQLite store). When the server has a
    CJK analyzer (bigrams), a `.cjk` sub-field adds better ranking on top.
    """

    def text_fields(base: dict[str, Any], text_name: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if text_name:
            fields[text_name] = {"type": "text", "analyzer": "standard"}
        if cjk_analyzer:
            fields["cjk"] = {"type": "text", "analyzer": cjk_analyzer}
        return {**base, "fields": fields} if fields else base

    return {
        "dynamic": False,
        "properties": {
            "job_id": _KEYWORD,
            "key": {
                "type": "keyword",
                "fields": {"text": {"type": "text", "analyzer": "standard"}},
            },
            "bot": _KEYWORD,
            "model_version": _KEYWORD,
            "status": _KEYWORD,
            "labels": text_fields({"type": "keyword", "ignore_above": 512}, "text"),
            "text": text_fields({"type": "text", "analyzer": "standard"}, None),
            "error": {"type": "text"},
            "record": _STORED_ONLY,
            "updated_at": _DATE,
        },
    }


class OpenSearchTaskStore(TaskStore):
    """A TaskStore in three OpenSearch indices: `<prefix>jobs`, `<prefix>tasks`, `<prefix>results`.

    `url` is a node URL (`http://127.0.0.1:9200`, `https://search-x.us-east-1.es.amazonaws.com`).
    Given a `region`, requests are signed with SigV4 for `service` ("es" for a managed domain,
    "aoss" for Serverless) using `credentials` or boto3's default chain.

    `refresh` is how claims, completions and other task writes become searchable before the
    call returns: "wait_for" (default; "false" for "aoss") waits for the next scheduled refresh,
    so a hundred workers claiming at once do not force a hundred refreshes; "true" forces one;
    "false" leaves it to the refresh interval. Claims stay exact in every mode: a claim writes
    only with the sequence number it read, so a stale search hit cannot be handed out twice.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "spotbot-",
        region: str | None = None,
        service: str = "es",
        credentials: Any | None = None,
        refresh: Refresh | None = None,
        chunk_size: int = 1000,
        number_of_shards: int | None = None,
        cjk_analyzer: str | None = "cjk",
        timeout: float = 30.0,
        client: OpenSearch | None = None,
    ):
        if prefix != prefix.lower() or any(c in prefix for c in ' "*\\<|,>/?#:'):
            raise StoreError(f"index prefix {prefix!r} must be lower case, no special characters")
        self.url = url
        self.jobs_index = f"{prefix}jobs"
        self.tasks_index = f"{prefix}tasks"
        self.results_index = f"{prefix}results"
        # Serverless collections refuse refresh requests and refresh on their own schedule.
        self.refresh: Refresh = refresh or ("false" if service == "aoss" else "wait_for")
        self.chunk_size = max(2, chunk_size - chunk_size % 2)  # complete_tasks writes pairs
        self._client = client or _connect(url, region, service, credentials, timeout)
        self._cjk = False
        with self._errors("create the indices"):
            self._ensure_indices(number_of_shards, cjk_analyzer)

    # -- plumbing ------------------------------------------------------------------------
    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except OpenSearchException as exc:
            raise StoreError(f"OpenSearch at {self.url} could not {what}: {exc}") from exc

    def _ensure_indices(self, shards: int | None, cjk_analyzer: str | None) -> None:
        settings: dict[str, Any] = {"index": {"number_of_shards": shards}} if shards else {}
        self._create_index(self.jobs_index, settings, JOBS_MAPPING)
        self._create_index(self.tasks_index, settings, TASKS_MAPPING)
        try:
            self._create_index(self.results_index, settings, results_mapping(cjk_analyzer))
        except RequestError as exc:
            if not cjk_analyzer or "analy" not in str(exc.info):
                raise
            # A cluster without the analyzer still gets substring search from `standard`.
            log.warning(
                "analyzer %r unavailable (%s); results without CJK ranking", cjk_analyzer, exc.error
            )
            self._create_index(self.results_index, settings, results_mapping(None))
        mapping = self._client.indices.get_mapping(index=self.results_index)
        props = next(iter(mapping.values()))["mappings"].get("properties", {})
        self._cjk = "cjk" in props.get("text", {}).get("fields", {})

    def _create_index(self, name: str, settings: dict[str, Any], mappings: dict[str, Any]) -> None:
        if self._client.indices.exists(index=name):
            return
        try:
            body = {"settings": settings, "mappings": mappings}
            self._client.indices.create(index=name, body=body)
            log.info("created index %s", name)
        except RequestError as exc:
            # Every worker starts by opening the store; the first one creates the indices.
            if exc.error != "resource_already_exists_exception":
                raise

    def _bulk(
        self, actions: list[dict[str, Any]], refresh: Refresh | Literal["now"] = "false"
    ) -> list[tuple[bool, dict[str, Any]]]:
        """Send actions in chunks; one (ok, item) per action, in order. Raises on transport errors.

        `refresh` applies to the request when it fits in one chunk; a longer write ends with one
        explicit refresh instead of waiting once per chunk ("now" always refreshes that way).
        """
        if not actions:
            return []
        one_chunk = len(actions) <= self.chunk_size
        kwargs: dict[str, Any] = {}
        if one_chunk and refresh in ("wait_for", "true"):
            kwargs["refresh"] = refresh
        out = []
        for ok, item in helpers.streaming_bulk(
            self._client,
            actions,
            chunk_size=self.chunk_size,
            raise_on_error=False,
            max_retries=3,
            initial_backoff=1,
            **kwargs,
        ):
            out.append((ok, next(iter(item.values()))))
        if refresh == "now" or (not one_chunk and refresh != "false"):
            indices = sorted({a["_index"] for a in actions})
            self._client.indices.refresh(index=",".join(indices))
        return out

    @staticmethod
    def _check(items: list[tuple[bool, dict[str, Any]]], allowed: set[int], what: str) -> None:
        bad = [info for ok, info in items if not ok and info.get("status") not in allowed]
        if bad:
            first = bad[0].get("error")
            raise StoreError(f"{len(bad)} of {len(items)} writes failed to {what}; first: {first}")

    def _page(
        self,
        index: str,
        query: dict[str, Any],
        sort: list[Any],
        size: int,
        after: list[Any] | None = None,
        seq_no: bool = False,
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "query": query,
            "sort": sort,
            "size": min(size, MAX_PAGE),
            "track_total_hits": False,
        }
        if after is not None:
            body["search_after"] = after
        if seq_no:
            body["seq_no_primary_term"] = True
        return list(self._client.search(index=index, body=body)["hits"]["hits"])

    def _scan(
        self,
        index: str,
        query: dict[str, Any],
        sort: list[Any],
        page_size: int = 1000,
        seq_no: bool = False,
        limit: int | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of hits in `sort` order (which must end in a unique field) through search_after.

        The cursor moves past each page, so writes that move documents out of the query while
        scanning (reclaim, requeue) skip nothing.
        """
        after = None
        left = limit
        while left is None or left > 0:
            size = min(page_size, MAX_PAGE, left if left is not None else MAX_PAGE)
            hits = self._page(index, query, sort, size, after, seq_no)
            if hits:
                yield hits
            if len(hits) < size:
                return
            if left is not None:
                left -= len(hits)
            after = hits[-1]["sort"]

    def _scan_tasks(
        self, query: dict[str, Any], page_size: int = 1000, seq_no: bool = False
    ) -> Iterator[list[dict[str, Any]]]:
        # Key is unique within a job: a complete cursor on its own.
        return self._scan(self.tasks_index, query, [{"key": "asc"}], page_size, seq_no)

    def _task_query(
        self, job_id: str, status: TaskStatus | Sequence[TaskStatus], shard: int | None = None
    ) -> dict[str, Any]:
        statuses = [status] if isinstance(status, TaskStatus) else list(status)
        filters: list[dict[str, Any]] = [
            {"term": {"job_id": job_id}},
            {"terms": {"status": [str(s) for s in statuses]}},
        ]
        if shard is not None:
            filters.append({"term": {"shard": shard}})
        return {"bool": {"filter": filters}}

    def _conditional_update(self, hit: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "_op_type": "update",
            "_index": hit["_index"],
            "_id": hit["_id"],
            "if_seq_no": hit["_seq_no"],
            "if_primary_term": hit["_primary_term"],
            "doc": doc,
        }

    def close(self) -> None:
        self._client.close()

    # -- jobs ----------------------------------------------------------------------------
    def create_job(self, job: Job) -> Job:
        with self._errors(f"create job {job.id}"):
            try:
                self._client.create(
                    index=self.jobs_index, id=job.id, body=job.to_dict(), refresh=self.refresh
                )
            except ConflictError:
                log.debug("job %s exists; keeping it", job.id)
        return self.get_job(job.id)

    def _get_job_doc(self, job_id: str) -> dict[str, Any]:
        try:
            return dict(self._client.get(index=self.jobs_index, id=job_id))
        except NotFoundError as exc:
            raise JobNotFoundError(f"no job {job_id!r} in {self.jobs_index}") from exc

    def get_job(self, job_id: str) -> Job:
        with self._errors(f"read job {job_id}"):
            return Job.from_dict(self._get_job_doc(job_id)["_source"])

    def update_job(self, job_id: str, unless_final: bool = False, **fields: Any) -> Job:
        unknown = [name for name in fields if name not in Job.__dataclass_fields__]
        with self._errors(f"update job {job_id}"):
            # Replace the whole document (a partial `doc` update would merge `options`), guarded
            # by the sequence number so concurrent updates of different fields both land.
            for _ in range(_UPDATE_JOB_TRIES):
                current = self._get_job_doc(job_id)
                if unknown:
                    raise StoreError(f"job has no field {unknown[0]!r}")
                doc = dict(current["_source"])
                if unless_final and JobStatus(doc["status"]).is_final:
                    return Job.from_dict(doc)  # re-checked on every try: the write is guarded
                for name, value in fields.items():
                    doc[name] = str(value) if name == "status" else value
                try:
                    self._client.index(
                        index=self.jobs_index,
                        id=job_id,
                        body=doc,
                        if_seq_no=current["_seq_no"],
                        if_primary_term=current["_primary_term"],
                        refresh=self.refresh,
                    )
                    return Job.from_dict(doc)
                except ConflictError:
                    continue
        raise StoreError(f"job {job_id} kept changing; gave up after {_UPDATE_JOB_TRIES} tries")

    def list_jobs(self, limit: int = 100) -> list[Job]:
        sort = [{"created_at": "desc"}, {"id": "desc"}]
        with self._errors("list jobs"):
            pages = list(self._scan(self.jobs_index, {"match_all": {}}, sort, limit=limit))
        return [Job.from_dict(h["_source"]) for hits in pages for h in hits]

    # -- tasks ---------------------------------------------------------------------------
    def put_tasks(self, tasks: Sequence[Task]) -> int:
        now = utcnow()
        actions = [
            {
                "_op_type": "create",
                "_index": self.tasks_index,
                "_id": t.id,
                "_source": {
                    "id": t.id,
                    "job_id": t.job_id,
                    "key": t.key,
                    "shard": t.shard,
                    "status": str(t.status),
                    "attempts": t.attempts,
                    "size": t.size,
                    "fingerprint": t.fingerprint,  # kept in _source: matched by find_reusable
                    "worker": None,
                    "error": t.error,
                    "updated_at": now,
                },
            }
            for t in tasks
        ]
        with self._errors("write tasks"):
            # One explicit refresh per call (a scan page), not a wait per chunk: workers that
            # start right after the scan must see every task.
            items = self._bulk(actions, refresh="now" if self.refresh != "false" else "false")
        self._check(items, {409}, "write tasks")  # 409: the task exists, which is fine
        return sum(ok for ok, _ in items)

    def claim_tasks(self, job_id: str, shard: int, worker: str, limit: int) -> list[Task]:
        with self._errors(f"claim tasks of {job_id} shard {shard}"):
            return self._claim(job_id, shard, worker, limit, "asc")

    def steal_tasks(self, job_id: str, worker: str, limit: int) -> list[Task]:
        body = {
            "size": 0,
            "query": self._task_query(job_id, TaskStatus.PENDING),
            "aggs": {"by_shard": {"terms": {"field": "shard", "size": 1}}},  # the fullest one
        }
        with self._errors(f"take over tasks of {job_id}"):
            buckets = self._client.search(index=self.tasks_index, body=body)["aggregations"][
                "by_shard"
            ]["buckets"]
            if not buckets:
                return []
            # From the shard's end (key descending): its own worker claims from the front.
            return self._claim(job_id, int(buckets[0]["key"]), worker, limit, "desc")

    def _claim(self, job_id: str, shard: int, worker: str, limit: int, order: str) -> list[Task]:
        if limit <= 0:
            return []
        # The token marks this call's writes, so a write that the client retried after a lost
        # response (and that then conflicts with itself) is still recognised as ours.
        token = uuid.uuid4().hex
        now = utcnow()
        query = self._task_query(job_id, TaskStatus.PENDING, shard)
        claimed: list[Task] = []
        after: list[Any] | None = None
        while len(claimed) < limit:
            want = min(limit - len(claimed), MAX_PAGE)
            hits = self._page(self.tasks_index, query, [{"key": order}], want, after, True)
            if not hits:
                break
            actions = [
                self._conditional_update(
                    h,
                    {
                        "status": str(TaskStatus.RUNNING),
                        "worker": worker,
                        "claim": token,
                        "updated_at": now,
                    },
                )
                for h in hits
            ]
            items = self._bulk(actions, refresh=self.refresh)
            self._check(items, {409}, "claim tasks")
            won = {info["_id"] for ok, info in items if ok}
            # A conflict means the hit was stale (claimed or finished since the last
            # refresh) unless it was our own retried write.
            lost = [info["_id"] for ok, info in items if not ok]
            if lost:
                docs = self._client.mget(index=self.tasks_index, body={"ids": lost})["docs"]
                won |= {
                    d["_id"] for d in docs if d.get("found") and d["_source"].get("claim") == token
                }
            for h in hits:
                if h["_id"] in won:
                    src = h["_source"]
                    claimed.append(
                        Task(
                            job_id=job_id,
                            key=src["key"],
                            shard=src["shard"],
                            size=src.get("size"),
                            status=TaskStatus.RUNNING,
                            attempts=int(src.get("attempts") or 0),
                            worker=worker,
                        )
                    )
            if len(hits) < want:
                break
            after = hits[-1]["sort"]
        claimed.sort(key=lambda t: t.key)
        return claimed

    def begin_attempt(self, job_id: str, task_ids: Sequence[str]) -> None:
        if not task_ids:
            return
        with self._errors(f"count attempts of {job_id}"):
            docs = self._client.mget(index=self.tasks_index, body={"ids": list(task_ids)})["docs"]
            actions = [
                self._conditional_update(
                    d, {"attempts": int(d["_source"].get("attempts") or 0) + 1}
                )
                for d in docs
                if d.get("found")
                and d["_source"].get("job_id") == job_id
                and d["_source"].get("status") == TaskStatus.RUNNING
            ]
            items = self._bulk(actions, refresh=self.refresh)
        self._check(items, set(), "count attempts")

    def release_tasks(self, job_id: str, task_ids: Sequence[str]) -> int:
        if not task_ids:
            return 0
        with self._errors(f"release tasks of {job_id}"):
            docs = self._client.mget(index=self.tasks_index, body={"ids": list(task_ids)})["docs"]
            actions = [
                self._conditional_update(
                    d,
                    {
                        "status": str(TaskStatus.PENDING),
                        "worker": None,
                        "claim": None,
                    },
                )
                for d in docs
                if d.get("found")
                and d["_source"].get("job_id") == job_id
                and d["_source"].get("status") == TaskStatus.RUNNING
            ]
            items = self._bulk(actions, refresh=self.refresh)
        self._check(items, {409}, "release tasks")
        return sum(ok for ok, _ in items)

    def complete_tasks(self, results: Sequence[Result]) -> None:
        if not results:
            return
        now = utcnow()
        actions: list[dict[str, Any]] = []
        for r in results:
            # The result goes right before its task's status, in the same request: one refresh
            # makes both visible, and a failure of either shows in the pair.
            actions.append(
                {
                    "_op_type": "index",
                    "_index": self.results_index,
                    "_id": r.task_id,
                    "_source": {
                        "job_id": r.job_id,
                        "key": r.key,
                        "bot": r.bot,
                        "model_version": r.model_version,
                        "status": str(r.status),
                        "labels": r.labels,
                        "text": r.text,
                        "error": r.error,
                        "record": r.to_record(),
                        "updated_at": now,
                    },
                }
            )
            actions.append(
                {
                    "_op_type": "update",
                    "_index": self.tasks_index,
                    "_id": r.task_id,
                    "doc": {
                        "status": str(r.status),
                        "error": r.error,
                        "worker": None,
                        "claim": None,
                        "updated_at": now,
                    },
                }
            )
        with self._errors("record results"):
            items = self._bulk(actions, refresh=self.refresh)
            # Items come back in order unless the helper retried some, so pair them by id.
            outcome = {(info["_index"], info["_id"]): (ok, info) for ok, info in items}
            by_id = {r.task_id: r for r in results}
            missing = [
                r
                for tid, r in by_id.items()
                if outcome[(self.tasks_index, tid)][1].get("status") == 404
            ]
            unsaved = [
                r
                for tid, r in by_id.items()
                if not outcome[(self.results_index, tid)][0] and outcome[(self.tasks_index, tid)][0]
            ]
            if missing:
                # Never leave a searchable result without a task behind it.
                self._bulk(
                    [
                        {"_op_type": "delete", "_index": self.results_index, "_id": r.task_id}
                        for r in missing
                    ],
                    refresh=self.refresh,
                )
                raise StoreError(f"no task for {missing[0].key!r} in job {missing[0].job_id}")
            if unsaved:
                # A task must not be DONE without its result: hand it back to reclaim_running.
                self._bulk(
                    [
                        {
                            "_op_type": "update",
                            "_index": self.tasks_index,
                            "_id": r.task_id,
                            "doc": {"status": str(TaskStatus.RUNNING)},
                        }
                        for r in unsaved
                    ],
                    refresh=self.refresh,
                )
        self._check(items, set(), "record results")

    def reclaim_running(
        self,
        job_id: str,
        shard: int | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        owner: str | None = None,
    ) -> int:
        now = utcnow()
        changed = 0
        query = self._task_query(job_id, TaskStatus.RUNNING, shard)
        if owner is not None:
            query["bool"]["filter"].append({"prefix": {"worker": owner}})
        with self._errors(f"reclaim tasks of {job_id}"):
            for hits in self._scan_tasks(query, seq_no=True):
                actions = []
                for h in hits:
                    attempts = int(h["_source"].get("attempts") or 0)
                    doc: dict[str, Any] = {
                        "status": str(TaskStatus.PENDING),
                        "worker": None,
                        "claim": None,
                        "updated_at": now,
                    }
                    if attempts >= max_attempts:
                        doc["status"] = str(TaskStatus.FAILED)
                        doc["error"] = f"worker died {attempts} times while tagging this asset"
                    actions.append(self._conditional_update(h, doc))
                items = self._bulk(actions, refresh=self.refresh)
                self._check(items, {409}, "reclaim tasks")
                changed += sum(ok for ok, _ in items)
        return changed

    def requeue_failed(self, job_id: str) -> int:
        now = utcnow()
        changed = 0
        with self._errors(f"requeue failed tasks of {job_id}"):
            for hits in self._scan_tasks(self._task_query(job_id, TaskStatus.FAILED), seq_no=True):
                actions = [
                    self._conditional_update(
                        h,
                        {
                            "status": str(TaskStatus.PENDING),
                            "attempts": 0,
                            "error": None,
                            "worker": None,
                            "claim": None,
                            "updated_at": now,
                        },
                    )
                    for h in hits
                ]
                items = self._bulk(actions, refresh=self.refresh)
                self._check(items, {409}, "requeue tasks")
                done = [info["_id"] for ok, info in items if ok]
                changed += len(done)
                # The failed attempt's result goes too, as the SQLite store clears it.
                gone = self._bulk(
                    [
                        {"_op_type": "delete", "_index": self.results_index, "_id": tid}
                        for tid in done
                    ],
                    refresh=self.refresh,
                )
                self._check(gone, {404}, "drop results of requeued tasks")
        return changed

    def count_tasks(self, job_id: str) -> dict[TaskStatus, int]:
        counts = empty_counts()
        body = {
            "size": 0,
            "query": {"term": {"job_id": job_id}},
            "aggs": {"by_status": {"terms": {"field": "status", "size": len(TaskStatus)}}},
        }
        with self._errors(f"count tasks of {job_id}"):
            resp = self._client.search(index=self.tasks_index, body=body)
        for bucket in resp["aggregations"]["by_status"]["buckets"]:
            counts[TaskStatus(bucket["key"])] = int(bucket["doc_count"])
        return counts

    def shards_with_work(self, job_id: str) -> dict[int, int]:
        query = self._task_query(job_id, [TaskStatus.PENDING, TaskStatus.RUNNING])
        body = {
            "size": 0,
            "query": query,
            # A terms aggregation answers at most search.max_buckets (65,535 by default).
            "aggs": {"by_shard": {"terms": {"field": "shard", "size": 65_535}}},
        }
        with self._errors(f"count the shards with work of {job_id}"):
            resp = self._client.search(index=self.tasks_index, body=body)
        return {
            int(b["key"]): int(b["doc_count"]) for b in resp["aggregations"]["by_shard"]["buckets"]
        }

    def find_reusable(
        self, bot: str, model_version: str | None, tasks: Sequence[Task], exclude_job: str
    ) -> dict[str, Result]:
        wanted = {t.key: (t.size, t.fingerprint) for t in tasks if t.fingerprint}
        if not wanted:
            return {}
        query = {
            "bool": {
                "filter": [
                    {"terms": {"key": sorted(wanted)}},
                    {"term": {"status": str(TaskStatus.DONE)}},
                ],
                "must_not": [{"term": {"job_id": exclude_job}}],
            }
        }
        matches: dict[str, tuple[str, str]] = {}  # key -> (updated_at, task id), newest
        with self._errors("find reusable results"):
            # A key recurs across jobs: the cursor needs the task id to be unique.
            sort = [{"key": "asc"}, {"id": "asc"}]
            for hits in self._scan(self.tasks_index, query, sort, page_size=1000):
                for h in hits:
                    src = h["_source"]
                    if wanted.get(src["key"]) != (src.get("size"), src.get("fingerprint")):
                        continue
                    stamp = str(src.get("updated_at") or "")
                    if src["key"] not in matches or stamp > matches[src["key"]][0]:
                        matches[src["key"]] = (stamp, h["_id"])
            if not matches:
                return {}
            docs = self._client.mget(
                index=self.results_index, body={"ids": [tid for _, tid in matches.values()]}
            )["docs"]
        found: dict[str, Result] = {}
        for doc in docs:
            src = doc.get("_source") if doc.get("found") else None
            if not src or src.get("bot") != bot or src.get("model_version") != model_version:
                continue
            found[src["key"]] = Result.from_record(src["job_id"], src["record"])
        return found

    def iter_results(self, job_id: str, page_size: int = 1000) -> Iterator[Result]:
        job = self.get_job(job_id)
        query = self._task_query(job_id, sorted(FINAL_TASK_STATUSES))
        with self._errors(f"read results of {job_id}"):
            for hits in self._scan_tasks(query, page_size=page_size):
                # A realtime multi-get: results written a moment ago are there without a refresh.
                docs = self._client.mget(
                    index=self.results_index, body={"ids": [h["_id"] for h in hits]}
                )["docs"]
                records = {d["_id"]: d["_source"]["record"] for d in docs if d.get("found")}
                for h in hits:
                    src = h["_source"]
                    if h["_id"] in records:
                        found = Result.from_record(job_id, records[h["_id"]])
                        found.finished_at = src.get("updated_at")
                        yield found
                    else:
                        yield Result(
                            job_id=job_id,
                            key=src["key"],
                            bot=job.bot,
                            model_version=job.model_version,
                            status=TaskStatus(src["status"]),
                            error=src.get("error"),
                            finished_at=src.get("updated_at"),
                        )

    def search(
        self,
        query: str,
        bot: str | None = None,
        job_id: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[SearchHit]:
        words = _WORD.findall(query)
        offset = max(0, offset)
        limit = min(limit, MAX_PAGE, MAX_SEARCH_DEPTH - offset)
        if not words or limit <= 0:
            return []
        filters: list[dict[str, Any]] = [{"term": {"status": str(TaskStatus.DONE)}}]
        if bot:
            filters.append({"term": {"bot": bot}})
        if job_id:
            filters.append({"term": {"job_id": job_id}})
        # Every word must match somewhere, CJK runs as phrases of single characters: the same
        # meaning as the SQLite store's FTS query.
        must = [
            {
                "multi_match": {
                    "query": w,
                    "type": "phrase",
                    "fields": ["labels.text^2", "text", "key.text^0.5"],
                }
            }
            for w in words
        ]
        should = (
            [{"multi_match": {"query": " ".join(words), "fields": ["labels.cjk^2", "text.cjk"]}}]
            if self._cjk
            else []
        )
        body = {
            "size": limit,
            "from": offset,
            "sort": [{"_score": "desc"}, {"job_id": "asc"}, {"key": "asc"}],
            "track_total_hits": False,
            "query": {"bool": {"filter": filters, "must": must, "should": should}},
        }
        with self._errors("search results"):
            hits = self._client.search(index=self.results_index, body=body)["hits"]["hits"]
        out = []
        for h in hits:
            res = Result.from_record(h["_source"]["job_id"], h["_source"]["record"])
            out.append(
                SearchHit(
                    job_id=res.job_id,
                    key=res.key,
                    bot=res.bot,
                    labels=res.labels,
                    text=res.text,
                    score=float(h.get("_score") or 0.0),
                    model_version=res.model_version,
                    tags=res.tags,
                )
            )
        return out


class BackoffTransport(Transport):
    """Retries what a busy or briefly unavailable cluster answers (429, 502-504, a lost
    connection) with exponential backoff and full jitter, so a fleet of workers backs off
    instead of hammering it in step. `retries` counts the retries made.

    Every write of the store is idempotent (documents have fixed ids), so a retried request
    lands the same as one that succeeded the first time.
    """

    RETRY_STATUS = (429, 502, 503, 504)

    def __init__(
        self,
        *args: Any,
        attempts: int = 6,
        base_delay: float = 0.25,
        max_delay: float = 10.0,
        **kwargs: Any,
    ):
        kwargs["max_retries"] = 0  # the loop below retries, with backoff
        super().__init__(*args, **kwargs)
        self.attempts, self.base_delay, self.max_delay = attempts, base_delay, max_delay
        self.retries = 0
        self._jitter = random.Random()

    def perform_request(self, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(self.attempts):
            try:
                return super().perform_request(*args, **kwargs)
            except TransportError as exc:
                transient = isinstance(exc, ConnectionError) or exc.status_code in self.RETRY_STATUS
                if not transient or attempt + 1 == self.attempts:
                    raise
                self.retries += 1
                delay = self._jitter.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))
                log.info(
                    "OpenSearch answered %s: retry %d in %.2fs", exc.status_code, attempt + 1, delay
                )
                time.sleep(delay)
        raise AssertionError("unreachable")


def _connect(
    url: str, region: str | None, service: str, credentials: Any | None, timeout: float
) -> OpenSearch:
    """A client for `url`: SigV4-signed when a region is given, plain HTTP(S) otherwise."""
    options: dict[str, Any] = {
        "hosts": [url],
        "timeout": timeout,
        "transport_class": BackoffTransport,
    }
    if region:
        from opensearchpy import AWSV4SignerAuth

        if credentials is None:
            import boto3

            credentials = boto3.Session().get_credentials()
        if credentials is None:
            raise StoreError(f"no AWS credentials to sign requests to {url}")
        options.update(
            http_auth=AWSV4SignerAuth(credentials, region, service),
            connection_class=RequestsHttpConnection,
            pool_maxsize=32,
        )
    try:
        return OpenSearch(**options)
    except (ImproperlyConfigured, ValueError) as exc:
        raise StoreError(f"cannot connect to OpenSearch at {url}: {exc}") from exc
