"""The latent explorer: a trained RG-Flow's latents, live, in a browser or a notebook
(docs/explorer.md).

    explorer = session.Explorer.for_run(rgflow_jax.load("runs/msds1-cpu"))
    server.start(explorer)                      # a page on 127.0.0.1 (rgflow-explore)
    notebook.show(rgflow_jax.load(...))         # the same page inline in a notebook
    export.write_html(flow, params, "explorer.html", rng)   # one file, no server

:mod:`.session` computes (edits through the generation cone only), :mod:`.server`
serves the page in ``static/`` (Flask, the ``[explore]`` extra), :mod:`.export` writes
the offline file (``rgflow-eval --mode explorer``).
"""
