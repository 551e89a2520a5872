"""`python -m compilot` is the `compilot` command."""

from compilot.cli import main

main()
