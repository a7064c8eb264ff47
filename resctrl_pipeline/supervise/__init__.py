"""The supervisor behind ``resctrl-pipeline up``.

* :mod:`.policy`: when to restart a crashed actor and when to give up (pure).
* :mod:`.spawner`: starting, signalling and reaping the actor processes.
* :mod:`.health`: readiness and Prometheus metrics from the actors' heartbeats (pure).
* :mod:`.http`: the HTTP endpoints ``/live``, ``/ready``, ``/metrics``, ``/status``.
* :mod:`.supervisor`: the loop that ties them together.
"""
