"""Entry points that only wire the layers below: the CLI, the local runner, the Batch worker,
the SageMaker serving process and the bot images' container dispatcher."""
