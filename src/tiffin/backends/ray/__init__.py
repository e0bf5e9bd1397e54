"""The Ray backend: each replica a detached Ray actor that runs it on its node (`backend`, `actor`).

Ray is an optional dependency (`pip install 'tiffin[ray]'`): nothing here imports it until
`tiffin.backends.ray.backend` or an actor is loaded, so Tiffin imports and runs without it.
"""
