"""Fine-tuning the built-in bots on a user's labelled data: `spotbot train` and the bot images'
`train` entry point (the SageMaker training contract) both run it."""
