"""``python -m fleetwise`` runs the command line."""

from fleetwise.cli import main

main()
