"""Offline evaluation, ROS-free: what an evaluation reads (:mod:`.inputs`), a model scored on a dataset split or a
bag (:mod:`.evaluate`, with its predictions as a bag: :mod:`.output_bag`), the report folder (:mod:`.report`),
the temporal-fusion headroom of a per-frame model (:mod:`.headroom`) and what a MAR memory holds
(:mod:`.mar_analysis`). The fleet (:mod:`vsseg_ros.fleet`) and the commands import these."""
