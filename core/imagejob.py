"""The incremental image job that `score` and `audit` share: work through a run's generated images in batches,
keep what an earlier run of the same stage already did with the same inputs, and save after every batch.

    job = ImageJob.plan(run, run_image_rows(run), previous_rows, same_inputs=..., done_with="scored with X",
                        doing="scoring", log=print)
    rows = job.run_batches(process, save, write_header, batch_size=16, desc="CLIP scoring", progress=True)

1. plan: the images to cover (`core.images.run_image_rows`: images.csv, one row per path, each inside the run and
   present, checked by the stage before its model loads); the rows of the previous job are kept for images still
   listed when its inputs were the same, and everything else is to do;
2. run_batches: the stage's header record is written first (marked incomplete), so an interrupted job keeps its
   finished batches; then each batch of pictures is loaded (`core.images.load_image`), handed to `process`, and
   every row so far is saved in images.csv order;
3. the caller computes its summaries from the returned rows and writes its record as complete.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.images import load_image
from core.runfolder import Run

Row = dict[str, Any]


@dataclass(frozen=True)
class ImageJob:
    run: Run
    images: list[dict[str, str]]  # the images.csv rows to cover, in order
    kept: dict[str, Row]  # path -> the row an earlier job made with the same inputs
    todo: list[dict[str, str]]  # the images.csv rows still to process

    @classmethod
    def plan(cls, run: Run, images: list[dict[str, str]], previous: Sequence[Row], *, same_inputs: bool,
             done_with: str, doing: str, log: Callable[[str], None]) -> ImageJob:
        """`images` (`core.images.run_image_rows`), the rows of `previous` worth keeping (only when `same_inputs`)
        and what is left, said in the line "N image(s) already <done_with>; <doing> M new"."""
        paths = {r["path"] for r in images}
        kept = {r["path"]: r for r in previous if r["path"] in paths} if same_inputs else {}
        todo = [r for r in images if r["path"] not in kept]
        if kept:
            log(f"{len(kept)} image(s) already {done_with}; {doing} {len(todo)} new")
        return cls(run, images, kept, todo)

    def ordered(self, rows: dict[str, Row]) -> list[Row]:
        order = {r["path"]: i for i, r in enumerate(self.images)}
        return sorted(rows.values(), key=lambda r: order[r["path"]])

    def run_batches(self, process: Callable[[list[dict[str, str]], list[Any]], list[Row]],
            save: Callable[[list[Row]], None], write_header: Callable[[], None], *, batch_size: int, desc: str,
            progress: bool) -> list[Row]:
        """Process the images to do in batches (`process(rows, pictures) -> one result row per image`), saving
        every row so far after each batch; returns all rows (kept and new) in images.csv order. Nothing to do:
        the kept rows are saved as they are and no header is written."""
        done = dict(self.kept)
        if not self.todo:
            save(self.ordered(done))
            return self.ordered(done)
        write_header()  # first, so an interrupted job keeps its finished batches on the next run
        save(self.ordered(done))
        from tqdm import tqdm

        bar = tqdm(total=len(self.todo), unit="img", desc=f"{desc} {self.run.name}", disable=not progress,
                   file=sys.stderr)
        try:
            for start in range(0, len(self.todo), batch_size):
                batch = self.todo[start:start + batch_size]
                pictures = [load_image(self.run.resolve_inside(r["path"], what="image")) for r in batch]
                for r, out in zip(batch, process(batch, pictures)):
                    done[r["path"]] = out
                save(self.ordered(done))
                bar.update(len(batch))
        finally:
            bar.close()
        return self.ordered(done)
