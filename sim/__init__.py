"""dcsim: a discrete-event capacity simulator for AI-inference datacenters.

    from sim.scenario import load_scenario
    from sim.simulation import simulate
    from sim.results.summary import summarize

    result = simulate(load_scenario("scenarios/quickstart.yaml", ["workload.rate=80/s"]))
    figures = summarize(result)
"""
__version__ = "0.1.0"

from . import compiled_cache as _compiled_cache

_compiled_cache.refresh()
