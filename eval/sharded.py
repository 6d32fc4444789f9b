"""Sharded evaluation: N processes answer disjoint shares of the questions, one merge writes predictions.jsonl.

Rank ``r`` of ``N`` answers the questions of the image groups whose index ``g`` satisfies ``g % N == r``
(a group: consecutive questions on one image, e.g. MMBench's rotations of a question, so that each
image is bound once; with one question per image, as in V*Bench and SynthVStar, the question index
itself is taken modulo ``N``) and appends each answer, flushed, to its own ``OUT/predictions.rank{r}.jsonl``
(same record format and ``run_id`` tag as :mod:`eval.results`). A rank skips the question ids this
run already has in ``predictions.jsonl`` or in any rank file, so a killed rank (``kill -9``) and a
re-run lose nothing and answer nothing twice. The merge (:func:`merge_ranks`), done by the one
process holding the folder's :class:`~eval.run_lock.RunLock`, moves this run's rank records into
``predictions.jsonl`` in question order, de-duplicated by question id (a question answered twice with
different answers is refused), then scores the run with :func:`eval.runner.evaluate`: the same
predictions and results.csv row as one process (timing columns aside).

Two ways to get N processes:

- :func:`evaluate_spawned` (``seal eval --num-processes N``): the locked process spawns N workers
  (one torch thread each), waits, merges, scores.
- :func:`evaluate_rank` (``accelerate launch --num_processes N -m seal eval ...``): every rank runs
  the CLI; :func:`rank_from_env` reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; rank 0 holds the
  lock and merges, the ranks meet at accelerate's barrier before answering and before the merge.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from eval.readers.vstar import VStarSample
from eval.results import PREDICTIONS_FILE, append_record, read_predictions
from eval.runner import AgentLike, EvalRun, answer_questions, evaluate
from seal.core.errors import InputError

RANK_FILE = re.compile(r"predictions\.rank(\d+)\.jsonl")
SEQUENTIAL_POLICIES = ("random_policy_matched", "random_bucket_matched")
"""Policies whose choice for a question depends on the questions asked before it (one random stream
drawn in order): N processes would draw other actions than one, so they are refused."""
ANSWER_FIELDS = ("answer_index", "answer", "action")
"""Fields two records of one question must agree on to be the same answer (timings may differ)."""


@dataclass(frozen=True)
class Rank:
    """One of ``world_size`` evaluation processes; ``local_rank`` is its index on its machine."""

    rank: int
    world_size: int
    local_rank: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise InputError(f"expected 0 <= RANK < WORLD_SIZE, found RANK={self.rank} WORLD_SIZE={self.world_size}")

    def share(self, samples: Sequence[VStarSample]) -> list[VStarSample]:
        """This rank's questions, in order: those of the ``g``-th run of consecutive samples with one
        ``image`` where ``g % world_size == rank`` (one question per image: index ``% world_size``)."""
        mine, group, previous = [], -1, object()
        for sample in samples:
            if group < 0 or sample.image != previous:
                group, previous = group + 1, sample.image
            if group % self.world_size == self.rank:
                mine.append(sample)
        return mine


def rank_from_env(environ: dict | None = None) -> Rank | None:
    """The rank of a process started by ``accelerate launch`` / ``torchrun`` (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``); None for a plain process (no ``WORLD_SIZE``, or 1)."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = Rank(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", env.get("RANK", "0"))))
    except ValueError as exc:
        raise InputError(f"RANK / WORLD_SIZE / LOCAL_RANK: expected integers ({exc})") from None
    return rank if world > 1 else None


def rank_file(out_dir: str | Path, rank: int) -> Path:
    return Path(out_dir) / f"predictions.rank{rank}.jsonl"


def rank_files(out_dir: str | Path) -> list[Path]:
    """The folder's rank files, by rank."""
    found = ((int(m.group(1)), p) for p in Path(out_dir).glob("predictions.rank*.jsonl")
             if (m := RANK_FILE.fullmatch(p.name)))
    return [p for _, p in sorted(found)]


class RankLog:
    """A rank's append-only ``predictions.rank{r}.jsonl``, seen through one ``run_id``; what it calls
    done is what this run has in ``predictions.jsonl`` or in any rank file.

    Args:
        parent_pid: a spawned worker stops (exit 3) after its current answer when the process that
            spawned it (and holds the folder lock) is gone, so that a killed coordinator leaves no
            worker writing into a folder that the next run may lock.
    """

    def __init__(self, out_dir: str | Path, run_id: str, rank: int, parent_pid: int | None = None) -> None:
        self.path = rank_file(out_dir, rank)
        self.run_id = run_id
        self.parent_pid = parent_pid
        read_predictions(self.path)  # a torn last line of a killed rank is cut before appending
        sources = [Path(out_dir) / PREDICTIONS_FILE, *rank_files(out_dir)]
        self._done = {str(r["question_id"]) for p in sources for r in read_predictions(p)
                      if r.get("run_id") == run_id}

    def done(self) -> set[str]:
        return set(self._done)

    def append(self, record: dict) -> None:
        append_record(self.path, {"run_id": self.run_id, **record})
        self._done.add(str(record["question_id"]))
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            sys.exit(3)


def answer_share(agent: AgentLike, samples: Sequence[VStarSample], run: EvalRun, out_dir: str | Path,
                 rank: Rank, progress: bool = False, parent_pid: int | None = None) -> int:
    """Answer this rank's not yet answered questions into its rank file; returns how many it asked."""
    return _answer(agent, rank.share(samples), run, out_dir, rank.rank, progress, parent_pid)


def _answer(agent: AgentLike, share: Sequence[VStarSample], run: EvalRun, out_dir: str | Path, rank: int,
            progress: bool, parent_pid: int | None) -> int:
    log = RankLog(out_dir, run.run_id, rank, parent_pid)
    done = log.done()
    todo = [s for s in share if s.question_id not in done]
    answer_questions(agent, todo, run, log, _bar(len(todo), 0, progress, f"eval rank {rank}"))
    return len(todo)


def merge_ranks(out_dir: str | Path, run_id: str, samples: Sequence[VStarSample]) -> int:
    """Move this run's records of the rank files into ``predictions.jsonl``: its records there become
    one block in question order (the order of ``samples``; ids not in ``samples`` follow in file
    order), one per question id. Other runs' records stay. Rank files left with no record are deleted.
    Call it only while holding the folder's lock. Returns the number of records moved in.

    Raises:
        InputError: one question id with two different answers (:data:`ANSWER_FIELDS`), naming both files.
    """
    out = Path(out_dir)
    main_path = out / PREDICTIONS_FILE
    ranks = {p: read_predictions(p) for p in rank_files(out)}
    moved = [(p, r) for p, recs in ranks.items() for r in recs if r.get("run_id") == run_id]
    if not ranks:
        return 0
    main = read_predictions(main_path)
    mine = [(main_path, r) for r in main if r.get("run_id") == run_id] + moved
    first: dict[str, tuple[Path, dict]] = {}
    for path, rec in mine:
        qid = str(rec["question_id"])
        if qid not in first:
            first[qid] = (path, rec)
            continue
        other_path, other = first[qid]
        if any(other.get(k) != rec.get(k) for k in ANSWER_FIELDS):
            raise InputError(f"question {qid} of run {run_id} was answered twice with different answers "
                             f"({other.get('answer')!r} in {other_path.name}, {rec.get('answer')!r} in {path.name}); "
                             f"delete the wrong record", out)
    position = {s.question_id: i for i, s in enumerate(samples)}
    ordered = sorted(first.values(), key=lambda pr: position.get(str(pr[1]["question_id"]), len(position)))
    if moved:
        _rewrite(main_path, [r for r in main if r.get("run_id") != run_id] + [r for _, r in ordered])
    for path, recs in ranks.items():  # after the merged file is on disk: a kill here leaves duplicates, not losses
        rest = [r for r in recs if r.get("run_id") != run_id]
        if rest:
            _rewrite(path, rest)
        else:
            path.unlink()
    return len(moved)


def _rewrite(path: Path, records: list[dict]) -> None:
    """Replace ``path`` by ``records`` (one JSON line each) atomically: written beside it, fsynced, renamed."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def evaluate_spawned(make_agent: Callable[[], AgentLike], samples: Sequence[VStarSample], run: EvalRun,
                     out_dir: str | Path, num_processes: int, progress: bool = True) -> dict:
    """``seal eval --num-processes N``: N spawned workers answer their shares, then merge and score.
    Call it while holding the folder's lock. ``make_agent`` must pickle (a module-level function or a
    ``functools.partial`` of one): each worker builds its own agent with one torch thread."""
    if num_processes < 1:
        raise InputError(f"--num-processes: expected >= 1, found {num_processes}")
    _check_shardable(run)
    out = Path(out_dir)
    merge_ranks(out, run.run_id, samples)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_worker, name=f"seal-eval-rank{r}", daemon=True,
                           args=(make_agent, Rank(r, num_processes).share(samples), run, str(out), r, os.getpid()))
               for r in range(num_processes)]
    for w in workers:
        w.start()
    try:
        failed = _watch(workers, out, run.run_id, len(samples), progress)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
            w.join()
    if failed is not None:
        code = workers[failed].exitcode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code} (its error is above)"
        raise InputError(f"--num-processes: worker rank {failed} {how}; the others were stopped; re-run to "
                         f"resume, the answers so far are kept", out)
    return _merge_and_score(samples, run, out)


def evaluate_rank(agent: AgentLike, samples: Sequence[VStarSample], run: EvalRun, out_dir: str | Path,
                  rank: Rank, progress: bool = True) -> dict | None:
    """One rank of ``accelerate launch -m seal eval``: answer this rank's share; rank 0 (which must hold
    the folder's lock) merges and scores and returns the results row, the other ranks return None."""
    _check_shardable(run)
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo on CPU, as training.loop does
    if state.num_processes != rank.world_size or state.process_index != rank.rank:
        raise InputError(f"accelerate sees rank {state.process_index} of {state.num_processes}, the environment "
                         f"RANK={rank.rank} WORLD_SIZE={rank.world_size}")
    if rank.rank == 0:
        merge_ranks(out_dir, run.run_id, samples)  # leftovers of a killed run, before anyone reads what is done
    state.wait_for_everyone()
    answer_share(agent, samples, run, out_dir, rank, progress=progress and rank.rank == 0)
    state.wait_for_everyone()
    return _merge_and_score(samples, run, Path(out_dir)) if rank.rank == 0 else None


def _check_shardable(run: EvalRun) -> None:
    if run.policy_name in SEQUENTIAL_POLICIES:
        raise InputError(f"policy.baseline_name={run.policy_name} draws one random stream over the questions in "
                         f"order: several processes would draw other actions than one; evaluate it with one process")


def _merge_and_score(samples: Sequence[VStarSample], run: EvalRun, out: Path) -> dict:
    merge_ranks(out, run.run_id, samples)
    done = {str(r["question_id"]) for r in read_predictions(out / PREDICTIONS_FILE) if r.get("run_id") == run.run_id}
    missing = [s.question_id for s in samples if s.question_id not in done]
    if missing:
        raise InputError(f"{len(missing)} question(s) unanswered after the merge (first {missing[0]!r})", out)
    return evaluate(None, samples, run, out, progress=False)  # everything answered: only scores


def _worker(make_agent: Callable[[], AgentLike], share: list[VStarSample], run: EvalRun, out: str, rank: int,
            parent_pid: int) -> None:
    """A spawned worker: one torch thread, its own agent, its share of the questions (only those pickled)."""
    import torch

    from seal.core.outputs import write_errors

    torch.set_num_threads(1)
    try:
        with write_errors(out, "--output-dir"):
            _answer(make_agent(), share, run, out, rank, progress=False, parent_pid=parent_pid)
    except InputError as exc:
        print(f"seal eval: rank {rank}: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def _watch(workers: list, out: Path, run_id: str, total: int, progress: bool) -> int | None:
    """Wait for the workers; the bar counts the lines they append to their rank files. Returns the
    rank of the first worker seen failing (the caller stops the others), None when all succeeded."""
    files = [rank_file(out, r) for r in range(len(workers))]
    start = {p: _lines(p) for p in files}
    done = {str(r["question_id"]) for r in read_predictions(out / PREDICTIONS_FILE, repair=False)
            if r.get("run_id") == run_id}
    bar = _bar(total, min(len(done), total), progress, "eval")
    try:
        while True:
            failed = [r for r, w in enumerate(workers) if w.exitcode not in (None, 0)]
            if failed or not any(w.is_alive() for w in workers):
                return failed[0] if failed else None
            time.sleep(0.5)
            bar.n = min(total, len(done) + sum(_lines(p) - start[p] for p in files))
            bar.refresh()
    finally:
        bar.close()


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="q", desc=desc, file=sys.stderr, disable=not enabled,
                dynamic_ncols=True)
