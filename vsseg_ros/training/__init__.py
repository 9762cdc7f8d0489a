"""Training (ROS-free): the per-frame trainer (stage 1) and the temporal one (stages 2-3), built from pieces both
share.

- ``perframe`` / ``temporal``: the entry points and their command lines (``python -m vsseg_ros.training.perframe``,
  ``python -m vsseg_ros.training.temporal``); ``perframe_run`` / ``temporal_run``: one session of each stage.
- ``recipe``: reading and checking the YAML recipes; ``stream``: the seeded, resumable, sharded data stream;
  ``losses``; ``optim``: parameter groups, schedule, optimiser step, weight average; ``loop``: validation schedule
  and progress bar; ``validation``: scoring and best-so-far; ``checkpointing``: ``last.pt``/``best.pt`` and the
  logs; ``session``: seeding, threads, output files, the run's clock; ``command``: the shared CLI ending.
- ``temporal_model``: the temporal model as stages 2-3 train it; ``targets``: boundary targets; ``curves``: the
  validation charts; ``distributed``: the torchrun process group.
"""
