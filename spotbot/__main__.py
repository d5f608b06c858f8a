"""`python -m spotbot` runs the command line."""

from spotbot.cli import main

main()
