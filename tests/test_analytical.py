"""The analytical operator model's shape rules, by hand arithmetic (`sim.timing.analytical`)."""
import math

import numpy as np
import pytest

from sim import catalog
from sim.catalog.hardware import DeviceSpec
from sim.timing import analytical as A
from sim.timing.analytical import Analytical
from sim.timing.operators import ACT_BYTES, Attention, Gemm


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


def test_prefill_attention_is_its_products_and_softmax_overlapped_plus_its_blocks(h100):
    """Hand arithmetic of one prefill: 2 prompts of 1,000 tokens, 32 query heads over 8 K/V heads of 128."""
    model = Analytical(h100, "bf16")
    att = Attention(32, 8, 128, "bf16", 1)
    b, s = 2.0, 1000.0
    pairs = b * s * (s + 1) / 2
    flops = 4 * 32 * 128 * pairs
    products = flops / (model.gemm_rate("bf16") * s / (s + h100.attention_half_length)) * (1 + A.KV_REREAD * 8 / 32)
    softmax = pairs * 32 / h100.exp_rate
    p = A.SOFTMAX_OVERLAP_NORM
    compute = (products ** p + softmax ** p) ** (1 / p)
    blocks = b * 32 * math.ceil(s / A.QUERY_TILE) * A.ATTENTION_BLOCK_TIME / h100.multiprocessors
    kv_and_io = b * s * (2 * 8 * 128 * 2 + 2 * 32 * 128 * ACT_BYTES) / model.mem_rate
    assert compute > kv_and_io
    expected = h100.kernel_floors.attention + compute + blocks
    assert model.context_attention(np.array([b]), np.array([s]), att)[0] == pytest.approx(expected)


def test_multi_head_attention_rereads_its_keys_and_values():
    model = Analytical(device("nvidia-h100-sxm", exp_rate=None, multiprocessors=None, kernel_floors=None), "bf16")
    mha, gqa = Attention(32, 32, 128, "bf16", 1), Attention(32, 4, 128, "bf16", 1)
    b, s = np.array([4.0]), np.array([8192.0])
    ratio = model.context_attention(b, s, mha)[0] / model.context_attention(b, s, gqa)[0]
    assert ratio == pytest.approx((1 + A.KV_REREAD) / (1 + A.KV_REREAD / 8))


def test_a_decode_pays_a_block_per_sequence_and_kv_head_and_reads_its_cache(h100):
    model = Analytical(h100, "bf16")
    att = Attention(32, 8, 128, "bf16", 1)
    batch, kv = 256.0, 100.0
    reads = batch * kv * 2 * 8 * 128 * 2 / model.mem_rate
    blocks = batch * 8 * A.ATTENTION_BLOCK_TIME / h100.multiprocessors
    assert model.generation_attention(np.array([batch]), np.array([kv]), att)[0] == pytest.approx(
        h100.kernel_floors.attention + reads + blocks)


def test_without_an_exp_rate_the_published_attention_efficiency_covers_the_softmax():
    dev = device("nvidia-h100-sxm", exp_rate=None, multiprocessors=None, kernel_floors=None,
                 attention_half_length=None)
    model = Analytical(dev, "bf16")
    att = Attention(32, 32, 128, "bf16", 1)
    s = 16384.0
    flops = 4 * 32 * 128 * s * (s + 1) / 2
    assert model.context_attention(np.array([1.0]), np.array([s]), att)[0] == pytest.approx(
        flops / dev.attention_rate() * (1 + A.KV_REREAD))
    assert any("no exp_rate in the catalog" in line for line in model.assumptions())


def test_an_8_bit_gemm_computes_in_whole_waves_of_its_dispatch_tiles(h100):
    """vLLM's sm90 fp8 kernel: rows > 128 take 128 x 128 tiles, one per SM per wave."""
    model = Analytical(h100, "fp8")
    rate = model.gemm_rate("fp8")
    tile_time = 2.0 * 128 * 128 * 8192 / (rate / 132)
    one_tile = model._waves(np.array([256.0]), Gemm("g", 128, 8192, 1.0), rate)[0]   # 2 tiles: one wave
    assert one_tile == pytest.approx(tile_time)
    full = model._waves(np.array([256.0]), Gemm("g", 66 * 128, 8192, 1.0), rate)[0]  # 132 tiles: one wave
    assert full == pytest.approx(tile_time)
    spill = model._waves(np.array([256.0]), Gemm("g", 67 * 128, 8192, 1.0), rate)[0]  # 134 tiles: two
    assert spill == pytest.approx(2 * tile_time)
    # the dispatch by rows: 64 < m <= 128 takes 64 x 128 tiles, m <= 16 16 x 64
    assert model._waves(np.array([100.0]), Gemm("g", 128, 8192, 1.0), rate)[0] == pytest.approx(tile_time / 2)
    assert model._waves(np.array([16.0]), Gemm("g", 128, 8192, 1.0), rate)[0] == pytest.approx(tile_time / 16)
    # and by columns: 16 < m <= 64 takes 16 x 64 tiles up to 1,280 columns, 64 x 64 past them
    assert model._waves(np.array([32.0]), Gemm("g", 1024, 8192, 1.0), rate)[0] == pytest.approx(tile_time / 16)
    assert model._waves(np.array([32.0]), Gemm("g", 2048, 8192, 1.0), rate)[0] == pytest.approx(tile_time / 4)
    # a full wave's time is the plain rate's: the model only adds the idle multiprocessors
    m, n = 128.0 * 12, 128 * 11
    assert model._waves(np.array([m]), Gemm("g", n, 8192, 1.0), rate)[0] == pytest.approx(2 * m * n * 8192 / rate)


def test_an_8_bit_gemm_adds_wave_quantization_only_where_the_catalog_gives_tiles(h100):
    op = Gemm("g", 128, 8192, 1.0)
    rows = np.array([256.0])
    tiled, plain = Analytical(h100, "fp8"), Analytical(device("nvidia-h100-sxm", gemm8_tiles=None), "fp8")
    assert tiled.gemm(rows, op)[0] > plain.gemm(rows, op)[0]
    assert any("no gemm8_tiles" in line for line in plain.assumptions())
    assert not any("gemm8_tiles" in line for line in tiled.assumptions())
    # 16-bit and 4-bit GEMMs run other kernels: the 8-bit tiles leave them alone
    for precision in ("bf16", "fp4"):
        op = Gemm("g", 128, 8192, 1.0, precision)
        assert tiled.gemm(rows, op)[0] == pytest.approx(plain.gemm(rows, op)[0])


def test_tile_rules_must_cover_every_shape_in_order():
    tiles = [{"rows": 64, "cols": 1280, "tile_rows": 16, "tile_cols": 64},
             {"rows": 64, "tile_rows": 64, "tile_cols": 64}, {"tile_rows": 128, "tile_cols": 128}]
    assert device("nvidia-h100-sxm", gemm8_tiles=tiles).gemm8_tiles[2].bounds() == (math.inf, math.inf)
    for bad in (tiles[:2], tiles[::-1], [tiles[1], tiles[0], tiles[2]],
                [*tiles[:2], {"cols": 4096, "tile_rows": 128, "tile_cols": 128}],
                [{"rows": 64, "tile_rows": 64, "tile_cols": 64}, {"rows": 16, "tile_rows": 16, "tile_cols": 64},
                 {"tile_rows": 128, "tile_cols": 128}]):
        with pytest.raises(ValueError):
            device("nvidia-h100-sxm", gemm8_tiles=bad)
