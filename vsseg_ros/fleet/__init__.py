"""Fleet-scale offline evaluation (``vsseg-ros eval --bags PATTERN...``): many bags scored one after the other or
as Ray tasks, merged exactly, resumable from a results folder. No ROS import; Ray only in
:mod:`~vsseg_ros.fleet.ray_backend`.

- :mod:`~vsseg_ros.fleet.discover`: patterns to bags (with their identity) and bags to tasks.
- :mod:`~vsseg_ros.fleet.tasks`: :func:`score_task`, one bag's record (the function both paths run).
- :mod:`~vsseg_ros.fleet.results`: the ``--results`` folder (atomic per-bag records, resume).
- :mod:`~vsseg_ros.fleet.options`: the fleet options, their checks and the settings every task scores with.
- :mod:`~vsseg_ros.fleet.merge`: the records merged into the fleet's numbers, its per-bag rows and JSON.
- :mod:`~vsseg_ros.fleet.run`: the command: schedule, store, write the JSON and the report.
- :mod:`~vsseg_ros.fleet.ray_backend`: Ray (local instance, a cluster, retries, progress).
"""
