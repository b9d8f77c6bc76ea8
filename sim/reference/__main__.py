"""`python -m sim.reference`: every generated block, as JSON {name: Markdown}.

docs/hooks.py runs it once per build in a fresh process, so `mkdocs serve` shows the code and
catalog as they are now rather than as the server first imported them.
"""
import json
import sys

from . import generate_all

json.dump(generate_all(), sys.stdout)
