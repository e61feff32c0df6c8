"""The generic cell loop: runs one cell group through a backend and emits events.

Statuses: a sample is `ok`, `length_mismatch` (produced a different number of tokens than
asked) or `suspicious_fast` (TR147's rule: a decode call under 1 ms on a GPU). A cell is `ok`,
`degraded` (reasons), `crash` (the exception's message; no sample of the failing repetition
is written) or `skipped` (reason).

Under the group option `on_error: continue` (a cell field) a failing call is an `error` sample
(latency null, its message in `error`) and the cell keeps calling until its repetitions are
done; the cell is `degraded` with "k of N timed calls failed" (`crash` when every timed call
failed). A fatal device error (illegal memory access, device-side assert) in a warmup or timed
call is an `error` sample with `fatal: true`; the CUDA context is then poisoned, so the harness
emits `cell_suspended` (the next repetition and the tallies so far) instead of `cell_finished`
and the process exits 3. The runner's next process gets the tallies as the group input's
`continue_from[cell id]`: it emits `cell_started` with `continues: true`, runs the compile call
and the warmups again (same rep numbers 0..warmup-1: a fresh process is cold), then the timed
calls from the suspended repetition on; its `cell_finished` counts the calls of every process
and names each continuation in `evidence.continued`. A fatal error in the compile call, or
without `on_error: continue`, ends the cell `crash` and the process, as any fatal error.

Adaptive repetitions (cell fields `until_ci_pct`, `max_reps`; `kit run --until-ci`): after
its repetitions a cell keeps calling until its median's 95% CI half-width is under the percent
asked, or `max_reps` timed calls were made; `evidence.adaptive` records the outcome.

Test hook (tests only, documented in docs/FORMATS.md): the environment variable
`KIT_TEST_CALL_HOOK` holds JSON `{"fail": [reps], "fatal": [reps], "slow": [reps], "slow_ms": N,
"mode": M, "group": G}`; the listed repetitions (warmups count from 0) of cells of mode M and
group G (any when absent) raise `RuntimeError("test hook: ...")` inside the timed call (for
`fatal`, with the text of a CUDA illegal memory access), or sleep `slow_ms` more inside it.
A continuing process reruns the warmups with their first rep numbers (a hooked warmup fires in
every process: tests put `fatal` reps at or past `warmup`); its timed reps go on from the
suspended one, so a fatal timed rep fires once.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from typing import Any

from kit.harness.backends.base import Backend
from kit.harness.events import Emitter
from kit.harness.timing import Timed, gc_paused

SUSPICIOUS_DECODE_MS = 1.0
DECODE_MODES = ("kv_decode", "e2e_kv", "generate")


DEVICE_FATAL_MARKERS = ("illegal memory access", "device-side assert", "unspecified launch failure")
TEST_HOOK_ENV = "KIT_TEST_CALL_HOOK"


def hook_settings(cell: dict[str, Any]) -> dict[str, Any]:
    """The test hook's settings for this cell (empty when unset or for another mode)."""
    text = os.environ.get(TEST_HOOK_ENV)
    if not text:
        return {}
    hook = json.loads(text)
    if hook.get("mode") not in (None, cell["mode"]) or hook.get("group") not in (
        None,
        cell["group"],
    ):
        return {}
    return dict(hook)


def hooked_run(run: Any, rep: int, hook: dict[str, Any]) -> Any:
    """`run` wrapped by the test hook for repetition `rep` (the same `run` when not hooked)."""
    if rep in hook.get("fail", ()) or rep in hook.get("fatal", ()):
        fatal = rep in hook.get("fatal", ())

        def failing(state: Any) -> Any:
            what = "CUDA error: an illegal memory access was encountered" if fatal else "fails"
            raise RuntimeError(f"test hook: {TEST_HOOK_ENV} {what} at repetition {rep}")

        return failing
    if rep in hook.get("slow", ()):

        def slow(state: Any) -> Any:
            time.sleep(float(hook.get("slow_ms", 20)) / 1000.0)
            return run(state)

        return slow
    return run


def device_fatal(err: BaseException) -> bool:
    """An error after which the CUDA context is poisoned: the process must end."""
    text = f"{type(err).__name__}: {err}"
    return any(marker in text for marker in DEVICE_FATAL_MARKERS)


def median_ci_half_width_pct(
    values: list[float], resamples: int = 1000, seed: int = 42
) -> float | None:
    """Half the width of the 95% percentile-bootstrap CI of the median, in percent of the
    median (None with fewer than 2 values or a zero median)."""
    if len(values) < 2:
        return None
    import numpy as np

    arr = np.asarray(values, dtype=np.float64)
    median = float(np.median(arr))
    if median == 0.0:
        return None
    rng = np.random.default_rng(seed)
    meds = np.median(arr[rng.integers(0, arr.size, size=(resamples, arr.size))], axis=1)
    low, high = np.percentile(meds, [2.5, 97.5])
    return float((high - low) / 2.0 / abs(median) * 100.0)


class _Adaptive:
    """`--until-ci PCT --max-reps N`: whether a cell needs one more timed call."""

    def __init__(self, cell: dict[str, Any]) -> None:
        pct = cell.get("until_ci_pct")
        self.pct = float(pct) if pct is not None else None
        self.max_reps = int(cell.get("max_reps") or cell["repetitions"])
        self.half: float | None = None

    def more(self, timed: int, ok_ms: list[float]) -> bool:
        if self.pct is None or timed >= self.max_reps:
            return False
        self.half = median_ci_half_width_pct(ok_ms)
        return self.half is None or self.half > self.pct

    def record(self, ok_ms: list[float]) -> dict[str, Any]:
        half = median_ci_half_width_pct(ok_ms)
        return {
            "until_ci_pct": self.pct, "max_reps": self.max_reps, "timed_ok": len(ok_ms),
            "ci_half_width_pct": half, "reached": half is not None and half <= (self.pct or 0),
        }  # fmt: skip


class FatalCellError(Exception):
    """The process must end after this cell (the runner continues in a fresh process)."""


class CellSuspended(Exception):
    """A fatal device error under on_error: continue: `cell_suspended` was emitted, the
    process must end, and the runner's next process continues the cell."""


def expected_tokens(cell: dict[str, Any]) -> int:
    return 1 if cell["mode"] == "prefill" else int(cell["max_new_tokens"])


def _concurrent(backend: Backend, call: Any, concurrency: int) -> Timed:
    """Run `concurrency` identical calls at once (threads); the slower one is recorded."""
    states = [call.setup() for _ in range(concurrency)]
    results: list[Timed | BaseException | None] = [None] * concurrency

    def worker(i: int) -> None:
        try:
            results[i] = backend.timer.measure(call.run, states[i])
        except BaseException as err:  # re-raised in the caller's thread
            results[i] = err

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    timed = [r for r in results if isinstance(r, Timed)]
    return max(timed, key=lambda t: t.latency_ms)


def first_call(
    backend: Backend, cell: dict[str, Any], prompt_ids: list[list[int]], hooked: bool = False
) -> tuple[Timed, dict[str, Any], Exception | None]:
    """The cell's first call after torch.compile (repetition -1), which compiles its shapes:
    (its timing, the compiler counters' delta, the error it raised or None). `hooked`: the
    test hook may fail it (precompile's calls only: separate, or ahead before parking). The call's construction
    and setup raise as they are; an error of the call itself is returned, with its message
    in the delta's `error`."""
    before = backend.compile_counters()
    call = backend.call(cell, prompt_ids, -1)
    hook = hook_settings(cell) if hooked else {}
    run = hooked_run(call.run, -1, hook) if hook else call.run
    state = call.setup()
    t0_ns = time.monotonic_ns()
    error: Exception | None = None
    try:
        timed = backend.timer.measure(run, state)
    except Exception as err:
        now = time.monotonic_ns()
        timed, error = Timed((now - t0_ns) / 1e6, None, t0_ns, now, None), err
    after = backend.compile_counters()
    delta: dict[str, Any] = {
        k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)
    }
    if error is not None:
        delta["error"] = error_text(error)
    return timed, delta, error


def error_text(err: BaseException, limit: int = 300) -> str:
    """`Type: message`, stripped and cut to `limit` characters (a phase's `error`)."""
    return f"{type(err).__name__}: {err}".strip()[:limit]


def compile_call(
    backend: Backend,
    cell: dict[str, Any],
    prompt_ids: list[list[int]],
    out: Emitter,
    hooked: bool = False,
) -> dict[str, Any]:
    """The first call after torch.compile for this cell's shapes: the compile phase, reported
    on its own (a `phase` event), never a warmup sample. Returns the compiler counters' delta;
    raises what the call raised unless the cell keeps going (on_error: continue, not fatal).
    `hooked`: a call made ahead, before parking (the test hook may fail it, as first_call)."""
    timed, delta, error = first_call(backend, cell, prompt_ids, hooked=hooked)
    if error is not None:
        # Under on_error: continue the compile call's error is logged and the timed calls
        # go on (each failing one is an error sample); otherwise the cell crashes.
        if cell.get("on_error", "stop") != "continue" or device_fatal(error):
            raise error
        out.log("".join(traceback.format_exception(error)), level="error")
        recover(backend)
    out.emit(
        "phase",
        phase="compile",
        cell=cell["id"],
        t0_ns=timed.t0_ns,
        t1_ns=timed.t1_ns,
        ms=timed.latency_ms,
        detail=delta,
    )
    return delta


def run_cell(
    backend: Backend,
    cell: dict[str, Any],
    prompt_ids: list[list[int]],
    out: Emitter,
    resume: dict[str, Any] | None = None,
    compiled: dict[str, Any] | BaseException | None = None,
) -> None:
    """Measure one cell; `resume` is its `continue_from` entry (docs/FORMATS.md) when an
    earlier process was suspended in it; `compiled`: its compile call's outcome when the
    process made it before parking. Raises CellSuspended after `cell_suspended`."""
    cid = cell["id"]
    device = cell["device"]
    want = expected_tokens(cell)
    compile_delta: dict[str, Any] = {}
    counts = {"ok": 0, "length_mismatch": 0, "suspicious_fast": 0}
    # A backend may judge a reply itself (Ollama: eos_truncated, prompt_cache_hit).
    sample_check = getattr(backend, "sample_check", None)
    if backend.compiles:
        if isinstance(compiled, BaseException):
            raise compiled  # its compile call (made before the process parked) failed
        # Made before the process parked (kit run's precompile), or now.
        compile_delta = (
            compiled if compiled is not None else compile_call(backend, cell, prompt_ids, out)
        )
    warmup = int(cell["warmup"])
    total = warmup + int(cell["repetitions"])
    keep_going = cell.get("on_error", "stop") == "continue"
    hook = hook_settings(cell)
    resume = resume or {}
    errors: list[str] = list(resume.get("errors", []))
    counts.update(resume.get("counts", {}))
    adaptive = _Adaptive(cell)
    ok_ms: list[float] = [float(v) for v in resume.get("ok_ms", [])]
    continued: list[dict[str, Any]] = list(resume.get("continued", []))
    timed_from: dict[str, Any] | None = None  # compile counters when the timed calls began
    # The collector is off for the cell's calls (timing.gc_paused); the sample events' garbage
    # is acyclic, so memory does not grow with the repetitions.
    with gc_paused():
        rep = -1
        while True:
            rep += 1
            if resume and rep == warmup:
                rep = max(int(resume["from_rep"]), warmup)  # timed calls go on where they stopped
            if rep >= total and not adaptive.more(rep - int(cell["warmup"]), ok_ms):
                break
            if backend.compiles and timed_from is None and rep >= warmup:
                timed_from = backend.compile_counters()
            call = backend.call(cell, prompt_ids, rep)
            if hook:
                call.run = hooked_run(call.run, rep, hook)
            t0_ns = time.monotonic_ns()
            try:
                if int(cell.get("concurrency", 1)) > 1:
                    timed = _concurrent(backend, call, int(cell["concurrency"]))
                else:
                    timed = backend.timer.measure(call.run, call.setup())
            except Exception as err:
                if not keep_going:
                    raise
                fatal = device_fatal(err)
                warm = rep < warmup
                message = f"{type(err).__name__}: {err}".strip()[:500]
                if not warm:
                    errors.append(message)
                out.log(traceback.format_exc(), level="error")
                if not fatal:
                    recover(backend)  # a poisoned CUDA context is left alone: the process ends
                out.emit(
                    "sample", cell=cid, phase=cell["mode"], rep=rep, warmup=warm, latency_ms=None,
                    cuda_event_ms=None, tokens_in=len(prompt_ids[0]), tokens_out=0,
                    t0_ns=t0_ns, t1_ns=time.monotonic_ns(), status="error", flags=[], error=message,
                    **({"fatal": True} if fatal else {}),
                )  # fmt: skip
                if fatal:
                    # A fatal warmup call resumes at the first timed call (warmups rerun anyway).
                    out.emit(
                        "cell_suspended", cell=cid, next_rep=max(rep + 1, warmup),
                        fatal_error=message, errors=errors, counts=counts, ok_ms=ok_ms,
                        continued=continued,
                    )  # fmt: skip
                    raise CellSuspended(message) from err
                continue
            produced = call.count(timed.result)
            flags: list[str] = []
            status = "ok"
            judged = sample_check(cell, timed.result) if sample_check else None
            if judged:
                status = judged[0]
                flags.append(judged[1])
            elif any(n != want for n in produced):
                status = "length_mismatch"
                flags.append(f"produced {produced} tokens, asked {want}")
            elif (
                device == "cuda"
                and cell["mode"] in DECODE_MODES
                and timed.latency_ms < SUSPICIOUS_DECODE_MS
            ):
                status = "suspicious_fast"
                flags.append(
                    f"decode call took {timed.latency_ms:.3f} ms < {SUSPICIOUS_DECODE_MS} ms"
                )
            warm = rep < int(cell["warmup"])
            if not warm:
                counts[status] = counts.get(status, 0) + 1
                if status == "ok":
                    ok_ms.append(timed.latency_ms)
            out.emit(
                "sample",
                cell=cid,
                phase=cell["mode"],
                rep=rep,
                warmup=warm,
                latency_ms=timed.latency_ms,
                cuda_event_ms=timed.cuda_event_ms,
                tokens_in=len(prompt_ids[0]),
                tokens_out=min(produced),
                t0_ns=timed.t0_ns,
                t1_ns=timed.t1_ns,
                status=status,
                flags=flags,
            )
    if timed_from is not None:
        # What dynamo did during the timed calls: a graph compiled there is compile time
        # inside samples; a frame it gave up on (recompile limit) ran eager under the label.
        end = backend.compile_counters()
        compile_delta["during_timed_calls"] = {
            k: end[k] - timed_from.get(k, 0) for k in end if isinstance(end[k], int)
        }
    verdict = backend.verdict(cell, compile_delta)
    reasons = list(verdict.reasons)
    if counts["length_mismatch"]:
        reasons.append(
            f"{counts['length_mismatch']} of {cell['repetitions']} timed samples produced a different token count than {want}"
        )
    if counts["suspicious_fast"]:
        reasons.append(
            f"{counts['suspicious_fast']} decode calls under {SUSPICIOUS_DECODE_MS} ms on a GPU (TR147 rule: suspicious)"
        )
    for status, n in counts.items():
        if n and status not in ("ok", "length_mismatch", "suspicious_fast"):
            reasons.append(
                f"{n} of {cell['repetitions']} timed samples were {status} (see their flags)"
            )

    status = "degraded" if reasons else "ok"
    if errors:
        n_timed = sum(counts.values()) + len(errors)
        reasons.append(
            f"{len(errors)} of {n_timed} timed calls failed (on_error: continue); first: {errors[0]}"
        )
        status = "crash" if len(errors) == n_timed else "degraded"
    evidence = {
        **verdict.evidence,
        "sample_counts": {**counts, "error": len(errors)},
        **({"continued": continued} if continued else {}),
        **({"adaptive": adaptive.record(ok_ms)} if adaptive.pct is not None else {}),
        "tokens_expected": want,
        "timing": (
            "cuda events + synchronized perf_counter" if device == "cuda" else "perf_counter"
        )
        + "; gc paused",
    }
    out.emit(
        "cell_finished",
        cell=cid,
        status=status,
        reasons=reasons,
        evidence=evidence,
    )


def run_group(
    backend_cls: type | None,
    skip_reason: str | None,
    spec: dict[str, Any],
    out: Emitter,
    park: bool = False,
) -> int:
    """Run every cell of the group; returns the process exit code (0, or 3 after a fatal
    error, which tells the runner to continue in a fresh process: the remaining cells, and
    the suspended cell first when it emitted `cell_suspended`).

    `park` (kit run's precompile, listed order): a compiling backend makes every cell's
    compile call first, emits `parked` and waits for `go` on stdin before measuring, so that
    the runner compiles several groups at once while nothing is measured, and each group is
    then measured in the very process that compiled it (no second load, no second trace).
    A fatal device error while compiling ends the process before it parks (exit 3)."""
    cells: list[dict[str, Any]] = spec["cells"]
    prompts: dict[str, list[list[int]]] = spec["prompts"]

    def finish_all(status: str, reason: str) -> int:
        """Give every cell of the group the same final status (nothing could be measured)."""
        for cell in cells:
            ids = prompts[cell["id"]]
            out.emit("cell_started", cell=cell["id"], tokens_in=len(ids[0]), prompt_ids=ids)
            out.emit("cell_finished", cell=cell["id"], status=status, reasons=[reason], evidence={})
        return 0

    def skip_all(reason: str) -> int:
        return finish_all("skipped", reason)

    if backend_cls is None:
        return skip_all(skip_reason or "backend unavailable")
    try:
        backend: Backend = backend_cls(spec)
        reason = backend.unavailable()
    except Exception as err:
        return skip_all(f"backend could not start: {type(err).__name__}: {err}")
    if reason:
        return skip_all(reason)
    try:
        t0 = time.monotonic_ns()
        details = backend.load()
        t1 = time.monotonic_ns()
        out.emit(
            "phase", phase="load", cell=None, t0_ns=t0, t1_ns=t1, ms=(t1 - t0) / 1e6, detail=details
        )
        # One-off phases a backend timed inside load() (export, session, engine_start).
        for phase in getattr(backend, "phases", []):
            out.emit("phase", **phase)
    except Exception as err:
        message = f"model load failed: {type(err).__name__}: {err}"
        out.log(traceback.format_exc(), level="error")
        return finish_all("crash", message)
    continue_from: dict[str, dict[str, Any]] = spec.get("continue_from") or {}
    precheck = getattr(backend, "precheck", None)
    compiled: dict[str, dict[str, Any] | BaseException] = {}
    if park:
        if backend.compiles:
            code = _compile_ahead(backend, cells, prompts, out, compiled)
            if code:
                return code
        out.emit("parked", compiled=sorted(compiled))
        from kit.harness.blocks import wait_for_go

        wait_for_go()
    for cell in cells:
        ids = prompts[cell["id"]]
        resume = continue_from.get(cell["id"])
        more = {"continues": True, "from_rep": resume["from_rep"]} if resume else {}
        out.emit("cell_started", cell=cell["id"], tokens_in=len(ids[0]), prompt_ids=ids, **more)
        reason = backend.skip_reason(cell)
        if reason:
            out.emit(
                "cell_finished", cell=cell["id"], status="skipped", reasons=[reason], evidence={}
            )
            continue
        # A backend's check before any timed call (TensorRT: a shape outside its profile):
        # the cell is degraded with the reasons and has no sample, never a placeholder.
        unmeasurable = precheck(cell, ids) if precheck else []
        if unmeasurable:
            out.emit("cell_finished", cell=cell["id"], status="degraded",
                     reasons=unmeasurable, evidence={"measured": False})  # fmt: skip
            continue
        try:
            run_cell(backend, cell, ids, out, resume, compiled.get(cell["id"]))
        except CellSuspended:
            out.log(
                "fatal device error: ending this process; the runner continues the cell in a "
                "fresh one",
                level="error",
            )
            return 3
        except Exception as err:
            text = f"{type(err).__name__}: {err}".strip()
            kind = "out of memory" if "out of memory" in text.lower() else "exception"
            out.log(traceback.format_exc(), level="error")
            out.emit(
                "cell_finished",
                cell=cell["id"],
                status="crash",
                reasons=[f"{kind}: {text[:500]}"],
                evidence={"error_type": type(err).__name__},
            )
            if backend.is_fatal(err):
                out.log(
                    "fatal device error: ending this process; the runner continues in a fresh one",
                    level="error",
                )
                return 3
            recover(backend)
    return 0


def _compile_ahead(
    backend: Backend,
    cells: list[dict[str, Any]],
    prompts: dict[str, list[list[int]]],
    out: Emitter,
    compiled: dict[str, dict[str, Any] | BaseException],
) -> int:
    """Every measurable cell's compile call, in order, before parking: its counters' delta,
    or the exception it raised (re-raised in its turn, so the cell crashes as it would have).
    Returns 3 after a fatal device error (the process then ends unparked), else 0."""
    precheck = getattr(backend, "precheck", None)
    for cell in cells:
        ids = prompts[cell["id"]]
        if backend.skip_reason(cell) or (precheck and precheck(cell, ids)):
            continue
        try:
            compiled[cell["id"]] = compile_call(backend, cell, ids, out, hooked=True)
        except Exception as err:
            out.log(traceback.format_exc(), level="error")
            if device_fatal(err) or backend.is_fatal(err):
                # As in the cell loop: this cell crashes, the process ends (unparked) and
                # the runner measures the other cells in a fresh process.
                text = f"{type(err).__name__}: {err}".strip()
                kind = "out of memory" if "out of memory" in text.lower() else "exception"
                out.emit("cell_started", cell=cell["id"], tokens_in=len(ids[0]), prompt_ids=ids)
                out.emit("cell_finished", cell=cell["id"], status="crash",
                         reasons=[f"{kind}: {text[:500]}"],
                         evidence={"error_type": type(err).__name__})  # fmt: skip
                out.log(
                    "fatal device error while compiling ahead: ending this process before it "
                    "parks; the runner continues in a fresh one",
                    level="error",
                )
                return 3
            compiled[cell["id"]] = err
            recover(backend)
    return 0


def recover(backend: Any) -> None:
    torch = getattr(backend, "torch", None)
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
