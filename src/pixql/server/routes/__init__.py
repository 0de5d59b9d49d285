"""One router per resource: ``health`` (/, /info, /healthz, /readiness), ``models``
(/model/*), ``clip`` (/clip/*)."""
