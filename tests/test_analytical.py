"""The analytical operator model's shape rules, by hand arithmetic (`sim.timing.analytical`)."""
import math

import numpy as np
import pytest

from sim import catalog
from sim.catalog.hardware import DeviceSpec
from sim.timing import analytical as A
from sim.timing.analytical import Analytical
from sim.timing.operators import ACT_BYTES, Gemm


def device(key: str, **changes) -> DeviceSpec:
    return DeviceSpec.model_validate({**catalog.device_entries()[key], **changes})


@pytest.fixture
def h100():
    return device("nvidia-h100-sxm")


def test_a_gemm_with_no_work_takes_its_floor(h100):
    model = Analytical(h100, "bf16")
    assert model.gemm(np.array([0.0]), Gemm("g", 0, 0, 1.0))[0] == pytest.approx(h100.kernel_floors.gemm)


def test_a_long_gemm_pays_its_floor_its_work_and_the_whole_tail(h100):
    model = Analytical(h100, "bf16")
    m, n, k = 8192.0, 8192, 8192
    compute = 2 * m * n * k / model.gemm_rate("bf16")
    memory = (m * k * 2 + k * n * 2 + m * n * ACT_BYTES) / model.mem_rate
    work = (compute ** A.OVERLAP_NORM + memory ** A.OVERLAP_NORM) ** (1 / A.OVERLAP_NORM)
    floor = h100.kernel_floors.gemm
    tail = A.GEMM_TAIL * floor * (1 - math.exp(-work / (A.GEMM_TAIL_WORK * floor)))
    assert tail == pytest.approx(A.GEMM_TAIL * floor, rel=1e-6)          # 1.4 ms of work: the tail is whole
    assert model.gemm(np.array([m]), Gemm("g", n, k, 1.0))[0] == pytest.approx(floor + work + tail)


def test_at_the_ridge_point_compute_and_memory_overlap_imperfectly(h100):
    """Equal compute- and memory-bound times cost 2^(1/p) of either, not the roofline's max."""
    model = Analytical(h100, "bf16")
    work = model._shaped(np.array([10e-6]), np.array([10e-6]))[0]
    floor = h100.kernel_floors.gemm
    w = 10e-6 * 2 ** (1 / A.OVERLAP_NORM)
    assert work == pytest.approx(floor + w + A.GEMM_TAIL * floor * (1 - math.exp(-w / (A.GEMM_TAIL_WORK * floor))))
    far = model._shaped(np.array([100e-6]), np.array([1e-6]))[0]   # one bound dominates: nearly the max
    assert far - floor - A.GEMM_TAIL * floor < 100e-6 * 1.0001


def test_an_8_bit_gemm_quantizes_a_block_per_token_spread_over_the_multiprocessors():
    hopper = Analytical(device("nvidia-h100-sxm"), "fp8")
    op = Gemm("g", 32, 32, 1.0)
    rows = np.array([8192.0, 16384.0])
    per_row = np.diff(hopper.quantize(rows, op))[0] / 8192
    vector = (A.QUANTIZE_OPS * 32 + A.RESCALE_OPS * 32) / hopper.vector_rate
    assert per_row == pytest.approx(A.QUANTIZE_ROW_TIME / 132 + vector)
    wider = Analytical(device("nvidia-h100-sxm", multiprocessors=264), "fp8")
    assert np.diff(wider.quantize(rows, op))[0] / 8192 == pytest.approx(A.QUANTIZE_ROW_TIME / 264 + vector)
    # its fixed cost: QUANTIZE_FLOORS elementwise floors
    assert hopper.quantize(np.array([0.0]), op)[0] == pytest.approx(A.QUANTIZE_FLOORS * 2.0e-6)


def test_a_device_without_a_multiprocessor_count_says_its_quantization_blocks_are_free():
    model = Analytical(device("nvidia-h100-sxm", multiprocessors=None), "fp8")
    assert any("no multiprocessors in the catalog" in line for line in model.assumptions())
    op = Gemm("g", 32, 32, 1.0)
    assert np.diff(model.quantize(np.array([1.0, 2.0]), op))[0] == pytest.approx(
        (A.QUANTIZE_OPS * 32 + A.RESCALE_OPS * 32) / model.vector_rate)
    assert not any("multiprocessors" in line for line in Analytical(device("nvidia-h100-sxm"), "fp8").assumptions())


def test_a_device_without_floors_times_gemms_by_their_work_alone():
    model = Analytical(device("nvidia-h100-sxm", kernel_floors=None), "bf16")
    assert model._shaped(np.array([3e-6]), np.array([0.0]))[0] == pytest.approx(3e-6)
