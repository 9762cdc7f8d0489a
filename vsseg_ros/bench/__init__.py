"""Benchmarks: what `vsseg-ros bench` measures (:mod:`.measure`: the model alone and the node end to end; the run
itself: :mod:`.run`), its variants (:mod:`.backends`, :mod:`.cameras`, :mod:`.temporal`), fleet scaling
(:mod:`.fleet`), the GPU check (:mod:`.gpu`), the ST_Memory reference side by side (:mod:`.reference`) and the
node's long soak (:mod:`.soak`). They report ratios from one run; the commands are in :mod:`vsseg_ros.commands`."""
