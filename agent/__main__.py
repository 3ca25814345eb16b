"""`python -m agent` runs veuctl."""

from agent.cli import main

main()
