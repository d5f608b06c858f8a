"""Pulumi components of spotbot, one module per concern; the only package that imports pulumi."""
