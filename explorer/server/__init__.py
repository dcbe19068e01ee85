"""The classroom server: compute on Dask workers, a fair queue, a shared cache, limits.

No Streamlit here: :mod:`explorer.ui` holds the pages' side. Modules:
:mod:`~explorer.server.engine` (where the compute runs), :mod:`~explorer.server.dispatch`
(the fair queue and its tickets), :mod:`~explorer.server.tasks` (what runs on a
worker), :mod:`~explorer.server.store` (results in memory and on disk),
:mod:`~explorer.server.limits` (what one request may cost) and
:mod:`~explorer.server.preload` (the workers' start-up).
"""
