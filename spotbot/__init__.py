"""spotbot: tag huge collections of digital assets with machine-learning bots, cheaply."""

__version__ = "0.1.0"
