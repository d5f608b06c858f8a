"""Environment variable names shared by the Lambda functions, the Batch worker, the infra and tests.

Plain constants, defined once: code reads ``os.environ[envnames.JOB_ID]``, infra sets
``{envnames.JOB_ID: ...}``, the state machine writes them into Batch container overrides.
"""

# Per job, set by the state machine on every Batch array job (container overrides).
JOB_ID = "SPOTBOT_JOB_ID"
BOT = "SPOTBOT_BOT"
MODEL_VERSION = "SPOTBOT_MODEL_VERSION"
INFERENCE = "SPOTBOT_INFERENCE"  # "endpoint" | "in-container"
ENDPOINT_NAME = "SPOTBOT_ENDPOINT_NAME"  # "" in in-container mode
SHARD_OFFSET = "SPOTBOT_SHARD_OFFSET"  # shard = SHARD_OFFSET + AWS_BATCH_JOB_ARRAY_INDEX

# Per deployment, set by infra on the Lambda functions and the Batch job definitions.
OPENSEARCH_ENDPOINT = "SPOTBOT_OPENSEARCH_ENDPOINT"  # https://host, no trailing slash
INDEX_PREFIX = "SPOTBOT_INDEX_PREFIX"
ARTIFACTS_BUCKET = "SPOTBOT_ARTIFACTS_BUCKET"
MODELS_PREFIX = "SPOTBOT_MODELS_PREFIX"  # key prefix of the model registry in the artifacts bucket
ALLOWED_BUCKETS = "SPOTBOT_ALLOWED_BUCKETS"  # comma-separated bucket names jobs may read/write
STATE_MACHINE_ARN = "SPOTBOT_STATE_MACHINE_ARN"
RETRY_STATE_MACHINE_ARN = "SPOTBOT_RETRY_STATE_MACHINE_ARN"
JOB_QUEUE_ARN = "SPOTBOT_JOB_QUEUE_ARN"  # cleanup and api terminate a job's Batch jobs
SAGEMAKER_ROLE_ARN = "SPOTBOT_SAGEMAKER_ROLE_ARN"  # execution role of the endpoints it creates
TRAINING_ROLE_ARN = "SPOTBOT_TRAINING_ROLE_ARN"  # role `spotbot train --cloud` passes to jobs
IMAGE_URIS = "SPOTBOT_IMAGE_URIS"  # JSON {bot: image URI by digest}, for SageMaker models
ENDPOINT_INSTANCE_TYPE = "SPOTBOT_ENDPOINT_INSTANCE_TYPE"
ENDPOINT_NAME_PREFIX = "SPOTBOT_ENDPOINT_NAME_PREFIX"  # endpoints, configs, models: <prefix>-...
DEFAULT_INFERENCE = "SPOTBOT_DEFAULT_INFERENCE"
INSTANCE_PRICES = "SPOTBOT_INSTANCE_PRICES"  # the API's dry run: {type: {vcpus, on_demand, spot}}
MAX_VCPUS = "SPOTBOT_MAX_VCPUS"  # the Spot compute environment's limit (how many run at once)
LOG_LEVEL = "SPOTBOT_LOG_LEVEL"
EVENT_BUS = "SPOTBOT_EVENT_BUS"  # where cleanup publishes each job's end (default: "default")
#: JSON {name_prefix, job_role_arn, log_group, image_repositories, attempts, timeout_seconds}:
#: how the api function registers a custom bot's Batch job definition (spotbot/aws/job_definitions.py).
CUSTOM_BOT_COMPUTE = "SPOTBOT_CUSTOM_BOT_COMPUTE"

# Powertools reads these itself; infra sets them on every function.
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"

# Set by AWS Batch in every container; named here so nothing spells them twice.
AWS_BATCH_JOB_ARRAY_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX"
AWS_BATCH_JOB_ATTEMPT = "AWS_BATCH_JOB_ATTEMPT"
AWS_BATCH_JOB_ID = "AWS_BATCH_JOB_ID"

#: Names the state machine sets per Batch job, in the order it writes them.
WORKER_JOB_VARIABLES = (JOB_ID, BOT, MODEL_VERSION, INFERENCE, ENDPOINT_NAME, SHARD_OFFSET)
#: The deployment's settings every worker container gets (each job definition's environment).
WORKER_DEPLOYMENT_VARIABLES = (
    OPENSEARCH_ENDPOINT,
    INDEX_PREFIX,
    ARTIFACTS_BUCKET,
    MODELS_PREFIX,
    ALLOWED_BUCKETS,
    ENDPOINT_NAME_PREFIX,
)
