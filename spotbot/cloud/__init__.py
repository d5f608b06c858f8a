"""The cloud's job rules: the steps the state machine runs (init, scan, finalize, requeue,
cleanup), job control for the REST API, and SageMaker endpoints' lifecycle; over `spotbot.aws`.
"""
