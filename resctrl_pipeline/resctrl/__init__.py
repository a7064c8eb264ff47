"""resctrl."""
