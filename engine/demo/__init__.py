"""The demo: the whole loop on embedded defaults (``make demo``, ``insight demo``,
``jobs/demo.py``). :mod:`.run` builds, trains, gates, serves and reports; :mod:`.loop` replays
traffic, monitors it, fires alerts to local receivers, joins labels, retrains and rolls out.
Everything the demo needs beyond the stages lives here, nowhere else."""
