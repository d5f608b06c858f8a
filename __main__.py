"""The Pulumi program of spotbot: read the stack config once, compose infra/, export outputs."""

from infra import config, stack

deployment = stack.build(config.from_pulumi())
stack.export(deployment.outputs)
