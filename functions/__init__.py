"""Lambda handlers (aws-lambda-powertools): thin adapters from events to spotbot.cloud's logic."""
