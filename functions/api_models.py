"""Request and response models of the REST API: validation at the door, and the OpenAPI schemas."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from spotbot.core.errors import SourceError
from spotbot.core.sources import parse_s3_uri

MAX_BODY_BYTES = 256 * 1024


def _checked_s3_uri(value: str) -> str:
    try:
        parse_s3_uri(value)
    except SourceError as exc:
        raise ValueError(str(exc)) from None
    return value


S3Uri = Annotated[
    str,
    # The bucket as S3 names them (3-63 of a-z 0-9 . -); the key part is any text.
    StringConstraints(
        min_length=8, max_length=2048, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
    ),
    AfterValidator(_checked_s3_uri),
    Field(description="s3://bucket/prefix", examples=["s3://my-photos/2024/"]),
]
BotName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Version = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")]
ClientToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Extension = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{1,16}$")]
InstanceType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,15}\.[a-z0-9]{1,16}$")]


class _Request(BaseModel):
    # strict: "4" is not a number of shards; extra fields are typos, not wishes.
    model_config = ConfigDict(extra="forbid", strict=True)


class JobRequest(_Request):
    bot: BotName
    source: S3Uri
    output: S3Uri
    shards: int | None = Field(default=None, ge=1, le=100_000)
    model_version: Version | None = None
    inference: Literal["endpoint", "in-container"] | None = None
    max_failure_pct: float | None = Field(default=None, ge=0, le=100)
    per_asset_results: bool = Field(
        default=False,
        description="also write one result object per asset (a PUT each) beside results.jsonl",
    )
    client_token: ClientToken | None = Field(
        default=None, description="the same token never starts a second job; a retried POST is safe"
    )
    budget_usd: float | None = Field(
        default=None,
        gt=0,
        description="workers stop claiming before the job's spend (Batch instance time at"
        " the Spot price) would pass it; the job then ends BUDGET_EXCEEDED",
    )
    only_new: bool | None = Field(
        default=None,
        description="reuse earlier jobs' results (same bot and model version) for unchanged"
        " assets (same key, size and ETag); tag only the rest",
    )
    min_failure_sample: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="assets attempted before max_failure_pct can stop the job early [default: 200]",
    )
    dry_run: bool = Field(
        default=False,
        description="true: start nothing; answer 200 with the job's estimate (JobEstimate)",
    )
    instance_types: list[InstanceType] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="dry run: the EC2 instance types to price [default: every calibrated type]",
    )


class RetryRequest(_Request):
    max_failure_pct: float | None = Field(default=None, ge=0, le=100)
    budget_usd: float | None = Field(default=None, gt=0, description="a new budget")


ImageByDigest = Annotated[
    str,
    StringConstraints(
        max_length=512, pattern=r"^[a-z0-9][a-z0-9._:/-]{0,400}@sha256:[0-9a-f]{64}$"
    ),
    Field(
        description="the bot's image by digest, in one of the repositories this deployment runs",
        examples=["123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-bots@sha256:" + "0" * 64],
    ),
]
CommandPart = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]+$")]


class BotRegistration(_Request):
    image_uri: ImageByDigest
    model_uri: S3Uri
    extensions: list[Extension] = Field(min_length=1, max_length=64)
    model_version: Version = "registered"
    description: Annotated[str, StringConstraints(max_length=1024)] = ""
    media: Annotated[str, StringConstraints(pattern=r"^[a-z]{1,32}$")] = "file"
    command: list[CommandPart] = Field(
        default_factory=lambda: ["work"],
        min_length=1,
        max_length=32,
        description="what a worker container runs; the job arrives in SPOTBOT_* variables",
    )
    vcpus: int = Field(default=2, ge=1, le=64, description="vCPUs of one worker container")
    memory_mib: int = Field(
        default=4096, ge=512, le=1_048_576, description="memory (MiB) of one worker container"
    )


class ErrorBody(BaseModel):
    error: str = Field(description="a short machine-readable code")
    detail: Any = Field(description="what was wrong, for people")


class JobStarted(BaseModel):
    job_id: str
    created: bool = Field(description="false when the client token named an existing job")
    status_url: str


class SampleView(BaseModel):
    listed: int
    accepted: int = Field(description="assets the bot would tag")
    accepted_bytes: int
    pages: int = Field(description="listing pages read")
    complete: bool = Field(description="false: the listing was sampled; figures are lower bounds")


class ComputeView(BaseModel):
    instance_type: str
    vcpus: int | None = None
    instances: int = Field(description="instances run at once")
    assets_per_second: float = Field(description="per instance, from the calibration table")
    duration_seconds: float
    instance_hours: float
    spot_usd: float | None = None
    on_demand_usd: float | None = None
    basis: str
    price_source: str


class JobEstimate(BaseModel):
    dry_run: bool = True
    bot: str
    sample: SampleView
    compute: list[ComputeView]
    requests_usd: float = Field(description="S3 GETs, a PUT per result object, LISTs")
    request_counts: dict[str, int]
    managed: dict[str, Any] | None = Field(
        default=None, description="the managed AWS service that does this job, at list price"
    )
    prices: str = Field(description="where the prices come from")
    calibration: str
    notes: list[str]


class JobCounts(BaseModel):
    total: int
    done: int
    failed: int
    skipped: int
    pending: int
    running: int


class ExecutionView(BaseModel):
    name: str
    status: str
    started_at: str | None = None
    stopped_at: str | None = None
    error: str | None = None
    cause: str | None = None


class JobSummary(BaseModel):
    job_id: str
    bot: str
    status: str
    model_version: str | None = None
    source: str
    output: str
    created_at: str
    finished_at: str | None = None


class S3Requests(BaseModel):
    get: int = 0
    put: int = 0
    list: int = 0


class SpendView(BaseModel):
    """Spend from what really ran: the workers' instance time, the endpoint's hours and the
    S3 requests, in USD at the stack's prices."""

    cpu_hours: float = Field(description="the Batch workers' vCPU-hours")
    usd: float | None = Field(default=None, description="the total so far")
    vcpu_hour_usd: float | None = Field(default=None, description="the Spot price of a vCPU-hour")
    endpoint_hours: float | None = Field(default=None, description="the job's endpoint's hours")
    endpoint_usd: float | None = None
    endpoint_hour_usd: float | None = Field(
        default=None, description="the endpoint instance's price per hour"
    )
    requests: S3Requests | None = Field(default=None, description="S3 requests made")
    requests_usd: float | None = None
    budget_usd: float | None = None


class JobView(BaseModel):
    job_id: str
    status: str
    counts: JobCounts | None = None
    bot: str | None = None
    model_version: str | None = None
    source: str | None = None
    output: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    shards: int | None = None
    max_failure_pct: float | None = None
    error: str | None = None
    inference: str | None = None
    endpoint_name: str | None = None
    cancel_requested: bool = False
    assets_per_second: float | None = None
    eta_seconds: float | None = None
    spend: SpendView | None = Field(default=None, description="what the job has cost so far")
    execution: ExecutionView | None = None


class JobList(BaseModel):
    jobs: list[JobSummary]


class CancelResult(BaseModel):
    job_id: str
    status: str
    terminated: int = Field(description="Batch worker arrays terminated by this call")


class RetryResult(BaseModel):
    job_id: str
    execution_name: str
    failed: int = Field(description="failed assets that will be tried again")
    untagged: int = Field(
        default=0, description="assets never tagged (the job stopped early) that will be now"
    )


class BotView(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    description: str = ""
    media: str = "file"
    accepts: list[str]
    custom: bool
    image_uri: str | None = None
    command: list[str] | None = None
    vcpus: int | None = None
    memory_mib: int | None = None
    job_definition_arn: str | None = Field(
        default=None, description="the Batch job definition a custom bot's jobs run on"
    )


class BotRemoved(BaseModel):
    name: str
    removed: bool
    job_definition_arn: str | None = None
    job_definition_deregistered: bool


class BotList(BaseModel):
    bots: list[BotView]


class ModelVersionView(BaseModel):
    model_config = ConfigDict(extra="allow")

    bot: str
    version: str
    framework: str
    labels: list[str] = []
    metrics: dict[str, Any] = {}
    created: str = ""


class ModelList(BaseModel):
    bot: str
    versions: list[ModelVersionView]


class SearchHitView(BaseModel):
    job_id: str
    key: str
    bot: str
    labels: list[str]
    text: str
    score: float
    model_version: str | None = None
    tags: list[dict[str, Any]] = []


class SearchResults(BaseModel):
    query: str
    hits: list[SearchHitView]
    next_cursor: str | None = Field(
        default=None, description="pass as ?cursor= for the next page; null on the last page"
    )
