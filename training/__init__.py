"""Training recipes that run from the repository, for bots without a built-in trainer.

The built-in bots train through the installed package (`spotbot.training`: `spotbot train`,
and the images' `train` entry point under the SageMaker contract). A bring-your-own bot adds
its recipe here as `training/<bot_name>.py` (dashes become underscores) with a `main(argv)`
or a `python -m` entry; the images copy this folder, and their `train` entry point runs it
(SPOTBOT_TRAINING_PACKAGE names another package).
"""
