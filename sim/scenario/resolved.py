"""A scenario after loading: its pools resolved against the catalog, deployed on their devices."""
from __future__ import annotations

from ..catalog import economics
from ..spec import source
from ..timing.deployment import Deployment
from .schema import Pool, ScenarioSpec


class ResolvedPool:
    """A pool with its device and model resolved and its deployment checked."""

    def __init__(self, spec: Pool, device_key: str, model_key: str, deployment: Deployment):
        self.spec = spec
        self.name = spec.pool
        self.device_key = device_key
        self.model_key = model_key
        self.deployment = deployment

    @property
    def replicas(self) -> int:
        return self.spec.replicas


class Scenario:
    """A validated scenario: the schema object, resolved pools, and where it came from."""

    def __init__(self, spec: ScenarioSpec, pools: list[ResolvedPool], src: source.Source, path: str):
        self.spec = spec
        self.pools = pools
        self.source = src
        self.path = path
        self.pricing = economics.Basis(None, [])   # set by scenario_from_source (pricing_basis)

    @property
    def name(self) -> str:
        return self.spec.name

    def resolved_dict(self) -> dict:
        """The fully resolved scenario (includes merged, overrides applied), for the results folder."""
        return self.source.data

    def models_served(self) -> set[str]:
        return {p.model_key for p in self.pools}
