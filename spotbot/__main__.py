"""`python -m spotbot` runs the command line."""

from spotbot.entry.cli import main

if __name__ == "__main__":
    main()
