"""What a user sees while a long command runs: a tqdm bar for loops (calibration, QAT epochs) and a status line
for every stage without steps (export, lowering, a device run) that lasts over DELAY_S, with the stage's name,
its elapsed time and an estimate of what is left (the caller's, else how long the same stage took last time).

All of it on stderr, and only where someone watches: EDGEPACK_PROGRESS=auto (default) draws on a terminal only,
``on`` always (CI logs, tests), ``off`` never (the CLI's --quiet sets it). In sweep's build workers nothing is
drawn: each worker sends its events to the main process (``use_sink``), whose one ``SharedDisplay`` draws a
line per worker, so parallel workers never overwrite each other's bars."""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue as queues
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

MODE_ENV = "EDGEPACK_PROGRESS"
DELAY_S = 2.0  # a stage shorter than this shows nothing
TICK_S = 0.5
HISTORY_SIZE = 500  # stage times kept for estimates (about 40 KB)
# the compile's stage keys (frontends.timed) as a user reads them
STAGE_NAMES = {"compile": "compile, all stages", "import_torch": "loading torch", "fold": "folding BatchNorm", "fp32_eval": "fp32 model on the eval images",
               "equalize": "cross-layer equalization", "bias_correction": "bias correction", "quantize": "quantizing (calibration)",
               "qat": "quantization-aware training", "qat_fallback": "QAT's plan vs PTQ's on the calibration images",
               "plan": "building the int8 plan",
               "export": "exporting the QDQ ONNX model", "torch_int8_eval": "PT2E int8 model on the eval images",
               "onnxruntime_eval": "ONNX Runtime on the eval images", "reference": "int8 reference on the eval images",
               "litert_verify": "checking model.tflite under LiteRT", "lower": "lowering for the target"}

_state: dict = {"sink": None, "scope": ""}  # sink: a worker's event callable; scope: what estimates are keyed by


def enabled() -> bool:
    """Whether this process draws progress itself (never in a worker that sends its events on)."""
    mode = os.environ.get(MODE_ENV, "auto")
    if mode == "off" or _state["sink"] is not None:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return mode == "on" or bool(isatty and isatty())


def active() -> bool:
    return enabled() or _state["sink"] is not None


def use_sink(sink) -> None:
    """In a worker process: send events to ``sink`` (a queue's put) instead of drawing; None draws nothing."""
    _state["sink"] = sink
    if sink is None:
        os.environ[MODE_ENV] = "off"


def _send(*event) -> None:
    try:
        _state["sink"]((os.getpid(), *event))
    except (OSError, ValueError):  # the main process went away: its display with it
        pass


def seconds(s: float) -> str:
    s = int(round(s))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


def status(label: str, elapsed: float, estimate: float | None) -> str:
    """``label: 12 s, about 30 s left`` (or how the run compares with the estimate once past it)."""
    text = f"{label}: {seconds(elapsed)}"
    if estimate is None:
        return text
    if elapsed < estimate:
        return f"{text}, about {seconds(estimate - elapsed)} left"
    return f"{text} (estimated {seconds(estimate)})"


# ---------------------------------------------------------------- how long a stage took last time

def _history_file() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "edgepack" / "stage-seconds.json"


def _history() -> dict:
    try:
        data = json.loads(_history_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(key: str, took: float) -> None:
    """Kept per scope (target and model size) and stage; a failed write only loses the next estimate."""
    path = _history_file()
    data = _history()
    data.pop(key, None)  # re-inserted last: the oldest entries go first once there are HISTORY_SIZE
    data[key] = round(took, 2)
    data = dict(list(data.items())[-HISTORY_SIZE:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=0))
        os.replace(tmp, path)
    except OSError:
        pass


class scope:
    """Estimates inside the block are keyed by ``parts`` (e.g. target, alpha, resolution, eval size); one
    scope object can be entered again and again."""

    def __init__(self, *parts):
        self.key, self.before = "/".join(str(p) for p in parts), []

    def __enter__(self) -> "scope":
        self.before.append(_state["scope"])
        _state["scope"] = self.key
        return self

    def __exit__(self, *exc) -> None:
        _state["scope"] = self.before.pop()


def estimate(name: str) -> float | None:
    value = _history().get(f"{_state['scope']}|{name}")
    return value if isinstance(value, (int, float)) else None


# ---------------------------------------------------------------- drawing in this process

_open_lines: list = []  # this process's stage lines, outermost first: each is drawn on the row of its depth


class _StatusLine:
    """One stage's line, drawn by a thread from DELAY_S on and every TICK_S, removed when the stage ends."""

    def __init__(self, label: str, estimate: float | None):
        self.label, self.estimate, self.start = label, estimate, time.monotonic()
        self.row = len(_open_lines)
        _open_lines.append(self)
        self.stop, self.bar = threading.Event(), None
        import tqdm  # noqa: F401  in the calling thread: a fork during an import in the thread would inherit its lock
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        if self.stop.wait(DELAY_S):
            return
        from tqdm import tqdm

        self.bar = tqdm(total=0, bar_format="{desc}", file=sys.stderr, leave=False, dynamic_ncols=True, position=self.row)
        while True:
            self.bar.set_description_str(status(self.label, time.monotonic() - self.start, self.estimate))
            if self.stop.wait(TICK_S):
                break
        self.bar.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        _open_lines.remove(self)


@contextlib.contextmanager
def stage(name: str, estimate_s: float | None = None):
    """A step without steps of its own: its line shows name, elapsed time and what is left (the last run's time
    for the same scope and stage, else ``estimate_s``); the time taken is remembered when it succeeds."""
    if not active():
        yield
        return
    label, start = STAGE_NAMES.get(name, name), time.monotonic()
    guess = estimate(name)
    guess = estimate_s if guess is None else guess
    sent = _state["sink"] is not None
    if sent:
        _send("stage", label, guess, time.time())
    line = None if sent else _StatusLine(label, guess)
    try:
        yield
    finally:
        if sent:
            _send("end")
        else:
            line.close()
    _remember(f"{_state['scope']}|{name}", time.monotonic() - start)


def progress(items: Iterable, desc: str, unit: str = "it", total: int | None = None) -> Iterable:
    """``items`` with a bar (count, rate, ETA) where progress is drawn; in a worker, its steps sent on."""
    if _state["sink"] is not None:
        return _sent_steps(items, desc, total if total is not None else _length(items))
    if not enabled():
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, total=total, leave=False, file=sys.stderr, dynamic_ncols=True,
                position=len(_open_lines))  # below the stage lines it runs in


def _length(items) -> int | None:
    try:
        return len(items)
    except TypeError:
        return None


def _sent_steps(items: Iterable, desc: str, total: int | None):
    last = 0.0
    for n, item in enumerate(items):
        if time.monotonic() - last >= TICK_S:
            last = time.monotonic()
            _send("step", desc, n, total)
        yield item
    _send("end")


@contextlib.contextmanager
def task(name: str):
    """A worker's unit of work (one sweep point): its line is named ``name``; the display counts it done."""
    if _state["sink"] is not None:
        _send("task", name)
    try:
        yield
    finally:
        if _state["sink"] is not None:
            _send("done")


@contextlib.contextmanager
def clear():
    """Print other text (a log line, a note) without tearing a bar: the bars step aside and come back."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is None or not getattr(tqdm.tqdm, "_instances", None):
        yield
        return
    with tqdm.tqdm.external_write_mode(file=sys.stdout):
        yield


# ---------------------------------------------------------------- one display for several worker processes

class SharedDisplay:
    """Drawn by one thread of the main process: a bar counting the finished tasks (with its ETA) and one line
    per worker saying which task it builds, its stage, elapsed time and estimate or step count. ``sink`` is
    what each worker passes to use_sink (None when this process does not draw: the workers draw nothing)."""

    def __init__(self, total: int, workers: int, what: str):
        self.total, self.workers, self.what = total, workers, what
        self.on = enabled()
        self.queue = multiprocessing.get_context().Queue() if self.on else None
        self.sink = self.queue.put if self.on else None
        self.lines: dict[int, dict] = {}
        self.stop, self.thread = threading.Event(), None

    def __enter__(self) -> "SharedDisplay":
        return self

    def start(self) -> None:
        """Start drawing: only once the workers exist, since a fork while this thread imports or holds a lock
        leaves the child that lock held forever (a worker hung in its first import)."""
        if self.on and self.thread is None:
            import tqdm  # noqa: F401  here, in the calling thread: never an import in flight in the thread

            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def __exit__(self, *exc) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()
            self.queue.close()
            self.queue.cancel_join_thread()  # never wait on a worker's unread event at exit

    def _run(self) -> None:
        from tqdm import tqdm

        done = tqdm(total=self.total, desc=self.what, unit="build", file=sys.stderr, leave=False, position=0,
                    dynamic_ncols=True)
        rows = [tqdm(total=0, bar_format="{desc}", file=sys.stderr, leave=False, position=i + 1, dynamic_ncols=True)
                for i in range(self.workers)]
        while not self.stop.is_set():
            deadline = time.monotonic() + TICK_S
            while time.monotonic() < deadline:
                try:
                    self.apply(self.queue.get(timeout=max(0.01, deadline - time.monotonic())), done)
                except queues.Empty:
                    break
            for row, text in zip(rows, self.texts()):
                row.set_description_str(text)
            done.refresh()  # its count and ETA, also when the last build finished between two ticks
        for bar in (*rows, done):
            bar.close()

    def apply(self, event: tuple, done=None) -> None:
        """One worker event: ("task", name), ("stage", label, estimate, start), ("step", desc, n, total),
        ("end") of the innermost stage or loop, ("done") with the task."""
        pid, kind, *args = event
        line = self.lines.setdefault(pid, {"task": "", "stack": []})
        stack = line["stack"]
        if kind == "task":
            line.update(task=args[0], stack=[])
        elif kind == "stage":
            stack.append({"label": args[0], "estimate": args[1], "start": args[2], "step": None})
        elif kind == "step":
            if not (stack and stack[-1]["step"] and stack[-1]["label"] == args[0]):
                stack.append({"label": args[0], "step": None})
            stack[-1]["step"] = (args[1], args[2])
        elif kind == "end" and stack:
            stack.pop()
        elif kind == "done":
            line.update(task="", stack=[])
            if done is not None:
                done.update(1)

    def texts(self) -> list[str]:
        """Each worker's line (its task, then its innermost stage or loop), in the order the workers first spoke."""
        out = []
        for line in list(self.lines.values())[: self.workers]:
            top = line["stack"][-1] if line["stack"] else None
            if not line["task"]:
                out.append("")
            elif top is None:
                out.append(f"{line['task']}: starting")
            elif top["step"]:
                n, total = top["step"]
                out.append(f"{line['task']}: {top['label']} {n}/{total if total is not None else '?'}")
            else:
                out.append(f"{line['task']}: " + status(top["label"], time.time() - top["start"], top["estimate"]))
        return out + [""] * (self.workers - len(out))
