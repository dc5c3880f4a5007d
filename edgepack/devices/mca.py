"""Estimated cycles per inference on a Cortex-A board: llvm-mca over the hot blocks qemu executed.

The QEMU plugin (blocks=PATH, see edgepack.devices.qemu) records every translation block's guest bytes and
how often it ran. The blocks covering >= 99% of the executed instructions are disassembled (llvm-mc) and
each becomes one llvm-mca code region for the board's core (``-mcpu``, the target file's [board] mca_cpu):
one llvm-mc and one llvm-mca call for all of them. A block's cost is llvm-mca's "Total Cycles" over
ITERATIONS back-to-back iterations divided by ITERATIONS: unlike "Block RThroughput" (a resource bound
that ignores dependencies) it includes the block's own dependency chains and latencies, and over 100
iterations the pipeline fill of the first one weighs 1%. The estimate is sum(executions x cycles per
block), scaled from the covered share of instructions up to 100%: the cycles of an L1-resident run
(llvm-mca models no cache misses, no branch mispredictions, no block-to-block effects), an estimate.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import DeviceError, ToolchainError

ITERATIONS = 100
COVERAGE = 0.99  # the hot blocks: the most executed ones until they hold this share of the instructions
INSTALL = "apt-get install -y llvm (or run scripts/setup.sh)"
TIMEOUT_S = 600.0
Blocks = dict  # (start address, guest bytes) -> executions


def missing() -> str | None:
    """One line saying how to install llvm-mca / llvm-mc when either is missing, else None."""
    gone = [t for t in ("llvm-mca", "llvm-mc") if shutil.which(t) is None]
    return f"{' and '.join(gone)} not installed: {INSTALL}" if gone else None


def read_blocks(path: Path) -> Blocks | None:
    """The plugin's blocks file as {(address, bytes): executions}; a block translated twice is added up.
    None when the file is missing (the program died before exiting)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    out: Blocks = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            key = (int(parts[0], 16), bytes.fromhex(parts[2]))
            out[key] = out.get(key, 0) + int(parts[1])
    return out


def difference(more: Blocks, fewer: Blocks, runs: int) -> Blocks:
    """Per-inference executions: (``more`` - ``fewer``) / ``runs``, e.g. a 3-image run minus a 1-image run over 2,
    so start-up and the first call's set-up cancel out. Blocks are matched by their bytes, not their address:
    qemu-user maps the model library at another address in each run (and the same code costs the same cycles)."""
    def by_code(blocks: Blocks) -> dict:
        out: dict = {}
        for (address, code), n in blocks.items():
            first, count = out.get(code, (address, 0))
            out[code] = (min(first, address), count + n)
        return out

    fewer_code, out = by_code(fewer), {}
    for code, (address, n) in by_code(more).items():
        extra = (n - fewer_code.get(code, (0, 0))[1]) / runs
        if extra != 0:
            out[(address, code)] = extra
    return out


def hot(blocks: Blocks, coverage: float = COVERAGE) -> list:
    """The most executed blocks (by instructions: executions x length) until they hold ``coverage`` of them."""
    ranked = sorted(blocks.items(), key=lambda kv: (-kv[1] * len(kv[0][1]), kv[0]))  # ties by address: reproducible
    total, covered, out = sum(n * len(code) for (_, code), n in ranked), 0, []
    for item in ranked:
        if covered >= coverage * total:
            break
        out.append(item)
        covered += item[1] * len(item[0][1])
    return out


def _run(cmd: list, text: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"{cmd[0]} did not finish within {TIMEOUT_S:g} s on the hot blocks: "
                          "check the llvm installation") from None
    except FileNotFoundError:
        raise ToolchainError(f"{cmd[0]} is not installed: {INSTALL}") from None


ENCODING = re.compile(r"^\s*(\S.*?)\s*//\s*encoding:\s*\[([^\]]*)\]")


def disassemble(codes: list[bytes]) -> list[list[str]]:
    """Each block's instructions as assembly text, from one llvm-mc call. The encodings llvm-mc prints map
    its lines back to the blocks' words; a word it cannot decode is left out of its block."""
    words = [(i, code[j:j + 4]) for i, code in enumerate(codes) for j in range(0, len(code) - 3, 4)]
    text = "\n".join(" ".join(f"0x{b:02x}" for b in word) for _, word in words)
    r = _run(["llvm-mc", "--disassemble", "-triple=aarch64", "-mattr=+dotprod,+fullfp16,+i8mm", "-show-encoding"],
             text)
    out: list[list[str]] = [[] for _ in codes]
    at = 0
    for line in r.stdout.splitlines():
        m = ENCODING.match(line)
        if not m:
            continue
        encoding = bytes(int(x, 16) for x in m.group(2).split(","))
        while at < len(words) and words[at][1] != encoding:
            at += 1  # a word llvm-mc skipped (invalid encoding)
        if at == len(words):
            break
        out[words[at][0]].append(m.group(1))
        at += 1
    return out


REGION = re.compile(r"^\[(\d+)\] Code Region - b(\d+)\s*$")
TOTAL = re.compile(r"^Total Cycles:\s+(\d+)")


def cycles_per_iteration(blocks: list[list[str]], cpu: str) -> list[float | None]:
    """llvm-mca's Total Cycles / ITERATIONS for each block (one code region each, one llvm-mca call);
    None for an empty block. A line llvm-mca's assembler refuses is dropped and the call repeated."""
    lines = [list(b) for b in blocks]
    for _ in range(20):
        source = "".join(f"# LLVM-MCA-BEGIN b{i}\n" + "".join(f"\t{t}\n" for t in b) + f"# LLVM-MCA-END b{i}\n"
                         for i, b in enumerate(lines) if b)
        if not source:
            return [None] * len(blocks)
        r = _run(["llvm-mca", "-mtriple=aarch64", f"-mcpu={cpu}", f"-iterations={ITERATIONS}", "-resource-pressure=0",
                  "-instruction-info=0"], source)
        if r.returncode == 0:
            return _parse_regions(r.stdout, len(blocks))
        bad = _refused(r.stderr, source, lines)
        if not bad:
            first = (r.stderr.strip().splitlines() or ["no output"])[0]
            raise DeviceError(f"llvm-mca -mcpu={cpu} failed on the hot blocks ({first[:200]}): check that "
                              "`llvm-mca -mcpu=help` lists it, or the [board] mca_cpu of the target file")
    raise DeviceError("llvm-mca refused too many hot-block instructions: check the llvm installation")


def _refused(stderr: str, source: str, lines: list[list[str]]) -> bool:
    """Drop the source lines llvm-mca's errors point at (``<stdin>:LINE:COL: error``) from ``lines``."""
    numbers = {int(m) for m in re.findall(r"<stdin>:(\d+):\d+: error", stderr)}
    if not numbers:
        return False
    region, dropped = None, False
    for n, line in enumerate(source.splitlines(), 1):
        if line.startswith("# LLVM-MCA-BEGIN b"):
            region, k = int(line.rsplit("b", 1)[1]), 0
        elif line.startswith("\t"):
            if n in numbers:
                del lines[region][k]
                dropped = True
            else:
                k += 1
    return dropped


def _parse_regions(report: str, n: int) -> list[float | None]:
    out: list[float | None] = [None] * n
    region = None
    for line in report.splitlines():
        m = REGION.match(line)
        if m:
            region = int(m.group(2))
        t = TOTAL.match(line)
        if t and region is not None:
            out[region] = int(t.group(1)) / ITERATIONS
    return out


@dataclass(frozen=True)
class Estimate:
    """Estimated cycles per inference and how they were obtained."""
    cycles: float
    cpu: str
    hot_blocks: int
    covered_share: float  # of the executed instructions, in the blocks llvm-mca costed

    def to_cost(self) -> dict:
        """Flat figures for bench's cost. The regression gate holds every number but a "share" to its cost
        tolerance: the cycles are held, the block count goes into the basis text."""
        return {"estimated_cycles_per_inference": round(self.cycles), "mca_cpu": self.cpu,
                "mca_covered_share": round(self.covered_share, 4),
                "mca_basis": f"the {self.hot_blocks:,} hottest blocks ({self.covered_share:.2%} of the instructions), "
                             f"Total Cycles / {ITERATIONS} iterations each, scaled to 100%"}


def estimate(blocks: Blocks, cpu: str, coverage: float = COVERAGE) -> Estimate:
    """Cycles for ``blocks`` (executions per inference) on ``cpu``: the hot blocks through llvm-mca, scaled
    from the instructions they cover up to all of them."""
    blocks = {key: n for key, n in blocks.items() if n > 0}  # a block run less often in the longer run: noise
    total = sum(n * len(code) for (_, code), n in blocks.items())
    if total == 0:
        raise DeviceError("the QEMU plugin recorded no executed blocks: rebuild it with "
                          "`python3 -m edgepack.devices.qemu build`")
    chosen = hot(blocks, coverage)
    texts = disassemble([code for (_, code), _ in chosen])
    cycles = cycles_per_iteration(texts, cpu)
    costed = [(n, code, c) for ((_, code), n), c in zip(chosen, cycles) if c is not None]
    covered = sum(n * len(code) for n, code, _ in costed)
    if covered == 0:
        raise DeviceError(f"llvm-mca -mcpu={cpu} costed none of the hot blocks: check the llvm installation")
    raw = sum(n * c for n, _, c in costed)
    return Estimate(cycles=raw * total / covered, cpu=cpu, hot_blocks=len(costed), covered_share=covered / total)


def cost_figures(fewer: Blocks | None, more: Blocks | None, runs: int, cpu: str, instructions: float | None = None) -> dict:
    """bench's cost figures from two block profiles (``runs`` more inferences in ``more``): the estimate's,
    or, when llvm-mca is missing, a note saying how to install it (the fixed cycles-per-instruction estimate stays).
    ``instructions``: the plugin's exact count per inference, which the blocks must add up to."""
    gone = missing()
    if gone:
        return {"mca_note": f"no llvm-mca estimate: {gone}; the estimated time uses the target's fixed cycles per "
                            "instruction"}
    if fewer is None or more is None:
        raise DeviceError("the QEMU plugin wrote no blocks file: rebuild it with `python3 -m edgepack.devices.qemu build`")
    blocks = difference(more, fewer, runs)
    counted = sum(n * len(code) for (_, code), n in blocks.items()) / 4
    if instructions and abs(counted - instructions) > 0.01 * instructions:
        raise DeviceError(f"the QEMU plugin's blocks add up to {counted:,.0f} instructions per inference, its count to "
                          f"{instructions:,.0f}: rebuild it with `python3 -m edgepack.devices.qemu build`")
    return estimate(blocks, cpu).to_cost()
