"""The CPU's vector peak: the most arithmetic its cores can issue per second, from the instruction sets
``/proc/cpuinfo`` lists, its clock and the cores this process may run on (docs/performance.md,
"The ceiling").

Assumptions, each chosen so that the figure is never below what the hardware does:

- fp32 FLOP per cycle and core: Intel with AVX-512F, 2 FMA ports of 512 bits (64; Xeons with one
  512-bit port reach half); AMD with AVX-512F, family 0x19 (Zen 4) double-pumps 512-bit work on 2
  FMA pipes of 256 bits (32), later families have 512-bit pipes (64); AVX2 with FMA, 2 FMA ports of
  256 bits (32); otherwise 2 ports of 256-bit multiplies or adds (16).
- int8 (operations per cycle and core): 4 times fp32 (VNNI's ``vpdpbusd`` and AVX2's ``vpmaddubsw``
  both do 4 int8 multiply-adds per 32-bit lane), 2048 with AMX-INT8.
- bf16 and fp16: 2 times fp32 with AVX512_BF16 (``vdpbf16ps``) or AVX512_FP16, 1024 with AMX-BF16,
  else fp32's rate (converted and computed in fp32).
- The clock is the highest maximum a core reports (cpufreq's ``cpuinfo_max_freq``, else
  ``lscpu``'s "CPU max MHz"), else the highest "cpu MHz" in ``/proc/cpuinfo``: in a VM that is
  often the base clock, below what a core boosts to, which is why the ceiling also takes the best
  measured rate (runs/bench.py).
- Every CPU this process may run on counts as a core with its own vector units (a vCPU that is a
  hyperthread shares them: counted twice, the figure stays a bound).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass

_AMD_ZEN4_FAMILY = 0x19


@dataclass(frozen=True)
class CpuPeak:
    """A CPU's peak and what it was computed from."""

    gflops: float  # at ``precision``; int8: GOP/s
    precision: str
    per_cycle: int  # operations per cycle and core at ``precision``
    mhz: float
    clock: str  # where the clock came from
    cores: int
    units: str  # the vector units assumed

    def to_dict(self) -> dict:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}


def fp32_per_cycle(flags: set[str], vendor: str, family: int) -> tuple[int, str]:
    """fp32 FLOP per cycle and core (an FMA counts two), and the units assumed."""
    if "avx512f" in flags:
        if vendor == "AuthenticAMD" and family <= _AMD_ZEN4_FAMILY:
            return 32, "AVX-512 double-pumped on 2 FMA pipes of 256 bits (AMD Zen 4)"
        return 64, "AVX-512: 2 FMA ports of 512 bits"
    if {"avx2", "fma"} <= flags:
        return 32, "AVX2: 2 FMA ports of 256 bits"
    return 16, "no FMA: 2 ports of 256-bit multiplies or adds"


def per_cycle(precision: str, flags: set[str], vendor: str, family: int) -> tuple[int, str]:
    """Operations per cycle and core at ``precision`` (fp32, fp16, bf16, int8)."""
    fp32, units = fp32_per_cycle(flags, vendor, family)
    if precision == "int8":
        if "amx_int8" in flags:
            return 2048, "AMX-INT8 tiles"
        return 4 * fp32, units + ", 4 int8 multiply-adds per 32-bit lane"
    if precision in ("bf16", "fp16"):
        if precision == "bf16" and "amx_bf16" in flags:
            return 1024, "AMX-BF16 tiles"
        if {"bf16": "avx512_bf16", "fp16": "avx512_fp16"}[precision] in flags:
            return 2 * fp32, units + f", 2 {precision} multiply-adds per 32-bit lane"
    return fp32, units


def parse_cpuinfo(text: str) -> tuple[set[str], str, int, float]:
    """Flags, vendor, family and the highest "cpu MHz" of a ``/proc/cpuinfo`` text."""

    def field(name: str) -> list[str]:
        return re.findall(rf"^{name}\s*:\s*(.*)$", text, flags=re.MULTILINE)

    flags = set(" ".join(field("flags")).split())
    vendor = (field("vendor_id") or [""])[0].strip()
    family = int((field("cpu family") or ["0"])[0])
    mhz = max((float(v) for v in field("cpu MHz")), default=0.0)
    return flags, vendor, family, mhz


def cpu_peak(precision: str, cpuinfo: str, *, max_mhz: float | None = None, cores: int | None = None) -> CpuPeak | None:
    """The peak at ``precision`` of the CPU ``cpuinfo`` describes (None where it names no clock).
    ``max_mhz``: the cores' maximum clock where known (:func:`max_clock_mhz`); ``cores``: how many
    the work may run on (this process's CPUs by default)."""
    flags, vendor, family, cpuinfo_mhz = parse_cpuinfo(cpuinfo)
    mhz, clock = (max_mhz, "maximum clock") if max_mhz else (cpuinfo_mhz, "/proc/cpuinfo cpu MHz")
    if not mhz:
        return None
    cores = cores or len(os.sched_getaffinity(0))
    ops, units = per_cycle(precision, flags, vendor, family)
    return CpuPeak(ops * mhz * cores / 1e3, precision, ops, mhz, clock, cores, units)


def max_clock_mhz() -> float | None:
    """The highest maximum clock any core reports: cpufreq, else ``lscpu``; None where neither says."""
    khz = []
    for path in glob.glob("/sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq"):
        try:
            khz.append(int(open(path).read()))
        except (OSError, ValueError):
            continue
    if khz:
        return max(khz) / 1e3
    lscpu = shutil.which("lscpu")
    if lscpu is None:
        return None
    try:
        out = subprocess.run([lscpu], capture_output=True, text=True, timeout=10, env={"LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"^CPU max MHz:\s*([\d.]+)", out, flags=re.MULTILINE)
    return float(found.group(1)) if found else None


def this_cpu_peak(precision: str) -> CpuPeak | None:
    """The peak of the CPU this runs on (None off Linux or where no clock is given)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return None
    return cpu_peak(precision, text, max_mhz=max_clock_mhz())
