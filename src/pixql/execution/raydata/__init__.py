"""CONVERT's ``ray`` compute engine (:mod:`.engine`, driver side; :mod:`.worker`, what runs
in Ray's worker processes). See :mod:`pixql.execution.compute` and docs/scale-out.md."""
