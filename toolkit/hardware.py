"""What this machine can do, read from the machine: the CPUs the process may use, whether the processor computes
bf16 natively, the GPU, and the precision and thread counts that follow from them.

Nothing here imports torch at module level (the CLI's error paths stay fast); the functions that need it import it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import ToolkitError

log = logging.getLogger(__name__)

# x86 flags (Linux /proc/cpuinfo names) that mean bf16 matrix arithmetic runs in hardware: AMX tiles (Sapphire
# Rapids and later) or AVX512-BF16 dot products (Cooper Lake, Zen 4 and later). Without them PyTorch emulates
# bf16 by converting to fp32 and back, about 3x slower than plain fp32 on the MiniLM training step.
NATIVE_BF16_X86 = ("amx_bf16", "avx512_bf16")
# Arm: the BF16 extension (Neoverse V1/N2, Graviton 3 and later, Apple M2 and later).
NATIVE_BF16_ARM = ("bf16",)
CACHE_ENV = "TOOLKIT_CACHE_DIR"
# What `precision: auto` means on this machine when set (no/fp32, bf16, fp16): e.g. bf16 everywhere in a test run, to
# check on a CPU that only emulates bf16 what a machine with native bf16 does.
PRECISION_ENV = "TOOLKIT_PRECISION"
# Every spelling the config, the environment and the command line take -> its name (accelerate says "no" for fp32).
PRECISION_NAMES = {"no": "fp32", "fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class Machine:
    """The facts the precision and thread choices are made from; tests build these for machines they are not on."""

    cpu_model: str = "unknown CPU"
    cpu_flags: Optional[frozenset] = None  # None: the flags could not be read (not Linux)
    usable_cpus: int = 1
    accelerator: str = "cpu"  # cpu, cuda, mps, xpu
    gpu_name: Optional[str] = None
    gpu_bf16: bool = False  # the GPU computes bf16 (CUDA compute capability 8.0 and later)
    gpu_count: int = 0
    architecture: str = field(default_factory=platform.machine)


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, lowered by a cgroup CPU quota (containers,
    `docker --cpus`, Kubernetes limits), never os.cpu_count(), which counts every CPU of the host."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> Optional[float]:
    """CPUs allowed by the cgroup quota (v2 cpu.max or v1 cpu.cfs_quota_us), or None when there is no quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
            return None if quota <= 0 or period <= 0 else quota / period
        except (OSError, ValueError):
            continue
    return None


def read_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, Optional[frozenset]]:
    """The CPU's model name and its feature flags (x86 'flags', Arm 'Features'); flags are None off Linux."""
    fallback = platform.processor() or platform.machine() or "unknown CPU"
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return _sysctl_cpu_model() or fallback, None
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "Hardware") and value and model is None:
            model = value
        elif key in ("flags", "Features") and flags is None:
            flags = frozenset(value.split())
    return model or fallback, flags


def _sysctl_cpu_model() -> Optional[str]:
    if platform.system() != "Darwin":
        return None
    import subprocess

    try:
        return (
            subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def native_bf16_cpu(flags: Optional[frozenset]) -> Optional[bool]:
    """True/False from the CPU's flags; None when they could not be read."""
    if flags is None:
        return None
    return any(f in flags for f in NATIVE_BF16_X86 + NATIVE_BF16_ARM)


def detect(torch_module=None) -> Machine:
    """This machine. Reads the GPU through torch when torch is given or already imported."""
    cpu_model, flags = read_cpu()
    machine = Machine(cpu_model=cpu_model, cpu_flags=flags, usable_cpus=usable_cpus())
    torch = torch_module or sys.modules.get("torch")
    if torch is None:
        return machine
    if torch.cuda.is_available():
        machine.accelerator, machine.gpu_count = "cuda", torch.cuda.device_count()
        machine.gpu_name = torch.cuda.get_device_name(0)
        machine.gpu_bf16 = bool(torch.cuda.is_bf16_supported())
    elif getattr(torch, "xpu", None) is not None and torch.xpu.is_available():
        machine.accelerator, machine.gpu_count, machine.gpu_bf16 = "xpu", torch.xpu.device_count(), True
        machine.gpu_name = torch.xpu.get_device_name(0)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        machine.accelerator, machine.gpu_count, machine.gpu_name = "mps", 1, "Apple GPU (MPS)"
    return machine


@dataclass
class PrecisionChoice:
    precision: str  # what accelerate gets: no, fp16, bf16
    reason: str
    requested: str = "auto"

    @property
    def name(self) -> str:
        """fp32, fp16 or bf16 (accelerate calls fp32 "no")."""
        return "fp32" if self.precision == "no" else self.precision

    def as_dict(self) -> dict:
        return {"requested": self.requested, "chosen": self.name, "reason": self.reason}


def choose_precision(requested: str, machine: Machine, measure=None) -> PrecisionChoice:
    """``auto`` becomes the fastest precision that trains well on ``machine``; an explicit value always wins.

    ``measure``: (device) -> {"bf16": s, "no": s}, timing a few steps each way, used where the hardware cannot be
    read (CPU flags unreadable, Apple MPS); default :func:`measured_speeds`, cached per machine."""
    if requested != "auto":
        return PrecisionChoice(requested, "set in the config", requested)
    forced = os.environ.get(PRECISION_ENV, "").strip()
    if forced:
        return PrecisionChoice(_forced_precision(forced), f"{PRECISION_ENV}={forced} in the environment")
    if machine.accelerator == "cuda":
        if machine.gpu_bf16:
            return PrecisionChoice("bf16", f"{machine.gpu_name} computes bf16")
        return PrecisionChoice("fp16", f"{machine.gpu_name} has no bf16: fp16 with loss scaling")
    if machine.accelerator == "xpu":
        return PrecisionChoice("bf16", f"{machine.gpu_name} computes bf16")
    if machine.accelerator == "cpu":
        native = native_bf16_cpu(machine.cpu_flags)
        if native is True:
            found = sorted(f for f in NATIVE_BF16_X86 + NATIVE_BF16_ARM if f in machine.cpu_flags)
            return PrecisionChoice("bf16", f"{machine.cpu_model} computes bf16 natively ({', '.join(found)})")
        if native is False:
            return PrecisionChoice(
                "no", f"{machine.cpu_model} has no native bf16 (no AMX or AVX512-BF16): fp32 is faster there"
            )
    speeds = (measure or measured_speeds)(machine)
    faster = "bf16" if speeds["bf16"] < 0.9 * speeds["no"] else "no"
    return PrecisionChoice(
        faster,
        f"measured on {machine.gpu_name or machine.cpu_model}: a step took "
        f"{speeds['bf16'] * 1e3:.1f} ms in bf16, {speeds['no'] * 1e3:.1f} ms in fp32",
    )


def _forced_precision(value: str) -> str:
    """TOOLKIT_PRECISION's value in accelerate's spelling (no, bf16, fp16)."""
    if value not in PRECISION_NAMES:
        raise ToolkitError(f"{PRECISION_ENV}={value} is not a precision: set it to fp32, bf16 or fp16, or unset it.")
    return "no" if PRECISION_NAMES[value] == "fp32" else value


def cache_dir() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "toolkit"
    )
    return Path(base)


def measured_speeds(machine: Machine) -> dict:
    """Seconds per forward+backward step of a small transformer-shaped MLP, bf16 autocast against fp32, on the
    machine's device; cached in ~/.cache/toolkit/precision.json per processor, device and torch version."""
    import torch

    key = f"{machine.accelerator}|{machine.gpu_name or machine.cpu_model}|{torch.__version__}"
    path = cache_dir() / "precision.json"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        return cached[key]
    device = torch.device("mps" if machine.accelerator == "mps" else machine.accelerator)
    speeds = {name: _time_step(torch, device, dtype) for name, dtype in (("no", None), ("bf16", torch.bfloat16))}
    cached[key] = speeds
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=2))
        tmp.replace(path)
    except OSError as err:
        log.debug("could not cache the precision measurement: %s", err)
    return speeds


def _time_step(torch, device, dtype, repeats: int = 5) -> float:
    layer = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384)).to(device)
    x = torch.randn(32 * 48, 384, device=device)
    times = []
    for _ in range(repeats + 1):
        tic = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = layer(x).float().square().mean()
        loss.backward()
        if device.type != "cpu":
            getattr(torch, device.type).synchronize()
        times.append(time.perf_counter() - tic)
    return sorted(times[1:])[len(times[1:]) // 2]


def torch_threads(local_processes: int = 1, cpus: Optional[int] = None) -> int:
    """Intra-op threads for each of ``local_processes`` training processes on this machine: the usable CPUs shared
    out, unless OMP_NUM_THREADS says otherwise (the user's setting wins)."""
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    return max(1, (cpus or usable_cpus()) // max(1, local_processes))


def loader_workers(heavy: bool, cpus: Optional[int] = None) -> int:
    """DataLoader workers: none for data already tokenized (a worker's start-up and pickling cost more than
    collating), and for decoding and augmenting images up to 4, leaving one CPU for the model, none on 2 CPUs or
    fewer (the workers would take the model's cores)."""
    cpus = cpus or usable_cpus()
    if not heavy or cpus <= 2:
        return 0
    return min(4, cpus - 1)


def describe(machine: Optional[Machine] = None) -> str:
    """One line naming the hardware, printed at the top of every benchmark and written with every run."""
    machine = machine or detect()
    flags = machine.cpu_flags
    if flags is None:
        isa = "flags unknown"
    else:
        found = [
            f
            for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "bf16", "asimd")
            if f in flags
        ]
        isa = ", ".join(found) or "no AVX2/AVX-512/AMX"
        isa += "; native bf16" if native_bf16_cpu(flags) else "; no native bf16"
    line = f"CPU: {machine.cpu_model} ({machine.architecture}; {isa}), {machine.usable_cpus} usable CPUs"
    if machine.accelerator != "cpu":
        line += f"; GPU: {machine.gpu_count} x {machine.gpu_name}" + (" (bf16)" if machine.gpu_bf16 else "")
    else:
        line += "; no GPU"
    return line


def benchmark_header() -> str:
    """The lines every benchmark prints first: the hardware, and the library versions its figures depend on."""
    import importlib.metadata as metadata

    try:
        import torch
    except ImportError:
        torch = None
    versions = []
    for package in ("torch", "transformers", "onnxruntime"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    machine = detect(torch)
    return f"machine: {describe(machine)}\nsoftware: Python {platform.python_version()}, {', '.join(versions)}"
