import streamlit as st

from explorer.server.limits import LimitExceeded
from explorer.ui import compare, problem_card, results, state

INLINE_WAIT = 0.7  # seconds: short runs show their results without a progress view
POLL_SECONDS = 2.0  # the progress fragment's refresh: modest, a class shares the server

st.title("Compare optimizers")
st.markdown(
    "Run several optimizers on the same problem, data, seed and initialization. "
    "Curvature methods take damped steps δ = −α(C + λI)⁻¹g with C the Fisher, the "
    "Gauss-Newton matrix, the Hessian, K-FAC, EKFAC, the empirical Fisher or any "
    "registered curvature; today's preconditioners (Shampoo, SOAP, Sophia, AdaHessian, "
    "Muon) run beside them with their own state. The URL holds the whole "
    "configuration: copy it to share the experiment."
)
state.engine_or_stop()
for warning in state.ensure_seeded(st.query_params.to_dict()):
    st.warning(warning)
job = state.current_job()

with st.sidebar:
    problem, problem_values = compare.problem_controls()
    card = st.container()  # filled once the experiment is known (its dtype, seed)
    run_values = compare.run_controls(problem)
if job is not None and job.experiment is not None and job.experiment.problem != problem:
    job = state.forget_job()  # another problem's results would mislead: start over
running = job is not None and not job.done

# Run, progress and results come first, where the eye is; the optimizer cards
# (long, several screens for five rules) are drawn below and read back first.
top = st.container()
with st.expander("Optimizers to compare", expanded=job is None):
    rules = compare.rules_editor(disabled=running)

with top:
    try:
        experiment = state.experiment_from(problem, problem_values, rules, run_values)
        configs = experiment.run_configs()  # validates every setting before work
        state.check_size(experiment)  # P from the options, before anything is built
        state.remember(experiment)
    except ValueError as error:
        st.error(f"Fix this setting to run: {error}")
        st.stop()
    problem_card.problem_card(experiment, card)
    for note in compare.explanations(experiment):
        st.info(note)

    cost, too_much = problem_card.run_costs(experiment, configs)
    st.caption(cost)
    if too_much:
        st.error(f"Not started: {too_much}")
    clicked = st.button(
        "Run", type="primary", disabled=running or not rules or bool(too_much)
    )
    waiting = (
        None
        if clicked or job is not None
        else too_much or state.autostart_refusal(experiment)
    )
    if clicked or (job is None and waiting is None):
        state.write_url(experiment)
        try:
            job = state.start_job(experiment, configs)
        except LimitExceeded as error:
            st.error(f"Not started: {error}")
            st.stop()
        job.wait(INLINE_WAIT)
    elif job is None:
        if not too_much:
            st.info(waiting)
        st.stop()

    @st.fragment(run_every=POLL_SECONDS)
    def progress_view(job) -> None:
        if job.done:
            st.rerun()
        state.engine_or_stop()  # each poll renews this session's lease
        queue_note = results.queue_text(job)
        if queue_note:
            st.info(queue_note)
        st.progress(job.fraction_done(), text=results.progress_text(job))
        if st.button(
            "Stop",
            help="Stops the running optimizer after its current step and takes the "
            "others out of the queue; the results so far are kept.",
        ):
            job.cancel()
        if any(run.rows for run in job.states):  # nothing to draw while queued
            results.plot(results.live_figure(job), "live loss", key="cmp.live")

    if not job.done:
        progress_view(job)
    else:
        if job.experiment != experiment:
            st.warning(
                "**These results are for earlier settings.** You changed the "
                "settings since: press **Run** to update them."
            )
        st.caption(results.finished_text(job))
        results.results(job)
