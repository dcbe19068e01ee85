import streamlit as st

from explorer.server.limits import LimitExceeded
from explorer.ui import state
from explorer.ui import sweep_view as sv

POLL_SECONDS = 2.0  # the progress fragment's refresh: modest, a class shares the server

st.title("Sweep")
st.markdown(
    "Tune each optimizer, then compare: every point of a grid of learning rates and "
    "dampings, with several seeds, on one problem. Second-order methods win or lose "
    "on how they are tuned (Kunstner et al. 2019 tune every method over an "
    "lr × λ grid before comparing). Trials share the server's workers with everyone "
    "else's work, one at a time per turn; the same sweep runs from a terminal with "
    "`python -m explorer sweep --config sweep.toml --dask local:4`."
)
state.engine_or_stop()
job = sv.current_job()
running = job is not None and not job.done

with st.sidebar:
    values = sv.sweep_controls()
if not values["rules"]:
    st.info("Choose at least one optimizer in the sidebar.")
    st.stop()
st.subheader("Grids")
grids = sv.grid_editor(values["rules"])
try:
    config = sv.sweep_config(values, grids)
except ValueError as error:
    st.error(f"Fix this setting to run: {error}")
    st.stop()
estimate = sv.estimate_text(config)
if estimate is not None:
    st.markdown(estimate)
refusal = state.engine().limits.sweep_refusal(config.size(), config.steps)
if refusal is not None:
    st.error(refusal)
if st.button("Run sweep", type="primary", disabled=running or refusal is not None):
    try:
        job = sv.start(config)
    except LimitExceeded as error:
        st.error(f"Not started: {error}")
        st.stop()
    job.wait(0.7)

if job is None:
    st.stop()


@st.fragment(run_every=POLL_SECONDS)
def progress_view(job) -> None:
    if job.done:
        st.rerun()
    state.engine_or_stop()  # each poll renews this session's lease
    st.progress(job.fraction_done(), text=sv.progress_text(job))
    if st.button(
        "Stop",
        help="Takes the queued trials out of the queue and stops the running ones "
        "after their current step; finished trials are kept.",
    ):
        job.cancel()
    sv.heatmaps(job, "sw.live")


st.divider()
if job.config != config:
    st.warning(
        "**These results are for an earlier grid.** You changed the settings since: "
        "press **Run sweep** to run the new one (finished trials are reused)."
    )
if not job.done:
    progress_view(job)
else:
    st.caption(sv.progress_text(job))
    sv.results(job)
