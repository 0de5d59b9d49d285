"""Values named by URL: the SSRF rules (:mod:`.addresses`), safe HTTP downloads
(:mod:`.http`) and the URL reader of CONVERT, SEARCH and the Ray workers (:mod:`.sources`:
``http(s)://`` through :mod:`.http`, ``s3://`` / ``gs://`` through fsspec)."""
