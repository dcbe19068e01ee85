"""The Compare page's controls: problem, run settings, the list of optimizers.

Every control is generated from the declared option schemas, so a newly registered
problem, rule or curvature appears here without changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import streamlit as st
import torch

import explorer as ex
from explorer.curvature.registry import CURVATURES
from explorer.optimizers.rules import RULES
from explorer.problems.spec import PROBLEM_GROUPS, PROBLEMS, ProblemSpec
from explorer.runs import Experiment, RuleChoice
from explorer.runs.config import MAX_LABEL_LENGTH
from explorer.ui import state
from explorer.ui.theory import theory_link
from explorer.ui.urlstate import MAX_RULES
from explorer.ui.views import view_problem
from explorer.ui.widgets import option_widget, options_form

#: Options shown up front for each rule; the rest sit under "More settings".
PRIMARY = (
    "curvature",
    "lr",
    "damping",
    "damping_adaptation",
    "step_size",
    "momentum",
    "nesterov",
    "samples",
    "output_factor",
    "cg_maxiter",
)


def problem_group(spec: ProblemSpec) -> str:
    """Where the selector lists a problem: its declared group, except that a
    problem a plugin registered (``source`` other than ``"builtin"``) is listed
    under ``"yours"`` whatever group it declares, so a person finds their own.
    """
    return spec.group if spec.source == "builtin" else "yours"


def grouped_problems(problems: Mapping[str, ProblemSpec] = PROBLEMS) -> list[str]:
    """Problem keys in the order of :data:`PROBLEM_GROUPS`, registration order
    within a group (a stable sort).
    """
    return sorted(
        problems, key=lambda k: PROBLEM_GROUPS.index(problem_group(problems[k]))
    )


def problem_choice(key: str) -> str:
    """A problem as the selector shows it: ``"group · label"``.

    One selectbox with the group in each entry, rather than a group control and
    a second selectbox: switching to a problem of another group stays one
    choice (no intermediate problem starts a comparison), typing a group's name
    filters the list to it, and the session-state key and URL keep holding the
    problem key alone.
    """
    spec = PROBLEMS[key]
    return f"{problem_group(spec)} · {spec.label}"


def problem_controls(container: Any = st) -> tuple[str, dict[str, Any]]:
    """Problem selector (grouped) and its options; returns (key, option values)."""
    ours = {k: PROBLEMS[k] for k in state.listed(PROBLEMS)}  # no one else's upload
    key = container.selectbox(
        "Problem",
        grouped_problems(ours),
        key=state.PROBLEM,
        format_func=problem_choice,
        help="Grouped as " + " · ".join(PROBLEM_GROUPS) + " (yours: problems from "
        "plugins). Data, model and likelihood; every loss is an exact negative "
        f"log-likelihood with its scale stated: {theory_link('likelihoods')}.",
    )
    container.caption(PROBLEMS[key].description)
    with container.expander("Problem options"):
        values = options_form(
            PROBLEMS[key].options, state.problem_prefix(key), columns=1
        )
    return key, values


def run_controls(problem: str, container: Any = st) -> dict[str, Any]:
    """Steps, batch sizes, seed, averaging, device and dtype (``problem``'s
    defaults).
    """
    state.follow_problem(problem)
    schema = list(state.run_schema(problem))
    devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for index, option in enumerate(schema):
        if option.name == "device":
            schema[index] = dataclasses.replace(
                option,
                choices=tuple(devices),
                help=option.help
                + (
                    " CUDA is available here."
                    if len(devices) > 2
                    else " No CUDA device here: runs use the CPU."
                ),
            )
    with container.expander("Run settings", expanded=True):
        return options_form(tuple(schema), "cmp.run", columns=1)


def _curvature_option(option: ex.Option) -> ex.Option:
    keys = tuple(k for k in state.listed(CURVATURES) if CURVATURES[k].selectable)
    return dataclasses.replace(option, choices=keys, kind="str")


def rule_card(rule_id: int, index: int, disabled: bool) -> RuleChoice:
    """One optimizer: its rule, label and hyper-parameters."""
    prefix = state.rule_prefix(rule_id)
    with st.container(border=True):
        head = st.columns([6, 1], vertical_alignment="bottom")
        current = st.session_state.get(f"{prefix}.rule", "sgd")
        anchor = RULES[current].theory if current in RULES else "updates"
        rule = head[0].selectbox(
            f"Optimizer {index + 1}",
            list(RULES),
            key=f"{prefix}.rule",
            format_func=lambda k: f"{RULES[k].label} ({k})",
            help="The update rule. Every curvature step is δ = −α(C + λI)⁻¹g; "
            f"{theory_link(anchor)}.",
            disabled=disabled,
        )
        if head[1].button(
            "✕", key=f"{prefix}.remove", help="Remove this optimizer", disabled=disabled
        ):
            state.remove_rule(rule_id)
            st.rerun()
        label = st.text_input(
            "Label",
            key=f"{prefix}.label",
            placeholder=rule,
            max_chars=MAX_LABEL_LENGTH,
            help="Name shown in legends; lets the same rule appear twice with "
            f"different settings. Plain text, at most {MAX_LABEL_LENGTH} characters.",
            disabled=disabled,
        )
        st.caption(RULES[rule].description)
        values = _rule_options(rule, f"{prefix}.{rule}", disabled)
    return state.read_rule(rule_id, values, label)


def _rule_options(rule: str, prefix: str, disabled: bool) -> dict[str, Any]:
    spec = RULES[rule]
    values: dict[str, Any] = {}
    own = {option.name: option for option in spec.options}
    if "curvature" in own:
        values["curvature"] = option_widget(
            _curvature_option(own["curvature"]),
            f"{prefix}.curvature",
            disabled=disabled,
            help_suffix=f" See {theory_link('kfac', 'the curvature matrices')}.",
        )
    schema = [o for o in spec.schema(values) if o.name != "curvature"]
    primary = [o for o in schema if o.name in PRIMARY]
    secondary = [o for o in schema if o.name not in PRIMARY]
    values.update(options_form(tuple(primary), prefix, columns=2, disabled=disabled))
    if secondary:
        with st.expander("More settings"):
            values.update(
                options_form(tuple(secondary), prefix, columns=2, disabled=disabled)
            )
    return values


def rules_editor(disabled: bool = False) -> list[RuleChoice]:
    """The optimizers to compare, with add and remove."""
    ids = list(st.session_state[state.RULE_IDS])
    choices = []
    for row in range(0, len(ids), 2):  # two cards per row keeps results in view
        columns = st.columns(2)
        for offset, rule_id in enumerate(ids[row : row + 2]):
            with columns[offset]:
                choices.append(rule_card(rule_id, row + offset, disabled))
    if len(choices) < MAX_RULES:
        add = st.columns([3, 1], vertical_alignment="bottom")
        new_rule = add[0].selectbox(
            "Add an optimizer",
            list(RULES),
            key="cmp.add_rule",
            format_func=lambda k: f"{RULES[k].label} ({k})",
            disabled=disabled,
        )
        if add[1].button("Add", disabled=disabled, width="stretch"):
            state.add_rule(new_rule)
            st.rerun()
    return choices


def explanations(experiment: Experiment) -> list[str]:
    """Plain-words notes about what to expect from this comparison."""
    notes = []
    problem = view_problem(experiment)
    curvatures = set()
    for choice in experiment.rules:
        spec = RULES[choice.rule]
        try:
            key = spec.curvature_key(choice.options)
        except ValueError:
            key = None
        if key:
            curvatures.add(key)
    if {"fisher", "ggn"} <= curvatures:
        if problem.loss.matching:
            notes.append(
                f"**Natural gradient = Gauss-Newton here.** The likelihood "
                f"({problem.loss.label}) is matching: its output Hessian equals its "
                "output Fisher, so F = G exactly (claim C1) and both rules take the same "
                f"steps; their curves overlap. {theory_link('fisher')}"
            )
        else:
            notes.append(
                f"**F ≠ G here.** {problem.loss.label} is non-matching: the Fisher "
                "averages over the model's predictions while the GGN uses the labels' "
                f"output Hessian, so the two rules differ. {theory_link('likelihoods')}"
            )
    if "ef" in curvatures:
        notes.append(
            "The empirical Fisher uses the training labels, not samples from the "
            f"model: it is not the Fisher and can distort steps. {theory_link('ef')}"
        )
    if "hessian" in curvatures:
        notes.append(
            "Newton uses the exact Hessian, which can be indefinite away from a "
            "minimum: by default its damping λ is then raised past the most negative "
            "eigenvalue and the step retried, as damped Newton does (the results "
            "say at how many steps); on_indefinite='stop' stops the run instead. "
            f"{theory_link('hessian')}"
        )
    return notes
