"""Checkpoints of a run: :mod:`.files` (the format: plain state dicts, written atomically, read
with ``weights_only``), :mod:`.contents` (what a resume state holds and may leave out),
:mod:`.policy` (when a run writes its state) and :mod:`.writer` (the background writer, a run's
folder)."""
