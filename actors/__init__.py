"""Composition roots: one module per actor process.

Importing this package is the first thing an actor process does (``python -m
actors.<name>``), so the tie to the supervisor is made here, before the heavy imports
of the actor's module: parent-death signal, orphan check, stop signals
(:mod:`resctrl_pipeline.tether`; a no-op outside ``up``).
"""

from resctrl_pipeline.tether import tie

tie()
