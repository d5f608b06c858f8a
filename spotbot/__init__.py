"""spotbot: tag huge collections of digital assets with machine-learning bots, cheaply.

The package is in layers that only point down (checked by import-linter, pyproject.toml):

    entry              CLI, local runner, Batch worker, serving, the images' dispatcher
    cloud | training   the cloud's job rules | fine-tuning of the built-in bots
    aws | bots         adapters to AWS | the built-in bots
    core               records, model choice, job steps and limits, the shard worker,
                       interfaces of sources, sinks and stores, the SQLite store
"""

__version__ = "0.1.0"
