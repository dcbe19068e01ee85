from pathlib import Path

import streamlit as st

from explorer.check import DEFAULT_PROBLEMS, CheckSettings, ProblemChoice
from explorer.ui import check as ui
from explorer.ui.plugins import load_app_plugins

st.title("Check your approximation")
st.markdown(
    "Bring your own curvature (or preconditioner): register it with "
    "`@ex.register_curvature` in a plugin file, and this battery first says *which "
    "matrix it behaves like*, fitting it as α·R to the Hessian, GGN, Fisher, "
    "empirical Fisher, their diagonals and K-FAC, then measures it against its "
    "reference on small problems at points along a short natural-gradient run: "
    "symmetry, positive semi-definiteness, scale (trace ratio), coverage of every "
    "parameter, relative Frobenius error, the cosine of the damped preconditioned "
    "directions, spectra, generalized spectra and the condition number they imply, "
    "Kronecker efficiency, the cost of a product, and a race as an optimizer. Only "
    "*declared* properties pass or fail; a sampled estimator is judged on the mean of "
    "several draws. The same report comes from `python -m explorer check my_plugin.py`."
)
reports = load_app_plugins(str(Path(__file__).parents[1] / "plugins"))
ui.show_plugin_reports(reports)
ui.code_upload()

keys = ui.checkable_keys()
if not keys:
    st.info("No curvature to check yet: load a plugin first.")
    st.stop()
with st.form("check_settings"):
    key = st.selectbox("Curvature to check", keys, format_func=ui.describe_key)
    references = ui.reference_keys()
    reference = st.selectbox(
        "Reference",
        ["", *references],
        format_func=lambda k: k or "the one it declares (else fisher, informative)",
        help="The exact matrix it approximates. The scale is judged only against a "
        "declared or chosen reference.",
    )
    problems = st.multiselect(
        "Problems", ui.problem_keys(), default=list(DEFAULT_PROBLEMS)
    )
    left, middle, right = st.columns(3)
    steps = left.number_input("Steps of the run and race", 1, 200, 20)
    damping = middle.number_input("Damping λ", 0.0, 1e6, 0.1, format="%g")
    race = right.checkbox("Optimization race", value=True)
    submitted = st.form_submit_button("Run the battery", type="primary")
note = ui.stochastic_note(key)
if note is not None and ui.battery_result() is None:
    st.info(note)

if submitted and not problems:
    st.warning("Pick at least one problem.")
elif submitted:
    settings = CheckSettings(
        problems=tuple(ProblemChoice.of(p) for p in problems),
        reference=reference or None,
        steps=int(steps),
        damping=float(damping),
        race=race,
    )
    ui.request_battery(key, settings)

result = ui.battery_result()
if result is not None:
    ui.show_report(result)
