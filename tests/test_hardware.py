"""Precision and threads chosen from the machine: the chooser for machines we are not on, and what a run records."""

from __future__ import annotations

import json
import logging

import pytest

import toolkit
from toolkit import hardware
from toolkit.hardware import Machine, choose_precision

AVX2 = frozenset("fpu sse4_2 avx avx2 fma f16c".split())
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}  # Cascade Lake / Ice Lake: no BF16
SAPPHIRE_RAPIDS = AVX512 | {"avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
ZEN4 = AVX512 | {"avx512_bf16"}
GRAVITON3 = frozenset("fp asimd sve bf16 i8mm".split())


@pytest.fixture(autouse=True)
def the_machine_decides(monkeypatch):
    """These tests check the rule from a machine's facts, which TOOLKIT_PRECISION (set to run the suite as a
    native-bf16 machine would) overrides; a test of that variable sets it itself."""
    monkeypatch.delenv(hardware.PRECISION_ENV, raising=False)


def never_measure(machine):
    raise AssertionError("the flags decide: no measurement expected")


@pytest.mark.parametrize(
    "flags, expected",
    [
        (SAPPHIRE_RAPIDS, "bf16"),
        (ZEN4, "bf16"),
        (GRAVITON3, "bf16"),
        (AVX512, "no"),
        (AVX2, "no"),
    ],
)
def test_cpu_bf16_only_where_the_processor_computes_it(flags, expected):
    choice = choose_precision("auto", Machine(cpu_model="some CPU", cpu_flags=flags), measure=never_measure)
    assert choice.precision == expected
    assert choice.requested == "auto" and "some CPU" in choice.reason
    assert choice.name == {"no": "fp32", "bf16": "bf16"}[expected]


def test_cuda_bf16_where_supported_else_fp16():
    ampere = Machine(accelerator="cuda", gpu_name="A100", gpu_bf16=True, gpu_count=1, cpu_flags=AVX2)
    turing = Machine(accelerator="cuda", gpu_name="T4", gpu_bf16=False, gpu_count=1, cpu_flags=SAPPHIRE_RAPIDS)
    assert choose_precision("auto", ampere, measure=never_measure).precision == "bf16"
    fp16 = choose_precision("auto", turing, measure=never_measure)
    assert fp16.precision == "fp16" and "loss scaling" in fp16.reason


def test_unreadable_flags_and_mps_are_measured():
    calls = []

    def measure(machine):
        calls.append(machine.accelerator)
        return {"bf16": 0.010, "no": 0.030} if machine.accelerator == "mps" else {"bf16": 0.030, "no": 0.010}

    assert choose_precision("auto", Machine(cpu_flags=None), measure=measure).precision == "no"
    mps = choose_precision("auto", Machine(accelerator="mps", gpu_name="Apple GPU"), measure=measure)
    assert mps.precision == "bf16" and "measured" in mps.reason
    assert calls == ["cpu", "mps"]


def test_an_explicit_precision_always_wins():
    for requested in ("no", "bf16", "fp16"):
        choice = choose_precision(requested, Machine(cpu_flags=AVX2), measure=never_measure)
        assert (choice.precision, choice.reason) == (requested, "set in the config")


def test_measurement_is_cached_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv(hardware.CACHE_ENV, str(tmp_path))
    machine = Machine(cpu_model="cache test CPU", cpu_flags=None)
    first = hardware.measured_speeds(machine)
    assert first["no"] > 0 and first["bf16"] > 0
    cached = json.loads((tmp_path / "precision.json").read_text())
    assert len(cached) == 1 and "cache test CPU" in next(iter(cached))
    assert hardware.measured_speeds(machine) == first  # read back, not measured again (timings never repeat exactly)


def test_cpu_flags_and_model_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 avx512f "
        "avx512_bf16 amx_bf16\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    )
    model, flags = hardware.read_cpu(x86)
    assert model == "Intel(R) Xeon(R) Platinum 8480+" and hardware.native_bf16_cpu(flags) is True
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes crc32 atomics\n")
    assert hardware.native_bf16_cpu(hardware.read_cpu(arm)[1]) is False
    assert hardware.read_cpu(tmp_path / "missing")[1] is None


def test_cgroup_quota_limits_the_usable_cpus(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert hardware.cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert hardware.cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert hardware.cgroup_cpu_quota(tmp_path / "v1") == 3.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert hardware.cgroup_cpu_quota(tmp_path / "v1") is None
    assert 1 <= hardware.usable_cpus() <= len(__import__("os").sched_getaffinity(0))


def test_threads_and_workers(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert hardware.torch_threads(local_processes=2, cpus=8) == 4
    assert hardware.torch_threads(local_processes=4, cpus=2) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert hardware.torch_threads(local_processes=2, cpus=8) == 3  # the user's setting wins
    assert hardware.loader_workers(heavy=False, cpus=16) == 0
    assert hardware.loader_workers(heavy=True, cpus=2) == 0
    assert hardware.loader_workers(heavy=True, cpus=16) == 4


def test_auto_run_records_its_choice(tiny_config, caplog):
    """precision: auto on this machine: the choice and why, in the first log line, results.json, the model card,
    metrics.jsonl (which the studio's Live tab reads) and the studio's live record."""
    from toolkit.studio import Studio

    expected = choose_precision("auto", hardware.detect())
    with caplog.at_level(logging.INFO, logger="toolkit"):
        run = toolkit.train(tiny_config, precision="auto", max_steps=6)
    first = next(r.getMessage() for r in caplog.records if r.name.startswith("toolkit"))
    assert first.startswith(f"precision {expected.name} (auto: {expected.reason}")
    results = json.loads((run.dir / "results.json").read_text())
    assert results["precision"] == {"requested": "auto", "chosen": expected.name, "reason": expected.reason}
    assert results["threads"] >= 1 and results["hardware"] == hardware.describe()
    card = (run.dir / "README.md").read_text()
    assert f"precision `{expected.name}` (chosen by `precision: auto`: {expected.reason})" in card
    assert "Hardware: CPU: " in card
    live = Studio(run.dir.parent).catalog.live(run.dir.name)
    assert live["precision"]["chosen"] == expected.name and live["threads"] == results["threads"]
    assert "precision: auto" in (run.dir / "config.yaml").read_text()  # a resume elsewhere chooses again


def test_explicit_bf16_is_honoured(tiny_config):
    run = toolkit.train(tiny_config, precision="bf16", max_steps=4)
    assert run.metrics["precision"] == {"requested": "bf16", "chosen": "bf16", "reason": "set in the config"}


def test_time_budget_says_what_it_buys(tiny_config, caplog):
    with caplog.at_level(logging.INFO, logger="toolkit"):
        run = toolkit.train(tiny_config, max_steps=1_000_000, max_train_minutes=0.05, eval_every=1_000_000)
    budget = run.metrics["budget"]
    assert budget["planned_steps"] == 1_000_000 and 0 < budget["steps_in_budget"] < 250_000
    warning = [r for r in caplog.records if r.levelno == logging.WARNING and "steps/s" in r.getMessage()]
    assert len(warning) == 1
    assert f"covers {budget['steps_in_budget']} of 1000000 steps" in warning[0].getMessage()
    assert run.metrics["steps"] < 1_000_000


def test_budget_rate_is_measured_after_the_first_step_of_this_process():
    """After a resume the clock holds the earlier processes' time, and a first step pays for warm-up: the rate is
    measured from the end of this process's first step."""
    from types import SimpleNamespace

    from toolkit.config import Config
    from toolkit.engine import tell_budget

    t = SimpleNamespace(
        cfg=Config(max_train_minutes=10.0),
        counters={"step": 101, "train_seconds": 405.0},  # resumed at step 100 after 400 s; a 5 s first step
        machine={"precision": {"chosen": "fp32"}},
        total_steps=1000,
        rate_from=None,
        budget_told=False,
    )
    tell_budget(t)
    assert not t.budget_told
    t.counters.update(step=131, train_seconds=435.0)  # 30 steps in 30 s: 1 step/s
    tell_budget(t)
    assert t.budget_told
    assert t.counters["budget"]["steps_per_second"] == 1.0
    assert t.counters["budget"]["steps_in_budget"] == 131 + (600 - 435)
