"""dcsim: a discrete-event capacity simulator for AI-inference datacenters.

    from sim.scenario import load_scenario
    from sim.simulation import simulate
    from sim.results.summary import summarize

    result = simulate(load_scenario("quickstart", ["workload.rate=80/s"]))
    figures = summarize(result)

A bare name is an example that ships with the package (`dcsim catalog scenarios`); a path
reads your own file. `__version__` is the one place the version is written (pyproject.toml
reads it from here).
"""
__version__ = "0.1.0"

from . import compiled_cache as _compiled_cache

_compiled_cache.refresh()
