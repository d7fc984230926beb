"""snagkg.runtime.hardware: ranking chunk sizes within the memory budget and half the L2 cache, the budget
following the memory available, and single_threaded."""
import pytest
import torch

from snagkg.runtime import hardware


@pytest.mark.parametrize("n_ent", [100, 12_842, 200_000, 5_000_000])
def test_ranking_chunks_fit_the_memory_budget(n_ent):
    for compiled in (True, False):
        c = hardware.chunk_size(n_ent, 256, compiled, budget_bytes=256 << 20)
        assert c >= 1
        per_pair = 12 if compiled else 4 * 3 * 128
        assert c == 1 or c * n_ent * per_pair <= 256 << 20


@pytest.mark.parametrize("l2, want", [(2 << 20, 1024), (512 << 10, 256), (0, 64)])
def test_compiled_query_chunk_fits_half_the_l2_cache(l2, want):
    # 256-wide float32 queries are 1 KiB each; the chunk never shrinks below 64 queries
    assert hardware.chunk_size(12_842, 256, True, cache_bytes=l2) == want
    assert hardware.l2_cache_bytes() > 0


@pytest.mark.parametrize("free, want", [(None, 256 << 20), (64 << 30, 256 << 20), (400 << 20, 100 << 20),
                                        (1 << 20, 8 << 20)])
def test_ranking_budget_follows_the_memory_available(monkeypatch, free, want):
    monkeypatch.setattr(hardware, "available_memory_bytes", lambda device=None: free)
    assert hardware.ranking_budget("cpu") == want
    # the chunk follows the budget: 12 bytes per (query, entity) pair at 200k entities
    c = hardware.chunk_size(200_000, 256, True, cache_bytes=64 << 20)
    assert c == max(1, min(4096, want // (200_000 * 12)))


def test_available_memory_is_read_on_this_machine():
    free = hardware.available_memory_bytes("cpu")
    assert free is None or free > 0


def test_single_threaded_restores_the_thread_count():
    n = torch.get_num_threads()
    with hardware.single_threaded():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == n
