"""Frame lists: the frames a job renders, written as ranges, steps and single frames (`1-100x2,150,200-210`).

The syntax, items separated by commas:

- `150`: one frame;
- `1-100`: every frame from 1 to 100;
- `1-100x2`: every second frame from 1 (1, 3, ..., 99).

Spaces around an item are ignored; nothing else is (no tabs, no other digits than 0-9).

A list is a set: its items may come in any order, but no frame may be listed twice (`1-10,5` is refused,
not merged, so a typo such as `1-100,10-200` for `100-200` is not rendered silently). Its normal form lists
the frames in ascending order, each run of evenly spaced frames as one item ending on its last frame
(`1-100x2,150,200-210` is `1-99x2,150,200-210`): the same frames always have the same normal form, and a
job stores that string, never the frames one by one.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from jobs.domain.states import MAX_FRAME_NUMBER, MAX_FRAMES_PER_JOB

MAX_FRAME_LIST = 1024  # characters of a frame list, as given and in its normal form (it is stored on the job)
_ITEM = re.compile(r"(?P<start>-?[0-9]+)(?:-(?P<end>-?[0-9]+)(?:x(?P<step>-?[0-9]+))?)?")
_SHOWN = 40  # characters of a refused item quoted in its error


class FrameListError(ValueError):
    """A frame list that cannot be rendered; the message says why, for a person."""


@dataclass(frozen=True)
class Run:
    """Evenly spaced frames: `start`, `start + step`, ... up to `last` (which is one of them)."""

    start: int
    last: int
    step: int = 1

    def __len__(self) -> int:
        return (self.last - self.start) // self.step + 1

    def __str__(self) -> str:
        if self.start == self.last:
            return str(self.start)
        return f"{self.start}-{self.last}" + (f"x{self.step}" if self.step != 1 else "")


class FrameList(Sequence[int]):
    """The ascending frames of a job or a chunk, held as runs in normal form (never expanded to store).

    Build one with `parse` (the syntax above), `span` (first to last) or `of` (any frame numbers); only a
    slice past the end is empty.
    Indexing and slicing are by position: `frames[5:10]` is the sixth to tenth frames of the list.
    """

    __slots__ = ("_ends", "_runs")

    def __init__(self, runs: Iterable[Run]):
        self._runs = tuple(runs)
        ends, total = [], 0
        for run in self._runs:
            total += len(run)
            ends.append(total)
        self._ends = tuple(ends)  # how many frames the list has up to the end of each run

    # --- building --------------------------------------------------------------------------------
    @classmethod
    def span(cls, first: int, last: int) -> FrameList:
        """Every frame from `first` to `last`."""
        return cls([Run(first, last)])

    @classmethod
    def of(cls, frames: Iterable[int]) -> FrameList:
        """The given frames (duplicates count once) in normal form."""
        return cls(_runs_of(sorted(set(frames))))

    @classmethod
    def parse(cls, text: str) -> FrameList:
        """A frame list written in the syntax above; FrameListError names what is wrong with it."""
        if len(text) > MAX_FRAME_LIST:
            raise FrameListError(f"A frame list has at most {MAX_FRAME_LIST} characters; this one has {len(text)}.")
        if not text.strip(" "):
            raise FrameListError('Give at least one frame, as in "1-100x2,150,200-210".')
        items = [item.strip(" ") for item in text.split(",")]
        runs = [(_parse_item(item, number), item) for number, item in enumerate(items, start=1)]
        count = sum(len(run) for run, _ in runs)
        if count > MAX_FRAMES_PER_JOB:
            raise FrameListError(f"A job renders at most {MAX_FRAMES_PER_JOB} frames; this list has {count}.")
        _refuse_duplicates(runs)
        frames = cls.of(frame for run, _ in runs for frame in range(run.start, run.last + 1, run.step))
        if len(str(frames)) > MAX_FRAME_LIST:
            raise FrameListError(
                f"In its normal form ({str(frames)[:_SHOWN]}...) this list has more than {MAX_FRAME_LIST} characters; "
                "list the frames as fewer ranges."
            )
        return frames

    @classmethod
    def stored(cls, text: str) -> FrameList:
        """A list the farm stored: parsed once per process for each text (a list is immutable, and parsing
        checks every frame, which every read of a job or chunk item would otherwise pay)."""
        return _stored(text)

    # --- reading ---------------------------------------------------------------------------------
    @property
    def runs(self) -> tuple[Run, ...]:
        return self._runs

    @property
    def first(self) -> int:
        return self._runs[0].start

    @property
    def last(self) -> int:
        return self._runs[-1].last

    @property
    def contiguous(self) -> bool:
        """Every frame from the first to the last (what frame_start and frame_end alone describe)."""
        return len(self._runs) == 1 and (self._runs[0].step == 1 or len(self._runs[0]) == 1)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __iter__(self) -> Iterator[int]:
        for run in self._runs:
            yield from range(run.start, run.last + 1, run.step)

    @overload
    def __getitem__(self, position: int) -> int: ...

    @overload
    def __getitem__(self, position: slice) -> FrameList: ...

    def __getitem__(self, position):
        """The frame at a position, or the frames of a slice of positions (a FrameList, empty past the end)."""
        if isinstance(position, slice):
            return FrameList.of(self._at(i) for i in range(len(self))[position])
        if position < 0:
            position += len(self)
        if not 0 <= position < len(self):
            raise IndexError("frame list position out of range")
        return self._at(position)

    def _at(self, position: int) -> int:
        which = bisect.bisect_right(self._ends, position)
        before = self._ends[which - 1] if which else 0
        run = self._runs[which]
        return run.start + (position - before) * run.step

    def __contains__(self, frame: object) -> bool:
        return isinstance(frame, int) and any(
            run.start <= frame <= run.last and (frame - run.start) % run.step == 0 for run in self._runs
        )

    def index(self, frame: int, start: int = 0, stop: int | None = None) -> int:
        """The position of a frame in the list (ValueError if it is not listed)."""
        before = 0
        for run in self._runs:
            if run.start <= frame <= run.last and (frame - run.start) % run.step == 0:
                position = before + (frame - run.start) // run.step
                if start <= position and (stop is None or position < stop):
                    return position
                break
            before += len(run)
        raise ValueError(f"frame {frame} is not in the list")

    def __str__(self) -> str:
        return ",".join(str(run) for run in self._runs)

    def __repr__(self) -> str:
        return f"FrameList({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameList) and self._runs == other._runs

    def __hash__(self) -> int:
        return hash(self._runs)


def _parse_item(item: str, number: int) -> Run:
    shown = item if len(item) <= _SHOWN else item[: _SHOWN - 1] + "\u2026"
    if not item:
        raise FrameListError(f"Item {number} of the frame list is empty (two commas in a row, or one at an end).")
    match = _ITEM.fullmatch(item)
    if match is None:
        raise FrameListError(f'"{shown}" is not a frame ("150"), a range ("1-100") or a range with a step ("1-100x2").')
    start = int(match["start"])
    end = int(match["end"]) if match["end"] is not None else start
    step = int(match["step"]) if match["step"] is not None else 1
    if not (0 <= start <= MAX_FRAME_NUMBER and 0 <= end <= MAX_FRAME_NUMBER):
        raise FrameListError(f'"{shown}": frame numbers are 0 to {MAX_FRAME_NUMBER}.')
    if step < 1:
        raise FrameListError(f'"{shown}": the step must be 1 or more.')
    if end < start:
        raise FrameListError(f'"{shown}": the range ends before it starts.')
    return Run(start, start + (end - start) // step * step, step)


def _refuse_duplicates(runs: list[tuple[Run, str]]) -> None:
    """Refuse a frame listed twice, naming it and the two items that list it."""
    seen: dict[int, str] = {}
    for run, item in runs:
        for frame in range(run.start, run.last + 1, run.step):
            if frame in seen:
                raise FrameListError(
                    f'Frame {frame} is listed twice ("{seen[frame][:_SHOWN]}" and "{item[:_SHOWN]}"); list each '
                    "frame once."
                )
            seen[frame] = item


def _runs_of(frames: list[int]) -> list[Run]:
    """Ascending distinct frames as runs, greedily: from each frame, as far as the spacing to the next one
    holds; two frames make a run only when they are neighbours (`5-6`), else the first stands alone."""
    runs, i = [], 0
    while i < len(frames):
        j, step = i, 1
        if i + 1 < len(frames):
            j, step = i + 1, frames[i + 1] - frames[i]
            while j + 1 < len(frames) and frames[j + 1] - frames[j] == step:
                j += 1
            if j == i + 1 and step != 1:
                j, step = i, 1
        runs.append(Run(frames[i], frames[j], step))
        i = j + 1
    return runs


@functools.lru_cache(maxsize=4096)
def _stored(text: str) -> FrameList:
    return FrameList.parse(text)
