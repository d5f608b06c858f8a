"""Step Functions state machines built in Python (dict -> ASL JSON); imports no Pulumi."""
