"""The headless engine of hbt-tui, in three floors (never imports textual):

- `engine.contract`: standard library only, shared by both processes: specs and their
  validation, grids, the JSON-lines events, errors, metric/model/dataset names, and the
  run-folder layout.
- `engine.parent`: the side that starts and watches runs: runner, index store, compare,
  report, headless commands. rich, tinydb, numpy and scipy, never torch.
- `engine.child`: the training / evaluation subprocess: data readers, samplers, losses,
  encoder, loop, evaluation, checkpoints. torch lives here.

The modules directly in `engine/` are entry points (`python -m engine.train`, `.evaluate`,
`.cli`, `.check`, `.replay`): thin, and imported by nothing.
"""
