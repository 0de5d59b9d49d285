"""Running pixql's work on a Ray cluster (``pip install 'pixql[ray]'``).

:mod:`.cluster` starts or joins Ray (``import ray`` happens there, lazily, and only when a
statement asks for ``engine='ray'``). The users of it sit in their own layers: CONVERT's Ray
compute engine in :mod:`pixql.execution.raydata`, SimCLR's Ray Train loop in
:mod:`pixql.models.simclr.ddp`. See docs/scale-out.md.
"""
