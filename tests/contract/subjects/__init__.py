"""One module per registered component: its contract subject class and `make`, the fixture body."""
