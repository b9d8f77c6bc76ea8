"""Sizing by simulation: `dcsim plan`.

Forward: for each device type, the smallest number of accelerators (and the parallelism)
that meets the SLO at the scenario's load. The scenario's single pool is the template: its
model, precision and engine settings stay, its device, tp, pp and count change. For each
device the candidate layouts are each tensor-parallel degree up to the server's size, with
the fewest pipeline stages at which the model fits (SRAM-only chips need many). For each
layout the replica count is found by doubling until the SLO holds, then bisection between
the last count that missed and the first that met: the answer meets it and one replica fewer
does not (both were simulated), unless a relative `tolerance` stops the bisection sooner.
Meeting the SLO also requires that no request was rejected and none was left in flight, and
the answer must meet it with every one of `seeds` seeds (replicas are added until it does).
The search goes up to `max_devices`, or without it to 16 times what the load needs at full
batches. A fleet larger than the scenario's topology places is simulated without the
topology (and the plan says so); a trial that cannot be built ends its layout's search, not
the plan. Every device is priced on one basis (`price_alike`).

Reverse: the highest load the scenario's own fleet sustains within the SLO, by doubling or
halving the load and then bisecting to a relative tolerance.

Every simulation runs on the same workload and seed; the answer lists them all.
"""
from __future__ import annotations

import copy
import time

import numpy as np

from .. import catalog
from ..catalog import economics
from ..catalog.hardware import BYTES_PER_ELEMENT, DeviceSpec
from ..demand.workload import generate, stream_models
from ..results.summary import summarize
from ..scenario import Scenario, scenario_from_source
from ..simulation import simulate
from ..spec import source
from ..spec.errors import Loc, ScenarioError
from ..spec.units import UnitError, parse_duration, parse_rate
from ..timing import kernels
from .plan_records import DevicePlan, Layout, Trial, trial_of

LOAD_CAP = 16      # without --max-devices, the search goes up to this many times the load's estimate


def parse_slo(text: str) -> dict:
    """'ttft_p99=2s,tpot_p99=100ms' -> {'ttft_p99': '2s', ...} (the scenario's slo: form)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ScenarioError.one(Loc("--slo"), part, "expected METRIC_STAT=VALUE, e.g. ttft_p99=2s")
        k, v = part.split("=", 1)
        try:
            parse_duration(v.strip())
        except UnitError as exc:
            raise ScenarioError.one(Loc("--slo"), k.strip(), str(exc)) from None
        out[k.strip()] = v.strip()
    return out


class Planner:
    def __init__(self, path: str, slo: dict | None = None, rate: float | None = None, overrides=(),
                 tolerance: float = 0.0, max_devices: int | None = None, progress=None, tps: list[int] | None = None,
                 seeds: int = 3):
        self.path = path
        self.seeds = seeds
        self.tolerance = tolerance
        self.max_devices = max_devices
        self.tps = tps
        self.progress = progress or (lambda trial: None)
        self.trials: list[Trial] = []
        src = source.load(path)
        src.select_variant(None)
        for a in overrides:
            src.override(a)
        if slo:
            src.data["slo"] = slo
            src.locs[("slo",)] = Loc("--slo")
        self.src = src
        self.base = scenario_from_source(copy.deepcopy(src), (), path)   # checks the template
        spec = self.base.spec
        if len(spec.fleet) != 1:
            raise ScenarioError.one(src.loc_of(("fleet",)), "fleet", f"plan sizes a one-pool fleet; this scenario has "
                                    f"{len(spec.fleet)} pools (keep the one to size)")
        if not spec.slo.targets:
            raise ScenarioError.one(src.loc_of(("slo",)), "slo", "plan needs SLO targets: give --slo ttft_p99=2s,... "
                                    "or slo: in the scenario")
        self.rate0 = self._total_rate()
        # the scenario's own device (a catalog name, or an inline entry such as {base: ..., hourly_usd: 1})
        self.own_key = self.base.pools[0].device_key
        self.own_raw = src.data["fleet"][0]["device"]
        self.rate = rate
        self._cache: dict[tuple, Trial] = {}
        self.basis: economics.Basis | None = None
        self.notes: set[str] = set()
        topo = self.base.spec.topology
        self.topology_places = len(topo.accelerators()) if topo is not None else None

    # ---- the scenario with a layout and load ----------------------------------------------
    def _total_rate(self) -> float | None:
        rates = [s.rate for s in self.base.spec.workload]
        return None if any(r is None for r in rates) else float(sum(rates))

    def _scenario(self, device: str, precision: str, tp: int, pp: int, replicas: int, rate: float | None) -> Scenario:
        src = copy.deepcopy(self.src)
        if src.data.get("drain") is None:
            # a fleet too small never drains its queue: stop a duration after the window
            src.data["drain"] = src.data["duration"]
        pool = src.data["fleet"][0]
        pool["device"] = self.own_raw if device == self.own_key else device
        pool["count"] = replicas * tp * pp * pool.get("serve", {}).get("ep", 1)
        if self.topology_places is not None and pool["count"] > self.topology_places:
            # the fleet outgrows the scenario's network: size it without one (no links modelled)
            for key in ("topology", "ingress"):
                src.data.pop(key, None)
            self.notes.add(f"fleets of more than {self.topology_places} devices outgrow the scenario's topology "
                           f"'{self.base.spec.topology.name}' and were simulated without it (no network modelled)")
        serve = pool.setdefault("serve", {})
        serve.update({"tp": tp, "pp": pp, "precision": precision})
        if rate is not None:
            if self.rate0 is None:
                raise ScenarioError.one(src.loc_of(("workload",)), "workload",
                                        "--rate scales each stream's rate: every stream needs rate:")
            for stream in src.data["workload"]:
                stream["rate"] = f"{parse_rate(stream['rate']) * rate / self.rate0!r}/s"
        return scenario_from_source(src, (), self.path)

    def trial(self, device: str, precision: str, tp: int, pp: int, replicas: int, rate: float | None = None,
              seed: int | None = None) -> Trial:
        rate = self.rate if rate is None else rate
        seed = self.base.spec.seed if seed is None else seed
        key = (device, precision, tp, pp, replicas, rate, seed)
        if key in self._cache:
            return self._cache[key]
        t0 = time.perf_counter()
        try:
            s = summarize(simulate(self._scenario(device, precision, tp, pp, replicas, rate), seed=seed))
        except ScenarioError as exc:
            # one trial that cannot be built stops its layout's search, not the plan
            t = Trial(device, precision, tp, pp, replicas, rate, False,
                      f"error: {'; '.join(p.message for p in exc.problems)}", None, None, None, None,
                      time.perf_counter() - t0, seed)
        else:
            t = trial_of(s, device, precision, tp, pp, replicas, rate, t0, seed)
        self._cache[key] = t
        self.trials.append(t)
        self.progress(t)
        return t

    # ---- forward: smallest count per device ---------------------------------------------
    def layouts(self, device: str) -> DevicePlan:
        """The layouts to search on `device`: each tp up to its server, the fewest pp that fits."""
        plan = DevicePlan(device)
        entries = catalog.device_entries()
        if device == self.own_key:
            dev = self.base.pools[0].deployment.device
        elif device in entries:
            dev = DeviceSpec.model_validate(entries[device])
        else:
            plan.note = f"unknown device '{device}'"
            return plan
        want = self.base.pools[0].deployment.precision
        precision = _precision_for(dev, want)
        if precision is None:
            plan.note = f"no usable precision (wanted {want}; it supports {', '.join(dev.peak_flops.supported())})"
            return plan
        if precision != want:
            plan.note = f"{precision} instead of {want} (no {want} compute)"
        model = self.base.pools[0].deployment.model
        per_server = dev.node.devices if dev.node is not None else 8
        tps = [t for t in (self.tps or (1, 2, 4, 8, 16, 32, 64))
               if (self.tps or t <= per_server) and (not model.heads or model.heads % t == 0)]
        if dev.scale_up_bandwidth is None:
            tps = [1]
        last_error = ""
        fits_whole = []          # layouts without pipeline stages
        for tp in tps:
            pp, err = self._fewest_stages(device, precision, tp, model.layers, only_one=True)
            if pp is not None:
                fits_whole.append(tp)
            else:
                last_error = err
        if fits_whole:
            plan.layouts = [Layout(device, precision, tp, 1) for tp in fits_whole]
        elif tps:
            # nothing fits a server's worth of tensor parallelism: pipeline the widest layout
            tp = tps[-1]
            pp, err = self._fewest_stages(device, precision, tp, model.layers)
            if pp is None:
                last_error = err or last_error
            elif self.max_devices is not None and tp * pp > self.max_devices:
                last_error = (f"tp={tp} needs pp={pp}: {tp * pp} devices per replica, "
                              f"over --max-devices {self.max_devices}")
            else:
                plan.layouts = [Layout(device, precision, tp, pp)]
        if not plan.layouts:
            plan.note = (plan.note + "; " if plan.note else "") + f"the model fits no layout: {last_error}"
        return plan

    def _fewest_stages(self, device, precision, tp, layers, only_one=False) -> tuple[int | None, str]:
        """The fewest pipeline stages at which the model fits on tp devices per stage (with
        only_one: whether one stage does)."""
        def fits(pp):
            try:
                self._scenario(device, precision, tp, pp, 1, None)
                return True, ""
            except ScenarioError as exc:
                return False, "; ".join(p.message for p in exc.problems)
        ok, err = fits(1)
        if ok:
            return 1, ""
        if only_one:
            return None, err
        ok_max, err_max = fits(layers)
        if not ok_max:
            return None, err_max if "does not fit" in err_max or "leaves" in err_max else err
        lo, hi = 1, layers      # lo does not fit, hi does
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if fits(mid)[0] else (mid, hi)
        return hi, ""

    def start_count(self, layout: Layout) -> int:
        """Where the search starts: the replicas the load needs if each ran full batches at
        the kernels' decode speed (a guess; the search goes down as well as up from it)."""
        sc = self._scenario(layout.device, layout.precision, layout.tp, layout.pp, 1, None)
        dep = sc.pools[0].deployment
        arrivals = generate(sc.spec.workload, min(sc.spec.duration, 60.0), sc.spec.seed, stream_models(sc))
        ok = ~np.isnan(arrivals.time)
        if not ok.any():
            return 1
        prompt, output = float(arrivals.prompt[ok].mean()), float(arrivals.output[ok].mean())
        rate = (self.rate or self.rate0 or ok.sum() / min(sc.spec.duration, 60.0))
        engine = sc.spec.fleet[0].serve.engine
        batch = int(max(1, min(engine.max_batch_seqs, dep.max_tokens_in_cache // max(prompt + output, 1))))
        step = kernels.decode_time(dep.params, batch, int(prompt + output / 2))
        per_engine = batch / step / output                    # requests per second
        return max(1, int(np.ceil(rate / (per_engine * sc.pools[0].spec.engines_per_replica))))

    def size(self, layout: Layout) -> Layout:
        """Doubling (or halving) from a guess until the SLO's boundary is bracketed, then
        bisection on the replica count for one layout."""
        width = layout.tp * layout.pp
        start = self.start_count(layout)
        if self.max_devices is not None:
            cap = max(1, self.max_devices // width)
            limit = f"--max-devices {self.max_devices}"
        else:   # from the load: many times what full batches at decode speed would need
            cap = max(8, LOAD_CAP * start)
            limit = f"{LOAD_CAP} x the load's estimate of {start * width:,}; raise it with --max-devices"
        lo_fail, hi_ok = None, None
        n = min(start, cap)
        while True:
            t = self.trial(layout.device, layout.precision, layout.tp, layout.pp, n)
            if t.why.startswith("rejected"):
                layout.note = f"{t.why} at any count (request too large for this layout)"
                return layout
            if t.why.startswith("error"):
                layout.note = t.why
                layout.below = t
                return layout
            if t.met:
                hi_ok = t
                if lo_fail is not None or n == 1:
                    break
                n //= 2
            else:
                lo_fail = t
                if hi_ok is not None or n >= cap:
                    break
                n = min(2 * n, cap)
        if hi_ok is None:
            layout.note = f"SLO not met with {cap * width:,} devices ({limit})"
            layout.below = lo_fail
            return layout
        while lo_fail is not None and hi_ok.replicas - lo_fail.replicas > max(1, self.tolerance * hi_ok.replicas):
            mid = (lo_fail.replicas + hi_ok.replicas) // 2
            t = self.trial(layout.device, layout.precision, layout.tp, layout.pp, mid)
            if t.met:
                hi_ok = t
            else:
                lo_fail = t
        layout.best, layout.below = hi_ok, lo_fail
        return self._confirm(layout, cap)

    def _confirm(self, layout: Layout, cap: int) -> Layout:
        """The answer must hold for every seed, not only the one the search ran: add replicas
        until it does (the noise of one seed near the boundary is not capacity)."""
        base = self.base.spec.seed
        n = layout.best.replicas
        while True:
            misses = [t for t in (self.trial(layout.device, layout.precision, layout.tp, layout.pp, n, seed=base + k)
                                  for k in range(self.seeds)) if not t.met]
            if not misses:
                break
            if n >= cap:
                layout.note = f"SLO not met for every seed with {cap * layout.tp * layout.pp} devices"
                layout.best = None
                return layout
            layout.below = misses[0]
            n += 1
        layout.best = self.trial(layout.device, layout.precision, layout.tp, layout.pp, n)
        layout.seeds_checked = [base + k for k in range(self.seeds)]
        return layout

    def price_alike(self, devices: list[str]) -> economics.Basis:
        """Every device of the search priced on one basis: the scenario's, or with `auto` the one
        that prices them all. A device without that price is an error naming it and the field."""
        entries = catalog.device_entries()
        specs = {}
        for d in devices:
            if d == self.own_key:
                specs[d] = self.base.pools[0].deployment.device
            elif d in entries:
                specs[d] = DeviceSpec.model_validate(entries[d])
        chosen = economics.one_basis(specs, self.base.spec.economics.pricing, self.src.loc_of(("economics", "pricing")),
                                     "plan prices every device alike")
        self.src.data.setdefault("economics", {})["pricing"] = chosen.name
        self.basis = chosen
        return chosen

    def plan(self, devices: list[str]) -> list[DevicePlan]:
        self.price_alike(devices)
        plans = []
        for device in devices:
            p = self.layouts(device)
            for lay in p.layouts:
                self.size(lay)
            plans.append(p)
        return plans

    # ---- reverse: the most load a fleet sustains ----------------------------------------
    def max_rate(self, tolerance: float = 0.02) -> tuple[Trial | None, Trial | None]:
        """The highest total rate at which the scenario's fleet meets the SLO (and the lowest
        tried at which it did not)."""
        if self.rate0 is None:
            raise ScenarioError.one(self.src.loc_of(("workload",)), "workload",
                                    "the reverse search scales each stream's rate: every stream needs rate:")
        pool = self.base.pools[0]
        dep = pool.deployment
        args = (self.own_key, dep.precision, dep.tp, dep.pp, pool.replicas)
        ok, fail = None, None
        rate = self.rate or self.rate0
        for _ in range(40):
            t = self.trial(*args, rate=rate)
            if t.met:
                ok = t
                if fail is not None:
                    break
                rate *= 2
            else:
                fail = t
                if ok is not None:
                    break
                rate /= 2
        while ok is not None and fail is not None and fail.rate - ok.rate > tolerance * ok.rate:
            t = self.trial(*args, rate=(ok.rate + fail.rate) / 2)
            ok, fail = (t, fail) if t.met else (ok, t)
        return ok, fail


def _precision_for(dev: DeviceSpec, want: str) -> str | None:
    """The requested precision, or the nearest the device computes in: the same width first
    (fp8 <-> int8), then 16-bit (no fp8 means bf16 weights and twice the memory)."""
    supported = dev.peak_flops.supported()
    if want in supported:
        return want
    same = [p for p in supported if BYTES_PER_ELEMENT[p] == BYTES_PER_ELEMENT[want] and p != "fp32"]
    if same:
        return same[0]
    for p in ("bf16", "fp16", "fp8", "int8"):
        if p in supported and BYTES_PER_ELEMENT[p] >= BYTES_PER_ELEMENT[want]:
            return p
    return None


__all__ = ["Planner", "parse_slo"]
