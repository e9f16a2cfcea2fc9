"""routing/engine_load and the state it feeds: engines' own metrics pages read, and the
balancers' use of the figures while fresh."""

from __future__ import annotations

import time

import pytest

from sluicegate.pipeline.call import Call
from sluicegate.routing.balancer import Latency, LeastOutstanding
from sluicegate.routing.engine_load import EngineFigures, parse_engine_metrics
from sluicegate.routing.router import Target
from sluicegate.types import Endpoint
from tests.unit.routing.test_balancer import target as balancer_target

# vLLM V1 (0.10-era): engine and model_name labels, both KV names while the old one
# was deprecated, a queue split over two data-parallel engines, and the histograms
# and counters around them.
VLLM_V1 = """\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 14513.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-0.6B"} 7.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen3-0.6B"} 5.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-0.6B"} 30.0
vllm:num_requests_waiting{engine="1",model_name="Qwen/Qwen3-0.6B"} 12.0
# HELP vllm:num_requests_waiting_by_reason Number of requests waiting, by reason.
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{engine="0",model_name="Qwen/Qwen3-0.6B",reason="capacity"} 99.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-0.6B"} 0.99
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-0.6B"} 0.62
vllm:kv_cache_usage_perc{engine="1",model_name="Qwen/Qwen3-0.6B"} 0.41
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="Qwen/Qwen3-0.6B"} 51234.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="Qwen/Qwen3-0.6B"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.5",model_name="Qwen/Qwen3-0.6B"} 212.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen3-0.6B"} 230.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="Qwen/Qwen3-0.6B"} 230.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="Qwen/Qwen3-0.6B"} 41.2
"""

# vLLM V0 (0.6-era): model_name only, the older KV name, swapped requests beside.
VLLM_V0 = """\
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:num_requests_swapped Number of requests swapped to CPU.
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
vllm:num_requests_waiting{model_name="llama-8b-alias"} 1.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.25
# HELP vllm:cpu_cache_usage_perc CPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:cpu_cache_usage_perc gauge
vllm:cpu_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
"""

# TEI (metrics-exporter-prometheus): TYPE lines without HELP, summaries beside.
TEI = """\
# TYPE te_request_count counter
te_request_count{method="batch"} 118
# TYPE te_queue_size gauge
te_queue_size 6
# TYPE te_batch_current_size gauge
te_batch_current_size 32
# TYPE te_batch_current_max_tokens gauge
te_batch_current_max_tokens 16384
# TYPE te_request_duration summary
te_request_duration{quantile="0.5"} 0.021
te_request_duration{quantile="0.99"} 0.25
te_request_duration_sum 3.4
te_request_duration_count 118
"""


def test_vllm_v1_sums_label_sets_and_prefers_the_new_kv_name() -> None:
    # The fullest engine's ratio, from kv_cache_usage_perc even where the old name remains.
    assert parse_engine_metrics(VLLM_V1) == EngineFigures(waiting=42, running=12, kv_usage=0.62)


def test_vllm_v0_reads_the_older_kv_name() -> None:
    assert parse_engine_metrics(VLLM_V0) == EngineFigures(waiting=3, running=3, kv_usage=0.25)


def test_tei_queue_and_batch() -> None:
    assert parse_engine_metrics(TEI) == EngineFigures(waiting=6, running=32, kv_usage=None)


def test_an_engine_without_known_metrics_gives_no_figures() -> None:
    llama_cpp = (
        "# HELP llamacpp:requests_processing Number of requests processing.\n"
        "# TYPE llamacpp:requests_processing gauge\n"
        "llamacpp:requests_processing 1\n"
    )
    assert parse_engine_metrics(llama_cpp) is None
    assert parse_engine_metrics("") is None
    assert parse_engine_metrics("<html>404 Not Found</html>") is None


def test_partial_figures_count_what_is_there() -> None:
    assert parse_engine_metrics("te_queue_size 4\n") == EngineFigures(4, 0, None)


def test_unreadable_figures_raise() -> None:
    with pytest.raises(ValueError):
        parse_engine_metrics("vllm:num_requests_waiting{model_name=} not-a-number\n")


def test_non_finite_values_are_skipped() -> None:
    text = "vllm:num_requests_waiting NaN\nvllm:num_requests_running 2\n"
    assert parse_engine_metrics(text) == EngineFigures(0, 2, None)


def target(deployment_id: str, *, stale_after: float = 6.0, weight: int = 1) -> Target:
    engine = {"path": "/metrics", "stale_after": stale_after}
    return balancer_target(deployment_id, weight, engine_metrics=engine)


CALL = Call(request_id="t", endpoint=Endpoint.CHAT, body={"model": "m"}, model="m")


def test_engine_load_is_none_until_scraped_and_once_stale_or_lost() -> None:
    state = target("a", stale_after=5.0).state
    assert state.engine_load(100.0) is None
    state.engine_scraped(3, 4, 0.5, now=100.0)
    assert state.engine_load(105.0) == 7
    assert state.engine_load(105.1) is None  # past stale_after
    state.engine_scraped(3, 4, 0.5, now=200.0)
    state.engine_lost()
    assert state.engine_load(200.0) is None
    assert state.engine_kv_usage is None


def test_load_is_the_larger_of_own_calls_and_the_engine_queue() -> None:
    state = target("a").state
    for _ in range(5):
        state.started()
    assert state.load(0.0) == 5  # no figures: own count
    state.engine_scraped(10, 2, None, now=0.0)
    assert state.load(1.0) == 12  # other gateways' calls show
    state.engine_scraped(1, 1, None, now=0.0)
    assert state.load(1.0) == 5  # the scrape lags our own calls


def test_least_outstanding_avoids_the_engine_with_a_long_queue() -> None:
    busy, idle = target("busy"), target("idle")
    busy.state.engine_scraped(40, 8, 0.9, now=time.monotonic())
    balancer = LeastOutstanding()
    picks = []
    for _ in range(10):
        chosen = balancer.pick([busy, idle], CALL)
        assert chosen is not None
        chosen.state.started()  # calls stay out, so idle fills up to the engine's queue
        picks.append(chosen.deployment_id)
    assert picks == ["idle"] * 10


def test_least_outstanding_ignores_stale_figures() -> None:
    busy, idle = target("busy", stale_after=3.0), target("idle")
    busy.state.engine_scraped(40, 8, 0.9, now=time.monotonic() - 4.0)
    balancer = LeastOutstanding()
    picks = [balancer.pick([busy, idle], CALL) for _ in range(4)]
    assert [p.deployment_id for p in picks if p] == ["busy", "idle", "busy", "idle"]


def test_least_outstanding_weighs_the_engine_queue() -> None:
    heavy, light = target("heavy", weight=4), target("light")
    now = time.monotonic()
    heavy.state.engine_scraped(6, 2, None, now=now)  # 8 / 4 = 2 per unit of weight
    light.state.engine_scraped(2, 1, None, now=now)  # 3 / 1
    assert LeastOutstanding().pick([light, heavy], CALL) is heavy


def test_latency_counts_the_engine_queue() -> None:
    busy, idle = target("busy"), target("idle")
    busy.state.observe_latency(0.1)
    idle.state.observe_latency(0.3)  # slower per call, but busy's engine holds 20
    busy.state.engine_scraped(15, 5, None, now=time.monotonic())
    assert Latency().pick([busy, idle], CALL) is idle
    busy.state.engine_lost()
    assert Latency().pick([busy, idle], CALL) is busy
