"""The ``vsseg-ros`` subcommands, one module each: ``add_arguments(parser)`` (the options) and ``run(args)`` (the
call into the library that does the work, its errors as exit codes). Each imports its heavy dependencies inside
``run`` so that ``vsseg-ros --help`` and ``vsseg-ros node`` stay light; :mod:`vsseg_ros.cli` dispatches."""
