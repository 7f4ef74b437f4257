"""`python -m griffin_core.counting`: print the tables of docs/counting.md."""

from griffin_core.counting.tables import main

main()
